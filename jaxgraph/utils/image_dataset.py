"""`image_dataset_from_directory`: a folder of images as a stream of `(x, y)` batches.

Keras returns a `tf.data.Dataset`; here the result is a plain Python iterable that
reads and decodes images with PIL lazily, one batch at a time, so datasets larger
than memory work. Each `iter()` is one epoch (reshuffled per epoch when `shuffle`),
`len()` is the number of batches, and `fit(dataset, validation_data=val_dataset)`
accepts it directly. File indexing, class order, shuffling before the split and
the split itself follow Keras (`keras/src/utils/dataset_utils.py`); images are
resized like `tf.image.resize` (bilinear, no antialiasing) and are float32 in
[0, 255].
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..preprocessing.image import img_to_array, load_img, resize, smart_resize

ALLOWLIST_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
_CHANNELS = {"rgb": 3, "rgba": 4, "grayscale": 1}
_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "lanczos3", "lanczos5")


def _valid_files(directory, follow_links):
    for root, _, files in sorted(os.walk(directory, followlinks=follow_links),
                                 key=lambda t: t[0]):
        for fname in sorted(files):
            if fname.lower().endswith(ALLOWLIST_FORMATS):
                yield os.path.join(root, fname)


def index_directory(directory, labels, class_names=None, shuffle=True, seed=None,
                    follow_links=False, verbose=True):
    """(file_paths, labels, class_names) exactly as Keras indexes a directory."""
    if not os.path.isdir(directory):
        raise ValueError(f"Directory {directory!r} does not exist or is not a directory")
    if labels == "inferred":
        subdirs = [d for d in sorted(os.listdir(directory))
                   if os.path.isdir(os.path.join(directory, d)) and not d.startswith(".")]
        if class_names is not None:
            if not set(class_names).issubset(subdirs):
                raise ValueError(
                    "The `class_names` passed did not match the names of the subdirectories "
                    f"of the target directory. Expected: {subdirs} (or a subset of it), but "
                    f"received: class_names={class_names}")
            subdirs = list(class_names)
        class_names = subdirs
        paths, label_list = [], []
        for index, sub in enumerate(subdirs):
            found = list(_valid_files(os.path.join(directory, sub), follow_links))
            paths += found
            label_list += [index] * len(found)
        labels = np.asarray(label_list, np.int32)
    else:
        if class_names is not None:
            raise ValueError("You can only pass `class_names` if `labels='inferred'`.")
        paths = list(_valid_files(directory, follow_links))
        if labels is None:
            class_names = None
        else:
            if len(labels) != len(paths):
                raise ValueError(
                    "Expected the lengths of `labels` to match the number of files in the "
                    f"target directory. len(labels) is {len(labels)} while we found "
                    f"{len(paths)} files in directory {directory}.")
            class_names = [str(label) for label in sorted(set(labels))]
            labels = np.asarray(labels)
    if verbose:
        if labels is None:
            print(f"Found {len(paths)} files.")
        else:
            print(f"Found {len(paths)} files belonging to {len(class_names)} classes.")
    if shuffle:
        if seed is None:
            seed = np.random.randint(1e6)
        np.random.RandomState(seed).shuffle(paths)
        if labels is not None:
            np.random.RandomState(seed).shuffle(labels)
    return paths, labels, class_names


def _split(paths, labels, validation_split, subset, verbose):
    if not validation_split:
        return paths, labels
    n_val = int(validation_split * len(paths))
    if subset == "training":
        if verbose:
            print(f"Using {len(paths) - n_val} files for training.")
        end = len(paths) - n_val
        return paths[:end], None if labels is None else labels[:end]
    if verbose:
        print(f"Using {n_val} files for validation.")
    start = len(paths) - n_val
    return paths[start:], None if labels is None else labels[start:]


class ImageDataset:
    """Batches `(images, labels)` (or images alone) read lazily from image files.

    Iterating is one pass over the files; every new pass reshuffles them (when
    `shuffle`), deterministically from `seed`. Attributes: `class_names`,
    `file_paths`, `labels`, `batch_size`, `image_size`.
    """

    def __init__(self, file_paths, labels, label_mode, class_names, batch_size, image_size,
                 color_mode, interpolation, shuffle, seed, crop_to_aspect_ratio,
                 pad_to_aspect_ratio, data_format):
        self.file_paths = list(file_paths)
        self.labels = labels
        self.label_mode = label_mode
        self.class_names = class_names
        self.batch_size = batch_size
        self.image_size = tuple(int(s) for s in image_size)
        self.color_mode = color_mode
        self.interpolation = interpolation
        self.shuffle = shuffle
        self.seed = seed
        self.crop_to_aspect_ratio = crop_to_aspect_ratio
        self.pad_to_aspect_ratio = pad_to_aspect_ratio
        self.data_format = data_format
        self._epoch = 0

    def __len__(self):
        n = len(self.file_paths)
        return n if self.batch_size is None else math.ceil(n / self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.file_paths)

    def load_image(self, path) -> np.ndarray:
        """One image as float32 `(height, width, channels)` (channels first if asked)."""
        x = img_to_array(load_img(path, color_mode=self.color_mode))
        if self.crop_to_aspect_ratio:
            x = smart_resize(x, self.image_size, self.interpolation)
        elif self.pad_to_aspect_ratio:
            x = _pad_to_aspect(x, self.image_size)
            x = resize(x, self.image_size, self.interpolation)
        else:
            x = resize(x, self.image_size, self.interpolation)
        if self.data_format == "channels_first":
            x = np.transpose(x, (2, 0, 1))
        return x.astype(np.float32)

    def _targets(self, indices):
        labels = self.labels[indices]
        if self.label_mode == "int":
            return labels.astype(np.int32)
        if self.label_mode == "binary":
            return labels.astype(np.float32)[:, None]
        return np.eye(len(self.class_names), dtype=np.float32)[labels]

    def _order(self) -> np.ndarray:
        n = len(self.file_paths)
        if not self.shuffle:
            return np.arange(n)
        order = np.random.RandomState([self.seed, self._epoch]).permutation(n)
        self._epoch += 1
        return order

    def __iter__(self):
        order = self._order()
        step = self.batch_size or 1
        for start in range(0, len(order), step):
            idx = order[start:start + step]
            x = np.stack([self.load_image(self.file_paths[i]) for i in idx])
            y = None if self.labels is None else self._targets(idx)
            if self.batch_size is None:
                x = x[0]
                y = None if y is None else y[0]
            yield x if y is None else (x, y)

    def __repr__(self):
        return (f"<ImageDataset {len(self.file_paths)} files, {len(self)} batches of "
                f"{self.batch_size}, classes={self.class_names}>")


def _pad_to_aspect(x, size):
    h, w = x.shape[:2]
    th, tw = size
    ph = max(h, int(float(w * th) / tw))
    pw = max(w, int(float(h * tw) / th))
    top, left = int(float(ph - h) / 2), int(float(pw - w) / 2)
    return np.pad(x, ((top, ph - h - top), (left, pw - w - left), (0, 0)))


def image_dataset_from_directory(directory, labels="inferred", label_mode="int",
                                 class_names=None, color_mode="rgb", batch_size=32,
                                 image_size=(256, 256), shuffle=True, seed=None,
                                 validation_split=None, subset=None, interpolation="bilinear",
                                 follow_links=False, crop_to_aspect_ratio=False,
                                 pad_to_aspect_ratio=False, data_format=None, verbose=True):
    """A streaming `ImageDataset` of a directory with one sub-folder per class.

    `label_mode`: 'int' (int32 class indices), 'categorical' (float32 one-hot),
    'binary' (float32 `(n, 1)`, exactly two classes) or None (images only).
    `subset='both'` returns `(training, validation)`.
    """
    if labels not in ("inferred", None) and not isinstance(labels, (list, tuple, np.ndarray)):
        raise ValueError(
            "`labels` argument should be a list/tuple of integer labels, of the same size as "
            "the number of image files in the target directory, 'inferred' or None. "
            f"Received: labels={labels}")
    if label_mode not in ("int", "categorical", "binary", None):
        raise ValueError('`label_mode` argument must be one of "int", "categorical", '
                         f'"binary", or None. Received: label_mode={label_mode}')
    if labels is None or label_mode is None:
        labels, label_mode = None, None
    if color_mode not in _CHANNELS:
        raise ValueError('`color_mode` must be one of {"rgb", "rgba", "grayscale"}. '
                         f"Received: color_mode={color_mode}")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    if not isinstance(image_size, (list, tuple)) or len(image_size) != 2:
        raise ValueError("Invalid `image_size` value. Expected a tuple of 2 integers. "
                         f"Received: image_size={image_size}")
    interpolation = interpolation.lower()
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"Argument `interpolation` should be one of {_INTERPOLATIONS}. "
                         f"Received: interpolation={interpolation}")
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("Only one of crop_to_aspect_ratio and pad_to_aspect_ratio can be True")
    if data_format not in (None, "channels_last", "channels_first"):
        raise ValueError(f"Invalid data_format {data_format!r}")
    if validation_split and not 0 < validation_split < 1:
        raise ValueError(f"`validation_split` must be between 0 and 1, received: "
                         f"{validation_split}")
    if bool(validation_split) != bool(subset):
        raise ValueError("If `subset` is set, `validation_split` must be set, and inversely.")
    if subset not in ("training", "validation", "both", None):
        raise ValueError('`subset` must be either "training", "validation" or "both", '
                         f"received: {subset}")
    if validation_split and shuffle and seed is None:
        raise ValueError("If using `validation_split` and shuffling the data, you must provide "
                         "a `seed` argument, to make sure that there is no overlap between the "
                         "training and validation subset.")
    if seed is None:
        from ..random import next_seed

        seed = next_seed()
    paths, label_array, names = index_directory(
        directory, labels, class_names=class_names, shuffle=shuffle, seed=seed,
        follow_links=follow_links, verbose=verbose)
    if label_mode == "binary" and len(names) != 2:
        raise ValueError('When passing `label_mode="binary"`, there must be exactly 2 '
                         f"class_names. Received: class_names={names}")

    def make(subset_name, shuffle_it):
        p, lab = _split(paths, label_array, validation_split, subset_name, verbose)
        if not p:
            raise ValueError(f"No {'' if subset_name is None else subset_name + ' '}images "
                             f"found in directory {directory}. Allowed formats: "
                             f"{ALLOWLIST_FORMATS}")
        return ImageDataset(p, lab, label_mode, names, batch_size, image_size, color_mode,
                            interpolation, shuffle_it, seed, crop_to_aspect_ratio,
                            pad_to_aspect_ratio, data_format)

    if subset == "both":
        return make("training", shuffle), make("validation", False)
    return make(subset, shuffle)


__all__ = ["ImageDataset", "image_dataset_from_directory", "index_directory"]
