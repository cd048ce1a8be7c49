"""Keras's image utilities (`keras.preprocessing.image`): files, arrays and augmentation.

`load_img` / `img_to_array` / `array_to_img` / `save_img` use PIL as Keras does.
`smart_resize` and `resize` work on NumPy arrays on the host and reproduce
`tf.image.resize` (half-pixel centres, no antialiasing) for 'bilinear' and
'nearest' (other methods go through `jax.image.resize`).

`ImageDataGenerator` is the book's (DLwP 1st ed., 5.2) real-time augmentation:
`flow(x, y)` and `flow_from_directory(directory)` return endless batch iterators,
as in Keras, with `len()` = batches per epoch; give `fit` `steps_per_epoch`.
Random transforms are drawn per image on the host and applied with the same
affine warp the augmentation layers use (`jaxgraph.layers.preprocessing`).
"""

from __future__ import annotations

import io
import math
import os
import pathlib
import threading

import numpy as np

_PIL_METHODS = ("nearest", "bilinear", "bicubic", "hamming", "box", "lanczos")
_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff")


def _pil():
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - pillow is a dependency
        raise ImportError("Image loading needs Pillow: pip install pillow") from e
    return Image


# ---------------------------------------------------------------------------- files


def load_img(path, color_mode="rgb", target_size=None, interpolation="nearest",
             keep_aspect_ratio=False):
    """A PIL image from a file, converted to `color_mode` and optionally resized by PIL."""
    Image = _pil()
    if isinstance(path, io.BytesIO):
        img = Image.open(path)
    elif isinstance(path, (pathlib.Path, bytes, str)):
        with open(path, "rb") as f:
            img = Image.open(io.BytesIO(f.read()))
    else:
        raise TypeError(f"path should be path-like or io.BytesIO, not {type(path)}")
    if color_mode == "grayscale":
        if img.mode not in ("L", "I;16", "I"):
            img = img.convert("L")
    elif color_mode == "rgba":
        if img.mode != "RGBA":
            img = img.convert("RGBA")
    elif color_mode == "rgb":
        if img.mode != "RGB":
            img = img.convert("RGB")
    else:
        raise ValueError('color_mode must be "grayscale", "rgb", or "rgba"')
    if target_size is not None:
        wh = (int(target_size[1]), int(target_size[0]))
        if img.size != wh:
            if interpolation not in _PIL_METHODS:
                raise ValueError(f"Invalid interpolation method {interpolation!r}; supported: "
                                 f"{', '.join(_PIL_METHODS)}")
            resample = getattr(Image.Resampling, interpolation.upper())
            if keep_aspect_ratio:
                width, height = img.size
                crop_h = min(height, (width * wh[1]) // wh[0])
                crop_w = min(width, (height * wh[0]) // wh[1])
                top, left = (height - crop_h) // 2, (width - crop_w) // 2
                img = img.crop((left, top, left + crop_w, top + crop_h))
            img = img.resize(wh, resample)
    return img


def img_to_array(img, data_format=None, dtype="float32"):
    """`(height, width, channels)` array from a PIL image (channels first if asked)."""
    x = np.asarray(img, dtype=dtype)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise ValueError(f"Unsupported image shape: {x.shape}")
    if data_format == "channels_first":
        x = x.transpose(2, 0, 1)
    return x


def array_to_img(x, data_format=None, scale=True, dtype="float32"):
    """A PIL image from a rank-3 array; `scale` stretches values to [0, 255] first."""
    Image = _pil()
    x = np.array(x, dtype=dtype)
    if x.ndim != 3:
        raise ValueError(f"Expected image array to have rank 3 (single image). Got array with "
                         f"shape: {x.shape}")
    if data_format == "channels_first":
        x = x.transpose(1, 2, 0)
    if scale:
        x = x - np.min(x)
        x_max = np.max(x)
        if x_max != 0:
            x /= x_max
        x *= 255
    channels = x.shape[2]
    if channels == 4:
        return Image.fromarray(x.astype("uint8"), "RGBA")
    if channels == 3:
        return Image.fromarray(x.astype("uint8"), "RGB")
    if channels == 1:
        if np.max(x) > 255:
            return Image.fromarray(x[:, :, 0].astype("int32"), "I")
        return Image.fromarray(x[:, :, 0].astype("uint8"), "L")
    raise ValueError(f"Unsupported channel number: {channels}")


def save_img(path, x, data_format=None, file_format=None, scale=True, **kwargs):
    """Write a rank-3 array as an image file (format from the suffix unless given)."""
    img = array_to_img(x, data_format=data_format, scale=scale)
    if img.mode == "RGBA" and (file_format == "jpeg" or str(path).lower().endswith(
            (".jpg", ".jpeg"))):
        img = img.convert("RGB")
    img.save(path, format=file_format, **kwargs)


# ---------------------------------------------------------------------------- resizing


def _axis_weights(n_in: int, n_out: int, method: str):
    """Source indices and weights along one axis, as tf.image.resize (half-pixel centres)."""
    scale = n_in / n_out
    centre = (np.arange(n_out) + 0.5) * scale
    if method == "nearest":
        idx = np.clip(np.floor(centre).astype(np.int64), 0, n_in - 1)
        return idx, idx, np.zeros(n_out, np.float32)
    src = centre - 0.5
    lo = np.floor(src)
    frac = (src - lo).astype(np.float32)
    lo = lo.astype(np.int64)
    return np.clip(lo, 0, n_in - 1), np.clip(lo + 1, 0, n_in - 1), frac


def resize(x, size, interpolation="bilinear"):
    """Resize `(h, w, c)` or `(n, h, w, c)` on the host; float32 result."""
    x = np.asarray(x, np.float32)
    th, tw = int(size[0]), int(size[1])
    batched = x.ndim == 4
    if not batched:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"resize expects (h, w, c) or (n, h, w, c), got shape {x.shape}")
    h, w = x.shape[1:3]
    if (h, w) == (th, tw):
        out = x
    elif interpolation in ("bilinear", "nearest"):
        r0, r1, fr = _axis_weights(h, th, interpolation)
        c0, c1, fc = _axis_weights(w, tw, interpolation)
        rows = x[:, r0] * (1 - fr)[None, :, None, None] + x[:, r1] * fr[None, :, None, None]
        out = (rows[:, :, c0] * (1 - fc)[None, None, :, None]
               + rows[:, :, c1] * fc[None, None, :, None])
    else:
        from ..layers.preprocessing import resize_images

        out = np.asarray(resize_images(x, (th, tw), interpolation=interpolation))
    return out if batched else out[0]


def smart_resize(x, size, interpolation="bilinear", data_format="channels_last"):
    """Resize without distortion: crop the largest centred window of the target's aspect."""
    from ..layers.preprocessing import aspect_crop_box

    x = np.asarray(x)
    if data_format == "channels_first":
        x = np.moveaxis(x, -3, -1)
    h, w = x.shape[-3:-1]
    top, left, ch, cw = aspect_crop_box(h, w, int(size[0]), int(size[1]))
    out = resize(x[..., top:top + ch, left:left + cw, :], size, interpolation)
    return np.moveaxis(out, -1, -3) if data_format == "channels_first" else out


# ---------------------------------------------------------------------------- augmentation


def _range(value, arg):
    if np.isscalar(value):
        return [1 - value, 1 + value] if arg == "zoom_range" else [-value, value]
    if len(value) != 2:
        raise ValueError(f"{arg} should be a float or a tuple or list of two floats; "
                         f"got {value!r}")
    return [float(value[0]), float(value[1])]


def _scipy_style_warp(images, transforms, order, fill_mode, cval):
    """Warp like `scipy.ndimage.affine_transform`, which Keras's legacy generator uses.

    'nearest' and 'reflect' are the same in JAX; scipy's 'constant' (no interpolation
    beyond the edge) and 'wrap' (period n - 1) are emulated on the coordinates.
    """
    import jax
    import jax.numpy as jnp

    _, h, w, _ = images.shape
    ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                          indexing="ij")

    def warp(image, t):
        src_x = t[0] * xs + t[1] * ys + t[2]
        src_y = t[3] * xs + t[4] * ys + t[5]
        mode = fill_mode
        if fill_mode == "wrap":
            src_y = jnp.mod(src_y, max(h - 1, 1))
            src_x = jnp.mod(src_x, max(w - 1, 1))
            mode = "nearest"
        elif fill_mode == "constant":
            mode = "nearest"

        def channel(plane):
            return jax.scipy.ndimage.map_coordinates(plane, [src_y, src_x], order=order,
                                                     mode=mode)

        out = jax.vmap(channel, in_axes=-1, out_axes=-1)(image)
        if fill_mode == "constant":
            eps = 1e-3
            inside = ((src_y >= -eps) & (src_y <= h - 1 + eps)
                      & (src_x >= -eps) & (src_x <= w - 1 + eps))
            out = jnp.where(inside[..., None], out, cval)
        return out

    return jax.vmap(warp)(images, jnp.asarray(transforms, jnp.float32))


