import importlib.util
import json
import warnings

import keras
import numpy as np
import pytest

from keras_resnet import data
from keras_resnet.augment import RandomCutout
from keras_resnet.augment import RandomHorizontalFlip
from keras_resnet.augment import RandomPadCrop
from keras_resnet.augment import build_augmenter
from keras_resnet.augment import skip_random_draws
from tests.conftest import REPO
from tests.conftest import run_python


def images(n=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3)).astype("float32")


def test_shapes_and_dtype_kept():
    x = images()
    y = keras.ops.convert_to_numpy(build_augmenter(cutout=8, seed=0)(x, training=True))
    assert y.shape == x.shape and y.dtype == np.float32


def test_an_augmenter_saved_before_the_layers_moved_to_augment_py_still_loads():
    # The augmentation layers lived in keras_resnet/layers.py; Keras files
    # written then name that module beside the registered name.
    import keras_resnet.model  # noqa: F401  (what docs/training.md has users import)

    saved = keras.saving.serialize_keras_object(build_augmenter(2, cutout=4, seed=3))
    for step in saved["config"]["layers"]:
        assert step["module"] == "keras_resnet.augment"
        step["module"] = "keras_resnet.layers"
    restored = keras.saving.deserialize_keras_object(saved)
    assert [type(layer) for layer in restored.layers] == [RandomPadCrop, RandomHorizontalFlip, RandomCutout]
    x = images(8)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(restored(x, training=True)),
        keras.ops.convert_to_numpy(build_augmenter(2, cutout=4, seed=3)(x, training=True)),
    )


def test_identity_at_inference():
    x = images()
    for layer in (RandomPadCrop(seed=0), RandomHorizontalFlip(seed=0), RandomCutout(8, seed=0)):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(build_augmenter(seed=0)(x, training=False)), x
    )


@pytest.mark.parametrize("layer", [RandomPadCrop(seed=0), RandomHorizontalFlip(seed=0),
                                   RandomCutout(8, seed=0)], ids=lambda layer: type(layer).__name__)
def test_a_single_image_without_its_batch_axis_is_refused(layer):
    # The flip broadcast a (32, 32, 3) image to (32, 32, 32, 3) without a word.
    with pytest.raises(ValueError, match=r"add the batch axis.*Received: shape=\(32, 32, 3\)"):
        layer(images(1)[0], training=True)


def test_reflecting_a_padding_as_wide_as_the_image_is_refused():
    with pytest.raises(ValueError, match=r'mode="constant".*padding=5 for images of 5x7'):
        RandomPadCrop(5, seed=0)(images(2)[:, :5, :7], training=True)
    crops = RandomPadCrop(5, mode="constant", seed=0)(images(2)[:, :5, :7], training=True)
    assert tuple(crops.shape) == (2, 5, 7, 3)


def test_crop_is_a_shifted_window_of_the_padded_image():
    x = images(32)
    y = keras.ops.convert_to_numpy(RandomPadCrop(4, seed=3)(x, training=True))
    padded = np.pad(x, [(0, 0), (4, 4), (4, 4), (0, 0)], mode="reflect")
    offsets = []
    for image, out in zip(padded, y):
        found = [(r, c) for r in range(9) for c in range(9)
                 if np.array_equal(image[r:r + 32, c:c + 32], out)]
        assert found, "every output is a 32x32 window of the padded image"
        offsets.append(found[0])
    assert len(set(offsets)) > 5  # offsets really vary per image


def test_flip_mirrors_about_half():
    x = images(400)
    y = keras.ops.convert_to_numpy(RandomHorizontalFlip(seed=1)(x, training=True))
    flipped = np.array([np.array_equal(a, b[:, ::-1]) for a, b in zip(y, x)])
    kept = np.array([np.array_equal(a, b) for a, b in zip(y, x)])
    assert np.all(flipped | kept)
    assert 150 < flipped.sum() < 250


