"""keras-resnet: a ResNet under 5M parameters for CIFAR-10, in Keras 3."""

from keras_resnet.layers import RandomCutout
from keras_resnet.layers import RandomHorizontalFlip
from keras_resnet.layers import RandomPadCrop
from keras_resnet.layers import ResidualBlock
from keras_resnet.model import PARAM_CAP
from keras_resnet.model import PRESETS
from keras_resnet.model import build_model

__version__ = "0.1.0"
