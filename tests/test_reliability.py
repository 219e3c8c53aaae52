"""Crash safety, never losing results, divergence, bad input, determinism."""

import csv
import errno
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import pytest

from tests.conftest import REPO
from tests.conftest import run_python
from tests.conftest import run_train_main
from tests.conftest import write_fake_cifar


# A narrow seed network: what these tests check (signals, resumes, refusals)
# does not depend on its width, and the full one makes each run slow.
NARROW = ["--stage-filters", "16,16,32,32"]


@pytest.fixture
def small_cifar(tmp_path):
    # 1,000 training images (slow enough to kill mid-epoch), 20 test images.
    return write_fake_cifar(str(tmp_path / "cifar"), per_batch=200, test_count=20)


def train_cmd(data_dir, run_dir, *extra):
    return [sys.executable, "train.py", "--data-dir", data_dir, "--output-dir", str(run_dir),
            "--batch-size", "50", "--no-export", "--checkpoint-seconds", "0", *NARROW, *extra]


def start(cmd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    # Ctrl-C's default action, even when the tests run in a background job
    # (`nohup ... &`), whose children inherit SIGINT ignored: Python then
    # installs no KeyboardInterrupt handler and the signal does nothing.
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_epoch(run_dir, epochs_done, process, timeout=240):
    meta = os.path.join(run_dir, "backup", "training_metadata.json")
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            with open(meta) as f:
                if json.load(f)["epoch"] >= epochs_done:
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise TimeoutError("training did not reach the epoch")


def history_epochs(run_dir):
    _, *rows = (run_dir / "history.csv").read_text().splitlines()
    return [int(r.split(",")[0]) for r in rows]


def test_sigkill_mid_epoch_then_rerun_resumes(small_cifar, tmp_path):
    run_dir = tmp_path / "run"
    cmd = train_cmd(small_cifar, run_dir, "--epochs", "3")
    # The same command without a stop, beside it, to compare with.
    uninterrupted = start(train_cmd(small_cifar, tmp_path / "whole", "--epochs", "3"))
    process = start(cmd)
    try:
        wait_for_epoch(str(run_dir), 1, process)
        time.sleep(0.3)  # inside epoch 2
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not (run_dir / "metrics.json").exists()
        first_row = (run_dir / "history.csv").read_text().splitlines()[1]

        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert out.returncode == 0, out.stderr[-3000:]
        _, err = uninterrupted.communicate(timeout=600)
        assert uninterrupted.returncode == 0, err[-3000:]
    finally:  # a failure above must not leave a training running
        for child in (process, uninterrupted):
            if child.poll() is None:
                child.kill()
                child.wait()
    resumed_after = int(re.search(rf"Resuming {re.escape(str(run_dir))} after epoch (\d+)\.",
                                  out.stdout)[1])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 3
    # Its train_seconds are the resumed epochs' alone, and say so.
    assert metrics["resumed_after_epoch"] == resumed_after >= 1
    assert history_epochs(run_dir) == [0, 1, 2]
    assert (run_dir / "history.csv").read_text().splitlines()[1] == first_row

    # It went on from the backup's weights, batches and augmentation: it
    # trained as the same command run without a stop (a fresh start, or
    # epoch 1's batches again, would not).
    def losses(folder):
        with open(folder / "history.csv") as f:
            return [float(row["loss"]) for row in csv.DictReader(f)]

    assert losses(run_dir) == pytest.approx(losses(tmp_path / "whole"), rel=1e-5)


def test_a_run_whose_output_reader_ended_stops_in_one_line_and_resumes(tmp_path):
    # `python train.py | head`: Keras' progress bar wrote into the closed
    # pipe, and the run ended in a BrokenPipeError traceback, exit 1.
    data_dir = write_fake_cifar(str(tmp_path / "cifar"), per_batch=20, test_count=20)
    run_dir = tmp_path / "run"
    argv = train_cmd(data_dir, run_dir, "--epochs", "1")[1:]  # without the interpreter
    out = run_python(argv, reader_gone=True)
    assert out.returncode == 141, out.stderr[-3000:]  # 128 + SIGPIPE
    assert out.stderr.splitlines()[-1:] == ["train.py: stopped: its output's reader closed the pipe."]
    assert "Traceback" not in out.stderr
    assert (run_dir / "config.json").is_file() and not (run_dir / "metrics.json").exists()
    again = run_python(argv)  # the same command finishes the run
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout.splitlines()[-1])["epochs"] == 1