def test_cutout_zeroes_a_square():
    x = images(16) + 1.0  # no zeros before
    y = keras.ops.convert_to_numpy(RandomCutout(8, seed=0)(x, training=True))
    assert np.array_equal(y == 0, np.repeat((y == 0).all(-1, keepdims=True), 3, -1))  # all channels
    for zeros in (y == 0).all(-1):
        rows, cols = np.flatnonzero(zeros.any(1)), np.flatnonzero(zeros.any(0))
        assert len(rows) and len(cols)
        # One filled rectangle: the 8x8 square, cut by the border where it overhangs.
        assert zeros.sum() == len(rows) * len(cols) == (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
        assert len(rows) == 8 or rows[0] == 0 or rows[-1] == 31
        assert len(cols) == 8 or cols[0] == 0 or cols[-1] == 31
    assert max(zeros.sum() for zeros in (y == 0).all(-1)) == 64


def test_an_empty_batch_comes_back_empty():
    # TensorFlow's reflect padding raised InvalidArgumentError on no images.
    empty = np.zeros((0, 32, 32, 3), "float32")
    for layer in (RandomPadCrop(4, seed=0), RandomHorizontalFlip(seed=0), RandomCutout(8, seed=0),
                  build_augmenter(4, cutout=8, seed=0)):
        assert keras.ops.convert_to_numpy(layer(empty, training=True)).shape == (0, 32, 32, 3)


def test_deterministic_under_a_seed():
    x = images()
    a = keras.ops.convert_to_numpy(build_augmenter(seed=5)(x, training=True))
    b = keras.ops.convert_to_numpy(build_augmenter(seed=5)(x, training=True))
    c = keras.ops.convert_to_numpy(build_augmenter(seed=6)(x, training=True))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_pipeline_same_seed_same_batches():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 32, 32, 3)).astype("uint8")
    y = rng.integers(0, 10, 64)

    def first_epoch(seed):
        ds = data.train_dataset(x, y, 16, build_augmenter(seed=seed), seed=seed)
        return [b.numpy() for b, _ in ds.take(4)]

    run1, run2 = first_epoch(1), first_epoch(1)
    assert len(run1) == 4 and run1[0].shape == (16, 32, 32, 3) and run1[0].dtype == np.float32
    for a, b in zip(run1, run2):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(run1[0], first_epoch(2)[0])


def test_pipeline_reshuffles_and_augments_each_epoch():
    x = np.stack([np.full((32, 32, 3), i, np.uint8) for i in range(32)])
    y = np.arange(32) % 10
    epochs = data.train_dataset(x, y, 32, None, seed=0).take(2)  # one batch per epoch
    epoch1, epoch2 = [b.numpy()[:, 0, 0, 0] for b, _ in epochs]
    assert sorted(epoch1) == list(range(32))  # every image once per epoch
    assert not np.array_equal(epoch1, epoch2)
    # Each batch gets new draws: one image, repeated, is cropped and flipped
    # otherwise in every batch.
    image = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), np.uint8)
    batches = data.train_dataset(np.repeat(image, 32, 0), y, 16, build_augmenter(4, seed=0), seed=0)
    first, second, third = [b.numpy() for b, _ in batches.take(3)]
    assert not np.array_equal(first, second) and not np.array_equal(second, third)


@pytest.mark.parametrize("alternate_flips", [False, True])
def test_pipeline_keeps_each_label_with_its_image(alternate_flips):
    # Image i is filled with the value i and labelled i % 10: shuffled, cropped
    # and flipped, its centre keeps the value, and its label must follow it.
    x = np.stack([np.full((32, 32, 3), i, np.uint8) for i in range(60)])
    y = np.arange(60) % 10
    augmenter = build_augmenter(4, seed=0, flip=not alternate_flips)
    dataset = data.train_dataset(x, y, 20, augmenter, seed=0, alternate_flips=alternate_flips)
    for images_, labels in dataset.take(6):  # two epochs
        values = images_.numpy()[:, 16, 16, 0].astype(int)
        assert np.array_equal(np.argmax(labels.numpy(), -1), values % 10)


