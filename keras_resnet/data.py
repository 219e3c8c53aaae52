"""CIFAR-10 sources and the input pipelines.

Sources: a local "python version" folder (`data_batch_1..5`, `test_batch`,
`batches.meta`) or TensorFlow Datasets. Both give uint8 NHWC images and int
labels. Pipelines: a `tf.data` pipeline that shuffles and augments whole
batches on the host, or shuffled whole batches of numpy arrays (a Keras
`PyDataset`) for augmentation on the device.
"""

import collections
import numbers
import os
import pickle
import re
import shlex
import socket

import numpy as np

from keras_resnet.checks import check_images
from keras_resnet.checks import check_int
from keras_resnet.checks import check_path

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
DATA_DIR_ENV = "CIFAR10_DIR"
# The folder that the python-version archive, cifar-10-python.tar.gz, unpacks.
ARCHIVE_FOLDER = "cifar-10-batches-py"

Cifar10 = collections.namedtuple(
    "Cifar10", ["x_train", "y_train", "x_test", "y_test", "class_names"]
)


class DataError(ValueError):
    """The data is missing or not what it should be; the message says how."""


def load_cifar10(data_dir=None):
    """Loads CIFAR-10 as uint8 (N, 32, 32, 3) images and int32 labels.

    Args:
        data_dir: a python-version CIFAR-10 folder. Defaults to
            `$CIFAR10_DIR`; without either, TensorFlow Datasets' `cifar10`.

    Returns:
        A `Cifar10` tuple `(x_train, y_train, x_test, y_test, class_names)`.

    Raises:
        DataError: a file is missing, unreadable or malformed (the message
            names it), or tfds cannot reach its download offline.
    """
    data_dir = python_folder(data_dir)
    if data_dir:
        return load_python_folder(data_dir)
    return load_tfds()


def python_folder(data_dir=None):
    """The python-version folder `load_cifar10(data_dir)` reads: `data_dir`,
    else `$CIFAR10_DIR` (`~` expanded, as the command lines' flags are);
    `None` where it loads TensorFlow Datasets'."""
    if data_dir is not None and not isinstance(data_dir, str):  # "" reads the variable
        check_path("data_dir", data_dir)
    return os.path.expanduser(data_dir or os.environ.get(DATA_DIR_ENV) or "") or None


def _read_pickle(path):
    if not os.path.isfile(path):
        raise DataError(
            f"CIFAR-10 file missing: {path}. The folder must hold "
            f"{', '.join(TRAIN_FILES + (TEST_FILE, META_FILE))} (an evaluation reads "
            f"only {TEST_FILE} and {META_FILE})."
        )
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except Exception as e:  # truncated, not a pickle, wrong protocol...
        raise DataError(
            f"CIFAR-10 file {path} is not a readable pickle "
            f"({type(e).__name__}: {e}); it may be truncated or corrupt."
        ) from None


def misplaced_folder(path):
    """What to give instead of `path` where it is a path around the CIFAR-10
    folder, as users give it: the archive, a folder holding the CIFAR-10
    folder (the one the archive unpacks into), or a TensorFlow Datasets
    folder. One sentence, or None."""
    if os.path.isfile(path) and path.endswith((".tar.gz", ".tgz", ".tar")):
        return (f"{path!r} is an archive: extract it (tar xf {shlex.quote(path)}) and give the "
                f"{ARCHIVE_FOLDER} folder it makes.")
    if not os.path.isdir(path) or os.path.isfile(os.path.join(path, META_FILE)):
        return None
    try:
        inner = sorted(entry.path for entry in os.scandir(path)
                       if entry.is_dir() and os.path.isfile(os.path.join(entry.path, META_FILE)))
    except OSError:
        return None
    if inner:
        return f"{path!r} holds no {META_FILE}, its folder {inner[0]!r} does: give that folder."
    tfds = os.path.join(path, "cifar10")  # <data_dir>/cifar10/<version>/ in TensorFlow Datasets
    if os.path.isdir(tfds) and any(re.fullmatch(r"\d+\.\d+\.\d+", name) for name in os.listdir(tfds)):
        return (f"{path!r} is a TensorFlow Datasets folder, not a python-version one: leave "
                f"--data-dir and ${DATA_DIR_ENV} out for TensorFlow Datasets' cifar10, with "
                f"TFDS_DATA_DIR={shlex.quote(path)} where that is not ~/tensorflow_datasets.")
    return None


