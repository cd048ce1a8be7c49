"""`image_dataset_from_directory`: a folder of images as a stream of `(x, y)` batches.

Keras returns a `tf.data.Dataset`; here the result is a plain Python iterable that
reads and decodes images with PIL lazily, one batch at a time, so datasets larger
than memory work. Each `iter()` is one epoch (reshuffled per epoch when `shuffle`),
`len()` is the number of batches, and `fit(dataset, validation_data=val_dataset)`
accepts it directly. File indexing, class order, shuffling before the split and
the split itself follow Keras (`keras/src/utils/dataset_utils.py`); images are
resized like `tf.image.resize` (bilinear, no antialiasing) and are float32 in
[0, 255].

What it shares with the text and timeseries loaders is in `utils.dataset`.
"""

from __future__ import annotations

import numpy as np

from ..preprocessing.image import img_to_array, load_img, resize, smart_resize
from .dataset import FileDataset, directory_datasets

ALLOWLIST_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
_CHANNELS = {"rgb": 3, "rgba": 4, "grayscale": 1}
_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "lanczos3", "lanczos5")



class ImageDataset(FileDataset):
    """Batches `(images, labels)` (or images alone) read lazily from image files.

    Attributes: `class_names`, `file_paths`, `labels`, `batch_size`, `image_size`.
    """

    def __init__(self, file_paths, labels, label_mode, class_names, batch_size, image_size,
                 color_mode, interpolation, shuffle, seed, crop_to_aspect_ratio,
                 pad_to_aspect_ratio, data_format):
        super().__init__(file_paths, labels, label_mode, class_names, batch_size, shuffle, seed)
        self.image_size = tuple(int(s) for s in image_size)
        self.color_mode = color_mode
        self.interpolation = interpolation
        self.crop_to_aspect_ratio = crop_to_aspect_ratio
        self.pad_to_aspect_ratio = pad_to_aspect_ratio
        self.data_format = data_format

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

    def _load(self, path):
        return self.load_image(path)

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
    def no_files(name):
        return (f"No {'' if name is None else name + ' '}images found in directory "
                f"{directory}. Allowed formats: {ALLOWLIST_FORMATS}")

    return directory_datasets(
        directory, labels=labels, label_mode=label_mode, class_names=class_names,
        shuffle=shuffle, seed=seed, validation_split=validation_split, subset=subset,
        follow_links=follow_links, verbose=verbose, formats=ALLOWLIST_FORMATS,
        no_files=no_files,
        make=lambda p, lab, names, shuffle_it, seed_: ImageDataset(
            p, lab, label_mode, names, batch_size, image_size, color_mode, interpolation,
            shuffle_it, seed_, crop_to_aspect_ratio, pad_to_aspect_ratio, data_format))

__all__ = ["ImageDataset", "image_dataset_from_directory"]