def test_ctrl_c_saves_and_prints_resume_command(small_cifar, tmp_path):
    run_dir = tmp_path / "run"
    # Far more epochs than it will run, so that it can only end by the signal.
    process = start(train_cmd(small_cifar, run_dir, "--epochs", "50"))
    wait_for_epoch(str(run_dir), 1, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert f"Resume with: python train.py --resume {run_dir}" in stderr
    assert "backup after epoch " in stderr
    assert (run_dir / "backup" / "training_metadata.json").is_file()
    assert (run_dir / "checkpoints" / "last.keras").is_file()


def test_a_ctrl_c_leaves_history_csv_closed(fake_cifar, tmp_path, monkeypatch):
    # Keras' CSVLogger closes its file only as a fit ends without an
    # exception: after a Ctrl-C, `python -W always train.py` warned
    # "ResourceWarning: unclosed file <... history.csv>" as it exited.
    from callbacks import HistoryCSVLogger
    from keras_resnet import training
    from keras_resnet.config import TrainConfig

    class StopInSecondEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    made = []
    make_callbacks = training.make_callbacks

    def with_ctrl_c(*args):
        callbacks, resumed_from = make_callbacks(*args)
        made.extend(callbacks)
        return [*callbacks, StopInSecondEpoch()], resumed_from

    monkeypatch.setattr(training, "make_callbacks", with_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        training.train(TrainConfig(epochs=3, batch_size=25, data_dir=fake_cifar, export=False,
                                   stage_filters=[8, 8, 8, 8], output_dir=str(tmp_path / "run")))
    (logger,) = [callback for callback in made if isinstance(callback, HistoryCSVLogger)]
    assert logger.csv_file.closed
    assert len((tmp_path / "run" / "history.csv").read_text().splitlines()) == 2  # header, epoch 1


def train_stopped_as_the_second_epoch_begins(error, fake_cifar, run_dir, monkeypatch):
    """`training.train` of two tiny epochs in `run_dir`, `error` (an
    exception class; `None`: nothing) raised as the second epoch begins."""
    from keras_resnet import training
    from keras_resnet.config import TrainConfig

    class StopInSecondEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1 and error:
                raise error("stopped")

    make_callbacks = training.make_callbacks
    monkeypatch.setattr(training, "make_callbacks", lambda *args: (
        lambda made: ([*made[0], StopInSecondEpoch()], made[1]))(make_callbacks(*args)))
    training.train(TrainConfig(epochs=2, batch_size=25, data_dir=fake_cifar, export=False,
                               stage_filters=[8, 8, 8, 8], output_dir=run_dir))


@pytest.mark.parametrize("stop", ["ctrl_c", "divergence", None])
def test_history_csv_failing_to_close_does_not_replace_the_error_that_stopped_fit(
        stop, fake_cifar, tmp_path, monkeypatch, capsys):
    # Closing history.csv after fit stopped raised an OSError (a full
    # disk) in place of the Ctrl-C or the divergence: train.py printed the
    # OSError's traceback, not where the run is kept. A close that fails
    # after a fit that ended well still fails the run.
    from callbacks import HistoryCSVLogger
    from callbacks import TrainingDiverged

    errors = {"ctrl_c": KeyboardInterrupt, "divergence": TrainingDiverged, None: OSError}
    close = HistoryCSVLogger.on_train_end
    closes = []

    def close_on_a_full_disk(self, logs=None):
        close(self, logs)  # closed all the same, as a file whose last flush fails
        closes.append(self.filename)
        if len(closes) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(HistoryCSVLogger, "on_train_end", close_on_a_full_disk)
    run_dir = str(tmp_path / "run")
    with pytest.raises(errors[stop]) as raised:
        train_stopped_as_the_second_epoch_begins(stop and errors[stop], fake_cifar, run_dir, monkeypatch)
    history = os.path.join(run_dir, "history.csv")
    assert closes and set(closes) == {history}
    err = capsys.readouterr().err
    if stop:
        assert str(raised.value) == "stopped" and raised.value.run_dir == run_dir
        assert f"warning: {history} could not be closed: [Errno 28] No space left on device" in err
    else:
        assert raised.value.errno == errno.ENOSPC
        assert "could not be closed" not in err  # the error itself, once


def test_a_best_epoch_that_cannot_be_written_after_a_ctrl_c_does_not_replace_it(
        fake_cifar, tmp_path, monkeypatch, capsys):
    # Writing the best epoch that waited in memory as a Ctrl-C stopped fit
    # raised an OSError (a full disk) in its place: train.py printed its
    # traceback, not where the run is kept.
    from callbacks import AtomicModelCheckpoint

    def flush_on_a_full_disk(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(AtomicModelCheckpoint, "flush", flush_on_a_full_disk)
    run_dir = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt) as raised:
        train_stopped_as_the_second_epoch_begins(KeyboardInterrupt, fake_cifar, run_dir, monkeypatch)
    assert raised.value.run_dir == run_dir
    err = capsys.readouterr().err
    for name in ("best", "last"):
        checkpoint = os.path.join(run_dir, "checkpoints", f"{name}.keras")
        assert (f"warning: {checkpoint} could not be written: [Errno 28] No space left on "
                "device") in err, err


def test_ctrl_c_while_keras_loads_is_one_line(fake_cifar, monkeypatch, capsys):
    # A traceback of some 60 lines through TensorFlow's imports before.
    class InterruptTheImport:
        def find_spec(self, name, path=None, target=None):
            if name == "keras_resnet.training":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "keras_resnet.training", raising=False)
    monkeypatch.setattr(sys, "meta_path", [InterruptTheImport(), *sys.meta_path])
    try:
        code, _, err = run_train_main(["--data-dir", fake_cifar, "--epochs", "1"], capsys)
    except KeyboardInterrupt:  # not raised on: it would end the whole test session
        pytest.fail("the Ctrl-C went out of train.main as a KeyboardInterrupt")
    assert code == 130
    assert err.strip().splitlines() == ["Interrupted while starting; nothing was written."]


@pytest.fixture
def ctrl_c_in_the_second_epoch(monkeypatch):
    """`train.py` in this process gets a Ctrl-C as its second epoch begins."""
    import keras

    from keras_resnet import training

    class StopInSecondEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    make_callbacks = training.make_callbacks
    monkeypatch.setattr(training, "make_callbacks", lambda *args: (
        lambda made: ([*made[0], StopInSecondEpoch()], made[1]))(make_callbacks(*args)))


def test_ctrl_c_while_the_data_loads_names_the_default_runs_backup(fake_cifar, tmp_path, monkeypatch,
                                                                   capsys, ctrl_c_in_the_second_epoch):
    # The default folder was chosen after the data had loaded, so a Ctrl-C
    # there looked in ./backup and said "nothing to resume" of a run that
    # had one.
    from keras_resnet import run_folder, training

    monkeypatch.chdir(tmp_path)
    argv = ["--data-dir", fake_cifar, "--batch-size", "25", "--epochs", "3", "--stage-filters",
            "8,8,8,8", "--checkpoint-seconds", "0", "--no-export"]
    with monkeypatch.context() as m:
        # The interrupt names the folder the run chose: train() leaves the
        # caller's config alone, and train.py choosing again could name
        # another stopped run of these settings.
        m.setattr(run_folder, "default_output_dir", lambda config, root="runs": "runs/another-run")
        code, _, err = run_train_main(argv, capsys)
    saved = os.path.join("runs", "seed", "backup")
    assert code == 130 and f"The run is saved in {saved} after epoch 1" in err

    def interrupt(config):
        raise KeyboardInterrupt
    monkeypatch.setattr(training, "prepare_data", interrupt)
    code, _, err = run_train_main(argv, capsys)
    assert code == 130 and f"The run is saved in {saved} after epoch 1" in err
    assert "Resume with: python train.py --resume runs/seed" in err
    # A JAX run's line names its backend: the bare command resumed it on
    # TensorFlow.
    import train

    monkeypatch.setattr(train, "resume_command", lambda run_dir: f"RESUME {run_dir}")
    code, _, err = run_train_main(argv, capsys)  # the line is resume_command's
    assert code == 130 and "Resume with: RESUME runs/seed" in err
    monkeypatch.undo()
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert train.resume_command("runs/my seed") == (
        "KERAS_BACKEND=jax python train.py --resume 'runs/my seed'")


@pytest.mark.parametrize("seconds, saved", [
    ("0", "Interrupted. The run is saved in {run}/backup after epoch 1 (a backup is written at every "
          "epoch's end: --checkpoint-seconds 0)."),
    # The first epoch ends well within 30 s: no backup yet, though the
    # Ctrl-C writes the best epoch to checkpoints/best.keras.
    ("30", "Interrupted before the first backup was written (a backup is written at an epoch's "
           "end, at most every --checkpoint-seconds 30); nothing to resume."),
])
def test_a_ctrl_c_says_how_often_backups_are_written(seconds, saved, fake_cifar, tmp_path, capsys,
                                                     ctrl_c_in_the_second_epoch):
    # It said "checkpoints are at most --checkpoint-seconds 30 apart", the
    # flag being the least time between them, and "before the first
    # checkpoint was written" beside the checkpoints/best.keras just written.
    run = str(tmp_path / "run")
    code, _, err = run_train_main(["--data-dir", fake_cifar, "--batch-size", "25", "--epochs", "3",
                                   "--stage-filters", "8,8,8,8", "--checkpoint-seconds", seconds,
                                   "--no-export", "--output-dir", run], capsys)
    assert code == 130
    assert saved.format(run=run) in err.strip().splitlines()
    assert os.path.isfile(os.path.join(run, "checkpoints", "best.keras"))


def test_a_resumed_run_of_another_network_names_fixes_that_resume_can_take(fake_cifar, tmp_path,
                                                                           monkeypatch, capsys):
    # `--resume RUN` of a run whose preset built another network when it
    # started said "choose another folder, or pass --overwrite", which
    # --resume refuses ("drop --overwrite").
    from keras_resnet import presets
    from keras_resnet.config import TrainConfig
    from keras_resnet.run_folder import prepare_run_dir

    run = str(tmp_path / "run")
    prepare_run_dir(TrainConfig(data_dir=fake_cifar, epochs=1, batch_size=25, export=False,
                                stage_filters=[8, 8, 8, 8], output_dir=run))  # started, not finished
    monkeypatch.setitem(presets.PRESETS, "seed", dict(presets.PRESETS["seed"], stem_filters=32))
    code, _, err = run_train_main(["--resume", run], capsys)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert "changed since it started (stem_filters 64 then, 32 now)" in line
    assert "pass --overwrite" not in line
    assert line.endswith(f"or train it again with this one: python train.py --config {run}/config.json "
                         f"--output-dir NEW_FOLDER (or --output-dir {run} --overwrite, which deletes "
                         "the unfinished run).")
    # The advice works: a new run of the network the preset builds now.
    code, _, _ = run_train_main(["--config", f"{run}/config.json", "--output-dir", str(tmp_path / "new")],
                                capsys)
    assert code == 0
    assert json.loads((tmp_path / "new" / "layout.json").read_text())["stem_filters"] == 32
    code, _, _ = run_train_main(["--config", f"{run}/config.json", "--output-dir", run, "--overwrite"],
                                capsys)
    assert code == 0
    assert json.loads((tmp_path / "run" / "layout.json").read_text())["stem_filters"] == 32


def test_divergence_ends_the_run_with_exit_1_and_no_metrics(small_cifar, tmp_path):
    # Without --output-dir: the line names the folder the run chose.
    out = run_python([os.path.join(REPO, "train.py"), "--data-dir", small_cifar, "--batch-size", "50",
                      "--no-export", *NARROW, "--epochs", "2", "--learning-rate", "1e4"], cwd=tmp_path)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert "Training diverged: loss is nan at epoch 1, step" in last
    # Its rerun would diverge again, and the folder refuses another rate.
    assert last.endswith("The run stays in runs/seed; train again with a lower --learning-rate "
                         "and a new --output-dir (--overwrite would delete runs/seed).")
    assert (tmp_path / "runs" / "seed").is_dir() and not (tmp_path / "runs" / "seed" / "metrics.json").exists()


def test_divergence_keeps_last_good_checkpoint(tmp_path):
    from callbacks import AtomicModelCheckpoint, StopOnDivergence, TrainingDiverged
    from keras_resnet import load_model
    from tests.conftest import poison_logits_at, tiny_model_and_batch

    model, x, y = tiny_model_and_batch()
    last = str(tmp_path / "last.keras")
    with pytest.raises(TrainingDiverged, match="loss is nan at epoch 2, step 1"):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0,
                  callbacks=[StopOnDivergence(), AtomicModelCheckpoint(last), poison_logits_at(1)])
    kept = load_model(last)
    assert all(np.isfinite(w).all() for w in kept.get_weights())


