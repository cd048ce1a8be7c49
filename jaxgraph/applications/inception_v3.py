"""Inception v3 (Szegedy et al., 2016): parallel branches of factorized convolutions.

A stem of plain convolutions and pools, then eleven "mixed" modules: three 35x35 modules
(1x1, 5x5, double 3x3 and pooled branches), a grid reduction, four 17x17 modules whose
7x7 convolutions are factorized into 1x7 and 7x1, a second reduction and two 8x8
modules with split 1x3 / 3x1 branches. Every convolution is Conv2D (no bias) +
BatchNormalization (no scale) + ReLU. Layer names, weight layouts and the parameter count
(23,851,784 with the 1000-class top) are Keras's.
"""

from __future__ import annotations

from .. import layers
from . import imagenet_utils
from .imagenet_utils import decode_predictions  # noqa: F401  (Keras's module API)

WEIGHTS_FILES = ("inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
                 "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5")


def conv2d_bn(x, filters, num_row, num_col, padding="same", strides=(1, 1), name=None):
    """Conv2D (no bias) -> BatchNormalization (no scale) -> ReLU; `name` names the three
    layers `<name>_conv`, `<name>_bn` and `<name>` (else they get automatic names)."""
    conv_name = None if name is None else f"{name}_conv"
    bn_name = None if name is None else f"{name}_bn"
    x = layers.Conv2D(filters, (num_row, num_col), strides=strides, padding=padding,
                      use_bias=False, name=conv_name)(x)
    x = layers.BatchNormalization(scale=False, name=bn_name)(x)
    return layers.Activation("relu", name=name)(x)


def _avg_pool_branch(x, filters):
    branch = layers.AveragePooling2D((3, 3), strides=(1, 1), padding="same")(x)
    return conv2d_bn(branch, filters, 1, 1)


def _module_35(x, pool_filters, name):
    branch1x1 = conv2d_bn(x, 64, 1, 1)
    branch5x5 = conv2d_bn(x, 48, 1, 1)
    branch5x5 = conv2d_bn(branch5x5, 64, 5, 5)
    branch3x3dbl = conv2d_bn(x, 64, 1, 1)
    branch3x3dbl = conv2d_bn(branch3x3dbl, 96, 3, 3)
    branch3x3dbl = conv2d_bn(branch3x3dbl, 96, 3, 3)
    branch_pool = _avg_pool_branch(x, pool_filters)
    return layers.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1,
                              name=name)


def _reduction_35_to_17(x):
    branch3x3 = conv2d_bn(x, 384, 3, 3, strides=(2, 2), padding="valid")
    branch3x3dbl = conv2d_bn(x, 64, 1, 1)
    branch3x3dbl = conv2d_bn(branch3x3dbl, 96, 3, 3)
    branch3x3dbl = conv2d_bn(branch3x3dbl, 96, 3, 3, strides=(2, 2), padding="valid")
    branch_pool = layers.MaxPooling2D((3, 3), strides=(2, 2))(x)
    return layers.concatenate([branch3x3, branch3x3dbl, branch_pool], axis=-1, name="mixed3")


def _module_17(x, width, name):
    """1x1, factorized 7x7, double factorized 7x7 and pooled branches."""
    branch1x1 = conv2d_bn(x, 192, 1, 1)
    branch7x7 = conv2d_bn(x, width, 1, 1)
    branch7x7 = conv2d_bn(branch7x7, width, 1, 7)
    branch7x7 = conv2d_bn(branch7x7, 192, 7, 1)
    branch7x7dbl = conv2d_bn(x, width, 1, 1)
    branch7x7dbl = conv2d_bn(branch7x7dbl, width, 7, 1)
    branch7x7dbl = conv2d_bn(branch7x7dbl, width, 1, 7)
    branch7x7dbl = conv2d_bn(branch7x7dbl, width, 7, 1)
    branch7x7dbl = conv2d_bn(branch7x7dbl, 192, 1, 7)
    branch_pool = _avg_pool_branch(x, 192)
    return layers.concatenate([branch1x1, branch7x7, branch7x7dbl, branch_pool], axis=-1,
                              name=name)


