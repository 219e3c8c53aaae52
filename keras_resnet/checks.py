"""Argument checks of the public API (`build_model`, the layers, ...).

Each raises a `ValueError` that names the argument and quotes the value
received, keras-hub's style, before the value can fail deep inside Keras or
numpy with a `TypeError`. Booleans are not taken for numbers, and numbers
are not taken for booleans.
"""

import math
import numbers
import os

import numpy as np

from keras_resnet.presets import IMAGE_SHAPE


def _refuse(name, value, expected):
    # NumPy floats pass as numbers; other NumPy values fail for their type,
    # and "must be a positive integer. Received: np.int64(64)" reads as a
    # contradiction.
    if type(value).__module__ == "numpy":
        if getattr(value, "ndim", 0):
            expected += f" (a list, not a NumPy array: pass `{name}.tolist()`)"
        elif isinstance(value, numbers.Integral) or not isinstance(value, numbers.Real):
            expected += f" (a Python value, not a NumPy scalar: pass `{name}.item()`)"
    elif isinstance(value, (list, tuple)) and any(type(v).__module__ == "numpy" for v in value):
        expected += f" (Python values, not NumPy scalars: pass `[v.item() for v in {name}]`)"
    raise ValueError(f"`{name}` must be {expected}. Received: {name}={value!r}")


def _is_int(value, minimum):
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def is_number(value):
    """Whether `value` is a real number (NumPy's too), not a boolean."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_positive_ints(values):
    """Whether `values` is a non-empty list or tuple of positive integers."""
    return isinstance(values, (list, tuple)) and bool(values) and all(_is_int(v, 1) for v in values)


def check_int(name, value, minimum=1, maximum=None):
    """An integer of at least `minimum` (and at most `maximum`, if given)."""
    if maximum is not None:
        if not _is_int(value, minimum) or value > maximum:
            _refuse(name, value, f"an integer in [{minimum}, {maximum}]")
    elif not _is_int(value, minimum):
        expected = {0: "a non-negative integer", 1: "a positive integer"}
        _refuse(name, value, expected.get(minimum, f"an integer >= {minimum}"))


def check_positive_ints(name, values):
    """A non-empty list (or tuple) of positive integers."""
    if not is_positive_ints(values):
        _refuse(name, values, "a non-empty list of positive integers")


def check_number(name, value, low, high=None):
    """A finite real number in `[low, high)`, or `> low` when `high` is `None`."""
    in_range = is_number(value) and (
        (isinstance(value, numbers.Integral) or math.isfinite(value))  # no float of 10**400
        and (value > low if high is None else low <= value < high)
    )
    if not in_range:
        _refuse(name, value,
                f"a finite number > {low}" if high is None else f"a number in [{low}, {high})")


def check_bool(name, value):
    """`True` or `False`, not merely truthy: `"no"` would read as `True`."""
    if not isinstance(value, bool):
        _refuse(name, value, "True or False")


def check_choice(name, value, choices):
    """One of `choices`, of the same type (`True` is not taken for `1`)."""
    if not any(type(value) is type(c) and value == c for c in choices):
        _refuse(name, value, f"one of {choices}")


def check_floating_dtype(dtype):
    """A floating-point dtype or dtype policy (`"float32"`, `"mixed_bfloat16"`,
    a `keras.DTypePolicy`), or `None` for Keras' global policy; an integer
    or boolean one failed in Keras' initializers."""
    if dtype is None:
        return
    import keras  # here: the settings are checked before Keras loads (`config.py`)

    try:
        variable_dtype = keras.dtype_policies.get(dtype).variable_dtype
    except (TypeError, ValueError):
        variable_dtype = None
    if variable_dtype not in ("float16", "bfloat16", "float32", "float64"):
        _refuse("dtype", dtype, 'a floating-point dtype or policy, e.g. "float32" or "mixed_bfloat16"')


def check_classifier(name, model):
    """A loaded model: anything with Keras' `predict(images, batch_size=...,
    verbose=...)`, such as what `load_classifier` gives."""
    if not callable(getattr(model, "predict", None)):
        hint = (f" (a loaded model, not a path: pass `load_classifier({name})[0]`)"
                if isinstance(model, (str, os.PathLike)) else "")
        _refuse(name, model, f"a Keras model or a classifier from `load_classifier(path)`{hint}")


