import time

import keras


class ThroughputLogger(keras.callbacks.Callback):
    """Adds `images_per_sec` (training images per second) to each epoch's logs.

    The time counts the training steps only, not validation. Because it writes
    into the logs, the figure lands in the history, `history.csv` and
    TensorBoard like any metric; place it before those callbacks.

    Args:
        batch_size: int. Images per training step.
    """

    def __init__(self, batch_size):
        super().__init__()
        self.batch_size = batch_size

    def on_epoch_begin(self, epoch, logs=None):
        self._steps = 0
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        self._end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._steps:
            seconds = self._end - self._start
            logs["images_per_sec"] = self._steps * self.batch_size / seconds
