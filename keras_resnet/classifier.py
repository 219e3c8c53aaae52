"""A trained classifier for inference: a `.keras` file or a SavedModel.

`load_classifier(path)` is what `python -m keras_resnet.evaluate` and
`python -m keras_resnet.predict` load models with (the serving benchmark
uses `SavedModelClassifier` itself): both kinds answer Keras' `predict(images, batch_size, verbose)`,
which refuses images of another shape than (N, 32, 32, 3) in a `ValueError`, and a bad
path or a foreign model is one `ModelError` whose message says what to pass.
"""

import os

import numpy as np

from keras_resnet.checks import check_classifier
from keras_resnet.checks import check_images
from keras_resnet.checks import check_int
from keras_resnet.checks import check_path
from keras_resnet.data import CLASS_NAMES
from keras_resnet.export import version_folders
from keras_resnet.presets import IMAGE_SHAPE
from keras_resnet.presets import NUM_CLASSES

# How far from 1 a loaded classifier's probabilities may sum (float32 and
# bfloat16 rounding).
PROBABILITY_SUM_TOLERANCE = 1e-2


class ModelError(ValueError):
    """The model is missing or not a keras-resnet classifier."""


class _Classifier:
    """What both kinds share: a `predict` that checks the images first."""

    def predict(self, images, batch_size=256, verbose=0):
        """Probabilities of (N, 32, 32, 3) images in 0-255, as float32
        (N, 10) numpy, batch by batch (like `Model.predict`).

        Raises:
            ValueError: `images` are not a batch of 32x32 RGB images (the
                model would take 28x28 ones, or fail deep inside), or
                `batch_size` is not a positive integer.
        """
        check_int("batch_size", batch_size)
        images = check_images("images", images, allow_empty=True)
        if not len(images):  # Keras' own predict fails on it
            return np.zeros((0, NUM_CLASSES), "float32")
        # One batch of every image, as a larger batch is (Keras' predict
        # raised an OverflowError past 2**63).
        return self._predict(images, min(batch_size, len(images)), verbose)


class KerasClassifier(_Classifier):
    """A `.keras` classifier (from `model.load_model`) whose `predict` checks
    its images: once Keras' own has traced 32x32 images, it retraces the
    network for 28x28 or one-channel ones and classifies them without a word.

    Attributes:
        model: the Keras model.
        name: its name.
    """

    def __init__(self, model):
        check_classifier("model", model)
        self.model = model
        self.name = model.name

    def count_params(self):
        return self.model.count_params()

    def _predict(self, images, batch_size, verbose):
        return self.model.predict(images, batch_size=batch_size, verbose=verbose)


class SavedModelClassifier(_Classifier):
    """An exported SavedModel's `serving_default`, with Keras' `predict()`,
    and its class names (from the `class_names` signature when it has one).

    Args:
        path: a SavedModel version folder (holding `saved_model.pb`).

    Raises:
        ModelError: the folder is not a SavedModel of a 10-class classifier
            with the `images` -> `probabilities` serving signature.
    """

    def __init__(self, path):
        check_path("path", path)
        try:
            # Keras, and so its backend, before TensorFlow: on
            # KERAS_BACKEND=torch, Keras imports torch._dynamo and with it
            # triton (torch's CUDA wheels), which segfaulted loaded after
            # TensorFlow >= 2.20 (tensorflow/tensorflow#124205). `_predict`
            # imports Keras anyway.
            import keras  # noqa: F401
            import tensorflow as tf
        except ImportError:
            raise ModelError(
                f"{path} is a SavedModel, and loading one needs TensorFlow: "
                "pip install tensorflow, or evaluate the .keras file instead."
            ) from None
        self.path = path
        self.name = saved_model_name(path)
        try:
            self._loaded = tf.saved_model.load(path)
        except Exception as e:
            raise ModelError(
                f"Cannot load {path} as a SavedModel: {type(e).__name__}: "
                f"{_first_line(e)}. If it was exported whole once, export it again "
                "(python -m keras_resnet.export RUN/model.keras)."
            ) from None
        serve = getattr(self._loaded, "signatures", {}).get("serving_default")
        inputs = serve.structured_input_signature[1] if serve else {}
        if serve is None or "images" not in inputs or (
            "probabilities" not in serve.structured_outputs
        ):
            raise ModelError(
                f"{path} is not a keras-resnet SavedModel: it needs a "
                "serving_default signature from `images` to `probabilities` "
                "(export one with `python -m keras_resnet.export`)."
            )
        spec = inputs["images"]
        outputs = serve.structured_outputs["probabilities"]
        if tuple(spec.shape[1:]) != IMAGE_SHAPE or outputs.shape[-1] != NUM_CLASSES:
            raise ModelError(
                f"{path} is not a CIFAR-10 classifier: serving_default maps "
                f"{spec.shape} to {outputs.shape}, expected (None, {', '.join(map(str, IMAGE_SHAPE))}) "
                f"to (None, {NUM_CLASSES})."
            )
        self._serve = serve
        self._tf = tf
        try:
            row = self(np.zeros((1, *IMAGE_SHAPE), "float32"))[0]
        except Exception as e:  # a signature of fixed batch size, say
            raise ModelError(
                f"{path}: its serving_default fails on one 32x32 image: "
                f"{type(e).__name__}: {_first_line(e)}"
            ) from None
        if problem := probabilities_problem(row):
            raise ModelError(
                f"{path} {problem}: export a model that ends with a softmax, "
                "as build_model's does."
            )
        names = self._loaded.signatures.get("class_names")
        self.class_names = (
            tuple(n.decode("utf-8") for n in names()["class_names"].numpy())
            if names is not None else CLASS_NAMES
        )
        if len(self.class_names) != NUM_CLASSES:
            raise ModelError(
                f"{path}: its class_names signature names {len(self.class_names)} classes, "
                f"expected {NUM_CLASSES}."
            )

    def __call__(self, images):
        """Probabilities of one batch, float32 numpy."""
        images = self._tf.constant(images, dtype=self._tf.float32)
        return self._serve(images=images)["probabilities"].numpy()

    def _predict(self, images, batch_size, verbose):
        import keras

        count = len(images)
        progress = keras.utils.Progbar(count) if verbose else None
        outputs = []
        for start in range(0, count, batch_size):
            outputs.append(self(images[start : start + batch_size]))
            if progress:
                progress.update(min(start + batch_size, count))
        return np.concatenate(outputs)


