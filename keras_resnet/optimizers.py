"""SGD as airbench trains: faster batch-norm offsets (`OffsetScaledSGD`) and
Lookahead (`LookaheadSGD`)."""

import keras
from keras import ops

from keras_resnet.checks import check_int
from keras_resnet.checks import check_number
from keras_resnet.layers import PACKAGE

# How the average's momentum grows with the run's progress p in [0, 1]:
# `lookahead_momentum * p ** LOOKAHEAD_RAMP_POWER` per step. Over a period
# of 5 steps that keeps `lookahead_momentum ** 5 * p ** 3` of the average,
# airbench's cubic ramp (Jordan 2024).
LOOKAHEAD_RAMP_POWER = 0.6
# The arguments of Keras' weight EMA that `LookaheadSGD` sets itself.
LOOKAHEAD_OWN_EMA = ("use_ema", "ema_momentum", "ema_overwrite_frequency")


@keras.saving.register_keras_serializable(package=PACKAGE)
class OffsetScaledSGD(keras.optimizers.SGD):
    """SGD whose batch-norm offsets learn `offset_lr_scale` times faster.

    Batch normalization makes a convolution's output blind to the scale of
    its kernel, but not the offset (`beta`) added after it; airbench
    (Jordan 2024) trains those offsets with a 64 times larger learning rate.
    A variable is an offset when its name is `"beta"`, as Keras names the
    offset of `BatchNormalization`. One optimizer rather than Keras'
    `MultiOptimizer` of two SGDs: that one has no `learning_rate` (an
    `AttributeError` where `LearningRateLogger` reads it) and takes no
    `use_ema`, the weight EMA that `LookaheadSGD` builds on.

    Args:
        offset_lr_scale: float. Factor on the learning rate of every `beta`,
            positive. Defaults to `1.0` (plain SGD).
        **kwargs: `keras.optimizers.SGD` arguments.

    Example:
    ```python
    optimizer = OffsetScaledSGD(offset_lr_scale=64.0, learning_rate=0.1, momentum=0.9)
    ```
    """

    def __init__(self, offset_lr_scale=1.0, **kwargs):
        check_number("offset_lr_scale", offset_lr_scale, 0)
        super().__init__(**kwargs)
        # === Config ===
        self.offset_lr_scale = float(offset_lr_scale)

    def build(self, variables):
        super().build(variables)
        # Marked by index: TensorFlow's update step sees the backend's
        # variable, named "beta:0".
        self._is_offset = [variable.name == "beta" for variable in variables]
        self._is_decayed = [
            self.weight_decay is not None and self._use_weight_decay(variable) for variable in variables
        ]

    def _apply_weight_decay(self, variables):
        # Done in `update_step` instead, with the learning rate Keras
        # computes once per step: Keras' own decay reads `learning_rate`
        # once per decayed weight, evaluating the schedule that many times
        # (11 for `fast`; on JAX 0.1-0.3 s more tracing per run on a 2-core
        # CPU, docs/results/2026-12-04-amd-cpu).
        pass

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        if self._is_decayed[index]:  # decoupled, as Keras applies it
            decay = ops.cast(self.weight_decay, variable.dtype)
            rate = ops.cast(learning_rate, variable.dtype)
            self.assign(variable, ops.subtract(variable, ops.multiply(ops.multiply(variable, decay), rate)))
        if self.offset_lr_scale != 1.0 and self._is_offset[index]:
            learning_rate = ops.multiply(learning_rate, self.offset_lr_scale)
        super().update_step(gradient, variable, learning_rate)

    def finalize_variable_values(self, var_list):
        super().finalize_variable_values(var_list)
        if self.use_ema:
            # Keras gives each weight its average's own array. On JAX the
            # next jitted step (an `evaluate`) donates the weights' arrays,
            # which deleted the averages with them: saving the optimizer
            # then failed. Each weight gets a copy.
            for variable in var_list:
                variable.assign(ops.copy(variable))

    def get_config(self):
        config = super().get_config()
        config.update(offset_lr_scale=self.offset_lr_scale)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class LookaheadSGD(OffsetScaledSGD):
    """SGD whose weights restart from their moving average every few steps.

    Lookahead (Zhang et al. 2019), built on Keras' weight EMA
    (`use_ema`, `ema_overwrite_frequency`): the optimizer keeps an
    exponential moving average of the weights and writes it into them every
    `period` steps, and once more when `fit` ends. Unlike Keras' EMA, its
    momentum is not fixed: it starts at 0 and grows to `lookahead_momentum`
    over `total_steps` (see `LOOKAHEAD_RAMP_POWER`), so that early training
    runs at full speed and the averaging only steadies its end.

    Args:
        total_steps: int. The steps of the run, over which the momentum
            ramps up.
        lookahead_momentum: float. The average's momentum per step at the
            end of the run, in [0, 1). Defaults to `0.95`.
        period: int. Steps between two restarts from the average. Defaults
            to `5`.
        **kwargs: `OffsetScaledSGD` arguments, except the EMA ones
            (`use_ema`, `ema_momentum`, `ema_overwrite_frequency`: a
            `ValueError`).

    Example:
    ```python
    optimizer = LookaheadSGD(total_steps=970, learning_rate=0.1, momentum=0.9)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    ```
    """

    def __init__(self, total_steps, lookahead_momentum=0.95, period=5, **kwargs):
        check_int("total_steps", total_steps)
        check_number("lookahead_momentum", lookahead_momentum, 0, 1)
        check_int("period", period)
        lookahead_momentum = float(lookahead_momentum)  # a NumPy float would not serialize
        if given := [name for name in LOOKAHEAD_OWN_EMA if name in kwargs]:
            raise ValueError(
                f"`{given[0]}` is set by LookaheadSGD from `lookahead_momentum` and `period`; "
                f"leave it out. Received: {given[0]}={kwargs[given[0]]!r}"
            )
        super().__init__(
            use_ema=True,
            ema_momentum=lookahead_momentum,
            ema_overwrite_frequency=period,
            **kwargs,
        )
        # === Config ===
        self.total_steps = total_steps
        self.lookahead_momentum = lookahead_momentum
        self.period = period

    def _update_model_variables_moving_average(self, trainable_variables):
        # Keras' own update, with the ramped momentum in place of the fixed
        # one (0 at the first step, as Keras starts the average there).
        progress = ops.minimum(ops.divide(ops.cast(self.iterations, "float32"), self.total_steps), 1.0)
        momentum = self.lookahead_momentum * ops.power(progress, LOOKAHEAD_RAMP_POWER)
        for var, average in zip(trainable_variables, self._model_variables_moving_average):
            if average is not None:
                m = ops.cast(momentum, var.dtype)
                average.assign(ops.add(ops.multiply(m, average), ops.multiply(ops.subtract(1, m), var)))

    def _overwrite_model_variables_with_average_value(self, trainable_variables):
        # Each weight takes its average where it is, as Keras' own optimizer
        # does. Keras' TensorFlow optimizer goes through the distribution
        # strategy instead (a `merge_call`), which TensorFlow refuses inside
        # the `cond` that restarts the weights every `period` steps: under
        # `MirroredStrategy` (`--distribute`) the first step failed. The
        # replicas hold the same averages, so each overwrites its own copy.
        for var, average in zip(trainable_variables, self._model_variables_moving_average):
            if average is not None:
                var.assign(average)

    def get_config(self):
        config = super().get_config()
        for name in LOOKAHEAD_OWN_EMA:
            config.pop(name, None)
        config.update(
            total_steps=self.total_steps,
            lookahead_momentum=self.lookahead_momentum,
            period=self.period,
        )
        return config
