import re

import keras
import numpy as np
import pytest

from keras_resnet import PARAM_CAP
from keras_resnet import PRESETS
from keras_resnet import FusedBatchNormalization
from keras_resnet import PatchWhitening
from keras_resnet import RandomCutout
from keras_resnet import RandomHorizontalFlip
from keras_resnet import RandomPadCrop
from keras_resnet import ResidualBlock
from keras_resnet import adapt_whitening
from keras_resnet import build_model
from keras_resnet import count_params
from keras_resnet import load_model
from keras_resnet.augment import build_augmenter
from keras_resnet.augment import skip_random_draws
from tests.conftest import run_python


def conv_params(k, c_in, c_out):
    return k * k * c_in * c_out  # no bias: BN follows


def bn_params(c):
    return 4 * c  # gamma, beta, moving mean, moving variance


def test_block_shapes_stride_1_same_width():
    block = ResidualBlock(16)
    y = block(np.zeros((2, 8, 8, 16), "float32"))
    assert y.shape == (2, 8, 8, 16)
    assert block.projection is None


def test_block_shapes_stride_2_and_width_change():
    block = ResidualBlock(32, strides=2)
    y = block(np.zeros((2, 8, 8, 16), "float32"))
    assert y.shape == (2, 4, 4, 32)
    assert block.projection is not None
    widen = ResidualBlock(32)
    assert widen(np.zeros((1, 8, 8, 16), "float32")).shape == (1, 8, 8, 32)
    assert widen.projection is not None
    assert widen.projection.strides == (1, 1)


@pytest.mark.parametrize("initializer", ["he_normal", keras.initializers.HeNormal(seed=3)])
def test_the_convolutions_of_a_block_start_from_draws_of_their_own(initializer):
    # One initializer instance was shared, and a Keras one keeps its seed:
    # conv1 and conv2 of a 16->16 block started equal, the projection from
    # the same draws scaled by its fan-in.
    def kernels():
        block = ResidualBlock(16, strides=2, kernel_initializer=initializer)
        block(np.zeros((1, 8, 8, 16), "float32"))
        return [keras.ops.convert_to_numpy(conv.kernel).ravel()[:256]
                for conv in (block.conv1, block.conv2, block.projection)]

    keras.utils.set_random_seed(0)
    first = kernels()
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert abs(np.corrcoef(first[a], first[b])[0, 1]) < 0.3
    keras.utils.set_random_seed(0)  # still reproducible, seeded or not
    assert all(np.array_equal(a, b) for a, b in zip(first, kernels()))


def test_any_initializer_still_builds_a_block():
    # A user's Initializer without get_config failed in from_config; a
    # seed of 2**32 - 1 overflowed as seed + 1.
    class Scaled(keras.initializers.Initializer):
        def __init__(self, scale):
            self.scale = scale

        def __call__(self, shape, dtype=None):
            return keras.ops.ones(shape, dtype) * self.scale

    for initializer in (Scaled(0.5), keras.initializers.HeNormal(seed=2**32 - 1)):
        block = ResidualBlock(16, strides=2, kernel_initializer=initializer)
        block(np.zeros((1, 8, 8, 16), "float32"))


def test_block_rejects_bad_arguments():
    with pytest.raises(ValueError, match="filters=0"):
        ResidualBlock(0)
    with pytest.raises(ValueError, match="strides=3"):
        ResidualBlock(8, strides=3)
    with pytest.raises(ValueError, match="pooled_shortcut='yes'"):
        ResidualBlock(8, pooled_shortcut="yes")
    with pytest.raises(ValueError, match="zero_init_residual=1"):
        ResidualBlock(8, zero_init_residual=1)
    with pytest.raises(ValueError, match=r"one of \('stride', 'max_pool'\). Received: downsample='avg'"):
        ResidualBlock(8, downsample="avg")


@pytest.mark.parametrize("pooled", [False, True])
def test_pooled_shortcut_sees_every_input_position(pooled):
    block = ResidualBlock(8, strides=2, pooled_shortcut=pooled)
    x = np.random.default_rng(0).normal(size=(1, 7, 7, 4)).astype("float32")
    block(x)
    # A zero second convolution leaves the shortcut alone in the output
    # (BN at inference with fresh statistics is the identity there).
    block.conv2.kernel.assign(np.zeros(block.conv2.kernel.shape, "float32"))
    block.projection.kernel.assign(np.abs(block.projection.kernel.numpy()))
    nudged = x.copy()
    nudged[0, 1, 1] += 10.0  # a position a plain stride-2 projection skips
    out, out_nudged = (keras.ops.convert_to_numpy(block(v, training=False)) for v in (x, nudged))
    assert out.shape == (1, 4, 4, 8)
    if pooled:
        assert not np.allclose(out, out_nudged)
    else:
        np.testing.assert_array_equal(out, out_nudged)
    assert (block.shortcut_pool is not None) == pooled
    # The projection convolves at stride 1 after the pool, or, without it,
    # after slicing: the input has fewer than 16 channels.
    assert block.projection.strides == (1, 1)
    assert block.slice_shortcut == (not pooled)
    assert build_model("fast-cpu", pooled_shortcut=pooled).count_params() == 1_768_778


