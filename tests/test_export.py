"""The export contract: a SavedModel that plain TensorFlow runs without us.

A tiny network is trained for a few steps on real CIFAR-10 images and
exported; a fresh Python process, with this project off its path, loads
the export with `tf.saved_model.load` and must reproduce the Keras model's
probabilities. Exports are versioned 1, 2, ... and never replace one another.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

from tests.conftest import run_python

TINY = dict(stage_filters=(8, 16, 16, 16))

# Runs in a fresh process, from a scratch folder: only TensorFlow and numpy.
LOAD_AND_SERVE = textwrap.dedent("""
    import importlib.util, os, sys
    assert importlib.util.find_spec("keras_resnet") is None, sys.path
    import numpy as np
    import tensorflow as tf

    version_dir, images_path, output_path = sys.argv[1:]
    loaded = tf.saved_model.load(version_dir)
    serve = loaded.signatures["serving_default"]
    outputs = serve(images=tf.constant(np.load(images_path), tf.float32))
    names = loaded.signatures["class_names"]()["class_names"].numpy()
    assert "keras_resnet" not in sys.modules
    np.savez(
        output_path,
        probabilities=outputs["probabilities"].numpy(),
        class_ids=outputs["class_ids"].numpy(),
        class_names=np.array([n.decode() for n in names]),
        signatures=np.array(sorted(loaded.signatures)),
    )
""")


def run_isolated(script, args, cwd):
    """Runs `python -c script args...` in `cwd`, with no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=600,
    )


def train_tiny_model(real_data_dir, seed=0, steps=8, batch_size=64):
    """A small `seed`-preset network after a few training steps (so its batch
    normalization statistics are not the initial ones)."""
    import keras

    from keras_resnet.data import _read_batch
    from keras_resnet.data import one_hot
    from keras_resnet.model import build_model

    x, y = _read_batch(os.path.join(real_data_dir, "data_batch_1"), None)
    count = steps * batch_size
    keras.utils.set_random_seed(seed)
    model = build_model("seed", **TINY)
    model.compile("adam", "categorical_crossentropy", jit_compile=False)
    model.fit(
        x[:count].astype("float32"), one_hot(y[:count]),
        batch_size=batch_size, epochs=1, verbose=0,
    )
    return model


def real_test_images(real_data_dir, count):
    """`count` real test images spread evenly over the test batch (the
    local copy is sorted by class, so the first ones are all airplanes)."""
    from keras_resnet.data import TEST_FILE
    from keras_resnet.data import _read_batch

    x, y = _read_batch(os.path.join(real_data_dir, TEST_FILE), None)
    picks = np.linspace(0, len(x) - 1, count).astype(int)
    return x[picks], y[picks]


