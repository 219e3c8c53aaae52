"""keras-resnet: a ResNet under 5M parameters for CIFAR-10, in Keras 3.

The names below load on first use, so that `keras_resnet.config` and the
command lines can check their input before Keras and a backend are imported.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "adapt_whitening": "keras_resnet.model",
    "build_model": "keras_resnet.model",
    "count_params": "keras_resnet.model",
    "load_model": "keras_resnet.model",
    "PARAM_CAP": "keras_resnet.presets",
    "PRESETS": "keras_resnet.presets",
    "ResidualBlock": "keras_resnet.layers",
    "FusedBatchNormalization": "keras_resnet.layers",
    "PatchWhitening": "keras_resnet.layers",
    "RandomPadCrop": "keras_resnet.augment",
    "RandomHorizontalFlip": "keras_resnet.augment",
    "RandomCutout": "keras_resnet.augment",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'keras_resnet' has no attribute {name!r}")
