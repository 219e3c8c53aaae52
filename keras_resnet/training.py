"""Training: compile, fit, evaluate, export.

`train(config)` is what `train.py` calls: it trains in a run folder
(`run_folder.py`) and writes the run's metrics there. The pieces before it
(`build_network`, `compile_model`, `fit_inputs`, ...) are shared with the
tuner and the benchmarks.
"""

import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import shlex
import shutil
import sys
import time

import keras
import numpy as np

from callbacks import AtomicModelCheckpoint
from callbacks import BackupMismatch
from callbacks import BackupUnreadable
from callbacks import CheckpointSchedule
from callbacks import EpochTensorBoard
from callbacks import HistoryCSVLogger
from callbacks import LearningRateLogger
from callbacks import ScheduledBackupAndRestore
from callbacks import StopAtAccuracy
from callbacks import StopOnDivergence
from callbacks import StopOnLostInterrupt
from callbacks import ThroughputLogger
from callbacks import TrainingDiverged
from callbacks import recover_backup
from keras_resnet import data as data_lib
from keras_resnet.atomic import write_json_atomic
from keras_resnet.augment import build_augmenter
from keras_resnet.augment import skip_random_draws
from keras_resnet.config import EXPORT_ROOT
from keras_resnet.config import MODEL_NAME
from keras_resnet.config import REFERENCE_BATCH_SIZE
from keras_resnet.config import RUNS_ROOT
from keras_resnet.config import ConfigError
from keras_resnet.config import check_train_config
from keras_resnet.distribution import distribution_scope
from keras_resnet.distribution import every_process_or_none
from keras_resnet.folder_lock import release_folder
from keras_resnet.model import adapt_whitening
from keras_resnet.model import build_model
from keras_resnet.optimizers import LookaheadSGD
from keras_resnet.optimizers import OffsetScaledSGD
from keras_resnet.paths import can_create_folder
from keras_resnet.presets import IMAGE_SHAPE
from keras_resnet.run_folder import agree_on_resumed_epoch
from keras_resnet.run_folder import best_in_history
from keras_resnet.run_folder import default_output_dir
from keras_resnet.run_folder import other_network_fix
from keras_resnet.run_folder import prepare_run_dir
from keras_resnet.run_folder import trim_history

# The most that the first step's weights may still weigh in the weight EMA
# at the end of a run (see `check_ema_horizon`).
EMA_MAX_FIRST_STEP_WEIGHT = 0.01
# How many training images a whitening stem is fitted to.
WHITENING_IMAGES = 5000

# --------------------------------------------------------------------------
# Pieces shared with the tuner and the benchmarks.


def resolve_augment_on(config):
    """Where `config`'s run augments, `"host"` or `"device"`: its
    `augment_on`, else on the host where TensorFlow (`tf.data`) is
    installed and one process trains."""
    if config.augment_on:
        return config.augment_on
    if config.several_processes:  # each process yields its batch shards
        return "device"
    return "host" if importlib.util.find_spec("tensorflow") else "device"


def resolve_jit_compile(config):
    """Whether `config`'s run compiles its step with XLA: its `jit_compile`,
    `"auto"` resolved for the backend and the devices."""
    if config.jit_compile != "auto":
        return config.jit_compile == "on"
    if keras.backend.backend() == "tensorflow":
        # XLA makes convolutions several times slower on the CPU, and it
        # cannot compile the step that `MirroredStrategy` runs on each of
        # several devices (Keras' own "auto" is off under a strategy).
        gpus = keras.distribution.list_devices("gpu")
        return bool(gpus) and not (config.distribute and len(gpus) > 1)
    return keras.backend.backend() == "jax"


@contextlib.contextmanager
def global_dtype_policy(name):
    """Keras' global dtype policy `name` inside, the caller's again after."""
    outer_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(outer_policy)


@contextlib.contextmanager
def run_globals():
    """Keras' global state as a run needs it inside, the caller's again
    after: the dtype policy at float32, so that what a run builds besides
    its network (the training wrapper, its augmenter, the loss scaling
    `compile` adds for `mixed_float16`) is float32 whatever policy the
    caller set (the network takes `config.precision`: `build_network`);
    and the distribution, which `distribution_scope` sets on JAX."""
    outer_distribution = keras.distribution.distribution()
    try:
        with global_dtype_policy("float32"):
            yield
    finally:
        keras.distribution.set_distribution(outer_distribution)


