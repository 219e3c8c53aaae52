"""The search space of `python -m keras_resnet.tune`, and the KerasTuner
HyperModel over it.

A space holds, per stage of a base preset, the width and block-count
choices, and the dropout choices and learning-rate and weight-decay ranges
(`search_space` checks one and fills in its defaults). `ResNetHyperModel`
draws a trial's `TrainConfig` from it, rejects a network over `PARAM_CAP`
(5,000,000) parameters before it is built, and trains the others with the
project's pipeline. This module loads without Keras: `ResNetHyperModel` is
defined on first use, so that the command line checks its flags first.
"""

import dataclasses
import functools
import math

from keras_resnet.checks import is_number
from keras_resnet.checks import is_positive_ints
from keras_resnet.config import ConfigError
from keras_resnet.config import check_train_config
from keras_resnet.presets import PARAM_CAP
from keras_resnet.presets import PRESETS

# Stage widths are tried at these multiples of the base preset's widths.
WIDTH_MULTIPLIERS = (0.5, 0.75, 1.0, 1.25, 1.5)
BLOCK_CHOICES = (1, 2, 3)
DROPOUT_CHOICES = (0.0, 0.1, 0.2, 0.3)
LEARNING_RATE_RANGE = (0.03, 0.3)
# Around the 1e-2 that won on the validation split (Keras' decay is
# decoupled: 1e-2 here is PyTorch's coupled 1e-3 at momentum 0.9).
WEIGHT_DECAY_RANGE = (1e-3, 3e-2)
# The TrainConfig fields a trial sets.
TUNED_KEYS = ("stage_filters", "stage_blocks", "dropout", "learning_rate", "weight_decay")


def default_widths(preset):
    """Per-stage width choices: the preset's widths times `WIDTH_MULTIPLIERS`,
    rounded to multiples of 8."""
    return [
        sorted({max(8, round(width * m / 8) * 8) for m in WIDTH_MULTIPLIERS})
        for width in PRESETS[preset]["stage_filters"]
    ]


def search_space(preset, widths=None, blocks=None, dropouts=DROPOUT_CHOICES,
                 learning_rate=LEARNING_RATE_RANGE, weight_decay=WEIGHT_DECAY_RANGE):
    """Checks a search space and fills in its defaults (Keras-free).

    Args:
        preset: str. The base preset, one of `PRESETS`.
        widths: list of lists of ints, one list of width choices per stage.
            Defaults to `default_widths(preset)`.
        blocks: list of ints (the same choices for every stage) or list of
            lists of ints (one per stage). Defaults to `BLOCK_CHOICES`.
        dropouts: list of floats in [0, 1). Defaults to `DROPOUT_CHOICES`.
        learning_rate: `(low, high)`, sampled on a log scale, or a float.
            Defaults to `LEARNING_RATE_RANGE`.
        weight_decay: `(low, high)`, sampled on a log scale, or a float.
            Defaults to `WEIGHT_DECAY_RANGE`.

    Returns:
        A dict of these arguments (but `preset`), as sorted lists, JSON-ready.

    Raises:
        ConfigError: a value of the wrong shape or out of range.
    """
    stages = len(PRESETS[preset]["stage_filters"])
    widths = default_widths(preset) if widths is None else widths
    blocks = BLOCK_CHOICES if blocks is None else blocks
    if is_positive_ints(blocks):  # the same choices for every stage
        blocks = [blocks] * stages
    for name, value in (("widths", widths), ("blocks", blocks)):
        if not (isinstance(value, (list, tuple)) and len(value) == stages
                and all(map(is_positive_ints, value))):
            raise ConfigError(
                f"`{name}` must hold one non-empty list of positive ints per "
                f"stage ({stages} for preset {preset!r}). Received: {name}={value!r}"
            )
    if not (isinstance(dropouts, (list, tuple)) and dropouts
            and all(is_number(d) and 0 <= d < 1 for d in dropouts)):
        raise ConfigError(
            f"`dropouts` must be a non-empty list of numbers in [0, 1). Received: dropouts={dropouts!r}"
        )
    ranges = {}
    for name, value in (("learning_rate", learning_rate), ("weight_decay", weight_decay)):
        pair = _bounds(value)
        if not (pair and 0 < pair[0] <= pair[1] < math.inf):
            raise ConfigError(
                f"`{name}` must be a positive, finite number or a range (low, high) "
                f"of them with low <= high. Received: {name}={value!r}"
            )
        ranges[name] = [float(pair[0]), float(pair[1])]
    return dict(
        widths=[sorted(set(choices)) for choices in widths],
        blocks=[sorted(set(choices)) for choices in blocks],
        dropouts=sorted(set(float(d) for d in dropouts)),
        **ranges,
    )


def _bounds(value):
    """`(low, high)` of a number, or of a pair of numbers (a list, a tuple,
    an array); None for anything else. (NaN fails every comparison after.)"""
    if is_number(value):
        return value, value
    try:
        low, high = value
    except (TypeError, ValueError):
        return None
    return (low, high) if is_number(low) and is_number(high) else None