def _read_batch(path, expected_count):
    batch = _read_pickle(path)
    if not isinstance(batch, dict) or not {b"data", b"labels"} <= set(batch):
        raise DataError(f"CIFAR-10 file {path} has no b'data' and b'labels'.")
    try:
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"])
    except ValueError as e:  # ragged lists
        raise DataError(f"CIFAR-10 file {path}: data or labels are not an array ({e}).") from None
    if data.dtype != np.uint8:
        raise DataError(
            f"CIFAR-10 file {path}: data has dtype {data.dtype}, expected uint8."
        )
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"CIFAR-10 file {path}: data has shape {data.shape}, expected "
            "(N, 3072) (32x32 RGB, channel-major rows)."
        )
    if labels.size and labels.dtype.kind not in "iu":
        raise DataError(
            f"CIFAR-10 file {path}: labels have dtype {labels.dtype}, expected integers 0-9."
        )
    count = data.shape[0]
    if labels.shape == (count, 1):  # a column, as keras.datasets.cifar10 gives them
        labels = labels.reshape(count)
    if labels.shape != (count,):
        raise DataError(
            f"CIFAR-10 file {path}: labels have shape {labels.shape}; expected {count} integers "
            f"0-9, one per image (a list, or an array of shape ({count},) or ({count}, 1))."
        )
    if expected_count is not None and data.shape[0] != expected_count:
        raise DataError(
            f"CIFAR-10 file {path}: {data.shape[0]} images, expected "
            f"{expected_count} (num_cases_per_batch in {META_FILE})."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise DataError(
            f"CIFAR-10 file {path}: labels range from {labels.min()} to "
            f"{labels.max()}, expected 0-9."
        )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype("int32")


def read_class_names(data_dir):
    """The 10 class names of a python-version CIFAR-10 folder: its
    `batches.meta`'s `label_names`, else CIFAR-10's own.

    Raises:
        DataError: the folder or its `batches.meta` is missing or malformed.
    """
    return _read_meta(data_dir)[1]


def _read_meta(data_dir):
    """Checks that `data_dir` is a folder and reads its `batches.meta`:
    `(images per training batch or None, class names)`."""
    if hint := misplaced_folder(data_dir):
        raise DataError(f"No CIFAR-10 folder: {hint}")
    if not os.path.isdir(data_dir):
        raise DataError(
            f"CIFAR-10 folder not found: {data_dir}. Pass --data-dir (or set "
            f"${DATA_DIR_ENV}) to a folder holding data_batch_1..5 and test_batch."
        )
    meta_path = os.path.join(data_dir, META_FILE)
    meta = _read_pickle(meta_path)
    if not isinstance(meta, dict):  # read as a meta without names or count, it checked nothing
        raise DataError(f"CIFAR-10 file {meta_path} holds a {type(meta).__name__}, not the dict of "
                        "label_names and num_cases_per_batch that CIFAR-10's batches.meta is.")
    expected = meta.get(b"num_cases_per_batch")
    # NumPy's integers too: a meta pickled from NumPy values.
    if expected is not None and (not isinstance(expected, numbers.Integral) or isinstance(expected, bool)):
        raise DataError(f"{meta_path}: num_cases_per_batch is {expected!r}, expected an integer.")
    names = meta.get(b"label_names")
    if isinstance(names, np.ndarray) and names.ndim == 1:
        names = names.tolist()
    if names is not None and not isinstance(names, (list, tuple)):
        raise DataError(f"{meta_path}: label_names is {names!r}, expected a list of 10 names.")
    try:  # bytes, as the original pickles them, or str
        class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names) \
            if names else CLASS_NAMES
    except UnicodeDecodeError as e:
        raise DataError(f"{meta_path}: label_names are not UTF-8 ({e}).") from None
    if len(class_names) != len(CLASS_NAMES):
        raise DataError(f"{meta_path} names {len(class_names)} classes, expected 10.")
    if bad := [name for name in class_names if not name.strip() or name.splitlines() != [name]]:
        # The export stores one name per line: it failed there, after training.
        raise DataError(f"{meta_path}: label_names holds {bad[0]!r}; each name must be one "
                        "non-empty line.")
    if repeated := [name for name in class_names if class_names.count(name) > 1]:
        # Per-class accuracy is keyed by name: ten "cat" reported one class.
        raise DataError(f"{meta_path}: label_names holds {repeated[0]!r} "
                        f"{class_names.count(repeated[0])} times; each class needs a name of its own.")
    return expected, class_names