def test_run_folder_never_reused_for_other_settings(small_cifar, tmp_path, capsys):
    run_dir = tmp_path / "run"
    base = train_cmd(small_cifar, run_dir, "--epochs", "1", "--train-size", "100")[2:]
    code, _, err = run_train_main(base, capsys)
    assert code == 0, err[-2000:]
    keras.backend.clear_session()
    config_before = (run_dir / "config.json").read_text()

    code, _, err = run_train_main(base, capsys)
    assert code == 2 and "holds a finished run" in err.strip().splitlines()[-1]
    code, _, err = run_train_main(base + ["--learning-rate", "0.05"], capsys)
    assert code == 2
    assert "holds a run with other settings (learning_rate)" in err.strip().splitlines()[-1]
    assert (run_dir / "config.json").read_text() == config_before

    code, _, err = run_train_main(base + ["--learning-rate", "0.05", "--overwrite"], capsys)
    assert code == 0, err[-2000:]
    assert json.loads((run_dir / "config.json").read_text())["learning_rate"] == 0.05


def test_unfinished_run_of_a_changed_preset_is_not_resumed_into_another_network(
        tmp_path, monkeypatch, capsys):
    from keras_resnet import presets
    from keras_resnet.config import ConfigError
    from keras_resnet.config import TrainConfig
    from keras_resnet.run_folder import default_output_dir
    from keras_resnet.run_folder import prepare_run_dir

    config = TrainConfig(preset="fast-cpu", output_dir=str(tmp_path / "runs" / "fast-cpu"))
    run_dir = prepare_run_dir(config)  # started, not finished
    layout = json.loads(open(os.path.join(run_dir, "layout.json")).read())
    assert layout["pooled_shortcut"] is True and layout["stage_filters"] == [48, 96, 192, 256]
    assert prepare_run_dir(config) == run_dir  # the same network resumes

    # A newer keras-resnet whose preset builds other shortcuts (the weights
    # have the same shapes, so loading the backup would not fail).
    monkeypatch.setitem(presets.PRESETS, "fast-cpu",
                        dict(presets.PRESETS["fast-cpu"], pooled_shortcut=False))
    config_before = open(os.path.join(run_dir, "config.json")).read()
    with pytest.raises(ConfigError, match=r"another network: preset 'fast-cpu' changed since it "
                       r"started \(pooled_shortcut True then, False now\)"):
        prepare_run_dir(config)
    assert open(os.path.join(run_dir, "config.json")).read() == config_before
    assert json.loads(open(os.path.join(run_dir, "layout.json")).read()) == layout
    # A run without a folder goes to a new one rather than into this one.
    assert default_output_dir(config, root=str(tmp_path / "runs")).endswith("fast-cpu-2")

    # A folder made before layout.json: resumed, with a note, and not
    # stamped with a layout that nobody knows it had.
    os.remove(os.path.join(run_dir, "layout.json"))
    assert prepare_run_dir(config) == run_dir
    assert "started before run folders recorded their network" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(run_dir, "layout.json"))


@pytest.mark.parametrize("file, key", [("layout.json", "pooled_shortcut"),
                                       ("config.json", "offset_lr_scale")])
def test_settings_added_later_count_as_their_defaults(tmp_path, file, key):
    # A run folder from before a network argument or a setting existed
    # resumes: it had its default then.
    from keras_resnet.config import TrainConfig
    from keras_resnet.run_folder import prepare_run_dir

    config = TrainConfig(output_dir=str(tmp_path / "run"))  # seed: pooled_shortcut False
    run_dir = prepare_run_dir(config)
    path = os.path.join(run_dir, file)
    older = json.loads(open(path).read())
    del older[key]  # as written before it existed
    open(path, "w").write(json.dumps(older))
    assert prepare_run_dir(config) == run_dir


@pytest.mark.parametrize("setting", [dict(checkpoint_seconds=600), dict(tta_views="flip-shift")])
def test_a_run_resumes_with_other_placement_settings(tmp_path, setting):
    # How often checkpoints are written and how the result is evaluated
    # change nothing that is trained: a stopped run resumes with others.
    import dataclasses

    from keras_resnet.config import TrainConfig
    from keras_resnet.run_folder import prepare_run_dir

    config = TrainConfig(output_dir=str(tmp_path / "run"))
    run_dir = prepare_run_dir(config)
    assert prepare_run_dir(dataclasses.replace(config, **setting)) == run_dir


@pytest.mark.parametrize("extra, message", [
    (["--train-size", "2000"], "--train-size 2000 is larger than the 100 training images"),
    (["--batch-size", "256"], "--batch-size 256 is larger than the 100 training images"),
    # It said "pass allow_over_cap=True", which no flag is.
    (["--stage-filters", "64,128,256,1024"], "--stage-filters/--stage-blocks give 13,316,554 "
     "parameters, over the cap of 5,000,000: use narrower or fewer stages, or fewer blocks."),
    (["--stage-filters", "64,128"], "--stage-filters 64,128 names 2 stages, but --stage-blocks "
     "1,1,1,1 (the preset's) names 4: pass --stage-blocks with 2 values too, e.g. --stage-blocks 1,1."),
    (["--stage-filters", "64,128", "--stage-blocks", "1,1,1"], "--stage-filters 64,128 names 2 "
     "stages, but --stage-blocks 1,1,1 names 3: give both as many values."),
    (["--epochs", "2", "--batch-size", "25", "--ema", "0.99"],
     "--ema 0.99 averages over about 100 steps, too many for this run's 8"),
    (["--lookahead", "1.5"], "--lookahead must be in [0, 1) (0 = off), got 1.5."),
])
def test_bad_sizes_exit_2_and_write_nothing(fake_cifar, tmp_path, extra, message, capsys):
    run_dir = tmp_path / "run"
    code, _, err = run_train_main(["--data-dir", fake_cifar, "--output-dir", str(run_dir), *extra],
                                  capsys)
    assert code == 2
    assert message in err.strip().splitlines()[-1]
    assert "Traceback" not in err
    assert not run_dir.exists()