def check_path(name, value):
    """A path: a `str` or an `os.PathLike`, not empty."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        _refuse(name, value, "a path (a str or os.PathLike)")


def check_metric_name(name, value):
    """The name of a logged metric (a non-empty `str`)."""
    if not isinstance(value, str) or not value:
        _refuse(name, value, 'the name of a logged metric, e.g. "val_accuracy"')


def check_class_names(name, names):
    """Class names: a list or tuple of one-line, non-empty strings, each
    given once (`class_names.txt` holds one per line, and per-class
    accuracy is keyed by name)."""
    if not (isinstance(names, (list, tuple)) and all(
            isinstance(n, str) and n.strip() and n.splitlines() == [n] for n in names)):
        _refuse(name, names, "a list or tuple of one-line, non-empty strings")
    if repeated := [n for n in names if names.count(n) > 1]:
        _refuse(name, names, f"a list or tuple of distinct names ({repeated[0]!r} is given "
                             f"{names.count(repeated[0])} times)")


def check_images(name, images, allow_empty=False, dtype="float32"):
    """A batch of 32x32 RGB images, shape (N, 32, 32, 3), with N > 0 unless
    `allow_empty`, of finite raw pixel values in [0, 255] (`check_pixels`);
    returned as a NumPy array of `dtype`, or as given for `None` (a uint8
    training set, 150 MB, is not copied to 600 MB of float32). A model
    would take others: Keras retraces a network for 28x28 images without a
    word."""
    wanted = (f"`{name}` must be a batch of {'' if allow_empty else 'one or more '}"
              f"{IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} RGB images, shape "
              f"(N, {', '.join(map(str, IMAGE_SHAPE))})")
    try:
        array = np.asarray(images)
        if array.dtype.kind == "V":  # bfloat16 (ml_dtypes', JAX's and TensorFlow's): not a NumPy float
            array = array.astype("float32")
    except (TypeError, ValueError):  # ragged lists, structured arrays
        array = None
    if array is None or array.dtype.kind not in "biuf":  # a tf.data.Dataset, a string
        raise ValueError(f"{wanted}, as an array. Received: {type(images).__name__}")
    if array.ndim != 4 or array.shape[1:] != IMAGE_SHAPE or not (len(array) or allow_empty):
        raise ValueError(f"{wanted}. Received: shape {array.shape}")
    check_pixels(name, array)
    return array if dtype is None else array.astype(dtype, copy=False)


def check_pixels(name, images):
    """Images (a NumPy array) of finite raw pixel values in [0, 255], not
    scaled to [0, 1] or [-1, 1]; returned as given."""
    # The network normalizes raw pixels itself: NaN came out as class 0 of
    # probability NaN, and images scaled otherwise as confident nonsense.
    pixels = f"`{name}` must hold raw pixel values in [0, 255] (the model normalizes them itself)"
    floating = images.dtype.kind == "f"  # integers are finite and whole: no pass over them
    if floating and (bad := images.size - np.count_nonzero(np.isfinite(images))):
        raise ValueError(f"{pixels}. Received: {bad} of {images.size} values NaN or infinite")
    if not images.size:
        return images
    low, high = images.min(), images.max()
    # Scaled images (`x / 255`, or Keras' `Rescaling`) were classified, and
    # the whitening stem fitted to them, without a word. Raw pixels within
    # [-1, 1] are whole numbers: black, or nearly.
    if floating and -1 <= low and high <= 1 and not np.array_equal(images, np.round(images)):
        fix = f"{name} * 255" if low >= 0 else f"({name} + 1) * 127.5"
        raise ValueError(f"{pixels}, not pixels scaled to [{0 if low >= 0 else -1}, 1]: pass "
                         f"{fix}. Received: values from {low:g} to {high:g}")
    if low < 0 or high > 255:
        raise ValueError(f"{pixels}; clip resampled images, np.clip(images, 0, 255). "
                         f"Received: values from {low:g} to {high:g}")
    return images


def check_probabilities(name, probabilities):
    """Class probabilities, shape (N, classes), as `predict` gives them;
    returned as a NumPy array."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or not np.issubdtype(probabilities.dtype, np.number):
        raise ValueError(f"`{name}` must be an (N, classes) array of class probabilities, as "
                         f"`predict` gives them. Received: shape {probabilities.shape}, "
                         f"dtype {probabilities.dtype}")
    return probabilities


def check_confusion_matrix(name, matrix):
    """A square confusion matrix, (classes, classes) counts; returned as a
    NumPy array (`evaluate`'s metrics hold it as a list)."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"`{name}` must be a square confusion matrix, (classes, classes) counts. "
                         f"Received: shape {matrix.shape}")
    return matrix