def load_python_folder(data_dir):
    """Loads and checks a python-version CIFAR-10 folder (see `load_cifar10`)."""
    expected, class_names = _read_meta(data_dir)
    train = [_read_batch(os.path.join(data_dir, f), expected) for f in TRAIN_FILES]
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    if not len(x_train):
        raise DataError(f"CIFAR-10 folder {data_dir}: no images in data_batch_1..5.")
    return Cifar10(x_train, y_train, *_read_test_batch(data_dir), class_names)


def _read_test_batch(data_dir):
    x_test, y_test = _read_batch(os.path.join(data_dir, TEST_FILE), None)
    if not len(x_test):
        raise DataError(f"CIFAR-10 folder {data_dir}: no images in {TEST_FILE}.")
    return x_test, y_test


def load_cifar10_test(data_dir=None):
    """The test images alone, as `(x_test, y_test, class_names)`: what an
    evaluation needs. Of a python-version folder, only `test_batch` and
    `batches.meta` are read; otherwise as `load_cifar10`."""
    data_dir = python_folder(data_dir)
    if data_dir:
        class_names = _read_meta(data_dir)[1]  # it names a missing folder as such
        return (*_read_test_batch(data_dir), class_names)
    cifar = load_tfds()
    return cifar.x_test, cifar.y_test, cifar.class_names


