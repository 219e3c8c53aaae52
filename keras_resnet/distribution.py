"""Data parallelism: `--distribute` over the devices of one host
(TensorFlow's `MirroredStrategy`, Keras' `DataParallel` on JAX) and JAX's
several processes (`--num-processes`), which start together, agree on their
settings and stop together when one of them is refused.
"""

import contextlib
import json
import os
import sys
import threading
import zlib

import keras
import numpy as np

from keras_resnet.cli import listen_problem
from keras_resnet.config import ConfigError

# How long JAX waits for every process to reach the coordinator before it
# aborts the process (`jax.distributed.initialize`'s `initialization_timeout`).
JAX_CONNECT_SECONDS = 300


def check_divides_over_devices(flag, value, device_count, why=""):
    if value % device_count:
        raise ConfigError(
            f"{flag} {value} must divide evenly over the {device_count} devices{why}."
        )


def check_coordinator_port(address):
    """Refuses the port of `--coordinator-address` if process 0 cannot serve
    JAX's coordinator on it (on every interface, as JAX binds it): a port
    another program holds was a `JaxRuntimeError` traceback from JAX, or a
    crash (SIGSEGV, in 4 of 8 tries here) with nothing said."""
    port = int(address.rpartition(":")[2])
    if problem := listen_problem(None, port):
        raise ConfigError(
            f"--coordinator-address {address}: process 0 serves the coordinator on port {port}, "
            f"which it cannot listen on ({problem.strerror or problem}); choose a free port, the "
            "same for every process."
        )


@contextlib.contextmanager
def ending_a_wait_jax_would_abort(config):
    """Says that this process waits for the others at the coordinator, and
    ends it in one line, exit 2, shortly before JAX would abort it for
    waiting too long (`JAX_CONNECT_SECONDS`). JAX said nothing for 5
    minutes, then aborted with a C++ stack trace (exit 134): a coordinator
    that never came up (process 0 not started, a wrong address), or fewer
    processes than `--num-processes`."""
    count = config.num_processes
    print(f"Process {config.process_id} of {count}: waiting for all {count} at the coordinator "
          f"{config.coordinator_address} (JAX gives up after {JAX_CONNECT_SECONDS} s).", flush=True)

    def give_up():
        print(
            f"train.py: error: not all {count} processes reached the coordinator at "
            f"{config.coordinator_address} within {JAX_CONNECT_SECONDS} s. Start every "
            f"one, --process-id 0 to {count - 1}, with --num-processes {count} and this "
            "--coordinator-address, the host of process 0 and a port it can be reached on.",
            file=sys.stderr, flush=True,
        )
        os._exit(2)  # JAX's wait cannot be interrupted; nothing is written yet

    # Before JAX's own deadline, which starts a moment later.
    watchdog = threading.Timer(max(JAX_CONNECT_SECONDS - 10, 1), give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield
    finally:
        watchdog.cancel()


def distribution_scope(config):
    """Sets up data parallelism: returns `(scope, device_count)`; build and
    compile the model under the scope.

    One host: `--distribute` uses every visible device, through TensorFlow's
    `MirroredStrategy` or Keras' `DataParallel` on JAX. Several hosts (JAX
    only): each process calls `keras.distribution.initialize` (JAX's
    `jax.distributed.initialize`) with the coordinator address, the process
    count and its id, then trains data-parallel over all their devices.
    """
    backend = keras.backend.backend()
    if config.several_processes:
        if config.process_id == 0:
            check_coordinator_port(config.coordinator_address)
        with ending_a_wait_jax_would_abort(config):
            keras.distribution.initialize(
                job_addresses=config.coordinator_address,
                num_processes=config.num_processes,
                process_id=config.process_id,
            )
        # Before any check a process may fail alone (`--batch-size 63` on one).
        check_same_settings(config)
    elif not config.distribute:
        return contextlib.nullcontext(), 1
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
        if config.jit_compile == "on" and strategy.num_replicas_in_sync > 1:
            # The first step failed: "Trying to access resource
            # .../replica_1/... located in device CPU:1 from device CPU:0".
            raise ConfigError(
                f"--jit-compile on cannot go with --distribute over {strategy.num_replicas_in_sync} "
                "devices on TensorFlow: XLA cannot compile the step that MirroredStrategy runs on "
                "each of them. Pass --jit-compile off (auto is off there), or train on JAX "
                "(KERAS_BACKEND=jax), whose --distribute compiles with XLA."
            )
        # Keras' first step averages a batch's shards, which fails deep in
        # TensorFlow when they differ in size.
        check_divides_over_devices("--batch-size", config.batch_size, strategy.num_replicas_in_sync)
        return strategy.scope(), strategy.num_replicas_in_sync
    if backend == "jax":
        devices = keras.distribution.list_devices()
        check_divides_over_devices("--batch-size", config.batch_size, len(devices))
        # Validation runs on the devices after each epoch, its last partial
        # batch too.
        check_divides_over_devices("--validation-size", config.validation_size, len(devices),
                                   " (its last batch is split between them)")
        # Several processes train on device input, each yielding its own
        # shard of every batch (`data.device_batches`), not Keras' tf.data
        # auto-sharding.
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
        )
        return contextlib.nullcontext(), len(devices)
    raise ConfigError(f"--distribute supports tensorflow and jax, not {backend}.")


def check_same_settings(config):
    """Refuses, in every one of several JAX processes, settings that define
    what is trained (`TrainConfig.identity`) and differ between them: given
    `--epochs 1` and `--epochs 2`, they stepped the shared weights with other
    learning rates, and the one that trained longer waited for the other
    until JAX aborted both. Call it in every process, as JAX starts."""
    from jax.experimental import multihost_utils

    settings = zlib.crc32(json.dumps(config.identity(), sort_keys=True).encode())
    others = np.flatnonzero(multihost_utils.process_allgather(np.uint32(settings)) != settings)
    if others.size:
        raise ConfigError(
            f"process {', '.join(map(str, others))} of the run has other settings than this one "
            f"(process {config.process_id}): give every process the same flags and --config, all "
            "but --process-id and the folders."
        )


@contextlib.contextmanager
def every_process_or_none(config):
    """With several JAX processes, an error in the block in any one of them
    (a `ConfigError`, a `DataError`, or any other: a full disk, a Ctrl-C)
    ends them all: each waits for the others at the block's end. Before, the
    others went on to their first training step and waited there for the one
    refused (the same --output-dir on one machine: "in use"), and JAX
    aborted every process 5 minutes later."""
    if not config.several_processes:
        yield
        return
    from jax.experimental import multihost_utils

    try:
        yield
    except BaseException:  # any: a full disk or a Ctrl-C left the others waiting here
        multihost_utils.process_allgather(np.int32(1))
        raise
    failed = np.flatnonzero(multihost_utils.process_allgather(np.int32(0)))
    if failed.size:
        raise ConfigError(
            f"process {', '.join(map(str, failed))} of the run was refused (its output says why); "
            "this one stops with it. Fix that, then start every process again."
        )
