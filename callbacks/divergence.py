import math

import keras


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names epoch and step."""


class StopOnDivergence(keras.callbacks.Callback):
    """Stops at the first batch whose loss is NaN or infinite.

    Unlike Keras' `TerminateOnNaN`, which lets the epoch end (so checkpoint
    callbacks would save the broken weights), it raises `TrainingDiverged`
    at once, naming the epoch and step: no epoch-end callback runs, the last
    good checkpoint and backup stay, and the caller exits non-zero.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(
                f"Training diverged: loss is {float(loss)} at epoch "
                f"{self._epoch + 1}, step {batch + 1}. Lower the learning "
                "rate; the last good checkpoint is kept."
            )
