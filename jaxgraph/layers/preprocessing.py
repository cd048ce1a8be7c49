"""Image preprocessing and augmentation layers (Keras's `RandomFlip`, `Resizing`, ...).

Every layer here is a pure function of its input and, for the random ones, of the
`rng` key the model's `apply` (or `fit`) hands it. Randomness happens only when
`training=True`; at inference the augmentation layers are the identity (except
`RandomCrop`, which must still produce its target size, as in Keras). Random
parameters are drawn per sample, so a batch is augmented image by image.

Geometric transforms follow Keras's conventions exactly: a transform is the
8-vector `[a0, a1, a2, b0, b1, b2, c0, c1]` mapping an output pixel `(x, y)` to
the input point `((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k)`,
`k = c0 x + c1 y + 1`, sampled with `jax.scipy.ndimage.map_coordinates`
(fill modes 'reflect', 'wrap', 'constant', 'nearest'; interpolation 'nearest' or
'bilinear'), which is what Keras does on its JAX backend.

Inputs are batched images `(batch, height, width, channels)` (or channels first
with `data_format='channels_first'`); a single image of rank 3 works too. Outputs
are in the layer's compute dtype (float32 by default), whatever the input dtype.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..graph.tensor import SymbolicTensor
from .base import InputSpec, Layer
from .conv import normalize_data_format

_FILL_MODES = ("reflect", "wrap", "constant", "nearest")
_AFFINE_INTERPOLATIONS = {"nearest": 0, "bilinear": 1}
_RESIZE_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "lanczos3", "lanczos5")
_FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


# ---------------------------------------------------------------------------- image ops


def affine_transform(images, transforms, interpolation="bilinear", fill_mode="constant",
                     fill_value=0.0):
    """Warp a batch `(n, h, w, c)` with one Keras-layout 8-vector per image `(n, 8)`."""
    if interpolation not in _AFFINE_INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {tuple(_AFFINE_INTERPOLATIONS)}, "
                         f"got {interpolation!r}")
    if fill_mode not in _FILL_MODES:
        raise ValueError(f"fill_mode must be one of {_FILL_MODES}, got {fill_mode!r}")
    order = _AFFINE_INTERPOLATIONS[interpolation]
    _, h, w, _ = images.shape
    # Coordinates stay float32 even for half-precision images (bf16 cannot count past 256).
    ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                          indexing="ij")
    t = jnp.asarray(transforms, jnp.float32)

    def coords(v):
        a0, a1, a2, b0, b1, b2, c0, c1 = (v[i] for i in range(8))
        k = c0 * xs + c1 * ys + 1.0
        return (b0 * xs + b1 * ys + b2) / k, (a0 * xs + a1 * ys + a2) / k

    def warp(image, v):
        src_y, src_x = coords(v)

        def channel(plane):
            out = jax.scipy.ndimage.map_coordinates(
                plane, [src_y, src_x], order=order, mode=fill_mode, cval=fill_value)
            return out.astype(images.dtype)

        return jax.vmap(channel, in_axes=-1, out_axes=-1)(image)

    return jax.vmap(warp)(images, t)


def _rotation_transforms(angles, h, w):
    """Keras's rotation about the image centre; `angles` in radians, one per image."""
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    zeros = jnp.zeros_like(angles)
    a2 = cx - cx * cos + cy * sin
    b2 = cy - cx * sin - cy * cos
    return jnp.stack([cos, -sin, a2, sin, cos, b2, zeros, zeros], axis=1)


def _zoom_transforms(zoom_w, zoom_h, h, w):
    zeros = jnp.zeros_like(zoom_w)
    x_off = (w - 1) / 2.0 * (1.0 - zoom_w)
    y_off = (h - 1) / 2.0 * (1.0 - zoom_h)
    return jnp.stack([zoom_w, zeros, x_off, zeros, zoom_h, y_off, zeros, zeros], axis=1)


