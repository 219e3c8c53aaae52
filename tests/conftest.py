"""Shared fixtures: small data the tests make themselves, and the real folder."""

import os
import pickle
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The tests' own processes run on TensorFlow, whatever the user's shell or
# ~/.keras/keras.json chooses (KERAS_BACKEND=jax failed every export test):
# the export and tf.data need it. JAX and PyTorch are tested in
# subprocesses that name their backend (test_backends.py and others).
os.environ["KERAS_BACKEND"] = "tensorflow"

# The tests' own TensorFlow runs as train.py's does, with oneDNN on
# (`config.prepare_environment`: TensorFlow alone leaves it off on AVX2
# CPUs, which then train several times slower). The variable is removed
# again once TensorFlow has read it, so that every subprocess decides for
# itself, as a user's command would.
if "TF_ENABLE_ONEDNN_OPTS" not in os.environ:
    from keras_resnet.config import TrainConfig
    from keras_resnet.config import prepare_environment

    prepare_environment(TrainConfig())
    import tensorflow  # noqa: E402,F401  (reads the variable as it loads)

    del os.environ["TF_ENABLE_ONEDNN_OPTS"]


def pytest_configure(config):
    """One JAX compilation cache for the session, shared by the test
    processes and every JAX subprocess they start. On this CPU, XLA spends
    most of a small JAX run compiling (about 1.3 s for each new weight
    shape's initializer alone), and the tests build the same networks many
    times. A user's own JAX_COMPILATION_CACHE_DIR is kept."""
    if hasattr(config, "workerinput") or "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return  # an xdist worker inherits the controller's
    folder = tempfile.mkdtemp(prefix="keras-resnet-jax-cache-")
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_DATA_DIR = os.environ.get(
    "CIFAR10_DIR",
    os.path.join(REPO, "..", "shared", "cifar10", "cifar-10-batches-py"),
)


# A run's history.csv as train.py writes it: no validation split, so its
# val_ columns hold "NA".
HISTORY = """epoch,accuracy,images_per_sec,learning_rate,loss,val_accuracy,val_loss
0,0.10,120.5,0.07,2.48,NA,NA
1,0.12,1400.1,0.075,2.38,NA,NA
2,0.15,1500.3,0.01,2.30,NA,NA
"""


def write_fake_cifar(folder, per_batch=20, test_count=20, seed=0):
    """Writes a tiny python-version CIFAR-10 folder (same keys and types)."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)

    def dump(name, count, label):
        batch = {
            b"batch_label": label,
            b"labels": [int(v) for v in rng.integers(0, 10, count)],
            b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(count)],
        }
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(batch, f, protocol=2)

    for i in range(1, 6):
        dump(f"data_batch_{i}", per_batch, f"training batch {i} of 5".encode())
    dump("test_batch", test_count, b"testing batch 1 of 1")
    meta = {
        b"label_names": [n.encode() for n in (
            "airplane automobile bird cat deer dog frog horse ship truck".split())],
        b"num_cases_per_batch": per_batch,
        b"num_vis": 3072,
    }
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return folder


@pytest.fixture(autouse=True)
def keep_environment():
    """Restores `os.environ` after each test: a command run in this process
    (`bench.main`, `tune.main`) sets variables such as
    `TF_ENABLE_ONEDNN_OPTS` that must not reach later tests' subprocesses."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def fake_cifar(tmp_path):
    return write_fake_cifar(str(tmp_path / "cifar"))


@pytest.fixture(scope="session")
def real_data_dir():
    if not os.path.isfile(os.path.join(REAL_DATA_DIR, "data_batch_1")):
        pytest.fail(
            f"The real CIFAR-10 folder is missing at {REAL_DATA_DIR}; set "
            "CIFAR10_DIR to a python-version CIFAR-10 folder."
        )
    return REAL_DATA_DIR


