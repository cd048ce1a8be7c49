"""Seeing what a convnet learned (DLwP 5.4): activations, filter patterns, Grad-CAM.

Everything runs through the model's own pure `apply` under `jax.jit`, with the
model's current variables. To read (or perturb) the output of an inner layer,
that layer's `forward` is wrapped for the duration of one trace: this reaches
layers nested inside sub-models (a pretrained `conv_base` used as a layer), and
XLA drops whatever the requested values do not depend on. All functions return
NumPy arrays; the `plot_*` ones also write a PNG with matplotlib (Agg backend).
"""

from __future__ import annotations

import contextlib
import math

import jax
import jax.numpy as jnp
import numpy as np

from .graph.functional import Functional

# ---------------------------------------------------------------------------- graph walking


def _walk(model):
    """(layer, output shape) of every non-input leaf layer, in execution order, nested too."""
    model._require_graph()
    seen = set()
    for node in model._nodes_in_order:
        layer = node.layer
        if isinstance(layer, Functional):
            yield from _walk(layer)
            continue
        if layer.is_input_layer or id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer, tuple(node.output_tensors[0].shape)


def _resolve(model, name):
    """The leaf layer called `name`; a nested model stands for the layer that ends it."""
    for node in model._nodes_in_order:
        layer = node.layer
        if layer.name == name:
            if isinstance(layer, Functional):
                producer = layer.outputs[0].node.layer
                if isinstance(producer, Functional) or producer.is_input_layer:
                    return _resolve(layer, producer.name)
                return producer
            return layer
        if isinstance(layer, Functional):
            found = _resolve_or_none(layer, name)
            if found is not None:
                return found
    raise ValueError(f"No layer named {name!r} in model {model.name!r}; layers: "
                     f"{[layer.name for layer, _ in _walk(model)]}")


def _resolve_or_none(model, name):
    try:
        return _resolve(model, name)
    except ValueError:
        return None


def _shape_of(model, layer):
    for candidate, shape in _walk(model):
        if candidate is layer:
            return shape
    raise ValueError(f"Layer {layer.name!r} is not part of model {model.name!r}")


@contextlib.contextmanager
def _tapped(layers_, captured, deltas=None):
    """Record (and optionally shift) the outputs of `layers_` while a function is traced."""
    saved = []
    for layer in layers_:
        saved.append((layer, layer.__dict__.get("forward")))
        original = layer.forward

        def forward(w, *args, _orig=original, _name=layer.name, **kwargs):
            out, updates = _orig(w, *args, **kwargs)
            if deltas is not None and _name in deltas and _name not in captured:
                out = out + deltas[_name]
            captured.setdefault(_name, out)  # a shared layer: its first call
            return out, updates

        layer.forward = forward
    try:
        yield captured
    finally:
        for layer, previous in saved:
            if previous is None:
                del layer.forward
            else:
                layer.forward = previous


