import csv
import dataclasses
import json
import os
import re
import time

import pytest

from keras_resnet.backend import BackendSetting
from keras_resnet.backend import configured_backend
from keras_resnet.config import ConfigError
from tests.conftest import call_main
from tests.conftest import run_python
from tests.conftest import train_py_config


def test_train_end_to_end_as_a_user_runs_it(real_data_dir, tmp_path):
    # The seed network as a user trains and exports it. A second export
    # beside this one becoming version 2, version 1 untouched, is
    # test_export.py's `test_second_export_is_version_2_and_leaves_version_1`.
    export_dir, run_dir = tmp_path / "exports", tmp_path / "run"
    started = time.perf_counter()
    out = run_python([
        "train.py", "--epochs", "1", "--train-size", "512", "--batch-size", "128",
        "--data-dir", real_data_dir, "--output-dir", str(run_dir), "--export-dir", str(export_dir),
    ])
    wall_seconds = time.perf_counter() - started
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    for name in ("config.json", "history.csv", "metrics.json", "model.keras",
                 "checkpoints/best.keras", "checkpoints/last.keras"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "logs").is_dir()
    assert not (run_dir / "backup").exists()  # removed once finished
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "params", "epochs", "train_seconds", "export_path"):
        assert key in metrics
    assert metrics == summary
    assert metrics["params"] == 4_916_682 and metrics["epochs"] == 1
    assert metrics["resumed_after_epoch"] is None and metrics["train_seconds"] > 0
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["export_path"] == str(export_dir / "keras_resnet" / "1")
    assert (export_dir / "keras_resnet" / "1" / "saved_model.pb").is_file()
    assert os.listdir(export_dir / "keras_resnet") == ["1"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train_size"] == 512 and config["epochs"] == 1
    header, *rows = (run_dir / "history.csv").read_text().splitlines()
    assert {"epoch", "loss", "accuracy", "learning_rate", "images_per_sec"} <= set(header.split(","))
    assert len(rows) == 1
    # train_seconds is the time in `fit`: at least the epoch's training
    # steps (512 images at the logged rate), at most the whole command.
    with open(run_dir / "history.csv") as f:
        (epoch,) = csv.DictReader(f)
    steps_seconds = 512 / float(epoch["images_per_sec"])
    assert steps_seconds <= metrics["train_seconds"] + 0.01 < wall_seconds


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs: must be a positive integer, got '0'"),
    (["--batch-size", "-1"], "--batch-size: must be a positive integer, got '-1'"),
    (["--preset", "nope"], "--preset: invalid choice: 'nope'"),
    (["--data-dir", "/nonexistent"], "--data-dir: no such folder '/nonexistent'"),
    (["--crop-padding", "17"], "--crop-padding must be in [0, 16] pixels (0 = no random crop), got 17."),
    (["--cutout", "33"], "--cutout must be in [0, 32] pixels, the image's side (0 = off), got 33."),
    (["--flip", "sideways"], "--flip: invalid choice: 'sideways'"),
    (["--data-dir", "train.py"], "--data-dir: a file, not a folder 'train.py'"),
    # These said "flags: learning_rate is out of range, got inf..." and
    # "--stage-filters  names 0 stages ... e.g. --stage-blocks .".
    (["--learning-rate", "inf"], "--learning-rate must be a finite number, got inf."),
    (["--learning-rate", "1e301"], "--learning-rate must be at most 1e+300 in size, got 1e+301."),
    (["--stage-filters", ",,,"], "--stage-filters: must be positive integers separated by commas, got ',,,'"),
    # These came after TensorFlow loaded, in build_model's words ("`stage_filters`
    # must be ... Received: stage_filters=[0, 0, 0, 0]"), and as "--weight-decay:
    # expected one argument" (argparse took -1e-3 for a flag).
    (["--stage-filters", "0,0,0,0"],
     "--stage-filters: must be positive integers separated by commas, got '0,0,0,0'"),
    (["--stage-blocks", "2,0,2,2"],
     "--stage-blocks: must be positive integers separated by commas, got '2,0,2,2'"),
    (["--weight-decay", "-1e-3"], "--weight-decay must be >= 0, got -0.001."),
    # It exported into the current folder: keras_resnet/1 in the source package.
    (["--export-dir", ""], "--export-dir is empty: name a folder, or leave it out for saved_models."),
])
def test_bad_flags_exit_2_with_one_line(flags, message, tmp_path):
    out = run_python(["train.py", *flags, "--output-dir", str(tmp_path / "run")])
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert not (tmp_path / "run").exists()


