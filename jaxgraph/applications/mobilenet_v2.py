"""MobileNetV2 (Sandler et al., 2018): inverted residual blocks with linear bottlenecks.

Each block expands its input with a 1x1 convolution (6x, except the first block),
filters it with a 3x3 depthwise convolution, and projects it back with a linear 1x1
convolution; blocks that keep the shape add their input. Activations are ReLU6. `alpha`
scales every width. Layer names, weight layouts and the parameter count (3,538,984 for
alpha=1.0 with the 1000-class top) are Keras's.
"""

from __future__ import annotations

from .. import layers
from . import imagenet_utils
from .imagenet_utils import decode_predictions  # noqa: F401  (Keras's module API)

_BN = dict(epsilon=1e-3, momentum=0.999)

# (output channels, stride, expansion) of the 17 inverted residual blocks.
_BLOCKS = (
    (16, 1, 1),
    (24, 2, 6), (24, 1, 6),
    (32, 2, 6), (32, 1, 6), (32, 1, 6),
    (64, 2, 6), (64, 1, 6), (64, 1, 6), (64, 1, 6),
    (96, 1, 6), (96, 1, 6), (96, 1, 6),
    (160, 2, 6), (160, 1, 6), (160, 1, 6),
    (320, 1, 6),
)


def _make_divisible(v, divisor=8, min_value=None):
    """Round a width to a multiple of `divisor`, never losing more than 10% of it."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _inverted_res_block(inputs, expansion, stride, alpha, filters, block_id):
    in_channels = inputs.shape[-1]
    pointwise_filters = _make_divisible(int(filters * alpha), 8)
    x = inputs
    prefix = f"block_{block_id}_"
    if block_id:
        x = layers.Conv2D(expansion * in_channels, kernel_size=1, padding="same",
                          use_bias=False, activation=None, name=prefix + "expand")(x)
        x = layers.BatchNormalization(name=prefix + "expand_BN", **_BN)(x)
        x = layers.ReLU(6.0, name=prefix + "expand_relu")(x)
    else:
        prefix = "expanded_conv_"
    if stride == 2:
        x = layers.ZeroPadding2D(padding=imagenet_utils.correct_pad(x, 3),
                                 name=prefix + "pad")(x)
    x = layers.DepthwiseConv2D(kernel_size=3, strides=stride, activation=None, use_bias=False,
                               padding="same" if stride == 1 else "valid",
                               name=prefix + "depthwise")(x)
    x = layers.BatchNormalization(name=prefix + "depthwise_BN", **_BN)(x)
    x = layers.ReLU(6.0, name=prefix + "depthwise_relu")(x)
    x = layers.Conv2D(pointwise_filters, kernel_size=1, padding="same", use_bias=False,
                      activation=None, name=prefix + "project")(x)
    x = layers.BatchNormalization(name=prefix + "project_BN", **_BN)(x)
    if in_channels == pointwise_filters and stride == 1:
        return layers.Add(name=prefix + "add")([inputs, x])
    return x


def _input_rows(input_shape, input_tensor):
    """The rows and the default size Keras settles on (224 unless given one it knows)."""
    if input_shape is None and input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
    if input_shape is None:
        return 224, 224
    if len(input_shape) != 3:
        raise ValueError(f"`input_shape` must be a tuple of three integers. Received: "
                         f"input_shape={tuple(input_shape)}")
    rows, cols = input_shape[0], input_shape[1]
    if rows == cols and rows in (96, 128, 160, 192, 224):
        return rows, rows
    return rows, 224


def MobileNetV2(input_shape=None, alpha=1.0, include_top=True, weights=None,
                input_tensor=None, pooling=None, classes=1000,
                classifier_activation="softmax", name=None):
    """Keras's `MobileNetV2`, as a jaxgraph Model named `mobilenetv2_<alpha>_<rows>`.

    Args mirror Keras (note `input_shape` and `alpha` come first): `weights` is None
    (random initialization) or the path to a local weights file; `'imagenet'` raises,
    since nothing is downloaded. Default input 224x224x3; at least 32x32.
    """
    imagenet_utils.validate_weights(
        weights, "MobileNetV2",
        (f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_224.h5",
         f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_224_no_top.h5"),
        include_top, classes)
    if input_tensor is not None and input_shape is not None:
        tensor_shape = tuple(input_tensor.shape[1:])
        if tuple(input_shape) != tensor_shape:
            raise ValueError(
                f"input_tensor shape {tensor_shape} and input_shape {tuple(input_shape)} "
                "do not match"
            )
    _, default_size = _input_rows(input_shape, input_tensor)
    input_shape = imagenet_utils.obtain_input_shape(
        input_shape, default_size=default_size, min_size=32, require_flatten=include_top,
        weights=weights)
    rows = input_shape[0]
    img_input, inputs = imagenet_utils.image_input(input_tensor, input_shape)

    first_block_filters = _make_divisible(32 * alpha, 8)
    x = layers.Conv2D(first_block_filters, kernel_size=3, strides=(2, 2), padding="same",
                      use_bias=False, name="Conv1")(img_input)
    x = layers.BatchNormalization(name="bn_Conv1", **_BN)(x)
    x = layers.ReLU(6.0, name="Conv1_relu")(x)

    for block_id, (filters, stride, expansion) in enumerate(_BLOCKS):
        x = _inverted_res_block(x, filters=filters, alpha=alpha, stride=stride,
                                expansion=expansion, block_id=block_id)

    last_block_filters = _make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
    x = layers.Conv2D(last_block_filters, kernel_size=1, use_bias=False, name="Conv_1")(x)
    x = layers.BatchNormalization(name="Conv_1_bn", **_BN)(x)
    x = layers.ReLU(6.0, name="out_relu")(x)

    return imagenet_utils.finish(
        inputs, x, include_top=include_top, pooling=pooling, weights=weights,
        name=name or f"mobilenetv2_{alpha:0.2f}_{rows}",
        top=lambda x: layers.GlobalAveragePooling2D()(x), classes=classes,
        classifier_activation=classifier_activation)


def preprocess_input(x, data_format=None):
    """RGB values in [0, 255] -> [-1, 1], as MobileNetV2 was trained."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="tf")