def test_augmenter_without_flip_leaves_mirroring_to_the_pipeline():
    assert [l.name for l in build_augmenter(2, seed=0).layers] == ["pad_crop", "flip"]
    assert [l.name for l in build_augmenter(2, seed=0, flip=False).layers] == ["pad_crop"]
    with pytest.raises(ValueError, match=r"`flip` must be True or False. Received: flip='no'"):
        build_augmenter(2, flip="no")  # was truthy: it flipped
    no_shift = build_augmenter(0, seed=0, flip=False)
    x = images(8)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(no_shift(x, training=True)), x)


def test_eval_pipeline_does_not_augment():
    x = images(10).astype("uint8")
    y = np.arange(10)
    (batch, labels), = list(data.eval_dataset(x, y, 16))
    np.testing.assert_array_equal(batch.numpy(), x.astype("float32"))
    np.testing.assert_array_equal(labels.numpy().argmax(-1), y)


def test_skipped_draws_go_on_where_the_layers_would_be():
    # A resumed run skips the draws of the batches it trained before.
    x = images(8)

    def network():
        return keras.Sequential([keras.Input((32, 32, 3)), build_augmenter(4, cutout=8, seed=0),
                                 keras.layers.Dropout(0.5, seed=1)])

    whole = network()
    outputs = [keras.ops.convert_to_numpy(whole(x, training=True)) for _ in range(3)]
    resumed = network()
    skip_random_draws(resumed, 2)
    third = keras.ops.convert_to_numpy(resumed(x, training=True))
    np.testing.assert_array_equal(third, outputs[2])
    assert not np.array_equal(third, outputs[0])


def test_skipping_draws_makes_no_numpy_deprecation_warning():
    # np.array() of a TensorFlow variable passes `copy`, which its `__array__`
    # takes none of: numpy warned once per generator at every resume (shown
    # with PYTHONWARNINGS=always; pytest.ini hides DeprecationWarnings).
    augmenter = build_augmenter(4, cutout=8, seed=0)
    augmenter(images(2), training=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        skip_random_draws(augmenter, 3)
    assert [str(w.message) for w in caught] == []
    draws = [keras.ops.convert_to_numpy(v.value)[1] for v in augmenter.non_trainable_variables
             if v.name == "seed_generator_state"]
    assert draws == [4, 4, 4]  # the call above drew once


def test_the_last_seed_builds_an_augmenter():
    # --seed 4294967295 passed the flag's check, then the flip's seed + 1
    # overflowed JAX's uint32 state.
    augmenter = build_augmenter(cutout=8, seed=2**32 - 1)
    assert [layer.seed for layer in augmenter.layers] == [2**32 - 1, 0, 1]


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="PyTorch is not installed (requirements-dev.txt leaves it out): "
                           "pip install torch to test KERAS_BACKEND=torch")
