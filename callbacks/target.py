"""`StopAtAccuracy`: stop training once a target accuracy is reached."""

import numbers

import keras

from callbacks.checkpoint import metric_direction
from callbacks.checkpoint import warn_once
from keras_resnet.checks import check_choice
from keras_resnet.checks import check_metric_name


class StopAtAccuracy(keras.callbacks.Callback):
    """Stops training at the end of the first epoch that reaches a target.

    Keras' `EarlyStopping` stops when a metric stops improving; its
    `baseline` stops a run that does not reach a value, not one that does.

    Args:
        target: float in (0, 1]. The accuracy to reach.
        monitor: str. The logged metric to watch. Defaults to
            `"val_accuracy"`.
        verbose: 0 or 1. Whether to print a line when training stops.
            Defaults to `1`.

    Example:

    ```python
    stop = StopAtAccuracy(0.94)
    model.fit(x, y, validation_data=(x_val, y_val), epochs=30, callbacks=[stop])
    stop.stopped_epoch  # the epoch that reached 94% (counted from 1), or None
    ```
    """

    def __init__(self, target, monitor="val_accuracy", verbose=1):
        super().__init__()
        if isinstance(target, bool) or not isinstance(target, numbers.Real) or not 0.0 < target <= 1.0:
            raise ValueError(
                f"`target` must be a number in (0, 1]. Received: target={target!r}"
            )
        check_metric_name("monitor", monitor)
        if monitor.endswith("loss"):  # it starts above any target
            raise ValueError(
                "`monitor` must be an accuracy, which training stops at once it reaches "
                "`target`; for a loss, use keras.callbacks.EarlyStopping. "
                f"Received: monitor={monitor!r}"
            )
        check_choice("verbose", verbose, (0, 1))
        self.target = target
        self.monitor = monitor
        self.verbose = verbose
        self.stopped_epoch = None

    def on_train_begin(self, logs=None):
        self.stopped_epoch = None  # this `fit`'s, as Keras' EarlyStopping

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            warn_once(self, f"`{self.monitor}` is not in the logs of epoch {epoch + 1}: "
                            "training does not stop at the target in epochs that lack it.")
        if value is not None and metric_direction(self.model, self.monitor) == "min":
            raise ValueError(  # `val_mae` of 1.13 ">= 0.5" stopped at once
                f"`monitor` must be a metric that grows as the model improves, such as an "
                f"accuracy: {self.monitor} is lower when better; for it, use "
                f"keras.callbacks.EarlyStopping. Received: monitor={self.monitor!r}"
            )
        if value is not None and value >= self.target:
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True
            if self.verbose:
                print(f"\nReached {self.monitor}={value:.4f} >= {self.target} at "
                      f"epoch {epoch + 1}; stopping.")