def _cached(model, key, build):
    """One jitted function per (model, purpose), kept on the model so repeated calls
    (a grid of 16 filter patterns) compile once and the cache dies with the model."""
    cache = model.__dict__.setdefault("_jaxgraph_vis_cache", {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


def _as_batch(model, x):
    x = np.asarray(x)
    want = len(model.inputs[0].shape)
    single = x.ndim == want - 1
    return (x[None] if single else x), single


# ---------------------------------------------------------------------------- activations


def activations(model, x, layer_names=None) -> dict[str, np.ndarray]:
    """`{layer name: output}` for every layer (or those named) on input batch `x`.

    One jitted `apply` computes them all; layers inside nested models are included.
    A single unbatched input gets a batch axis of 1.
    """
    x, _ = _as_batch(model, x)
    if layer_names is None:
        targets = [layer for layer, _ in _walk(model)]
    else:
        targets = [_resolve(model, n) for n in layer_names]

    def run(variables, inputs):
        captured = {}
        with _tapped(targets, captured):
            model.apply(variables, inputs)
        return {layer.name: captured[layer.name] for layer in targets}

    key = ("activations", tuple(id(layer) for layer in targets))
    out = _cached(model, key, lambda: jax.jit(run))(model.variables, x)
    names = layer_names if layer_names is not None else [layer.name for layer in targets]
    # Layers with several outputs (an LSTM's states) give a list of arrays.
    return {name: jax.tree_util.tree_map(np.asarray, out[layer.name])
            for name, layer in zip(names, targets)}


def _channel_grid(fmap, images_per_row):
    """The book's display: each channel standardized, tiled `images_per_row` wide."""
    h, w, channels = fmap.shape
    cols = min(images_per_row, channels)
    rows = math.ceil(channels / cols)
    grid = np.zeros((rows * h, cols * w), np.uint8)
    for c in range(channels):
        ch = fmap[:, :, c].astype(np.float64)
        ch = (ch - ch.mean()) / (ch.std() + 1e-5) * 64 + 128
        r, k = divmod(c, cols)
        grid[r * h:(r + 1) * h, k * w:(k + 1) * w] = np.clip(ch, 0, 255).astype(np.uint8)
    return grid


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_activations(model, x, to_file, layer_names=None, images_per_row=16):
    """Save a grid of every channel of each image-shaped layer output for `x[0]`.

    Returns `{layer name: grid}` (uint8 grids, one tile per channel).
    """
    x, _ = _as_batch(model, x)
    if layer_names is None:
        layer_names = [layer.name for layer, shape in _walk(model) if len(shape) == 4]
    if not layer_names:
        raise ValueError(f"Model {model.name!r} has no layer with image-shaped (rank 4) output")
    acts = activations(model, x[:1], layer_names)
    grids = {}
    for name, value in acts.items():
        if value.ndim != 4:
            raise ValueError(f"Layer {name!r} has output shape {value.shape}; plot_activations "
                             "needs (batch, height, width, channels)")
        grids[name] = _channel_grid(value[0], images_per_row)
    plt = _pyplot()
    heights = [g.shape[0] / g.shape[1] for g in grids.values()]
    fig, axes = plt.subplots(len(grids), 1, squeeze=False,
                             figsize=(12, max(2.0, 12 * sum(heights) + len(grids) * 0.5)),
                             gridspec_kw={"height_ratios": heights})
    for ax, (name, grid) in zip(axes[:, 0], grids.items()):
        ax.imshow(grid, aspect="auto", cmap="viridis")
        ax.set_title(name)
        ax.grid(False)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(to_file)
    plt.close(fig)
    return grids


# ---------------------------------------------------------------------------- filter patterns


def _deprocess(img):
    """The book's `deprocess_image`: zero mean, std 0.1, centred on 0.5, clipped to [0, 1]."""
    img = img - img.mean()
    img = img / (img.std() + 1e-5) * 0.1 + 0.5
    return jnp.clip(img, 0.0, 1.0)


def _input_shape(model, size):
    shape = tuple(model.inputs[0].shape[1:])
    if size is not None:
        size = (size, size) if isinstance(size, int) else tuple(size)
        for want, got in zip(shape[:2], size):
            if want is not None and want != got:
                raise ValueError(f"Model {model.name!r} takes images of size {shape[:2]}, "
                                 f"got size={size}")
        shape = size + shape[2:]
    if any(d is None for d in shape):
        raise ValueError(f"Model {model.name!r} has input shape {shape}: pass size=(h, w)")
    return shape


def _pattern_fn(model, layer, steps, step_size):
    def mean_activation(variables, img, index):
        captured = {}
        with _tapped([layer], captured):
            model.apply(variables, img[None])
        return jnp.mean(jnp.take(captured[layer.name], index, axis=-1))

    grad = jax.grad(mean_activation, argnums=1)

    def ascend(variables, img0, index):
        def step(_, img):
            g = grad(variables, img, index)
            return img + step_size * g / (jnp.sqrt(jnp.mean(g * g)) + 1e-5)

        img = jax.lax.fori_loop(0, steps, step, img0)
        return img, mean_activation(variables, img0, index), mean_activation(variables, img,
                                                                             index)

    return jax.jit(ascend)


def filter_pattern(model, layer_name, filter_index, steps=40, step_size=1.0, size=None, seed=0,
                   return_activations=False):
    """The input that maximizes filter `filter_index` of `layer_name` (gradient ascent).

    Starts from a gray image with a little noise (values in [0.4, 0.6], from `seed`)
    and takes `steps` steps of RMS-normalized gradient (`step_size` in input units)
    on the filter's mean activation, computed by `jax.grad` through `model.apply`.
    Returns the image deprocessed to [0, 1], shape `(h, w, channels)`; with
    `return_activations=True` also the mean activation before and after.
    """
    layer = _resolve(model, layer_name)
    shape = _input_shape(model, size)
    img0 = 0.4 + 0.2 * jax.random.uniform(jax.random.key(seed), shape)
    ascend = _cached(model, ("pattern", id(layer), int(steps), float(step_size)),
                     lambda: _pattern_fn(model, layer, int(steps), float(step_size)))
    img, before, after = ascend(model.variables, img0, int(filter_index))
    out = np.asarray(_deprocess(img))
    if return_activations:
        return out, float(before), float(after)
    return out


def plot_filters(model, layer_name, to_file, filter_indices=None, images_per_row=8, margin=1,
                 **kwargs):
    """Save a grid of `filter_pattern`s (the first 16 filters unless indices are given)."""
    layer = _resolve(model, layer_name)
    channels = _shape_of(model, layer)[-1]
    if filter_indices is None:
        filter_indices = range(min(16, channels))
    patterns = [filter_pattern(model, layer_name, i, **kwargs) for i in filter_indices]
    h, w, c = patterns[0].shape
    cols = min(images_per_row, len(patterns))
    rows = math.ceil(len(patterns) / cols)
    grid = np.ones((rows * (h + margin) - margin, cols * (w + margin) - margin, c), np.float32)
    for i, p in enumerate(patterns):
        r, k = divmod(i, cols)
        grid[r * (h + margin):r * (h + margin) + h, k * (w + margin):k * (w + margin) + w] = p
    plt = _pyplot()
    fig = plt.figure(figsize=(2 * cols, 2 * rows))
    plt.imshow(grid[..., 0] if c == 1 else grid[..., :3], cmap="gray" if c == 1 else None)
    plt.axis("off")
    plt.title(f"{layer_name}: filters {list(filter_indices)}")
    fig.savefig(to_file)
    plt.close(fig)
    return grid


# ---------------------------------------------------------------------------- Grad-CAM


def last_conv_layer(model):
    """The last layer with image-shaped output that is a convolution (nested models too)."""
    candidates = [(layer, shape) for layer, shape in _walk(model) if len(shape) == 4]
    convs = [layer for layer, _ in candidates if "Conv" in type(layer).__name__]
    if convs:
        return convs[-1]
    if candidates:
        return candidates[-1][0]
    raise ValueError(f"Model {model.name!r} has no layer with (batch, h, w, channels) output; "
                     "Grad-CAM needs a convolutional feature map")


def _grad_cam_fn(model, layer, out_hw):
    def score(delta, variables, x, classes):
        captured = {}
        with _tapped([layer], captured, {layer.name: delta}):
            outputs, _ = model.apply(variables, x)
        preds = jax.tree_util.tree_leaves(outputs)[0]
        preds = preds.reshape(preds.shape[0], -1)
        picked = jnp.take_along_axis(preds, classes[:, None], axis=1)
        return jnp.sum(picked), (captured[layer.name], preds)

    def cam(variables, x, classes, delta):
        grads, (fmap, preds) = jax.grad(score, has_aux=True)(delta, variables, x, classes)
        weights = jnp.mean(grads, axis=(1, 2), keepdims=True)
        heat = jax.nn.relu(jnp.sum(weights * fmap, axis=-1))
        heat = jax.image.resize(heat, (heat.shape[0], *out_hw), method="bilinear")
        heat = jnp.maximum(heat, 0.0)
        peak = jnp.max(heat, axis=(1, 2), keepdims=True)
        return jnp.where(peak > 0, heat / jnp.where(peak > 0, peak, 1.0), 0.0), preds

    return jax.jit(cam)


def _predicted_classes(model, x):
    def run(variables, inputs):
        outputs, _ = model.apply(variables, inputs)
        preds = jax.tree_util.tree_leaves(outputs)[0]
        return jnp.argmax(preds.reshape(preds.shape[0], -1), axis=1)

    return np.asarray(_cached(model, ("classes",), lambda: jax.jit(run))(model.variables, x))


def grad_cam(model, x, class_index=None, layer_name=None):
    """Grad-CAM heatmaps in [0, 1] with `x`'s spatial size: `(h, w)`, or `(n, h, w)`.

    The class score (the model's first output; `class_index` an int, one per sample,
    or None for the predicted class) is differentiated with respect to the feature
    map of `layer_name` (default: the last convolution); channels are weighted by
    their mean gradient, summed, rectified, resized and scaled to a maximum of 1.
    """
    x, single = _as_batch(model, x)
    x = x.astype(np.float32) if not np.issubdtype(x.dtype, np.floating) else x
    layer = _resolve(model, layer_name) if layer_name else last_conv_layer(model)
    fshape = _shape_of(model, layer)
    if len(fshape) != 4:
        raise ValueError(f"Layer {layer.name!r} has output shape {fshape}; Grad-CAM needs "
                         "(batch, height, width, channels)")
    if class_index is None:
        classes = _predicted_classes(model, x)
    else:
        classes = np.broadcast_to(np.asarray(class_index, np.int32), (x.shape[0],))
    probe = {}

    def shape_probe(variables, inputs):
        with _tapped([layer], probe):
            model.apply(variables, inputs)
        return probe[layer.name]

    fmap = jax.eval_shape(shape_probe, model.variables, x)
    delta = jnp.zeros(fmap.shape, fmap.dtype)
    out_hw = tuple(x.shape[1:3])
    cam = _cached(model, ("grad_cam", id(layer), out_hw),
                  lambda: _grad_cam_fn(model, layer, out_hw))
    heat, _ = cam(model.variables, x, jnp.asarray(classes, jnp.int32), delta)
    heat = np.asarray(heat, np.float32)
    return heat[0] if single else heat


def overlay(image, heatmap, alpha=0.4, cmap="jet"):
    """`(h, w, 3)` in [0, 1]: the image (min-max scaled, gray to RGB) under a coloured map."""
    plt = _pyplot()
    img = np.asarray(image, np.float32)
    if img.ndim == 2:
        img = img[..., None]
    img = img[..., :3]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    lo, hi = img.min(), img.max()
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    colours = plt.get_cmap(cmap)(np.clip(heatmap, 0, 1))[..., :3]
    return np.clip((1 - alpha) * img + alpha * colours, 0.0, 1.0).astype(np.float32)


def plot_grad_cam(model, x, to_file, alpha=0.4, class_index=None, layer_name=None):
    """Save the Grad-CAM heatmap over the image(s); returns the overlays `(…, h, w, 3)`."""
    batch, single = _as_batch(model, x)
    heat = grad_cam(model, batch, class_index=class_index, layer_name=layer_name)
    overlays = np.stack([overlay(img, h, alpha) for img, h in zip(batch, heat)])
    plt = _pyplot()
    n = len(overlays)
    fig, axes = plt.subplots(1, n, squeeze=False, figsize=(3 * n, 3.2))
    for ax, img in zip(axes[0], overlays):
        ax.imshow(img)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(to_file)
    plt.close(fig)
    return overlays[0] if single else overlays


__all__ = ["activations", "filter_pattern", "grad_cam", "last_conv_layer", "overlay",
           "plot_activations", "plot_filters", "plot_grad_cam"]
