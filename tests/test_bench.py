"""`python -m keras_resnet.bench`: tiny smoke runs and bad input."""

import json
import statistics
import types

import numpy as np
import pytest

from keras_resnet import bench
from keras_resnet.config import TrainConfig
from tests.conftest import call_main
from tests.conftest import run_python

FIGURES = (
    "train_images_per_sec_synthetic",
    "train_images_per_sec_pipeline",
    "pipeline_images_per_sec",
    "serving_images_per_sec_b1",
    "serving_images_per_sec_b256",
)
# The network of test_backends.py's JAX runs, whose compiled programs (the
# weight initializers first) the session's JAX cache then shares.
TINY = ["--stage-filters", "8,8,16,16", "--batch-size", "64", "--steps", "2"]


def _check_figures(result, repeats):
    for key in FIGURES:
        assert isinstance(result[key], float) and result[key] > 0, (key, result[key])
        assert len(result["runs"][key]) == repeats, key
        # Each figure is the median of its runs (rounded to 0.1 both).
        assert result[key] == pytest.approx(statistics.median(result["runs"][key]), abs=0.11), key
    for key in ("backend", "device", "preset", "batch_size", "precision"):
        assert result[key], key


def test_tiny_run_reports_every_figure(real_data_dir):
    config = TrainConfig(
        stage_filters=[8, 16, 16, 16], batch_size=32, epochs=1, data_dir=real_data_dir
    )
    result = bench.run_benchmarks(config, steps=2, repeats=2)
    _check_figures(result, repeats=2)
    assert result["backend"] == "tensorflow"
    assert result["preset"] == "seed" and result["batch_size"] == 32
    assert result["precision"] == "float32" and result["params"] < 100_000
    json.dumps(result)  # JSON-ready


def scripted_clock(monkeypatch, times):
    """bench's `time.perf_counter` gives `times`, one a call."""
    readings = iter(times)
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: next(readings)))


def test_training_rates_are_images_over_the_seconds_of_each_window_after_the_warm_up(monkeypatch):
    class Trainer:  # calls back as `fit` would, a step at a time
        def fit(self, epochs, callbacks, verbose, **kwargs):
            for callback in callbacks:
                callback.set_model(self)
                callback.on_train_begin()
            for step in range(6):
                for callback in callbacks:
                    callback.on_train_batch_end(step)

    # 2 steps a window: the first window (ending at 11) warms up, the next
    # two end at 13 and 19.
    scripted_clock(monkeypatch, [10, 11, 12, 13, 15, 19])
    assert bench._timed_fit(Trainer(), batch_size=8, steps=2, repeats=2, epochs=1) == [8.0, 16 / 6]


def test_serving_and_pipeline_rates_are_images_over_seconds(monkeypatch):
    from keras_resnet import classifier

    class Served:  # a SavedModel that answers at once
        _tf = types.SimpleNamespace(constant=np.asarray)

        def __init__(self, path):
            pass

        def __call__(self, images):
            return images

    monkeypatch.setattr(classifier, "SavedModelClassifier", Served)
    scripted_clock(monkeypatch, [0.0, 2.0, 2.0, 6.0])  # 2 s, then 4 s, for 3 calls of 16
    assert bench.bench_serving("unused", batch_size=16, calls=3, repeats=2) == [24.0, 12.0]

    config = TrainConfig(batch_size=16)
    x = np.zeros((64, 32, 32, 3), "uint8")
    # A timed pass over the 4 batches the 64 images make, in 0.5 s.
    scripted_clock(monkeypatch, [0.0, 0.5])
    assert bench.bench_input_pipeline(config, x, np.zeros(64, "int32"), 1, 1) == [64 / 0.5]


def test_cli_on_jax_exports_through_tensorflow(real_data_dir):
    out = run_python(
        ["-m", "keras_resnet.bench", *TINY, "--repeats", "1", "--data-dir", real_data_dir],
        env={"KERAS_BACKEND": "jax"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    _check_figures(result, repeats=1)
    assert result["backend"] == "jax" and result["jit_compile"] is True
    assert result["tf_enable_onednn_opts"] is None  # a TensorFlow setting
    assert result["model_overrides"]["stage_filters"] == [8, 8, 16, 16]


def test_a_preset_is_benchmarked_with_its_own_recipe():
    # It took TrainConfig's defaults: crops padded by 4 and random flips for
    # fast-cpu, whose training pads by 1 (the crop is a known speed factor).
    def config(*argv):
        return bench.config_from_args(bench.build_parser().parse_args(list(argv)))

    fast_cpu = config("--preset", "fast-cpu")
    assert (fast_cpu.batch_size, fast_cpu.crop_padding, fast_cpu.flip) == (256, 1, "random")
    fast = config("--preset", "fast", "--batch-size", "64")
    assert (fast.batch_size, fast.crop_padding, fast.flip) == (64, 2, "alternating")
    assert (config().batch_size, config().crop_padding) == (128, 4)  # the seed's
    assert config("--preset", "best").cutout == 8


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "0"], "--steps"),
        # A MemoryError traceback from inside Keras' `fit`.
        (["--steps", "99999999999999999"], "(1 + --repeats) x --steps must be at most 10,000,000"),
        (["--precision", "float8"], "--precision"),
        (["--data-dir", "/no/such/folder"], "--data-dir"),
        (["--batch-size", "60000"], "--batch-size 60000 is larger than the 50000 training images"),
        # It advised --stage-blocks, which bench did not have.
        (["--stage-filters", "8,8,16"], "names 4: pass --stage-blocks with 3 values too"),
        (["--stage-blocks", "1,1"], "--stage-filters 64,128,256,512 (the preset's) names 4 stages, "
                                    "but --stage-blocks 1,1 names 2"),
        (["--stage-filters", "8,0,8,8"], "--stage-filters: must be positive integers separated by "
                                         "commas, got '8,0,8,8'"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys, real_data_dir):
    if "--data-dir" not in argv:
        argv = argv + ["--data-dir", real_data_dir]
    code, _, err = call_main(bench.main, argv, capsys)
    assert code == 2
    err = err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_pipeline_windows_run_on_past_one_epoch(real_cifar):
    config = TrainConfig(stage_filters=[8, 16, 16, 16], batch_size=32, epochs=1)
    x, y = real_cifar.x_train[:100], real_cifar.y_train[:100]  # 3 steps an epoch
    rates = bench.bench_pipeline_training(config, x, y, steps=2, repeats=3)  # 8 steps
    assert len(rates) == 3 and all(rate > 0 for rate in rates)


