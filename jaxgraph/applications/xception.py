"""Xception (Chollet, 2017): depthwise separable convolutions with residual connections.

The entry flow halves the resolution four times (two plain convolutions, then three
separable blocks with strided 1x1 shortcuts), the middle flow repeats eight residual
blocks of three 728-channel separable convolutions, and the exit flow widens to 2048
channels. Layer names, weight layouts and the parameter count (22,910,480 with the
1000-class top) are Keras's.
"""

from __future__ import annotations

from .. import layers
from . import imagenet_utils
from .imagenet_utils import decode_predictions  # noqa: F401  (Keras's module API)

WEIGHTS_FILES = ("xception_weights_tf_dim_ordering_tf_kernels.h5",
                 "xception_weights_tf_dim_ordering_tf_kernels_notop.h5")


def _conv_bn_relu(x, filters, name, strides=1):
    x = layers.Conv2D(filters, (3, 3), strides=strides, use_bias=False, name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_act")(x)


def _shortcut(x, filters):
    """The strided 1x1 projection beside a downsampling block (unnamed in Keras)."""
    r = layers.Conv2D(filters, (1, 1), strides=(2, 2), padding="same", use_bias=False)(x)
    return layers.BatchNormalization()(r)


def _sep_bn(x, filters, name):
    x = layers.SeparableConv2D(filters, (3, 3), padding="same", use_bias=False, name=name)(x)
    return layers.BatchNormalization(name=f"{name}_bn")(x)


def _downsampling_block(x, filters, block, relu_first=True):
    """Two separable convolutions and a strided max pool, added to a 1x1 shortcut."""
    residual = _shortcut(x, filters[1])
    if relu_first:
        x = layers.Activation("relu", name=f"{block}_sepconv1_act")(x)
    x = _sep_bn(x, filters[0], f"{block}_sepconv1")
    x = layers.Activation("relu", name=f"{block}_sepconv2_act")(x)
    x = _sep_bn(x, filters[1], f"{block}_sepconv2")
    x = layers.MaxPooling2D((3, 3), strides=(2, 2), padding="same", name=f"{block}_pool")(x)
    return layers.add([x, residual])


def _middle_block(x, block):
    residual = x
    for i in (1, 2, 3):
        x = layers.Activation("relu", name=f"{block}_sepconv{i}_act")(x)
        x = _sep_bn(x, 728, f"{block}_sepconv{i}")
    return layers.add([x, residual])


def Xception(include_top=True, weights=None, input_tensor=None, input_shape=None,
             pooling=None, classes=1000, classifier_activation="softmax", name="xception"):
    """Keras's `Xception`, as a jaxgraph Model.

    Args mirror Keras: `weights` is None (random initialization) or the path to a local
    weights file (Keras's ImageNet files included); `'imagenet'` raises, since nothing is
    downloaded. Default input 299x299x3; at least 71x71.
    """
    imagenet_utils.validate_weights(weights, "Xception", WEIGHTS_FILES, include_top, classes)
    input_shape = imagenet_utils.obtain_input_shape(
        input_shape, default_size=299, min_size=71, require_flatten=include_top,
        weights=weights)
    img_input, inputs = imagenet_utils.image_input(input_tensor, input_shape)

    # Entry flow.
    x = _conv_bn_relu(img_input, 32, "block1_conv1", strides=(2, 2))
    x = _conv_bn_relu(x, 64, "block1_conv2")
    x = _downsampling_block(x, (128, 128), "block2", relu_first=False)
    x = _downsampling_block(x, (256, 256), "block3")
    x = _downsampling_block(x, (728, 728), "block4")

    # Middle flow.
    for i in range(8):
        x = _middle_block(x, f"block{i + 5}")

    # Exit flow.
    x = _downsampling_block(x, (728, 1024), "block13")
    x = _sep_bn(x, 1536, "block14_sepconv1")
    x = layers.Activation("relu", name="block14_sepconv1_act")(x)
    x = _sep_bn(x, 2048, "block14_sepconv2")
    x = layers.Activation("relu", name="block14_sepconv2_act")(x)

    return imagenet_utils.finish(
        inputs, x, include_top=include_top, pooling=pooling, weights=weights, name=name,
        top=lambda x: layers.GlobalAveragePooling2D(name="avg_pool")(x), classes=classes,
        classifier_activation=classifier_activation)


def preprocess_input(x, data_format=None):
    """RGB values in [0, 255] -> [-1, 1], as Xception was trained."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="tf")