def test_bad_data_folder_exits_2(fake_cifar, tmp_path, capsys):
    import pickle

    path = os.path.join(fake_cifar, "data_batch_1")
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    batch[b"labels"][0] = 10
    with open(path, "wb") as f:
        pickle.dump(batch, f)
    code, _, err = run_train_main(["--data-dir", fake_cifar, "--output-dir", str(tmp_path / "run")],
                                  capsys)
    assert code == 2
    assert "labels range from 0 to 10, expected 0-9" in err.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content, message", [
    ({"epochs": 1, "widths": [1]}, "unknown setting(s) ['widths']"),
    ({"epochs": "ten"}, "epochs must be int, got 'ten'"),
    ({"momentum": None}, "momentum must be float, got None"),  # only optional settings take null
    ({"export": None}, "export must be bool, got None"),
    ({"preset": ["seed"]}, "preset must be str, got ['seed']"),
    ({"learning_rate": 10**400}, "learning_rate must be at most 1e+300 in size, got an integer of 401 digits."),
    ({"momentum": 1e301}, "momentum must be at most 1e+300 in size, got 1e+301."),
    # It advised "pass --stage-blocks with 0 values too, e.g. --stage-blocks ."
    ({"stage_filters": []}, "stage_filters must be a non-empty list of positive integers, got [] (list)."),
])
def test_bad_config_json_exits_2(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(content))
    out = run_python(["train.py", "--config", str(path)])
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_keras_file_from_elsewhere_is_refused(tmp_path):
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Lambda(lambda x: x[:, 0, 0, :1] * 0 + 1)(inputs)
    path = str(tmp_path / "foreign.keras")
    keras.Model(inputs, outputs).save(path)
    out = run_python(["-m", "keras_resnet.export", path, "--export-dir", str(tmp_path / "e")])
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert "Cannot load" in last and "foreign.keras" in last
    # Not Keras' advice to pass safe_mode=False, which no flag can take.
    assert "it holds Python code (a lambda), which keras-resnet never runs" in last, last
    assert "safe_mode" not in last
    assert not (tmp_path / "e").exists()


def test_export_never_leaves_a_partial_version(tmp_path, monkeypatch):
    from keras_resnet import build_model
    from keras_resnet.export import export_saved_model

    model = build_model("seed", stage_filters=(8, 8, 8, 8))
    assert export_saved_model(model, str(tmp_path), "m").endswith("m/1")

    def broken(*args, **kwargs):  # fails after the SavedModel is written
        raise OSError("disk full")

    monkeypatch.setattr("keras_resnet.export.open", broken, raising=False)
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(model, str(tmp_path), "m")
    assert os.listdir(tmp_path / "m") == ["1"]


def test_same_seed_same_first_epoch_loss(fake_cifar, tmp_path):
    from keras_resnet.config import TrainConfig
    from keras_resnet.training import train

    losses = []
    for run in ("a", "b"):
        config = TrainConfig(epochs=1, batch_size=25, data_dir=fake_cifar, export=False,
                             stage_filters=[16, 16, 16, 16], output_dir=str(tmp_path / run))
        train(config)
        with open(tmp_path / run / "history.csv") as f:
            losses.append(float(next(csv.DictReader(f))["loss"]))
        keras.backend.clear_session()
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def losses_of_a_whole_and_a_resumed_run(root, **settings):
    """The per-epoch losses of a 3-epoch run of the seed preset (dropout,
    crops, random flips) on fake CIFAR-10 in `root`, and of the same run
    stopped by a Ctrl-C at epoch 2 and resumed."""
    from keras_resnet import training
    from keras_resnet.config import TrainConfig

    cifar = write_fake_cifar(os.path.join(root, "cifar"), per_batch=40)

    def run(name):
        training.train(TrainConfig(epochs=3, batch_size=25, data_dir=cifar, export=False,
                                   stage_filters=[16, 16, 16, 16], checkpoint_seconds=0,
                                   output_dir=os.path.join(root, name), **settings))
        keras.backend.clear_session()
        with open(os.path.join(root, name, "history.csv")) as f:
            return [float(row["loss"]) for row in csv.DictReader(f)]

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    make_callbacks = training.make_callbacks

    def with_ctrl_c(*args):
        callbacks, resumed_from = make_callbacks(*args)
        return callbacks + [CtrlC()], resumed_from

    uninterrupted = run("whole")
    training.make_callbacks = with_ctrl_c
    try:
        with pytest.raises(KeyboardInterrupt):
            run("resumed")
    finally:
        training.make_callbacks = make_callbacks
    keras.backend.clear_session()
    return uninterrupted, run("resumed")


def test_a_resumed_run_trains_as_the_uninterrupted_one(tmp_path):
    # Stopped after epoch 1 and resumed, a run draws the batches, crops,
    # flips and dropout of epochs 2 and 3, not those of epoch 1 again: its
    # losses are the uninterrupted run's.
    uninterrupted, resumed = losses_of_a_whole_and_a_resumed_run(str(tmp_path))
    assert resumed == pytest.approx(uninterrupted, rel=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="PyTorch is not installed (requirements-dev.txt leaves it out): "
                           "pip install torch to test KERAS_BACKEND=torch")
