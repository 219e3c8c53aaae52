"""SavedModel export for TensorFlow Serving, and `python -m keras_resnet.export`.

Layout: `<export_dir>/<model_name>/<version>/`, versions 1, 2, 3, ... A new
version for every export; an existing one is never replaced. The version is
written under a temporary name and renamed into place, so TF Serving (which
ignores non-numeric folder names) never sees a half-written model.

Signatures:
- `serving_default`: `images` float32 (None, 32, 32, 3), raw 0-255 pixels ->
  `probabilities` float32 (None, 10), `class_ids` int64 (None,).
- `class_names`: no input -> `class_names` string (10,).
`assets.extra/class_names.txt` holds the same names, one per line.
"""

import importlib.util
import json
import os
import shutil
import sys
import tempfile

from keras_resnet import cli
from keras_resnet.config import EXPORT_ROOT
from keras_resnet.config import MODEL_NAME
from keras_resnet.data import CLASS_NAMES


class ExportError(RuntimeError):
    """An export failed; the message says why and how to retry, `reason`
    (where known) why alone."""

    def __init__(self, message, reason=None):
        super().__init__(message)
        self.reason = reason


def version_folders(model_dir):
    """The names of `model_dir`'s version folders, lowest version first.

    TF Serving reads a version folder's name as a number, so `007` is
    version 7: the names are kept as they are, for paths.
    """
    if not os.path.isdir(model_dir):
        return []
    # isdigit() alone takes "²", which int() refuses.
    names = [n for n in os.listdir(model_dir) if n.isascii() and n.isdigit()]
    return sorted(names, key=lambda n: (int(n), n))


def export_root_problem(export_dir, model_name=None):
    """Why `export_dir` is no export root, or None: it is a model folder (it
    holds version folders, or is named `model_name` and holds no folder of
    that name, as a model folder with no version yet) or a version folder
    (it holds `saved_model.pb`). An export there would nest a model folder
    inside it, which TF Serving, `predict` and `evaluate` never look into."""
    def holds_saved_model(folder):
        return os.path.isfile(os.path.join(folder, "saved_model.pb"))

    # A version folder holds saved_model.pb: a model named "7", or a file
    # "2024", in an export root makes no model folder of it.
    if any(holds_saved_model(os.path.join(export_dir, v)) for v in version_folders(export_dir)):
        kind, up = "a model folder (it holds version folders)", 1
    elif holds_saved_model(export_dir):
        kind, up = "a version folder", 2
    elif (model_name and os.path.basename(os.path.abspath(export_dir)) == model_name
          and not os.path.isdir(os.path.join(export_dir, model_name))):  # an export root of old
        kind, up = f"the model folder of --model-name {model_name}", 1
    else:
        return None
    root = os.path.abspath(export_dir)
    for _ in range(up):
        root = os.path.dirname(root)
    if not os.path.isabs(export_dir):
        root = os.path.relpath(root)
    return (
        f"--export-dir {export_dir} is {kind}, not an export root: the model would be "
        f"written inside it, where TF Serving never looks. Pass the folder that holds "
        f"the model folders: --export-dir {root!r}."
    )


