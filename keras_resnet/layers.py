"""The project's network layers: the residual block, the fused batch norm
and the patch-whitening stem (the augmentation layers are in `augment.py`).

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