def __getattr__(name):
    if name == "ResNetHyperModel":
        return _hypermodel_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _hypermodel_class():
    """Defines `ResNetHyperModel` on first use: it loads Keras and KerasTuner."""
    import keras
    import keras_tuner

    from callbacks import StopOnDivergence
    from callbacks import StopOnLostInterrupt
    from callbacks import TrainingDiverged
    from keras_resnet.model import adapt_whitening
    from keras_resnet.model import count_params
    from keras_resnet.training import WHITENING_IMAGES
    from keras_resnet.training import build_network
    from keras_resnet.training import compile_model
    from keras_resnet.training import fit_inputs

    def network_key(config):  # what a trial's parameter count depends on
        return config.preset, tuple(config.stage_filters), tuple(config.stage_blocks)

    class ResNetHyperModel(keras_tuner.HyperModel):
        """A `keras_tuner.HyperModel` over the stages of a keras-resnet preset.

        Hyperparameters: `stage{i}_filters` and `stage{i}_blocks` per stage,
        `dropout`, `learning_rate` and `weight_decay`. Everything else
        (preset stem and strides, batch size, schedule, augmentation, seed)
        comes from `config`. A choice with one value, or a range with equal
        ends, is fixed.

        Args:
            config: `TrainConfig`. The base settings of every trial; its
                `preset` is the base network.
            **space: the space, as `search_space` takes it (`widths`,
                `blocks`, `dropouts`, `learning_rate`, `weight_decay`).
            name, tunable: as for `keras_tuner.HyperModel`.

        Attributes:
            trained: int. Trials this object has trained (in this process).
            rejected: int. Configurations it rejected for the parameter cap.

        Example:
        ```python
        from keras_resnet.config import TrainConfig
        from keras_resnet.hypermodel import ResNetHyperModel

        config = TrainConfig(preset="fast", validation_size=5000, epochs=5)
        hypermodel = ResNetHyperModel(config, widths=[[64, 128]] * 3)
        ```
        """

        def __init__(self, config, name=None, tunable=True, **space):
            super().__init__(name=name, tunable=tunable)
            check_train_config(config)
            self.config = config
            self.space = search_space(config.preset, **space)
            self.trained = 0
            self.rejected = 0
            self._params = {}  # network key -> parameter count

        def trial_config(self, hp):
            """Declares the hyperparameters; returns the trial's `TrainConfig`.

            The default of every choice is its smallest value, so the default
            configuration is the smallest network of the space.
            """

            def choice(name, values):
                if len(values) == 1:
                    return hp.Fixed(name, values[0])
                return hp.Choice(name, values, ordered=True)

            def log_range(name, low_high):
                low, high = low_high
                if low == high:
                    return hp.Fixed(name, low)
                return hp.Float(name, low, high, sampling="log")

            space = self.space
            filters, blocks = [], []
            for stage, (widths, depths) in enumerate(
                zip(space["widths"], space["blocks"]), start=1
            ):
                filters.append(int(choice(f"stage{stage}_filters", widths)))
                blocks.append(int(choice(f"stage{stage}_blocks", depths)))
            return dataclasses.replace(
                self.config,
                stage_filters=filters,
                stage_blocks=blocks,
                dropout=float(choice("dropout", space["dropouts"])),
                learning_rate=float(log_range("learning_rate", space["learning_rate"])),
                weight_decay=float(log_range("weight_decay", space["weight_decay"])),
            )

        def count_params(self, config):
            """The parameter count of `config`'s network, over the cap or not."""
            key = network_key(config)
            if key not in self._params:
                self._params[key] = count_params(
                    config.preset, allow_over_cap=True, **config.model_overrides()
                )
            return self._params[key]

        def build(self, hp):
            """Builds the trial's network (uncompiled; `fit` compiles it).

            Raises:
                keras_tuner.errors.FailedTrialError: the network has more
                    than `PARAM_CAP` parameters; it is never built or
                    trained (counted from the shapes).
            """
            config = self.trial_config(hp)
            params = self.count_params(config)
            if params > PARAM_CAP:
                self.rejected += 1
                raise keras_tuner.errors.FailedTrialError(
                    f"Rejected before training: {params:,} parameters, over the "
                    f"cap of {PARAM_CAP:,}. Received: stage_filters="
                    f"{config.stage_filters}, stage_blocks={config.stage_blocks}"
                )
            keras.utils.set_random_seed(config.seed)
            return build_network(config)

        def fit(self, hp, model, train, validation, epochs, initial_epoch=0,
                callbacks=None, **kwargs):
            """Compiles and trains `model` with the project's pipeline.

            The learning-rate schedule spans the epochs of this call: a
            Hyperband trial that continues an earlier one restarts it. Its
            data go on with the epochs after its parent's.

            Args:
                hp: the trial's `HyperParameters`.
                model: the network from `build`.
                train: `(x, y)` training images (uint8) and int labels.
                validation: `(x, y)`, the validation split.
                epochs: int. The last epoch to train to.
                initial_epoch: int. The epoch to start from. Defaults to `0`.
                callbacks: list of callbacks (KerasTuner's).
                **kwargs: passed to `model.fit` (e.g. `verbose`).

            Returns:
                A dict: the best `val_accuracy`, `params` and `epochs`
                (trained in all, counting a continued trial's earlier ones).
            """
            config = dataclasses.replace(self.trial_config(hp), epochs=epochs - initial_epoch)
            if not initial_epoch:  # a continued trial has its parent's weights
                adapt_whitening(model, train[0][:WHITENING_IMAGES])
            trainer, steps, fit_kwargs = fit_inputs(model, config, train, validation, initial_epoch)
            compile_model(trainer, config, steps)
            try:
                history = trainer.fit(
                    epochs=epochs,
                    initial_epoch=initial_epoch,
                    # First, as train.py's: a Ctrl-C that Python lost (JAX) stops
                    # the search at the next epoch end, before KerasTuner saves it.
                    callbacks=[StopOnLostInterrupt(), StopOnDivergence(), *(callbacks or [])],
                    **fit_kwargs,
                    **kwargs,
                )
            except TrainingDiverged as e:
                raise keras_tuner.errors.FailedTrialError(str(e)) from None
            self.trained += 1
            return {
                "val_accuracy": max(history.history["val_accuracy"]),
                "params": model.count_params(),
                "epochs": epochs,
            }

    return ResNetHyperModel
