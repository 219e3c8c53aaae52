"""`StopOnDivergence`: end a run whose loss became NaN or infinite, keeping the last good checkpoint."""

import math
import threading

import keras


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names epoch and step."""


class StopOnDivergence(keras.callbacks.Callback):
    """Stops training at the end of the epoch whose loss became NaN or
    infinite.

    Unlike Keras' `TerminateOnNaN`, which by default lets the epoch end
    normally (so checkpoint callbacks would save the broken weights), it
    raises `TrainingDiverged` from its own epoch end, naming the epoch and
    the first bad step. `TerminateOnNaN(raise_error=True)` raises a plain
    `RuntimeError` at the bad step instead, but it is not `async_safe`:
    Keras then runs every batch end in the training loop, which waits for
    each step's loss. Placed first among the callbacks, it raises before any
    other epoch-end callback runs: the last good checkpoint and backup stay,
    and the caller exits non-zero.

    It is `async_safe`: where the backend allows (JAX, PyTorch), Keras then
    runs batch ends in a worker thread, so reading each step's loss does not
    make the training loop wait for the accelerator. Keras runs every
    pending batch end before the epoch's end, so no bad step goes unseen.
    It does not stop the epoch early: with Keras 3.15 on JAX, setting
    `stop_training` from a batch end that runs in a worker thread breaks
    `fit` ("Array has been deleted").

    Example:
    ```python
    try:
        model.fit(x, y, epochs=10, callbacks=[StopOnDivergence(), *others])
    except TrainingDiverged as e:
        print(e)  # Training diverged: loss is nan at epoch 3, step 17. ...
    ```
    """

    async_safe = True

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()

    def on_epoch_begin(self, epoch, logs=None):
        self._first_bad = None  # (step, loss), 0-based step

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        with self._lock:  # batch ends may run out of order in worker threads
            if self._first_bad is None or batch < self._first_bad[0]:
                self._first_bad = (batch, float(loss))

    def on_epoch_end(self, epoch, logs=None):
        if self._first_bad is not None:
            step, loss = self._first_bad
            raise TrainingDiverged(
                f"Training diverged: loss is {loss} at epoch {epoch + 1}, step "
                f"{step + 1}. Lower the learning rate; the last good checkpoint is kept."
            )
