"""The training augmentation: random crop after padding, horizontal flip and
cutout, as seeded Keras preprocessing layers on whole batches.

Written with backend ops, so the same layers run in a `tf.data` pipeline (on
the host, whatever the backend) and inside a jit-compiled train step (on the
device); none of them is part of an exported model.
"""

import keras
import numpy as np

from keras_resnet.checks import check_bool
from keras_resnet.checks import check_choice
from keras_resnet.checks import check_int
from keras_resnet.layers import PACKAGE
from keras_resnet.layers import seed_limit

try:  # Keras >= 3.12 names it DataLayer; older releases TFDataLayer.
    from keras.src.layers.preprocessing.data_layer import DataLayer
except ImportError:  # pragma: no cover - depends on the installed Keras
    from keras.src.layers.preprocessing.tf_data_layer import TFDataLayer as DataLayer


class _RandomImageLayer(DataLayer):
    """Base of the augmentation layers: a seeded layer that is a no-op at
    inference and works on whole batches, in a `tf.data` pipeline (with
    TensorFlow ops, whatever the backend) or inside a jit-compiled train step.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        if seed is not None:  # JAX's uint32 state refused -1 and 2**32, PyTorch's int32 2**31
            check_int("seed", seed, minimum=0, maximum=seed_limit() - 1)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def random_uniform(self, shape, minval=0.0, maxval=1.0):
        return self.backend.random.uniform(
            shape,
            minval=minval,
            maxval=maxval,
            seed=self._get_seed_generator(self.backend._backend),
        )

    def call(self, images, training=True):
        if getattr(images, "ndim", None) not in (4, None):  # None: a rank unknown to tf.data
            raise ValueError(
                f"`{type(self).__name__}` takes a batch of images, shape (batch, height, "
                "width, channels); add the batch axis to a single image (`images[None]`). "
                f"Received: shape={tuple(images.shape)}"
            )
        if not training or images.shape[0] == 0:  # TF's reflect padding fails on no images
            return images
        return self.augment(images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomPadCrop(_RandomImageLayer):
    """Pads a batch of images and crops each back at a random offset.

    The classic CIFAR augmentation: `padding` pixels on every side (reflected
    by default), then a random crop of the original size, drawn per image.
    Written with gathers only, so it compiles with XLA (Keras' `RandomCrop`
    switches jit off for the whole train step). Keras has no layer for the
    padding either: `RandomCrop` does not pad, and `ZeroPadding2D` cannot
    reflect.

    Args:
        padding: int. Pixels added on each side. Defaults to `4`.
        mode: `"reflect"` or `"constant"` (zeros). Defaults to `"reflect"`.
        seed: int or `None`. Seed of the random offsets.

    Example:
    ```python
    crop = RandomPadCrop(padding=4, seed=0)
    crop(images, training=True)  # same shape, shifted by up to 4 pixels
    ```
    """

    def __init__(self, padding=4, mode="reflect", seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        check_int("padding", padding, minimum=0)
        check_choice("mode", mode, ("reflect", "constant"))
        self.padding = padding
        self.mode = mode

    def augment(self, images):
        ops = self.backend.numpy
        if self.padding == 0:
            return images
        shape = self.backend.core.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        p = self.padding
        sides = [side for side in images.shape[1:3] if side is not None]
        if self.mode == "reflect" and sides and p >= min(sides):
            raise ValueError(
                "`padding` must be smaller than the image's sides to reflect them; pass "
                f'mode="constant" or a smaller padding. Received: padding={p} for images of '
                f"{images.shape[1]}x{images.shape[2]}"
            )
        padded = ops.pad(images, [[0, 0], [p, p], [p, p], [0, 0]], mode=self.mode)
        offsets = self.random_uniform((batch, 2), 0.0, 2 * p + 1)
        offsets = self.backend.cast(ops.floor(offsets), "int32")
        # One gather of whole pixels: crop pixel (i, r, c) is pixel
        # (i, r + top_i, c + left_i) of the padded batch, found by its index
        # in the batch's flattened pixels. About eight times faster in a
        # tf.data map on the CPU than two `take_along_axis`, which gather
        # every channel of every row and column separately.
        rows = offsets[:, 0, None, None] + ops.arange(height, dtype="int32")[None, :, None]
        cols = offsets[:, 1, None, None] + ops.arange(width, dtype="int32")[None, None, :]
        first_row = ops.arange(batch, dtype="int32")[:, None, None] * (height + 2 * p)
        pixel = (first_row + rows) * (width + 2 * p) + cols
        pixels = ops.reshape(padded, (-1, shape[3]))
        return ops.take(pixels, pixel, axis=0)

    def get_config(self):
        config = super().get_config()
        config.update({"padding": self.padding, "mode": self.mode})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomHorizontalFlip(_RandomImageLayer):
    """Mirrors each image of a batch left-right with probability 1/2.

    Keras' `RandomFlip("horizontal")` draws the same flips from the same
    seed (identical outputs with Keras 3.15.1: eagerly, in `tf.data` and in
    a compiled step, on TensorFlow and JAX). This one differs only as the
    crop and cutout do: it refuses a single image without its batch axis,
    and keeps the input's dtype (`RandomFlip` casts uint8 to float32).

    Args:
        seed: int or `None`. Seed of the coin flips.

    Example:

    ```python
    flip = RandomHorizontalFlip(seed=0)
    mirrored_or_not = flip(images, training=True)  # images: (N, 32, 32, 3)
    ```
    """

    def augment(self, images):
        ops = self.backend.numpy
        batch = self.backend.core.shape(images)[0]
        flip = self.random_uniform((batch, 1, 1, 1)) < 0.5
        return ops.where(flip, ops.flip(images, axis=2), images)


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomCutout(_RandomImageLayer):
    """Sets a random square of each image to zero (Cutout, DeVries 2017).

    The square's center is uniform over the image, so the square may be
    clipped by the border. Built from comparisons with index ranges, so it
    compiles with XLA. Not Keras' `RandomErasing`: its patch always lies
    wholly inside the image, and with `factor=1.0` it erases only about
    half the images (Keras 3.15.1).

    Args:
        size: int. Side of the square in pixels; `0` turns it off.
        seed: int or `None`. Seed of the square positions.

    Example:

    ```python
    cutout = RandomCutout(8, seed=0)
    holed = cutout(images, training=True)  # one 8x8 square zeroed per image, clipped at the border
    ```
    """

    def __init__(self, size=8, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        check_int("size", size, minimum=0)
        self.size = size

    def augment(self, images):
        if self.size == 0:
            return images
        ops = self.backend.numpy
        shape = self.backend.core.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        centers = self.random_uniform((batch, 2)) * self.backend.cast(
            ops.stack([height, width]), "float32"
        )
        top = ops.floor(centers[:, 0:1]) - self.size // 2
        left = ops.floor(centers[:, 1:2]) - self.size // 2
        rows = self.backend.cast(ops.arange(height), "float32")[None, :]
        cols = self.backend.cast(ops.arange(width), "float32")[None, :]
        in_rows = (rows >= top) & (rows < top + self.size)
        in_cols = (cols >= left) & (cols < left + self.size)
        mask = in_rows[:, :, None, None] & in_cols[:, None, :, None]
        return ops.where(mask, ops.zeros_like(images), images)

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size})
        return config


def skip_random_draws(layer, draws):
    """Moves the random state of `layer`, and of the layers in it, `draws`
    draws ahead.

    Every seed generator in a training step (the augmentation layers here,
    Keras' `Dropout`) draws once per batch. Keras' `BackupAndRestore`
    restores the weights and the optimizer but not these generators, so a
    resumed run would replay the random numbers of the run's first epochs;
    skipping the batches already trained lets it go on where the stopped
    run was instead.

    Args:
        layer: a layer or model.
        draws: int. How many draws to skip: the batches trained so far.

    Example:
    ```python
    augmenter = build_augmenter(seed=0)
    skip_random_draws(augmenter, 3 * steps_per_epoch)  # as after 3 epochs
    ```
    """
    if not isinstance(layer, keras.layers.Layer):
        raise ValueError(f"`layer` must be a Keras layer or model. Received: layer={layer!r}")
    check_int("draws", draws, minimum=0)  # JAX's uint32 state refused -5; TF took it
    # The generators Keras tracks, and the untracked TensorFlow ones that
    # `DataLayer` makes for a `tf.data` pipeline on another backend.
    states = [v for v in layer.non_trainable_variables if v.name == "seed_generator_state"]
    pending = [layer]
    while pending:
        current = pending.pop()
        pending.extend(getattr(current, "layers", ()))
        states += [g.state for g in getattr(current, "_backend_generators", {}).values()]
    for state in states:
        # [seed, draws so far]; np.array() would pass `copy` to a TensorFlow
        # variable's `__array__`, which takes none (numpy's DeprecationWarning).
        value = np.asarray(state.value).copy()
        value[1] += draws
        state.assign(value)


def build_augmenter(padding=4, pad_mode="reflect", cutout=0, seed=None, flip=True):
    """The training augmentation as one `keras.layers.Pipeline`.

    Pad-and-crop, horizontal flip (unless `flip=False`: the input pipeline
    then alternates the flips itself) and, optionally, cutout. The pipeline
    runs on whole batches in a `tf.data` map (host) or as the first layer of
    the training model (device), and is never part of an exported model.

    Args:
        padding: int. Pixels added on every side before the crop; `0` turns
            the crop off.
        pad_mode: str. How the padding is filled: `"reflect"` or
            `"constant"` (zeros).
        cutout: int. Side of the cutout square; `0` (default) for none.
        seed: int or `None`. Seeds the crop; the flip and cutout get
            `seed + 1` and `seed + 2` (modulo `seed_limit()`).
        flip: bool. Whether to mirror half the images.

    Example:

    ```python
    augmenter = build_augmenter(4, cutout=8, seed=0)
    batch = augmenter(images, training=True)  # images: (N, 32, 32, 3) in 0-255
    ```
    """
    check_bool("flip", flip)
    steps = [RandomPadCrop(padding, mode=pad_mode, seed=seed, name="pad_crop")]
    if flip:
        steps.append(
            RandomHorizontalFlip(seed=None if seed is None else (seed + 1) % seed_limit(), name="flip")
        )
    if cutout:
        steps.append(
            RandomCutout(
                cutout, seed=None if seed is None else (seed + 2) % seed_limit(), name="cutout"
            )
        )
    return keras.layers.Pipeline(steps, name="augment")