def test_seeds_on_torch_stay_in_its_int32_range(fake_cifar, tmp_path):
    # PyTorch's seed generators hold int32: the flip's seed 2**31 (the last
    # seed + 1) failed to build with "value cannot be converted to type
    # int32 without overflow", and train.py --seed 2**31 passed the check
    # for JAX's [0, 2**32), wrote its run folder, then failed so.
    script = ("import json, numpy as np; from keras_resnet.augment import build_augmenter; "
              "augmenter = build_augmenter(cutout=8, seed=2**31 - 1); "
              "augmenter(np.zeros((2, 32, 32, 3), 'float32'), training=True); "
              "print(json.dumps([layer.seed for layer in augmenter.layers]))")
    out = run_python(["-c", script], env={"KERAS_BACKEND": "torch"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [2**31 - 1, 0, 1]

    run_dir = tmp_path / "run"
    out = run_python(["train.py", "--seed", str(2**31), "--data-dir", fake_cifar, "--output-dir",
                      str(run_dir), "--epochs", "1", "--no-export"], cwd=REPO,
                     env={"KERAS_BACKEND": "torch"})
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-1] == (
        "train.py: error: --seed must be in [0, 2**31) on KERAS_BACKEND=torch, whose seed "
        f"generators hold int32, got {2**31}.")
    assert not run_dir.exists()


def test_crop_draws_every_shift_in_both_directions_evenly():
    # Each shift in [-padding, padding], down and right independently: a crop
    # that never reached one side, or moved rows and columns together, still
    # gave windows of the padded image that vary.
    side, p, count = 6, 2, 2000
    x = np.broadcast_to(np.arange(1, side * side + 1, dtype="float32").reshape(1, side, side, 1),
                        (count, side, side, 1))
    y = keras.ops.convert_to_numpy(RandomPadCrop(p, mode="constant", seed=0)(x, training=True))
    padded = np.pad(x[0, :, :, 0], p)
    windows = {(r, c): padded[r:r + side, c:c + side] for r in range(2 * p + 1) for c in range(2 * p + 1)}
    offsets = []
    for out in y[:, :, :, 0]:
        found = [key for key, window in windows.items() if np.array_equal(window, out)]
        assert len(found) == 1
        offsets.append(found[0])
    counts = np.zeros((2 * p + 1, 2 * p + 1))
    for r, c in offsets:
        counts[r, c] += 1
    assert counts.min() > 0  # all 25 (top, left) pairs
    expected = count / (2 * p + 1)
    for marginal in (counts.sum(1), counts.sum(0)):
        np.testing.assert_allclose(marginal, expected, rtol=0.2)


def test_cutout_squares_are_centred_anywhere_and_cut_by_every_border():
    # The square is centred on a uniform pixel, so it overhangs each border
    # in turn; placed by its corner instead it never left the top or left.
    size, count = 8, 400
    x = images(count) + 1.0
    zeros = (keras.ops.convert_to_numpy(RandomCutout(size, seed=0)(x, training=True)) == 0).all(-1)
    cut = {"top": 0, "bottom": 0, "left": 0, "right": 0}
    centres = []
    for square in zeros:
        rows, cols = np.flatnonzero(square.any(1)), np.flatnonzero(square.any(0))
        cut["top"] += len(rows) < size and rows[0] == 0
        cut["bottom"] += len(rows) < size and rows[-1] == 31
        cut["left"] += len(cols) < size and cols[0] == 0
        cut["right"] += len(cols) < size and cols[-1] == 31
        if len(rows) == size and len(cols) == size:
            centres.append((rows[0] + size // 2, cols[0] + size // 2))
    assert all(cut.values()), cut
    # Whole squares are centred on rows and columns 4 to 28: 16 on average
    # (about 0.5 of standard error here).
    np.testing.assert_allclose(np.mean(centres, axis=0), 16.0, atol=2.0)


def test_cutout_squares_reach_every_border_of_an_image_that_is_not_square():
    # Rows and columns each draw the centre over their own side: the 8x32
    # images' squares reach row 7 and column 31, and every image loses a
    # square (a centre drawn over the other side missed the narrow one).
    x = np.ones((400, 8, 32, 3), "float32")
    zeros = (keras.ops.convert_to_numpy(RandomCutout(4, seed=0)(x, training=True)) == 0).all(-1)
    assert zeros.any(axis=(1, 2)).all()
    rows, cols = zeros.any(2), zeros.any(1)  # (400, 8) and (400, 32)
    assert rows[:, 0].any() and rows[:, 7].any()
    assert cols[:, 0].any() and cols[:, 31].any()
    np.testing.assert_allclose(np.mean([np.flatnonzero(c).mean() for c in cols]), 15.5, atol=2.0)
