"""Fashion-MNIST (Zalando SE, MIT licence) from its four standard gzipped IDX files.

The gz files are the dataset's canonical form, the ones Keras downloads, so a copy
fetched by any tool can be reused. An .npz with mnist.npz's keys is accepted as well.
"""

import gzip
import os

import numpy as np

from jaxgraph.datasets import _files

SUBDIR = "fashion-mnist"
# (file, MD5 published by Zalando for the official files, which Keras mirrors)
FILES = {
    "y_train": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
    "x_train": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "y_test": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    "x_test": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
}
_MAGIC = {2049: 1, 2051: 3}  # IDX magic numbers of uint8 label (1-D) and image (3-D) files


def read_idx(path):
    """Parse a gzipped IDX file of uint8 data, checking its header against its size."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic not in _MAGIC:
        raise ValueError(f"{path} is not a uint8 IDX label or image file (magic {magic})")
    ndim = _MAGIC[magic]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {len(raw) - offset} bytes")
    return np.frombuffer(bytearray(raw[offset:]), np.uint8).reshape(shape)


def load_data(path=None):
    """Return `(x_train, y_train), (x_test, y_test)`: uint8 images (n, 28, 28), uint8 labels.

    `path` is a directory holding the four `*-ubyte.gz` files or an .npz with the keys
    x_train, y_train, x_test, y_test. Otherwise the files are looked up in
    `$JAXGRAPH_HOME/datasets/fashion-mnist/` and downloaded there (MD5-checked) if missing.
    """
    if path is not None:
        path = os.path.expanduser(os.fspath(path))
        if os.path.isfile(path):
            arrays = _files.load_npz(path, tuple(FILES))
            _files.check_pairs(arrays, path, image_shape=(28, 28))
            return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"path={path!r} does not exist; pass the directory holding the four "
                "Fashion-MNIST .gz files or an .npz file."
            )
    arrays = {}
    for key, (fname, md5) in FILES.items():
        local = _files.fetch(
            fname, _files.KERAS_ORIGIN + fname, path=path, subdir=SUBDIR, checksum=("md5", md5)
        )
        arrays[key] = read_idx(local)
    _files.check_pairs(arrays, os.path.dirname(local), image_shape=(28, 28))
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