def _readable_as_any_folder(path):
    """Gives `path` the permissions `os.makedirs` would: `mkdtemp` makes its
    folder private (0o700), which TF Serving, running as another user,
    could not read."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)


def export_saved_model(model, export_dir=EXPORT_ROOT, model_name=MODEL_NAME,
                       class_names=CLASS_NAMES):
    """Exports `model` as the next version of a TF Serving model folder.

    Args:
        model: a keras-resnet classifier (any backend's weights; the export
            itself needs TensorFlow).
        export_dir: root of the TF Serving model folders.
        model_name: the model's folder (the name TF Serving serves it under).
        class_names: names of the 10 classes, stored with the model.

    Returns:
        The path of the new version folder.

    Raises:
        ValueError: `export_dir` is empty or a model or version folder,
            `model_name` is not one folder
            name, `class_names` are not distinct one-line names, the model
            does not map 32x32 RGB images to one probability per class name,
            or the model folder cannot be made (a file is in the way).
        ExportError: Keras runs on another backend than TensorFlow, or the
            model folder cannot be created.
    """
    import keras

    from keras_resnet.checks import check_class_names
    from keras_resnet.checks import check_path
    from keras_resnet.model import classifier_problem
    from keras_resnet.paths import can_create_folder
    from keras_resnet.paths import empty_folder_problem
    from keras_resnet.paths import model_name_problem

    if keras.backend.backend() != "tensorflow":
        # The serving function calls TensorFlow on the model's outputs,
        # which another backend's traced arrays cannot go through.
        raise ExportError(
            f"the SavedModel export runs on Keras' TensorFlow backend, not {keras.backend.backend()}: "
            "save the model (model.save('model.keras')) and run python -m keras_resnet.export "
            "model.keras, which loads it on TensorFlow."
        )
    if not isinstance(export_dir, str):  # "" is named below, as the flag's
        check_path("export_dir", export_dir)
    if problem := (empty_folder_problem(export_dir, "--export-dir", EXPORT_ROOT)
                   or model_name_problem(model_name) or export_root_problem(export_dir, model_name)):
        raise ValueError(problem)
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a Keras model. Received: model={model!r}")
    check_class_names("class_names", class_names)
    if problem := classifier_problem(model, classes=len(class_names)):
        other_count = (isinstance(model.output_shape, tuple) and len(model.output_shape) == 2
                       and model.output_shape[-1] != len(class_names))
        hint = ": pass one class name per output (class_names=...)" if other_count else ""
        raise ValueError(f"`model` {problem}{hint}.")
    model_dir = os.path.join(export_dir, model_name)
    if not can_create_folder(model_dir):  # was a bare "[Errno 17] File exists"
        raise ValueError(
            f"{model_dir} cannot be created or written to as a folder: choose another "
            "--export-dir or --model-name."
        )
    import tensorflow as tf

    try:  # `can_create_folder` trusts `os.access`, which a root user or /sys can defeat
        os.makedirs(model_dir, exist_ok=True)
    except OSError as e:
        raise ExportError(
            f"{model_dir} cannot be created ({e.strerror}): choose another --export-dir."
        ) from None
    names = tf.constant(list(class_names))

    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images):
        # A signature checks dtypes but not shapes: without this, 28x28 or
        # unbatched (32, 32, 3) images would be classified silently.
        images = tf.ensure_shape(images, (None, 32, 32, 3))
        probabilities = model(images, training=False)
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {"probabilities": probabilities, "class_ids": class_ids}

    def serve_class_names():
        return {"class_names": names}

    archive.add_endpoint(
        "serving_default",
        serve,
        input_signature=[tf.TensorSpec((None, 32, 32, 3), tf.float32, name="images")],
    )
    archive.add_endpoint("class_names", serve_class_names, input_signature=[])

    staging = tempfile.mkdtemp(prefix=".export-", dir=model_dir)
    try:
        archive.write_out(staging, verbose=False)
        extra = os.path.join(staging, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        with open(os.path.join(extra, "class_names.txt"), "w") as f:
            f.write("\n".join(class_names) + "\n")
        _readable_as_any_folder(staging)
        while True:
            versions = version_folders(model_dir)
            target = os.path.join(model_dir, str(int(versions[-1]) + 1 if versions else 1))
            try:
                os.rename(staging, target)  # fails if target exists: never replaces
                return target
            except OSError:
                if not os.path.exists(target):
                    raise
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = cli.ArgumentParser(
        prog="python -m keras_resnet.export",
        description="Export a .keras checkpoint as a SavedModel for TF Serving.",
    )
    parser.add_argument("checkpoint", type=cli.path, help="a .keras file saved by keras-resnet")
    parser.add_argument("--export-dir", type=cli.path, default=EXPORT_ROOT,
                        help=f"SavedModel root, holding the model folders (default {EXPORT_ROOT})")
    parser.add_argument("--model-name", default=MODEL_NAME,
                        help=f"model folder in --export-dir (default {MODEL_NAME})")
    parser.add_argument(
        "--data-dir", type=cli.path,
        help="the python-version CIFAR-10 folder the model was trained on, whose batches.meta "
             "names the classes (default: CIFAR-10's names)",
    )
    args = parser.parse_args(argv)
    if importlib.util.find_spec("tensorflow") is None:
        parser.exit(1, f"{parser.prog}: error: the export needs TensorFlow, which is not "
                       "installed: pip install tensorflow.\n")
    if "keras" not in sys.modules:
        # A .keras file loads on any backend; the export needs TensorFlow's,
        # whatever backend $KERAS_BACKEND or keras.json chooses (jax for
        # training, say): the variable is read before keras.json.
        os.environ["KERAS_BACKEND"] = "tensorflow"

    from keras_resnet.data import read_class_names
    from keras_resnet.model import load_model
    from keras_resnet.paths import data_dir_problem

    if problem := data_dir_problem(args.data_dir):
        parser.exit(2, f"{parser.prog}: error: {problem}\n")
    try:
        class_names = read_class_names(args.data_dir) if args.data_dir else CLASS_NAMES
        model = load_model(args.checkpoint)
        path = export_saved_model(model, args.export_dir, args.model_name, class_names)
    except (ValueError, OSError) as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    except ExportError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    except KeyboardInterrupt:  # else Ctrl-C ends in a traceback through TensorFlow
        parser.exit(130, "\nInterrupted. A version is renamed into place whole: none was left in part.\n")
    print(json.dumps({"export_path": path, "params": model.count_params()}))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_command(main, "python -m keras_resnet.export"))