def test_overwrite_needs_the_folder_it_replaces(tmp_path, monkeypatch, capsys):
    # Without --output-dir, --overwrite trained into a new runs/<preset>-N,
    # replacing nothing: the user's runs/fast stayed, silently.
    import train

    monkeypatch.chdir(tmp_path)
    argv = ["--preset", "fast", "--overwrite", "--data-dir", "no_data_here"]  # trains nothing if it runs
    code, _, err = call_main(train.main, argv, capsys)
    assert code == 2 and err.strip().splitlines() == [
        "train.py: error: --overwrite replaces the run in --output-dir; name the folder to "
        "replace, e.g. --output-dir runs/fast --overwrite."]
    assert not os.listdir(tmp_path)


def test_a_resume_of_a_file_or_of_no_folder_names_what_to_pass(tmp_path, capsys):
    # `--resume RUN/config.json` (a tab completion too far) said "holds no
    # config.json of a run" of the file itself, as did a folder that is not
    # there; "" said "--resume:  holds no config.json of a run.".
    import train

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    before = sorted(os.listdir(run))
    for argv, line in (
        ([str(run / "config.json")],
         f"--resume {run / 'config.json'} is a file, not a run folder: pass its folder, {run}."),
        ([str(run / "history.csv")], None),  # no such file: no such folder either
        ([""], "--resume is empty: name the folder of the run to resume."),
        ([str(tmp_path / "nope")], f"--resume: no such folder {tmp_path / 'nope'}."),
        ([str(tmp_path)], f"--resume: {tmp_path} holds no config.json of a run."),
    ):
        code, _, err = call_main(train.main, ["--resume", *argv], capsys)
        line = line or f"--resume: no such folder {run / 'history.csv'}."
        assert code == 2 and err.strip().splitlines() == [f"train.py: error: {line}"]
    assert sorted(os.listdir(run)) == before


def test_a_bad_keras_backend_is_one_line_before_keras_loads(tmp_path):
    out = run_python(["train.py", "--output-dir", str(tmp_path / "run")],
                     env={"KERAS_BACKEND": "bogus", "KERAS_HOME": str(tmp_path / "no_keras_json")})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines == ["train.py: error: KERAS_BACKEND='bogus' is not a Keras backend; use one of "
                     "tensorflow, jax, torch, numpy, openvino, or unset it for tensorflow."], out.stderr
    assert not (tmp_path / "run").exists()


def test_every_command_checks_the_keras_backend(monkeypatch, capsys, tmp_path):
    import train
    from keras_resnet import bench, cli, evaluate, export, predict, tune

    monkeypatch.setitem(cli.KERAS_BACKENDS, "torch", "no_such_package_for_this_test")
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    model = str(tmp_path / "m.keras")
    for main, argv in ((train.main, []), (evaluate.main, ["--model", model]),
                       (export.main, [model]), (predict.main, ["--model", model, "cat.png"]),
                       (tune.main, []), (bench.main, [])):
        code, out, err = call_main(main, argv, capsys)
        assert code == 2 and err.splitlines() == [
            f"{err.split(':')[0]}: error: KERAS_BACKEND=torch needs the no_such_package_for_this_test "
            "package, which is not installed: pip install no_such_package_for_this_test, or "
            "choose another backend."], (main, err)
    assert not os.listdir(tmp_path)
    assert cli.keras_backend_problem(BackendSetting("jax")) is None
    assert cli.keras_backend_problem(BackendSetting("tensorflow", default=True)) is None