def _reduction_17_to_8(x):
    branch3x3 = conv2d_bn(x, 192, 1, 1)
    branch3x3 = conv2d_bn(branch3x3, 320, 3, 3, strides=(2, 2), padding="valid")
    branch7x7x3 = conv2d_bn(x, 192, 1, 1)
    branch7x7x3 = conv2d_bn(branch7x7x3, 192, 1, 7)
    branch7x7x3 = conv2d_bn(branch7x7x3, 192, 7, 1)
    branch7x7x3 = conv2d_bn(branch7x7x3, 192, 3, 3, strides=(2, 2), padding="valid")
    branch_pool = layers.MaxPooling2D((3, 3), strides=(2, 2))(x)
    return layers.concatenate([branch3x3, branch7x7x3, branch_pool], axis=-1, name="mixed8")


def _module_8(x, index):
    """1x1, split 3x3 (1x3 | 3x1), double split 3x3 and pooled branches."""
    branch1x1 = conv2d_bn(x, 320, 1, 1)
    branch3x3 = conv2d_bn(x, 384, 1, 1)
    branch3x3_1 = conv2d_bn(branch3x3, 384, 1, 3)
    branch3x3_2 = conv2d_bn(branch3x3, 384, 3, 1)
    branch3x3 = layers.concatenate([branch3x3_1, branch3x3_2], axis=-1,
                                   name=f"mixed9_{index}")
    branch3x3dbl = conv2d_bn(x, 448, 1, 1)
    branch3x3dbl = conv2d_bn(branch3x3dbl, 384, 3, 3)
    branch3x3dbl_1 = conv2d_bn(branch3x3dbl, 384, 1, 3)
    branch3x3dbl_2 = conv2d_bn(branch3x3dbl, 384, 3, 1)
    branch3x3dbl = layers.concatenate([branch3x3dbl_1, branch3x3dbl_2], axis=-1)
    branch_pool = _avg_pool_branch(x, 192)
    return layers.concatenate([branch1x1, branch3x3, branch3x3dbl, branch_pool], axis=-1,
                              name=f"mixed{9 + index}")


def InceptionV3(include_top=True, weights=None, input_tensor=None, input_shape=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                name="inception_v3"):
    """Keras's `InceptionV3`, as a jaxgraph Model.

    Args mirror Keras: `weights` is None (random initialization) or the path to a local
    weights file (Keras's ImageNet files included); `'imagenet'` raises, since nothing is
    downloaded. Default input 299x299x3; at least 75x75.
    """
    imagenet_utils.validate_weights(weights, "InceptionV3", WEIGHTS_FILES, include_top,
                                    classes)
    input_shape = imagenet_utils.obtain_input_shape(
        input_shape, default_size=299, min_size=75, require_flatten=include_top,
        weights=weights)
    img_input, inputs = imagenet_utils.image_input(input_tensor, input_shape)

    x = conv2d_bn(img_input, 32, 3, 3, strides=(2, 2), padding="valid")
    x = conv2d_bn(x, 32, 3, 3, padding="valid")
    x = conv2d_bn(x, 64, 3, 3)
    x = layers.MaxPooling2D((3, 3), strides=(2, 2))(x)
    x = conv2d_bn(x, 80, 1, 1, padding="valid")
    x = conv2d_bn(x, 192, 3, 3, padding="valid")
    x = layers.MaxPooling2D((3, 3), strides=(2, 2))(x)

    x = _module_35(x, 32, "mixed0")
    x = _module_35(x, 64, "mixed1")
    x = _module_35(x, 64, "mixed2")
    x = _reduction_35_to_17(x)
    x = _module_17(x, 128, "mixed4")
    x = _module_17(x, 160, "mixed5")
    x = _module_17(x, 160, "mixed6")
    x = _module_17(x, 192, "mixed7")
    x = _reduction_17_to_8(x)
    x = _module_8(x, 0)
    x = _module_8(x, 1)

    return imagenet_utils.finish(
        inputs, x, include_top=include_top, pooling=pooling, weights=weights, name=name,
        top=lambda x: layers.GlobalAveragePooling2D(name="avg_pool")(x), classes=classes,
        classifier_activation=classifier_activation)


def preprocess_input(x, data_format=None):
    """RGB values in [0, 255] -> [-1, 1], as Inception v3 was trained."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="tf")