def test_without_tensorflow_nothing_but_the_json_line_goes_to_stdout(tmp_path, monkeypatch, capsys):
    # On JAX without TensorFlow (the H100 run), `training.export_model`
    # printed "TensorFlow is not installed: no SavedModel exported. On a
    # machine with it: python -m keras_resnet.export /tmp/keras-resnet-bench-.../model.keras"
    # to stdout, before the JSON line, naming a file the benchmark deletes.
    import importlib.util

    from keras_resnet import training
    from keras_resnet.data import CLASS_NAMES

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "tensorflow" else find_spec(name, *args))
    monkeypatch.setattr(training.keras.backend, "backend", lambda: "jax")

    class Model:
        def save(self, path):
            open(path, "w").close()

    assert bench.export_for_serving(Model(), TrainConfig(), CLASS_NAMES, str(tmp_path)) is None
    assert capsys.readouterr().out == ""


def test_a_failed_export_leaves_the_serving_figures_null(tmp_path, monkeypatch, capsys):
    # The export subprocess of a JAX or PyTorch run failing raised an
    # ExportError through `main`: a traceback, the training figures lost,
    # and a "Rerun:" command naming the benchmark's deleted temporary model.
    import subprocess

    from keras_resnet import training
    from keras_resnet.data import CLASS_NAMES

    monkeypatch.setattr(training.keras.backend, "backend", lambda: "jax")
    failed = subprocess.CompletedProcess([], 1, "", "python -m keras_resnet.export: error: disk full")
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: failed)

    class Model:
        def save(self, path):
            open(path, "w").close()

    assert bench.export_for_serving(Model(), TrainConfig(), CLASS_NAMES, str(tmp_path)) is None
    out, err = capsys.readouterr()
    assert out == "" and "Rerun" not in err
    assert err.strip().endswith("the SavedModel export failed (python -m keras_resnet.export: "
                                "error: disk full): the serving figures are null")


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys, real_data_dir):
    # A traceback of 90 lines through TensorFlow before.
    def interrupted(config, steps, repeats):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "run_benchmarks", interrupted)
    try:
        code, out, err = call_main(bench.main, ["--data-dir", real_data_dir], capsys)
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C went out of the benchmark as a KeyboardInterrupt")
    assert code == 130 and out == ""
    assert err.strip().splitlines() == ["Interrupted before the figures were printed; nothing was "
                                        "written (the export's temporary folder is deleted)."]


def test_the_train_py_export_folder_is_not_checked(tmp_path, monkeypatch, capsys, real_data_dir):
    # bench exports into a temporary folder of its own; a file named
    # saved_models where it runs was refused with "--export-dir 'saved_models'
    # with --model-name 'keras_resnet': ... cannot be created", flags bench
    # does not have.
    (tmp_path / "saved_models").write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench, "run_benchmarks", lambda config, steps, repeats: {"steps": steps})
    code, out, err = call_main(bench.main, ["--data-dir", real_data_dir, "--steps", "1"], capsys)
    assert code == 0, err
    assert json.loads(out) == {"steps": 1}


@pytest.mark.parametrize("what, problem", [("missing", "no such folder"), ("file", "a file, not a folder")])
def test_a_bad_cifar10_dir_variable_is_named_before_keras_loads(what, problem, tmp_path, monkeypatch,
                                                                 capsys):
    # "CIFAR-10 folder not found: ... Pass --data-dir (or set $CIFAR10_DIR)",
    # after Keras had loaded, to a user who had set it and may not know.
    folder = tmp_path / what
    if what == "file":
        folder.write_text("")
    monkeypatch.setenv("CIFAR10_DIR", str(folder))
    code, out, err = call_main(bench.main, ["--steps", "1"], capsys)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        f"python -m keras_resnet.bench: error: $CIFAR10_DIR (read for --data-dir): {problem} "
        f"{str(folder)!r}; give a python-version CIFAR-10 folder (data_batch_1..5, test_batch, "
        "batches.meta)."
    ]