def build_network(config, allow_over_cap=False):
    """`config`'s network (its preset and overrides), its layers under the
    dtype policy of `config.precision`; the global policy is left as it was."""
    check_train_config(config)
    with global_dtype_policy(config.precision):
        return build_model(config.preset, allow_over_cap=allow_over_cap, **config.model_overrides())


def learning_rate_schedule(config, steps_per_epoch):
    """Cosine decay with linear warmup (default) or step decay."""
    peak = config.learning_rate * config.batch_size / REFERENCE_BATCH_SIZE
    total = config.epochs * steps_per_epoch
    if config.schedule == "step":
        boundaries = [int(total * 0.5), int(total * 0.75)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            boundaries, [peak, peak * 0.1, peak * 0.01]
        )
    warmup = int(min(config.warmup_epochs * steps_per_epoch, total // 2))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak * 0.1 if warmup else peak,
        decay_steps=max(total - warmup, 1),
        warmup_target=peak if warmup else None,
        warmup_steps=warmup,
    )


def compile_model(model, config, steps_per_epoch):
    """SGD with Nesterov momentum, decoupled weight decay (not on BN or
    biases), an optional faster rate for batch-norm offsets, an optional
    weight EMA or Lookahead and loss scaling for float16;
    cross-entropy with label smoothing; accuracy."""
    sgd = dict(
        learning_rate=learning_rate_schedule(config, steps_per_epoch),
        momentum=config.momentum,
        nesterov=True,
        weight_decay=config.weight_decay or None,
        offset_lr_scale=config.offset_lr_scale,
    )
    if config.lookahead:
        optimizer = LookaheadSGD(config.epochs * steps_per_epoch, config.lookahead, **sgd)
    else:
        # An exponential moving average of the weights, swapped in when
        # `fit` ends.
        optimizer = OffsetScaledSGD(use_ema=bool(config.ema), ema_momentum=config.ema or 0.99, **sgd)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    if config.precision == "mixed_float16":  # float16 gradients underflow
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=resolve_jit_compile(config),
    )
    # Its slot variables made now: on TensorFlow without a distribution
    # strategy Keras would make them inside the first traced train step,
    # which TensorFlow then traces a second time (seconds per run).
    model.optimizer.build(model.trainable_variables)
    return model


def prepare_data(config):
    """Loads CIFAR-10 and cuts the training subset and validation split.

    Returns:
        `(cifar10, (x_train, y_train), validation or None)`, the `cifar10`
        tuple's `x_train` and `y_train` being those cut: the whole loaded
        set (150 MB) is not kept alive beside them through the run.

    Raises:
        ConfigError: sizes the training set cannot give (`--train-size`,
            `--validation-size`, `--batch-size`) or an `--ema` too slow
            for the run (`check_ema_horizon`).
        data.DataError: the data cannot be loaded.
    """
    cifar = data_lib.load_cifar10(config.data_dir)
    x, y = cifar.x_train, cifar.y_train
    if config.train_size is not None:
        if config.train_size > len(x):
            raise ConfigError(
                f"--train-size {config.train_size} is larger than the "
                f"{len(x)} training images."
            )
        if config.train_size < len(x):  # a copy: a slice would keep the whole array alive
            x, y = x[: config.train_size].copy(), y[: config.train_size].copy()
    validation = None
    if config.validation_size:
        if config.validation_size >= len(x):
            raise ConfigError(
                f"--validation-size {config.validation_size} leaves no training "
                f"images out of {len(x)}."
            )
        x, y, x_val, y_val = data_lib.split_validation(x, y, config.validation_size, config.seed)
        validation = (x_val, y_val)
    check_batch_fits(config, len(x))
    check_ema_horizon(config, config.epochs * data_lib.whole_batches(x, config.batch_size))
    return cifar._replace(x_train=x, y_train=y), (x, y), validation


def check_batch_fits(config, train_images):
    """Refuses a batch larger than the training set, what a validation split
    leaves of it (an epoch would have no whole batch)."""
    if config.batch_size > train_images:
        split = f" that --validation-size {config.validation_size} leaves" if config.validation_size else ""
        raise ConfigError(
            f"--batch-size {config.batch_size} is larger than the {train_images} training images{split}."
        )