class ImageDataGenerator:
    """Batches of randomly transformed images (Keras's legacy `ImageDataGenerator`).

    Supported: `rotation_range` (degrees), `width_shift_range` / `height_shift_range`
    (fractions of the size if < 1, pixels otherwise), `shear_range` (degrees),
    `zoom_range`, `horizontal_flip`, `vertical_flip`, `brightness_range` (a factor
    multiplying the image), `channel_shift_range`, `fill_mode`, `cval`, `rescale`,
    `preprocessing_function`, sample-wise and feature-wise centring and
    normalization (`fit(x)` for the latter) and `validation_split` (with
    `subset='training' | 'validation'` in `flow` / `flow_from_directory`).
    """

    def __init__(self, featurewise_center=False, samplewise_center=False,
                 featurewise_std_normalization=False, samplewise_std_normalization=False,
                 rotation_range=0, width_shift_range=0.0, height_shift_range=0.0,
                 brightness_range=None, shear_range=0.0, zoom_range=0.0,
                 channel_shift_range=0.0, fill_mode="nearest", cval=0.0, horizontal_flip=False,
                 vertical_flip=False, rescale=None, preprocessing_function=None,
                 data_format=None, validation_split=0.0, interpolation_order=1,
                 dtype="float32"):
        if fill_mode not in ("constant", "nearest", "reflect", "wrap"):
            raise ValueError(f"fill_mode must be 'constant', 'nearest', 'reflect' or 'wrap'; "
                             f"got {fill_mode!r}")
        if data_format not in (None, "channels_last", "channels_first"):
            raise ValueError(f"data_format must be 'channels_last' or 'channels_first'; got "
                             f"{data_format!r}")
        if not 0 <= validation_split < 1:
            raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
        if interpolation_order not in (0, 1):
            raise ValueError("interpolation_order must be 0 (nearest) or 1 (bilinear)")
        self.featurewise_center = featurewise_center
        self.samplewise_center = samplewise_center
        self.featurewise_std_normalization = featurewise_std_normalization
        self.samplewise_std_normalization = samplewise_std_normalization
        self.rotation_range = rotation_range
        self.width_shift_range = width_shift_range
        self.height_shift_range = height_shift_range
        self.brightness_range = None if brightness_range is None else _range(
            brightness_range, "brightness_range")
        self.shear_range = shear_range
        self.zoom_range = _range(zoom_range, "zoom_range")
        self.channel_shift_range = channel_shift_range
        self.fill_mode = fill_mode
        self.cval = cval
        self.horizontal_flip = horizontal_flip
        self.vertical_flip = vertical_flip
        self.rescale = rescale
        self.preprocessing_function = preprocessing_function
        self.data_format = data_format or "channels_last"
        self.validation_split = validation_split
        self.interpolation_order = interpolation_order
        self.dtype = dtype
        self.mean = None
        self.std = None
        self._warp_fn = None

    # ------------------------------------------------------------------ parameters

    def get_random_transform(self, img_shape, seed=None):
        """The random parameters for one image (a dict, as Keras's)."""
        rng = np.random.RandomState(seed) if seed is not None else np.random
        h, w = (img_shape[1], img_shape[2]) if self.data_format == "channels_first" else (
            img_shape[0], img_shape[1])

        def shift(spec, size):
            # Keras: ints and lists pick a pixel offset with a random sign, floats are
            # uniform; everything below 1 is a fraction of the size.
            if not np.any(spec):
                return 0.0
            if isinstance(spec, (int, np.integer, list, tuple, np.ndarray)):
                value = float(rng.choice(spec)) * float(rng.choice([-1, 1]))
            else:
                value = float(rng.uniform(-spec, spec))
            return value * size if np.max(spec) < 1 else value

        zx, zy = ((1.0, 1.0) if self.zoom_range == [1.0, 1.0]
                  else tuple(rng.uniform(self.zoom_range[0], self.zoom_range[1], 2)))
        return {
            "theta": float(rng.uniform(-self.rotation_range, self.rotation_range))
            if self.rotation_range else 0.0,
            "tx": shift(self.height_shift_range, h),
            "ty": shift(self.width_shift_range, w),
            "shear": float(rng.uniform(-self.shear_range, self.shear_range))
            if self.shear_range else 0.0,
            "zx": float(zx),
            "zy": float(zy),
            "flip_horizontal": bool(self.horizontal_flip and rng.rand() < 0.5),
            "flip_vertical": bool(self.vertical_flip and rng.rand() < 0.5),
            "channel_shift_intensity": float(rng.uniform(-self.channel_shift_range,
                                                         self.channel_shift_range))
            if self.channel_shift_range else None,
            "brightness": float(rng.uniform(*self.brightness_range))
            if self.brightness_range is not None else None,
        }

    @staticmethod
    def _transform_vector(params, h, w):
        """Keras 3's legacy matrix as an 8-vector on (x, y) = (column, row).

        Keras builds the matrix on (x, y) but centres it with (h, w) and shifts x by
        `tx` (from `height_shift_range`): for non-square images and shifts this is
        not what the argument names say, yet it is what Keras (2 and 3) computes, so
        it is reproduced exactly.
        """
        theta, shear = np.deg2rad(params.get("theta", 0)), np.deg2rad(params.get("shear", 0))
        tx, ty = params.get("tx", 0), params.get("ty", 0)
        zx, zy = params.get("zx", 1), params.get("zy", 1)
        m = np.eye(3)
        if theta:
            m = m @ np.array([[np.cos(theta), -np.sin(theta), 0],
                              [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
        if tx or ty:
            m = m @ np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
        if shear:
            m = m @ np.array([[1, -np.sin(shear), 0], [0, np.cos(shear), 0], [0, 0, 1]])
        if zx != 1 or zy != 1:
            m = m @ np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
        ox, oy = h / 2 - 0.5, w / 2 - 0.5
        m = (np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]]) @ m
             @ np.array([[1, 0, -ox], [0, 1, -oy], [0, 0, 1]]))
        return np.array([m[0, 0], m[0, 1], m[0, 2], m[1, 0], m[1, 1], m[1, 2], 0, 0],
                        np.float32)

    def _warp(self, batch, vectors):
        if self._warp_fn is None:
            import jax

            self._warp_fn = jax.jit(lambda x, t: _scipy_style_warp(
                x, t, self.interpolation_order, self.fill_mode, float(self.cval)))
        return np.asarray(self._warp_fn(batch, vectors))

    def apply_transforms(self, batch, params_list):
        """Apply one parameter dict per image to a channels-last float batch."""
        n, h, w, _ = batch.shape
        vectors = np.stack([self._transform_vector(p, h, w) for p in params_list])
        identity = np.array([1, 0, 0, 0, 1, 0, 0, 0], np.float32)
        if not np.allclose(vectors, identity):
            batch = self._warp(batch.astype(np.float32), vectors)
        out = np.array(batch, dtype=np.float32)
        for i, p in enumerate(params_list):
            if p.get("channel_shift_intensity") is not None:
                lo, hi = out[i].min(), out[i].max()
                out[i] = np.clip(out[i] + p["channel_shift_intensity"], lo, hi)
            if p.get("flip_horizontal"):
                out[i] = out[i, :, ::-1]
            if p.get("flip_vertical"):
                out[i] = out[i, ::-1]
            if p.get("brightness") is not None:
                out[i] = out[i] * p["brightness"]
        return out

    def random_transform(self, x, seed=None):
        """One randomly transformed copy of a single image `x`."""
        x = np.asarray(x, np.float32)
        cf = self.data_format == "channels_first"
        img = np.moveaxis(x, 0, -1) if cf else x
        out = self.apply_transforms(img[None], [self.get_random_transform(x.shape, seed)])[0]
        return np.moveaxis(out, -1, 0) if cf else out

    # ------------------------------------------------------------------ normalization

    def fit(self, x, augment=False, rounds=1, seed=None):
        """Feature-wise mean / std from sample data (needed by the featurewise options)."""
        x = np.asarray(x, np.float32)
        if augment:
            rng = np.random.RandomState(seed)
            x = np.concatenate([
                self.apply_transforms(x, [self.get_random_transform(x.shape[1:],
                                                                   rng.randint(2**31))
                                          for _ in range(len(x))])
                for _ in range(rounds)])
        channel_axis = 1 if self.data_format == "channels_first" else 3
        axes = tuple(a for a in range(4) if a != channel_axis)
        shape = [1, 1, 1]
        shape[0 if channel_axis == 1 else 2] = x.shape[channel_axis]
        if self.rescale:
            x = x * self.rescale
        self.mean = np.mean(x, axis=axes).reshape(shape)
        self.std = np.std(x, axis=axes).reshape(shape)

    def standardize(self, x):
        """Rescale, preprocess and normalize one image or a batch (no randomness)."""
        x = np.asarray(x, np.float32)
        if self.preprocessing_function is not None:
            x = self.preprocessing_function(x)
        if self.rescale:
            x = x * self.rescale
        channel_axis = -3 if self.data_format == "channels_first" else -1
        if self.samplewise_center:
            x = x - np.mean(x, axis=channel_axis, keepdims=True)
        if self.samplewise_std_normalization:
            x = x / (np.std(x, axis=channel_axis, keepdims=True) + 1e-6)
        if self.featurewise_center:
            if self.mean is None:
                raise ValueError("featurewise_center needs fit(x) on sample data first")
            x = x - self.mean
        if self.featurewise_std_normalization:
            if self.std is None:
                raise ValueError("featurewise_std_normalization needs fit(x) on sample "
                                 "data first")
            x = x / (self.std + 1e-6)
        return x

    # ------------------------------------------------------------------ iterators

    def flow(self, x, y=None, batch_size=32, shuffle=True, sample_weight=None, seed=None,
             subset=None, save_to_dir=None, save_prefix="", save_format="png"):
        """Endless batches `(x, y)` (or `x`) augmented from in-memory arrays."""
        x = np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"flow expects a rank-4 image array, got shape {x.shape}")
        arrays = [x] + ([] if y is None else [np.asarray(y)]) + (
            [] if sample_weight is None else [np.asarray(sample_weight)])
        arrays = _subset(arrays, self.validation_split, subset)
        loader = _ArrayLoader(arrays[0])
        return _BatchIterator(self, loader, arrays[1] if y is not None else None,
                              arrays[-1] if sample_weight is not None else None, batch_size,
                              shuffle, seed, save_to_dir, save_prefix, save_format)

    def flow_from_directory(self, directory, target_size=(256, 256), color_mode="rgb",
                            classes=None, class_mode="categorical", batch_size=32, shuffle=True,
                            seed=None, save_to_dir=None, save_prefix="", save_format="png",
                            follow_links=False, subset=None, interpolation="nearest",
                            keep_aspect_ratio=False):
        """Endless batches read from one sub-folder per class (`class_indices` maps names)."""
        if class_mode not in ("categorical", "binary", "sparse", "input", None):
            raise ValueError(f"Invalid class_mode {class_mode!r}; expected one of "
                             "'categorical', 'binary', 'sparse', 'input', None")
        names = sorted(d for d in os.listdir(directory)
                       if os.path.isdir(os.path.join(directory, d)) and not d.startswith("."))
        if classes is not None:
            names = list(classes)
        paths, labels = [], []
        for index, name in enumerate(names):
            for root, _, files in sorted(os.walk(os.path.join(directory, name),
                                                 followlinks=follow_links)):
                for fname in sorted(files):
                    if fname.lower().endswith(_FORMATS):
                        paths.append(os.path.join(root, fname))
                        labels.append(index)
        labels = np.asarray(labels, np.int32)
        if self.validation_split and subset is not None:
            # Keras splits each class: the first fraction is validation.
            keep = np.zeros(len(paths), bool)
            for index in range(len(names)):
                idx = np.flatnonzero(labels == index)
                cut = int(math.ceil(self.validation_split * len(idx)))
                keep[idx[:cut] if subset == "validation" else idx[cut:]] = True
            paths = [p for p, k in zip(paths, keep) if k]
            labels = labels[keep]
        print(f"Found {len(paths)} images belonging to {len(names)} classes.")
        if class_mode == "categorical":
            y = np.eye(len(names), dtype=self.dtype)[labels]
        elif class_mode == "binary":
            y = labels.astype(self.dtype)
        elif class_mode == "sparse":
            y = labels.astype(self.dtype)
        else:
            y = None
        loader = _FileLoader(paths, color_mode, target_size, interpolation, keep_aspect_ratio,
                             self.data_format)
        it = _BatchIterator(self, loader, y, None, batch_size, shuffle, seed, save_to_dir,
                            save_prefix, save_format, input_as_target=class_mode == "input")
        it.class_indices = {name: i for i, name in enumerate(names)}
        it.classes = labels
        it.filenames = [os.path.relpath(p, directory) for p in paths]
        it.filepaths = paths
        return it


