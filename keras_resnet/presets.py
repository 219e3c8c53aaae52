"""The presets and the constants of the network, as plain data.

Kept free of Keras imports so that command lines can check their flags
before loading a backend.
"""

PARAM_CAP = 5_000_000
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
# Per-channel mean and standard deviation of the CIFAR-10 training images,
# in 0-255 pixel units.
CIFAR10_MEAN = (125.307, 122.950, 113.865)
CIFAR10_STD = (62.993, 62.089, 66.705)

# The `build_model` arguments that presets leave at these values.
LAYOUT_DEFAULTS = dict(
    stem_whitening=False, num_classes=NUM_CLASSES, bn_momentum=0.9, downsample="stride",
    pooled_shortcut=False, zero_init_residual=False, dtype=None,
)

# Each preset, with `LAYOUT_DEFAULTS`, is a complete set of `build_model`
# arguments.
PRESETS = {
    # The seed network: 7x7/2 stem, one basic block per stage. 4,916,682
    # parameters.
    "seed": dict(
        stem_filters=64,
        stem_kernel_size=7,
        stem_strides=2,
        stage_filters=(64, 128, 256, 512),
        stage_blocks=(1, 1, 1, 1),
        stage_strides=(1, 2, 2, 2),
        dropout=0.1,
    ),
    # Time-to-accuracy: airbench's skeleton built from the project's block.
    # A fixed 2x2 patch-whitening stem (24 channels, fitted to the training
    # images), then one block per stage at 128, 384 and 384 channels (the
    # widths of airbench95), each convolving at full resolution and
    # max-pooling to half (`downsample="max_pool"`), with ResNet-D shortcuts.
    # 4,813,450 parameters. On the 45,000/5,000 split, with this recipe for
    # 4 epochs on the CPU, the skeleton at 64/256/256 reached 88.54%
    # validation accuracy against 77.46% for the ResNet-9-like layout `fast`
    # had before (3x3 stem of 64 at full resolution; stages 128/2, 256/2,
    # 512/2; 4,834,762 parameters) and 84.58% with strided blocks
    # (docs/results/2026-11-26-cpu). On an H100, 10 epochs on the split, the
    # widths 128/384/384 then took it from 92.88% to 93.20% with flip TTA,
    # and to 93.38% with the recipe's alternating flips and 2-pixel crops
    # (docs/results/2026-11-27-h100).
    "fast": dict(
        stem_whitening=True,
        stem_filters=None,
        stem_kernel_size=2,
        stem_strides=1,
        stage_filters=(128, 384, 384),
        stage_blocks=(1, 1, 1),
        stage_strides=(2, 2, 2),
        downsample="max_pool",
        pooled_shortcut=True,
        dropout=0.0,
    ),
    # Time-to-accuracy on a CPU: a fixed 2x2 patch-whitening stem (24
    # channels, fitted to the training images) and four stages 48/2, 96/2,
    # 192/2, 256/2, one block each, with ResNet-D shortcuts (average-pooled
    # before the projection, no parameters). 1,768,778 parameters.
    # On a 2-core AVX2 CPU (AMD EPYC), stages at three quarters of their
    # widths before (64, 128, 256, 256) train 1.35-1.6 times as many images
    # a second, and at equal time on the validation split they went ahead:
    # 9 epochs 90.28% with flip TTA, against 89.72% for 6 epochs of the
    # wider stages. Narrower still tied: 40/80/160/256 90.22% (10 epochs)
    # and 90.28% (11), 32/64/128/256 90.26% (14); of the layouts that tied,
    # this one leaves the most of the 20 minutes to spare and led without
    # TTA (89.50%; docs/results/2026-12-03-amd-cpu). Before that, on a
    # Xeon: the whitening stem, in place of a trained 3x3 convolution of
    # 32, added 2.3 validation points at 8 epochs; the ResNet-D shortcuts
    # 0.8 at 9 epochs (docs/results/2026-11-26-cpu).
    "fast-cpu": dict(
        stem_whitening=True,
        stem_filters=None,
        stem_kernel_size=2,
        stem_strides=1,
        stage_filters=(48, 96, 192, 256),
        stage_blocks=(1, 1, 1, 1),
        stage_strides=(2, 2, 2, 2),
        pooled_shortcut=True,
        dropout=0.0,
    ),
    # Accuracy: the layout of WRN-22-4 (three stages of three blocks, widths
    # 64/128/256 at full resolution), post-activation blocks, 4,334,026
    # parameters.
    "best": dict(
        stem_filters=64,
        stem_kernel_size=3,
        stem_strides=1,
        stage_filters=(64, 128, 256),
        stage_blocks=(3, 3, 3),
        stage_strides=(1, 2, 2),
        dropout=0.0,
    ),
}