def _keras_json_naming(backend, tmp_path, monkeypatch):
    """A keras.json in $KERAS_HOME naming `backend`, and no $KERAS_BACKEND
    (which the tests' own process sets): its path."""
    home = tmp_path / "keras_home"
    home.mkdir()
    (home / "keras.json").write_text(json.dumps({"floatx": "float32", "backend": backend}))
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.delenv("KERAS_BACKEND")
    return str(home / "keras.json")


def test_the_backend_keras_json_names_is_the_one_checked(tmp_path, monkeypatch, capsys):
    # The checks read $KERAS_BACKEND alone: a keras.json naming numpy
    # trained into Keras' NotImplementedError, and one naming jax was
    # refused "--num-processes > 1 needs KERAS_BACKEND=jax".
    import train
    from keras_resnet import training
    from keras_resnet import tune
    from keras_resnet.config import TrainConfig

    for module, name in ((training, "train"), (tune, "search")):
        monkeypatch.setattr(module, name, lambda *args, **kwargs: pytest.fail("ran"))
    monkeypatch.chdir(tmp_path)
    path = _keras_json_naming("numpy", tmp_path, monkeypatch)
    for main in (train.main, tune.main):
        code, _, err = call_main(main, [], capsys)
        assert code == 2 and err.splitlines() == [
            f'{err.split(":")[0]}: error: "backend": "numpy" in {path} cannot train (Keras has no `fit` '
            "for it): use tensorflow, jax or torch, or set KERAS_BACKEND=tensorflow."], err
    (tmp_path / "keras_home" / "keras.json").write_text('{"backend": "bogus"}')
    code, _, err = call_main(train.main, [], capsys)
    assert code == 2 and err.splitlines() == [
        f'train.py: error: "backend": "bogus" in {path} is not a Keras backend; use one of tensorflow, jax, '
        "torch, numpy, openvino, or set KERAS_BACKEND=tensorflow."], err
    assert os.listdir(tmp_path) == ["keras_home"]
    (tmp_path / "keras_home" / "keras.json").write_text('{"backend": "jax"}')
    several = TrainConfig(num_processes=2, process_id=0, coordinator_address="localhost:1234")
    several.validate()
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")  # read before keras.json, as Keras does
    with pytest.raises(ConfigError, match="^--num-processes > 1 needs KERAS_BACKEND=jax"):
        several.validate()


@pytest.mark.parametrize("keras_json, fix", [
    ("numpy", "set KERAS_BACKEND=tensorflow"),
    ("jax", "set KERAS_BACKEND=tensorflow"),
    ("tensorflow", "unset it for tensorflow"),
])
def test_a_refused_keras_backend_variable_names_a_fix_that_gives_tensorflow(keras_json, fix, tmp_path,
                                                                            monkeypatch, capsys):
    # "unset it for tensorflow" was said whatever keras.json named: unset,
    # KERAS_BACKEND=numpy gave keras.json's numpy, refused again, and
    # KERAS_BACKEND=bogus gave its jax.
    import train

    monkeypatch.chdir(tmp_path)
    _keras_json_naming(keras_json, tmp_path, monkeypatch)
    for keras_backend, problem in (("numpy", "KERAS_BACKEND=numpy cannot train (Keras has no `fit` for it): "
                                             "use tensorflow, jax or torch"),
                                   ("bogus", "KERAS_BACKEND='bogus' is not a Keras backend; use one of "
                                             "tensorflow, jax, torch, numpy, openvino")):
        monkeypatch.setenv("KERAS_BACKEND", keras_backend)
        code, _, err = call_main(train.main, [], capsys)
        assert code == 2 and err.splitlines() == [f"train.py: error: {problem}, or {fix}."], err
    assert os.listdir(tmp_path) == ["keras_home"]


