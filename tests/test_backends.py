"""One code path on TensorFlow and JAX: training, export across backends,
augmentation on host and device, and data parallelism (one and two hosts)."""

import json
import os
import pickle
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO
from tests.conftest import run_python
from tests.conftest import write_fake_cifar

TINY = ["--stage-filters", "8,8,16,16", "--batch-size", "64"]


@pytest.fixture(scope="module")
def cifar_512(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "cifar"
    return write_fake_cifar(str(folder), per_batch=103, test_count=64)


def test_jax_trains_and_exports_on_tensorflow(real_data_dir, tmp_path):
    # The real images, under class names of the folder's own: the export, made
    # by a TensorFlow subprocess, must name the classes as the run did.
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for name in os.listdir(real_data_dir):
        if name.endswith("_batch") or "_batch_" in name:
            os.symlink(os.path.join(real_data_dir, name), data_dir / name)
    names = [f"class {i}" for i in range(10)]
    with open(data_dir / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in names], b"num_cases_per_batch": 10000}, f)
    run_dir, export_dir = tmp_path / "run", tmp_path / "exports"
    out = run_python(  # --export-dir relative to the working folder, as users give it
        [os.path.join(REPO, "train.py"), "--epochs", "1", "--train-size", "512", *TINY,
         "--data-dir", str(data_dir), "--output-dir", str(run_dir), "--export-dir", "exports",
         "--augment-on", "device"],
        cwd=tmp_path, env={"KERAS_BACKEND": "jax"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    assert metrics["backend"] == "jax" and metrics["augment_on"] == "device"
    # As TensorFlow's own export gives it (it was made absolute).
    assert metrics["export_path"] == os.path.join("exports", "keras_resnet", "1")
    names_file = export_dir / "keras_resnet" / "1" / "assets.extra" / "class_names.txt"
    assert names_file.read_text().splitlines() == names

    # The JAX model's predictions on real test images...
    script = (
        "import numpy as np, sys; from keras_resnet import load_model; "
        "from keras_resnet.data import load_cifar10; "
        "x = load_cifar10(sys.argv[2]).x_test[::250].astype('float32'); "
        "np.save(sys.argv[3], x); np.save(sys.argv[4], load_model(sys.argv[1]).predict(x, verbose=0))"
    )
    images, expected = tmp_path / "x.npy", tmp_path / "p.npy"
    out = run_python(["-c", script, str(run_dir / "model.keras"), real_data_dir, str(images), str(expected)],
                     env={"KERAS_BACKEND": "jax"})
    assert out.returncode == 0, out.stderr[-3000:]
    # ...match the SavedModel's, served by TensorFlow.
    import tensorflow as tf

    served = tf.saved_model.load(str(export_dir / "keras_resnet" / "1")).signatures["serving_default"]
    got = served(images=tf.constant(np.load(images)))["probabilities"].numpy()
    np.testing.assert_allclose(got, np.load(expected), atol=1e-4)


def test_augmentation_same_distribution_on_host_and_device(tmp_path):
    # Run under JAX: "host" is the layer inside tf.data (TensorFlow ops),
    # "device" the same layer on JAX arrays. Each output pixel (4, 4) holds
    # the crop offset, since image[r, c] = (r, c).
    script = r"""
import json, sys
import numpy as np, tensorflow as tf
from keras_resnet.augment import RandomPadCrop, RandomHorizontalFlip
n = 4000
rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
base = np.stack([rows, cols, np.zeros_like(rows)], -1).astype("float32")
x = np.repeat(base[None], n, 0)
result = {}
for place in ("host", "device"):
    crop, flip = RandomPadCrop(4, seed=1), RandomHorizontalFlip(seed=2)
    if place == "host":
        ds = tf.data.Dataset.from_tensor_slices(x).batch(500)
        y = np.concatenate([b.numpy() for b in ds.map(lambda b: crop(b, training=True))])
        z = np.concatenate([b.numpy() for b in ds.map(lambda b: flip(b, training=True))])
    else:
        y = np.asarray(crop(x, training=True))
        z = np.asarray(flip(x, training=True))
    offsets = y[:, 4, 4, :2].astype(int)
    result[place] = {
        "row_freq": np.bincount(offsets[:, 0], minlength=9).tolist(),
        "col_freq": np.bincount(offsets[:, 1], minlength=9).tolist(),
        "flip_rate": float(np.mean(z[:, 0, 0, 1] == 31)),
    }
print(json.dumps(result))
"""
    out = run_python(["-c", script], env={"KERAS_BACKEND": "jax"})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for place in ("host", "device"):
        for key in ("row_freq", "col_freq"):
            freq = np.array(result[place][key]) / 4000
            assert len(freq) == 9 and np.all(np.abs(freq - 1 / 9) < 0.03), (place, key, freq)
        assert abs(result[place]["flip_rate"] - 0.5) < 0.04
    # Same distribution: the offset histograms agree (chi-square, 8 dof, p > 0.001).
    for key in ("row_freq", "col_freq"):
        a, b = np.array(result["host"][key]), np.array(result["device"][key])
        chi2 = np.sum((a - b) ** 2 / (a + b))
        assert chi2 < 26.1, (key, a, b)


def test_a_resumed_host_pipeline_goes_on_with_the_augmentation_on_jax():
    # On JAX, the augmentation layers draw from TensorFlow generators that
    # Keras makes as tf.data traces them; a resumed run must skip those too.
    script = """
import numpy as np
from keras_resnet.config import TrainConfig
from keras_resnet.training import host_pipeline
x = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
y = np.arange(64) % 10
config = TrainConfig(batch_size=16, cutout=8)
whole = np.stack([b.numpy() for b, _ in host_pipeline(config, x, y).take(8)])
resumed = np.stack([b.numpy() for b, _ in host_pipeline(config, x, y, initial_epoch=1).take(4)])
print(np.array_equal(resumed, whole[4:]), np.array_equal(resumed, whole[:4]))
"""
    out = run_python(["-c", script], env={"KERAS_BACKEND": "jax"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["True", "False"]


def test_a_fixed_learning_rate_is_logged_on_jax():
    # A float rate (a variable, not a schedule) came out of the compiled read
    # as the variable itself: a ValueError at the first epoch's end.
    script = """
import json
import keras, numpy as np
from callbacks import LearningRateLogger
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
halve = keras.callbacks.ReduceLROnPlateau("loss", factor=0.5, patience=0, min_delta=10)
history = model.fit(np.zeros((32, 8)), np.zeros(32), epochs=3, verbose=0,
                    callbacks=[halve, LearningRateLogger()])
print(json.dumps(history.history["learning_rate"]))
"""
    out = run_python(["-c", script], env={"KERAS_BACKEND": "jax"})
    assert out.returncode == 0, out.stderr[-3000:]
    # The rate after each epoch, as TensorFlow logs it (halved from the second on).
    assert json.loads(out.stdout.splitlines()[-1]) == pytest.approx([0.05, 0.025, 0.0125])


def test_the_logged_learning_rate_is_compiled_once_on_jax(tmp_path):
    # Read eagerly, a warmup schedule's `ops.cond` made JAX compile a fresh
    # program at every epoch end (60-80 ms here), in the logger and again in
    # Keras' TensorBoard.
    script = """
import importlib.util, json, sys
import jax, keras
from callbacks import EpochTensorBoard, LearningRateLogger
from keras_resnet.config import TrainConfig
from keras_resnet.training import learning_rate_schedule
schedule = learning_rate_schedule(TrainConfig(epochs=5, warmup_epochs=1), steps_per_epoch=10)
model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
model.optimizer.build(model.trainable_variables)
callbacks = [LearningRateLogger()]
if importlib.util.find_spec("tensorflow"):  # as runs add it
    callbacks.append(EpochTensorBoard(sys.argv[1], write_graph=False))
for callback in callbacks:
    callback.set_model(model)
    callback.on_train_begin()
compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **kwargs: compiles.append(event) if "backend_compile" in event else None)
steps, rates = [5, 15, 25, 35, 45], []
for epoch, step in enumerate(steps):  # in warmup, then decaying
    if epoch == 1:
        compiles.clear()  # the first read compiled the schedule
    model.optimizer.iterations.assign(step)
    logs = {}
    for callback in callbacks:
        callback.on_epoch_end(epoch, logs)
    rates.append(logs["learning_rate"])
later = len(compiles)
print(json.dumps({"rates": rates, "expected": [float(schedule(s)) for s in steps], "later": later}))
"""
    out = run_python(["-c", script, str(tmp_path / "logs")], env={"KERAS_BACKEND": "jax"})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["later"] == 0
    assert np.allclose(result["rates"], result["expected"])
    assert result["rates"][0] < result["rates"][1] > result["rates"][2] > result["rates"][4] >= 0


def test_tensorflow_mirrored_strategy_on_two_cpu_devices(cifar_512, tmp_path):
    script = r"""
import dataclasses, json, sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_resnet.config import ConfigError, TrainConfig
from keras_resnet.training import train
def config(batch_size, output_dir):
    # offset_lr_scale: its per-variable lookup runs under the strategy too;
    # lookahead: its restart from the average (at step 5 of 8) too.
    return TrainConfig(epochs=1, batch_size=batch_size, stage_filters=[8, 8, 16, 16], distribute=True,
                       offset_lr_scale=16.0, lookahead=0.95, data_dir=sys.argv[1], output_dir=output_dir,
                       export=False)
try:
    train(config(63, sys.argv[2] + "-odd"))  # shards of 32 and 31 images
except ConfigError as e:
    print(e)
try:  # XLA cannot compile the step of each of several devices
    train(dataclasses.replace(config(64, sys.argv[2] + "-xla"), jit_compile="on"))
except ConfigError as e:
    print(e)
metrics = train(config(64, sys.argv[2]))
print(json.dumps(metrics))
"""
    out = run_python(["-c", script, cifar_512, str(tmp_path / "run")])
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert "--batch-size 63 must divide evenly over the 2 devices." in lines
    assert ("--jit-compile on cannot go with --distribute over 2 devices on TensorFlow: XLA cannot compile "
            "the step that MirroredStrategy runs on each of them. Pass --jit-compile off (auto is off "
            "there), or train on JAX (KERAS_BACKEND=jax), whose --distribute compiles with XLA.") in lines
    assert not (tmp_path / "run-xla").exists()
    metrics = json.loads(lines[-1])
    assert metrics["devices"] == 2 and metrics["backend"] == "tensorflow" and metrics["epochs"] == 1


def test_lookahead_restarts_each_replica_of_a_mirrored_strategy_as_one_device(tmp_path):
    # The run above trains with Lookahead under the strategy; this checks
    # that its restarts happen there (skipped, it trained all the same). In a
    # process of its own: a second MirroredStrategy's step in one process
    # fails on TensorFlow's CPU ("Shape mismatch in the collective instance").
    script = r"""
import json, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from keras_resnet.optimizers import LookaheadSGD
x = np.random.default_rng(0).normal(size=(48, 4)).astype("float32")
y = np.eye(3, dtype="float32")[np.arange(48) % 3]
def dense_weights(strategy, period):  # 6 steps of 8 images: a restart after the 5th
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        model.compile(LookaheadSGD(6, lookahead_momentum=0.9, period=period, learning_rate=0.5),
                      "categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    return np.concatenate([w.ravel() for w in model.get_weights()])
one_device = dense_weights(tf.distribute.get_strategy(), 5)
print(json.dumps({"mirrored": float(np.abs(dense_weights(tf.distribute.MirroredStrategy(), 5) - one_device).max()),
                  "no_restart": float(np.abs(dense_weights(tf.distribute.get_strategy(), 100) - one_device).max())}))
"""
    out = run_python(["-c", script])
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # As one device, and far from a run that never restarts.
    assert result["mirrored"] < 1e-5 and result["no_restart"] > 1e-3, result


def test_jax_data_parallel_on_two_cpu_devices(tmp_path):
    # 65 test images: the last batch of the final evaluation has one image,
    # which two devices cannot split; evaluation runs off their mesh.
    cifar = write_fake_cifar(str(tmp_path / "cifar"), per_batch=103, test_count=65)
    # The whitening stem of fast-cpu is fitted on the 515 training images,
    # whose last predict batch of 15 failed to split over the devices too.
    two_devices = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = run_python(
        ["train.py", "--preset", "fast-cpu", "--epochs", "1", *TINY, "--data-dir", cifar, "--distribute",
         "--output-dir", str(tmp_path / "run"), "--no-export"],
        env=two_devices,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    assert metrics["devices"] == 2 and metrics["backend"] == "jax"
    assert 0 <= metrics["test_accuracy"] <= 1
    # A validation split runs on the devices after every epoch: it must divide.
    out = run_python(
        ["train.py", "--epochs", "1", *TINY, "--data-dir", cifar, "--distribute", "--validation-size", "65",
         "--output-dir", str(tmp_path / "val"), "--no-export"],
        env=two_devices,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "train.py: error: --validation-size 65 must divide evenly over the 2 devices (its last batch is split between them)."
    ]
    assert not (tmp_path / "val").exists()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


JAX_CPU = dict(KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")


def run_two_processes(command, env=None, timeout=120):
    """Runs `command(i)` (a list of arguments after the Python executable)
    for processes 0 and 1 at once, on JAX's CPU; returns the two processes
    and their `(stdout, stderr)`. Both are killed if they outlive `timeout`."""
    processes = [
        subprocess.Popen([sys.executable, *command(i)], cwd=REPO,
                         env=dict(os.environ, **JAX_CPU, **(env(i) if env else {})),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    try:
        return processes, [p.communicate(timeout=timeout) for p in processes]
    finally:
        for p in processes:
            p.kill()


def test_two_jax_processes_end_with_identical_weights(cifar_512, tmp_path):
    address = f"127.0.0.1:{free_port()}"
    processes, outputs = run_two_processes(
        # fast-cpu: its whitening stem is fitted by a predict, whose output
        # spanned both processes' devices, not fetchable by one.
        lambda i: ["train.py", "--preset", "fast-cpu", "--epochs", "1", *TINY, "--data-dir", cifar_512,
                   "--output-dir", str(tmp_path / f"run{i}"), "--no-export"],  # augments on the device
        env=lambda i: dict(KERAS_RESNET_COORDINATOR=address, KERAS_RESNET_NUM_PROCESSES="2",
                           KERAS_RESNET_PROCESS_ID=str(i)),
        timeout=300,
    )
    for p, (stdout, stderr) in zip(processes, outputs):
        assert p.returncode == 0, stderr[-3000:]
        assert json.loads(stdout.strip().splitlines()[-1])["devices"] == 2

    # A .keras file is the same on every backend: read both here.
    from keras_resnet import load_model

    a, b = (load_model(str(tmp_path / f"run{i}" / "model.keras")).get_weights() for i in range(2))
    assert len(a) == len(b) > 10
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_processes_resume_after_the_epoch_that_every_one_backed_up(tmp_path):
    # A kill caught process 0 after its backup of epoch 3 and process 1
    # before it: both must resume after epoch 2.
    from tests.test_checkpoints import back_up_epochs

    backup, _, _ = back_up_epochs(tmp_path / "run0")
    (tmp_path / "run1" / "backup").mkdir(parents=True)
    for name in ("latest.weights.h5", "training_metadata.json"):
        with open(os.path.join(backup, name + ".bkp"), "rb") as f:
            (tmp_path / "run1" / "backup" / name).write_bytes(f.read())
    (tmp_path / "run0" / "history.csv").write_text("epoch,loss\n0,2.3\n1,2.2\n2,2.1\n")
    (tmp_path / "run1" / "history.csv").write_text("epoch,loss\n0,2.3\n1,2.2\n")
    script = (
        "import sys; from keras_resnet import distribution, training; "
        "from keras_resnet.config import TrainConfig; "
        "config = TrainConfig(coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2])); "
        "distribution.distribution_scope(config); "
        "print(training.make_callbacks(config, sys.argv[3], 'accuracy')[1])"
    )
    address = f"127.0.0.1:{free_port()}"
    processes, outputs = run_two_processes(
        lambda i: ["-c", script, address, str(i), str(tmp_path / f"run{i}")])
    for p, (stdout, stderr) in zip(processes, outputs):
        assert p.returncode == 0 and stdout.split()[-1] == "2", stderr[-3000:]  # after JAX's lines
    assert "is after epoch 3, but another process of the run stopped before" in outputs[0][1]
    for run in ("run0", "run1"):
        with open(tmp_path / run / "backup" / "training_metadata.json") as f:
            assert json.load(f)["epoch"] == 2
        assert (tmp_path / run / "history.csv").read_text().splitlines() == ["epoch,loss", "0,2.3", "1,2.2"]


def test_several_processes_augment_on_the_device_and_refuse_host(monkeypatch):
    from keras_resnet.config import ConfigError
    from keras_resnet.config import TrainConfig
    from keras_resnet.training import resolve_augment_on

    monkeypatch.setenv("KERAS_BACKEND", "jax")  # what validate() checks; Keras here stays as loaded
    hosts = dict(num_processes=2, coordinator_address="10.0.0.1:1234", process_id=1)
    TrainConfig(**hosts).validate()
    assert resolve_augment_on(TrainConfig(**hosts)) == "device"
    with pytest.raises(ConfigError, match="--num-processes > 1 shards the training batches on the device"):
        TrainConfig(augment_on="host", **hosts).validate()


def test_a_coordinator_address_jax_cannot_use_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    # JAX raised IndexError for an address without a port; a port out of
    # range it waited 5 minutes for, then aborted the process (exit 134).
    from keras_resnet.config import ConfigError
    from keras_resnet.config import TrainConfig
    from tests.conftest import run_train_main

    monkeypatch.setenv("KERAS_BACKEND", "jax")  # what validate() checks; Keras here stays as loaded
    for address in ("localhost", "127.0.0.1:99999", "127.0.0.1:0", ":::", ":1234", "10.0.0.1:12²", "a:1,b:2"):
        with pytest.raises(ConfigError, match="must be HOST:PORT, process 0's host and a port from 1 to 65535"):
            TrainConfig(num_processes=2, process_id=0, coordinator_address=address).validate()
    for address in ("10.0.0.1:1234", "[::1]:1234", "host-0.cluster:65535"):
        TrainConfig(num_processes=2, process_id=1, coordinator_address=address).validate()
    code, _, err = run_train_main(["--num-processes", "2", "--process-id", "0", "--coordinator-address",
                                   "localhost", "--output-dir", str(tmp_path / "run")], capsys)
    assert code == 2 and err.splitlines() == [
        "train.py: error: --coordinator-address (or $KERAS_RESNET_COORDINATOR) must be HOST:PORT, "
        "process 0's host and a port from 1 to 65535, got 'localhost'."]
    assert not (tmp_path / "run").exists()


def test_a_coordinator_port_in_use_is_one_line(cifar_512, tmp_path):
    # Process 0 serves the coordinator: on a port another program held, JAX
    # raised a traceback ("Failed to start RPC server") or, in 4 of 8 tries,
    # crashed with SIGSEGV and said nothing.
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        held.listen()
        port = held.getsockname()[1]
        out = run_python(
            ["train.py", "--epochs", "1", *TINY, "--data-dir", cifar_512, "--output-dir", str(tmp_path / "run"),
             "--num-processes", "2", "--process-id", "0", "--coordinator-address", f"127.0.0.1:{port}",
             "--no-export"],
            env={"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}, timeout=120,
        )
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.strip().splitlines() == [
        f"train.py: error: --coordinator-address 127.0.0.1:{port}: process 0 serves the coordinator on "
        f"port {port}, which it cannot listen on (Address already in use); choose a free port, the same "
        "for every process."]
    assert not (tmp_path / "run").exists()


def test_a_process_refused_after_the_start_ends_every_process(cifar_512, tmp_path):
    # The same --output-dir for both processes on one machine: the second
    # was refused ("in use"), the first waited for it in its first training
    # step, and JAX aborted both 5 minutes later (exit 134).
    address = f"127.0.0.1:{free_port()}"
    processes, outputs = run_two_processes(
        lambda i: ["train.py", "--epochs", "1", *TINY, "--data-dir", cifar_512, "--no-export",
                   "--output-dir", str(tmp_path / "run"), "--num-processes", "2", "--process-id", str(i),
                   "--coordinator-address", address])
    assert [p.returncode for p in processes] == [2, 2], [err[-2000:] for _, err in outputs]
    last_lines = sorted(err.strip().splitlines()[-1] for _, err in outputs)
    refused = [i for i, (_, err) in enumerate(outputs) if "is in use" in err]
    assert len(refused) == 1
    assert last_lines == sorted([
        f"train.py: error: --output-dir {tmp_path / 'run'} is in use: another training run is writing "
        "it now. Wait for that run to end, or choose another folder.",
        f"train.py: error: process {refused[0]} of the run was refused (its output says why); this one "
        "stops with it. Fix that, then start every process again.",
    ])


def test_a_process_that_fails_otherwise_before_training_ends_every_process(cifar_512, tmp_path):
    # Process 1 fails inside the block where the processes meet with an
    # error other than ConfigError or DataError (a full disk as its run
    # folder is written, a Ctrl-C while the data loads): process 0 waited at
    # the block's end for a process that never came, and process 1 at JAX's
    # shutdown for process 0, until JAX aborted both 5 minutes later.
    address = f"127.0.0.1:{free_port()}"
    script = (
        "import sys, train; from keras_resnet import training\n"
        "def full_disk(config):\n"
        "    raise OSError(28, 'No space left on device')\n"
        "if sys.argv[1] == '1':\n"
        "    training.prepare_data = full_disk\n"
        "sys.exit(train.main(sys.argv[2:]))"
    )
    processes, outputs = run_two_processes(
        lambda i: ["-c", script, str(i), "--epochs", "1", *TINY, "--data-dir", cifar_512, "--no-export",
                   "--output-dir", str(tmp_path / f"run{i}"), "--num-processes", "2", "--process-id", str(i),
                   "--coordinator-address", address])
    assert [p.returncode for p in processes] == [2, 1], [err[-2000:] for _, err in outputs]
    assert outputs[0][1].strip().splitlines()[-1] == (
        "train.py: error: process 1 of the run was refused (its output says why); this one "
        "stops with it. Fix that, then start every process again.")
    assert outputs[1][1].strip().splitlines()[-1] == "OSError: [Errno 28] No space left on device"


def test_a_coordinator_that_never_comes_up_is_one_line(tmp_path):
    # Process 1 of 2, no process 0: JAX said nothing for 5 minutes, then
    # aborted with a C++ stack trace (exit 134). Here JAX's wait is taken to
    # be 15 s, so that the line comes 10 s before it, at 5 s.
    address = f"127.0.0.1:{free_port()}"
    script = (
        "import sys; from keras_resnet import distribution; from keras_resnet.config import TrainConfig; "
        "distribution.JAX_CONNECT_SECONDS = 15; "
        "distribution.distribution_scope(TrainConfig(coordinator_address=sys.argv[1], num_processes=2, process_id=1))"
    )
    out = run_python(["-c", script, address], env={"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}, timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stdout.splitlines() == [
        f"Process 1 of 2: waiting for all 2 at the coordinator {address} (JAX gives up after 15 s)."]
    assert out.stderr.strip().splitlines()[-1] == (
        f"train.py: error: not all 2 processes reached the coordinator at {address} within 15 s. Start "
        "every one, --process-id 0 to 1, with --num-processes 2 and this --coordinator-address, the host "
        "of process 0 and a port it can be reached on.")
    assert "Check failure stack trace" not in out.stderr


@pytest.mark.parametrize("flag, values", [("--epochs", ["1", "2"]), ("--batch-size", ["64", "63"])])
def test_processes_given_other_settings_are_refused_before_anything_is_written(cifar_512, tmp_path, flag,
                                                                              values):
    # --epochs 1 and --epochs 2: the processes stepped the shared weights with
    # other learning rates, and the one that trained on waited for the other
    # until JAX aborted both 5 minutes later (exit 134). --batch-size 63 on
    # one process: it was refused as not dividing over the 2 devices before
    # the processes compared their settings, and the other waited for it at
    # that comparison until JAX aborted both.
    address = f"127.0.0.1:{free_port()}"
    processes, outputs = run_two_processes(
        lambda i: ["train.py", *TINY, flag, values[i], "--data-dir", cifar_512, "--no-export",
                   "--output-dir", str(tmp_path / f"run{i}"), "--num-processes", "2", "--process-id", str(i),
                   "--coordinator-address", address])
    assert [p.returncode for p in processes] == [2, 2], [err[-2000:] for _, err in outputs]
    for i, (_, err) in enumerate(outputs):
        assert err.strip().splitlines()[-1] == (
            f"train.py: error: process {1 - i} of the run has other settings than this one (process {i}): "
            "give every process the same flags and --config, all but --process-id and the folders.")
    assert not os.listdir(tmp_path)
