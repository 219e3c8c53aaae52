"""`LearningRateLogger`: the learning rate in each epoch's logs, read cheaply on every backend."""

import keras


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current `learning_rate` to each epoch's logs.

    Keras' `fit` logs no learning rate (only `TensorBoard` reads one, into
    its own summaries), so the history and `CSVLogger` would lack it.

    With a schedule, this is the rate of the next step: Keras reads the
    schedule at the optimizer's step count, which the epoch's last step has
    already advanced. Place it before `CSVLogger` and `TensorBoard` so both
    record it.

    Example:
    ```python
    history = model.fit(x, y, epochs=3, callbacks=[LearningRateLogger()])
    history.history["learning_rate"]  # one rate per epoch
    ```
    """

    def on_train_begin(self, logs=None):
        self._read_rate = learning_rate_reader(self.model.optimizer)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self._read_rate()


def learning_rate_reader(optimizer):
    """A function that returns the rate `optimizer` applies at its next
    step, as a float.

    Args:
        optimizer: a built Keras optimizer, its `learning_rate` a float or
            a schedule.

    Returns:
        A function of no arguments that reads the rate anew at each call.

    On JAX the schedule is compiled once. Run eagerly, the `ops.cond` of
    `CosineDecay`'s warmup makes JAX trace and compile a fresh program at
    every call: 60-80 ms per epoch end on a 2-core CPU, against 0.1-0.2 ms
    compiled (docs/results/2026-12-04-amd-cpu).
    """
    if keras.backend.backend() != "jax":
        return lambda: float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    import jax

    variables = optimizer.variables  # `iterations` and a rate variable among them

    @jax.jit
    def rate_given(values):
        # The optimizer's state comes in as arguments: read inside, the
        # variables would be traced in as constants, fixed at the first call.
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            # A fixed rate is a variable, not an array: convert it.
            return keras.ops.convert_to_tensor(optimizer.learning_rate)

    return lambda: float(rate_given([variable.value for variable in variables]))