def tree_digest(folder):
    """{relative path: sha256} of every file under `folder`."""
    digests = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                digests[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return digests


@pytest.fixture(scope="module")
def exported(real_data_dir, tmp_path_factory):
    from keras_resnet.export import export_saved_model

    root = tmp_path_factory.mktemp("export")
    model = train_tiny_model(real_data_dir)
    images, _ = real_test_images(real_data_dir, 64)
    path = export_saved_model(model, str(root / "saved_models"))
    return types.SimpleNamespace(
        model=model,
        root=root,
        model_dir=root / "saved_models" / "keras_resnet",
        version_dir=path,
        images=images,
        probabilities=model.predict(images.astype("float32"), verbose=0),
    )


def test_export_runs_in_plain_tensorflow(exported, tmp_path):
    from keras_resnet.data import CLASS_NAMES

    assert exported.version_dir == str(exported.model_dir / "1")
    np.save(tmp_path / "images.npy", exported.images.astype("float32"))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = run_isolated(
        LOAD_AND_SERVE,
        [exported.version_dir, tmp_path / "images.npy", tmp_path / "out.npz"],
        cwd=scratch,
    )
    assert out.returncode == 0, out.stderr[-3000:]

    served = np.load(tmp_path / "out.npz")
    probabilities, class_ids = served["probabilities"], served["class_ids"]
    assert probabilities.dtype == np.float32 and probabilities.shape == (64, 10)
    assert class_ids.dtype == np.int64 and class_ids.shape == (64,)
    np.testing.assert_allclose(probabilities, exported.probabilities, rtol=0, atol=1e-4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(class_ids, probabilities.argmax(axis=1))
    assert (class_ids == exported.probabilities.argmax(axis=1)).mean() >= 0.95
    assert len(np.unique(class_ids)) > 1  # not a constant function
    assert tuple(served["class_names"]) == CLASS_NAMES
    assert set(served["signatures"]) == {"serving_default", "class_names"}
    names_file = os.path.join(exported.version_dir, "assets.extra", "class_names.txt")
    with open(names_file) as f:
        assert tuple(f.read().split()) == CLASS_NAMES


def test_second_export_is_version_2_and_leaves_version_1(exported, real_data_dir):
    from keras_resnet.classifier import resolve_saved_model
    from keras_resnet.export import export_saved_model
    from keras_resnet.export import version_folders

    before = tree_digest(exported.version_dir)
    assert "saved_model.pb" in before and "variables/variables.index" in before
    other = train_tiny_model(real_data_dir, seed=1, steps=2)
    path = export_saved_model(other, str(exported.root / "saved_models"))

    assert path == str(exported.model_dir / "2")
    assert version_folders(str(exported.model_dir)) == ["1", "2"]
    assert sorted(os.listdir(exported.model_dir)) == ["1", "2"]  # no staging left
    os.mkdir(exported.model_dir / "\u00b2")  # a digit to str.isdigit(), not to int()
    assert version_folders(str(exported.model_dir)) == ["1", "2"]
    os.rmdir(exported.model_dir / "\u00b2")
    # TF Serving reads "007" as version 7; it was looked for as ".../7".
    os.rename(path, exported.model_dir / "007")
    assert version_folders(str(exported.model_dir)) == ["1", "007"]
    assert resolve_saved_model(str(exported.model_dir)) == str(exported.model_dir / "007")
    os.rename(exported.model_dir / "007", path)
    umask = os.umask(0)
    os.umask(umask)
    # As any folder the user makes: TF Serving may run as another user.
    assert os.stat(path).st_mode & 0o777 == 0o777 & ~umask
    assert tree_digest(exported.version_dir) == before
    assert tree_digest(path) != before


# A shell set up for JAX training exports too: the export loads the model on
# TensorFlow (on JAX it was a jax2tf traceback).
@pytest.mark.parametrize("backend", [None, "jax"])
def test_export_cli(exported, tmp_path, backend):
    checkpoint = tmp_path / "tiny.keras"
    exported.model.save(checkpoint)
    export_dir = tmp_path / "exports"
    out = run_python(["-m", "keras_resnet.export", str(checkpoint),
                      "--export-dir", str(export_dir)], env={"KERAS_BACKEND": backend})
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary == {
        "export_path": str(export_dir / "keras_resnet" / "1"),
        "params": exported.model.count_params(),
    }
    assert (export_dir / "keras_resnet" / "1" / "saved_model.pb").is_file()


def test_ctrl_c_during_the_export_command_is_one_line(tmp_path, capsys, monkeypatch):
    from keras_resnet import model as model_lib
    from keras_resnet.export import main
    from tests.conftest import call_main

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_lib, "load_model", interrupted)
    try:
        code, out, err = call_main(main, [str(tmp_path / "run.keras"), "--export-dir", str(tmp_path / "sm")],
                                   capsys)
    except KeyboardInterrupt:  # a traceback through TensorFlow before; not raised on here
        pytest.fail("the Ctrl-C went out of the export command as a KeyboardInterrupt")
    assert code == 130 and out == ""
    assert err.strip().splitlines() == ["Interrupted. A version is renamed into place whole: none was left in part."]
    assert not (tmp_path / "sm").exists()


def test_an_export_stopped_before_its_version_is_in_place_leaves_nothing(tmp_path, monkeypatch):
    # "A version is renamed into place whole: none was left in part", says
    # a stopped export command: the version written in part (a Ctrl-C, a
    # full disk) goes too, not left hidden in the model folder.
    import keras

    from keras_resnet import export

    def stopped(path):  # the last step before the rename
        assert os.path.isfile(os.path.join(path, "saved_model.pb"))
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "_readable_as_any_folder", stopped)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    with pytest.raises(KeyboardInterrupt):
        export.export_saved_model(model, str(tmp_path / "exports"))
    assert os.listdir(tmp_path / "exports" / "keras_resnet") == []