@pytest.mark.parametrize("channels", [4, 15, 16])
@pytest.mark.parametrize("size", [7, 8])
def test_a_strided_projection_is_a_stride_2_1x1_convolution_of_the_input(size, channels):
    # Under 16 input channels the block slices every other position and
    # projects at stride 1; from 16 on it convolves at stride 2. Both are
    # the 1x1 stride-2 convolution, at odd and even sizes. A zero second
    # batch-norm scale leaves the shortcut alone in the output.
    block = ResidualBlock(8, strides=2, zero_init_residual=True)
    x = np.random.default_rng(0).normal(size=(2, size, size, channels)).astype("float32")
    out = keras.ops.convert_to_numpy(block(x, training=False))
    assert block.slice_shortcut == (channels < 16)
    assert block.projection.strides == ((1, 1) if channels < 16 else (2, 2))
    strided = keras.ops.conv(x, block.projection.kernel, strides=2, padding="same")
    expected = np.maximum(keras.ops.convert_to_numpy(strided) / np.sqrt(1.0 + 1e-5), 0.0)
    assert out.shape == expected.shape == (2, 4, 4, 8)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [7, 8])
def test_a_sliced_shortcut_takes_any_image_size(size):
    inputs = keras.Input((None, None, 8))
    model = keras.Model(inputs, ResidualBlock(16, strides=2, name="block")(inputs))
    assert model.get_layer("block").slice_shortcut
    assert model.output.shape == (None, None, None, 16)
    x = np.random.default_rng(0).normal(size=(2, size, size, 8)).astype("float32")
    assert model.predict(x, verbose=0).shape == (2, 4, 4, 16)


@pytest.mark.parametrize("downsample", ["stride", "max_pool"])
@pytest.mark.parametrize("size", [7, 8])
def test_a_blocks_declared_output_shape_is_the_one_it_computes(size, downsample):
    # A functional model takes each layer's shapes from
    # `compute_output_shape`: "same" padding halves 7 to 4, not 3, and a
    # Dense after it is built for the features the block really returns.
    inputs = keras.Input((size, size, 4))
    block = ResidualBlock(8, strides=2, downsample=downsample)
    features = keras.layers.Flatten()(block(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(features))
    assert block.output.shape == (None, 4, 4, 8)
    assert model.predict(np.zeros((1, size, size, 4), "float32"), verbose=0).shape == (1, 2)


def test_a_strided_projection_with_few_input_channels_trains():
    # TensorFlow 2.21's oneDNN corrupted memory computing the kernel
    # gradient of a 1x1 stride-2 convolution with 8 input channels at batch
    # 25 on an AVX-512 AMD EPYC: "double free or corruption", the process
    # aborted (`--stage-filters 8,8,8,8 --batch-size 25`).
    model = keras.Sequential([
        keras.Input((16, 16, 8)),
        ResidualBlock(8, strides=2),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 16, 16, 8)).astype("float32")
    y = rng.integers(0, 10, size=50)
    history = model.fit(x, y, batch_size=25, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("downsample", ["stride", "max_pool"])
def test_max_pool_downsampling_convolves_every_position_then_pools(downsample):
    block = ResidualBlock(8, strides=2, downsample=downsample)
    x = np.random.default_rng(0).normal(size=(1, 7, 7, 4)).astype("float32")
    assert block(x).shape == (1, 4, 4, 8)
    # conv1 copies each input channel at its own position (the kernel's
    # centre tap) and the shortcut is zeroed: the branch sees the input
    # subsampled (stride) or max-pooled (max_pool).
    centre = np.zeros(block.conv1.kernel.shape, "float32")
    centre[1, 1, np.arange(4), np.arange(4)] = 1.0
    block.conv1.kernel.assign(centre)
    block.projection.kernel.assign(np.zeros(block.projection.kernel.shape, "float32"))
    raised = x.copy()
    raised[0, 1, 1] = 10.0  # above its 2x2 window's other values; off the stride-2 grid
    out, out_raised = (keras.ops.convert_to_numpy(block(v, training=False)) for v in (x, raised))
    if downsample == "max_pool":
        assert block.conv1.strides == (1, 1) and block.pool is not None
        assert not np.allclose(out, out_raised)
    else:
        assert block.conv1.strides == (2, 2) and block.pool is None
        np.testing.assert_array_equal(out, out_raised)
    assert ResidualBlock(8, downsample=downsample)(x).shape == (1, 7, 7, 8)  # stride 1: no pool
    assert build_model("fast", downsample=downsample).count_params() == 4_813_450


@pytest.mark.parametrize("zero_init", [False, True])
def test_zero_init_residual_starts_the_block_as_its_shortcut(zero_init):
    block = ResidualBlock(8, zero_init_residual=zero_init)
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 8)).astype("float32")
    out = keras.ops.convert_to_numpy(block(x, training=True))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(block.bn2.gamma),
                                  np.full(8, 0.0 if zero_init else 1.0, "float32"))
    if zero_init:  # identity shortcut: the block is a ReLU until it learns
        np.testing.assert_allclose(out, np.maximum(x, 0.0), atol=1e-6)
    else:
        assert not np.allclose(out, np.maximum(x, 0.0), atol=1e-2)
    assert build_model("fast-cpu", zero_init_residual=zero_init).count_params() == 1_768_778


