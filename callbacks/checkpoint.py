"""Checkpoints that are never half-written: `AtomicModelCheckpoint`
(`best.keras`, `last.keras`) and the `CheckpointSchedule` that spaces them
and the backup (`backup.py`) out."""

import math
import os
import time
import warnings

import keras

from keras_resnet.atomic import copy_atomically
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
    callback spaces them out (Keras' `save_freq` counts epochs or
    batches, not seconds): due at most every
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


def check_schedule(schedule):
    """Raises `ValueError` unless `schedule` is a `CheckpointSchedule`."""
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
            check_schedule(schedule)
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
            copy_atomically(written, self.filepath)
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
