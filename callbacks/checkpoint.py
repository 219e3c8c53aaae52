"""Checkpoints that are never half-written: `AtomicModelCheckpoint`
(`best.keras`, `last.keras`), `ScheduledBackupAndRestore` (the backup a
stopped run resumes from), the `CheckpointSchedule` that spaces both out,
and the recovery of a backup a stop interrupted."""

import filecmp
import json
import math
import os
import shutil
import sys
import time
import warnings

import h5py
import keras

from keras_resnet.atomic import partial_path
from keras_resnet.atomic import write_atomically
from keras_resnet.checks import check_metric_name
from keras_resnet.checks import check_number
from keras_resnet.checks import check_path


class CheckpointSchedule(keras.callbacks.Callback):
    """Decides at each epoch end whether checkpoints are written.

    Writing a checkpoint takes a fraction of a second, about as long as an
    epoch of CIFAR-10 on a GPU (on an H200, half of a 200-epoch run's time
    in `fit` went between epochs while three were written after each). This
    callback spaces them out: due at most every
    `min_seconds`, and always after the last epoch and when training stops
    early. Place it after the callbacks that stop training and before the
    ones that consult it (`due_at`, which refuses a schedule that has not
    run at that epoch's end); a stop it did not see is written as training
    ends. The `AtomicModelCheckpoint`s that share it serialize the model
    once per epoch end: a second one copies the file the first wrote
    (`written`).

    Args:
        min_seconds: float. Least time between two checkpoints; 0 writes
            after every epoch.
    """

    def __init__(self, min_seconds=0.0):
        super().__init__()
        check_number("min_seconds", min_seconds, 0, math.inf)
        self.min_seconds = min_seconds
        self.due = False
        self.epoch = None  # the epoch whose end `due` is about
        self.written = None  # a file holding the model as this epoch left it

    def on_train_begin(self, logs=None):
        self._last = time.monotonic()
        self.epoch = None

    def on_epoch_end(self, epoch, logs=None):
        now = time.monotonic()
        last_epoch = epoch + 1 >= self.params.get("epochs", 0) or self.model.stop_training
        self.due = last_epoch or now - self._last >= self.min_seconds
        self.epoch = epoch
        self.written = None
        if self.due:
            self._last = now

    def due_at(self, epoch):
        """`due` at the end of `epoch`; a `ValueError` if this schedule has
        not run there (left out of `fit`, or placed after the callback that
        asks): checkpoints would silently never, or late, be written."""
        if self.epoch != epoch:
            raise ValueError(
                f"The CheckpointSchedule has not run at the end of epoch {epoch + 1}: pass it to "
                "`fit` too, before the callbacks that consult it, e.g. "
                "callbacks=[schedule, AtomicModelCheckpoint(..., schedule=schedule)]."
            )
        return self.due


def warn_once(callback, message):
    """A `UserWarning`, once per callback (Keras' callbacks warn each epoch)."""
    if not getattr(callback, "_warned", False):
        callback._warned = True
        warnings.warn(message, stacklevel=3)


def save_atomically(model, path):
    """`model.save(path)`, but the file appears all at once.

    Keras writes a `.keras` file in place, so a crash during the write leaves
    a broken file where the last good one was. This writes to a temporary
    name beside `path` and renames it into place (`os.replace`, atomic on one
    file system); a partial file left by an earlier crash is replaced.
    """
    write_atomically(path, model.save)


def _copy_atomically(source, path):
    write_atomically(path, lambda partial: shutil.copyfile(source, partial))


def _check_schedule(schedule):
    if not isinstance(schedule, CheckpointSchedule):
        raise ValueError(
            "`schedule` must be a CheckpointSchedule, also passed to `fit` before the "
            f"callbacks that consult it. Received: schedule={schedule!r}"
        )