@pytest.mark.parametrize("preset, params", [
    ("seed", 4_916_682), ("fast", 4_813_450), ("fast-cpu", 1_768_778), ("best", 4_334_026),
])
def test_each_preset_has_its_documented_parameter_count(preset, params):
    # The counts the presets, the README and the results quote.
    assert build_model(preset).count_params() == count_params(preset) == params <= PARAM_CAP


@pytest.mark.parametrize("layer_class, arguments", [
    (ResidualBlock, dict(filters=32, strides=2, kernel_initializer="glorot_uniform", bn_momentum=0.8,
                         downsample="max_pool", pooled_shortcut=True, zero_init_residual=True)),
    (PatchWhitening, dict(kernel_size=3, epsilon=1e-3)),
    (RandomPadCrop, dict(padding=2, mode="constant", seed=3)),
    (RandomHorizontalFlip, dict(seed=3)),
    (RandomCutout, dict(size=6, seed=3)),
])
def test_get_config_holds_every_constructor_argument(layer_class, arguments):
    # A restored layer compared with the original agrees on whatever both
    # lack: each argument given must be in the config, with its value.
    config = layer_class(**arguments).get_config()
    for key, value in arguments.items():
        if key == "kernel_initializer":
            assert keras.initializers.deserialize(config[key]).__class__.__name__ == "GlorotUniform"
        else:
            assert config[key] == value, key
    assert layer_class.from_config(config).get_config() == config


def test_the_network_normalizes_by_the_cifar10_statistics_and_drops_out():
    from keras_resnet.presets import CIFAR10_MEAN, CIFAR10_STD

    model = build_model("seed")
    normalize = keras.Model(model.input, model.get_layer("normalize").output)
    image = np.empty((1, 32, 32, 3), "float32")
    image[:, :16], image[:, 16:] = CIFAR10_MEAN, np.add(CIFAR10_MEAN, CIFAR10_STD)
    out = keras.ops.convert_to_numpy(normalize(image))
    np.testing.assert_allclose(out[0, 0, 0], 0.0, atol=1e-5)
    np.testing.assert_allclose(out[0, 16, 0], 1.0, atol=1e-5)
    assert model.get_layer("dropout").rate == PRESETS["seed"]["dropout"] == 0.1
    assert "dropout" not in [layer.name for layer in build_model("seed", dropout=0.0).layers]


def test_block_keras_round_trip(tmp_path):
    inputs = keras.Input((8, 8, 16))
    outputs = ResidualBlock(32, strides=2, downsample="max_pool", pooled_shortcut=True,
                            zero_init_residual=True, name="block")(inputs)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 16)).astype("float32")
    path = str(tmp_path / "block.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.get_layer("block"), ResidualBlock)
    assert restored.get_layer("block").get_config() == model.get_layer("block").get_config()
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("scale_and_center", [True, False])
def test_fused_batch_norm_trains_like_keras(scale_and_center):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the fused kernel is TensorFlow's; elsewhere the layer is Keras'")
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2.0, 3.0, (8, 5, 5, 6)).astype("float32"))
    weights = tf.constant(rng.normal(size=(8, 5, 5, 6)).astype("float32"))
    gamma, beta = rng.normal(1.0, 0.2, 6).astype("float32"), np.linspace(-0.5, 0.5, 6, dtype="float32")
    kwargs = dict(momentum=0.9, epsilon=1e-5, scale=scale_and_center, center=scale_and_center)
    results = []
    for layer in (keras.layers.BatchNormalization(**kwargs), FusedBatchNormalization(**kwargs)):
        layer.build(x.shape)
        if scale_and_center:
            layer.gamma.assign(gamma)
            layer.beta.assign(beta)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * weights)
        grads = tape.gradient(loss, [x, *layer.trainable_variables])
        results.append([y, *grads, layer.moving_mean, layer.moving_variance, layer(x, training=False)])
    for expected, actual in zip(*results):
        np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=1e-4, atol=1e-4)
    # ... and it did take TensorFlow's fused kernel.
    graph = tf.function(lambda t: layer(t, training=True)).get_concrete_function(x).graph
    assert any(op.type.startswith("FusedBatchNorm") for op in graph.get_operations())


@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
def test_batch_norm_with_variables_other_than_float32_trains_as_keras_does(dtype):
    x = np.random.default_rng(0).normal(2.0, 3.0, (8, 5, 5, 6))
    results = []
    for layer in (keras.layers.BatchNormalization(dtype=dtype), FusedBatchNormalization(dtype=dtype)):
        outputs = layer(keras.ops.convert_to_tensor(x, dtype), training=True)
        results.append([outputs, layer.moving_mean, layer.moving_variance])
    for expected, actual in zip(*results):
        assert actual.dtype == expected.dtype  # (JAX without x64 keeps float32)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.ops.cast(actual, "float32")),
                                      keras.ops.convert_to_numpy(keras.ops.cast(expected, "float32")))


def test_every_batch_norm_of_the_network_is_fused():
    model = build_model("fast-cpu")
    norms = [sub for layer in model.layers for sub in [layer, *layer._flatten_layers(include_self=False)]
             if isinstance(sub, keras.layers.BatchNormalization)]
    assert len(norms) == 1 + 4 * 3  # the stem's, and three in each projecting block
    assert all(isinstance(norm, FusedBatchNormalization) for norm in norms)
    restored = FusedBatchNormalization.from_config(norms[0].get_config())
    assert restored.get_config() == norms[0].get_config()


