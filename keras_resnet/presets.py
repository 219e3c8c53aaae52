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

# Each preset is a complete set of `build_model` arguments.
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
    # Time-to-accuracy: the seed's stages behind a full-resolution 3x3 stem
    # of 32 filters (the 7x7/2 stem throws away detail), about as fast as the
    # seed on a CPU. 4,891,882 parameters.
    "fast": dict(
        stem_filters=32,
        stem_kernel_size=3,
        stem_strides=1,
        stage_filters=(64, 128, 256, 512),
        stage_blocks=(1, 1, 1, 1),
        stage_strides=(2, 2, 2, 2),
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


# The training settings each preset is meant for: `train.py` starts from
# these, then applies `--config` and the flags. Unlisted settings keep
# `TrainConfig`'s defaults (the seed recipe).
RECIPES = {
    "seed": {},
    "fast": dict(epochs=8, batch_size=256, warmup_epochs=1.0),
    "best": dict(epochs=100, batch_size=256, cutout=8),
}