class AtomicModelCheckpoint(keras.callbacks.Callback):
    """Saves the model to one `.keras` file at epoch ends, atomically.

    Without `monitor`, the file holds the latest epoch. With it, the epoch
    with the best value of that metric: its weights are kept in memory
    when it happens and written when the schedule says checkpoints are due,
    so that spacing checkpoints out never loses the best epoch.

    Args:
        filepath: str. The `.keras` path.
        monitor: str or `None`. The metric that picks the best epoch, e.g.
            `"val_accuracy"`.
        initial_value_threshold: float or `None`. Only values better than it
            count (on resume: the best value so far).
        schedule: a `CheckpointSchedule`, or `None` to write every epoch.
        mode: `"auto"`, `"max"` or `"min"`: whether the best value of
            `monitor` is its highest or its lowest. `"auto"` infers it as
            Keras' `ModelCheckpoint` does: lowest for a loss, else the
            compiled metric's own direction (a `ValueError` at the first
            epoch end when the metric has none).

    Example:

    ```python
    schedule = CheckpointSchedule(min_seconds=60)
    model.fit(..., callbacks=[
        schedule,
        AtomicModelCheckpoint("best.keras", monitor="val_accuracy", schedule=schedule),
        AtomicModelCheckpoint("last.keras", schedule=schedule),
    ])
    ```
    """

    def __init__(
        self, filepath, monitor=None, initial_value_threshold=None, schedule=None, mode="auto"
    ):
        super().__init__()
        # Checked here: each of these failed only at the first epoch's end.
        check_path("filepath", filepath)
        if monitor is not None:
            check_metric_name("monitor", monitor)
        if mode not in ("auto", "max", "min"):  # Keras' ModelCheckpoint falls back to "auto"
            raise ValueError(f'`mode` must be "auto", "max" or "min". Received: mode={mode!r}')
        if initial_value_threshold is not None:
            check_number("initial_value_threshold", initial_value_threshold, -math.inf, math.inf)
        if schedule is not None:
            _check_schedule(schedule)
        self.filepath = os.fspath(filepath)
        if not self.filepath.endswith(".keras"):  # else Keras refuses it after an epoch of training
            raise ValueError(
                "`filepath` must end in `.keras`, the format `model.save` writes. "
                f"Received: filepath={self.filepath!r}"
            )
        if "{" in self.filepath:  # else one file of that name, written over at every epoch
            raise ValueError(
                "`filepath` is one file, not a template: for a file per epoch "
                "(\"ckpt-{epoch:02d}.keras\"), use keras.callbacks.ModelCheckpoint. "
                f"Received: filepath={self.filepath!r}"
            )
        self.monitor = monitor
        self.mode = mode
        self._direction = None if mode == "auto" else mode  # inferred in `fit` for "auto"
        self.best = initial_value_threshold
        self.schedule = schedule
        self._pending = None  # the best epoch's weights, not yet written
        self._unsaved = False  # the latest epoch (without `monitor`), not yet written

    def on_train_begin(self, logs=None):
        # A partial file left by a crash is junk; it is never renamed into place.
        if os.path.exists(partial_path(self.filepath)):
            os.remove(partial_path(self.filepath))
        self._unsaved = False
        if self.mode == "auto":
            self._direction = None  # this model's metric may go the other way

    def on_train_end(self, logs=None):
        # A stop the schedule did not see (a callback after it ended
        # training) left the last epoch, or the best, unwritten.
        if self._unsaved:
            self._save_current()
        self.flush()

    def on_epoch_end(self, epoch, logs=None):
        due = self.schedule is None or self.schedule.due_at(epoch)
        if self.monitor is None:
            self._unsaved = not due
            if due:
                self._save_current()
            return
        value = (logs or {}).get(self.monitor)
        if value is None:
            warn_once(self, f"`{self.monitor}` is not in the logs of epoch {epoch + 1}, so "
                             f"{self.filepath} keeps the best epoch of those that log it.")
        if value is not None and self._direction is None:  # at the first epoch that logs it
            self._direction = _best_direction(self.model, self.monitor)
        improved = value is not None and (self.best is None or self._better(value, self.best))
        if improved:
            self.best = value
            self._pending = None if due else self.model.get_weights()
            if due:
                self._save_current()
        elif due:
            self.flush()

    def _better(self, value, best):
        return value > best if self._direction == "max" else value < best

    def _save_current(self):
        # The model as this epoch left it: serialized once per epoch end,
        # then copied (a 40 MB `.keras` file takes about 0.45 s to write on
        # a 2-core CPU, a small fraction of that to copy).
        written = self.schedule.written if self.schedule is not None else None
        if written is not None and os.path.exists(written):
            _copy_atomically(written, self.filepath)
        else:
            save_atomically(self.model, self.filepath)
        if self.schedule is not None:
            self.schedule.written = self.filepath
        self._unsaved = False

    def flush(self):
        """Writes the best epoch's weights if they wait in memory. Call it
        when training ends by an exception (divergence, Ctrl-C): then no
        epoch end comes to write them."""
        if self._pending is None:
            return
        current = self.model.get_weights()
        self.model.set_weights(self._pending)
        try:
            save_atomically(self.model, self.filepath)
        finally:
            self.model.set_weights(current)
        self._pending = None


def metric_direction(model, monitor):
    """`"max"` or `"min"`, as Keras' `ModelCheckpoint(mode="auto")` infers
    it: a loss is minimized, a compiled metric goes its own direction;
    `None` when the metric has none."""
    name = monitor.removeprefix("val_")
    if name.endswith("loss"):
        return "min"

    def compiled(metrics):  # Keras nests the compiled metrics in containers
        for metric in metrics:
            inner = getattr(metric, "metrics", None)
            yield from compiled(inner) if isinstance(inner, list) else (metric,)

    for metric in compiled(model.metrics):
        if metric.name == name and getattr(metric, "_direction", None) in ("up", "down"):
            return "max" if metric._direction == "up" else "min"
    return None