def test_export_cli_names_the_classes_as_the_data_folder_does(tmp_path, capsys, monkeypatch):
    # A run exported on JAX goes through this command; it exported CIFAR-10's
    # names whatever the run's batches.meta said.
    import pickle

    from keras_resnet import build_model
    from keras_resnet.export import main
    from tests.conftest import call_main, write_fake_cifar

    data_dir = write_fake_cifar(str(tmp_path / "data"), per_batch=1, test_count=1)
    names = [f"class {i}" for i in range(9)] + ["a class named at length"]
    meta_path = os.path.join(data_dir, "batches.meta")
    with open(meta_path, "rb") as f:
        meta = pickle.load(f)
    with open(meta_path, "wb") as f:
        pickle.dump({**meta, b"label_names": [n.encode() for n in names]}, f)
    checkpoint = str(tmp_path / "m.keras")
    build_model("seed", stage_filters=(8, 8, 8, 8)).save(checkpoint)
    export_dir = tmp_path / "e"

    code, out, err = call_main(main, [checkpoint, "--export-dir", str(export_dir), "--data-dir", data_dir],
                               capsys)
    assert code == 0, err
    names_file = export_dir / "keras_resnet" / "1" / "assets.extra" / "class_names.txt"
    assert names_file.read_text().splitlines() == names
    # The `class_names` signature says so too, and predict names the classes by it.
    import tensorflow as tf

    from keras_resnet.predict import main as predict_main

    served = tf.saved_model.load(str(export_dir / "keras_resnet" / "1"))
    assert [n.decode() for n in served.signatures["class_names"]()["class_names"].numpy()] == names
    image = tmp_path / "image.png"
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 30, 30)).save(image)
    code, out, err = call_main(predict_main, ["--model", str(export_dir / "keras_resnet"), str(image),
                                              "--top-k", "10"], capsys)
    assert code == 0, err
    *table, last = out.strip().splitlines()
    top = json.loads(last)["predictions"][0]["top_k"]
    assert [t["class_name"] for t in top] == [names[t["class_id"]] for t in top]
    # The class column is as wide as the longest name: the probabilities stay
    # in one column under their header (the long name pushed its row's out).
    assert table[0] == str(image) and len(table) == 12
    assert len({len(line) for line in table[1:]}) == 1, table
    # From Python too (it named them as CIFAR-10's unless told).
    from keras_resnet.classifier import load_classifier
    from keras_resnet.predict import load_image
    from keras_resnet.predict import predict

    classifier, _ = load_classifier(str(export_dir / "keras_resnet"))
    assert predict(classifier, load_image(str(image))[None], top_k=10)[0] == top

    missing = str(tmp_path / "nowhere")
    code, out, err = call_main(main, [checkpoint, "--export-dir", str(export_dir), "--data-dir", missing],
                               capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == [f"python -m keras_resnet.export: error: --data-dir: no such folder {missing!r}; "
                                "give a python-version CIFAR-10 folder (data_batch_1..5, test_batch, "
                                "batches.meta)."]
    assert os.listdir(export_dir / "keras_resnet") == ["1"]

    # Only the flag is read: a stale $CIFAR10_DIR does not fail an export.
    from keras_resnet.data import CLASS_NAMES

    monkeypatch.setenv("CIFAR10_DIR", missing)
    code, out, err = call_main(main, [checkpoint, "--export-dir", str(export_dir)], capsys)
    assert code == 0, err
    names_file = export_dir / "keras_resnet" / "2" / "assets.extra" / "class_names.txt"
    assert names_file.read_text().splitlines() == list(CLASS_NAMES)
    # A version deleted below the highest is not made again: the next is 3.
    shutil.rmtree(export_dir / "keras_resnet" / "1")
    code, out, err = call_main(main, [checkpoint, "--export-dir", str(export_dir)], capsys)
    assert code == 0, err
    assert sorted(os.listdir(export_dir / "keras_resnet")) == ["2", "3"]


@pytest.mark.parametrize("name", ["", ".", "..", "/elsewhere", "a/b"])
def test_a_model_name_that_is_not_one_folder_is_refused(tmp_path, capsys, name):
    # "" and "." put the versions in the export root itself, ".." and an
    # absolute path outside it.
    from keras_resnet import build_model
    from keras_resnet.config import ConfigError, TrainConfig
    from keras_resnet.export import main
    from tests.conftest import call_main

    checkpoint = str(tmp_path / "m.keras")
    build_model("seed", stage_filters=(8, 8, 8, 8)).save(checkpoint)
    code, out, err = call_main(main, [checkpoint, "--export-dir", str(tmp_path / "e"), "--model-name", name],
                               capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == [f"python -m keras_resnet.export: error: --model-name {name!r} must be one "
                                "folder name, such as keras_resnet (TF Serving's model name); choose where "
                                "it goes with --export-dir."]
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]
    with pytest.raises(ConfigError, match="must be one folder name"):
        TrainConfig(model_name=name).validate()


def test_an_export_whose_model_folder_is_a_file_is_one_clear_line(tmp_path, capsys):
    from keras_resnet import build_model
    from keras_resnet.export import main
    from tests.conftest import call_main

    checkpoint = str(tmp_path / "m.keras")
    build_model("seed", stage_filters=(8, 8, 8, 8)).save(checkpoint)
    (tmp_path / "keras_resnet").write_text("not a folder")
    code, out, err = call_main(main, [checkpoint, "--export-dir", str(tmp_path)], capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == [  # was "[Errno 17] File exists: ..."
        f"python -m keras_resnet.export: error: {tmp_path / 'keras_resnet'} cannot be created or "
        "written to as a folder: choose another --export-dir or --model-name."]
    assert (tmp_path / "keras_resnet").read_text() == "not a folder"


def test_an_export_dir_that_is_a_model_or_version_folder_is_refused(tmp_path, capsys):
    # `--export-dir saved_models/keras_resnet` (what predict and evaluate
    # take) wrote saved_models/keras_resnet/keras_resnet/1, where TF Serving
    # never looks, and exited 0; train.py did the same after training.
    import train
    from keras_resnet import build_model
    from keras_resnet.export import main
    from tests.conftest import call_main

    checkpoint = str(tmp_path / "m.keras")
    build_model("seed", stage_filters=(8, 8, 8, 8)).save(checkpoint)
    model_dir = tmp_path / "sm" / "keras_resnet"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "saved_model.pb").write_bytes(b"")
    # A model folder with no version yet: it went on nesting, keras_resnet/keras_resnet/1, 2, ...
    (tmp_path / "sm" / "new_model").mkdir()
    before = sorted(tmp_path.rglob("*"))
    for export_dir, kind, name in (
            (model_dir, "a model folder (it holds version folders)", []),
            (model_dir / "1", "a version folder", []),
            (tmp_path / "sm" / "new_model", "the model folder of --model-name new_model",
             ["--model-name", "new_model"])):
        message = (f"--export-dir {export_dir} is {kind}, not an export root: the model would be "
                   "written inside it, where TF Serving never looks. Pass the folder that holds "
                   f"the model folders: --export-dir {str(tmp_path / 'sm')!r}.")
        code, out, err = call_main(main, [checkpoint, "--export-dir", str(export_dir), *name], capsys)
        assert (code, out, err.splitlines()) == (2, "", [f"python -m keras_resnet.export: error: {message}"])
        argv = ["--export-dir", str(export_dir), *name, "--output-dir", str(tmp_path / "run"),
                "--data-dir", "none"]
        code, out, err = call_main(train.main, argv, capsys)
        assert (code, err.splitlines()) == (2, [f"train.py: error: {message}"])
    assert sorted(tmp_path.rglob("*")) == before
    # An export root of old that holds its model folder of that name is one:
    # passing its parent would write versions beside that model folder.
    (tmp_path / "sm" / "new_model" / "new_model").mkdir()
    code, out, err = call_main(main, [checkpoint, "--export-dir", str(tmp_path / "sm" / "new_model"),
                                      "--model-name", "new_model"], capsys)
    assert code == 0 and (tmp_path / "sm" / "new_model" / "new_model" / "1" / "saved_model.pb").is_file()


def test_a_tilde_in_the_export_paths_is_the_home_folder(tmp_path, capsys, monkeypatch):
    # --export-dir=~/sm (the shell leaves "~" there) exported to ./~/sm.
    from keras_resnet import build_model
    from keras_resnet.export import main
    from tests.conftest import call_main

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    build_model("seed", stage_filters=(8, 8, 8, 8)).save(str(home / "m.keras"))
    code, out, err = call_main(main, ["~/m.keras", "--export-dir=~/sm"], capsys)
    assert code == 0, err
    assert (home / "sm" / "keras_resnet" / "1" / "saved_model.pb").is_file()
    assert os.listdir(tmp_path) == ["home"]


def test_exporting_a_folder_says_what_the_folder_is(tmp_path, capsys):
    # Both said "(missing or wrong extension)".
    from keras_resnet.export import main
    from tests.conftest import call_main

    (tmp_path / "version").mkdir()
    (tmp_path / "version" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "dir.keras").mkdir()
    for folder, what in (("version", "a SavedModel folder, exported already"), ("dir.keras", "a folder")):
        code, _, err = call_main(main, [str(tmp_path / folder), "--export-dir", str(tmp_path / "e")], capsys)
        assert code == 2
        assert err.strip().endswith(f"Expected a .keras model file, got {str(tmp_path / folder)!r}, {what}.")
    code, _, err = call_main(main, [str(tmp_path / "nope.keras"), "--export-dir", str(tmp_path / "e")], capsys)
    assert code == 2 and err.strip().endswith(  # "(missing or wrong extension)" too
        f"No .keras model file at {str(tmp_path / 'nope.keras')!r}: no such file.")
    assert not (tmp_path / "e").exists()


def test_export_cli_refuses_a_data_folder_that_names_two_classes_alike(tmp_path, capsys):
    # Ten "cat" in batches.meta were exported as ten classes named "cat".
    import pickle

    from keras_resnet import build_model
    from keras_resnet.export import main
    from tests.conftest import call_main, write_fake_cifar

    data_dir = write_fake_cifar(str(tmp_path / "data"), per_batch=1, test_count=1)
    meta_path = os.path.join(data_dir, "batches.meta")
    with open(meta_path, "rb") as f:
        meta = pickle.load(f)
    with open(meta_path, "wb") as f:
        pickle.dump({**meta, b"label_names": [b"cat"] * 10}, f)
    checkpoint = str(tmp_path / "m.keras")
    build_model("seed", stage_filters=(8, 8, 8, 8)).save(checkpoint)

    code, out, err = call_main(main, [checkpoint, "--export-dir", str(tmp_path / "e"),
                                      "--data-dir", data_dir], capsys)
    assert (code, out) == (2, "")
    assert err.splitlines() == [f"python -m keras_resnet.export: error: {meta_path}: label_names holds "
                                "'cat' 10 times; each class needs a name of its own."]
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("arguments, message", [
    (dict(model_name=None), "--model-name must be a folder name (a str), such as keras_resnet"),
    # It exported into the current folder: keras_resnet/1 in the source package.
    (dict(export_dir=""), "--export-dir is empty: name a folder, or leave it out for saved_models."),
    (dict(class_names="abcdefghij"), "`class_names` must be a list or tuple of one-line, non-empty "
                                     "strings. Received: class_names='abcdefghij'"),
    (dict(class_names=None), "Received: class_names=None"),
    (dict(class_names=[*"abcdefghi", "two\nlines"]), "Received: class_names=['a'"),
    (dict(class_names=[*"abcdefghi", "two\rlines"]), "Received: class_names=['a'"),
    (dict(model=None), "`model` must be a Keras model. Received: model=None"),
    # Ten "cat" served one class name for every class.
    (dict(class_names=["cat"] * 10), "`class_names` must be a list or tuple of distinct names "
                                     "('cat' is given 10 times)"),
])
def test_the_export_api_names_a_bad_argument(arguments, message, tmp_path):
    # A string of ten letters was exported as ten names, a name with a line
    # break gave class_names.txt 11 lines; None gave a TypeError or an
    # AttributeError from inside.
    import keras

    from keras_resnet.export import export_saved_model

    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    with pytest.raises(ValueError) as info:
        export_saved_model(**{"model": model, "export_dir": str(tmp_path / "exports"), **arguments})
    assert message in str(info.value)
    assert not (tmp_path / "exports").exists()


@pytest.mark.parametrize("input_shape, units, activation, message", [
    ((32, 32, 3), 100, "softmax", "it maps (None, 32, 32, 3) to (None, 100), expected (None, 32, 32, 3) "
                                  "to (None, 10): pass one class name per output"),
    # These were exported: logits served as "probabilities", and a 28x28
    # model failed deep in TensorFlow, leaving an empty model folder.
    ((32, 32, 3), 10, None, "does not output class probabilities"),
    ((28, 28, 1), 10, "softmax", "it maps (None, 28, 28, 1) to (None, 10), expected (None, 32, 32, 3)"),
    # A probability per class in a (1, 10) row passed as one per class.
    ((32, 32, 3), (1, 10), "softmax", "it maps (None, 32, 32, 3) to (None, 1, 10), expected (None, 32, 32, 3) "
                                      "to (None, 10)."),
])
def test_the_export_api_refuses_a_model_that_is_not_a_classifier_of_probabilities(
        tmp_path, input_shape, units, activation, message):
    import keras

    from keras_resnet.export import export_saved_model

    head = ([keras.layers.Dense(units, activation=activation)] if isinstance(units, int) else
            [keras.layers.Dense(units[-1], activation=activation), keras.layers.Reshape(units)])
    model = keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(), *head])
    with pytest.raises(ValueError) as info:
        export_saved_model(model, str(tmp_path / "exports"))
    assert str(info.value).startswith("`model` ") and message in str(info.value)
    assert not (tmp_path / "exports").exists()