def test_seed_parameter_count_by_hand():
    expected = conv_params(7, 3, 64) + bn_params(64)  # stem
    expected += 2 * (conv_params(3, 64, 64) + bn_params(64))  # stage 1, identity
    c_in = 64
    for c in (128, 256, 512):  # stages 2-4, projection shortcut
        expected += conv_params(3, c_in, c) + conv_params(3, c, c) + 2 * bn_params(c)
        expected += conv_params(1, c_in, c) + bn_params(c)
        c_in = c
    expected += 512 * 10 + 10  # dense
    model = build_model("seed")
    assert model.count_params() == expected == 4_916_682
    assert expected <= PARAM_CAP


def test_seed_architecture_and_io():
    model = build_model("seed")
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 10)
    stem = model.get_layer("stem_conv")
    assert stem.kernel_size == (7, 7) and stem.strides == (2, 2) and stem.filters == 64
    blocks = [l for l in model.layers if isinstance(l, ResidualBlock)]
    assert [(b.filters, b.strides) for b in blocks] == [(64, 1), (128, 2), (256, 2), (512, 2)]
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("uint8")
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (4, 10)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_is_under_the_cap(preset):
    assert build_model(preset).count_params() <= PARAM_CAP


def test_over_cap_raises_and_names_count_and_cap():
    # One more 512-wide block: 2 convs of 3x3x512x512 and 2 BNs.
    over = 4_916_682 + 2 * (9 * 512 * 512 + 4 * 512)
    with pytest.raises(ValueError, match=f"{over:,} parameters, over the cap of 5,000,000"):
        build_model("seed", stage_blocks=(1, 1, 1, 2))
    model = build_model("seed", stage_blocks=(1, 1, 1, 2), allow_over_cap=True)
    assert model.count_params() == over


@pytest.mark.parametrize("preset, overrides", [
    ("seed", {}), ("fast", {}), ("fast-cpu", {}), ("best", {}),
    ("seed", {"stage_filters": [8, 8, 16, 16]}), ("best", {"stage_blocks": [1, 2, 1]}),
    ("fast-cpu", {"dropout": 0, "bn_momentum": 0, "num_classes": 2}),  # the edges the checks allow
])
def test_count_params_equals_the_built_network(preset, overrides):
    assert count_params(preset, **overrides) == build_model(preset, **overrides).count_params()


def test_count_params_makes_no_weights_and_leaves_the_callers_keras_state():
    from keras.src.backend.common import global_state  # where Keras keeps weights awaiting init

    pending_before = list(global_state.get_global_attribute("uninitialized_variables") or [])
    # About 17.7 billion parameters: 71 GB of float32 had any weight been made.
    huge = count_params("seed", stage_filters=[16384] * 4, allow_over_cap=True)
    assert huge > 17e9
    with pytest.raises(ValueError, match="over the cap of 5,000,000"):
        count_params("seed", stage_blocks=(1, 1, 1, 2))
    with pytest.raises(ValueError, match="Unknown preset 'nope'"):
        count_params("nope")
    assert list(global_state.get_global_attribute("uninitialized_variables") or []) == pending_before


@pytest.mark.parametrize("preset, kwargs, message", [
    ("nope", {}, "Unknown preset 'nope'"),
    (["seed"], {}, "Unknown preset ['seed']"),
    ("seed", {"widths": (1, 2)}, "Unknown model argument"),
    ("seed", {"stage_filters": (64, 128)}, "same length"),
    # Each of these was a TypeError from inside Keras or the checks ...
    ("seed", {"stage_filters": 64}, "Received: stage_filters=64"),
    ("seed", {"stage_filters": None}, "Received: stage_filters=None"),
    ("seed", {"dropout": None}, "Received: dropout=None"),
    ("seed", {"dropout": "0.1"}, "Received: dropout='0.1'"),
    ("seed", {"bn_momentum": None}, "Received: bn_momentum=None"),
    ("seed", {"bn_momentum": "0.9"}, "Received: bn_momentum='0.9'"),
    ("seed", {"stem_filters": "64"}, "Received: stem_filters='64'"),
    # ... or Keras' message, about its own argument ...
    ("seed", {"num_classes": "10"}, "Received: num_classes='10'"),
    ("seed", {"stem_kernel_size": "7"}, "Received: stem_kernel_size='7'"),
    # ... or was taken: a truthy string allowed going over the cap, bools
    # were widths of 1, and a softmax of one class is always 1.
    ("seed", {"stage_blocks": (1, 1, 1, 2), "allow_over_cap": "no"}, "Received: allow_over_cap='no'"),
    ("seed", {"stage_filters": [True] * 4}, "Received: stage_filters=[True, True, True, True]"),
    ("seed", {"num_classes": 1}, "Received: num_classes=1"),
    # ResidualBlock's message, about its own `strides`.
    ("seed", {"stage_strides": (1, 3, 2, 2)}, "Received: stage_strides=[1, 3, 2, 2]"),
    ("seed", {"stem_whitening": 1, "stem_filters": None, "stem_strides": 1}, "Received: stem_whitening=1"),
    # build_model failed in Keras' initializers; count_params counted them.
    ("seed", {"stage_filters": (8, 8, 16, 16), "dtype": "int32"}, "Received: dtype='int32'"),
    ("seed", {"stage_filters": (8, 8, 16, 16), "dtype": "bool"}, "Received: dtype='bool'"),
    # "must be a list of positive integers. Received: [np.int64(8), ...]"
    # read as a contradiction; the message now says how to pass them.
    ("seed", {"stage_filters": [np.int64(8)] * 4}, "pass `[v.item() for v in stage_filters]`"),
])
def test_bad_preset_and_arguments(preset, kwargs, message):
    for build in (build_model, count_params):
        with pytest.raises(ValueError, match=re.escape(message)):
            build(preset, **kwargs)