def test_a_resumed_run_with_dropout_trains_as_the_uninterrupted_one_on_torch(tmp_path):
    # The test above, on PyTorch, where Keras' Dropout without a seed draws
    # from torch's global generator, not from its SeedGenerator: the resumed
    # run, its generator seeded afresh, replayed epoch 1's dropout masks
    # (losses 2.5023 then 2.4249 uninterrupted, 2.5055 then 2.4140 resumed).
    script = ("import json, sys; import keras; "  # Keras (torch) before TensorFlow
              "from tests.test_reliability import losses_of_a_whole_and_a_resumed_run as losses; "
              "print(json.dumps([keras.backend.backend(), "
              "*losses(sys.argv[1], dropout=0.2, augment_on='host')]))")
    out = run_python(["-c", script, str(tmp_path)], env={"KERAS_BACKEND": "torch"})
    assert out.returncode == 0, out.stderr[-3000:]
    backend, uninterrupted, resumed = json.loads(out.stdout.strip().splitlines()[-1])
    assert backend == "torch"
    assert resumed == pytest.approx(uninterrupted, rel=1e-6)


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(fake_cifar, tmp_path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    code, _, err = run_train_main(["--data-dir", fake_cifar, "--batch-size", "25",
                                   "--output-dir", str(precious), "--overwrite"], capsys)
    assert code == 2
    assert "holds no keras-resnet run" in err.strip().splitlines()[-1]
    assert (precious / "thesis.txt").read_text() == "years of work"


def test_failure_after_fit_resumes_instead_of_retraining(fake_cifar, tmp_path, monkeypatch):
    from keras_resnet import training
    from keras_resnet.config import TrainConfig
    from keras_resnet.export import ExportError

    def config():
        return TrainConfig(epochs=2, batch_size=25, data_dir=fake_cifar, stage_filters=[16, 16, 16, 16],
                           output_dir=str(tmp_path / "run"), export_dir=str(tmp_path / "exports"))

    def broken_export(*args, **kwargs):
        raise ExportError("disk full")

    monkeypatch.setattr(training, "export_model", broken_export)
    with pytest.raises(ExportError):
        training.train(config())
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert (tmp_path / "run" / "backup").is_dir()  # kept: the run is not finished
    monkeypatch.undo()
    keras.backend.clear_session()

    metrics = training.train(config())
    assert metrics["epochs"] == 2 and metrics["export_path"].endswith("exports/keras_resnet/1")
    assert history_epochs(tmp_path / "run") == [0, 1]  # not trained again
    assert not (tmp_path / "run" / "backup").exists()


def test_a_run_stopped_at_its_target_resumes_after_a_failure_without_training_on(
        fake_cifar, tmp_path, monkeypatch, capsys):
    from keras_resnet import training
    from keras_resnet.config import TrainConfig
    from keras_resnet.export import ExportError

    def config():
        return TrainConfig(epochs=4, batch_size=25, data_dir=fake_cifar, stage_filters=[8, 8, 8, 8],
                           target_accuracy=0.01, output_dir=str(tmp_path / "run"),
                           export_dir=str(tmp_path / "exports"))

    def broken_export(*args, **kwargs):
        raise ExportError("disk full")

    monkeypatch.setattr(training, "export_model", broken_export)
    with pytest.raises(ExportError):
        training.train(config())
    stopped = history_epochs(tmp_path / "run")
    assert stopped == [0]  # it reached 1% in its first epoch
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    monkeypatch.undo()
    keras.backend.clear_session()
    capsys.readouterr()

    # It trained the epochs after its stop, to its next stop or the end,
    # and replaced model.keras with that network.
    metrics = training.train(config())
    assert "no epoch left to train" in capsys.readouterr().out
    assert metrics["epochs"] == 1 and history_epochs(tmp_path / "run") == stopped
    assert metrics["images_per_sec"] is None  # was 0.0: this `fit` trained no image
    for saved, resumed in zip(model.weights, keras.models.load_model(tmp_path / "run" / "model.keras").weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(saved), keras.ops.convert_to_numpy(resumed))


def test_overwrite_never_deletes_what_a_run_did_not_write(fake_cifar, tmp_path, capsys):
    # Another program's folder with a config.json of its own, and a run
    # folder the user put a file in.
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    (app / "config.json").write_text('{"name": "my-app"}')
    (app / "src" / "main.py").write_text("print('hello')")
    run = tmp_path / "run"
    code, _, _ = run_train_main(["--data-dir", fake_cifar, "--batch-size", "25", "--epochs", "1",
                                 "--stage-filters", "8,8,8,8", "--no-export",
                                 "--output-dir", str(run)], capsys)
    assert code == 0
    assert (run / "logs").is_dir() and (run / "checkpoints" / "best.keras").is_file()
    (run / "notes.txt").write_text("what I saw")
    (run / "logs" / "my_notes.txt").write_text("the curves looked odd")  # not only at the top
    (run / "checkpoints" / "keep_this.keras").write_bytes((run / "model.keras").read_bytes())
    for folder, message in ((app, "holds no keras-resnet run"),
                            (run, "holds files that no run writes (checkpoints/keep_this.keras, "
                                  "logs/my_notes.txt, notes.txt)")):
        code, _, err = run_train_main(["--data-dir", fake_cifar, "--batch-size", "25",
                                       "--output-dir", str(folder), "--overwrite"], capsys)
        assert code == 2
        assert message in err.strip().splitlines()[-1]
    assert (app / "src" / "main.py").read_text() == "print('hello')"
    assert (run / "notes.txt").read_text() == "what I saw"
    assert (run / "logs" / "my_notes.txt").read_text() == "the curves looked odd"
    assert (run / "checkpoints" / "keep_this.keras").is_file()
    assert (run / "model.keras").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--output-dir", ""], "--output-dir is empty: name a folder, or leave it out for runs/<preset>."),
    (["--output-dir", " "], "--output-dir is empty: name a folder, or leave it out for runs/<preset>."),
    (["--resume", "RUN", "--overwrite"], "--resume continues the run in its own folder, with "
                                         "its own settings; drop --overwrite"),
    (["--resume", "RUN", "--output-dir", "OTHER"], "drop --output-dir"),
    (["--resume", "RUN"], "the run's settings RUN/config.json cannot be read (JSONDecodeError"),
    (["--output-dir", "RUN"], "the run's settings RUN/config.json cannot be read"),
    (["--config", "BAD"], "--config BAD cannot be read (UnicodeDecodeError"),
    (["--config", "LIST"], "--config LIST holds a list, not a JSON object; pass a JSON object of settings."),
])
def test_conflicting_flags_and_unreadable_settings_are_refused_in_one_line(
        fake_cifar, tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)  # a blank --output-dir, taken, is a folder in the current one
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"epochs": ')  # cut short
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe{bad")
    (tmp_path / "list.json").write_text('[{"epochs": 1}]')
    names = {"RUN": str(run), "OTHER": str(tmp_path / "other"), "BAD": str(tmp_path / "bad.json"),
             "LIST": str(tmp_path / "list.json")}
    argv = [names.get(a, a) for a in argv]
    code, _, err = run_train_main(["--data-dir", fake_cifar, "--batch-size", "25", *argv], capsys)
    assert code == 2
    last = err.strip().splitlines()
    assert len(last) == 1 and message.replace("RUN", str(run)).replace(
        "BAD", names["BAD"]).replace("LIST", names["LIST"]) in last[0], err
    assert (run / "config.json").read_text() == '{"epochs": '  # as it was


def test_a_runs_config_json_as_a_template_trains_a_new_run_elsewhere(fake_cifar, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    code, _, _ = run_train_main(["--data-dir", fake_cifar, "--batch-size", "25", "--epochs", "1",
                                 "--stage-filters", "8,8,8,8", "--no-export", "--output-dir", str(run)], capsys)
    assert code == 0
    template = (run / "model.keras").read_bytes()
    monkeypatch.chdir(tmp_path)
    # Its output_dir sent the new run into the template's folder: refused
    # as other settings, and the --overwrite it advised deleted the template.
    code, _, err = run_train_main(["--config", str(run / "config.json"), "--seed", "1", "--overwrite"], capsys)
    assert code == 2 and "name the folder to replace" in err
    code, out, _ = run_train_main(["--config", str(run / "config.json"), "--seed", "1"], capsys)
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["run_dir"] == os.path.join("runs", "seed")
    assert json.loads((tmp_path / "runs" / "seed" / "config.json").read_text())["seed"] == 1
    assert (run / "model.keras").read_bytes() == template
    assert json.loads((run / "config.json").read_text())["seed"] == 0

    import train

    def folder(*argv):
        return train.config_from_args(train.build_parser().parse_args(list(argv))).output_dir

    # A copy keeps the file's output_dir, the original's folder: "other
    # settings" there, and --overwrite advised.
    copy = tmp_path / "archive" / "run"
    shutil.copytree(run, copy)
    assert folder("--config", str(copy / "config.json"), "--seed", "1") is None
    assert folder("--config", str(run / "config.json"), "--output-dir", "mine") == "mine"
    # An unfinished run of the same settings is resumed, as before; one of
    # other settings is not.
    (copy / "metrics.json").unlink()
    assert folder("--config", str(copy / "config.json")) == str(copy)
    assert folder("--config", str(copy / "config.json"), "--seed", "1") is None
    # The output_dir of a settings file that is no run's is the user's.
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "config.json").write_text('{"output_dir": "exp", "epochs": 1}')
    assert folder("--config", str(tmp_path / "exp" / "config.json")) == "exp"


def test_resume_is_refused_with_advice_that_resume_can_take(fake_cifar, tmp_path, capsys):
    from keras_resnet.atomic import write_json_atomic
    from keras_resnet.config import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    settings = TrainConfig(epochs=2, batch_size=25, data_dir=fake_cifar, output_dir=str(run)).to_dict()
    new_run = f"python train.py --config {run / 'config.json'} --output-dir NEW_FOLDER"

    def refusal(*argv):
        code, _, err = run_train_main(["--resume", str(run), *argv], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        return err.strip()

    # These said "pass --overwrite", which --resume then refused.
    write_json_atomic(str(run / "config.json"), settings)
    assert refusal("--epochs", "3", "--stage-filters", "8,8,8,8", "--preset", "seed") == (
        f"train.py: error: --resume continues {run} with its own settings, which --epochs 3, "
        "--stage-filters 8,8,8,8 would change (the run has 2, the preset's); drop the flag, or "
        f"start a new run with it: {new_run} --epochs 3 --stage-filters 8,8,8,8")
    assert refusal("--config", str(run / "config.json")).endswith("drop --config.")
    (run / "metrics.json").write_text("{}")
    assert refusal() == (
        f"train.py: error: --resume: {run} holds a finished run; nothing to resume. To train it "
        f"again with its settings: {new_run} (or --output-dir {run} --overwrite, which deletes "
        "the finished run).")
    # A bad setting in the run's file was blamed on "flags".
    write_json_atomic(str(run / "config.json"), dict(settings, epochs="1"))
    assert refusal().endswith(f"{run / 'config.json'}: epochs must be int, got '1' (str).")
    assert sorted(os.listdir(run)) == ["config.json", "metrics.json"]


def test_resume_takes_new_placement_from_flags_and_the_environment(fake_cifar, tmp_path, monkeypatch):
    import train
    from keras_resnet.atomic import write_json_atomic
    from keras_resnet.config import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    moved = str(tmp_path / "moved-away")  # the data folder the run was started with
    write_json_atomic(str(run / "config.json"), TrainConfig(
        epochs=2, data_dir=moved, output_dir=str(run), process_id=1).to_dict())

    def resume(*argv):
        return train.config_from_args(train.build_parser().parse_args(["--resume", str(run), *argv]))

    # Each process's own id comes from its environment, not from the
    # config.json that the last process to write it left.
    monkeypatch.setenv("KERAS_RESNET_PROCESS_ID", "0")
    # The saved, moved data folder was refused before the flag was read.
    config = resume("--data-dir", fake_cifar, "--epochs", "2")
    assert (config.data_dir, config.process_id) == (fake_cifar, 0)
    monkeypatch.setenv("CIFAR10_DIR", fake_cifar)
    assert resume().data_dir == fake_cifar


def test_a_run_on_a_relative_data_dir_resumes_from_another_folder(fake_cifar, tmp_path, monkeypatch):
    # config.json kept --data-dir as typed, relative to the folder the run
    # started in: `--resume RUN` from another folder was refused with
    # "--data-dir: no such folder 'cifar'", a flag the user had not passed.
    import train
    from keras_resnet.config import TrainConfig
    from keras_resnet.run_folder import prepare_run_dir

    monkeypatch.delenv("CIFAR10_DIR", raising=False)  # it gives the folder of a resumed run
    monkeypatch.chdir(os.path.dirname(fake_cifar))
    run = str(tmp_path / "run")
    prepare_run_dir(TrainConfig(epochs=2, data_dir=os.path.basename(fake_cifar), output_dir=run))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = train.config_from_args(train.build_parser().parse_args(["--resume", run]))
    assert config.data_dir == fake_cifar


def test_a_process_count_from_the_environment_is_checked_as_the_flag_is(
        fake_cifar, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KERAS_RESNET_NUM_PROCESSES", "-3")  # was accepted, as one process
    code, _, err = run_train_main(["--data-dir", fake_cifar, "--output-dir", str(tmp_path / "run")],
                                  capsys)
    assert code == 2 and err.splitlines() == [  # it named the flag, which was not given
        "train.py: error: $KERAS_RESNET_NUM_PROCESSES (read for --num-processes) must be a "
        "positive integer, got -3."]
    assert not (tmp_path / "run").exists()


def test_a_missing_data_folder_from_the_environment_names_the_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "moved"))
    code, _, err = run_train_main(["--output-dir", str(tmp_path / "run")], capsys)
    assert code == 2 and err.splitlines() == [  # it blamed --data-dir, which was not given
        f"train.py: error: $CIFAR10_DIR (read for --data-dir): no such folder "
        f"'{tmp_path / 'moved'}'; give a python-version CIFAR-10 folder (data_batch_1..5, "
        "test_batch, batches.meta)."]
    code, _, err = run_train_main(["--output-dir", str(tmp_path / "run"), "--data-dir",
                                   str(tmp_path / "gone")], capsys)
    assert code == 2 and err.startswith("train.py: error: --data-dir: no such folder")
    assert not (tmp_path / "run").exists()


def test_paths_that_are_files_are_refused_before_anything_runs(fake_cifar, tmp_path, capsys):
    # The export folder was found to be a file only after training.
    from keras_resnet import tune_project
    from keras_resnet.config import ConfigError

    (tmp_path / "keras_resnet").write_text("not a folder")
    code, _, err = run_train_main(["--data-dir", fake_cifar, "--batch-size", "25",
                                   "--export-dir", str(tmp_path),
                                   "--output-dir", str(tmp_path / "run")], capsys)
    assert code == 2
    assert "cannot be created or written to as a folder" in err.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="cannot be created or written to as a folder"):
        tune_project.check_project(str(tmp_path / "keras_resnet" / "resnet"), {"tuner": "random"})


