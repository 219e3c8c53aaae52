"""Throughput benchmarks: `python -m keras_resnet.bench`.

```
python -m keras_resnet.bench --preset seed --batch-size 128 --data-dir DIR
KERAS_BACKEND=jax python -m keras_resnet.bench --steps 20 --repeats 5
```

Five figures, in images per second, each the median of `--repeats` timed
repetitions after an untimed warm-up (tracing, compilation, first batches):

- `train_images_per_sec_synthetic`: `fit` on one fixed batch held in
  memory, fed at every step: the model and optimizer alone, no input
  pipeline.
- `train_images_per_sec_pipeline`: `fit` on real CIFAR-10 through the
  project's training input (`training.fit_inputs`: the `tf.data` pipeline
  with host augmentation, or device augmentation without TensorFlow).

Both are timed in windows of `--steps` steps inside one `fit`, after a
first window of warm-up.
- `pipeline_images_per_sec`: the `tf.data` training pipeline alone
  (shuffle, gather, augment), iterated without a model.
- `serving_images_per_sec_b1`, `serving_images_per_sec_b256`: the exported
  SavedModel's `serving_default` (`tf.saved_model.load`), one image and 256
  images per call, results fetched each call. Exported on TensorFlow, from
  another backend through a TensorFlow subprocess; `null` without TensorFlow.

Ends with one JSON line: these figures, every repetition's figure (`runs`),
and what was measured: backend, device, `TF_ENABLE_ONEDNN_OPTS` (TensorFlow
only), preset, batch size, precision.
"""

import dataclasses
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

from keras_resnet import cli
from keras_resnet.presets import IMAGE_SHAPE

# Serving calls per timed repetition, per training step of `--steps`.
SERVING_B1_CALLS_PER_STEP = 10
SERVING_B256_STEPS_PER_CALL = 5
# The input pipeline alone is fast: time it over at least this many batches.
PIPELINE_MIN_STEPS = 50
# `(1 + --repeats) * --steps` above this: Keras lists every step's index up
# front (a MemoryError traceback from inside `fit` near 10**8).
MAX_TOTAL_STEPS = 10_000_000


_START = time.perf_counter()


def _log(message):
    """Progress on stderr, so that stdout ends with the JSON line alone."""
    elapsed = time.perf_counter() - _START
    print(f"bench [{elapsed:6.1f}s]: {message}", file=sys.stderr, flush=True)


def _median(rates):
    return round(statistics.median(rates), 1) if rates else None


