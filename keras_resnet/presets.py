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
    # Time-to-accuracy: full-resolution 3x3 stem and three wide stages, in
    # the spirit of ResNet-9 / airbench, at 3,472,074 parameters.
    "fast": dict(
        stem_filters=64,
        stem_kernel_size=3,
        stem_strides=1,
        stage_filters=(128, 256, 384),
        stage_blocks=(1, 1, 1),
        stage_strides=(2, 2, 2),
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
