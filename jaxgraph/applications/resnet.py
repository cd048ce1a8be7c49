"""ResNet v1 (He et al., 2015): bottleneck residual blocks, 50, 101 or 152 layers deep.

A 7x7 stride-2 stem and a max pool, then four stages (conv2..conv5) of bottleneck blocks
(1x1 reduce, 3x3, 1x1 expand to 4x the width), each added to an identity shortcut or,
in a stage's first block, to a strided 1x1 projection. Layer names, weight layouts and
parameter counts (ResNet50: 25,636,712 with the 1000-class top) are Keras's.
"""

from __future__ import annotations

from .. import layers
from . import imagenet_utils
from .imagenet_utils import decode_predictions  # noqa: F401  (Keras's module API)

_BN_EPSILON = 1.001e-5

WEIGHTS_FILES = {
    "resnet50": ("resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                 "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "resnet101": ("resnet101_weights_tf_dim_ordering_tf_kernels.h5",
                  "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "resnet152": ("resnet152_weights_tf_dim_ordering_tf_kernels.h5",
                  "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}


def block1(x, filters, kernel_size=3, stride=1, conv_shortcut=True, name=None):
    """A bottleneck residual block; `conv_shortcut` projects the shortcut with a 1x1."""
    if conv_shortcut:
        shortcut = layers.Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_0_bn")(
            shortcut)
    else:
        shortcut = x
    x = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_1_bn")(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = layers.Conv2D(filters, kernel_size, padding="same", name=f"{name}_2_conv")(x)
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_2_bn")(x)
    x = layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x)
    x = layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_3_bn")(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def stack1(x, filters, blocks, stride1=2, name=None):
    """`blocks` bottleneck blocks; the first one strides and projects its shortcut."""
    x = block1(x, filters, stride=stride1, name=f"{name}_block1")
    for i in range(2, blocks + 1):
        x = block1(x, filters, conv_shortcut=False, name=f"{name}_block{i}")
    return x


def _stages(blocks_per_stage):
    def stack_fn(x):
        for i, (filters, blocks) in enumerate(zip((64, 128, 256, 512), blocks_per_stage)):
            x = stack1(x, filters, blocks, stride1=1 if i == 0 else 2, name=f"conv{i + 2}")
        return x

    return stack_fn


def ResNet(stack_fn, preact, use_bias, model_name="resnet", include_top=True, weights=None,
           input_tensor=None, input_shape=None, pooling=None, classes=1000,
           classifier_activation="softmax", name=None):
    """A ResNet from `stack_fn(x) -> x` (the residual stages). `preact=True` builds the v2
    layout (normalization before each convolution, a final BN + ReLU)."""
    files = WEIGHTS_FILES.get(model_name, (f"{model_name}_weights_tf_dim_ordering_tf_kernels.h5",
                                           f"{model_name}_weights_tf_dim_ordering_tf_kernels"
                                           "_notop.h5"))
    label = {"resnet50": "ResNet50", "resnet101": "ResNet101",
             "resnet152": "ResNet152"}.get(model_name, model_name)
    imagenet_utils.validate_weights(weights, label, files, include_top, classes)
    input_shape = imagenet_utils.obtain_input_shape(
        input_shape, default_size=224, min_size=32, require_flatten=include_top,
        weights=weights)
    img_input, inputs = imagenet_utils.image_input(input_tensor, input_shape)

    x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(img_input)
    x = layers.Conv2D(64, 7, strides=2, use_bias=use_bias, name="conv1_conv")(x)
    if not preact:
        x = layers.BatchNormalization(epsilon=_BN_EPSILON, name="conv1_bn")(x)
        x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)

    x = stack_fn(x)

    if preact:
        x = layers.BatchNormalization(epsilon=_BN_EPSILON, name="post_bn")(x)
        x = layers.Activation("relu", name="post_relu")(x)

    return imagenet_utils.finish(
        inputs, x, include_top=include_top, pooling=pooling, weights=weights,
        name=name or model_name, top=lambda x: layers.GlobalAveragePooling2D(name="avg_pool")(x),
        classes=classes, classifier_activation=classifier_activation,
        pool_names=("avg_pool", "max_pool"))


def ResNet50(include_top=True, weights=None, input_tensor=None, input_shape=None,
             pooling=None, classes=1000, classifier_activation="softmax", name="resnet50"):
    """Keras's `ResNet50` (3, 4, 6, 3 blocks), as a jaxgraph Model.

    Args mirror Keras: `weights` is None (random initialization) or the path to a local
    weights file; `'imagenet'` raises, since nothing is downloaded. Default input
    224x224x3; at least 32x32.
    """
    return ResNet(_stages((3, 4, 6, 3)), False, True, "resnet50", include_top, weights,
                  input_tensor, input_shape, pooling, classes, classifier_activation, name)


def ResNet101(include_top=True, weights=None, input_tensor=None, input_shape=None,
              pooling=None, classes=1000, classifier_activation="softmax", name="resnet101"):
    """Keras's `ResNet101` (3, 4, 23, 3 blocks), as a jaxgraph Model."""
    return ResNet(_stages((3, 4, 23, 3)), False, True, "resnet101", include_top, weights,
                  input_tensor, input_shape, pooling, classes, classifier_activation, name)


def ResNet152(include_top=True, weights=None, input_tensor=None, input_shape=None,
              pooling=None, classes=1000, classifier_activation="softmax", name="resnet152"):
    """Keras's `ResNet152` (3, 8, 36, 3 blocks), as a jaxgraph Model."""
    return ResNet(_stages((3, 8, 36, 3)), False, True, "resnet152", include_top, weights,
                  input_tensor, input_shape, pooling, classes, classifier_activation, name)


def preprocess_input(x, data_format=None):
    """RGB values in [0, 255] -> BGR minus ImageNet's mean (Caffe's convention)."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="caffe")