@pytest.fixture(scope="session")
def real_cifar(real_data_dir):
    from keras_resnet.data import load_cifar10

    return load_cifar10(real_data_dir)


def run_python(args, cwd=REPO, env=None, timeout=600, reader_gone=False):
    """Runs `python args...` in a fresh process; returns CompletedProcess.
    `env` adds variables; a variable given as None is removed. `reader_gone`:
    stdout goes into a pipe whose reader has ended, as in `... | head` once
    `head` has its lines (its `stdout` is then None)."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    full_env.update(env or {})
    full_env = {name: value for name, value in full_env.items() if value is not None}
    streams, write_end = {"capture_output": True}, None
    if reader_gone:
        read_end, write_end = os.pipe()
        os.close(read_end)
        streams = {"stdout": write_end, "stderr": subprocess.PIPE}
    try:
        return subprocess.run([sys.executable, *args], cwd=cwd, env=full_env, text=True,
                              timeout=timeout, **streams)
    finally:
        if write_end is not None:
            os.close(write_end)


def call_main(main, argv, capsys):
    """A command's `main(argv)` run in this process, which has TensorFlow
    loaded already (a fresh process spends ~10 s importing it): returns the
    exit status, as returned or as argparse's `SystemExit` carries it, and
    the captured stdout and stderr."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_train_main(argv, capsys):
    """`python train.py argv...` through `call_main`."""
    import train

    return call_main(train.main, argv, capsys)


def train_py_config(*argv):
    """The `TrainConfig` that `python train.py argv...` would train with."""
    import train

    return train.config_from_args(train.build_parser().parse_args(list(argv)))


def tiny_model_and_batch():
    """A tiny seed-layout network compiled with SGD, and 16 random images
    labelled one class after another: for tests of callbacks."""
    from keras_resnet import build_model

    model = build_model("seed", stage_filters=(8, 8, 8, 8))
    model.compile("sgd", "categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    y = np.eye(10, dtype="float32")[np.arange(16) % 10]
    return model, x, y


def poison_logits_at(epoch):
    """A callback that fills the `logits` kernel with NaN as 0-based
    `epoch` begins, so that its first step's loss is NaN."""
    import keras

    class PoisonLogits(keras.callbacks.Callback):
        def on_epoch_begin(self, current, logs=None):
            if current == epoch:
                kernel = self.model.get_layer("logits").kernel
                kernel.assign(np.full(kernel.shape, np.nan, "float32"))

    return PoisonLogits()


@pytest.fixture
def lost_ctrl_c_after_the_first_epoch():
    """`make(ended)`: a callback that, as the first epoch ends, sends this
    process a SIGINT and drops the `KeyboardInterrupt`, as Python does with
    one raised in a garbage-collection callback (JAX has one); each epoch it
    ends is appended to the list `ended`.

    For the test's length SIGINT raises `KeyboardInterrupt` as in a
    terminal, also where the tests run as a background job (`nohup pytest
    &`), which starts with SIGINT ignored: the callback's SIGINT was lost
    there, and the test failed."""
    import signal
    import time

    import keras

    def make(ended):
        def end(epoch, logs):
            if epoch == 0:
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.5)  # the handler runs here
                except KeyboardInterrupt:
                    pass  # as Python's gc drops it
            ended.append(epoch)

        return keras.callbacks.LambdaCallback(on_epoch_end=end)

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield make
    signal.signal(signal.SIGINT, before)


@pytest.fixture
def folder_held_by_another_process():
    """`hold(path)`: another process holds the folder `path` until the test ends."""
    holders = []

    def hold(path):
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sys; from keras_resnet.folder_lock import hold_folder; "
             "print(hold_folder(sys.argv[1]), flush=True); sys.stdin.read()", str(path)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        holders.append(holder)
        assert holder.stdout.readline().strip() == "True"

    yield hold
    for holder in holders:
        holder.communicate("", timeout=30)  # its end releases the folder