def check_ema_horizon(config, total_steps):
    """Refuses a weight EMA too slow for the run.

    Keras' EMA starts from the first step's weights and has no warm-up: after
    `total_steps` they still weigh `ema ** total_steps` in the average (41%
    for 0.999 over 880 steps, which tested at 32% accuracy). At most 1% is
    allowed.
    """
    if not config.ema or config.ema**total_steps <= EMA_MAX_FIRST_STEP_WEIGHT:
        return
    highest = math.floor(EMA_MAX_FIRST_STEP_WEIGHT ** (1 / total_steps) * 1000) / 1000
    if highest**total_steps > EMA_MAX_FIRST_STEP_WEIGHT:  # rounding: 0.1**2 > 0.01
        highest = round(highest - 0.001, 3)
    horizon = round(1 / (1 - config.ema))
    raise ConfigError(
        f"--ema {config.ema} averages over about {horizon} step{'s' * (horizon != 1)}, "
        f"too many for this run's {total_steps}: the final weights would "
        f"still be {config.ema**total_steps:.0%} those of the first step. Use "
        f"--ema {highest} or lower, or train for more steps."
    )


def training_augmenter(config):
    """The augmentation layers of `config`: its crop and cutout, and its
    flips unless they alternate (the input pipeline mirrors those)."""
    return build_augmenter(
        config.crop_padding, cutout=config.cutout, seed=config.seed, flip=config.flip == "random"
    )


def host_pipeline(config, x, y, initial_epoch=0):
    """The `tf.data` training pipeline of `config`, augmenting on the host,
    from epoch `initial_epoch` of its random stream on."""
    augmenter = training_augmenter(config)
    dataset = data_lib.train_dataset(
        x, y, config.batch_size, augmenter, config.seed,
        alternate_flips=config.flip == "alternating", initial_epoch=initial_epoch,
    )
    # After the pipeline is built: on JAX, the augmenter's TensorFlow
    # generators are made as `tf.data` traces it.
    skip_random_draws(augmenter, initial_epoch * data_lib.whole_batches(x, config.batch_size))
    return dataset


def fit_inputs(model, config, train, validation, initial_epoch=0):
    """What to pass to `fit`: `(trainer, steps, kwargs)`, the training
    model, the steps of an epoch and the data arguments.

    Host: a `tf.data` pipeline augments batches on the CPU. Device: shuffled
    batches of numpy arrays (`data.device_batches`), and the augmentation
    layers run as the first layer of the training model, inside the compiled
    step. Both drop the last partial batch of an epoch.

    A run that goes on after `initial_epoch` epochs (resumed, or a tuner's
    continued trial) gets the batches, augmentation and dropout of those
    epochs on, where the uninterrupted run would be, not the first epochs'
    again.
    """
    x, y = train
    steps = data_lib.whole_batches(x, config.batch_size)
    kwargs = {"steps_per_epoch": steps}  # the input is an endless stream of epochs
    if resolve_augment_on(config) == "host":
        kwargs["x"] = host_pipeline(config, x, y, initial_epoch)
        kwargs["shuffle"] = False  # the pipeline shuffles
        trainer = model
        if validation:
            kwargs["validation_data"] = data_lib.eval_dataset(*validation, config.batch_size)
    else:
        trainer = keras.Sequential(
            [keras.Input(IMAGE_SHAPE), training_augmenter(config), model], name="trainer"
        )
        kwargs.update(
            x=data_lib.device_batches(
                x, y, config.batch_size, config.seed, alternate_flips=config.flip == "alternating",
                shard=config.process_id or 0, shards=config.num_processes or 1,
                initial_epoch=initial_epoch,
            ),
            shuffle=False,  # the batches are shuffled already
            validation_batch_size=config.batch_size,  # else Keras' default, 32
        )
        if validation:
            kwargs["validation_data"] = (validation[0].astype("float32"), data_lib.one_hot(validation[1]))
    skip_random_draws(trainer, initial_epoch * steps)  # dropout, device augmentation
    return trainer, steps, kwargs


# --------------------------------------------------------------------------
# The callbacks of a run's `fit`.


