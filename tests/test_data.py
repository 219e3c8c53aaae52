import os
import pickle
import re

import numpy as np
import pytest

from keras_resnet import data
from keras_resnet.data import DataError

CLASS_BYTES = [name.encode() for name in data.CLASS_NAMES]


def test_real_folder_loads(real_cifar):
    assert real_cifar.x_train.shape == (50000, 32, 32, 3)
    assert real_cifar.x_test.shape == (10000, 32, 32, 3)
    assert real_cifar.x_train.dtype == np.uint8
    assert real_cifar.y_train.shape == (50000,) and real_cifar.y_test.shape == (10000,)
    assert set(np.unique(real_cifar.y_train)) == set(range(10))
    assert np.bincount(real_cifar.y_test).tolist() == [1000] * 10
    means = real_cifar.x_train.reshape(-1, 3).mean(0)
    np.testing.assert_allclose(means, (125.3, 123.0, 113.9), atol=0.1)
    assert real_cifar.class_names[0] == "airplane" and real_cifar.class_names[9] == "truck"


def test_fake_folder_loads(fake_cifar):
    cifar = data.load_cifar10(fake_cifar)
    assert cifar.x_train.shape == (100, 32, 32, 3)
    assert cifar.x_test.shape == (20, 32, 32, 3)
    with open(os.path.join(fake_cifar, "data_batch_1"), "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    # Channel-major rows become NHWC: pixel (0, 0) of image 0 is R, G, B at 0, 1024, 2048.
    np.testing.assert_array_equal(
        cifar.x_train[0, 0, 0], raw[b"data"][0, [0, 1024, 2048]]
    )
    # Every pixel: row r, column c of channel k is at k * 1024 + r * 32 + c
    # (a swap of rows and columns kept pixel (0, 0)).
    k, r, c = np.meshgrid(range(3), range(32), range(32), indexing="ij")
    for i in range(20):
        np.testing.assert_array_equal(cifar.x_train[i][r, c, k], raw[b"data"][i][k * 1024 + r * 32 + c])
    assert cifar.y_train[:20].tolist() == raw[b"labels"]
    assert cifar.y_train.dtype == cifar.y_test.dtype == np.int32  # as documented, and as tfds gives them


def test_env_variable_is_used(fake_cifar, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", fake_cifar)
    assert data.load_cifar10().x_train.shape[0] == 100


def test_missing_file(fake_cifar):
    os.remove(os.path.join(fake_cifar, "data_batch_3"))
    with pytest.raises(DataError, match="missing: .*data_batch_3"):
        data.load_cifar10(fake_cifar)


def test_missing_folder():
    with pytest.raises(DataError, match="not found: /nonexistent.*--data-dir"):
        data.load_cifar10("/nonexistent")


def test_truncated_pickle(fake_cifar):
    path = os.path.join(fake_cifar, "data_batch_2")
    with open(path, "rb") as f:
        head = f.read(500)
    with open(path, "wb") as f:
        f.write(head)
    with pytest.raises(DataError, match="data_batch_2 is not a readable pickle.*truncated"):
        data.load_cifar10(fake_cifar)


def rewrite_batch(folder, name, changes):
    path = os.path.join(folder, name)
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    batch.update(changes)
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def test_wrong_shape(fake_cifar):
    rewrite_batch(fake_cifar, "test_batch", {b"data": np.zeros((20, 1024), np.uint8)})
    with pytest.raises(DataError, match=r"test_batch: data has shape \(20, 1024\)"):
        data.load_cifar10(fake_cifar)


def test_wrong_dtype(fake_cifar):
    rewrite_batch(fake_cifar, "data_batch_1", {b"data": np.zeros((20, 3072), np.float32)})
    with pytest.raises(DataError, match="data_batch_1: data has dtype float32"):
        data.load_cifar10(fake_cifar)


@pytest.mark.parametrize("labels, message", [
    ([12] * 20, "labels range from 12 to 12, expected 0-9"),
    ([-1] + [0] * 19, "labels range from -1 to 0, expected 0-9"),
])
def test_labels_out_of_range(fake_cifar, labels, message):
    rewrite_batch(fake_cifar, "data_batch_4", {b"labels": labels})
    with pytest.raises(DataError, match=f"data_batch_4: {message}"):
        data.load_cifar10(fake_cifar)


def test_an_empty_test_batch_is_refused_before_training(fake_cifar):
    # Keras' `predict` failed on it after every epoch had trained.
    rewrite_batch(fake_cifar, "test_batch", {
        b"data": np.zeros((0, 3072), np.uint8), b"labels": []})
    with pytest.raises(DataError, match="no images in test_batch"):
        data.load_cifar10(fake_cifar)


def test_empty_training_batches_are_refused(fake_cifar):
    rewrite_batch(fake_cifar, "batches.meta", {b"num_cases_per_batch": 0})
    for name in data.TRAIN_FILES:
        rewrite_batch(fake_cifar, name, {b"data": np.zeros((0, 3072), np.uint8), b"labels": []})
    with pytest.raises(DataError, match=re.escape(f"CIFAR-10 folder {fake_cifar}: no images in "
                                                  "data_batch_1..5.")):
        data.load_cifar10(fake_cifar)


def test_label_names_pickled_as_str_load(fake_cifar):
    path = os.path.join(fake_cifar, "batches.meta")
    with open(path, "rb") as f:
        meta = pickle.load(f, encoding="bytes")
    names = [n.decode() for n in meta[b"label_names"]]
    with open(path, "wb") as f:
        pickle.dump({**meta, b"label_names": names}, f)
    assert data.load_cifar10(fake_cifar).class_names == tuple(names)


@pytest.mark.parametrize("name", ["", "cat\ndog", "cat\r"])
def test_label_names_that_cannot_be_one_line_each_are_refused(fake_cifar, name):
    # The export writes one name per line: such a set trained, then failed there.
    path = os.path.join(fake_cifar, "batches.meta")
    with open(path, "rb") as f:
        meta = pickle.load(f, encoding="bytes")
    with open(path, "wb") as f:
        pickle.dump({**meta, b"label_names": [name, *meta[b"label_names"][1:]]}, f)
    with pytest.raises(DataError, match=re.escape(f"label_names holds {name!r}; each name must be "
                                                  "one non-empty line.")):
        data.load_cifar10(fake_cifar)


@pytest.mark.parametrize("names, message", [
    ([b"cat"] * 10, "'cat' 10 times"),
    ([*CLASS_BYTES[:5], b"cat", *CLASS_BYTES[6:]], "'cat' 2 times"),  # "dog" written "cat"
])
def test_label_names_that_repeat_a_name_are_refused(fake_cifar, names, message):
    # They trained: per_class_accuracy in metrics.json collapsed to one
    # {"cat": ...}, and the export named ten classes "cat".
    path = os.path.join(fake_cifar, "batches.meta")
    with open(path, "rb") as f:
        meta = pickle.load(f, encoding="bytes")
    with open(path, "wb") as f:
        pickle.dump({**meta, b"label_names": names}, f)
    expected = re.escape(f"{path}: label_names holds {message}; each class needs a name of its own.")
    with pytest.raises(DataError, match=expected):
        data.load_cifar10(fake_cifar)
    with pytest.raises(DataError, match=expected):  # what `export --data-dir` reads
        data.read_class_names(fake_cifar)


@pytest.mark.parametrize("names", [CLASS_BYTES[:9], [*CLASS_BYTES, b"kangaroo"]])
def test_label_names_of_other_than_ten_classes_are_refused(fake_cifar, names):
    # The network has ten outputs: the export and per-class accuracy would
    # name the classes of other outputs.
    path = os.path.join(fake_cifar, "batches.meta")
    rewrite_batch(fake_cifar, "batches.meta", {b"label_names": names})
    with pytest.raises(DataError, match=re.escape(f"{path} names {len(names)} classes, expected 10.")):
        data.load_cifar10(fake_cifar)


@pytest.mark.parametrize("names", [5, "abcdefghij", np.array([CLASS_BYTES])])
def test_label_names_that_are_no_list_are_refused(fake_cifar, names):
    # 5 failed inside a generator; a string of ten letters made ten classes.
    path = os.path.join(fake_cifar, "batches.meta")
    with open(path, "rb") as f:
        meta = pickle.load(f, encoding="bytes")
    with open(path, "wb") as f:
        pickle.dump({**meta, b"label_names": names}, f)
    with pytest.raises(DataError, match=re.escape(f"label_names is {names!r}, expected a list of 10 names")):
        data.load_cifar10(fake_cifar)


@pytest.mark.parametrize("key, value", [
    (b"num_cases_per_batch", np.int64(20)),
    (b"label_names", np.array(CLASS_BYTES)),
    (b"label_names", np.array(data.CLASS_NAMES)),
])
def test_a_meta_pickled_from_numpy_values_loads(fake_cifar, key, value):
    # Refused: "num_cases_per_batch is np.int64(20), expected an integer";
    # an array of names "expected a list of 10 names".
    rewrite_batch(fake_cifar, "batches.meta", {key: value})
    assert data.load_cifar10(fake_cifar).class_names == data.CLASS_NAMES
    rewrite_batch(fake_cifar, "batches.meta", {b"num_cases_per_batch": np.int64(7)})
    with pytest.raises(DataError, match="data_batch_1: 20 images, expected 7"):
        data.load_cifar10(fake_cifar)


def test_ragged_data_is_named(fake_cifar):
    rewrite_batch(fake_cifar, "data_batch_3", {b"data": [[1, 2]] + [[1]] * 19})
    with pytest.raises(DataError, match=r"data_batch_3: data or labels are not an array"):
        data.load_cifar10(fake_cifar)


@pytest.mark.parametrize("count", ["20", True, np.float64(20)])
def test_a_count_that_is_not_an_integer_is_named(fake_cifar, count):
    # "20" was "20 images, expected 20"; True "20 images, expected True".
    rewrite_batch(fake_cifar, "batches.meta", {b"num_cases_per_batch": count})
    with pytest.raises(DataError, match=re.escape(f"num_cases_per_batch is {count!r}, expected an integer")):
        data.load_cifar10(fake_cifar)


@pytest.mark.parametrize("meta", [[b"airplane"] * 10, "label_names", None])
def test_a_meta_that_is_not_a_dict_is_refused(fake_cifar, meta):
    # It was taken for a meta without label_names: CIFAR-10's names, and no
    # count to check the batches against, whatever the file held.
    path = os.path.join(fake_cifar, "batches.meta")
    with open(path, "wb") as f:
        pickle.dump(meta, f)
    with pytest.raises(DataError, match=re.escape(
            f"CIFAR-10 file {path} holds a {type(meta).__name__}, not the dict of label_names "
            "and num_cases_per_batch that CIFAR-10's batches.meta is")):
        data.load_cifar10(fake_cifar)
    with pytest.raises(DataError, match="batches.meta holds a"):
        data.load_cifar10_test(fake_cifar)


@pytest.mark.parametrize("labels, message", [
    ([5.7] * 20, "labels have dtype float64, expected integers 0-9"),
    (["cat"] * 20, "labels have dtype <U3, expected integers 0-9"),
])
def test_labels_that_are_not_integers_are_refused(fake_cifar, labels, message):
    # Float labels were truncated silently; strings failed inside numpy.
    rewrite_batch(fake_cifar, "data_batch_2", {b"labels": labels})
    with pytest.raises(DataError, match=f"data_batch_2: {message}"):
        data.load_cifar10(fake_cifar)


def test_labels_in_a_column_load_as_a_list(fake_cifar):
    # As keras.datasets.cifar10.load_data() gives them, (N, 1): refused as
    # "200 labels for 200 images".
    expected = data.load_cifar10(fake_cifar)
    for name in (*data.TRAIN_FILES, data.TEST_FILE):
        path = os.path.join(fake_cifar, name)
        with open(path, "rb") as f:
            labels = pickle.load(f, encoding="bytes")[b"labels"]
        rewrite_batch(fake_cifar, name, {b"labels": np.array(labels, "int64")[:, None]})
    loaded = data.load_cifar10(fake_cifar)
    for got, want in ((loaded.y_train, expected.y_train), (loaded.y_test, expected.y_test)):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("labels, shape", [
    (np.zeros((1, 20), "int64"), "(1, 20)"),
    (np.zeros((20, 2), "int64"), "(20, 2)"),
    (np.zeros(7, "int64"), "(7,)"),
])
def test_labels_that_are_not_one_per_image_are_named_by_their_shape(fake_cifar, labels, shape):
    rewrite_batch(fake_cifar, "data_batch_2", {b"labels": labels})
    with pytest.raises(DataError, match=re.escape(
            f"data_batch_2: labels have shape {shape}; expected 20 integers 0-9, one per image "
            "(a list, or an array of shape (20,) or (20, 1)).")):
        data.load_cifar10(fake_cifar)


def test_wrong_count(fake_cifar):
    rewrite_batch(fake_cifar, "data_batch_5", {
        b"data": np.zeros((7, 3072), np.uint8), b"labels": [0] * 7})
    with pytest.raises(DataError, match="data_batch_5: 7 images, expected 20"):
        data.load_cifar10(fake_cifar)


def test_tfds_offline_fails_fast(monkeypatch, tmp_path):
    import time

    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(data, "_tfds_download_reachable", lambda timeout=3.0: False)
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"--data-dir .*\$CIFAR10_DIR"):
        data.load_cifar10()
    assert time.perf_counter() - start < 30


def test_without_tensorflow_datasets_a_missing_folder_is_named(monkeypatch):
    # On a machine without TensorFlow (JAX on a GPU), leaving --data-dir and
    # $CIFAR10_DIR out was a ModuleNotFoundError traceback from
    # `import tensorflow_datasets`.
    import sys

    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # its import fails
    for load in (data.load_cifar10, data.load_cifar10_test):
        with pytest.raises(DataError) as raised:
            load()
        assert str(raised.value) == (
            "TensorFlow Datasets is not installed, which loads CIFAR-10 where no folder is given: "
            "pass --data-dir (or set $CIFAR10_DIR) to a python-version CIFAR-10 folder, or "
            "pip install tensorflow-datasets.")


def test_validation_split_comes_from_training_set():
    x = np.arange(100)[:, None]
    y = np.arange(100) % 10
    x_train, y_train, x_val, y_val = data.split_validation(x, y, 20, seed=1)
    assert len(x_val) == 20 and len(x_train) == 80
    assert not set(x_val[:, 0]) & set(x_train[:, 0])
    # Each label stays with its image.
    assert np.array_equal(y_train, x_train[:, 0] % 10) and np.array_equal(y_val, x_val[:, 0] % 10)
    with pytest.raises(ValueError, match="asked for 100 of 100"):
        data.split_validation(x, y, 100)


def test_validation_split_is_a_seeded_random_draw():
    # "A random validation split": not the first images of the training set,
    # the same for a seed, another for another seed.
    x, y = np.arange(1000)[:, None], np.arange(1000) % 10
    splits = [data.split_validation(x, y, 100, seed=seed)[2][:, 0] for seed in (0, 0, 1)]
    np.testing.assert_array_equal(splits[0], splits[1])
    assert set(splits[0]) != set(splits[2])
    assert set(splits[0]) != set(range(100)) and splits[0].max() > 500


def test_device_batches_are_whole_shuffled_and_seeded():
    x = np.arange(103, dtype="uint8")[:, None, None, None] * np.ones((1, 32, 32, 3), "uint8")
    y = np.arange(103) % 10
    batches = data.device_batches(x, y, 25, seed=3)
    assert batches.num_batches is None  # endless: 4 steps per epoch
    first = [batches[i] for i in range(4)]
    assert all(b[0].shape == (25, 32, 32, 3) and b[0].dtype == np.float32 for b in first)
    seen = np.concatenate([b[0][:, 0, 0, 0] for b in first]).astype(int)
    assert len(set(seen)) == 100  # no image twice in an epoch; 3 wait for another
    np.testing.assert_array_equal(np.concatenate([b[1] for b in first]), np.eye(10)[seen % 10])
    assert not np.array_equal(batches[4][0], first[0][0])  # the next epoch reshuffles
    again = data.device_batches(x, y, 25, seed=3)
    np.testing.assert_array_equal(again[0][0], first[0][0])  # same seed, same order
    other = data.device_batches(x, y, 25, seed=4)
    assert not np.array_equal(other[0][0], first[0][0])  # another seed, another order


def test_the_host_pipeline_pairs_each_image_with_its_label_in_the_device_batches_order():
    # Each image's pixels hold its index, its label the index's last digit.
    x = np.arange(103, dtype="uint8")[:, None, None, None] * np.ones((1, 32, 32, 3), "uint8")
    y = np.arange(103) % 10
    host = [(images.numpy(), labels.numpy()) for images, labels in data.train_dataset(x, y, 25, seed=3).take(8)]
    device = data.device_batches(x, y, 25, seed=3)
    for step, (images, labels) in enumerate(host):  # two epochs: the same batches either way
        assert images.shape == (25, 32, 32, 3) and images.dtype == np.float32
        np.testing.assert_array_equal(labels, np.eye(10)[images[:, 0, 0, 0].astype(int) % 10])
        np.testing.assert_array_equal(images, device[step][0])
    # Alternating flips are seeded too: another seed mirrors other images.
    assert not np.array_equal(data.first_flips(100, seed=3), data.first_flips(100, seed=4))
    np.testing.assert_array_equal(data.first_flips(100, seed=3), data.first_flips(100, seed=3))


@pytest.mark.parametrize("alternate_flips", [False, True])
def test_a_stream_started_at_an_epoch_draws_that_epoch(alternate_flips):
    # What a resumed run trains on: epoch 2 of the uninterrupted stream.
    x = (np.arange(40, dtype="uint8")[:, None, None, None] * np.ones((1, 32, 32, 3), "uint8")).copy()
    x[:, :, 0] = 255  # a flip shows
    y = np.arange(40) % 10
    steps = 40 // 16  # 8 images of each epoch wait for another
    host = [data.train_dataset(x, y, 16, seed=5, alternate_flips=alternate_flips, initial_epoch=start)
            for start in (0, 2)]
    whole, later = ([b.numpy() for b, _ in ds.take(count)] for ds, count in zip(host, (3 * steps, steps)))
    np.testing.assert_array_equal(np.stack(later), np.stack(whole[2 * steps:]))
    assert not np.array_equal(np.stack(later), np.stack(whole[:steps]))
    device = [data.device_batches(x, y, 16, seed=5, alternate_flips=alternate_flips, initial_epoch=start)
              for start in (0, 2)]
    for step in range(steps):
        np.testing.assert_array_equal(device[1][step][0], device[0][2 * steps + step][0])


def test_device_batches_flip_images_that_are_a_transposed_view():
    # keras.datasets.cifar10 gives x_train as a transposed view of (N, 3, 32,
    # 32) arrays; with alternating flips, the first batch raised numpy's
    # "ValueError: To change to a dtype of a different size, the last axis
    # must be contiguous" inside `fit`.
    channels_first = np.random.default_rng(0).integers(0, 256, (40, 3, 32, 32)).astype("uint8")
    x, y = channels_first.transpose(0, 2, 3, 1), np.arange(40) % 10
    view, copy = (data.device_batches(images, y, 8, seed=1, alternate_flips=True)
                  for images in (x, np.ascontiguousarray(x)))
    for index in range(2 * 5):  # two epochs: each image mirrored in one of them
        np.testing.assert_array_equal(view[index][0], copy[index][0])


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_mirror_in_place_flips_the_chosen_images_and_no_other(dtype):
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3)).astype(dtype)
    which = np.array([True, False, True, True, False, False])
    expected = np.where(which[:, None, None, None], images[:, :, ::-1], images)
    data.mirror_in_place(images, which)
    assert images.dtype == dtype
    np.testing.assert_array_equal(images, expected)