def preset_layout(preset, **overrides):
    """The complete `build_model` arguments of `preset` with `overrides`.

    Args:
        preset: str. One of `PRESETS`.
        **overrides: `build_model` arguments that replace the preset's.

    Returns:
        A dict of every `build_model` argument (`LAYOUT_DEFAULTS`, the
        preset's, then `overrides`); the values are not checked here.

    Raises:
        ValueError: for an unknown preset or argument.

    Example:
    ```python
    preset_layout("fast-cpu", dropout=0.1)["stage_filters"]  # (48, 96, 192, 256)
    ```
    """
    if not isinstance(preset, str) or preset not in PRESETS:  # a list is unhashable
        raise ValueError(f"Unknown preset {preset!r}. Choose one of {sorted(PRESETS)}.")
    layout = {**LAYOUT_DEFAULTS, **PRESETS[preset]}
    unknown = set(overrides) - set(layout)
    if unknown:
        raise ValueError(
            f"Unknown model argument(s) {sorted(unknown)}. Valid ones: {sorted(layout)}."
        )
    return {**layout, **overrides}


# The learning rate of `fast`'s recipe was chosen on the 45,000/5,000 split
# with its earlier, ResNet-9-like layout (docs/results/2026-11-26-h100, runs
# g1-g6, all with label smoothing 0.2); so was the weight decay,
# `TrainConfig`'s default.
_FAST_RECIPE = dict(epochs=10, batch_size=512, learning_rate=0.2, label_smoothing=0.2,
                    warmup_epochs=1.0)

# The training settings each preset is meant for: `train.py` starts from
# these, then applies `--config` and the flags. Unlisted settings keep
# `TrainConfig`'s defaults (the seed recipe).
RECIPES = {
    "seed": {},
    # Alternating flips and crops padded by 2, not 4: chosen together with
    # the widths on the split (docs/results/2026-11-27-h100). Batch 256
    # with Lookahead 0.95 led by 0.20 points over six seeds each, about
    # one standard error (docs/results/2026-11-27-h200); batch 512 keeps
    # half the steps, which the 10 s target needs. Batch-norm offsets
    # learning 16 times faster (airbench's trick; 64 there) took the split
    # from 93.54% to 94.09% with flip TTA, two seeds each; 64 tied with 16,
    # faster batch-norm statistics (momentum 0.4) and Lookahead did not
    # help (docs/results/2026-11-27-h100-offsets).
    "fast": dict(_FAST_RECIPE, crop_padding=2, flip="alternating", offset_lr_scale=16.0),
    # 9 epochs fit the 20 minutes on the 2-core AMD EPYC with time to
    # spare (the narrower stages, above). Batch-norm offsets at 16 times
    # the learning rate led by half a point at 6 epochs on the split
    # there, as they did for `fast` on the GPU (docs/results/2026-12-03-
    # amd-cpu). Batch 256 and crops padded by 1, not 4, were chosen on the
    # split on a Xeon: short runs prefer mild augmentation
    # (docs/results/2026-11-26-cpu).
    "fast-cpu": dict(_FAST_RECIPE, epochs=9, batch_size=256, crop_padding=1,
                     offset_lr_scale=16.0),
    "best": dict(epochs=200, batch_size=512, cutout=8),
}


def with_recipe(settings):
    """`settings` over the recipe of the preset they name (`seed` if none):
    what `train.py` and `bench` start from. A preset that is not a known
    name adds nothing; `TrainConfig` reports it."""
    preset = settings.get("preset", "seed")
    return {**(RECIPES.get(preset, {}) if isinstance(preset, str) else {}), **settings}
