"""What the application builders share: input shapes, weights arguments, preprocessing.

The networks are plain jaxgraph graphs (Input, Conv2D, BatchNormalization, ...). Layers
that Keras leaves unnamed are left unnamed here too, so they get Keras's automatic
names (`conv2d`, `conv2d_1`, ... in a fresh session) and every layer name matches the
Keras model built in the same circumstances.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from ..graph.tensor import is_symbolic

_NO_NETWORK = (
    "{model}(weights='imagenet') would download the ImageNet weights, and jaxgraph never "
    "fetches files from the network. Get Keras's weights file `{file}` (for example with "
    "keras.applications.{model}(weights='imagenet') on a machine with a network; Keras "
    "keeps it under ~/.keras/models/) and pass its local path: "
    "{model}(weights='/path/to/{file}')."
)


def validate_weights(weights, model: str, files: tuple[str, str], include_top: bool,
                     classes: int) -> None:
    """Accept None or a path to an existing local file; explain what to do for 'imagenet'.

    `files` are Keras's ImageNet weight file names (with the top, without).
    """
    if weights is None:
        return
    if isinstance(weights, str) and weights == "imagenet":
        if include_top and classes != 1000:
            raise ValueError(
                "If using `weights='imagenet'` with `include_top=True`, `classes` should "
                f"be 1000. Received classes={classes}"
            )
        raise ValueError(_NO_NETWORK.format(model=model,
                                            file=files[0] if include_top else files[1]))
    if not isinstance(weights, (str, os.PathLike)) or not os.path.exists(weights):
        raise ValueError(
            "The `weights` argument should be either `None` (random initialization), "
            "'imagenet' (pre-training on ImageNet), or the path to the weights file to be "
            f"loaded. Received: weights={weights!r}"
            + ("" if not isinstance(weights, (str, os.PathLike)) else " (no such file)")
        )


def load_weights(model, weights) -> None:
    if weights is not None:
        model.load_weights(os.fspath(weights))


def obtain_input_shape(input_shape, default_size: int, min_size: int,
                       require_flatten: bool, weights=None) -> tuple:
    """The (rows, cols, channels) a network is built for, validated as Keras does."""
    if input_shape is not None:
        input_shape = tuple(None if d is None else int(d) for d in input_shape)
        if len(input_shape) != 3:
            raise ValueError(
                f"`input_shape` must be a tuple of three integers. Received: "
                f"input_shape={input_shape}"
            )
        if weights == "imagenet" and input_shape[-1] != 3:
            raise ValueError(f"The input must have 3 channels; Received "
                             f"`input_shape={input_shape}`")
        rows, cols = input_shape[0], input_shape[1]
        if (rows is not None and rows < min_size) or (cols is not None and cols < min_size):
            raise ValueError(
                f"Input size must be at least {min_size}x{min_size}; Received: "
                f"input_shape={input_shape}"
            )
    elif require_flatten:
        input_shape = (default_size, default_size, 3)
    else:
        input_shape = (None, None, 3)
    if require_flatten and None in input_shape:
        raise ValueError(
            "If `include_top` is True, you should specify a static `input_shape`. "
            f"Received: input_shape={input_shape}"
        )
    return input_shape


def image_input(input_tensor, input_shape):
    """(tensor the network starts from, the inputs its Model gets)."""
    from ..graph.input_layer import Input

    if input_tensor is None:
        x = Input(shape=input_shape)
        return x, x
    if not is_symbolic(input_tensor):
        raise ValueError(
            "`input_tensor` must be a jaxgraph symbolic tensor (from jaxgraph.Input(...) or "
            f"a layer's output), got {type(input_tensor).__name__}"
        )
    if len(input_tensor.shape) != 4:
        raise ValueError(f"`input_tensor` must be a batch of images (rank 4), got shape "
                         f"{input_tensor.shape}")
    return input_tensor, source_inputs(input_tensor)


def source_inputs(tensor) -> list:
    """The graph inputs a symbolic tensor depends on (Keras's `get_source_inputs`)."""
    found, seen, stack = [], set(), [tensor]
    while stack:
        t = stack.pop()
        node = t.node
        if node is None or id(t) in seen:
            continue
        seen.add(id(t))
        if node.is_input:
            found.append(t)
        else:
            stack.extend(reversed(node.input_tensors))
    return found[0] if len(found) == 1 else found


def correct_pad(inputs, kernel_size):
    """Zero padding that makes a stride-2 'valid' convolution behave like 'same'
    for odd and even input sizes alike (Keras's `imagenet_utils.correct_pad`)."""
    size = inputs.shape[1:3]
    if isinstance(kernel_size, int):
        kernel_size = (kernel_size, kernel_size)
    adjust = (1, 1) if size[0] is None else (1 - size[0] % 2, 1 - size[1] % 2)
    correct = (kernel_size[0] // 2, kernel_size[1] // 2)
    return ((correct[0] - adjust[0], correct[0]), (correct[1] - adjust[1], correct[1]))


def finish(inputs, x, *, include_top, top, pooling, weights, name, classes,
           classifier_activation, pool_names=(None, None)):
    """The end every network shares: `top(x)` then the `predictions` Dense when
    `include_top`, else the `pooling` layer; the Model, with `weights` loaded."""
    from .. import layers
    from ..models import Model

    if include_top:
        x = top(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        pool = pooling_layer(pooling, *pool_names)
        if pool is not None:
            x = pool(x)
    model = Model(inputs, x, name=name)
    load_weights(model, weights)
    return model


def pooling_layer(pooling, name_avg=None, name_max=None):
    """The layer `pooling='avg'|'max'` adds after a headless network (None: no layer)."""
    from .. import layers

    if pooling is None:
        return None
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name=name_avg)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name=name_max)
    raise ValueError(f"`pooling` must be None, 'avg' or 'max'. Received: pooling={pooling!r}")


# ---------------------------------------------------------------------------- preprocessing

_CAFFE_MEAN = (103.939, 116.779, 123.68)  # B, G, R
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def preprocess_input(x, data_format=None, mode="caffe"):
    """Scale images of RGB values in [0, 255] the way a network was trained.

    'tf': to [-1, 1]; 'torch': to [0, 1] then normalized per channel with ImageNet's
    mean and std; 'caffe': RGB -> BGR, then ImageNet's per-channel mean subtracted.
    NumPy inputs give NumPy outputs; JAX arrays (traced or not) give JAX arrays.
    """
    if mode not in ("caffe", "tf", "torch"):
        raise ValueError(f"Expected mode to be one of `caffe`, `tf` or `torch`. "
                         f"Received: mode={mode}")
    fmt = "channels_last" if data_format is None else data_format
    if fmt not in ("channels_last", "channels_first"):
        raise ValueError(f"Unknown data_format {data_format!r}")
    xp = jnp if isinstance(x, jax.Array) else np
    x = xp.asarray(x)
    if not xp.issubdtype(x.dtype, xp.floating):
        x = x.astype("float32")
    if mode == "tf":
        return x / 127.5 - 1.0
    channel_axis = -1 if fmt == "channels_last" else (0 if x.ndim == 3 else 1)
    shape = [1] * x.ndim
    shape[channel_axis] = 3
    if mode == "torch":
        mean = xp.asarray(_TORCH_MEAN, x.dtype).reshape(shape)
        std = xp.asarray(_TORCH_STD, x.dtype).reshape(shape)
        return (x / 255.0 - mean) / std
    x = xp.flip(x, axis=channel_axis)  # RGB -> BGR
    return x - xp.asarray(_CAFFE_MEAN, x.dtype).reshape(shape)


def decode_predictions(preds, top=5, class_index_path=None):
    """`[(class_id, class_name, score), ...]` per sample, best first.

    Needs Keras's `imagenet_class_index.json` (a local copy: jaxgraph does not download);
    pass its path as `class_index_path`.
    """
    import json

    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(
            "`decode_predictions` expects a batch of predictions (i.e. a 2D array of shape "
            f"(samples, 1000)). Received array with shape: {preds.shape}"
        )
    if class_index_path is None:
        raise ValueError(
            "decode_predictions needs Keras's `imagenet_class_index.json`; jaxgraph does not "
            "download it. Pass its local path: decode_predictions(preds, "
            "class_index_path='/path/to/imagenet_class_index.json')."
        )
    with open(class_index_path, encoding="utf-8") as f:
        index = json.load(f)
    results = []
    for row in preds:
        best = np.argsort(row)[::-1][:top]
        results.append([tuple(index[str(i)]) + (float(row[i]),) for i in best])
    return results
