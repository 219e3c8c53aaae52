import json
import os
import shutil
import sys
import time

import h5py
import keras


class CheckpointSchedule(keras.callbacks.Callback):
    """Decides at each epoch end whether checkpoints are written.

    Writing a checkpoint takes a fraction of a second, about as long as an
    epoch of CIFAR-10 on a GPU (on an H200, half of a 200-epoch run's time
    in `fit` went between epochs while three were written after each). This
    callback spaces them out: due at most every
    `min_seconds`, and always after the last epoch and when training stops
    early. Place it after the callbacks that stop training and before the
    ones that consult `due`. The `AtomicModelCheckpoint`s that share it
    serialize the model once per epoch end: a second one copies the file
    the first wrote (`written`).

    Args:
        min_seconds: float. Least time between two checkpoints; 0 writes
            after every epoch.
    """

    def __init__(self, min_seconds=0.0):
        super().__init__()
        if min_seconds < 0:
            raise ValueError(f"`min_seconds` must be >= 0. Received: {min_seconds!r}")
        self.min_seconds = min_seconds
        self.due = False
        self.written = None  # a file holding the model as this epoch left it

    def on_train_begin(self, logs=None):
        self._last = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        now = time.monotonic()
        last_epoch = epoch + 1 >= self.params.get("epochs", 0) or self.model.stop_training
        self.due = last_epoch or now - self._last >= self.min_seconds
        self.written = None
        if self.due:
            self._last = now


def _partial_path(path):
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, f".partial.{name}")


def save_atomically(model, path):
    """`model.save(path)`, but the file appears all at once.

    Keras writes a `.keras` file in place, so a crash during the write leaves
    a broken file where the last good one was. This writes to a temporary
    name beside `path` and renames it into place (`os.replace`, atomic on one
    file system); a partial file left by an earlier crash is replaced.
    """
    _write_atomically(path, model.save)


def _write_atomically(path, write):
    partial = _partial_path(path)
    if os.path.exists(partial):
        os.remove(partial)
    os.makedirs(os.path.dirname(partial) or ".", exist_ok=True)
    write(partial)
    os.replace(partial, path)


class AtomicModelCheckpoint(keras.callbacks.Callback):
    """Saves the model to one `.keras` file at epoch ends, atomically.

    Without `monitor`, the file holds the latest epoch. With it, the epoch
    with the highest value of that metric: its weights are kept in memory
    when it happens and written when the schedule says checkpoints are due,
    so that spacing checkpoints out never loses the best epoch.

    Args:
        filepath: str. The `.keras` path.
        monitor: str or `None`. A metric to maximize, e.g. `"val_accuracy"`.
        initial_value_threshold: float or `None`. Only values above it count
            (on resume: the best value so far).
        schedule: a `CheckpointSchedule`, or `None` to write every epoch.
    """

    def __init__(self, filepath, monitor=None, initial_value_threshold=None, schedule=None):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.best = initial_value_threshold
        self.schedule = schedule
        self._pending = None  # the best epoch's weights, not yet written

    def on_train_begin(self, logs=None):
        # A partial file left by a crash is junk; it is never renamed into place.
        if os.path.exists(_partial_path(self.filepath)):
            os.remove(_partial_path(self.filepath))

    def on_epoch_end(self, epoch, logs=None):
        due = self.schedule is None or self.schedule.due
        if self.monitor is None:
            if due:
                self._save_current()
            return
        value = (logs or {}).get(self.monitor)
        improved = value is not None and (self.best is None or value > self.best)
        if improved:
            self.best = value
            self._pending = None if due else self.model.get_weights()
            if due:
                self._save_current()
        elif due:
            self.flush()

    def _save_current(self):
        # The model as this epoch left it: serialized once per epoch end,
        # then copied (a 40 MB `.keras` file takes about 0.45 s to write on
        # a 2-core CPU, a small fraction of that to copy).
        written = self.schedule.written if self.schedule is not None else None
        if written is not None and os.path.exists(written):
            _write_atomically(self.filepath, lambda partial: shutil.copyfile(written, partial))
        else:
            save_atomically(self.model, self.filepath)
        if self.schedule is not None:
            self.schedule.written = self.filepath

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


def _backup_epochs(weights_path, metadata_path):
    """The epochs a backup holds, and `None`; or `None` and why it cannot be
    read."""
    try:
        with open(metadata_path) as f:
            epochs = int(json.load(f)["epoch"])
        _read_every_array(weights_path)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"{type(e).__name__}: {e}"
    return epochs, None


def recover_backup(backup_dir):
    """The number of epochs the backup in `backup_dir` holds; 0 if none.

    Keras' `BackupAndRestore` goes back to the previous backup when the
    latest one fails to load, but only once `fit` begins, after the data
    stream has been told where to start. This goes back first (the same
    files are copied over the unreadable ones), and says so on stderr, so
    that the epoch returned is the one whose weights `fit` will restore.

    Raises:
        BackupUnreadable: the latest backup cannot be read, and neither can
            the one before it (or there is none).
    """
    weights = os.path.join(backup_dir, BACKUP_WEIGHTS)
    metadata = os.path.join(backup_dir, BACKUP_METADATA)
    if not os.path.exists(weights) and not os.path.exists(metadata):
        return 0
    epochs, problem = _backup_epochs(weights, metadata)
    if problem is None:
        return epochs
    if not os.path.exists(weights + ".bkp"):
        raise BackupUnreadable(
            f"the backup in {backup_dir} cannot be read ({problem}), and there is no earlier one"
        )
    earlier, earlier_problem = _backup_epochs(weights + ".bkp", metadata + ".bkp")
    if earlier_problem is not None:
        raise BackupUnreadable(
            f"the backup in {backup_dir} cannot be read ({problem}), nor can the one "
            f"before it ({earlier_problem})"
        )
    for path in (weights, metadata):
        _write_atomically(path, lambda partial, path=path: shutil.copyfile(path + ".bkp", partial))
    print(
        f"The latest backup in {backup_dir} cannot be read ({problem}); "
        f"going back to the one before it, after epoch {earlier}.",
        file=sys.stderr,
    )
    return earlier


class ScheduledBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' `BackupAndRestore`, backing up only when `schedule` says
    checkpoints are due (on the epoch's end; other `save_freq` values are not
    supported).

    Args:
        backup_dir: str. As for `BackupAndRestore`.
        schedule: a `CheckpointSchedule`.
        **kwargs: passed to `keras.callbacks.BackupAndRestore`.
    """

    # Its batch ends never save (`save_freq` is "epoch"), so Keras may run
    # them in a worker thread, without making the training loop wait.
    async_safe = True

    def __init__(self, backup_dir, schedule, **kwargs):
        if kwargs.get("save_freq", "epoch") != "epoch":
            raise ValueError("ScheduledBackupAndRestore backs up at epoch ends only.")
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
        if self.schedule.due:
            super().on_epoch_end(epoch, logs)
