import keras


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current `learning_rate` to each epoch's logs.

    With a schedule, this is the rate of the last step of the epoch. Place it
    before `CSVLogger` and `TensorBoard` so both record it.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            rate = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))