def describe_device():
    """The accelerator the backend computes on, or the CPU, in words."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                name = tf.config.experimental.get_device_details(gpus[0]).get(
                    "device_name", gpus[0].name
                )
                return f"GPU: {name} (x{len(gpus)})"
        elif backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform != "cpu":
                return f"{device.platform.upper()}: {device.device_kind} (x{jax.device_count()})"
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return f"GPU: {torch.cuda.get_device_name(0)}"
    except Exception:  # a description must never stop the benchmark
        pass
    return describe_cpu()


def describe_cpu():
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return f"CPU: {model} ({cores} cores)"


def _timed_fit(trainer, batch_size, steps, repeats, epochs, **fit_kwargs):
    """Runs `fit` for `(1 + repeats) * steps` steps and times each window of
    `steps` steps after the first (the warm-up: tracing, compilation,
    pipeline start); images/s per window.

    Windows are timed inside `fit`, so the figure is the steady state of
    `fit`'s asynchronous loop, as in training, not that of separate calls.
    """
    import keras

    total = (1 + repeats) * steps

    class StepClock(keras.callbacks.Callback):
        # Not `async_safe`: Keras fetches each step's logs before calling
        # back, so the time is taken when the step has finished.
        def on_train_begin(self, logs=None):
            self.times = []

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())
            if len(self.times) >= total:
                self.model.stop_training = True

    clock = StepClock()
    trainer.fit(epochs=epochs, callbacks=[clock], verbose=0, **fit_kwargs)
    ends = clock.times[steps - 1 : total : steps]  # the end of each window
    return [
        steps * batch_size / (later - earlier)
        for earlier, later in zip(ends, ends[1:])
    ]


def bench_synthetic_training(config, steps, repeats):
    """`fit` on one fixed random batch held in memory, fed again at every
    step: the model and optimizer alone, no input pipeline. Returns the
    images/s of each repetition and the model."""
    import keras

    from keras_resnet.data import one_hot
    from keras_resnet.training import build_network
    from keras_resnet.training import compile_model

    model = compile_model(build_network(config), config, steps)
    rng = np.random.default_rng(config.seed)
    x = rng.integers(0, 256, (config.batch_size, *IMAGE_SHAPE)).astype("float32")
    y = one_hot(rng.integers(0, 10, config.batch_size))

    class SameBatch(keras.utils.PyDataset):
        def __len__(self):
            return (1 + repeats) * steps

        def __getitem__(self, index):
            return x, y

    rates = _timed_fit(model, config.batch_size, steps, repeats, epochs=1, x=SameBatch())
    return rates, model


def bench_pipeline_training(config, x, y, steps, repeats):
    """`fit` through the project's training input (`training.fit_inputs`)
    on the whole training set, for as many epochs as the steps need;
    images/s per repetition (see `_timed_fit`)."""
    from keras_resnet.training import build_network
    from keras_resnet.training import compile_model
    from keras_resnet.training import fit_inputs
    from keras_resnet.training import run_globals

    with run_globals():  # the training wrapper float32, as train.py's
        trainer, steps_per_epoch, kwargs = fit_inputs(
            build_network(config), config, (x, y), None
        )
        compile_model(trainer, config, steps_per_epoch)
        epochs = math.ceil((1 + repeats) * steps / steps_per_epoch)
        return _timed_fit(trainer, config.batch_size, steps, repeats, epochs, **kwargs)


def bench_input_pipeline(config, x, y, steps, repeats):
    """Iterates the training `tf.data` pipeline (`training.host_pipeline`)
    over `max(steps, PIPELINE_MIN_STEPS)` batches, at most an epoch's, one
    pass per repetition after a warm-up pass; images/s per repetition."""
    from keras_resnet.training import host_pipeline

    steps = min(max(steps, PIPELINE_MIN_STEPS), len(x) // config.batch_size)
    count = steps * config.batch_size
    dataset = host_pipeline(config, x[:count], y[:count]).take(steps)  # one epoch

    def one_pass():
        images = 0
        for batch, _ in dataset:
            images += int(batch.shape[0])
        return images

    one_pass()  # warm-up: tracing, first shuffle
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        images = one_pass()
        rates.append(images / (time.perf_counter() - start))
    return rates


def export_for_serving(model, config, class_names, folder):
    """Exports `model` into `folder` as the project does after training
    (`training.export_model`: in-process on TensorFlow, else a TensorFlow
    subprocess). Returns the SavedModel path, or `None` without TensorFlow
    or if the export fails (the training figures stand)."""
    from keras_resnet.training import export_model

    if importlib.util.find_spec("tensorflow") is None:
        # `export_model` would print its advice to stdout, before the JSON
        # line, naming a model in a folder deleted as the benchmark ends.
        _log("TensorFlow is not installed: no SavedModel, the serving figures are null")
        return None
    from keras_resnet.export import ExportError

    model.save(os.path.join(folder, "model.keras"))  # the subprocess reads it
    config = dataclasses.replace(config, export_dir=folder, model_name="bench")
    try:
        return export_model(model, folder, config, class_names)
    except ExportError as e:  # its "Rerun:" names a model deleted as the benchmark ends
        _log(f"the SavedModel export failed ({e.reason or e}): the serving figures are null")
        return None


def bench_serving(path, batch_size, calls, repeats, seed=0):
    """`serving_default` of a SavedModel on one fixed batch, `calls` calls per
    repetition after two warm-up calls; images/s per repetition."""
    from keras_resnet.classifier import SavedModelClassifier

    classifier = SavedModelClassifier(path)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch_size, *IMAGE_SHAPE)).astype("float32")
    images = classifier._tf.constant(images)
    for _ in range(2):
        classifier(images)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            classifier(images)  # fetches the probabilities: waits for them
        rates.append(calls * batch_size / (time.perf_counter() - start))
    return rates


def run_benchmarks(config, steps=10, repeats=3):
    """Runs every benchmark; returns the JSON-ready results.

    Args:
        config: a `config.TrainConfig` (preset, batch size, precision, data
            folder, jit, seed; the rest is unused).
        steps: training steps per timed repetition.
        repeats: timed repetitions of each benchmark.

    Raises:
        data.DataError: CIFAR-10 cannot be loaded.
        config.ConfigError: a batch larger than the training set.
    """
    import keras

    from keras_resnet.data import load_cifar10
    from keras_resnet.training import check_batch_fits
    from keras_resnet.training import resolve_augment_on
    from keras_resnet.training import resolve_jit_compile

    started = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cifar = load_cifar10(config.data_dir)
    check_batch_fits(config, len(cifar.x_train))
    keras.utils.set_random_seed(config.seed)
    augment_on = resolve_augment_on(config)
    runs = {}

    _log(f"synthetic training: {1 + repeats} x {steps} steps of {config.batch_size} "
         "(the first window warms up)")
    runs["train_images_per_sec_synthetic"], model = bench_synthetic_training(
        config, steps, repeats
    )
    _log(f"training through the {augment_on}-augmented input: {1 + repeats} x {steps} steps "
         "(the first window warms up)")
    runs["train_images_per_sec_pipeline"] = bench_pipeline_training(
        config, cifar.x_train, cifar.y_train, steps, repeats
    )
    if augment_on == "host":
        _log("tf.data input pipeline alone")
        runs["pipeline_images_per_sec"] = bench_input_pipeline(
            config, cifar.x_train, cifar.y_train, steps, repeats
        )
    else:
        runs["pipeline_images_per_sec"] = []  # no tf.data without TensorFlow

    with tempfile.TemporaryDirectory(prefix="keras-resnet-bench-") as folder:
        _log("exporting the SavedModel")
        path = export_for_serving(model, config, cifar.class_names, folder)
        for batch_size, calls in (
            (1, SERVING_B1_CALLS_PER_STEP * steps),
            (256, math.ceil(steps / SERVING_B256_STEPS_PER_CALL)),
        ):
            key = f"serving_images_per_sec_b{batch_size}"
            if path is None:
                runs[key] = []
                continue
            _log(f"serving, batch {batch_size}: {repeats} x {calls} calls")
            runs[key] = bench_serving(path, batch_size, calls, repeats, config.seed)

    _log("done")
    result = {name: _median(rates) for name, rates in runs.items()}
    backend = keras.backend.backend()
    result.update(
        backend=backend,
        device=describe_device(),
        # Whether TensorFlow ran its oneDNN CPU kernels (see
        # `config.prepare_environment`): 4 to 6 times the training rate on
        # an AVX2 CPU.
        tf_enable_onednn_opts=(os.environ.get("TF_ENABLE_ONEDNN_OPTS")
                               if backend == "tensorflow" else None),
        preset=config.preset,
        model_overrides=config.model_overrides(),  # --stage-filters / --stage-blocks
        params=int(model.count_params()),
        batch_size=config.batch_size,
        # The input pipeline's augmentation, from the preset's recipe.
        crop_padding=config.crop_padding,
        flip=config.flip,
        cutout=config.cutout,
        precision=config.precision,
        jit_compile=bool(resolve_jit_compile(config)),
        augment_on=augment_on,
        steps=steps,
        repeats=repeats,
        load_average_1min=None if load is None else round(load, 2),
        seconds=round(time.perf_counter() - started, 1),
        runs={name: [round(r, 1) for r in rates] for name, rates in runs.items()},
    )
    return result


# --------------------------------------------------------------------------
# The command line.


def build_parser():
    from keras_resnet.config import JIT_CHOICES
    from keras_resnet.config import PRECISIONS
    from keras_resnet.presets import PRESETS

    p = cli.ArgumentParser(
        prog="python -m keras_resnet.bench",
        description="Measure training, input-pipeline and serving throughput.",
        trains=True,
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="seed",
                   help="network and recipe (default seed)")
    p.add_argument("--stage-filters", type=cli.positive_int_list,
                   help="widths per stage instead of the preset's, e.g. 8,16,16,16 (a quick run)")
    p.add_argument("--stage-blocks", type=cli.positive_int_list,
                   help="blocks per stage instead of the preset's, e.g. 1,1,1,1")
    p.add_argument("--batch-size", type=cli.positive_int,
                   help="default: the preset's (seed 128, fast 512, fast-cpu 256, best 512)")
    p.add_argument("--precision", choices=PRECISIONS, default="float32", help="default float32")
    p.add_argument("--jit-compile", choices=JIT_CHOICES, default="auto",
                   help="XLA: auto (the default: GPU/JAX on, TF-CPU off)")
    p.add_argument("--steps", type=cli.positive_int, default=10,
                   help="training steps per timed repetition (default 10)")
    p.add_argument("--repeats", type=cli.positive_int, default=3,
                   help="timed repetitions; the median is reported (default 3)")
    p.add_argument("--data-dir", type=cli.path, help="python-version CIFAR-10 folder (default $CIFAR10_DIR, else tfds)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the weights, the synthetic batch and the augmentation (default 0)")
    return p


def config_from_args(args):
    """The benchmark's `TrainConfig`: the preset's recipe, as `train.py`
    starts from it (its batch size, crop and flips are what the input
    pipeline is timed with), under the flags given."""
    from keras_resnet.config import TrainConfig

    flags = dict(preset=args.preset, stage_filters=args.stage_filters,
                 stage_blocks=args.stage_blocks, batch_size=args.batch_size,
                 precision=args.precision, jit_compile=args.jit_compile,
                 data_dir=args.data_dir, seed=args.seed)
    given = {name: value for name, value in flags.items() if value is not None}
    # No train.py export (`--export-dir`, `--model-name`, checked by
    # `validate`): bench exports into a temporary folder of its own
    # (`export_for_serving`).
    return TrainConfig.from_preset(**given, epochs=1, export=False)


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    from keras_resnet.config import ConfigError
    from keras_resnet.config import blame_environment
    from keras_resnet.config import prepare_environment
    from keras_resnet.data import DATA_DIR_ENV
    from keras_resnet.data import DataError

    if (1 + args.repeats) * args.steps > MAX_TOTAL_STEPS:
        print(f"python -m keras_resnet.bench: error: (1 + --repeats) x --steps must be at most "
              f"{MAX_TOTAL_STEPS:,}, got (1 + {args.repeats}) x {args.steps}.", file=sys.stderr)
        return 2
    from_environment = {}
    try:
        config = config_from_args(args)
        if config.data_dir is None and os.environ.get(DATA_DIR_ENV):
            # Checked with the flags, before Keras loads, and named as the
            # variable the user may not know is set (as train.py does).
            config.data_dir = os.path.expanduser(os.environ[DATA_DIR_ENV])
            from_environment = {"data_dir": DATA_DIR_ENV}
        config.validate()
        prepare_environment(config)
        config.check_model()
        result = run_benchmarks(config, steps=args.steps, repeats=args.repeats)
    except (ConfigError, DataError) as e:
        print(f"python -m keras_resnet.bench: error: {blame_environment(str(e), from_environment)}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # else Ctrl-C ends in a traceback through TensorFlow
        print("\nInterrupted before the figures were printed; nothing was written (the "
              "export's temporary folder is deleted).", file=sys.stderr)
        return 130
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_command(main, "python -m keras_resnet.bench"))