@pytest.mark.parametrize("content, keras_backend, expected", [
    ('{"backend": "jax"}', None, BackendSetting("jax", keras_json="PATH")),
    ('{"backend": "jax"}', "", BackendSetting("jax", keras_json="PATH")),  # Keras skips an empty one
    ('{"backend": "jax"}', "torch", BackendSetting("torch")),
    ('{"floatx": "float32"}', None, BackendSetting("tensorflow", default=True)),
    ("not JSON", None, BackendSetting("tensorflow", default=True)),
    (None, None, BackendSetting("tensorflow", default=True)),  # no keras.json
])
def test_the_configured_backend_is_read_as_keras_reads_it(content, keras_backend, expected, tmp_path,
                                                          monkeypatch):
    path = _keras_json_naming("jax", tmp_path, monkeypatch)
    if content is None:
        os.remove(path)
    else:
        (tmp_path / "keras_home" / "keras.json").write_text(content)
    if keras_backend is not None:
        monkeypatch.setenv("KERAS_BACKEND", keras_backend)
    assert configured_backend() == expected._replace(keras_json=expected.keras_json and path)
    # And as Keras loads it, in a fresh process (the tests' own has Keras loaded).
    if content is not None and keras_backend != "torch":
        out = run_python(["-c", "import keras; from keras_resnet.backend import configured_backend; "
                                "print(keras.backend.backend(), configured_backend().name)"],
                         env={"KERAS_BACKEND": keras_backend, "KERAS_HOME": str(tmp_path / "keras_home")})
        assert out.stdout.split() == [expected.name] * 2, out.stderr[-2000:]


def test_without_keras_home_the_keras_json_in_the_home_folder_is_read(tmp_path, monkeypatch):
    # The other tests set $KERAS_HOME; most users have ~/.keras/keras.json.
    (tmp_path / ".keras").mkdir()
    (tmp_path / ".keras" / "keras.json").write_text('{"backend": "jax"}')
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.delenv("KERAS_BACKEND")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert configured_backend() == BackendSetting("jax", keras_json=str(tmp_path / ".keras" / "keras.json"))
    out = run_python(["-c", "import keras; from keras_resnet.backend import configured_backend; "
                            "print(keras.backend.backend(), configured_backend().name)"],
                     env={"KERAS_BACKEND": None, "KERAS_HOME": None, "HOME": str(tmp_path)})
    assert out.stdout.split() == ["jax", "jax"], out.stderr[-2000:]


@pytest.mark.parametrize("backend", ["numpy", "openvino"])
def test_the_training_commands_refuse_a_backend_without_fit(backend, monkeypatch, capsys, tmp_path):
    # Keras' numpy and openvino backends have no `fit`: train.py wrote its
    # run folder, loaded the data, then a NotImplementedError traceback.
    import train
    from keras_resnet import bench, cli, evaluate, export, predict, tune

    from keras_resnet import training

    monkeypatch.setattr(cli, "keras_backend_problem", lambda name: None)  # as if installed
    for module, name in ((training, "train"), (tune, "search"), (bench, "run_benchmarks")):
        monkeypatch.setattr(module, name, lambda *args, **kwargs: pytest.fail("ran"))
    monkeypatch.setenv("KERAS_BACKEND", backend)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no_keras_json"))  # unset, it would be tensorflow
    monkeypatch.chdir(tmp_path)
    for main, argv in ((train.main, ["--output-dir", "run"]), (tune.main, []), (bench.main, [])):
        code, out, err = call_main(main, argv, capsys)
        assert code == 2 and err.splitlines() == [
            f"{err.split(':')[0]}: error: KERAS_BACKEND={backend} cannot train (Keras has no `fit` "
            "for it): use tensorflow, jax or torch, or unset it for tensorflow."], (main, err)
    assert not os.listdir(tmp_path)
    # Inference has no `fit` to miss: those commands take the backend (and
    # find no file here).
    for main, argv in ((evaluate.main, ["--model", "m.keras"]), (export.main, ["m.keras"]),
                       (predict.main, ["--model", "m.keras", "cat.png"])):
        code, out, err = call_main(main, argv, capsys)
        assert code == 2 and "cannot train" not in err, (main, err)