def _best_direction(model, monitor):
    if direction := metric_direction(model, monitor):
        return direction
    raise ValueError(
        f"AtomicModelCheckpoint cannot tell whether a higher or a lower `{monitor}` is "
        f'better: pass mode="max" or mode="min".'
    )


class BackupMismatch(ValueError):
    """A backup holds the weights of another network than the one training."""


class BackupUnreadable(OSError):
    """Neither the latest backup nor the one before it can be read."""


# The files of Keras' `BackupAndRestore`; `double_checkpoint=True` keeps the
# previous backup beside them, as `{name}.bkp`.
BACKUP_WEIGHTS = "latest.weights.h5"
BACKUP_METADATA = "training_metadata.json"


def _read_every_array(weights_path):
    def read(name, item):
        if isinstance(item, h5py.Dataset):
            item[()]  # returns None: visiting goes on

    with h5py.File(weights_path, "r") as f:
        f.visititems(read)


def _read_backup(weights_path, metadata_path):
    """Returns `(epochs, None)`, or `(None, problem)` when the backup
    cannot be read."""
    try:
        with open(metadata_path) as f:
            epochs = int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"{os.path.basename(metadata_path)}: {type(e).__name__}: {e}"
    try:
        _read_every_array(weights_path)
    except OSError as e:
        return None, f"{os.path.basename(weights_path)}: {e}"
    return epochs, None


def _backup_files(backup_dir):
    """The latest backup's weights and record, and the previous one's."""
    weights = os.path.join(backup_dir, BACKUP_WEIGHTS)
    metadata = os.path.join(backup_dir, BACKUP_METADATA)
    return weights, metadata, weights + ".bkp", metadata + ".bkp"


def backup_epochs(backup_dir):
    """The epochs the latest backup in `backup_dir` holds; `None` when it
    cannot be read or there is none."""
    weights, metadata, _, _ = _backup_files(backup_dir)
    return _read_backup(weights, metadata)[0]


def recover_backup(backup_dir):
    """Readies the backup in `backup_dir` for `fit`; returns its epoch.

    Keras' `BackupAndRestore` goes back to the previous backup (`.bkp`)
    when the latest one fails to load, but only as `fit` begins, after the
    data stream has started at the latest one's epoch. This decides first,
    and says so on stderr when it goes back:
    - the latest backup cannot be read (a disk error; a backup written in
      place by an older keras-resnet and cut short): the previous one
      replaces it, the unreadable files set aside as `*.unreadable`;
    - both record the same epoch but their weights differ: the run stopped
      between writing the latest weights and their record, so the weights
      are newer than the epoch says; the previous backup replaces them;
    - the first backup stopped so, leaving weights without a record: the run
      starts over, the weights set aside as `*.unreadable`.
    What is set aside goes with the backup when the run finishes.

    Args:
        backup_dir: str. The folder of the run's `ScheduledBackupAndRestore`.

    Returns:
        The number of epochs that the weights `fit` restores have trained;
        0 without a backup.

    Raises:
        BackupUnreadable: the latest backup cannot be read, and neither can
            the one before it (or there is none).
    """
    weights, metadata, previous_weights, previous_metadata = _backup_files(backup_dir)
    if not any(map(os.path.exists, (weights, metadata, previous_weights, previous_metadata))):
        return 0
    epochs, problem = _read_backup(weights, metadata)
    previous, previous_problem = _read_backup(previous_weights, previous_metadata)
    if problem is None:
        if previous != epochs or filecmp.cmp(weights, previous_weights, shallow=False):
            return epochs
        print(
            f"The latest backup in {backup_dir} stopped between its weights and its record "
            f"of the epoch; resuming from the one before it, after epoch {previous}.",
            file=sys.stderr,
        )
    elif not any(map(os.path.exists, (metadata, previous_weights, previous_metadata))):
        # The first backup stopped between its weights and its record.
        os.replace(weights, weights + ".unreadable")
        print(
            f"The first backup in {backup_dir} stopped before its record of the epoch was "
            f"written; its weights are set aside as *.unreadable (deleted with the backup when "
            f"the run finishes), and the run starts over.",
            file=sys.stderr,
        )
        return 0
    elif previous_problem is None:
        # The record first: a stop midway leaves the latest backup unreadable still.
        for path in (metadata, weights):
            if os.path.exists(path):
                os.replace(path, path + ".unreadable")
        print(
            f"The latest backup in {backup_dir} cannot be read ({problem}); it is set aside "
            f"as *.unreadable (deleted with the backup when the run finishes), and the run "
            f"resumes from the one before it, after epoch {previous}.",
            file=sys.stderr,
        )
    else:
        before = ("there is none before it" if not os.path.exists(previous_weights)
                  else f"the one before it cannot be read either ({previous_problem})")
        raise BackupUnreadable(f"the backup in {backup_dir} cannot be read ({problem}); {before}")
    _copy_atomically(previous_weights, weights)
    _copy_atomically(previous_metadata, metadata)
    return previous


