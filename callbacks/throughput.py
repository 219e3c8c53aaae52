"""`ThroughputLogger`: training images per second in each epoch's logs."""

import threading
import time

import keras

from keras_resnet.checks import check_int


class ThroughputLogger(keras.callbacks.Callback):
    """Adds `images_per_sec` (training images per second) to each epoch's logs.

    Keras' `fit` logs no speed; its progress bar only prints time per step.

    The time counts the training steps only, not validation; the first
    epoch's steps include tracing and compiling the train step (on JAX, most
    of that epoch on a small model): read the speed from later epochs
    (`train.py` reports the median over all). Because it writes
    into the logs, the figure lands in the history, `history.csv` and
    TensorBoard like any metric; place it before those callbacks.

    It is `async_safe`: where the backend allows (JAX, PyTorch), Keras runs
    batch ends in a worker thread once the step's results are ready, so the
    clock reads when the last step finished, without making the training
    loop wait for it.

    Args:
        batch_size: int. Images per training step. A smaller last batch
            counts as a whole one: `train.py` drops it, so its figures are
            exact.

    Example:
    ```python
    history = model.fit(x, y, batch_size=128, epochs=3, callbacks=[ThroughputLogger(128)])
    history.history["images_per_sec"]  # one figure per epoch
    ```
    """

    async_safe = True

    def __init__(self, batch_size):
        super().__init__()
        check_int("batch_size", batch_size)
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def on_epoch_begin(self, epoch, logs=None):
        self._steps = 0
        self._start = self._end = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        with self._lock:  # batch ends may run out of order in worker threads
            self._steps = max(self._steps, batch + 1)  # `batch` is 0-based
            self._end = max(self._end, now)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._steps:
            seconds = self._end - self._start
            logs["images_per_sec"] = self._steps * self.batch_size / seconds