def make_callbacks(config, run_dir, monitor):
    """The callbacks of a run's `fit`, once its backup is readied to resume.

    Args:
        config: `TrainConfig`.
        run_dir: str. The run folder.
        monitor: str. The metric the best checkpoint and the target watch.

    Returns:
        `(callbacks, resumed_from)`: the list for `fit`, and the epochs the
        backup holds (0 without one); `history.csv` is cut back to them.

    Raises:
        callbacks.BackupUnreadable: the backup cannot be read, nor the one
            before it (`recover_backup`); or, a process of several, it
            cannot go back to the epoch they all hold (`roll_back_backup`).
    """
    backup_dir = os.path.join(run_dir, "backup")
    history_path = os.path.join(run_dir, "history.csv")
    resumed_from = recover_backup(backup_dir)
    if config.several_processes:
        resumed_from = agree_on_resumed_epoch(backup_dir, resumed_from)
    trim_history(history_path, resumed_from)
    # Order matters: the loggers add to the epoch's logs before
    # `history.csv` and TensorBoard get them, and the backup (the point a
    # rerun resumes from) is written last, once everything else of the epoch
    # is on disk.
    callbacks = [
        StopOnLostInterrupt(),
        StopOnDivergence(),
        ThroughputLogger(config.batch_size),
        LearningRateLogger(),
        HistoryCSVLogger(history_path),
    ]
    if importlib.util.find_spec("tensorflow"):
        callbacks.append(EpochTensorBoard(os.path.join(run_dir, "logs"), write_graph=False))
    if config.target_accuracy:
        callbacks.append(StopAtAccuracy(config.target_accuracy, monitor=monitor))
    # Checkpoints at most every `checkpoint_seconds`, and after the last
    # epoch. Several JAX processes back up every epoch: each one's own clock
    # would otherwise let them back up, and resume from, different epochs.
    schedule = CheckpointSchedule(0 if config.several_processes else config.checkpoint_seconds)
    callbacks += [
        schedule,
        AtomicModelCheckpoint(
            os.path.join(run_dir, "checkpoints", "best.keras"),
            monitor=monitor,
            mode="max",
            # On resume, the best so far is in the history, not in memory.
            initial_value_threshold=best_in_history(history_path, monitor),
            schedule=schedule,
        ),
        AtomicModelCheckpoint(os.path.join(run_dir, "checkpoints", "last.keras"), schedule=schedule),
        # Kept after fit (delete_checkpoint=False) until metrics.json is
        # written, so a failure in evaluation or export resumes, not retrains.
        ScheduledBackupAndRestore(
            backup_dir, schedule, double_checkpoint=True, delete_checkpoint=False
        ),
    ]
    return callbacks, resumed_from


@contextlib.contextmanager
def _cleanup_when_fit_fails(callbacks):
    """What Keras leaves undone as the `fit` inside ends by an exception:
    after a Ctrl-C or a divergence, the best epoch written if it waits in
    memory (`AtomicModelCheckpoint.flush`: no epoch end comes to write it);
    and `history.csv` closed (Keras' `CSVLogger` closes it only as a `fit`
    ends without one, and a close that fails there fails the `fit`). Either
    failing here (a full disk) does not replace the exception that stopped
    `fit`: it is a line on stderr."""
    try:
        yield
    except BaseException as e:
        stopped = isinstance(e, (TrainingDiverged, KeyboardInterrupt))
        for callback in callbacks:
            if stopped and isinstance(callback, AtomicModelCheckpoint):
                finish, failure = callback.flush, f"{callback.filepath} could not be written"
            elif isinstance(callback, HistoryCSVLogger):
                finish, failure = callback.on_train_end, f"{callback.filename} could not be closed"
            else:
                continue
            try:
                finish()
            except Exception as error:
                print(f"warning: {failure}: {error}", file=sys.stderr)
        raise


# --------------------------------------------------------------------------
# The run.