def test_settings_that_failed_deep_inside_are_refused_up_front(tmp_path, monkeypatch):
    # Each was a traceback after the data loaded, or a silent wrong run.
    from keras_resnet import training
    from keras_resnet import run_folder
    from keras_resnet.config import ConfigError, TrainConfig

    (tmp_path / "afile").write_text("")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("")  # where runs go without --output-dir
    for settings, message in (
        (dict(output_dir="afile/run"), "--output-dir 'afile/run' cannot be created"),  # NotADirectoryError
        (dict(output_dir="dangling"), "--output-dir 'dangling' cannot be created"),  # FileNotFoundError
        # Skipped the export silently; with device augmentation, a traceback.
        (dict(output_dir="r", process_id=1), "--process-id 1 (or $KERAS_RESNET_PROCESS_ID) is "
                                             "for runs of several JAX processes"),
        (dict(output_dir="r", process_id=-3), "--process-id -3"),
        # Ignored on one process.
        (dict(output_dir="r", coordinator_address="nohost"), "--coordinator-address nohost (or "
                                                             "$KERAS_RESNET_COORDINATOR) is for runs of "
                                                             "several JAX processes"),
        (dict(output_dir="r", epochs=10**20), "--epochs must be at most 1,000,000"),  # TypeError
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            TrainConfig(**settings).validate()
    TrainConfig(output_dir="r", process_id=0).validate()  # process 0 of one is fine
    TrainConfig().validate()  # tune and bench, which write no run, are not refused for runs/
    with pytest.raises(ConfigError, match="'runs', where runs go without --output-dir, cannot be "):
        training.train(TrainConfig(data_dir=str(tmp_path)))  # was a NotADirectoryError after the data

    # --overwrite through a link to a run: shutil.rmtree raised OSError.
    run = tmp_path / "run"
    run.mkdir()
    config = TrainConfig(epochs=1, output_dir=str(run))
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    os.symlink(run, tmp_path / "link")
    config.output_dir = str(tmp_path / "link")
    with pytest.raises(ConfigError, match=f"is a link to {re.escape(str(run))}: to replace that run"):
        run_folder.prepare_run_dir(config, overwrite=True)
    assert os.listdir(run) == ["config.json"]


def _finished_run(folder):
    from keras_resnet.config import TrainConfig

    (folder / "checkpoints").mkdir(parents=True)
    config = TrainConfig(epochs=1, output_dir=str(folder))
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    (folder / "metrics.json").write_text("{}")
    (folder / "checkpoints" / "best.keras").write_bytes(b"the best epoch")
    return config


def test_an_overwrite_that_cannot_delete_a_file_leaves_no_half_run(tmp_path, monkeypatch, capsys):
    # `rmtree` deleted metrics.json, then stopped at a file it could not
    # delete with a traceback, and the same command took up what was left
    # as an unfinished run.
    from keras_resnet import run_folder

    run = tmp_path / "run"
    config = _finished_run(run)
    unlink = os.unlink
    def refuse_the_checkpoint(name, *args, **kwargs):
        if os.path.basename(name) == "best.keras":
            raise PermissionError(1, "Operation not permitted", name)
        return unlink(name, *args, **kwargs)
    monkeypatch.setattr(os, "unlink", refuse_the_checkpoint)
    assert run_folder.prepare_run_dir(config, overwrite=True) == str(run)
    assert sorted(os.listdir(run)) == ["checkpoints", "config.json", "layout.json"]
    assert os.listdir(run / "checkpoints") == []
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith(".overwritten-run-")]
    assert os.listdir(aside / "checkpoints") == ["best.keras"]
    err = capsys.readouterr().err
    assert "could not be deleted completely (Operation not permitted: best.keras)" in err
    assert f"what is left of it is in {aside}." in err


