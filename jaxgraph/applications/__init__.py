"""Keras's classic image networks, built with jaxgraph's functional API.

`Xception`, `InceptionV3`, `ResNet50` (and `ResNet101`, `ResNet152`), `MobileNetV2`,
`VGG16` and `VGG19` take Keras's arguments and produce models with Keras's layer names,
weight layouts and parameter counts, so `model.set_weights(keras_model.get_weights())` or
`Xception(weights='/path/to/xception_weights...h5')` reproduce Keras's numbers.
`weights='imagenet'` would need a download, which jaxgraph never does: it raises and
names the file to fetch. Each network's module has `preprocess_input`.
"""

from . import imagenet_utils, inception_v3, mobilenet_v2, resnet, vgg, xception
from .inception_v3 import InceptionV3
from .mobilenet_v2 import MobileNetV2
from .resnet import ResNet50, ResNet101, ResNet152
from .vgg import VGG16, VGG19
from .xception import Xception

resnet50 = resnet  # Keras has both keras.applications.resnet and .resnet50
vgg16 = vgg19 = vgg  # keras.applications.vgg16.VGG16, .vgg19.VGG19

__all__ = [
    "InceptionV3",
    "MobileNetV2",
    "ResNet101",
    "ResNet152",
    "ResNet50",
    "VGG16",
    "VGG19",
    "Xception",
    "imagenet_utils",
    "inception_v3",
    "mobilenet_v2",
    "resnet",
    "resnet50",
    "vgg",
    "vgg16",
    "vgg19",
    "xception",
]