def evaluate_held_out(model, x, y, batch_size, class_names, tta_views="flip", prefix="test"):
    """Loss and accuracy on held-out images, with and without test-time
    augmentation (the views of `evaluate.TTA_TRANSFORMS`), and the accuracy
    of each class, as `{prefix}_loss`, `{prefix}_accuracy`,
    `{prefix}_accuracy_tta` and `per_class_accuracy` (`val_per_class_accuracy`
    for `prefix="val"`)."""
    from keras_resnet.evaluate import TTA_TRANSFORMS
    from keras_resnet.evaluate import evaluate

    metrics, _ = evaluate(model, x, y, class_names=class_names,
                          transforms=TTA_TRANSFORMS[tta_views], batch_size=batch_size)
    per_class = "per_class_accuracy" if prefix == "test" else f"{prefix}_per_class_accuracy"
    return {
        f"{prefix}_loss": metrics["test_loss"],
        f"{prefix}_accuracy": metrics["test_accuracy"],
        f"{prefix}_accuracy_tta": metrics["test_accuracy_tta"],
        per_class: metrics["per_class_accuracy"],
    }


def train(config, overwrite=False):
    """Trains, evaluates and exports one run; returns the metrics dict.

    `config` itself is left as it was: the folder chosen without
    `output_dir` is the metrics' `run_dir` (and a `KeyboardInterrupt`'s
    `run_dir`, once chosen). Keras' global dtype policy and distribution
    are the caller's again after (`run_globals`).

    Raises:
        ConfigError, data.DataError: bad settings or data (nothing written).
        callbacks.TrainingDiverged: the loss became NaN or infinite.
        export.ExportError: the export failed (`model.keras` is saved, and
            the same command resumes the run to evaluate and export it).
    """
    check_train_config(config)
    config.validate()
    config = dataclasses.replace(config)
    with run_globals():
        # First: JAX multi-host must start before any JAX computation.
        scope, device_count = distribution_scope(config)
        try:  # prepare_run_dir holds the folder, also when it then refuses it
            with every_process_or_none(config):
                config.check_model()
                if config.output_dir is None and not can_create_folder(RUNS_ROOT):
                    raise ConfigError(
                        f"{RUNS_ROOT!r}, where runs go without --output-dir, cannot be created or "
                        "written to as a folder: move what is there, or pass --output-dir."
                    )
                cifar, train_data, validation = prepare_data(config)
                if config.output_dir is None:  # just before it is made: runs started together differ
                    config.output_dir = default_output_dir(config)
                run_dir = prepare_run_dir(config, overwrite=overwrite)
            return _train_in(run_dir, config, cifar, train_data, validation, scope, device_count)
        except (KeyboardInterrupt, TrainingDiverged) as e:
            e.run_dir = config.output_dir  # for the line that says where the run is kept
            raise
        finally:
            if config.output_dir is not None:  # None: refused before the default was chosen
                release_folder(config.output_dir)


