"""Model assembly: `build_model()` of a preset (`presets.py`), with the parameter cap.

The network takes raw pixels (0-255, float or uint8) of shape (32, 32, 3),
normalizes them by the CIFAR-10 channel statistics as its first layer, and
returns class probabilities (a float32 softmax), so an exported model needs
no client-side preprocessing.
"""

import contextlib
import os
import random
import zipfile
from concurrent.futures import ThreadPoolExecutor

import keras
from keras import layers

from keras_resnet import augment  # noqa: F401  (registers the augmentation layers for load_model)
from keras_resnet.checks import check_bool
from keras_resnet.checks import check_floating_dtype
from keras_resnet.checks import check_images
from keras_resnet.checks import check_int
from keras_resnet.checks import check_number
from keras_resnet.checks import check_positive_ints
from keras_resnet.layers import FusedBatchNormalization
from keras_resnet.layers import PatchWhitening
from keras_resnet.layers import ResidualBlock
from keras_resnet.optimizers import LookaheadSGD  # noqa: F401  (registered: checkpoints hold it)
from keras_resnet.presets import CIFAR10_MEAN
from keras_resnet.presets import CIFAR10_STD
from keras_resnet.presets import IMAGE_SHAPE
from keras_resnet.presets import NUM_CLASSES
from keras_resnet.presets import PARAM_CAP
from keras_resnet.presets import preset_layout


def build_model(
    preset="seed",
    *,
    allow_over_cap=False,
    name=None,
    **overrides,
):
    """Builds an uncompiled ResNet for 32x32 RGB images, functional API.

    raw pixels -> normalization -> stem conv/BN/ReLU -> residual stages ->
    global average pooling -> dropout -> dense -> softmax (float32).

    Args:
        preset: str. One of `PRESETS` (`"seed"`, `"fast"`, `"fast-cpu"`,
            `"best"`).
        allow_over_cap: bool. Allow more than `PARAM_CAP` (5,000,000)
            parameters. Defaults to `False`.
        name: str or `None`. Model name; defaults to `resnet_<preset>`.
        **overrides: any preset argument: `stem_filters`, `stem_kernel_size`,
            `stem_strides`, `stem_whitening`, `stage_filters`,
            `stage_blocks`, `stage_strides`, `dropout`, `num_classes`,
            `bn_momentum`, `downsample`, `pooled_shortcut`,
            `zero_init_residual`, `dtype`.
            `stem_whitening=True` puts a fixed `PatchWhitening` of
            `stem_kernel_size` patches in place of the trained stem
            convolution: its width is `6 * stem_kernel_size**2`, so
            `stem_filters` must be `None`; fit it with `adapt_whitening`.
            `downsample="max_pool"` makes each downsampling block convolve
            at full resolution and max-pool, `pooled_shortcut=True` gives
            every strided block the ResNet-D shortcut, `zero_init_residual=True` a
            residual branch that starts at zero (see `ResidualBlock`).
            `dtype` is the layers' dtype policy, e.g. `"mixed_bfloat16"`
            (the softmax stays float32). With `"mixed_float16"`, compile
            with `keras.optimizers.LossScaleOptimizer(optimizer)`, as
            `train.py` does: Keras adds loss scaling by itself only under a
            global `mixed_float16` policy, and float16 gradients underflow.

    Returns:
        A `keras.Model` mapping `(None, 32, 32, 3)` pixels in 0-255 to
        `(None, num_classes)` probabilities.

    Raises:
        ValueError: for an unknown preset or argument, an invalid value, or a
            network over the parameter cap.

    Example:
    ```python
    model = build_model("seed")
    model.count_params()  # 4916682
    wide = build_model("seed", stage_filters=(64, 128, 256, 480))
    ```
    """
    config = preset_layout(preset, **overrides)
    check_bool("allow_over_cap", allow_over_cap)
    _check_layout(config)
    dtype = config["dtype"]

    # === Layers ===
    inputs = keras.Input(shape=IMAGE_SHAPE, name="images")
    x = layers.Normalization(
        mean=CIFAR10_MEAN,
        variance=[s**2 for s in CIFAR10_STD],
        dtype=dtype,
        name="normalize",
    )(inputs)
    if config["stem_whitening"]:
        x = PatchWhitening(
            config["stem_kernel_size"], dtype=dtype, name="stem_whitening"
        )(x)
    else:
        x = layers.Conv2D(
            config["stem_filters"],
            config["stem_kernel_size"],
            strides=config["stem_strides"],
            padding="same",
            data_format="channels_last",  # not keras.json's: the network is NHWC
            use_bias=False,
            kernel_initializer="he_normal",
            dtype=dtype,
            name="stem_conv",
        )(x)
    x = FusedBatchNormalization(
        momentum=config["bn_momentum"], epsilon=1e-5, dtype=dtype, name="stem_bn"
    )(x)
    x = layers.ReLU(dtype=dtype, name="stem_relu")(x)
    for stage, (filters, blocks, strides) in enumerate(
        zip(config["stage_filters"], config["stage_blocks"], config["stage_strides"]), start=1
    ):
        for block in range(1, blocks + 1):
            x = ResidualBlock(
                filters,
                strides=strides if block == 1 else 1,
                bn_momentum=config["bn_momentum"],
                downsample=config["downsample"],
                pooled_shortcut=config["pooled_shortcut"],
                zero_init_residual=config["zero_init_residual"],
                dtype=dtype,
                name=f"stage{stage}_block{block}",
            )(x)
    x = layers.GlobalAveragePooling2D(data_format="channels_last", dtype=dtype, name="avg_pool")(x)
    if config["dropout"]:
        # A seed of its own, drawn as Keras draws one for a Dropout without
        # it (so the same on TensorFlow and JAX): on PyTorch, Keras' Dropout
        # without a seed draws from torch's global generator, not from its
        # SeedGenerator, which `skip_random_draws` moves on at a resume.
        x = layers.Dropout(config["dropout"], seed=random.randint(1, 10**9), dtype=dtype,
                           name="dropout")(x)
    x = layers.Dense(config["num_classes"], dtype=dtype, name="logits")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name=name or f"resnet_{preset}")

    params = model.count_params()
    if params > PARAM_CAP and not allow_over_cap:
        raise ValueError(
            f"This configuration has {params:,} parameters, over the cap of "
            f"{PARAM_CAP:,}. Use narrower stages or fewer blocks, or pass "
            "allow_over_cap=True to build it anyway."
        )
    return model