def test_an_overwrite_from_inside_the_run_is_refused_and_deletes_nothing(tmp_path, monkeypatch):
    # The run was deleted from under the command, which then failed with a
    # traceback (or, with an absolute --output-dir, at the export): no run.
    from keras_resnet import run_folder
    from keras_resnet.config import ConfigError

    run = tmp_path / "run"
    config = _finished_run(run)
    for here, output_dir in ((run / "checkpoints", str(run)), (run / "checkpoints", ".."), (run, str(run)),
                             (run, ".")):
        monkeypatch.chdir(here)
        config.output_dir = output_dir
        with pytest.raises(ConfigError, match=r"is the folder this command runs in, or holds it: "
                                              r"--overwrite would delete it from under the command"):
            run_folder.prepare_run_dir(config, overwrite=True)
    assert sorted(os.listdir(run)) == ["checkpoints", "config.json", "metrics.json"]
    assert os.listdir(run / "checkpoints") == ["best.keras"]
    # A folder whose name begins with the run's is another folder.
    (tmp_path / "run2").mkdir()
    monkeypatch.chdir(tmp_path / "run2")
    config.output_dir = str(run)
    assert run_folder.prepare_run_dir(config, overwrite=True) == str(run)


def test_an_overwrite_that_cannot_move_the_run_deletes_nothing(tmp_path, monkeypatch):
    from keras_resnet import run_folder
    from keras_resnet.config import ConfigError

    run = tmp_path / "run"
    config = _finished_run(run)
    replace = os.replace
    def refuse_the_run(source, *args, **kwargs):
        if str(source) == str(run):
            raise PermissionError(13, "Permission denied", str(source))
        return replace(source, *args, **kwargs)
    monkeypatch.setattr(os, "replace", refuse_the_run)
    with pytest.raises(ConfigError, match="cannot be replaced \\(Permission denied: .*\\); nothing was deleted"):
        run_folder.prepare_run_dir(config, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["run"]
    assert sorted(os.listdir(run)) == ["checkpoints", "config.json", "metrics.json"]
    # A parent folder where nothing can be made: a traceback from mkdtemp.
    def refuse_a_folder(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted", str(tmp_path / ".overwritten-run-x"))
    monkeypatch.setattr(tempfile, "mkdtemp", refuse_a_folder)
    with pytest.raises(ConfigError, match="cannot be replaced \\(Operation not permitted: .*\\); nothing was deleted"):
        run_folder.prepare_run_dir(config, overwrite=True)
    assert sorted(os.listdir(run)) == ["checkpoints", "config.json", "metrics.json"]


def test_a_run_started_while_another_loads_its_data_takes_the_next_default_folder(
        fake_cifar, tmp_path, monkeypatch, capsys):
    # Runs started together without --output-dir (seeds 0-3, as the README
    # gives the GPU runs): the folder is chosen once the data has loaded,
    # so a run that made runs/seed meanwhile is not taken for this one's.
    from keras_resnet import training
    from keras_resnet.config import TrainConfig

    load = training.prepare_data
    def another_run_starts(config):
        os.makedirs(os.path.join("runs", "seed", "checkpoints"))
        other = TrainConfig(seed=1, output_dir=os.path.join("runs", "seed"))
        with open(os.path.join("runs", "seed", "config.json"), "w") as f:
            json.dump(other.to_dict(), f)
        return load(config)
    monkeypatch.setattr(training, "prepare_data", another_run_starts)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_train_main(["--data-dir", fake_cifar, "--batch-size", "25", "--epochs", "1",
                                   "--stage-filters", "8,8,8,8", "--no-export"], capsys)
    assert code == 0, err
    assert os.path.isfile(os.path.join("runs", "seed-2", "metrics.json"))


def test_backup_of_another_network_is_refused_in_one_line(fake_cifar, tmp_path, monkeypatch):
    from keras_resnet import presets, training
    from keras_resnet.config import ConfigError, TrainConfig

    config = TrainConfig(epochs=2, batch_size=25, data_dir=fake_cifar, stage_filters=[16, 16, 16, 16],
                         output_dir=str(tmp_path / "run"), export=False)

    def broken_evaluation(*args, **kwargs):  # leaves the run unfinished, its backup kept
        raise OSError("disk full")

    monkeypatch.setattr(training, "evaluate_held_out", broken_evaluation)
    with pytest.raises(OSError, match="disk full"):
        training.train(config)
    keras.backend.clear_session()
    # A folder from before layout.json, and a preset whose stem changed since.
    os.remove(tmp_path / "run" / "layout.json")
    monkeypatch.setitem(presets.PRESETS, "seed", dict(presets.PRESETS["seed"], stem_filters=8))
    with pytest.raises(ConfigError, match=r"holds the weights of another network .*Resume it with "
                       r"the keras-resnet version that started it"):
        training.train(config)
    assert (tmp_path / "run" / "backup" / "latest.weights.h5").is_file()  # kept as it was


def test_stale_partial_checkpoint_never_replaces_the_best(tmp_path):
    from callbacks import AtomicModelCheckpoint
    from keras_resnet import build_model, load_model

    model = build_model("seed", stage_filters=(8, 8, 8, 8))
    model.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
    best = tmp_path / "best.keras"
    model.save(str(best))
    good = best.read_bytes()
    (tmp_path / ".partial.best.keras").write_bytes(b"half-written junk")  # left by a crash
    x = np.zeros((8, 32, 32, 3), "float32")
    y = np.eye(10, dtype="float32")[np.arange(8)]
    model.fit(x, y, epochs=1, verbose=0, callbacks=[AtomicModelCheckpoint(
        str(best), monitor="accuracy", initial_value_threshold=2.0)])  # no epoch can beat it
    assert best.read_bytes() == good
    assert not (tmp_path / ".partial.best.keras").exists()
    load_model(str(best))


def test_what_a_run_writes_is_never_called_foreign(tmp_path):
    from keras_resnet.run_folder import files_no_run_writes

    run = tmp_path / "run"
    owned = ["config.json", "layout.json", "history.csv", "metrics.json", "model.keras",
             "config.json.partial", "checkpoints/best.keras", "checkpoints/last.keras",
             "checkpoints/.partial.last.keras", "backup/latest.weights.h5",
             "backup/latest.weights.h5.bkp", "backup/training_metadata.json",
             "backup/training_metadata.json.bkp", "logs/train/events.out.tfevents.1.host.v2",
             # a backup set aside at a resume (`recover_backup`): --overwrite refused it
             "backup/latest.weights.h5.unreadable", "backup/training_metadata.json.unreadable",
             "logs/validation/events.out.tfevents.2.host.v2", "evaluation/evaluation.json",
             "evaluation/confusion_matrix.png", "evaluation/mistakes.png", "evaluation/loss.png",
             # evaluate's default: one folder per model file of the run
             "evaluation/best/evaluation.json", "evaluation/best/accuracy.png",
             "evaluation/last-2/evaluation.json", "evaluation/last-2/learning_rate.png"]
    for name in owned:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("x")
    assert files_no_run_writes(str(run)) == []
    (run / "checkpoints" / "old").mkdir()
    (run / "backup" / "notes.txt").write_text("mine")
    (run / "evaluation" / "slides.png").write_text("mine")
    (run / "logs" / "elsewhere").symlink_to(tmp_path)
    (run / "evaluation" / "best" / "notes.txt").write_text("mine")
    (run / "evaluation" / "best" / "older").mkdir()
    # A link counts as foreign, named as a run's file too (--overwrite would delete the user's link).
    (tmp_path / "my.keras").write_text("mine")
    (run / "checkpoints" / "best.keras").unlink()
    (run / "checkpoints" / "best.keras").symlink_to(tmp_path / "my.keras")
    assert files_no_run_writes(str(run)) == [
        "backup/notes.txt", "checkpoints/best.keras", "checkpoints/old", "evaluation/best/notes.txt",
        "evaluation/best/older", "evaluation/slides.png", "logs/elsewhere"]


def test_a_folder_that_the_up_front_check_let_through_but_cannot_be_made_is_one_line(
        tmp_path, monkeypatch):
    # The up-front check trusts os.access, which says yes to root even where
    # makedirs fails (/sys): the export after training, and the run folder,
    # were a PermissionError traceback.
    from keras_resnet import build_model
    from keras_resnet import export as export_module
    from keras_resnet import run_folder
    from keras_resnet.config import ConfigError, TrainConfig

    (tmp_path / "afile").write_text("")
    monkeypatch.setattr("keras_resnet.paths.can_create_folder", lambda path: True)
    model = build_model("seed", stage_filters=(8, 8, 8, 8))
    with pytest.raises(export_module.ExportError,
                       match=r"afile/m cannot be created \(Not a directory\): choose another --export-dir\."):
        export_module.export_saved_model(model, str(tmp_path / "afile"), "m")
    config = TrainConfig(epochs=1, output_dir=str(tmp_path / "afile" / "run"))
    with pytest.raises(ConfigError, match=r"afile/run cannot be created \(Not a directory\); choose another"):
        run_folder.prepare_run_dir(config)
    assert (tmp_path / "afile").read_text() == ""


def test_a_config_json_that_repeats_a_key_is_refused(tmp_path):
    # json.load kept the last "epochs" without a word.
    path = tmp_path / "config.json"
    path.write_text('{"epochs": 3, "epochs": 5, "data_dir": "/nonexistent"}')  # nothing trains if missed
    out = run_python(["train.py", "--config", str(path), "--output-dir", str(tmp_path / "run")])
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"train.py: error: --config {path} cannot be read (ValueError: the key(s) ['epochs'] appear "
        "more than once); pass a JSON object of settings."]
    assert not (tmp_path / "run").exists()


def test_a_run_folder_in_use_by_another_run_is_refused(
        fake_cifar, tmp_path, monkeypatch, capsys, folder_held_by_another_process):
    # The same command started twice: the second "resumed" the first's live
    # run, and both wrote history.csv rows, backups and exports into it.
    import train

    monkeypatch.chdir(tmp_path)
    argv = ["--data-dir", fake_cifar, "--batch-size", "25", "--epochs", "2", "--stage-filters",
            "16,16,16,16", "--no-export"]
    run = tmp_path / "runs" / "seed"
    run.mkdir(parents=True)
    config = train.config_from_args(train.build_parser().parse_args([*argv, "--output-dir", str(run)]))
    (run / "config.json").write_text(json.dumps(config.to_dict()))  # started, no epoch done yet
    folder_held_by_another_process(run)

    code, _, err = run_train_main([*argv, "--output-dir", str(run)], capsys)
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"train.py: error: --output-dir {run} is in use: another training run is writing it now. "
        "Wait for that run to end, or choose another folder.")
    assert sorted(os.listdir(run)) == ["config.json"]

    # Without --output-dir, the next folder is taken, not the one in use.
    code, _, err = run_train_main(argv, capsys)
    assert code == 0, err
    assert sorted(os.listdir(run)) == ["config.json"]
    assert (tmp_path / "runs" / "seed-2" / "metrics.json").is_file()
    # A folder refused for what it holds is let go at once (this process
    # held it on: others were told "in use" until it ended).
    code, _, err = run_train_main([*argv, "--output-dir", str(tmp_path / "runs" / "seed-2")], capsys)
    assert code == 2 and "holds a finished run" in err
    folder_held_by_another_process(tmp_path / "runs" / "seed-2")