def probabilities_problem(row):
    """What is wrong with one image's model outputs as class probabilities,
    or None. Accuracy reads the same from logits, but the loss, the
    confidences and an export's `probabilities` would not (nor from NaNs,
    which would also make predict's JSON invalid)."""
    row = np.asarray(row, dtype=np.float64)
    total = float(row.sum())
    if not abs(total - 1) <= PROBABILITY_SUM_TOLERANCE:  # NaN too
        return f"does not output class probabilities (one image's outputs sum to {total:.3g}, not 1)"
    if row.min() < 0:
        return f"does not output class probabilities (one image's outputs include {row.min():.3g}, below 0)"
    return None


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def saved_model_name(path):
    version = os.path.basename(os.path.normpath(path))
    parent = os.path.basename(os.path.dirname(os.path.normpath(path)))
    return f"{parent}-{version}" if version.isdigit() and parent else version


def resolve_saved_model(path):
    """The SavedModel folder at `path`: itself, or its highest version.

    Raises:
        ModelError: neither `saved_model.pb` nor numbered versions, or the
            highest version is incomplete.
    """
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = version_folders(path)
    if not versions:
        in_run = os.path.join(path, "model.keras")
        models = [name for name in sorted(os.listdir(path))
                  if version_folders(os.path.join(path, name))]
        hint = (f" It is a run folder: pass {in_run}." if os.path.isfile(in_run) else
                f" It is an export root: pass one of its models, e.g. {os.path.join(path, models[0])}."
                if models else "")
        raise ModelError(
            f"{path} holds no SavedModel: expected saved_model.pb, or version "
            f"folders 1, 2, ... holding one (the TF Serving layout).{hint}"
        )
    highest = os.path.join(path, versions[-1])
    if not os.path.isfile(os.path.join(highest, "saved_model.pb")):
        # TF Serving would skip it; a silent fallback to an older version
        # would misreport which model was used.
        raise ModelError(
            f"{path}: its highest version {highest} holds no saved_model.pb "
            "(an incomplete export?). Pass a complete version folder instead."
        )
    return highest


def load_classifier(path):
    """Loads a `.keras` file or a SavedModel folder for inference.

    Returns:
        `(model, kind)`: something with `predict(images, batch_size, verbose)`
        and `name` (a `KerasClassifier`, or a `SavedModelClassifier` that also
        has `class_names`), and `"keras"` or `"saved_model"`.

    Raises:
        ModelError: the path is missing or not a keras-resnet classifier.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ModelError(f"--model must be the path of a .keras file or a SavedModel folder; got {path!r}.")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelError(
            f"No model at {path}: pass --model a .keras file or a SavedModel "
            "folder (e.g. saved_models/keras_resnet)."
        )
    if os.path.isdir(path):
        return SavedModelClassifier(resolve_saved_model(path)), "saved_model"
    from keras_resnet.model import load_model

    try:
        return KerasClassifier(load_model(path)), "keras"
    except ValueError as e:
        raise ModelError(str(e)) from None