def _check_layout(config):
    """Refuses a layout (`build_model`'s arguments) that Keras would fail
    on, or build wrongly, with a `ValueError` quoting the value."""
    for key in ("stage_filters", "stage_blocks", "stage_strides"):
        check_positive_ints(key, config[key])
    stage_filters, stage_blocks, stage_strides = (
        list(config[key]) for key in ("stage_filters", "stage_blocks", "stage_strides")
    )
    if not len(stage_filters) == len(stage_blocks) == len(stage_strides):
        raise ValueError(
            "`stage_filters`, `stage_blocks` and `stage_strides` must have "
            f"the same length. Received: stage_filters={stage_filters}, "
            f"stage_blocks={stage_blocks}, stage_strides={stage_strides}"
        )
    if any(strides not in (1, 2) for strides in stage_strides):  # else ResidualBlock's `strides`
        raise ValueError(
            f"`stage_strides` must hold 1s and 2s. Received: stage_strides={stage_strides}"
        )
    check_int("stem_kernel_size", config["stem_kernel_size"])
    check_int("stem_strides", config["stem_strides"])
    check_int("num_classes", config["num_classes"], minimum=2)  # a softmax of 1 is always 1
    check_number("dropout", config["dropout"], 0, 1)
    check_number("bn_momentum", config["bn_momentum"], 0, 1)  # the stem's BN takes it unchecked
    check_bool("stem_whitening", config["stem_whitening"])
    if config["stem_filters"] is not None:  # None: the whitening stem's
        check_int("stem_filters", config["stem_filters"])
    if config["stem_whitening"] != (config["stem_filters"] is None):
        raise ValueError(
            "A whitening stem has a fixed width (6 * stem_kernel_size**2) and "
            "takes `stem_filters=None`; a convolution stem needs `stem_filters`. "
            f"Received: stem_whitening={config['stem_whitening']!r}, "
            f"stem_filters={config['stem_filters']!r}"
        )
    if config["stem_whitening"] and config["stem_strides"] != 1:
        raise ValueError(
            "A whitening stem works at full resolution: `stem_strides` must be 1. "
            f"Received: stem_strides={config['stem_strides']!r}"
        )
    check_floating_dtype(config["dtype"])  # int32 or bool failed in Keras' initializers


