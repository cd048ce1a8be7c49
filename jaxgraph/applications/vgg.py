"""VGG16 and VGG19 (Simonyan and Zisserman, 2014): stacks of 3x3 convolutions.

Five blocks of 'same' 3x3 ReLU convolutions (64, 128, 256, 512, 512 filters; two, two,
then three (VGG16) or four (VGG19) per block), each closed by a 2x2 max pool; the top
is Flatten and two 4096-unit Dense layers. This is the conv base of "Deep Learning with
Python"'s feature-extraction and fine-tuning examples. Layer names, weight layouts and
parameter counts (138,357,544 and 143,667,240 with the top) are Keras's.
"""

from __future__ import annotations

from .. import layers
from . import imagenet_utils
from .imagenet_utils import decode_predictions  # noqa: F401  (Keras's module API)

_FILTERS = (64, 128, 256, 512, 512)


def _vgg(depths, model_name, files, include_top, weights, input_tensor, input_shape,
         pooling, classes, classifier_activation, name):
    imagenet_utils.validate_weights(weights, model_name, files, include_top, classes)
    input_shape = imagenet_utils.obtain_input_shape(
        input_shape, default_size=224, min_size=32, require_flatten=include_top,
        weights=weights)
    img_input, inputs = imagenet_utils.image_input(input_tensor, input_shape)
    x = img_input
    for block, (filters, depth) in enumerate(zip(_FILTERS, depths), start=1):
        for i in range(1, depth + 1):
            x = layers.Conv2D(filters, (3, 3), activation="relu", padding="same",
                              name=f"block{block}_conv{i}")(x)
        x = layers.MaxPooling2D((2, 2), strides=(2, 2), name=f"block{block}_pool")(x)

    def top(x):
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(4096, activation="relu", name="fc1")(x)
        return layers.Dense(4096, activation="relu", name="fc2")(x)

    return imagenet_utils.finish(inputs, x, include_top=include_top, top=top, pooling=pooling,
                                 weights=weights, name=name, classes=classes,
                                 classifier_activation=classifier_activation)


def VGG16(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
          classes=1000, classifier_activation="softmax", name="vgg16"):
    """Keras's `VGG16`, as a jaxgraph Model (`weights`: None or a local file's path).

    Default input 224x224x3; at least 32x32. `weights='imagenet'` raises and names the
    file to fetch, since jaxgraph downloads nothing.
    """
    return _vgg((2, 2, 3, 3, 3), "VGG16",
                ("vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                 "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
                include_top, weights, input_tensor, input_shape, pooling, classes,
                classifier_activation, name)


def VGG19(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
          classes=1000, classifier_activation="softmax", name="vgg19"):
    """Keras's `VGG19`, as a jaxgraph Model; arguments as `VGG16`."""
    return _vgg((2, 2, 4, 4, 4), "VGG19",
                ("vgg19_weights_tf_dim_ordering_tf_kernels.h5",
                 "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
                include_top, weights, input_tensor, input_shape, pooling, classes,
                classifier_activation, name)


def preprocess_input(x, data_format=None):
    """RGB in [0, 255] -> BGR minus the ImageNet mean ('caffe' mode), as VGG was trained."""
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="caffe")
