"""The project's Keras layers: the residual block, the patch-whitening stem
and the augmentation layers.

Everything here is written with Keras layers and backend-agnostic ops, so it
runs unchanged on TensorFlow, JAX and PyTorch, and compiles under XLA.
"""

import copy
import random

import keras
import numpy as np
from keras import layers

from keras_resnet.checks import check_bool
from keras_resnet.checks import check_choice
from keras_resnet.checks import check_floating_dtype
from keras_resnet.checks import check_int
from keras_resnet.checks import check_number

try:  # Keras >= 3.12 names it DataLayer; older releases TFDataLayer.
    from keras.src.layers.preprocessing.data_layer import DataLayer
except ImportError:  # pragma: no cover - depends on the installed Keras
    from keras.src.layers.preprocessing.tf_data_layer import (
        TFDataLayer as DataLayer,
    )

PACKAGE = "keras_resnet"
DOWNSAMPLE_MODES = ("stride", "max_pool")  # `ResidualBlock(downsample=...)`


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedBatchNormalization(layers.BatchNormalization):
    """`keras.layers.BatchNormalization`, trained with TensorFlow's fused kernel.

    Keras 3 normalizes a training batch with separate ops (moments, then the
    normalization), on every backend. On the TensorFlow backend, in training,
    for a channels-last 4D input, this layer calls `tf.nn.fused_batch_norm`
    instead: one kernel, the same outputs, gradients and moving statistics,
    and about a tenth more images/s training `fast-cpu` on a 2-core CPU
    (docs/results/2026-11-26-cpu). Everywhere else (JAX, PyTorch,
    inference, masks, `synchronized`, `renorm`, other axes, variables
    other than float32 as under `dtype="bfloat16"`, which the mixed
    policies do not make) it is Keras' layer, unchanged. It takes Keras'
    arguments and has Keras' weights and config.

    Example:
    ```python
    bn = FusedBatchNormalization(momentum=0.9, epsilon=1e-5)
    y = bn(keras.ops.ones((8, 16, 16, 64)), training=True)  # (8, 16, 16, 64)
    ```
    """

    def call(self, inputs, training=None, mask=None):
        fusable = (
            training
            and self.trainable
            and mask is None
            and not self.synchronized
            and not self.renorm
            and len(inputs.shape) == 4
            and self.axis in (3, -1)
            and self.variable_dtype == "float32"  # the kernel's statistics are float32
            and keras.backend.backend() == "tensorflow"
        )
        if not fusable:
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # only on this backend

        inputs = keras.ops.cast(inputs, "float32")
        channels = inputs.shape[-1]
        gamma = keras.ops.cast(self.gamma, "float32") if self.scale else tf.ones((channels,))
        beta = keras.ops.cast(self.beta, "float32") if self.center else tf.zeros((channels,))
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True
        )
        # The kernel returns the Bessel-corrected variance; Keras' moving
        # variance averages the batch variance it normalizes with.
        count = tf.cast(tf.size(inputs) // channels, "float32")
        variance = variance * (count - 1.0) / count
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum)
        )
        return keras.ops.cast(outputs, self.compute_dtype)


def seed_limit():
    """One more than the largest seed the Keras backend takes: PyTorch's seed
    generators hold int32 (2**31 failed there with "value cannot be
    converted to type int32 without overflow"), JAX's uint32."""
    return 2**31 if keras.backend.backend() == "torch" else 2**32


def own_initializer(initializer, index):
    """A copy of `initializer` for one of several kernels.

    A Keras random initializer keeps one seed and draws the same values at
    every call, so kernels sharing one instance start from the same draws
    (scaled by fan-in). Each copy draws its own: an unseeded one gets a new
    seed (from Python's `random`, as `keras.utils.set_random_seed` sets it),
    a seeded one `seed + index` (modulo `seed_limit()`). One without an integer
    seed (drawing from a `SeedGenerator`, a constant, a plain function) is
    returned as it is.
    """
    if not isinstance(initializer, keras.initializers.Initializer) or not isinstance(
        getattr(initializer, "seed", None), int
    ):
        return initializer
    # A copy, not from_config(get_config()): a user's initializer need not
    # round-trip through a config.
    copied = copy.copy(initializer)
    given = getattr(initializer, "_init_seed", None)  # None: Keras drew `seed` itself
    copied.seed = (given + index) % seed_limit() if isinstance(given, int) else random.randint(1, 10**9)
    return copied