def count_params(preset="seed", **kwargs):
    """The parameter count of `build_model(preset, **kwargs)`, weights unmade.

    Builds the network's graph with its variables' shapes only
    (`keras.StatelessScope(initialize_variables=False)`): no initializer
    runs, which on JAX would compile one program per weight shape (about
    12 s for the seed network on a CPU). The build runs in a worker thread,
    and Keras keeps its global state per thread, so the caller's (layer
    names, variables awaiting initialization) is left as it was.

    Args:
        preset, **kwargs: as for `build_model`, which raises its
            `ValueError`s here too (over the cap unless
            `allow_over_cap=True`).

    Example:
    ```python
    count_params("seed")                                  # 4916682
    count_params("seed", stage_filters=[8, 8, 16, 16])    # 25770
    ```
    """

    def shapes_only():
        with keras.StatelessScope(initialize_variables=False):
            return build_model(preset, **kwargs).count_params()

    with ThreadPoolExecutor(max_workers=1) as worker:
        return worker.submit(shapes_only).result()


def adapt_whitening(model, images, batch_size=500):
    """Fits every `PatchWhitening` layer of `model` to `images`.

    Each layer is fitted to what it receives from the layers before it (the
    normalized pixels, for a whitening stem). A model without such a layer is
    left as it is. Call it on the training images before training.

    Args:
        model: a model from `build_model`, or the training model that wraps
            one after the augmentation (`inference_model`).
        images: (N, 32, 32, 3) pixels in 0-255; a few thousand are enough.
        batch_size: int. Images per `predict` batch. Defaults to `500`.

    Raises:
        ValueError: `model` is not a Keras model, or wraps a network with
            such a layer (other than `inference_model` unwraps), or `images`
            is not a non-empty batch of 32x32 RGB images or holds NaN or
            infinite values.

    Example:
    ```python
    model = build_model("fast-cpu")         # stem_whitening=True
    adapt_whitening(model, x_train[:5000])  # uint8 pixels; what train.py does
    ```
    """
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`model` must be a keras.Model, such as build_model's. Received: model={model!r}"
        )
    check_int("batch_size", batch_size)
    images = check_images("images", images)
    model = inference_model(model)  # the stem is not fitted to augmented images
    for layer in model.layers:  # else it silently stays unfitted
        if isinstance(layer, keras.Model) and any(
            isinstance(inner, PatchWhitening) for inner in _layers_within(layer)
        ):
            raise ValueError(
                f"`model` wraps the network {layer.name!r}, whose PatchWhitening layer this "
                "does not reach: fit it on that network, "
                f"adapt_whitening(model.get_layer({layer.name!r}), images)."
            )
    for layer in model.layers:
        if isinstance(layer, PatchWhitening):
            upstream = keras.Model(model.inputs, layer.input)
            with _off_the_mesh():
                inputs = upstream.predict(images, batch_size=batch_size, verbose=0)
            layer.adapt(inputs)


@contextlib.contextmanager
def _off_the_mesh():
    """Keras' distribution (JAX) unset for a `predict` of local arrays: under
    data parallelism, a batch of 500 failed on 8 devices (it does not divide
    over them), and with several processes the predictions spanned them all
    (not fetchable as one process's NumPy array)."""
    current = keras.distribution.distribution() if keras.backend.backend() == "jax" else None
    if current is None:
        yield
        return
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)