def roll_back_backup(backup_dir, epochs):
    """Takes the backup in `backup_dir` back to the one before it, which
    must hold `epochs` (0: there is none before it), and says so on stderr.

    Several JAX processes train one run, each backing up into its own run
    folder after every epoch; a kill can catch one after its backup of an
    epoch and another before it. They must resume from the same epoch, the
    one every process has: the process ahead goes back one backup (it
    trains that epoch again, on the same data).

    Raises:
        BackupUnreadable: the backup before the latest does not hold
            `epochs`.
    """
    weights, metadata, previous_weights, previous_metadata = _backup_files(backup_dir)
    latest = backup_epochs(backup_dir)
    previous = (_read_backup(previous_weights, previous_metadata)[0]
                if os.path.exists(previous_weights) or os.path.exists(previous_metadata) else 0)
    if previous != epochs:
        raise BackupUnreadable(
            f"the backup in {backup_dir} is after epoch {latest}, and the one before it is not "
            f"after epoch {epochs}, where another process of the run resumes"
        )
    if epochs:
        _copy_atomically(previous_weights, weights)
        _copy_atomically(previous_metadata, metadata)
    else:  # its first backup: there is none before it
        for path in (metadata, weights):  # the record first, as in recover_backup
            os.remove(path)
    print(
        f"The backup in {backup_dir} is after epoch {latest}, but another process of the run "
        f"stopped before backing that epoch up; resuming every process after epoch {epochs}.",
        file=sys.stderr,
    )


class ScheduledBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' `BackupAndRestore`, backing up only when `schedule` says
    checkpoints are due (on the epoch's end; other `save_freq` values are not
    supported), each file written atomically. Call `recover_backup` before
    `fit` to learn the epoch it resumes from.

    Args:
        backup_dir: str. As for `BackupAndRestore`.
        schedule: a `CheckpointSchedule`.
        **kwargs: passed to `keras.callbacks.BackupAndRestore`.

    Example:
    ```python
    schedule = CheckpointSchedule(min_seconds=30)
    done = recover_backup("run/backup")  # epochs the backup holds, 0 if none
    model.fit(x, y, epochs=10, callbacks=[
        schedule, ScheduledBackupAndRestore("run/backup", schedule)])
    ```
    """

    # Its batch ends never save (`save_freq` is "epoch"), so Keras may run
    # them in a worker thread, without making the training loop wait.
    async_safe = True

    def __init__(self, backup_dir, schedule, **kwargs):
        _check_schedule(schedule)
        if kwargs.get("save_freq", "epoch") != "epoch":
            raise ValueError(
                'ScheduledBackupAndRestore backs up at epoch ends only: `save_freq` must be "epoch". '
                f"Received: save_freq={kwargs['save_freq']!r}"
            )
        super().__init__(backup_dir, **kwargs)
        self.schedule = schedule

    def on_train_begin(self, logs=None):
        # Keras' own error lists every weight that did not fit.
        try:
            super().on_train_begin(logs)
        except ValueError as e:
            raise BackupMismatch(
                f"the backup in {self.backup_dir} holds the weights of another network "
                f"(Keras: {str(e).splitlines()[0]})"
            ) from None

    def on_epoch_end(self, epoch, logs=None):
        if self.schedule.due_at(epoch):
            self._back_up(epochs=epoch + 1)

    def _back_up(self, epochs):
        # Keras writes these files in place: a Ctrl-C during `save_weights`
        # (a third of a second for the seed network on a 2-core CPU) leaves
        # a file that h5py opens but Keras cannot load. Here each file
        # appears all at once, and `recover_backup` sorts out a stop between
        # two of them.
        weights, metadata, previous_weights, previous_metadata = _backup_files(self.backup_dir)
        if self.double_checkpoint:
            for path, previous in ((weights, previous_weights), (metadata, previous_metadata)):
                if os.path.exists(path):
                    _copy_atomically(path, previous)
        write_atomically(weights, self.model.save_weights)
        record = json.dumps({"epoch": epochs, "batch": 0})
        write_atomically(metadata, lambda partial: _write_text(partial, record))


def _write_text(path, text):
    with open(path, "w") as f:
        f.write(text)