def test_every_flag_with_a_default_names_it_in_its_help(monkeypatch, capsys):
    # `--help` showed no default for export's --export-dir and --model-name,
    # evaluate's --batch-size, bench's --preset, --precision and --seed:
    # only the docs said saved_models, keras_resnet, 256, seed, float32, 0.
    import argparse

    import train
    from keras_resnet import bench, cli, evaluate, export, predict, tune

    parsers = []

    def capture(self, args=None, namespace=None):
        parsers.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(cli.ArgumentParser, "parse_known_args", capture)
    for main in (train.main, evaluate.main, export.main, predict.main, tune.main, bench.main):
        call_main(main, [], capsys)
    assert len(parsers) == 6
    missing = [
        f"{parser.prog} {action.option_strings[-1]} (default {action.default!r})"
        for parser in parsers for action in parser._actions
        if action.option_strings and action.default not in (None, argparse.SUPPRESS)
        and not isinstance(action.default, bool)  # --overwrite, --no-export
        and not ("default" in (action.help or "") and str(action.default) in action.help)
    ]
    assert not missing, missing


def test_the_defaults_train_py_help_names_are_the_ones_it_trains_with():
    # train.py's flags leave their defaults to TrainConfig (argparse.SUPPRESS),
    # and its --help states them by hand: a default changed in one place
    # only would train otherwise than --help (and the README) say.
    import train
    from keras_resnet.config import TrainConfig

    defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
    stated = {}
    for action in train.build_parser()._actions:
        match = re.search(r"(?<!the )\bdefault:? ([^\s;,)]+)", action.help or "")
        if match and defaults.get(action.dest) is not None:  # None: "the preset's", "$CIFAR10_DIR"...
            stated[action.dest] = match[1]
    assert {"preset", "epochs", "batch_size", "learning_rate", "momentum", "weight_decay", "warmup_epochs",
            "label_smoothing", "crop_padding", "validation_size", "precision", "seed", "checkpoint_seconds",
            "export_dir", "model_name"} <= set(stated), stated
    for key, text in stated.items():
        assert type(defaults[key])(text) == defaults[key], (key, text, defaults[key])


def test_a_preset_brings_its_recipe_and_flags_override_it():
    fast = train_py_config("--preset", "fast")
    assert (fast.epochs, fast.batch_size, fast.learning_rate, fast.label_smoothing) == (10, 512, 0.2, 0.2)
    assert (fast.crop_padding, fast.flip, fast.offset_lr_scale) == (2, "alternating", 16.0)
    assert fast.weight_decay == 1e-2  # TrainConfig's default, not part of the recipe
    fast_cpu = train_py_config("--preset", "fast-cpu")
    assert (fast_cpu.epochs, fast_cpu.batch_size, fast_cpu.crop_padding) == (9, 256, 1)
    assert (fast_cpu.flip, fast_cpu.offset_lr_scale) == ("random", 16.0)
    fast_cpu = train_py_config("--preset", "fast-cpu", "--batch-size", "512", "--crop-padding", "4")
    assert (fast_cpu.epochs, fast_cpu.batch_size, fast_cpu.crop_padding) == (9, 512, 4)
    best = train_py_config("--preset", "best")
    assert (best.epochs, best.batch_size, best.cutout) == (200, 512, 8)
    seed = train_py_config()
    assert (seed.epochs, seed.batch_size, seed.cutout, seed.label_smoothing) == (200, 128, 0, 0.1)
    assert (seed.crop_padding, seed.flip) == (4, "random")  # TrainConfig's defaults
    assert seed.export is True and train_py_config("--no-export").export is False