def _layers_within(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers_within(layer)


def inference_model(model):
    """The classifier inside a training model.

    Training with augmentation on the device wraps the network as
    `Sequential([augment, network])`; checkpoints of such a run hold the
    wrapper. This returns the network itself (augmentation is never part of
    an exported model), and any other model unchanged.

    Example:
    ```python
    training_model = keras.Sequential([build_augmenter(seed=0), build_model("seed")])
    inference_model(training_model).name  # "resnet_seed"
    ```
    """
    names = [layer.name for layer in model.layers]
    if names and names[0] == "augment" and isinstance(model.layers[-1], keras.Model):
        return model.layers[-1]
    return model


def _is_keras_archive(path):
    """Whether the file holds what `model.save("x.keras")` writes, whatever its name."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {"metadata.json", "config.json"} <= set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_model(path):
    """Loads a `.keras` classifier saved by this project, safely.

    `safe_mode=True`, so a file cannot run code (no lambdas); the project's
    layers are registered on import.

    Args:
        path: str or `os.PathLike`. A `.keras` file, e.g. a run's
            `model.keras` or `checkpoints/best.keras`.

    Returns:
        The inference network (`inference_model` of what the file holds),
        mapping (N, 32, 32, 3) pixels in 0-255 to 10 class probabilities.

    Raises:
        ValueError: `path` is not a path, or the file is missing, not a Keras
            archive, or not a 32x32x3 -> 10-class classifier of probabilities.

    Example:
    ```python
    model = load_model("runs/fast-cpu/model.keras")
    probabilities = model.predict(x_test[:8])  # (8, 10)
    ```
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(
            f"`path` must be the path of a .keras file, a str or os.PathLike. Received: path={path!r}"
        )
    path = os.fspath(path)
    if os.path.isdir(path):
        exported = os.path.isfile(os.path.join(path, "saved_model.pb"))
        what = "a SavedModel folder, exported already" if exported else "a folder"
        raise ValueError(f"Expected a .keras model file, got {path!r}, {what}.")
    if not os.path.exists(path):
        raise ValueError(f"No .keras model file at {path!r}: no such file.")
    if not path.endswith(".keras"):
        hint = (" (an exported model's file: pass its version folder)"
                if os.path.basename(path) == "saved_model.pb" else
                " (a Keras archive by its contents, which Keras loads only under a name "
                "ending in .keras: rename it so)" if _is_keras_archive(path) else "")
        raise ValueError(f"Expected a .keras model file, got {path!r}{hint}.")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a Keras model archive (a .keras file is a zip "
            "file); pass a model saved by train.py or `model.save()`."
        )
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as e:
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if "safe_mode" in str(e):  # Keras' advice, which no flag here can take
            reason = ("it holds Python code (a lambda), which keras-resnet never runs: "
                      "load only models saved by train.py or built from this project's layers")
        raise ValueError(f"Cannot load {path} as a keras-resnet model: {reason}") from None
    model = inference_model(model)
    # XLA as Keras' "auto" chooses it for this backend and machine (on JAX,
    # not for TensorFlow on a CPU), not as the file's training had it: a
    # model trained on JAX predicted about 7 times slower on TensorFlow's
    # CPU, one trained on TensorFlow's CPU op by op on JAX.
    model.jit_compile = None
    if problem := classifier_problem(model):
        raise ValueError(f"{path} {problem}.")
    return model


def classifier_problem(model, classes=NUM_CLASSES):
    """What keeps `model` from mapping 32x32 RGB images to probabilities of
    `classes` classes, as the end of a sentence about it; None if nothing."""
    expected = f"expected (None, {', '.join(map(str, IMAGE_SHAPE))}) to (None, {classes})"
    if not model.built:  # a Sequential saved unbuilt has no input_shape to read
        return f"is not a CIFAR-10 classifier: it was never built, so it has no input shape; {expected}"
    if tuple(model.input_shape[1:]) != IMAGE_SHAPE or tuple(model.output_shape[1:]) != (classes,):
        return (f"is not a CIFAR-10 classifier: it maps {model.input_shape} to "
                f"{model.output_shape}, {expected}")
    outputs = model(keras.ops.zeros((1, *IMAGE_SHAPE)), training=False)
    if keras.tree.is_nested(outputs):  # a dict of one passes the shape check
        return (f"is not a CIFAR-10 classifier: its output is a {type(outputs).__name__} "
                f"of {len(outputs)}, not one array; {expected}")
    from keras_resnet.classifier import probabilities_problem

    if problem := probabilities_problem(keras.ops.convert_to_numpy(outputs)[0]):
        return f"{problem}: end the model with a softmax, as build_model does"
    return None