def _translation_transforms(dx, dy):
    ones, zeros = jnp.ones_like(dx), jnp.zeros_like(dx)
    return jnp.stack([ones, zeros, -dx, zeros, ones, -dy, zeros, zeros], axis=1)


def aspect_crop_box(height, width, target_height, target_width):
    """Keras's `smart_resize` window: the largest centred crop with the target's aspect."""
    crop_h = max(min(height, int(float(width * target_height) / target_width)), 1)
    crop_w = max(min(width, int(float(height * target_width) / target_height)), 1)
    return int(float(height - crop_h) / 2), int(float(width - crop_w) / 2), crop_h, crop_w


def resize_images(images, size, interpolation="bilinear", antialias=False,
                  crop_to_aspect_ratio=False, pad_to_aspect_ratio=False, fill_value=0.0):
    """Resize `(n, h, w, c)` to `size` as Keras's `Resizing` does on JAX (`jax.image.resize`)."""
    if interpolation not in _RESIZE_INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {_RESIZE_INTERPOLATIONS}, "
                         f"got {interpolation!r}")
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("Only one of crop_to_aspect_ratio and pad_to_aspect_ratio can be True")
    th, tw = int(size[0]), int(size[1])
    n, h, w, c = images.shape
    if crop_to_aspect_ratio:
        top, left, ch, cw = aspect_crop_box(h, w, th, tw)
        images = images[:, top:top + ch, left:left + cw, :]
    elif pad_to_aspect_ratio:
        ph = max(h, int(float(w * th) / tw))
        pw = max(w, int(float(h * tw) / th))
        top, left = int(float(ph - h) / 2), int(float(pw - w) / 2)
        if top > 0:
            images = jnp.pad(images, ((0, 0), (top, top), (0, 0), (0, 0)),
                             constant_values=fill_value)
        elif left > 0:
            images = jnp.pad(images, ((0, 0), (0, 0), (left, left), (0, 0)),
                             constant_values=fill_value)
    if images.shape[1:3] == (th, tw):
        return images
    return jax.image.resize(images, (images.shape[0], th, tw, c), method=interpolation,
                            antialias=antialias)


def smart_resize(images, size, interpolation="bilinear"):
    """Centre-crop to the target aspect ratio, then resize (Keras's `smart_resize`)."""
    return resize_images(images, size, interpolation=interpolation, crop_to_aspect_ratio=True)


# ---------------------------------------------------------------------------- base


def _check_choice(value, allowed, arg, owner):
    if value not in allowed:
        raise ValueError(f"{owner}: {arg} must be one of {allowed}, got {value!r}")
    return value


def _factor_range(factor, arg, owner, low=-1.0, high=1.0, low_open=False):
    """Keras's factor forms: a number `f` means (-f, f); a pair is (lower, upper)."""

    def check(v):
        bad = v < low or v > high or (low_open and v == low)
        if bad:
            interval = f"{'(' if low_open else '['}{low}, {high}]"
            raise ValueError(f"{owner}: {arg} values must be in {interval}, got {factor!r}")
        return float(v)

    if isinstance(factor, (tuple, list)):
        if len(factor) != 2:
            raise ValueError(f"{owner}: {arg} must be a number or a pair, got {factor!r}")
        lo, hi = sorted(check(v) for v in factor)
        return lo, hi
    if isinstance(factor, (int, float)) and not isinstance(factor, bool):
        f = abs(check(factor))
        return -f, f
    raise ValueError(f"{owner}: {arg} must be a number or a pair of numbers, got {factor!r}")