def test_device_batch_shards_of_several_processes_make_up_the_whole_batch():
    # Each image's pixels hold its index; rows differ so that a flip shows.
    x = (np.arange(40, dtype="uint8")[:, None, None, None] * np.ones((1, 32, 32, 3), "uint8")).copy()
    x[:, :, 0] = 255
    y = np.arange(40) % 10
    whole = data.device_batches(x, y, 8, seed=1, alternate_flips=True)
    shards = [data.device_batches(x, y, 8, seed=1, alternate_flips=True, shard=i, shards=2)
              for i in range(2)]
    for index in range(3 * 5):  # three epochs: the flips alternate per image
        images, labels = whole[index]
        parts = [s[index] for s in shards]
        assert all(p[0].shape == (4, 32, 32, 3) for p in parts)
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), images)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), labels)


@pytest.mark.parametrize("stream", [data.train_dataset, data.device_batches])
@pytest.mark.parametrize("batch_size, message", [
    (50, "`batch_size` must be at most the 40 training images (a partial batch is dropped). "
         "Received: batch_size=50"),
    (0, "`batch_size` must be a positive integer. Received: batch_size=0"),
])
def test_a_batch_larger_than_the_images_is_refused(stream, batch_size, message):
    # train_dataset made endless empty epochs (`next` never returned), and
    # device_batches raised ZeroDivisionError.
    x, y = np.zeros((40, 32, 32, 3), "uint8"), np.zeros(40, "int32")
    with pytest.raises(ValueError) as info:
        stream(x, y, batch_size)
    assert str(info.value) == message
    assert data.whole_batches(x, 40) == 1 and data.whole_batches(x, 16) == 2