def _subset(arrays, split, subset):
    if not split or subset is None:
        return arrays
    if subset not in ("training", "validation"):
        raise ValueError(f"subset must be 'training' or 'validation', got {subset!r}")
    cut = int(np.ceil(split * len(arrays[0])))
    return [a[:cut] if subset == "validation" else a[cut:] for a in arrays]


class _ArrayLoader:
    def __init__(self, x):
        self.x = x
        self.n = len(x)

    def load(self, indices):
        return np.asarray(self.x[indices], np.float32)


class _FileLoader:
    def __init__(self, paths, color_mode, target_size, interpolation, keep_aspect_ratio,
                 data_format):
        self.paths = paths
        self.n = len(paths)
        self.args = (color_mode, target_size, interpolation, keep_aspect_ratio)
        self.data_format = data_format

    def load(self, indices):
        color_mode, target_size, interpolation, keep = self.args
        imgs = [img_to_array(load_img(self.paths[i], color_mode, target_size, interpolation,
                                      keep), data_format=self.data_format) for i in indices]
        return np.stack(imgs) if imgs else np.zeros((0,), np.float32)


class _BatchIterator:
    """Keras's `Iterator`: endless (`next()` cycles epochs), `len()` batches per epoch."""

    def __init__(self, generator, loader, y, sample_weight, batch_size, shuffle, seed,
                 save_to_dir, save_prefix, save_format, input_as_target=False):
        from ..random import next_seed

        self.generator = generator
        self.loader = loader
        self.y = y
        self.sample_weight = sample_weight
        self.n = loader.n
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = next_seed() if seed is None else int(seed)
        self.save_to_dir = save_to_dir
        self.save_prefix = save_prefix
        self.save_format = save_format
        self.input_as_target = input_as_target
        self.epoch = 0
        self.batch_index = 0
        self._order = None
        self._lock = threading.Lock()
        self._rng = np.random.RandomState(self.seed)

    def __len__(self):
        return math.ceil(self.n / self.batch_size)

    def reset(self):
        self.batch_index = 0

    def _indices(self):
        with self._lock:
            if self._order is None or self.batch_index >= len(self):
                if self.batch_index >= len(self):
                    self.epoch += 1
                self.batch_index = 0
                self._order = (np.random.RandomState([self.seed, self.epoch]).permutation(self.n)
                               if self.shuffle else np.arange(self.n))
            start = self.batch_index * self.batch_size
            self.batch_index += 1
            return self._order[start:start + self.batch_size]

    def __getitem__(self, i):
        order = (np.random.RandomState([self.seed, self.epoch]).permutation(self.n)
                 if self.shuffle else np.arange(self.n))
        return self._batch(order[i * self.batch_size:(i + 1) * self.batch_size])

    def __iter__(self):
        return self

    def __next__(self):
        if self.n == 0:
            raise StopIteration
        return self._batch(self._indices())

    next = __next__

    def _batch(self, indices):
        gen = self.generator
        x = self.loader.load(indices)
        cf = gen.data_format == "channels_first"
        if cf:
            x = np.moveaxis(x, 1, -1)
        params = [gen.get_random_transform(x.shape[1:], self._rng.randint(2**31))
                  for _ in range(len(indices))]
        x = gen.apply_transforms(x, params)
        if cf:
            x = np.moveaxis(x, -1, 1)
        x = gen.standardize(x).astype(gen.dtype)
        if self.save_to_dir:
            for i, img in enumerate(x):
                name = f"{self.save_prefix}_{indices[i]}_{self._rng.randint(10**4)}"
                save_img(os.path.join(self.save_to_dir, f"{name}.{self.save_format}"), img,
                         data_format=gen.data_format)
        if self.input_as_target:
            return x, x
        if self.y is None:
            return x
        if self.sample_weight is not None:
            return x, self.y[indices], self.sample_weight[indices]
        return x, self.y[indices]


__all__ = ["ImageDataGenerator", "array_to_img", "img_to_array", "load_img", "resize",
           "save_img", "smart_resize"]
