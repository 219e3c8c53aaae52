"""The backup a stopped run resumes from: `ScheduledBackupAndRestore`
(Keras' `BackupAndRestore`, each file written atomically, on the
`CheckpointSchedule`), and the recovery of a backup a stop interrupted
(`recover_backup`, `roll_back_backup`)."""

import filecmp
import json
import os
import sys

import h5py
import keras

from callbacks.checkpoint import check_schedule
from keras_resnet.atomic import copy_atomically
from keras_resnet.atomic import write_atomically


class BackupMismatch(ValueError):
    """A backup holds the weights of another network than the one training."""


class BackupUnreadable(OSError):
    """Neither the latest backup nor the one before it can be read."""


# The files of Keras' `BackupAndRestore`; `double_checkpoint=True` keeps the
# previous backup beside them, as `{name}.bkp`.
BACKUP_WEIGHTS = "latest.weights.h5"
BACKUP_METADATA = "training_metadata.json"


def _read_every_array(weights_path):
    """Reads every array of the HDF5 file, so that a file cut short fails
    here (with an `OSError`), not as Keras loads it."""
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
        _set_aside(weights)
        print(
            f"The first backup in {backup_dir} stopped before its record of the epoch was "
            "written; its weights are set aside as *.unreadable (deleted with the backup when "
            "the run finishes), and the run starts over.",
            file=sys.stderr,
        )
        return 0
    elif previous_problem is None:
        # The record first: a stop midway leaves the latest backup unreadable still.
        _set_aside(metadata, weights)
        print(
            f"The latest backup in {backup_dir} cannot be read ({problem}); it is set aside "
            "as *.unreadable (deleted with the backup when the run finishes), and the run "
            f"resumes from the one before it, after epoch {previous}.",
            file=sys.stderr,
        )
    else:
        before = ("there is none before it" if not os.path.exists(previous_weights)
                  else f"the one before it cannot be read either ({previous_problem})")
        raise BackupUnreadable(f"the backup in {backup_dir} cannot be read ({problem}); {before}")
    copy_atomically(previous_weights, weights)
    copy_atomically(previous_metadata, metadata)
    return previous


def _set_aside(*paths):
    """Renames each of `paths` that exists to `<path>.unreadable`, which the
    run folder deletes with the backup when the run finishes."""
    for path in paths:
        if os.path.exists(path):
            os.replace(path, path + ".unreadable")


def roll_back_backup(backup_dir, epochs):
    """Takes the backup in `backup_dir` back to the one before it, which
    must hold `epochs` (0: there is none before it), and says so on stderr.

    Several JAX processes train one run, each backing up into its own run
    folder after every epoch; a kill can catch one after its backup of an
    epoch and another before it. They must resume from the same epoch, the
    one every process has: the process ahead goes back one backup (it
    trains that epoch again, on the same data).

    Args:
        backup_dir: str. The folder of the run's `ScheduledBackupAndRestore`.
        epochs: int. The epochs every process's backup holds.

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
        copy_atomically(previous_weights, weights)
        copy_atomically(previous_metadata, metadata)
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
        check_schedule(schedule)
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
                    copy_atomically(path, previous)
        write_atomically(weights, self.model.save_weights)
        record = json.dumps({"epoch": epochs, "batch": 0})
        write_atomically(metadata, lambda partial: _write_text(partial, record))


def _write_text(path, text):
    with open(path, "w") as f:
        f.write(text)
