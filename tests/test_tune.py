"""The hyperparameter search: tiny searches on a small fake CIFAR-10."""

import csv
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from tests.conftest import REPO
from tests.conftest import call_main
from tests.conftest import run_python
from tests.conftest import run_train_main
from tests.conftest import write_fake_cifar

from keras_resnet import tune
from keras_resnet import tune_project
from keras_resnet.hypermodel import ResNetHyperModel
from keras_resnet.hypermodel import search_space
from keras_resnet.model import PARAM_CAP
from keras_resnet.presets import PRESETS
from keras_resnet.training import ConfigError
from keras_resnet.config import TrainConfig
from keras_resnet.folder_lock import release_folder

# Narrow networks on the seed preset (7x7/2 stem): a trial takes seconds.
TINY = [
    "--preset", "seed", "--widths", "8,16/8,16/16/16", "--blocks", "1",
    "--epochs-per-trial", "1", "--train-size", "256", "--validation-size", "64",
    "--verbose", "0",
]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    # 300 training images (60 per batch file), 20 test images.
    return write_fake_cifar(str(tmp_path_factory.mktemp("data") / "cifar"), per_batch=60)


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def read_summary(project_dir):
    with open(os.path.join(project_dir, tune_project.SUMMARY_FILE)) as f:
        return list(csv.DictReader(f))


def trial_files(project_dir):
    return {
        name: open(os.path.join(project_dir, name, "trial.json")).read()
        for name in sorted(os.listdir(project_dir))
        if os.path.isfile(os.path.join(project_dir, name, "trial.json"))
    }


def trial_values(project_dir):
    values = []
    for text in trial_files(project_dir).values():
        trial = json.loads(text)
        values.append({k: v for k, v in trial["hyperparameters"]["values"].items()
                       if not k.startswith("tuner/")})
    return values


def run_main(argv, capsys):
    """`python -m keras_resnet.tune argv`, in this process; its JSON line."""
    assert tune.main(argv) == 0
    stdout = capsys.readouterr().out
    return last_json(stdout), stdout


def test_best_config_trains_with_the_recipe_of_the_trials_for_every_preset(tmp_path):
    # train.py starts from the preset's recipe: each setting the recipe has
    # (but the epochs) must come from the file. `fast-cpu`'s batch-norm
    # offsets trained at 16x the rate where its trials had 1x.
    import train
    from keras_resnet.presets import RECIPES

    def as_json(config, key):  # tuples as lists, as the file has them
        return json.dumps(getattr(config, key))

    # Every setting of what is trained but the data sizes, the epochs, the
    # seed and how the run goes: one left out (momentum, of a search from
    # Python) trains at train.py's default, not as the trials did.
    assert set(TrainConfig().identity()) - set(tune_project.BEST_CONFIG_KEYS) == {
        "train_size", "validation_size", "epochs", "seed", "target_accuracy", "augment_on", "jit_compile"}
    recipe_keys = {key for recipe in RECIPES.values() for key in recipe} - {"epochs"}
    for preset in RECIPES:
        trial = TrainConfig(preset=preset, stage_filters=(8, 8, 16, 16), dropout=0.1)
        path = tmp_path / f"{preset}.json"
        path.write_text(json.dumps({key: getattr(trial, key)
                                    for key in tune_project.BEST_CONFIG_KEYS}))
        config = train.config_from_args(train.build_parser().parse_args(["--config", str(path)]))
        differ = {key for key in recipe_keys | set(tune_project.BEST_CONFIG_KEYS)
                  if as_json(config, key) != as_json(trial, key)}
        assert differ == set(), (preset, differ)