def _train_in(run_dir, config, cifar, train_data, validation, scope, device_count):
    """`train` once its run folder is ready and held: fit, evaluate, export
    (`scope` and `device_count`: from `distribution_scope`)."""
    monitor = "val_accuracy" if validation else "accuracy"
    try:
        callbacks, resumed_from = make_callbacks(config, run_dir, monitor)
    except BackupUnreadable as e:
        raise ConfigError(
            f"--output-dir {run_dir}: {e}. Pass --overwrite to train it again from the "
            "start (it deletes this run folder, checkpoints/ included), or choose another folder."
        ) from None
    epochs = config.epochs
    if resumed_from:
        print(f"Resuming {run_dir} after epoch {resumed_from}.")
        # A run that stopped at its target and then failed (evaluation,
        # export) trains no further: the backup is of the epoch it stopped.
        reached = best_in_history(os.path.join(run_dir, "history.csv"), monitor)
        if config.target_accuracy and reached is not None and reached >= config.target_accuracy:
            print(f"It reached --target-accuracy {config.target_accuracy} ({monitor} "
                  f"{reached:.4f}): no epoch left to train.")
            epochs = resumed_from

    keras.utils.set_random_seed(config.seed)
    with scope:
        model = build_network(config)
        # A whitening stem is fitted to the training images (a resumed run
        # then restores the saved one).
        adapt_whitening(model, train_data[0][:WHITENING_IMAGES])
        # The backup restores the weights and the optimizer as `fit`
        # begins; the data and random draws go on from its epoch.
        trainer, steps, fit_kwargs = fit_inputs(model, config, train_data, validation, resumed_from)
        compile_model(trainer, config, steps)

    start = time.perf_counter()
    try:
        with _cleanup_when_fit_fails(callbacks):
            history = trainer.fit(epochs=epochs, callbacks=callbacks, **fit_kwargs)
    except BackupMismatch as e:  # a run folder from before layout.json
        raise ConfigError(
            f"--output-dir {run_dir}: {e}. {other_network_fix(run_dir)}"
        ) from None
    train_seconds = time.perf_counter() - start
    # Evaluation runs on whole arrays, off the devices' mesh: with JAX's
    # data parallelism in force, a last partial batch that does not divide
    # over the devices fails, and with several processes Keras would take
    # each one's arrays for shards of a batch, the predictions spanning
    # every process.
    if keras.backend.backend() == "jax" and (config.distribute or config.several_processes):
        keras.distribution.set_distribution(None)

    # The final weights (the EMA's when it is on). A validation run reports
    # on its validation split and leaves the test set alone: the test set
    # never chooses a setting.
    x, y, prefix = (*validation, "val") if validation else (cifar.x_test, cifar.y_test, "test")
    metrics = evaluate_held_out(model, x, y, config.batch_size, cifar.class_names, config.tta_views, prefix)
    model.save(os.path.join(run_dir, "model.keras"))
    export_path = None
    if config.export and (config.process_id or 0) == 0:  # one export per job
        export_path = export_model(model, run_dir, config, cifar.class_names)
    epochs_done = resumed_from + len(history.epoch)
    rates = history.history.get("images_per_sec")  # none after a resume with no epoch left
    metrics.update(
        tta_views=config.tta_views,
        params=model.count_params(),
        epochs=epochs_done,
        # The time in this `fit`: after a resume, the epochs since it alone.
        train_seconds=round(train_seconds, 2),
        resumed_after_epoch=resumed_from or None,
        train_images=len(train_data[0]),
        images_per_sec=round(float(np.median(rates)), 1) if rates else None,
        backend=keras.backend.backend(),
        devices=device_count,
        augment_on=resolve_augment_on(config),
        run_dir=run_dir,
        export_path=export_path,
    )
    write_json_atomic(os.path.join(run_dir, "metrics.json"), metrics)
    shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)  # finished
    return metrics


def export_model(model, run_dir, config, class_names):
    """Exports on TensorFlow; from another backend through a TF subprocess.

    Returns:
        The version folder exported, or `None` where TensorFlow is not
        installed (the command that exports it is printed).

    Raises:
        ValueError, export.ExportError: as `export.export_saved_model`; the
            subprocess failing is an `ExportError` naming its last line.
    """
    if keras.backend.backend() == "tensorflow":
        from keras_resnet.export import export_saved_model

        return export_saved_model(model, config.export_dir, config.model_name, class_names)
    # The data folder's batches.meta names the classes again in the export.
    folder = data_lib.python_folder(config.data_dir)
    data_dir = ["--data-dir", os.path.abspath(folder)] if folder else []
    # Where the run exports: without the flags, the command would add a
    # version to saved_models/keras_resnet, perhaps another model's.
    where = [*(["--export-dir", config.export_dir] if config.export_dir != EXPORT_ROOT else []),
             *(["--model-name", config.model_name] if config.model_name != MODEL_NAME else [])]
    command = shlex.join(["python", "-m", "keras_resnet.export", f"{run_dir}/model.keras", *where,
                          *data_dir])
    if not importlib.util.find_spec("tensorflow"):
        print(f"TensorFlow is not installed: no SavedModel exported. On a machine with it: {command}")
        return None
    import subprocess

    project_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-m", "keras_resnet.export", os.path.abspath(os.path.join(run_dir, "model.keras")),
         "--export-dir", os.path.abspath(config.export_dir), "--model-name", config.model_name, *data_dir],
        env=dict(
            os.environ,
            KERAS_BACKEND="tensorflow",
            PYTHONPATH=os.pathsep.join(filter(None, [project_root, os.environ.get("PYTHONPATH")])),
        ),
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        reason = (out.stderr.strip().splitlines() or ["no output"])[-1]
        from keras_resnet.export import ExportError

        raise ExportError(
            f"The TensorFlow export of {run_dir}/model.keras failed: {reason}. "
            f"Rerun: {command}",
            reason=reason,
        )
    version = os.path.basename(json.loads(out.stdout.strip().splitlines()[-1])["export_path"])
    # Under --export-dir as given, as on TensorFlow (the subprocess was given absolute paths).
    return os.path.join(config.export_dir, config.model_name, version)