class _ImageLayer(Layer):
    """Shared plumbing: layout, rank-3 inputs, float outputs, the seed folded into keys."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = normalize_data_format(data_format, type(self).__name__)
        self.input_spec = InputSpec(min_ndim=3, max_ndim=4)

    def _owner(self):
        return f"{type(self).__name__} {self.name!r}"

    def _hw_axes(self, rank):
        return (rank - 2, rank - 1) if self.data_format == "channels_first" else (rank - 3,
                                                                                   rank - 2)

    def _to_nhwc(self, x):
        """Batched channels-last compute-dtype images, and how to undo the layout change."""
        x = jnp.asarray(x)
        if x.dtype != jnp.dtype(self.compute_dtype):
            x = x.astype(self.compute_dtype)
        unbatched = x.ndim == 3
        if unbatched:
            x = x[None]
        if self.data_format == "channels_first":
            x = jnp.transpose(x, (0, 2, 3, 1))

        def back(y):
            if self.data_format == "channels_first":
                y = jnp.transpose(y, (0, 3, 1, 2))
            return y[0] if unbatched else y

        return x, back

    def _key(self, rng):
        seed = getattr(self, "seed", None)
        return rng if seed is None else jax.random.fold_in(rng, int(seed))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, *args, **kwargs):
        return SymbolicTensor(self.compute_output_shape(tuple(args[0].shape)), self.compute_dtype)


class _RandomImageLayer(_ImageLayer):
    """Augmentation: identity at inference, `_augment(images, key)` when training.

    Called directly (or inside a model called directly) without `training=`, the layer
    augments, as Keras's do: `data_augmentation(images)` shows augmented images, while
    `predict`/`evaluate` and `training=False` leave them alone.
    """

    training_by_default = True

    def call(self, w, x, training=False, rng=None):
        images, back = self._to_nhwc(x)
        if not training or rng is None:
            return back(self._inference(images))
        return back(self._augment(images, self._key(rng)))

    def _inference(self, images):
        return images

    def _augment(self, images, key):
        raise NotImplementedError


# ---------------------------------------------------------------------------- deterministic


class Rescaling(Layer):
    """`x * scale + offset` in the compute dtype (e.g. `Rescaling(1/255)` to map to [0, 1]).

    Works on any rank; `scale` and `offset` may be numbers or per-channel sequences.
    """

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale
        self.offset = offset

    def call(self, w, x):
        dtype = self.compute_dtype
        x = jnp.asarray(x).astype(dtype)
        return x * jnp.asarray(self.scale, dtype) + jnp.asarray(self.offset, dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, *args, **kwargs):
        return SymbolicTensor(tuple(args[0].shape), self.compute_dtype)


class Resizing(_ImageLayer):
    """Resize images to `(height, width)`; optionally crop or pad to keep the aspect ratio."""

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False,
                 pad_to_aspect_ratio=False, fill_mode="constant", fill_value=0.0,
                 antialias=False, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.height, self.width = int(height), int(width)
        self.interpolation = _check_choice(interpolation, _RESIZE_INTERPOLATIONS,
                                           "interpolation", self._owner())
        if crop_to_aspect_ratio and pad_to_aspect_ratio:
            raise ValueError(f"{self._owner()}: only one of crop_to_aspect_ratio and "
                             "pad_to_aspect_ratio can be True")
        self.crop_to_aspect_ratio = bool(crop_to_aspect_ratio)
        self.pad_to_aspect_ratio = bool(pad_to_aspect_ratio)
        self.fill_mode = _check_choice(fill_mode, ("constant",), "fill_mode", self._owner())
        self.fill_value = fill_value
        self.antialias = bool(antialias)

    def call(self, w, x):
        images, back = self._to_nhwc(x)
        return back(resize_images(images, (self.height, self.width), self.interpolation,
                                  self.antialias, self.crop_to_aspect_ratio,
                                  self.pad_to_aspect_ratio, self.fill_value))

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        hi, wi = self._hw_axes(len(shape))
        shape[hi], shape[wi] = self.height, self.width
        return tuple(shape)


class CenterCrop(_ImageLayer):
    """Crop the central `(height, width)` window; smaller inputs are smart-resized, as Keras."""

    def __init__(self, height, width, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.height, self.width = int(height), int(width)

    def call(self, w, x):
        images, back = self._to_nhwc(x)
        h, wd = images.shape[1:3]
        if h >= self.height and wd >= self.width:
            top, left = (h - self.height) // 2, (wd - self.width) // 2
            return back(images[:, top:top + self.height, left:left + self.width, :])
        return back(smart_resize(images, (self.height, self.width)))

    compute_output_shape = Resizing.compute_output_shape


# ---------------------------------------------------------------------------- random


class RandomFlip(_RandomImageLayer):
    """Flip each image left-right and/or top-bottom with probability 1/2 while training.

    With 'horizontal_and_vertical' the two flips are drawn independently (as in
    tf.keras 2 and the book), so all four orientations occur.
    """

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.mode = _check_choice(mode, _FLIP_MODES, "mode", self._owner())
        self.seed = seed

    def _augment(self, images, key):
        n = images.shape[0]
        kh, kv = jax.random.split(key)
        if self.mode in ("horizontal", "horizontal_and_vertical"):
            flip = jax.random.bernoulli(kh, 0.5, (n, 1, 1, 1))
            images = jnp.where(flip, images[:, :, ::-1, :], images)
        if self.mode in ("vertical", "horizontal_and_vertical"):
            flip = jax.random.bernoulli(kv, 0.5, (n, 1, 1, 1))
            images = jnp.where(flip, images[:, ::-1, :, :], images)
        return images


class _AffineLayer(_RandomImageLayer):
    def _setup_fill(self, fill_mode, interpolation, fill_value):
        self.fill_mode = _check_choice(fill_mode, _FILL_MODES, "fill_mode", self._owner())
        self.interpolation = _check_choice(interpolation, tuple(_AFFINE_INTERPOLATIONS),
                                           "interpolation", self._owner())
        self.fill_value = float(fill_value)

    def _warp(self, images, transforms):
        return affine_transform(images, transforms, self.interpolation, self.fill_mode,
                                self.fill_value)


class RandomRotation(_AffineLayer):
    """Rotate each image by a random angle in `factor * 360` degrees while training.

    `factor=0.1` draws angles in [-36, 36] degrees; `(0.25, 0.25)` always rotates a
    quarter turn (counter-clockwise as displayed, like `np.rot90`).
    """

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.factor = factor
        self.lower, self.upper = _factor_range(factor, "factor", self._owner())
        self._setup_fill(fill_mode, interpolation, fill_value)
        self.seed = seed

    def _augment(self, images, key):
        n, h, w, _ = images.shape
        turns = jax.random.uniform(key, (n,), minval=self.lower, maxval=self.upper)
        angles = turns * 2.0 * math.pi
        return self._warp(images, _rotation_transforms(angles, h, w))


class RandomZoom(_AffineLayer):
    """Zoom each image by a random factor while training (positive factors zoom out).

    The zoom is `1 + uniform(height_factor)`; `width_factor=None` keeps the aspect
    ratio (the same zoom on both axes), as in Keras.
    """

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.height_factor = height_factor
        self.width_factor = width_factor
        self.height_lower, self.height_upper = _factor_range(
            height_factor, "height_factor", self._owner(), low_open=True)
        if width_factor is not None:
            self.width_lower, self.width_upper = _factor_range(
                width_factor, "width_factor", self._owner(), low_open=True)
        self._setup_fill(fill_mode, interpolation, fill_value)
        self.seed = seed

    def _augment(self, images, key):
        n, h, w, _ = images.shape
        kh, kw = jax.random.split(key)
        zoom_h = 1.0 + jax.random.uniform(kh, (n,), minval=self.height_lower,
                                          maxval=self.height_upper)
        if self.width_factor is None:
            zoom_w = zoom_h
        else:
            zoom_w = 1.0 + jax.random.uniform(kw, (n,), minval=self.width_lower,
                                              maxval=self.width_upper)
        return self._warp(images, _zoom_transforms(zoom_w, zoom_h, h, w))


class RandomTranslation(_AffineLayer):
    """Shift each image by random fractions of its height and width while training."""

    def __init__(self, height_factor, width_factor, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.height_factor = height_factor
        self.width_factor = width_factor
        self.height_lower, self.height_upper = _factor_range(
            height_factor, "height_factor", self._owner())
        self.width_lower, self.width_upper = _factor_range(
            width_factor, "width_factor", self._owner())
        self._setup_fill(fill_mode, interpolation, fill_value)
        self.seed = seed

    def _augment(self, images, key):
        n, h, w, _ = images.shape
        kh, kw = jax.random.split(key)
        dy = jax.random.uniform(kh, (n,), minval=self.height_lower,
                                maxval=self.height_upper) * h
        dx = jax.random.uniform(kw, (n,), minval=self.width_lower,
                                maxval=self.width_upper) * w
        return self._warp(images, _translation_transforms(dx, dy))


class RandomContrast(_RandomImageLayer):
    """Scale each channel's deviation from its mean by a random factor while training.

    The factor is drawn from `[1 - lower, 1 + upper]`, where a number `f` means
    `lower = upper = f` (Keras's documented behaviour); outputs are clipped to
    `value_range`.
    """

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor
        if isinstance(factor, (tuple, list)):
            lower, upper = _factor_range(factor, "factor", self._owner(), low=0.0)
        else:
            lower = upper = _factor_range(factor, "factor", self._owner(), low=0.0)[1]
        self.lower, self.upper = lower, upper
        self.value_range = tuple(sorted(value_range))
        self.seed = seed

    def _augment(self, images, key):
        n = images.shape[0]
        f = jax.random.uniform(key, (n, 1, 1, 1), minval=1.0 - self.lower,
                               maxval=1.0 + self.upper, dtype=images.dtype)
        mean = jnp.mean(images, axis=(1, 2), keepdims=True)
        out = (images - mean) * f + mean
        return jnp.clip(out, self.value_range[0], self.value_range[1])


class RandomBrightness(_RandomImageLayer):
    """Add a random offset, a fraction `factor` of `value_range`, to each image while training."""

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor
        self.lower, self.upper = _factor_range(factor, "factor", self._owner())
        if not isinstance(value_range, (tuple, list)) or len(value_range) != 2:
            raise ValueError(f"{self._owner()}: value_range must be a pair (low, high), "
                             f"got {value_range!r}")
        self.value_range = tuple(sorted(value_range))
        self.seed = seed

    def _augment(self, images, key):
        n = images.shape[0]
        lo, hi = self.value_range
        delta = jax.random.uniform(key, (n, 1, 1, 1), minval=self.lower, maxval=self.upper,
                                   dtype=images.dtype) * (hi - lo)
        return jnp.clip(images + delta, lo, hi)


class RandomCrop(_RandomImageLayer):
    """Crop a random `(height, width)` window of each image while training.

    At inference (and for inputs smaller than the target) the image is smart-resized
    instead: the largest centred window with the target's aspect ratio, resized to
    the target, which is what Keras does.
    """

    def __init__(self, height, width, seed=None, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.height, self.width = int(height), int(width)
        self.seed = seed

    def _inference(self, images):
        return smart_resize(images, (self.height, self.width))

    def _augment(self, images, key):
        n, h, w, c = images.shape
        if h < self.height or w < self.width:
            return smart_resize(images, (self.height, self.width))
        kh, kw = jax.random.split(key)
        tops = jax.random.randint(kh, (n,), 0, h - self.height + 1)
        lefts = jax.random.randint(kw, (n,), 0, w - self.width + 1)

        def crop(image, top, left):
            return jax.lax.dynamic_slice(image, (top, left, 0), (self.height, self.width, c))

        return jax.vmap(crop)(images, tops, lefts)

    compute_output_shape = Resizing.compute_output_shape


__all__ = [
    "CenterCrop",
    "RandomBrightness",
    "RandomContrast",
    "RandomCrop",
    "RandomFlip",
    "RandomRotation",
    "RandomTranslation",
    "RandomZoom",
    "Rescaling",
    "Resizing",
    "affine_transform",
    "resize_images",
    "smart_resize",
]