NAN_IMAGES = np.full((2, 32, 32, 3), np.nan, "float32")
BAD_CALLS = {  # what each raised before: a TypeError, an AttributeError, numpy's LinAlgError, nothing
    "path=None": lambda: load_model(None),
    "model=None": lambda: adapt_whitening(None, NAN_IMAGES),
    "6144 of 6144 values NaN or infinite": lambda: adapt_whitening(build_model("fast-cpu"), NAN_IMAGES),
    "96 of 96 values NaN or infinite": lambda: PatchWhitening(2).adapt(np.full((2, 4, 4, 3), np.inf)),
    "max_patches=None": lambda: PatchWhitening(2).adapt(np.zeros((2, 4, 4, 3)), max_patches=None),
    "1 patch of 2x2": lambda: PatchWhitening(2).adapt(np.ones((1, 2, 2, 3))),
    "epsilon=inf": lambda: PatchWhitening(2, epsilon=float("inf")),
    "bn_momentum=None": lambda: ResidualBlock(8, bn_momentum=None),
    "bn_momentum='0.9'": lambda: ResidualBlock(8, bn_momentum="0.9"),
    "filters=True": lambda: ResidualBlock(True),
    "strides=True": lambda: ResidualBlock(8, strides=True),
    "epsilon=None": lambda: PatchWhitening(2, epsilon=None),
    "kernel_size=True": lambda: PatchWhitening(True),
    # The channels it whitens size its kernel: a TypeError of None * int.
    "input_shape=(None, None, None, None)": lambda: PatchWhitening(2)(keras.Input((None, None, None))),
    # A TypeError of `None % 1` from Keras' Conv2D.
    "input_shape=(None, 8, 8, None)": lambda: ResidualBlock(8)(keras.Input((8, 8, None))),
    "padding=True": lambda: RandomPadCrop(True),
    "size=True": lambda: RandomCutout(True),
    # Taken for Keras' default, glorot_uniform, not the documented he_normal.
    "kernel_initializer=None": lambda: ResidualBlock(8, kernel_initializer=None),
    # A TypeError from Keras' initializers, when the layer was built.
    "dtype='int32'": lambda: ResidualBlock(8, dtype="int32"),
    "dtype='bool'": lambda: PatchWhitening(2, dtype="bool"),
    # TensorFlow took these (a state of -5), JAX raised OverflowError; 2.5 became 2.
    "seed=-1": lambda: RandomPadCrop(4, seed=-1),
    "seed=4294967296": lambda: RandomPadCrop(4, seed=2**32),
    "draws=-5": lambda: skip_random_draws(RandomPadCrop(4, seed=0), -5),
    "draws=2.5": lambda: skip_random_draws(RandomPadCrop(4, seed=0), 2.5),
    "layer=None": lambda: skip_random_draws(None, 3),
}


@pytest.mark.parametrize("received", sorted(BAD_CALLS))
def test_bad_function_and_layer_arguments_are_a_value_error_quoting_them(received):
    with pytest.raises(ValueError, match=re.escape(f"Received: {received}")):
        BAD_CALLS[received]()