def test_labels_of_other_images_and_bad_split_or_shard_arguments_are_named():
    # Before: labels of more images than `x` (`y` left whole as `x` was cut,
    # x[45000:] with y) were paired with other images by train_dataset
    # without a word; fewer failed as the stream ran, an IndexError in
    # split_validation, TensorFlow's "Dimensions 40 and 20 are not
    # compatible" in eval_dataset; size=0.1 (a fraction) was a TypeError,
    # eval_dataset(batch_size=0) TensorFlow's InvalidArgumentError, shards=0
    # a ZeroDivisionError.
    x, y = np.zeros((40, 32, 32, 3), "uint8"), np.arange(40) % 10
    for call, message in (
        (lambda: data.train_dataset(x[20:], y, 4), "`y` must hold one integer class index per image: "
                                                    "shape (20,) or (20, 1). Received: shape (40,)"),
        (lambda: data.device_batches(x, y[:20], 4), "`y` must hold one integer class index per image: "
                                                    "shape (40,) or (40, 1). Received: shape (20,)"),
        (lambda: data.eval_dataset(x, np.eye(10)[y], 4), "(not one-hot rows or probabilities: pass "
                                                         "`y.argmax(axis=-1)`)"),
        (lambda: data.eval_dataset(x, y, 0), "`batch_size` must be a positive integer. Received: batch_size=0"),
        (lambda: data.device_batches(x, y, 4, shards=0), "`shards` must be a positive integer. Received: shards=0"),
        (lambda: data.device_batches(x, y, 4, shard=2, shards=2),
         "`shard` must be an integer in [0, 1]. Received: shard=2"),
        # Each of 3 shards took 3 images of a batch of 10: batches of 9.
        (lambda: data.device_batches(x, y, 10, shards=3),
         "`batch_size` must divide evenly over the 3 `shards`. Received: batch_size=10"),
        (lambda: data.split_validation(x, y, 0.1), "`size` must be a positive integer. Received: size=0.1"),
        (lambda: data.split_validation(x, y[:20], 10),
         "`y` must hold one label per image of `x`, 40. Received: shape (20,)"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            call()


def test_the_pipelines_refuse_scaled_or_misshapen_images_without_copying_raw_ones():
    # Before: images scaled to [0, 1] streamed as they were, and the network,
    # which normalizes raw pixels, trained on nearly black images without a
    # word; gray or channels-first images were batched, and failed in `fit`.
    from keras_resnet.checks import check_images

    x, y = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3)).astype("uint8"), np.arange(40) % 10
    for call, message in (
        (lambda: data.train_dataset(x / 255, y, 4), "`x` must hold raw pixel values in [0, 255] (the model "
                                                    "normalizes them itself), not pixels scaled to [0, 1]: pass "
                                                    "x * 255. Received: values from 0 to 1"),
        (lambda: data.device_batches(x / 127.5 - 1, y, 4), "not pixels scaled to [-1, 1]"),
        (lambda: data.eval_dataset(x[..., 0], y, 4), "`x` must be a batch of one or more 32x32 RGB images, shape "
                                                     "(N, 32, 32, 3). Received: shape (40, 32, 32)"),
        (lambda: data.train_dataset(x.transpose(0, 3, 1, 2), y, 4), "Received: shape (40, 3, 32, 32)"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            call()
    assert check_images("x", x, dtype=None) is x  # CIFAR-10's 150 MB, not copied to float32


def test_labels_in_a_column_make_the_same_targets():
    # keras.datasets.cifar10 gives labels as (N, 1): the pipelines made
    # (B, 1, 10) targets, which Keras refused deep in fit; -1 became class 9.
    x, y = np.zeros((40, 32, 32, 3), "uint8"), np.arange(40) % 10
    np.testing.assert_array_equal(data.one_hot(y[:, None]), data.one_hot(y))
    assert data.one_hot(y).shape == (40, 10)
    batch = next(iter(data.eval_dataset(x, y[:, None], 8)))
    assert tuple(batch[1].shape) == (8, 10)
    assert data.device_batches(x, y[:, None], 8)[0][1].shape == (8, 10)
    for labels, received in (([-1], "values from -1 to -1"), ([10], "values from 10 to 10"),
                             ([0.5], "dtype float64"),
                             (["a", "b"], "dtype <U1"),  # its message failed on min()
                             (np.zeros((4, 2), int), "shape (4, 2)")):
        with pytest.raises(ValueError, match=re.escape(received)):
            data.one_hot(labels)


def test_a_tilde_in_cifar10_dir_is_the_home_folder(tmp_path, monkeypatch):
    # train.py expanded it (through its config), tune, evaluate and bench did not.
    from keras_resnet.data import python_folder

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CIFAR10_DIR", "~/cifar")
    assert python_folder() == str(tmp_path / "cifar")
    assert python_folder("~/other") == str(tmp_path / "other")


def _around_the_cifar10_folder(fake_cifar, tmp_path, layout):
    """A path a user gives for the CIFAR-10 folder: the folder the archive
    unpacks into, the archive itself, or a TensorFlow Datasets folder."""
    import shutil
    import tarfile

    if layout == "parent":
        parent = tmp_path / "cifar-10-python"
        shutil.copytree(fake_cifar, parent / "cifar-10-batches-py")
        return str(parent), f"its folder {str(parent / 'cifar-10-batches-py')!r} does: give that folder"
    if layout == "archive":
        archive = tmp_path / "cifar-10-python.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(fake_cifar, arcname="cifar-10-batches-py")
        return str(archive), f"is an archive: extract it (tar xf {archive}) and give the cifar-10-batches-py"
    tfds = tmp_path / "tensorflow_datasets"
    (tfds / "cifar10" / "3.0.2").mkdir(parents=True)
    return str(tfds), f"is a TensorFlow Datasets folder, not a python-version one: leave --data-dir and " \
                      f"$CIFAR10_DIR out for TensorFlow Datasets' cifar10, with TFDS_DATA_DIR={tfds}"


@pytest.mark.parametrize("layout", ["parent", "archive", "tfds"])
def test_a_path_around_the_cifar10_folder_names_the_one_to_give(fake_cifar, tmp_path, layout, capsys,
                                                                 monkeypatch):
    # They said "CIFAR-10 file missing: .../cifar-10-python/batches.meta. The
    # folder must hold data_batch_1, ..." after TensorFlow had loaded, and "a
    # file, not a folder" of the archive, naming neither the folder to give
    # nor TensorFlow Datasets.
    from keras_resnet import evaluate
    from tests.conftest import call_main
    from tests.conftest import run_train_main

    path, hint = _around_the_cifar10_folder(fake_cifar, tmp_path, layout)
    with pytest.raises(DataError) as raised:
        data.load_cifar10(path)
    assert hint in str(raised.value)
    code, _, err = run_train_main(["--data-dir", path, "--output-dir", str(tmp_path / "run")], capsys)
    assert code == 2 and err.startswith(f"train.py: error: --data-dir: {path!r} ") and hint in err
    assert len(err.splitlines()) == 1
    monkeypatch.setenv("CIFAR10_DIR", path)
    code, _, err = call_main(evaluate.main, ["--model", str(tmp_path / "unread.keras")], capsys)
    assert code == 2 and err.startswith("python -m keras_resnet.evaluate: error: $CIFAR10_DIR (read for "
                                        f"--data-dir): {path!r}") and hint in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "run").exists()


def test_a_parent_of_the_cifar10_folder_is_not_taken_for_a_tfds_folder(fake_cifar, tmp_path):
    # /work/shared holds cifar10/cifar-10-batches-py: no TensorFlow Datasets there.
    import shutil

    shutil.copytree(fake_cifar, tmp_path / "shared" / "cifar10" / "cifar-10-batches-py")
    with pytest.raises(DataError) as raised:
        data.load_cifar10(str(tmp_path / "shared"))
    assert "TensorFlow Datasets" not in str(raised.value) and "file missing" in str(raised.value)