def test_train_config_from_preset_is_what_train_py_trains():
    from keras_resnet.config import TrainConfig

    for preset in ("seed", "fast", "fast-cpu", "best"):
        from_python = TrainConfig.from_preset(preset, epochs=1, train_size=512)
        from_train_py = train_py_config("--preset", preset, "--epochs", "1", "--train-size", "512")
        assert from_python.identity() == from_train_py.identity()
    fast_cpu = TrainConfig.from_preset("fast-cpu", crop_padding=4)
    assert (fast_cpu.batch_size, fast_cpu.crop_padding, fast_cpu.offset_lr_scale) == (256, 4, 16.0)
    assert TrainConfig(preset="fast-cpu").batch_size == 128  # the seed recipe's defaults, as documented


@pytest.mark.parametrize("precision, onednn", [("float32", "1"), ("mixed_bfloat16", "0")])
def test_train_py_decides_onednn_before_it_trains(precision, onednn, fake_cifar, tmp_path, monkeypatch,
                                                 capsys):
    # `prepare_environment` (below) must run in train.py itself, before the
    # training loads TensorFlow: else it trains 4 to 6 times slower on AVX2
    # CPUs, or with bfloat16 corrupts the heap.
    import train
    from keras_resnet import training

    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    seen = []
    monkeypatch.setattr(training, "train", lambda config, overwrite=False: (
        seen.append(os.environ.get("TF_ENABLE_ONEDNN_OPTS")) or {}))
    code, _, err = call_main(train.main, ["--data-dir", fake_cifar, "--precision", precision,
                                          "--output-dir", str(tmp_path / "run")], capsys)
    assert code == 0, err
    assert seen == [onednn]


def test_a_failed_export_exits_1_in_one_line(fake_cifar, tmp_path, monkeypatch, capsys):
    # The run trained and is kept (the same command resumes it to export):
    # not bad input, which exits 2 before anything is written.
    import train
    from keras_resnet import training
    from keras_resnet.export import ExportError

    message = ("The TensorFlow export of run/model.keras failed: disk full. "
               "Rerun: python -m keras_resnet.export run/model.keras")

    def failed_export(config, overwrite=False):
        raise ExportError(message, reason="disk full")

    monkeypatch.setattr(training, "train", failed_export)
    code, out, err = call_main(train.main, ["--data-dir", fake_cifar, "--output-dir", str(tmp_path / "run")],
                               capsys)
    assert code == 1 and err.splitlines() == [f"train.py: error: {message}"] and out == ""


@pytest.mark.parametrize(
    "precision, user_setting, onednn_on",
    [
        ("float32", None, True),  # AVX2 CPUs: TensorFlow alone leaves it off
        ("mixed_bfloat16", None, False),  # its kernels corrupt the heap there
        ("float32", "0", False),  # the user's own setting wins
    ],
)
def test_prepare_environment_decides_onednn_before_tensorflow_loads(
    precision, user_setting, onednn_on
):
    code = (
        "from keras_resnet.config import TrainConfig, prepare_environment\n"
        f"prepare_environment(TrainConfig(precision={precision!r}))\n"
        "from tensorflow.python.util import _pywrap_util_port\n"
        "print(_pywrap_util_port.IsMklEnabled())\n"
    )
    out = run_python(["-c", code], env={"TF_ENABLE_ONEDNN_OPTS": user_setting})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == str(onednn_on)


def test_a_tilde_in_a_path_is_the_home_folder(tmp_path, monkeypatch, capsys):
    # The shell leaves "~" as typed in --data-dir=~/x and in a --config
    # file: it was a folder named "~" in the current one.
    import train

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    code, _, err = call_main(train.main, ["--data-dir=~/nowhere", "--output-dir=~/run"], capsys)
    assert code == 2 and f"--data-dir: no such folder {str(home / 'nowhere')!r}" in err, err
    (tmp_path / "settings.json").write_text(json.dumps({"data_dir": "~/elsewhere"}))
    code, _, err = call_main(train.main, ["--config", "settings.json"], capsys)
    assert code == 2 and f"--data-dir: no such folder {str(home / 'elsewhere')!r}" in err, err
    assert sorted(os.listdir(tmp_path)) == ["settings.json"]