def test_search_writes_table_and_best_config_that_train_py_trains(cifar, tmp_path, capsys):
    result, stdout = run_main([*TINY, "--max-trials", "3", "--data-dir", cifar,
                               "--directory", str(tmp_path / "tuning runs")], capsys)
    project = result["project_dir"]
    # A command to paste, quoted (a space in --directory split it).
    assert f"Train the best: python train.py --config '{result['best_config']}'" in stdout
    assert (result["trials"], result["completed"], result["rejected"]) == (3, 3, 0)
    rows = read_summary(project)
    assert [r["trial"] for r in rows] == ["0", "1", "2"]
    assert {r["status"] for r in rows} == {"completed"}
    assert all(int(r["params"]) <= PARAM_CAP and r["val_accuracy"] for r in rows)
    assert "val_accuracy" in stdout and "Top 3:" in stdout
    # Each trial's score is KerasTuner's; the best is the highest, and the
    # ranking runs down from it.
    scores = {}
    for name in os.listdir(project):
        if os.path.isfile(os.path.join(project, name, "trial.json")):
            with open(os.path.join(project, name, "trial.json")) as f:
                trial = json.load(f)
            scores[trial["trial_id"]] = round(trial["score"], 4)
    assert {r["trial"]: float(r["val_accuracy"]) for r in rows} == scores
    assert result["best_val_accuracy"] == max(scores.values())
    best_row = next(r for r in rows if r["trial"] == result["best_trial"])
    assert float(best_row["val_accuracy"]) == max(scores.values())
    ranked = [t["val_accuracy"] for t in result["top"]]
    assert ranked == sorted(scores.values(), reverse=True)
    # Everything a search wrote is its own: --overwrite may replace it.
    assert tune_project.files_no_search_writes(project) == []

    with open(result["best_config"]) as f:
        best = json.load(f)
    assert set(best) == set(tune_project.BEST_CONFIG_KEYS)
    # The best trial's own hyperparameters.
    assert "/".join(map(str, best["stage_filters"])) == best_row["widths"]
    assert best["dropout"] == float(best_row["dropout"])
    assert round(best["learning_rate"], 5) == float(best_row["learning_rate"])
    assert round(best["weight_decay"], 6) == float(best_row["weight_decay"])
    assert best["batch_size"] == 128 and best["cutout"] == 0  # the recipe the trials used
    assert best["preset"] == "seed" and best["stage_blocks"] == [1, 1, 1, 1]
    TrainConfig.from_dict(best)

    keras.backend.clear_session()
    code, stdout, err = run_train_main([
        "--config", result["best_config"], "--epochs", "1",
        "--train-size", "256", "--data-dir", cifar,
        "--output-dir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "export"),
    ], capsys)
    assert code == 0, err[-3000:]
    metrics = last_json(stdout)
    assert metrics["params"] == result["best_params"]
    assert metrics["epochs"] == 1 and metrics["export_path"]

    # A file of KerasTuner's cut short (a crash mid-write): one line, kept.
    oracle = os.path.join(project, "oracle.json")
    with open(oracle, "r+") as f:
        f.truncate(os.path.getsize(oracle) // 2)
    cut = open(oracle).read()
    code, _, err = call_main(tune.main, [*TINY, "--max-trials", "3", "--data-dir", cifar,
                                         "--directory", str(tmp_path / "tuning runs")], capsys)
    assert code == 2 and err.splitlines()[-1].startswith(
        f"python -m keras_resnet.tune: error: {project}: KerasTuner's saved search cannot be read "
        "(JSONDecodeError: "), err
    assert open(oracle).read() == cut


def test_over_cap_configurations_are_rejected_counted_and_never_trained(
    cifar, tmp_path, monkeypatch
):
    from keras_resnet import training

    trained_sizes, built_sizes = [], []
    fit, build_model = keras.Model.fit, training.build_model

    def spy(model, *args, **kwargs):
        trained_sizes.append(model.count_params())
        return fit(model, *args, **kwargs)

    def build_spy(*args, **kwargs):
        model = build_model(*args, **kwargs)
        built_sizes.append(model.count_params())
        return model

    monkeypatch.setattr(keras.Model, "fit", spy)
    monkeypatch.setattr(training, "build_model", build_spy)
    config = TrainConfig(preset="seed", train_size=256, validation_size=64, seed=4,
                         data_dir=cifar)
    # A last stage of 768 or 800 filters is over the cap. With this seed the
    # first four draws are over it: KerasTuner's default would stop at three.
    result = tune.search(
        config, tuner="random", max_trials=6, epochs_per_trial=1,
        directory=str(tmp_path), widths=[[8], [8], [8], [8, 768, 800]],
        blocks=[1], dropouts=[0.0], verbose=0,
    )
    rows = read_summary(result["project_dir"])
    rejected = [r for r in rows if r["status"] == "rejected"]
    assert result["trials"] == len(rows) == 6  # rejections never end the search
    assert [r["status"] for r in rows[:4]] == ["rejected"] * 4
    assert result["rejected"] == result["rejected_here"] == len(rejected)
    assert all(int(r["params"]) > PARAM_CAP and not r["val_accuracy"] for r in rejected)
    assert not any(os.path.exists(os.path.join(
        result["project_dir"], f"trial_{r['trial']}", "checkpoint.weights.h5"))
        for r in rejected)
    assert len(trained_sizes) == result["completed"] == result["trained"] >= 1
    assert max(trained_sizes) <= PARAM_CAP
    # Not even built: counted from the shapes (each was built, weights and
    # all, only to be counted).
    assert len(built_sizes) >= result["completed"] and max(built_sizes) <= PARAM_CAP
    with open(result["best_config"]) as f:
        assert json.load(f)["stage_filters"] == [8, 8, 8, 8]


def test_a_trial_scores_its_best_epoch_not_its_last(cifar, tmp_path, monkeypatch):
    fit = keras.Model.fit

    def with_a_late_drop(model, *args, **kwargs):  # the real training, then a history to score
        history = fit(model, *args, **kwargs)
        history.history["val_accuracy"] = [0.25, 0.75, 0.5]
        return history

    monkeypatch.setattr(keras.Model, "fit", with_a_late_drop)
    config = TrainConfig(preset="seed", train_size=256, validation_size=64, data_dir=cifar)
    result = tune.search(
        config, tuner="random", max_trials=1, epochs_per_trial=1, directory=str(tmp_path),
        widths=[[8]] * 4, blocks=[1], dropouts=[0.0], verbose=0,
    )
    assert result["best_val_accuracy"] == 0.75
    assert [float(r["val_accuracy"]) for r in read_summary(result["project_dir"])] == [0.75]


def test_the_best_is_kerastuners_best_where_the_table_rounds_two_scores_alike(
        cifar, tmp_path, monkeypatch):
    # 2,469 and 2,470 right of 20,000 validation images both print as
    # 0.1235: the first trial was named best (best_config.json, the JSON
    # line, the top), though KerasTuner's best was the second.
    fit, scores = keras.Model.fit, [2469 / 20000, 2470 / 20000]

    def scored(model, *args, **kwargs):
        history = fit(model, *args, **kwargs)
        history.history["val_accuracy"] = [scores.pop(0)]
        return history

    monkeypatch.setattr(keras.Model, "fit", scored)
    config = TrainConfig(preset="seed", train_size=256, validation_size=64, data_dir=cifar)
    result = tune.search(config, tuner="random", max_trials=2, epochs_per_trial=1,
                         directory=str(tmp_path), widths=[[8]] * 4, blocks=[1], verbose=0)
    rows = read_summary(result["project_dir"])
    assert [r["val_accuracy"] for r in rows] == ["0.1235", "0.1235"]
    hypermodel = ResNetHyperModel(config, widths=[[8]] * 4, blocks=[1])
    [kerastuners] = tune.make_tuner(hypermodel, "random", 2, 1, str(tmp_path)).oracle.get_best_trials()
    assert result["best_trial"] == kerastuners.trial_id == "1"
    assert [t["trial"] for t in result["top"]] == ["1", "0"]
    with open(result["best_config"]) as f:
        best = json.load(f)
    assert round(best["learning_rate"], 5) == float(rows[1]["learning_rate"])


def test_a_diverging_trial_is_failed_not_rejected_and_names_no_best(cifar, tmp_path):
    # Six steps at a learning rate of 10**8: the loss becomes NaN.
    config = TrainConfig(preset="seed", batch_size=32, train_size=256, validation_size=64,
                         data_dir=cifar)
    result = tune.search(
        config, tuner="random", max_trials=2, epochs_per_trial=1, directory=str(tmp_path),
        widths=[[8]] * 4, blocks=[1], dropouts=[0.0], learning_rate=(1e8, 1e8), verbose=0,
    )
    rows = read_summary(result["project_dir"])
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert (result["failed"], result["rejected"], result["completed"]) == (2, 0, 0)
    assert all(int(r["params"]) <= PARAM_CAP and not r["val_accuracy"] for r in rows)
    assert result["best_config"] is None
    assert not os.path.exists(os.path.join(result["project_dir"], tune_project.BEST_CONFIG_FILE))


def test_a_search_whose_every_trial_failed_exits_1_naming_the_error(cifar, tmp_path, capsys,
                                                                     monkeypatch):
    # It printed its JSON line with no best and exited 0, as a finished search.
    monkeypatch.setattr(tune, "search", functools.partial(tune.search, learning_rate=(1e8, 1e8)))
    args = [*TINY, "--tuner", "random", "--max-trials", "2", "--batch-size", "32",
            "--data-dir", cifar, "--directory", str(tmp_path)]  # 8 steps: the loss is NaN
    assert tune.main(args) == 1
    out, err = capsys.readouterr()
    result = last_json(out)
    assert (result["completed"], result["failed"], result["best_config"]) == (0, 2, None)
    assert err.strip().splitlines()[-1] == (
        "python -m keras_resnet.tune: no trial completed (2 failed, 0 rejected over the cap), so "
        f"there is no best configuration. {result['failure']} See {result['summary_csv']}."
    )
    assert result["failure"].startswith("Trial 0 failed with: ")
    assert "diverged" in result["failure"].lower()


def test_killed_search_resumes_without_losing_or_repeating_trials(cifar, tmp_path, capsys):
    args = [*TINY, "--tuner", "random", "--max-trials", "3", "--data-dir", cifar,
            "--directory", str(tmp_path)]
    project = str(tmp_path / "resnet")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-m", "keras_resnet.tune", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # tuner0.json is written once a trial has fully ended; kill the
        # search while it trains the next one.
        deadline = time.time() + 180
        for name in ("tuner0.json", os.path.join("trial_1", "trial.json")):
            while not os.path.exists(os.path.join(project, name)):
                assert proc.poll() is None and time.time() < deadline, f"no {name}"
                time.sleep(0.1)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {name: text for name, text in trial_files(project).items()
              if json.loads(text)["status"] == "COMPLETED"}
    assert 1 <= len(before) < 3

    result, _ = run_main(args, capsys)  # the same command again
    assert (result["trials"], result["completed"]) == (3, 3)
    assert result["trained"] == 3 - len(before)  # finished trials are not rerun
    after = trial_files(project)
    assert sorted(after) == ["trial_0", "trial_1", "trial_2"]
    assert all(after[name] == text for name, text in before.items())
    values = trial_values(project)
    assert len({json.dumps(v, sort_keys=True) for v in values}) == 3


def test_ctrl_c_leaves_the_table_so_far_and_the_search_continues(cifar, tmp_path, capsys, monkeypatch):
    # summary.csv was written only when a search ended: an interrupted one had none.
    args = [*TINY, "--tuner", "random", "--max-trials", "3", "--data-dir", cifar,
            "--directory", str(tmp_path)]
    fit, calls = keras.Model.fit, []

    def ctrl_c_in_the_second_trial(model, *a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return fit(model, *a, **kw)

    monkeypatch.setattr(keras.Model, "fit", ctrl_c_in_the_second_trial)
    assert tune.main(args) == 130
    project = str(tmp_path / "resnet")
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"Interrupted. Finished trials are kept in {project} (listed in summary.csv); rerun the "
        "same command to continue the search.")
    assert [(r["trial"], r["status"]) for r in read_summary(project)] == [("0", "completed"),
                                                                         ("1", "running")]
    assert os.path.isfile(os.path.join(project, tune_project.BEST_CONFIG_FILE))

    monkeypatch.setattr(keras.Model, "fit", fit)
    result, _ = run_main(args, capsys)  # the same command again
    assert (result["trials"], result["completed"], result["trained"]) == (3, 3, 2)
    assert [r["status"] for r in read_summary(project)] == ["completed"] * 3


def test_a_ctrl_c_that_python_lost_still_stops_the_search(cifar, tmp_path, capsys, monkeypatch,
                                                          lost_ctrl_c_after_the_first_epoch):
    # A KeyboardInterrupt raised in a garbage-collection callback (JAX has
    # one) is printed and dropped: the trial, and the search, went on to the
    # end (exit 0), as train.py did before StopOnLostInterrupt.
    args = [*TINY, "--tuner", "random", "--max-trials", "2", "--epochs-per-trial", "2",
            "--data-dir", cifar, "--directory", str(tmp_path)]

    fit, ended = keras.Model.fit, []

    def with_a_lost_ctrl_c(model, *a, callbacks=(), **kw):
        return fit(model, *a, callbacks=[*callbacks, lost_ctrl_c_after_the_first_epoch(ended)], **kw)

    monkeypatch.setattr(keras.Model, "fit", with_a_lost_ctrl_c)
    assert tune.main(args) == 130
    assert ended == [0]  # the second epoch's end stopped it
    project = str(tmp_path / "resnet")
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("Interrupted.")
    assert [(r["trial"], r["status"]) for r in read_summary(project)] == [("0", "running")]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_chief_and_two_workers_run_every_trial_once(cifar, tmp_path):
    # Three trials for two workers: one of them runs two.
    port = str(_free_port())
    args = ["-m", "keras_resnet.tune", *TINY, "--tuner", "random", "--max-trials", "3",
            "--data-dir", cifar, "--directory", str(tmp_path)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    env.pop("KERASTUNER_ORACLE_IP", None)  # defaults to 127.0.0.1
    procs = [subprocess.Popen(
        [sys.executable, *args, "--tuner-id", "chief", "--oracle-port", port],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )]
    for worker in ("tuner0", "tuner1"):
        worker_env = dict(env, KERASTUNER_TUNER_ID=worker, KERASTUNER_ORACLE_PORT=port)
        procs.append(subprocess.Popen(
            [sys.executable, *args], cwd=REPO, env=worker_env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    try:
        outputs = [proc.communicate(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (stdout, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stderr[-3000:]
    chief, *workers = [last_json(stdout) for stdout, _ in outputs]
    assert [w["tuner_id"] for w in workers] == ["tuner0", "tuner1"]
    assert (chief["trials"], chief["completed"]) == (3, 3)
    assert chief["trained"] == 0
    assert sum(w["trained"] for w in workers) == 3  # each trial exactly once
    project = chief["project_dir"]
    assert [r["status"] for r in read_summary(project)] == ["completed"] * 3
    assert os.path.isfile(os.path.join(project, tune_project.BEST_CONFIG_FILE))
    assert len({json.dumps(v, sort_keys=True) for v in trial_values(project)}) == 3


def test_a_chief_that_cannot_listen_is_refused_before_anything_is_written(tmp_path):
    # KerasTuner's gRPC server binds with SO_REUSEPORT: a second chief on a
    # port another chief held started without a word, and the workers of
    # both searches were shared between them (each trained the other's
    # trials, checkpoints in its own folder). An address of no machine was
    # gRPC's RuntimeError traceback after the project was written.
    import grpc
    from concurrent import futures

    port = _free_port()
    other_chief = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    other_chief.add_insecure_port(f"127.0.0.1:{port}")
    other_chief.start()
    args = ["-m", "keras_resnet.tune", *TINY, "--directory", str(tmp_path), "--tuner-id", "chief"]
    try:
        out = run_python([*args, "--oracle-port", str(port)], timeout=60,
                         env={"KERASTUNER_ORACLE_IP": None})
    finally:
        other_chief.stop(None)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        f"python -m keras_resnet.tune: error: --oracle-port (or $KERASTUNER_ORACLE_PORT) {port}: 127.0.0.1:{port} is in use "
        "(another search's chief?); give this search's chief and workers another --oracle-port."
    ], out.stderr
    out = run_python([*args, "--oracle-port", str(port), "--oracle-ip", "999.1.1.1"], timeout=60)
    [line] = out.stderr.strip().splitlines()
    assert out.returncode == 2 and line.startswith(
        f"python -m keras_resnet.tune: error: --oracle-ip (or $KERASTUNER_ORACLE_IP) '999.1.1.1': the chief cannot listen at "
        f"999.1.1.1:{port} (") and line.endswith(  # the resolver's words
        "); give an address of this machine (0.0.0.0 for every interface)."), line
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("argv, expected", [
    (["--tuner", "grid"], "--tuner: invalid choice: 'grid'"),
    (["--max-trials", "0"], "must be a positive integer, got '0'"),
    # A ValueError traceback from search().
    (["--epochs-per-trial", "2000000"], "must be an integer from 1 to 1000000, got '2000000'"),
    (["--widths", "8,x"], "got '8,x'"),
    (["--dropouts", "0.1,high"], "got '0.1,high'"),
    (["--preset", "seed", "--dropouts", "1.5"], "Received: dropouts=[1.5]"),
    (["--preset", "seed", "--widths", "8/16"], "one non-empty list of positive ints per stage"),
    (["--tuner-id", "chief"], "needs both a tuner id and the oracle port"),
    (["--oracle-ip", "10.0.0.1"], "the oracle address needs its port: pass --oracle-port"),
    # A port past 65535 left the chief waiting without a word.
    (["--tuner-id", "chief", "--oracle-port", "99999"], "must be an integer from 1 to 65535, got '99999'"),
    (["--dropouts", ","], "must be numbers separated by commas, got ','"),
    (["--data-dir", "/nonexistent"], "--data-dir: no such folder '/nonexistent'"),
    # It searched in the current folder (the project's own source folder).
    (["--directory", ""], "--directory is empty: name a folder, or leave it out for runs/tuning."),
])
def test_bad_flags_exit_2_with_one_line_before_loading_keras(argv, expected, tmp_path):
    out = run_python(["-m", "keras_resnet.tune", "--directory", str(tmp_path), *argv],
                     timeout=60)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and expected in out.stderr, out.stderr
    assert not os.listdir(tmp_path)


def test_a_bad_tuner_or_trial_count_from_python_leaves_no_project_behind(cifar, tmp_path):
    # A bad tuner was refused after search.json was written, which then
    # refused the corrected call; max_trials=0 searched without end.
    config = TrainConfig(train_size=256, validation_size=64, data_dir=cifar)
    with pytest.raises(ConfigError, match=r"^Unknown tuner 'grid'\. Choose one of"):
        tune.search(config, tuner="grid", directory=str(tmp_path), widths=[[8]] * 4)
    with pytest.raises(ValueError, match=r"^`max_trials` must be a positive integer. Received: max_trials=0$"):
        tune.search(config, tuner="random", max_trials=0, directory=str(tmp_path), widths=[[8]] * 4)
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("arguments, message", [
    # Each was a TypeError or a ValueError from inside (`replace()`, `len()`,
    # unpacking), or went through: top=-1 printed all but the last trial,
    # overwrite="yes" was taken as true, an infinite rate and a weight decay
    # of True were searched, and widths of True reached build_model.
    (dict(config=None), "`config` must be a TrainConfig. Received: config=None"),
    (dict(epochs_per_trial="10"), "`epochs_per_trial` must be an integer in [1, 1000000]. Received: epochs_per_trial='10'"),
    # Named as train.py's --epochs.
    (dict(epochs_per_trial=2_000_000), "Received: epochs_per_trial=2000000"),
    (dict(directory=None), "`directory` must be a path (a str or os.PathLike). Received: directory=None"),
    (dict(overwrite="yes"), "`overwrite` must be True or False. Received: overwrite='yes'"),
    (dict(verbose="x"), "`verbose` must be one of (0, 1, 2, 'auto'). Received: verbose='x'"),
    (dict(top=-1), "`top` must be a non-negative integer. Received: top=-1"),
    (dict(widths=3), "`widths` must hold one non-empty list of positive ints per stage (4 for preset "
                     "'seed'). Received: widths=3"),
    (dict(widths=[[True]] * 4), "Received: widths=[[True], [True], [True], [True]]"),
    (dict(blocks=5), "`blocks` must hold one non-empty list of positive ints per stage"),
    (dict(dropouts=0.1), "`dropouts` must be a non-empty list of numbers in [0, 1). Received: dropouts=0.1"),
    (dict(dropouts=["a"]), "Received: dropouts=['a']"),
    (dict(learning_rate="x"), "`learning_rate` must be a positive, finite number or a range (low, high) "
                              "of them with low <= high. Received: learning_rate='x'"),
    (dict(learning_rate=(1, 2, 3)), "Received: learning_rate=(1, 2, 3)"),
    (dict(learning_rate=None), "Received: learning_rate=None"),
    (dict(learning_rate=(0.1, float("inf"))), "Received: learning_rate=(0.1, inf)"),
    (dict(weight_decay=True), "Received: weight_decay=True"),
    (dict(dropouts=[0.0, 1.0]), "Received: dropouts=[0.0, 1.0]"),  # every unit dropped
    (dict(learning_rate=(0.3, 0.03)), "with low <= high. Received: learning_rate=(0.3, 0.03)"),
    (dict(weight_decay=(0.0, 1e-3)), "Received: weight_decay=(0.0, 0.001)"),  # no log scale from 0
    # TrainConfig's default: no validation split to score the trials on.
    (dict(config=TrainConfig(train_size=256)), "--validation-size must be positive: trials are scored "
                                                "on a validation split of the training set. Received: 0"),
])
def test_the_search_api_names_a_bad_argument_before_anything_is_written(cifar, tmp_path, arguments, message):
    config = TrainConfig(train_size=256, validation_size=64, data_dir=cifar)
    call = dict(config=config, tuner="random", max_trials=1, directory=str(tmp_path / "search"),
                widths=[[8]] * 4, blocks=[1], verbose=0)
    with pytest.raises(ValueError) as info:
        tune.search(**{**call, **arguments})
    assert message in str(info.value)
    assert not os.listdir(tmp_path)


def test_a_space_of_numpy_numbers_is_taken_as_python_floats():
    # A sweep over np.arange or an array of bounds: refused for a commit, with
    # "must be a positive, finite number ... Received: np.float32(0.1)".
    space = search_space("seed", widths=[[8]] * 4, blocks=[1],
                         dropouts=list(np.arange(0, 0.3, 0.1, dtype="float32")),
                         learning_rate=np.array([1e-3, 1e-1]),
                         weight_decay=(np.float32(1e-4), np.float64(1e-3)))
    assert json.loads(json.dumps(space)) == space
    assert space["dropouts"] == pytest.approx([0.0, 0.1, 0.2]) and space["learning_rate"] == [1e-3, 1e-1]
    assert space["weight_decay"] == pytest.approx([1e-4, 1e-3])
    assert all(type(v) is float for v in [*space["dropouts"], *space["learning_rate"], *space["weight_decay"]])
    # One number is a range of one value.
    space = search_space("seed", widths=[[8]] * 4, learning_rate=np.float32(0.5), weight_decay=1e-3)
    assert space["learning_rate"] == [0.5, 0.5] and space["weight_decay"] == [1e-3, 1e-3]


def test_the_default_space_and_choices_given_in_any_order():
    # The widths are the preset's x0.5 to x1.5 in multiples of 8
    # (docs/tuning.md). Choices are kept sorted and once: KerasTuner's first
    # trial is the first of each (the smallest network), search.json is
    # the same whatever the order, and the cap check takes the first
    # widths for the smallest.
    space = search_space("seed")  # stages of 64, 128, 256, 512
    assert space == dict(
        widths=[[32, 48, 64, 80, 96], [64, 96, 128, 160, 192], [128, 192, 256, 320, 384],
                [256, 384, 512, 640, 768]],
        blocks=[[1, 2, 3]] * 4, dropouts=[0.0, 0.1, 0.2, 0.3], learning_rate=[0.03, 0.3],
        weight_decay=[1e-3, 3e-2])
    for preset, layout in PRESETS.items():  # fast-cpu's 48 x 0.75 is 36: 32
        for widths, base in zip(search_space(preset)["widths"], layout["stage_filters"]):
            assert all(w % 8 == 0 and base / 2 - 4 <= w <= base * 1.5 + 4 for w in widths), (preset, widths)
    space = search_space("seed", widths=[[16, 8, 16]] * 4, blocks=[3, 1, 3], dropouts=[0.2, 0.0, 0.2])
    assert (space["widths"], space["blocks"], space["dropouts"]) == ([[8, 16]] * 4, [[1, 3]] * 4, [0.0, 0.2])


def test_a_network_of_exactly_the_cap_is_built_and_one_over_it_rejected(monkeypatch):
    import keras_tuner

    from keras_resnet import hypermodel as hypermodel_module

    hypermodel = ResNetHyperModel(TrainConfig(preset="seed"), widths=[[8]] * 4, blocks=[1], dropouts=[0.0])
    params = hypermodel.count_params(hypermodel.trial_config(keras_tuner.HyperParameters()))
    monkeypatch.setattr(hypermodel_module, "PARAM_CAP", params)
    assert hypermodel.build(keras_tuner.HyperParameters()).count_params() == params
    monkeypatch.setattr(hypermodel_module, "PARAM_CAP", params - 1)
    with pytest.raises(keras_tuner.errors.FailedTrialError,
                       match=f"^Rejected before training: {params:,} parameters, over the cap of {params - 1:,}"):
        hypermodel.build(keras_tuner.HyperParameters())
    assert (hypermodel.rejected, hypermodel.trained) == (1, 0)


def test_the_validation_split_is_a_tenth_of_the_training_images_by_default(tmp_path, capsys, monkeypatch):
    configs = []
    monkeypatch.setattr(tune, "search", lambda config, **kwargs: configs.append(config) or {"completed": 1})
    for argv in (["--train-size", "2000"], []):
        assert tune.main([*argv, "--directory", str(tmp_path)]) == 0
    capsys.readouterr()
    assert [config.validation_size for config in configs] == [200, 5000]


def test_the_results_list_trials_in_number_order_and_the_top_by_score(tmp_path, capsys):
    # Twelve trials (20 by default): sorted as text, trial 10 came before
    # trial 2 in summary.csv. The `top` asked for is printed and returned.
    import types

    import keras_tuner

    class Metrics:
        def __init__(self, values):
            self.values = values

        def exists(self, name):
            return name in self.values

        def get_last_value(self, name):
            return self.values[name]

    scores = [0.1, 0.5, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.7, 0.4]
    trials = {str(i): types.SimpleNamespace(trial_id=str(i), status="COMPLETED", score=score,
                                            hyperparameters=keras_tuner.HyperParameters(),
                                            metrics=Metrics({"params": 1000, "epochs": 1}))
              for i, score in reversed(list(enumerate(scores)))}
    tuner = types.SimpleNamespace(oracle=types.SimpleNamespace(trials=trials))
    hypermodel = ResNetHyperModel(TrainConfig(preset="seed"), widths=[[8]] * 4, blocks=[1], dropouts=[0.0])
    result = tune._write_and_print_results(tuner, hypermodel, str(tmp_path), top=2, start=time.perf_counter())
    assert [row["trial"] for row in read_summary(str(tmp_path))] == [str(i) for i in range(12)]
    assert result["top"] == [{"trial": "10", "val_accuracy": 0.7, "params": 1000},
                             {"trial": "1", "val_accuracy": 0.5, "params": 1000}]
    assert "\nTop 2:\n  trial 10: val_accuracy 0.7000" in capsys.readouterr().out


def test_a_split_the_data_cannot_give_leaves_no_project_behind(cifar, tmp_path, capsys):
    # The project would record these settings and refuse the corrected
    # command as "a search with other settings".
    argv = [*TINY, "--data-dir", cifar, "--directory", str(tmp_path), "--project-name", "p"]
    code, _, err = call_main(tune.main, [*argv, "--train-size", "64"], capsys)
    assert code == 2 and "--validation-size 64 leaves no training images out of 64" in err, err
    assert not os.listdir(tmp_path)


def test_a_space_wholly_over_the_cap_leaves_no_project_behind(cifar, tmp_path, capsys):
    # It recorded the space before KerasTuner's first build failed, so the
    # corrected command was refused as "a search with other settings".
    argv = [*TINY, "--data-dir", cifar, "--directory", str(tmp_path), "--project-name", "p"]
    argv[argv.index("--widths") + 1] = "8/8/16/2048,4096"
    code, _, err = call_main(tune.main, argv, capsys)
    assert not os.listdir(tmp_path)
    assert code == 2 and err.strip().splitlines()[-1].endswith(
        "Every configuration of this space is over the cap: the smallest (widths "
        "[8, 8, 16, 2048], blocks [1, 1, 1, 1]) has 38,142,026 parameters, over 5,000,000. "
        "Give narrower --widths or fewer --blocks."), err


def test_a_missing_data_folder_from_the_environment_names_the_variable(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "moved"))  # it named --data-dir
    code, _, err = call_main(tune.main, [*TINY, "--directory", str(tmp_path)], capsys)
    assert code == 2 and err.strip().splitlines()[-1].startswith(
        "python -m keras_resnet.tune: error: $CIFAR10_DIR (read for --data-dir): no such folder")
    assert not (tmp_path / "resnet").exists()


def test_the_cli_module_loads_without_keras():
    out = run_python(["-c", "import sys, keras_resnet.tune; print('keras' in sys.modules)"])
    assert out.stdout.strip() == "False", out.stderr


def test_the_hypermodel_is_still_importable_from_tune():
    # Its example showed `from keras_resnet.tune import ResNetHyperModel`
    # before it moved to keras_resnet.hypermodel.
    from keras_resnet.tune import ResNetHyperModel as from_tune

    assert from_tune is ResNetHyperModel


def test_a_project_of_other_settings_is_not_continued(tmp_path):
    tune_project.check_project(str(tmp_path), {"tuner": "random", "widths": [[8, 16]]})
    tune_project.check_project(str(tmp_path), {"tuner": "random", "widths": ((8, 16),)})
    with pytest.raises(ConfigError, match=r"other settings \(tuner, widths\)"):
        tune_project.check_project(str(tmp_path), {"tuner": "bayesian", "widths": [[8]]})
    (tmp_path / "trial_0").mkdir()  # KerasTuner's
    tune_project.check_project(str(tmp_path), {"tuner": "bayesian", "widths": [[8]]}, overwrite=True)
    assert os.listdir(tmp_path) == [tune_project.SEARCH_FILE]  # started over, the settings recorded
    tune_project.check_project(str(tmp_path), {"tuner": "bayesian", "widths": [[8]]})  # continues
    (tmp_path / tune_project.SEARCH_FILE).write_text('{"tuner": ')  # cut short
    with pytest.raises(ConfigError, match=r"search's settings .* cannot be read \(JSONDecodeError"):
        tune_project.check_project(str(tmp_path), {"tuner": "bayesian", "widths": [[8]]})


def test_a_search_continued_on_another_data_folder_says_so(tmp_path, capsys):
    # It went on without a word, ranking trials of two datasets together. A
    # folder may move, so it is a note, not a refusal.
    project = str(tmp_path / "resnet")
    tune_project.check_project(project, {"tuner": "random", "data_dir": "/data/a"})
    tune_project.check_project(project, {"tuner": "random", "data_dir": "/data/a"})
    assert capsys.readouterr().err == ""
    tune_project.check_project(project, {"tuner": "random", "data_dir": None})
    assert capsys.readouterr().err == (
        f"Note: {project} was searched on the data in /data/a; it goes on with TensorFlow "
        "Datasets' cifar10, and the trials of both are ranked together.\n")
    with open(os.path.join(project, tune_project.SEARCH_FILE)) as f:
        assert json.load(f)["data_dir"] is None  # the folder it goes on with


def test_the_data_folder_recorded_is_the_one_read(tmp_path, monkeypatch):
    # With data_dir=None and $CIFAR10_DIR set, search.json recorded None
    # ("TensorFlow Datasets' cifar10"), and the same search from the command
    # line, which reads the variable, noted another data folder.
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "cifar"))
    settings = tune_project.search_settings(TrainConfig(), {}, "random", 1)
    assert settings["data_dir"] == str(tmp_path / "cifar")


def test_a_tuner_made_directly_neither_mixes_spaces_nor_deletes_what_it_cannot_see(tmp_path):
    # make_tuner on a project of another space went on with the saved one
    # without a word (another preset failed deep in Keras as the weights
    # loaded), and overwrite=True deleted the folder whatever it held.
    config = tune.trial_config(TrainConfig(preset="seed"), 1)
    space = dict(widths=[[8]] * 4, blocks=[1], dropouts=[0.0])
    project = tmp_path / "resnet"
    tune_project.check_project(str(project), tune_project.search_settings(
        config, search_space("seed", **space), "random", 1))
    release_folder(str(project))
    tune.make_tuner(ResNetHyperModel(config, **space), "random", 1, 1, str(tmp_path))  # the same
    other = ResNetHyperModel(config, **{**space, "widths": [[16]] * 4})
    with pytest.raises(ConfigError, match=r"holds a search with other settings \(widths\) than this "
                                          r"tuner and hypermodel"):
        tune.make_tuner(other, "random", 1, 1, str(tmp_path))
    with pytest.raises(ConfigError, match=r"other settings \(tuner\)"):
        tune.make_tuner(ResNetHyperModel(config, **space), "bayesian", 1, 1, str(tmp_path))
    (project / "final.keras").write_text("mine")
    with pytest.raises(ConfigError, match=r"is not empty, and make_tuner\(overwrite=True\) would delete"):
        tune.make_tuner(ResNetHyperModel(config, **space), "random", 1, 1, str(tmp_path),
                        overwrite=True)
    assert (project / "final.keras").read_text() == "mine"


@pytest.mark.parametrize("arguments, message", [
    # KerasTuner's "no limit": a search that never ends, as search() had it.
    (dict(max_trials=0), "`max_trials` must be a positive integer. Received: max_trials=0"),
    (dict(max_trials="5"), "Received: max_trials='5'"),  # a TypeError in _new_tuner
    (dict(epochs_per_trial=0), "`epochs_per_trial` must be an integer in [1, 1000000]. Received: epochs_per_trial=0"),
    (dict(epochs_per_trial="3"), "Received: epochs_per_trial='3'"),  # a TypeError inside KerasTuner
    (dict(overwrite="no"), "`overwrite` must be True or False. Received: overwrite='no'"),  # taken as true
    (dict(hypermodel=TrainConfig()),  # AttributeError: 'TrainConfig' object has no attribute 'config'
     "`hypermodel` must be a ResNetHyperModel(config, **space), from keras_resnet.hypermodel. "
     "Received: a TrainConfig"),
    (dict(hypermodel=None), "Received: hypermodel=None"),
])
def test_make_tuner_checks_its_arguments_as_search_does(arguments, message, tmp_path):
    import re

    hypermodel = ResNetHyperModel(TrainConfig(preset="seed"), widths=[[8]] * 4, blocks=[1], dropouts=[0.0])
    arguments = {"hypermodel": hypermodel, "tuner": "random", "directory": str(tmp_path), **arguments}
    with pytest.raises(ConfigError if "hypermodel" in message else ValueError, match=re.escape(message)):
        tune.make_tuner(**arguments)
    assert not os.listdir(tmp_path)


def test_a_worker_of_a_search_started_over_does_not_compare_with_the_old_settings(
        cifar, tmp_path, monkeypatch):
    # A worker started before its chief (which rewrites search.json) was
    # refused: "holds a search with other settings (epochs, epochs_per_trial)".
    config = TrainConfig(train_size=256, validation_size=64, data_dir=cifar)
    space = dict(widths=[[8]] * 4, blocks=[1], dropouts=[0.0])
    project = tmp_path / "resnet"
    tune_project.check_project(str(project), tune_project.search_settings(
        tune.trial_config(config, 1), search_space("seed", **space), "random", 1))
    release_folder(str(project))
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")

    class ReachedTheTuner(Exception):
        pass

    def new_tuner(*args, **kwargs):  # a worker's tuner would now wait for its chief
        raise ReachedTheTuner

    monkeypatch.setattr(tune, "_new_tuner", new_tuner)
    with pytest.raises(ReachedTheTuner):
        tune.search(config, "random", 1, epochs_per_trial=2, directory=str(tmp_path), overwrite=True,
                    verbose=0, **space)


def test_a_project_another_search_is_running_is_refused(tmp_path, folder_held_by_another_process):
    # Two searches of one project ran the same trials; one failed deep in
    # KerasTuner (h5py's "unable to lock file"), and the files took the other
    # search's results.

    project, settings = tmp_path / "resnet", {"tuner": "random", "widths": [[8]]}
    tune_project.check_project(str(project), settings)  # a search started here...
    release_folder(str(project))  # ...in another process, which holds it:
    folder_held_by_another_process(project)
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match=f"^{project} is in use: another search is running "
                                              "there now. Wait for it to end, or choose another "
                                              "--project-name.$"):
            tune_project.check_project(str(project), settings, overwrite=overwrite)
    assert os.listdir(project) == [tune_project.SEARCH_FILE]


def test_overwrite_never_deletes_a_folder_that_holds_no_search(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"holds no keras-resnet search .* --overwrite would delete"):
        tune_project.check_project(str(tmp_path), {"tuner": "random"}, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_folder_that_holds_no_search_is_not_taken_over(tmp_path):
    # It was: KerasTuner's files landed beside the user's, and a later
    # --overwrite deleted them all.
    (tmp_path / "best.keras").write_text("mine")
    with pytest.raises(ConfigError, match=r"holds no keras-resnet search \(no search.json\), "
                                          r"where a search would write; choose another"):
        tune_project.check_project(str(tmp_path), {"tuner": "random"})
    assert os.listdir(tmp_path) == ["best.keras"]


def test_overwrite_keeps_the_users_files_in_a_search(tmp_path):
    project = tmp_path / "resnet"
    for name in ("search.json", "oracle.json", "tuner0.json", "summary.csv", "best_config.json",
                 "trial_0000/trial.json", "trial_0000/checkpoint.weights.h5"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("{}")
    assert tune_project.files_no_search_writes(str(project)) == []
    # A distributed search's workers write `<their id>.json`, any id.
    (project / "gpu0.json").write_text("{}")
    assert tune_project.files_no_search_writes(str(project)) == []
    (project / "final.keras").write_text("trained from best_config.json")
    with pytest.raises(ConfigError, match=r"holds files that no search writes \(final.keras\), "
                                          r"which --overwrite would delete"):
        tune_project.check_project(str(project), {"tuner": "random"}, overwrite=True)
    assert (project / "final.keras").read_text() == "trained from best_config.json"
    (project / "final.keras").unlink()
    # Inside a trial's folder too: they were deleted without a word.
    (project / "trial_0000" / "notes.txt").write_text("mine")
    (project / "trial_0000" / "final").mkdir()
    with pytest.raises(ConfigError, match=r"holds files that no search writes \(trial_0000/final, "
                                          r"trial_0000/notes.txt\), which --overwrite would delete"):
        tune_project.check_project(str(project), {"tuner": "random"}, overwrite=True)
    assert (project / "trial_0000" / "notes.txt").read_text() == "mine"
    (project / "trial_0000" / "notes.txt").unlink()
    (project / "trial_0000" / "final").rmdir()
    tune_project.check_project(str(project), {"tuner": "random"}, overwrite=True)  # a search: replaced
    assert os.listdir(project) == ["search.json"]


def test_overwrite_of_a_new_project_starts_it_and_of_a_link_is_refused(tmp_path):
    # A project not made yet: files_no_search_writes' FileNotFoundError,
    # after the data had loaded. A link: it cannot be renamed aside, and the
    # error blamed permissions (before that, rmtree ignored it and the old
    # search went on despite --overwrite).
    project = tmp_path / "resnet"
    tune_project.check_project(str(project), {"tuner": "random"}, overwrite=True)
    assert os.listdir(project) == [tune_project.SEARCH_FILE]
    release_folder(str(project))
    (tmp_path / "links").mkdir()
    os.symlink(project, tmp_path / "links" / "resnet")
    with pytest.raises(ConfigError, match=rf"^{tmp_path}/links/resnet is a link to {project}: to "
                                          r"replace that search, pass the folder itself"):
        tune_project.check_project(str(tmp_path / "links" / "resnet"), {"tuner": "random"},
                                   overwrite=True)
    assert os.listdir(project) == [tune_project.SEARCH_FILE]


def test_overwrite_from_inside_the_project_is_refused_and_deletes_nothing(tmp_path, monkeypatch):
    # The project was deleted from under the command, which then failed
    # with a traceback and left no search.
    project = tmp_path / "resnet"
    tune_project.check_project(str(project), {"tuner": "random"})
    release_folder(str(project))
    (project / "trial_0").mkdir()
    monkeypatch.chdir(project / "trial_0")
    for path in (str(project), ".."):
        with pytest.raises(ConfigError, match=r"is the folder this command runs in, or holds it: "
                                              r"--overwrite would delete it"):
            tune_project.check_project(path, {"tuner": "random"}, overwrite=True)
    assert sorted(os.listdir(project)) == ["search.json", "trial_0"]


def test_a_project_that_cannot_be_made_is_one_line(tmp_path, monkeypatch):
    # /proc/x or /sys/x pass `os.access` as root: makedirs' traceback.
    def refuse(path, *args, **kwargs):
        raise PermissionError(1, "Operation not permitted", path)
    monkeypatch.setattr(os, "makedirs", refuse)
    with pytest.raises(ConfigError, match=r"^\S+/resnet \(--directory, --project-name\) cannot be "
                                          r"created \(Operation not permitted\); choose another"):
        tune_project.check_project(str(tmp_path / "resnet"), {"tuner": "random"})


def test_a_directory_that_is_a_file_is_refused_before_keras_and_the_data_load(tmp_path):
    # It was refused once Keras and the data had loaded (7 s for 512
    # images); without a data folder, after tfds had loaded or downloaded
    # CIFAR-10, or failed to.
    (tmp_path / "file").write_text("")
    code = ("import sys\nfrom keras_resnet import tune\ntry:\n    tune.main(sys.argv[1:])\n"
            "finally:\n    print('keras' in sys.modules)")
    out = run_python(["-c", code, *TINY, "--directory", str(tmp_path / "file")], timeout=60,
                     env={"CIFAR10_DIR": None})  # the data from tfds
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        f"python -m keras_resnet.tune: error: {tmp_path}/file/resnet (--directory, --project-name) "
        "cannot be created or written to as a folder."], out.stderr
    assert out.stdout.strip() == "False"


def folder_tree(root):
    """Every file under `root` (relative path -> bytes) and every folder."""
    tree = {}
    for folder, _, files in os.walk(root):
        tree[os.path.relpath(folder, root) + os.sep] = None
        for name in files:
            path = os.path.join(folder, name)
            tree[os.path.relpath(path, root)] = open(path, "rb").read()
    return tree


@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite", "continue"])
@pytest.mark.parametrize("name", ["", ".", "..", "keep/..", "ABSOLUTE"])
def test_a_project_name_that_is_not_one_folder_is_refused_and_deletes_nothing(
    name, overwrite, cifar, tmp_path, capsys
):
    # "." made --directory itself the project: --overwrite deleted it with
    # every project in it; "" scattered search.json there and KerasTuner's
    # files in untitled_project/.
    directory = tmp_path / "tuning"
    name = str(directory) if name == "ABSOLUTE" else name
    sibling = directory / "keep"
    (sibling / "trial_0").mkdir(parents=True)
    (sibling / tune_project.SEARCH_FILE).write_text('{"tuner": "random"}')
    (sibling / "trial_0" / "trial.json").write_text("{}")
    # An older `--project-name .`:
    (directory / tune_project.SEARCH_FILE).write_text('{"tuner": "random"}')
    before = folder_tree(tmp_path)
    argv = [*TINY, "--tuner", "random", "--max-trials", "1", "--data-dir", cifar,
            "--directory", str(directory), "--project-name", name]
    code, out, err = call_main(tune.main, argv + ["--overwrite"] * overwrite, capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"python -m keras_resnet.tune: error: --project-name {name!r} must be one folder "
        "name, such as resnet (the search's folder); choose where it goes with --directory."
    ]
    assert folder_tree(tmp_path) == before  # the sibling project is whole
    with pytest.raises(ConfigError, match="must be one folder name"):
        tune.make_tuner(None, "random", directory=str(directory), project_name=name,
                        overwrite=overwrite)
    assert folder_tree(tmp_path) == before


@pytest.mark.parametrize("tuner, seed, expected", [
    ("random", 0, 1),
    ("random", 2**32 - 1, 2**32),
    ("hyperband", 2**32 - 1, 2**32),
    ("bayesian", 0, 1),
    ("bayesian", 2**32 - 2, 2**32 - 1),
    ("bayesian", 2**32 - 1, 1),  # numpy's ValueError after search.json was written
])
def test_every_seed_makes_a_tuner_and_working_seeds_keep_their_search(
    tuner, seed, expected, tmp_path
):
    config = TrainConfig(preset="seed", seed=seed)
    hypermodel = ResNetHyperModel(config, widths=[[8]] * 4, blocks=[1], dropouts=[0.0])
    tuner_ = tune.make_tuner(hypermodel, tuner, max_trials=1, epochs_per_trial=1,
                             directory=str(tmp_path))
    assert tuner_.oracle.seed == expected
    assert tuner_.oracle.create_trial("tuner0").status == "RUNNING"  # it draws


def test_trials_build_their_network_under_the_configured_precision():
    # They were built float32 whatever `precision` said (train.py and bench
    # set the policy), and `best_config.json` then recorded a precision the
    # trials never trained with.
    import keras_tuner

    config = TrainConfig(preset="seed", precision="mixed_bfloat16")
    hypermodel = ResNetHyperModel(config, widths=[[8]] * 4, blocks=[1], dropouts=[0.0])
    model = hypermodel.build(keras_tuner.HyperParameters())
    assert model.get_layer("stem_conv").dtype_policy.name == "mixed_bfloat16"
    assert model.output.dtype == "float32"  # the softmax stays float32
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left alone


def test_each_trial_of_a_whitening_preset_fits_its_stem(cifar, tmp_path, monkeypatch):
    from keras_resnet.layers import PatchWhitening
    from keras_resnet.model import build_model

    fitted = []
    adapt = PatchWhitening.adapt

    def spy(layer, images, **kwargs):
        adapt(layer, images, **kwargs)
        fitted.append((len(images), keras.ops.convert_to_numpy(layer.kernel).copy()))

    monkeypatch.setattr(PatchWhitening, "adapt", spy)
    config = TrainConfig(preset="fast-cpu", train_size=256, validation_size=64, data_dir=cifar)
    result = tune.search(config, tuner="random", max_trials=1, epochs_per_trial=1,
                         directory=str(tmp_path), widths=[[8], [8], [8], [8]],
                         blocks=[1], dropouts=[0.0], verbose=0)
    assert result["completed"] == 1
    [(count, kernel)] = fitted
    assert count == 256 - 64  # the trial's training images, not the validation split
    untouched = build_model("fast-cpu").get_layer("stem_whitening").kernel
    assert not np.allclose(kernel, keras.ops.convert_to_numpy(untouched))