def correlated_images(count, size=12, seed=0):
    """Smooth images with correlated channels: patches far from white."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(count, size + 2, size + 2, 3))
    smooth = (noise[:, :-2, :-2] + noise[:, 1:-1, 1:-1] + noise[:, 2:, 2:]) / 3
    mixing = np.array([[1.0, 0.8, 0.5], [0.0, 0.6, 0.4], [0.0, 0.0, 0.3]])
    return (smooth @ mixing + 2.0).astype("float32")


def test_patch_whitening_whitens_the_patches_it_was_adapted_to():
    images = correlated_images(400)
    whitening = PatchWhitening(2, epsilon=1e-6)
    whitening.adapt(images)
    out = keras.ops.convert_to_numpy(whitening(images[:200]))
    assert out.shape == (200, 12, 12, 24)
    # Interior outputs (no padding in their patch): the first 12 channels
    # have the identity covariance, the last 12 are their negatives.
    inner = out[:, :-1, :-1].reshape(-1, 24)
    np.testing.assert_allclose(np.cov(inner[:, :12], rowvar=False), np.eye(12), atol=0.1)
    np.testing.assert_allclose(inner[:, 12:], -inner[:, :12], rtol=1e-5, atol=1e-5)
    # Before `adapt`, patches pass through: the centre of a 1x1 patch is the pixel.
    identity = keras.ops.convert_to_numpy(PatchWhitening(1)(images[:2]))
    np.testing.assert_allclose(identity, np.concatenate([images[:2], -images[:2]], -1), rtol=1e-6)


def test_patch_whitening_fits_the_first_images_whose_patches_max_patches_holds():
    # 12x12 images give 121 2x2 patches each: max_patches=1300 holds the
    # patches of 10 whole images, and one image is used even when it holds
    # more than max_patches.
    images = correlated_images(40)
    for max_patches, count in ((1300, 10), (50, 1)):
        limited, first = PatchWhitening(2), PatchWhitening(2)
        limited.adapt(images, max_patches=max_patches)
        first.adapt(images[:count])
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(limited.kernel),
                                      keras.ops.convert_to_numpy(first.kernel))
    every = PatchWhitening(2)
    every.adapt(images)
    assert not np.allclose(keras.ops.convert_to_numpy(every.kernel),
                           keras.ops.convert_to_numpy(limited.kernel))


def test_patch_whitening_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kernel_size=0"):
        PatchWhitening(0)
    with pytest.raises(ValueError, match="epsilon=0"):
        PatchWhitening(2, epsilon=0)
    with pytest.raises(ValueError, match=r"shape=\(12, 12, 3\)"):
        PatchWhitening(2).adapt(np.zeros((12, 12, 3)))
    with pytest.raises(ValueError, match=r"at least 3x3. Received: shape=\(4, 2, 2, 3\)"):
        PatchWhitening(3).adapt(np.zeros((4, 2, 2, 3)))
    # An image without its batch axis failed deep in the backend's convolution.
    with pytest.raises(ValueError, match=r"expected ndim=4, found ndim=3. Full shape received: \(8, 8, 3\)"):
        PatchWhitening(2)(np.ones((8, 8, 3), "float32"))
    with pytest.raises(ValueError, match=r"one or more 32x32 RGB images, shape \(N, 32, 32, 3\). "
                                         r"Received: shape \(0, 32, 32, 3\)"):
        adapt_whitening(build_model("fast-cpu"), np.zeros((0, 32, 32, 3)))
    with pytest.raises(ValueError, match=r"Received: shape \(5, 28, 28, 3\)"):
        adapt_whitening(build_model("fast-cpu"), np.zeros((5, 28, 28, 3)))


def test_whitening_stem_is_fixed_fitted_and_saved(tmp_path):
    model = build_model("fast-cpu")  # a 2x2 whitening stem
    stem = model.get_layer("stem_whitening")
    assert model.get_layer("stem_bn").input.shape == (None, 32, 32, 24)
    assert stem.trainable_weights == [] and stem.non_trainable_weights[0].shape == (2, 2, 3, 24)
    before = keras.ops.convert_to_numpy(stem.kernel)
    pixels = (correlated_images(64, size=32) * 60).clip(0, 255)
    adapt_whitening(model, pixels)
    after = keras.ops.convert_to_numpy(stem.kernel)
    assert not np.allclose(before, after)
    # Fitted to the normalized pixels, the stem's inputs.
    refit = PatchWhitening(2)
    refit.adapt(keras.ops.convert_to_numpy(model.get_layer("normalize")(pixels)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(refit.kernel), after, rtol=1e-4, atol=1e-4)
    path = str(tmp_path / "whitened.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.get_layer("stem_whitening"), PatchWhitening)
    np.testing.assert_array_equal(restored.predict(pixels[:4], verbose=0), model.predict(pixels[:4], verbose=0))


def test_the_whitening_stem_is_fitted_through_the_training_wrapper():
    # Before, the stem inside `Sequential([augment, network])` stayed the
    # identity, without a word.
    model = build_model("fast-cpu")
    trainer = keras.Sequential([keras.Input((32, 32, 3)), build_augmenter(seed=0), model])
    pixels = (correlated_images(64, size=32) * 60).clip(0, 255)
    adapt_whitening(trainer, pixels)
    direct = build_model("fast-cpu")
    adapt_whitening(direct, pixels)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.get_layer("stem_whitening").kernel),
                                  keras.ops.convert_to_numpy(direct.get_layer("stem_whitening").kernel))


def test_a_whitening_stem_the_fit_does_not_reach_is_an_error_naming_the_network():
    # Only the training wrapper (its first layer "augment") is unwrapped:
    # the stem inside any other wrapper stayed the identity, without a word.
    model = build_model("fast-cpu", stage_filters=(8, 8, 16, 16))
    wrapper = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.RandomFlip("horizontal"), model])
    with pytest.raises(ValueError, match=re.escape("adapt_whitening(model.get_layer('resnet_fast-cpu'), images)")):
        adapt_whitening(wrapper, np.zeros((4, 32, 32, 3)))


def test_the_network_is_channels_last_whatever_keras_config_says():
    # Keras' convolutions and pools follow keras.json's image_data_format:
    # with "channels_first" build_model made another network (and counted
    # it against the cap), which failed when called on images.
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    widths = {"seed": (8, 8, 16, 16), "fast": (8, 16, 16), "fast-cpu": (8, 8, 16, 16), "best": (8, 16, 16)}

    def built(preset):
        keras.utils.set_random_seed(0)
        model = build_model(preset, stage_filters=widths[preset])
        counted = count_params(preset, stage_filters=widths[preset])
        return counted, model.count_params(), model.predict(images, verbose=0)

    expected = {preset: built(preset) for preset in widths}
    keras.config.set_image_data_format("channels_first")
    try:
        for preset in widths:
            counted, params, predictions = built(preset)
            assert (counted, params) == expected[preset][:2], preset
            np.testing.assert_allclose(predictions, expected[preset][2], rtol=1e-5, atol=1e-6)
    finally:
        keras.config.set_image_data_format("channels_last")


def test_whitening_stem_arguments_are_checked():
    with pytest.raises(ValueError, match="stem_filters=32"):
        build_model("fast-cpu", stem_filters=32)
    with pytest.raises(ValueError, match="stem_filters=None"):
        build_model("seed", stem_filters=None)
    with pytest.raises(ValueError, match="stem_strides=2"):
        build_model("seed", stem_whitening=True, stem_filters=None)
    # The whitening stem on another preset: 6 * 3**2 channels for 3x3 patches.
    model = build_model("best", stem_whitening=True, stem_filters=None)
    assert model.get_layer("stem_bn").input.shape == (None, 32, 32, 54)


def test_keras_own_load_model_needs_only_the_import_the_readme_names(tmp_path):
    # The README said `import keras_resnet.layers`, which registers no
    # optimizer: a run's model.keras (compiled with OffsetScaledSGD) failed
    # with "Could not locate class 'OffsetScaledSGD'".
    from keras_resnet.optimizers import OffsetScaledSGD

    model = build_model("fast-cpu", stage_filters=(8, 8, 8, 8))
    model.compile(optimizer=OffsetScaledSGD(4.0, learning_rate=0.1), loss="categorical_crossentropy")
    model.save(tmp_path / "model.keras")
    out = run_python(["-c", "import sys, keras, keras_resnet.model; "
                            "m = keras.saving.load_model(sys.argv[1]); "
                            "print(type(m.optimizer).__name__, m.count_params())",
                      str(tmp_path / "model.keras")])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["OffsetScaledSGD", str(model.count_params())]


def test_a_loaded_model_predicts_with_xla_as_this_backend_and_machine_would(tmp_path):
    # A .keras file keeps the training's `jit_compile`: one trained on JAX
    # (or a GPU) predicted with XLA on TensorFlow's CPU, about 7 times
    # slower for fast-cpu's network; one trained on TensorFlow's CPU
    # predicted uncompiled (op by op) on JAX.
    # Keras' "auto" here: on TensorFlow, XLA with a GPU alone (the files
    # saved with either choice, so that one of them shows on any machine).
    from keras_resnet.config import TrainConfig
    from keras_resnet.training import resolve_jit_compile

    model = build_model("seed", stage_filters=(8, 8, 8, 8))
    for jit_compile in (True, False):
        model.compile(optimizer="sgd", loss="categorical_crossentropy", jit_compile=jit_compile)
        model.save(tmp_path / f"jit_{jit_compile}.keras")
    here = resolve_jit_compile(TrainConfig())
    for jit_compile in (True, False):
        assert load_model(str(tmp_path / f"jit_{jit_compile}.keras")).jit_compile is here
    out = run_python(["-c", "import sys; from keras_resnet import load_model; "
                            "print(load_model(sys.argv[1]).jit_compile)",
                      str(tmp_path / "jit_False.keras")], env={"KERAS_BACKEND": "jax"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "True"


def _inference_batch_norm(layer, x):
    gamma, beta, mean, variance = (keras.ops.convert_to_numpy(v) for v in (
        layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance))
    return (x - mean) / np.sqrt(variance + layer.epsilon) * gamma + beta


def _convolve(layer, x, strides):
    return keras.ops.convert_to_numpy(keras.ops.conv(x, layer.kernel, strides=strides, padding="same"))


@pytest.mark.parametrize("filters, strides, channels", [(8, 1, 8), (8, 1, 4), (8, 2, 4), (16, 2, 16)])
def test_a_block_is_conv_bn_relu_conv_bn_plus_its_shortcut_then_relu(filters, strides, channels):
    # The docstring's formula, at inference, with every batch norm holding
    # statistics and an affine map of its own (fresh ones are about the
    # identity: a dropped batch norm or ReLU did not show).
    block = ResidualBlock(filters, strides=strides)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 6, channels)).astype("float32")
    block(x)
    norms = [block.bn1, block.bn2] + ([block.projection_bn] if block.has_projection else [])
    for norm in norms:
        n = norm.gamma.shape[0]
        norm.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
        norm.beta.assign(rng.normal(size=n).astype("float32"))
        norm.moving_mean.assign(rng.normal(size=n).astype("float32"))
        norm.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
    branch = np.maximum(_inference_batch_norm(block.bn1, _convolve(block.conv1, x, strides)), 0.0)
    branch = _inference_batch_norm(block.bn2, _convolve(block.conv2, branch, 1))
    shortcut = x
    if block.has_projection:
        shortcut = _inference_batch_norm(block.projection_bn, _convolve(block.projection, x, strides))
    assert block.has_projection == (strides != 1 or channels != filters)
    expected = np.maximum(branch + shortcut, 0.0)
    out = keras.ops.convert_to_numpy(block(x, training=False))
    assert out.shape == expected.shape == (2, 6 // strides, 6 // strides, filters)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_zero_init_residual_zeroes_the_second_batch_norm_scale_alone():
    block = ResidualBlock(8, strides=2, zero_init_residual=True)
    block(np.zeros((1, 6, 6, 4), "float32"))
    for norm, scale in ((block.bn1, 1.0), (block.bn2, 0.0), (block.projection_bn, 1.0)):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(norm.gamma), np.full(8, scale), norm.name)


@pytest.mark.parametrize("preset, overrides", [
    ("seed", {}),
    ("fast", {}),
    ("seed", dict(downsample="max_pool", pooled_shortcut=True, zero_init_residual=True, bn_momentum=0.8)),
    ("fast", dict(downsample="stride", pooled_shortcut=False)),
])
def test_every_block_of_the_network_takes_the_layouts_block_options(preset, overrides):
    # A block option that build_model does not pass on leaves the block's
    # default: the parameter count is the same either way.
    from keras_resnet.presets import preset_layout

    small = dict(stage_filters=(8, 8, 16, 16)) if preset == "seed" else {}
    layout = preset_layout(preset, **small, **overrides)
    model = build_model(preset, **small, **overrides)
    blocks = [layer for layer in model.layers if isinstance(layer, ResidualBlock)]
    assert len(blocks) == sum(layout["stage_blocks"])
    for block in blocks:
        assert block.downsample == layout["downsample"], block.name
        assert block.pooled_shortcut == layout["pooled_shortcut"], block.name
        assert block.zero_init_residual == layout["zero_init_residual"], block.name
        assert block.bn_momentum == layout["bn_momentum"], block.name
        strided = block.strides == 2
        assert (block.pool is not None) == (strided and layout["downsample"] == "max_pool")
        assert (block.shortcut_pool is not None) == (strided and layout["pooled_shortcut"])
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(block.bn2.gamma),
                                      0.0 if layout["zero_init_residual"] else 1.0)


def test_the_stem_is_a_batch_norm_then_a_relu_before_the_first_block():
    model = build_model("seed", stage_filters=(8, 8, 16, 16))
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    stem_bn = keras.Model(model.input, model.get_layer("stem_bn").output)
    into_blocks = keras.Model(model.input, model.get_layer("stage1_block1").input)
    normalized = keras.ops.convert_to_numpy(stem_bn(x, training=False))
    assert normalized.min() < 0  # else a dropped ReLU would not show
    np.testing.assert_allclose(keras.ops.convert_to_numpy(into_blocks(x, training=False)),
                               np.maximum(normalized, 0.0), rtol=1e-6, atol=1e-6)


def test_the_head_averages_the_last_features_then_applies_dense_and_softmax():
    model = build_model("seed", stage_filters=(8, 8, 16, 16))
    last_block = [layer for layer in model.layers if isinstance(layer, ResidualBlock)][-1]
    features = keras.Model(model.input, last_block.output)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    pooled = keras.ops.convert_to_numpy(features(x, training=False)).mean(axis=(1, 2))
    dense = model.get_layer("logits")
    kernel, bias = (keras.ops.convert_to_numpy(v) for v in (dense.kernel, dense.bias))
    bias = np.linspace(-1, 1, 10).astype("float32")  # zero as built: set one that shows
    dense.bias.assign(bias)
    logits = pooled @ kernel + bias
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x, training=False)), expected,
                               rtol=1e-4, atol=1e-6)


def test_patch_whitening_follows_the_kernels_patch_order_and_its_epsilon():
    # Images correlated along rows only, so that a patch read column-first
    # (transposed) has another covariance; with an epsilon of about the
    # median eigenvalue, each direction of eigenvalue v comes out with
    # variance v / (v + epsilon).
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(300, 12, 14, 3))
    images = noise[:, :, :-2] + 0.9 * noise[:, :, 1:-1] + 0.6 * noise[:, :, 2:]
    images = (images @ np.array([[1.0, 0.5, 0.2], [0.0, 0.8, 0.3], [0.0, 0.0, 0.4]])).astype("float32")
    patches = np.lib.stride_tricks.sliding_window_view(images, (2, 2), axis=(1, 2)).reshape(
        -1, 12)
    eigenvalues = np.linalg.eigvalsh(np.cov(patches, rowvar=False))
    for epsilon in (1e-6, float(np.median(eigenvalues))):
        whitening = PatchWhitening(2, epsilon=epsilon)
        whitening.adapt(images)
        out = keras.ops.convert_to_numpy(whitening(images))[:, :-1, :-1, :12].reshape(-1, 12)
        covariance = np.cov(out, rowvar=False)
        expected = eigenvalues / (eigenvalues + epsilon)
        np.testing.assert_allclose(np.linalg.eigvalsh(covariance), np.sort(expected), atol=2e-3)
        if epsilon == 1e-6:
            np.testing.assert_allclose(covariance, np.eye(12), atol=2e-3)


@pytest.mark.parametrize("epsilon", [1e-5, 0.1])
def test_fused_batch_norm_normalizes_with_its_own_epsilon(epsilon):
    # Inputs of variance about 1e-4, where the epsilon decides the output.
    x = np.random.default_rng(0).normal(0.0, 0.01, (8, 5, 5, 6)).astype("float32")
    results = []
    for layer in (keras.layers.BatchNormalization(epsilon=epsilon),
                  FusedBatchNormalization(epsilon=epsilon)):
        results.append(keras.ops.convert_to_numpy(layer(x, training=True)))
    np.testing.assert_allclose(results[1], results[0], rtol=1e-3, atol=1e-4)
    assert np.std(results[1]) == pytest.approx(np.sqrt(np.var(x) / (np.var(x) + epsilon)), rel=0.05)