def test_the_export_api_names_two_outputs_without_blaming_the_class_names(tmp_path):
    import keras

    from keras_resnet.export import export_saved_model

    inputs = keras.Input((32, 32, 3))
    features = keras.layers.Flatten()(inputs)
    outputs = [keras.layers.Dense(10, activation="softmax")(features) for _ in range(2)]
    with pytest.raises(ValueError) as info:
        export_saved_model(keras.Model(inputs, outputs), str(tmp_path / "exports"))
    assert str(info.value) == ("`model` is not a CIFAR-10 classifier: it maps (None, 32, 32, 3) to "
                               "[(None, 10), (None, 10)], expected (None, 32, 32, 3) to (None, 10).")
    assert not (tmp_path / "exports").exists()


def test_the_export_api_refuses_other_backends(tmp_path):
    script = """
import sys, keras
from keras_resnet.export import ExportError, export_saved_model
model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
try:
    export_saved_model(model, sys.argv[1])
except ExportError as e:
    print("refused:", e)
"""
    out = run_python(["-c", script, str(tmp_path / "exports")], env={"KERAS_BACKEND": "jax"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "refused: the SavedModel export runs on Keras' TensorFlow backend, not jax" in out.stdout
    assert "python -m keras_resnet.export model.keras" in out.stdout
    assert not (tmp_path / "exports").exists()


def test_an_export_root_with_a_numeric_model_or_file_is_an_export_root(tmp_path, monkeypatch):
    # A model named "7" (its own 7/1/saved_model.pb) or a file "2024" made
    # the root "a model folder"; a relative path named the wrong root.
    from keras_resnet.export import export_root_problem

    (tmp_path / "root" / "7" / "1").mkdir(parents=True)
    (tmp_path / "root" / "7" / "1" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "root" / "2024").write_text("")
    assert export_root_problem(str(tmp_path / "root")) is None
    monkeypatch.chdir(tmp_path / "root" / "7")
    assert export_root_problem(".").endswith("--export-dir '..'.")
    assert export_root_problem("1").endswith("--export-dir '..'.")


def test_the_export_command_a_jax_run_prints_names_its_export_folder(tmp_path, monkeypatch, capsys):
    # The command printed after a JAX run whose TensorFlow export failed (or
    # could not run, TensorFlow missing) left out --export-dir and
    # --model-name: run as printed, it added a version to
    # saved_models/keras_resnet, another model's folder perhaps, not the
    # run's.
    import keras

    from keras_resnet import training
    from keras_resnet.config import TrainConfig
    from keras_resnet.export import ExportError

    config = TrainConfig(export_dir=str(tmp_path / "exports"), model_name="cifar")
    wanted = f"--export-dir {tmp_path / 'exports'} --model-name cifar"
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    failed = subprocess.CompletedProcess([], 1, "", "python -m keras_resnet.export: error: disk full")
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: failed)
    with pytest.raises(ExportError, match="Rerun: python -m keras_resnet.export ") as error:
        training.export_model(None, "runs/x", config, None)
    assert wanted in str(error.value)
    monkeypatch.setattr(training.importlib.util, "find_spec", lambda name: None)
    assert training.export_model(None, "runs/x", config, None) is None
    assert wanted in capsys.readouterr().out