def _tfds_download_reachable(timeout=3.0):
    try:
        socket.create_connection(("www.cs.toronto.edu", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_tfds():
    """Loads `cifar10` from TensorFlow Datasets, failing fast when offline."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:  # a JAX or PyTorch machine without TensorFlow
        raise DataError(
            "TensorFlow Datasets is not installed, which loads CIFAR-10 where no folder is "
            f"given: pass --data-dir (or set ${DATA_DIR_ENV}) to a python-version CIFAR-10 "
            "folder, or pip install tensorflow-datasets."
        ) from None

    builder = tfds.builder("cifar10")
    if not builder.is_prepared() and not _tfds_download_reachable():
        raise DataError(
            "CIFAR-10 is not in the TensorFlow Datasets cache and its download "
            "site cannot be reached. Pass --data-dir (or set "
            f"${DATA_DIR_ENV}) to a python-version CIFAR-10 folder."
        )
    builder.download_and_prepare()
    splits = tfds.as_numpy(builder.as_dataset(batch_size=-1, as_supervised=True))
    (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
    return Cifar10(
        x_train,
        y_train.astype("int32"),
        x_test,
        y_test.astype("int32"),
        tuple(builder.info.features["label"].names),
    )


def split_validation(x, y, size, seed=0):
    """Cuts a random validation split of `size` images off a training set.

    Returns `(x_train, y_train, x_val, y_val)`; the test set is never touched.
    Arrays, where `keras.utils.split_dataset` returns `tf.data` datasets.
    """
    check_int("size", size)  # a count of images: 0.1 was a TypeError
    x, y = np.asarray(x), np.asarray(y)
    if y.shape[:1] != x.shape[:1]:  # an IndexError, or labels of other images
        raise ValueError(f"`y` must hold one label per image of `x`, {len(x)}. Received: shape {y.shape}")
    if not size < len(x):
        raise ValueError(
            f"The validation split must leave training images: asked for "
            f"{size} of {len(x)}."
        )
    order = np.random.default_rng(seed).permutation(len(x))
    val, train = order[:size], order[size:]
    return x[train], y[train], x[val], y[val]


def class_labels(labels, count, num_classes=len(CLASS_NAMES), name="labels"):
    """`labels` as a flat array of `count` class indices (`None`: as many
    as `labels` holds).

    Takes shape `(count,)` or `(count, 1)`, as `keras.datasets.cifar10`
    gives them: compared with `(count,)` predictions, a column would
    broadcast to a `(count, count)` table and every figure would be wrong
    without an error.

    Raises:
        ValueError: not one integer label per image, or one outside
            `[0, num_classes)`; the message calls them `name`.
    """
    labels = np.asarray(labels)
    if count is None:
        count = len(labels) if labels.ndim else 1
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        hint = ""
        if count and labels.shape == (count, num_classes):
            hint = f" (not one-hot rows or probabilities: pass `{name}.argmax(axis=-1)`)"
        elif (labels.shape == (count,) and np.issubdtype(labels.dtype, np.floating)
              and np.array_equal(labels, np.round(labels))):
            hint = f" (whole numbers as floats: pass `{name}.astype(int)`)"
        raise ValueError(
            f"`{name}` must hold one integer class index per image: shape ({count},) or "
            f"({count}, 1){hint}. Received: shape {labels.shape}, dtype {labels.dtype}"
        )
    if count and not 0 <= labels.min() <= labels.max() < num_classes:
        raise ValueError(
            f"`{name}` must be class indices in [0, {num_classes}). Received: values from "
            f"{labels.min()} to {labels.max()}"
        )
    return labels


def one_hot(labels, num_classes=len(CLASS_NAMES)):
    """One-hot float32 rows of class indices, given as `class_labels` takes
    them (a column made `(N, 1, 10)` targets, which Keras refused in `fit`).
    `keras.utils.to_categorical` would give float64, to be cast again."""
    return np.eye(num_classes, dtype="float32")[class_labels(labels, None, num_classes)]


def first_flips(count, seed=0):
    """Whether each image is mirrored in even epochs: a seeded coin per
    image. With alternating flips, odd epochs mirror it the other way
    (airbench's derandomized flip, Jordan 2024), so each image is seen both
    ways in every two epochs instead of at random."""
    return np.random.default_rng([seed, 1]).random(count) < 0.5


def epoch_order(count, seed, epoch):
    """The order of the training images in epoch `epoch`: a permutation
    that depends on `seed` and `epoch` alone, so that a resumed run draws
    what the uninterrupted one would have."""
    return np.random.default_rng([seed, 2, epoch]).permutation(count)


def whole_batches(x, batch_size):
    """How many whole batches of `batch_size` the images `x` make: at least
    one (an endless stream of empty epochs would never yield a batch)."""
    check_int("batch_size", batch_size)
    if batch_size > len(x):
        raise ValueError(
            f"`batch_size` must be at most the {len(x)} training images (a partial batch "
            f"is dropped). Received: batch_size={batch_size}"
        )
    return len(x) // batch_size


def train_dataset(x, y, batch_size, augmenter=None, seed=0, alternate_flips=False, initial_epoch=0):
    """The training `tf.data` pipeline: an endless stream of epochs.

    Each epoch gathers the images in a new seeded order (`epoch_order`) in
    whole batches, dropping the last partial one, augments each batch at
    once with `augmenter` (vectorized, on the host) and prefetches. Images
    come out float32 in 0-255, labels one-hot. With `alternate_flips`, each
    image is mirrored in every other epoch (see `first_flips`); the
    augmenter should then not flip.

    The stream starts at epoch `initial_epoch`, so that a resumed run goes on
    with the batches the uninterrupted run would have drawn (the
    augmenter's random state is the caller's: `augment.skip_random_draws`).
    It never ends: pass `steps_per_epoch=len(x) // batch_size` to `fit`, and
    `take` that many batches for one epoch.
    """
    import tensorflow as tf

    x = check_images("x", x, dtype=None)  # scaled to [0, 1], it trained on them without a word
    count, steps = len(x), whole_batches(x, batch_size)
    images = tf.constant(x)
    labels = tf.constant(one_hot(class_labels(y, count, name="y")))  # else paired with other images
    mirror_in_even_epochs = tf.constant(first_flips(count, seed))

    def epoch_batches(epoch):
        order = tf.numpy_function(
            lambda e: epoch_order(count, seed, int(e))[: steps * batch_size], [epoch], tf.int64
        )
        batches = tf.reshape(order, (steps, batch_size))
        return tf.data.Dataset.from_tensor_slices((batches, tf.fill([steps], epoch)))

    def gather(indices, epoch):
        batch = tf.cast(tf.gather(images, indices), tf.float32)
        if alternate_flips:
            mirror = tf.gather(mirror_in_even_epochs, indices) != (epoch % 2 == 1)
            batch = tf.where(mirror[:, None, None, None], tf.reverse(batch, axis=[2]), batch)
        return batch, tf.gather(labels, indices)

    ds = tf.data.Dataset.counter(initial_epoch).flat_map(epoch_batches)
    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if augmenter is not None:
        # Sequential on purpose: the augmenter's seed state advances batch by
        # batch, so a seed gives the same crops and flips every run.
        ds = ds.map(lambda b, l: (augmenter(b, training=True), l))
    return ds.prefetch(tf.data.AUTOTUNE)


def mirror_in_place(images, which):
    """Mirrors `images[which]` left to right, in place.

    Moves whole pixels (one void item holding all of a pixel's channels)
    rather than single channel values: on a 2-core AMD EPYC, a batch of 512
    of `device_batches` with alternating flips went from 4.1 ms to
    1.7-2.0 ms (`docs/results/2026-12-03-amd-cpu/device_batch_flips.py`),
    host time that `fast`'s GPU steps of about 8 ms must hide.

    Args:
        images: a C-contiguous array of shape (batch, height, width, channels).
        which: bool array of shape (batch,).
    """
    pixel = np.dtype((np.void, images.itemsize * images.shape[-1]))
    pixels = images.view(pixel)[..., 0]
    pixels[which] = pixels[which, :, ::-1]


def device_batches(x, y, batch_size, seed=0, alternate_flips=False, shard=0, shards=1,
                   initial_epoch=0):
    """The training input when augmentation runs on the device.

    A `keras.utils.PyDataset` of whole batches, an endless stream of epochs
    like `train_dataset`'s (pass `steps_per_epoch` to `fit`): float32 images
    in 0-255 and one-hot labels, with no TensorFlow. Batch `i` is batch
    `i % steps` of epoch `initial_epoch + i // steps`, in `epoch_order`,
    mirrored in every other epoch with `alternate_flips`; it drops each
    epoch's last partial batch, so that XLA compiles the training step for
    one batch shape only. Keras is imported here rather than with this
    module, which command lines import before they choose a backend.

    With `shards` processes training one model (JAX multi-host), each
    process passes its `shard` (0-based): every process draws the same
    batches of `batch_size` and yields only its `batch_size // shards`
    slice of each, which Keras assembles into the global batch.
    """
    import keras

    x = check_images("x", x, dtype=None)
    steps = whole_batches(x, batch_size)
    y = class_labels(y, len(x), name="y")
    check_int("shards", shards)
    check_int("shard", shard, minimum=0, maximum=shards - 1)
    if batch_size % shards:  # else the global batch is smaller, images left out without a word
        raise ValueError(f"`batch_size` must divide evenly over the {shards} `shards`. "
                         f"Received: batch_size={batch_size}")
    local_size = batch_size // shards
    mirror_in_even_epochs = first_flips(len(x), seed)

    class EpochBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch, self.order = None, None

        @property
        def num_batches(self):
            return None  # endless

        def __getitem__(self, index):
            epoch, step = divmod(index, steps)
            epoch += initial_epoch
            if epoch != self.epoch:
                self.epoch, self.order = epoch, epoch_order(len(x), seed, epoch)
            picks = self.order[step * batch_size : (step + 1) * batch_size]
            mine = picks[shard * local_size : (shard + 1) * local_size]
            # A copy, so that the flips below leave `x` as it was; C-contiguous
            # for them, as a view of `x` need not be (keras.datasets' transposed).
            images = np.ascontiguousarray(x[mine])
            if alternate_flips:
                mirror_in_place(images, mirror_in_even_epochs[mine] != (epoch % 2 == 1))
            return images.astype("float32"), one_hot(y[mine])

    return EpochBatches()


def eval_dataset(x, y, batch_size):
    """Batches for evaluation: in order, no augmentation, float32 0-255."""
    import tensorflow as tf

    check_int("batch_size", batch_size)
    x = check_images("x", x, dtype=None)
    ds = tf.data.Dataset.from_tensor_slices((x, one_hot(class_labels(y, len(x), name="y"))))
    ds = ds.batch(batch_size).map(lambda b, l: (tf.cast(b, tf.float32), l))
    return ds.prefetch(tf.data.AUTOTUNE)