def check_known_channels(layer, input_shape):
    """Refuses an input shape whose channels (last axis) are `None`."""
    if input_shape[-1] is None:
        raise ValueError(
            f"`{type(layer).__name__}` needs inputs with a known number of channels. "
            f"Received: input_shape={tuple(input_shape)}"
        )


CONVOLUTIONS = ("conv1", "conv2", "projection")  # a `ResidualBlock`'s, in `own_initializer` order


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResidualBlock(layers.Layer):
    """Basic residual block: two 3x3 convolutions with a shortcut.

    `conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN -> + shortcut -> ReLU`.
    With `downsample="max_pool"`, a block with stride 2 convolves at the
    input's resolution and then max-pools 2x2 windows
    (`conv3x3 -> max pool -> BN -> ...`, as ResNet-9 and airbench
    downsample): four times the first convolution's work, for a
    convolution that sees every input position.
    The shortcut is the identity when the shape is kept, and a 1x1
    convolution with batch normalization (a projection) only where the stride
    or the number of channels changes. With `pooled_shortcut`, a strided
    projection averages 2x2 windows first and convolves at stride 1 (the
    ResNet-D shortcut, He et al. 2019), so that it sees every input position
    instead of one in four. With `zero_init_residual`, the second batch
    norm's scale starts at zero, so the block starts as its shortcut (Goyal
    et al. 2017).

    Args:
        filters: int. Number of output channels.
        strides: int. `1` keeps the resolution, `2` halves it (in the
            residual branch as `downsample` says, and in the projection;
            a shortcut of fewer than 16 channels is sliced, then projected
            at stride 1, which computes the same).
            Defaults to `1`.
        kernel_initializer: str or initializer for the convolutions (each
            convolution draws its own values from a copy of it).
            Defaults to `"he_normal"`.
        bn_momentum: float. Momentum of the batch normalization moving
            statistics. Defaults to `0.9`.
        downsample: str. How the residual branch halves the resolution:
            `"stride"` (a stride-2 first convolution) or `"max_pool"` (a
            stride-1 first convolution, then a 2x2 max pool). Defaults to
            `"stride"`.
        pooled_shortcut: bool. Average-pool, then project, where the block
            downsamples. Defaults to `False`.
        zero_init_residual: bool. Start the residual branch at zero.
            Defaults to `False`.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Example:
    ```python
    block = ResidualBlock(128, strides=2)
    y = block(keras.ops.ones((8, 32, 32, 64)))  # shape (8, 16, 16, 128)
    ```
    """

    def __init__(
        self,
        filters,
        strides=1,
        kernel_initializer="he_normal",
        bn_momentum=0.9,
        downsample="stride",
        pooled_shortcut=False,
        zero_init_residual=False,
        **kwargs,
    ):
        check_floating_dtype(kwargs.get("dtype"))  # an int32 block failed in its initializers
        super().__init__(**kwargs)
        check_int("filters", filters)
        check_choice("strides", strides, (1, 2))
        check_number("bn_momentum", bn_momentum, 0, 1)
        check_choice("downsample", downsample, DOWNSAMPLE_MODES)
        check_bool("pooled_shortcut", pooled_shortcut)
        check_bool("zero_init_residual", zero_init_residual)
        if kernel_initializer is None:  # Keras would take its own default, glorot_uniform
            raise ValueError(
                '`kernel_initializer` must be an initializer or its name, e.g. "he_normal" '
                "(the default). Received: kernel_initializer=None"
            )
        # === Config ===
        self.filters = filters
        self.strides = strides
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bn_momentum = bn_momentum
        self.downsample = downsample
        self.pooled_shortcut = pooled_shortcut
        self.zero_init_residual = zero_init_residual

    def build(self, input_shape):
        check_known_channels(self, input_shape)  # else a TypeError of None from Keras' Conv2D

        # === Layers ===
        def conv(kernel_size, strides, name):
            return layers.Conv2D(
                self.filters,
                kernel_size,
                strides=strides,
                padding="same",
                data_format="channels_last",  # not keras.json's: the network is NHWC
                use_bias=False,
                kernel_initializer=own_initializer(self.kernel_initializer, CONVOLUTIONS.index(name)),
                dtype=self.dtype_policy,
                name=name,
            )

        def batch_norm(name, gamma_initializer="ones"):
            return FusedBatchNormalization(
                momentum=self.bn_momentum,
                epsilon=1e-5,
                gamma_initializer=gamma_initializer,
                dtype=self.dtype_policy,
                name=name,
            )

        pooled_branch = self.downsample == "max_pool" and self.strides != 1
        self.conv1 = conv(3, 1 if pooled_branch else self.strides, "conv1")
        self.pool = None
        self.bn1 = batch_norm("bn1")
        self.conv2 = conv(3, 1, "conv2")
        self.bn2 = batch_norm("bn2", "zeros" if self.zero_init_residual else "ones")
        self.conv1.build(input_shape)
        inner_shape = self.conv1.compute_output_shape(input_shape)
        if pooled_branch:
            self.pool = layers.MaxPooling2D(
                self.strides,
                padding="same",
                data_format="channels_last",
                dtype=self.dtype_policy,
                name="pool",
            )
            inner_shape = self.pool.compute_output_shape(inner_shape)
        self.bn1.build(inner_shape)
        self.conv2.build(inner_shape)
        self.bn2.build(inner_shape)

        self.has_projection = (
            self.strides != 1 or input_shape[-1] != self.filters
        )
        self.shortcut_pool = None
        if self.pooled_shortcut and self.strides != 1:
            self.shortcut_pool = layers.AveragePooling2D(
                self.strides,
                padding="same",
                data_format="channels_last",
                dtype=self.dtype_policy,
                name="shortcut_pool",
            )
        # A strided 1x1 convolution reads every `strides`-th position (its
        # "same" padding is zero): slicing those, then convolving at stride
        # 1, is the same computation with the same weights. Shortcuts under
        # 16 channels take that path: TensorFlow 2.21's oneDNN corrupts the
        # heap in the strided one's kernel gradient on AVX-512 CPUs
        # (docs/faults.md, Known limits).
        self.slice_shortcut = (
            self.strides != 1 and self.shortcut_pool is None and input_shape[-1] < 16
        )
        if self.has_projection:
            subsampled = self.shortcut_pool is not None or self.slice_shortcut
            self.projection = conv(1, 1 if subsampled else self.strides, "projection")
            self.projection_bn = batch_norm("projection_bn")
            # Subsampled, the shortcut has the branch's height and width.
            self.projection.build(
                (*inner_shape[:3], input_shape[-1]) if subsampled else input_shape
            )
            self.projection_bn.build(inner_shape)
        else:
            self.projection = None
            self.projection_bn = None

    def call(self, inputs, training=None):
        x = self.conv1(inputs)
        if self.pool is not None:
            x = self.pool(x)
        x = self.bn1(x, training=training)
        x = keras.ops.relu(x)
        x = self.conv2(x)
        x = self.bn2(x, training=training)
        shortcut = inputs
        if self.shortcut_pool is not None:
            shortcut = self.shortcut_pool(shortcut)
        elif self.slice_shortcut:
            shortcut = shortcut[:, :: self.strides, :: self.strides, :]
        if self.has_projection:
            shortcut = self.projection(shortcut)
            shortcut = self.projection_bn(shortcut, training=training)
        return keras.ops.relu(x + shortcut)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape

        def scaled(size):
            return None if size is None else -(-size // self.strides)

        return (batch, scaled(height), scaled(width), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "strides": self.strides,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bn_momentum": self.bn_momentum,
                "downsample": self.downsample,
                "pooled_shortcut": self.pooled_shortcut,
                "zero_init_residual": self.zero_init_residual,
            }
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class PatchWhitening(layers.Layer):
    """A fixed convolution that whitens image patches, fitted with `adapt`.

    The stem of airbench (Jordan, 2024), after Coates & Ng (2011): each
    `kernel_size x kernel_size` patch is projected on the eigenvectors of the
    patches' covariance, scaled by `1 / sqrt(eigenvalue + epsilon)`, and on
    their negatives, so a ReLU after it keeps both signs. The output has
    `2 * kernel_size**2 * channels` channels. The kernel is not trained: it
    is set from the training images by `adapt`, like a `Normalization`
    layer's statistics, and saved with the model.

    Args:
        kernel_size: int. Side of the patches. Defaults to `3`.
        epsilon: float. Added to the eigenvalues, so that directions of
            almost no variance are not blown up. Defaults to `5e-4`.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Example:
    ```python
    whitening = PatchWhitening(3)
    whitening.adapt(normalized_images)  # (N, 32, 32, 3) floats
    whitening(normalized_images).shape  # (N, 32, 32, 54)
    ```
    """

    def __init__(self, kernel_size=3, epsilon=5e-4, **kwargs):
        check_floating_dtype(kwargs.get("dtype"))
        super().__init__(**kwargs)
        check_int("kernel_size", kernel_size)
        check_number("epsilon", epsilon, 0)
        self.input_spec = keras.InputSpec(ndim=4)  # a batch of images: Keras names a wrong rank
        # === Config ===
        self.kernel_size = kernel_size
        self.epsilon = epsilon

    def _output_channels(self, input_channels):
        return 2 * self.kernel_size**2 * input_channels

    def build(self, input_shape):
        check_known_channels(self, input_shape)  # they size the kernel
        k, channels = self.kernel_size, input_shape[-1]
        # === Weights ===
        # Until `adapt`, the identity and its negative: patches pass through.
        identity = np.eye(k * k * channels, dtype="float32")
        self.kernel = self.add_weight(
            shape=(k, k, channels, self._output_channels(channels)),
            initializer=keras.initializers.Constant(self._kernel_from(identity)),
            trainable=False,
            name="kernel",
        )

    def _kernel_from(self, projection):
        """A (k*k*C, k*k*C) projection, one column per filter, and its
        negative, as a (k, k, C, 2*k*k*C) convolution kernel."""
        k = self.kernel_size
        both_signs = np.concatenate([projection, -projection], axis=1)
        return both_signs.reshape(k, k, -1, both_signs.shape[1])

    def adapt(self, images, max_patches=2_000_000):
        """Fits the whitening to `images`.

        Args:
            images: (N, H, W, C) floats as this layer receives them (after
                normalization), at least `kernel_size` on each side.
            max_patches: int. The patches of the first images are used, as
                many whole images as this many patches hold (at least one
                image). Defaults to `2_000_000`.
        """
        check_int("max_patches", max_patches)
        images = np.asarray(images, dtype="float32")
        k = self.kernel_size
        if images.ndim != 4 or not len(images) or min(images.shape[1:3]) < k:
            raise ValueError(
                "`adapt` expects a non-empty batch of images of shape "
                f"(N, H, W, C), at least {k}x{k}. Received: shape={images.shape}"
            )
        if not np.isfinite(images).all():  # else numpy: "Eigenvalues did not converge"
            raise ValueError(
                "`adapt` expects finite images: these hold NaN or infinite values. "
                f"Received: {np.count_nonzero(~np.isfinite(images))} of "
                f"{images.size} values NaN or infinite, shape={images.shape}"
            )
        if not self.built:
            self.build(images.shape)
        per_image = (images.shape[1] - k + 1) * (images.shape[2] - k + 1)
        count = max(1, min(len(images), max_patches // per_image))
        if count * per_image < 2:  # numpy's covariance of one patch is NaN
            raise ValueError(
                "`adapt` needs at least two patches to estimate their covariance: pass more "
                f"or larger images, or a larger `max_patches`. Received: 1 patch of {k}x{k}, "
                f"max_patches={max_patches}, shape={images.shape}"
            )
        # (N, H', W', C, k, k) -> patches flattened as (row, column, channel),
        # the order of a convolution kernel's first three axes.
        windows = np.lib.stride_tricks.sliding_window_view(images[:count], (k, k), axis=(1, 2))
        patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, k * k * images.shape[-1])
        eigenvalues, eigenvectors = np.linalg.eigh(np.cov(patches, rowvar=False))
        projection = eigenvectors / np.sqrt(eigenvalues + self.epsilon)
        self.kernel.assign(self._kernel_from(projection.astype("float32")))

    def call(self, inputs):
        return keras.ops.conv(
            inputs, self.kernel, strides=1, padding="same", data_format="channels_last"
        )

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self._output_channels(input_shape[-1]))

    def get_config(self):
        config = super().get_config()
        config.update({"kernel_size": self.kernel_size, "epsilon": self.epsilon})
        return config


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
    switches jit off for the whole train step).

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

    Keras' `RandomFlip("horizontal")` flips the same way; this one draws
    from the same base as the crop and cutout (one seeded generator each,
    the rank check), so the three behave alike in `tf.data` and in a
    compiled step, and runs recorded with it repeat draw for draw.

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
    compiles with XLA.

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
        value = np.array(state.value)  # [seed, draws so far]
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
    return layers.Pipeline(steps, name="augment")