def test_a_run_folder_another_run_is_making_is_in_use_not_foreign(
        fake_cifar, tmp_path, capsys, folder_held_by_another_process):
    # Two processes given one --output-dir at once: the second found the
    # folder the first had just made (checkpoints/, no config.json yet) and
    # was told it "holds no keras-resnet run" (seen in CI under load).
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    folder_held_by_another_process(run)
    argv = ["--data-dir", fake_cifar, "--batch-size", "25", "--epochs", "1", "--no-export", "--output-dir", str(run)]
    code, _, err = run_train_main(argv, capsys)
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"train.py: error: --output-dir {run} is in use: another training run is writing it now. "
        "Wait for that run to end, or choose another folder.")
    assert sorted(os.listdir(run)) == ["checkpoints"]


def test_the_folder_an_overwrite_makes_is_held_in_its_turn(tmp_path):
    # --overwrite replaces the run folder: the lock on the old one's inode
    # does not hold the new one, which another run could then have taken.
    import dataclasses

    from keras_resnet.config import TrainConfig
    from keras_resnet.folder_lock import release_folder
    from keras_resnet.run_folder import prepare_run_dir

    config = TrainConfig(output_dir=str(tmp_path / "run"))
    run = prepare_run_dir(config)
    inode = os.stat(run).st_ino
    try:
        assert prepare_run_dir(dataclasses.replace(config, learning_rate=0.05), overwrite=True) == run
        assert os.stat(run).st_ino != inode  # a new folder
        other = run_python(["-c", "import sys; from keras_resnet.folder_lock import hold_folder; "
                            "print(hold_folder(sys.argv[1]))", run])
        assert other.stdout.strip() == "False", other.stderr
    finally:
        release_folder(run)


def test_a_file_system_without_locks_runs_unlocked(tmp_path, monkeypatch):
    # flock fails with ENOLCK/EOPNOTSUPP on some network file systems: every
    # run there would be refused as "in use".
    from keras_resnet import folder_lock

    def no_locks(*args):
        raise OSError(37, "No locks available")
    monkeypatch.setattr(folder_lock.fcntl, "flock", no_locks)
    try:
        assert folder_lock.hold_folder(str(tmp_path))
    finally:
        folder_lock.release_folder(str(tmp_path))


def test_an_output_folder_that_cannot_be_written_is_refused_up_front(tmp_path, monkeypatch):
    # As root every folder passes the permission bits, so `os.access` is
    # what says a read-only folder is one.
    from keras_resnet.config import ConfigError
    from keras_resnet.config import TrainConfig

    monkeypatch.setattr(os, "access", lambda path, mode, **kwargs: False)
    with pytest.raises(ConfigError, match=r"--output-dir '.*run' cannot be created or written to as "
                                          r"a folder\.$"):
        TrainConfig(output_dir=str(tmp_path / "run")).validate()
