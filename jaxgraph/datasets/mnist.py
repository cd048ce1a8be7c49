"""MNIST handwritten digits, read from the standard `mnist.npz` (the file Keras uses).

The data is by Yann LeCun and Corinna Cortes, under CC BY-SA 3.0.
"""

from jaxgraph.datasets import _files

FILENAME = "mnist.npz"
ORIGIN = _files.KERAS_ORIGIN + FILENAME
# The SHA-256 Keras publishes for this file.
SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_data(path=None):
    """Return `(x_train, y_train), (x_test, y_test)`: uint8 images (n, 28, 28), uint8 labels.

    `path` is `mnist.npz` itself or the directory holding it; otherwise the file is
    looked up in `$JAXGRAPH_HOME/datasets/` (default `~/.jaxgraph/datasets/`) and
    downloaded there, with its SHA-256 checked, when missing.
    """
    local = _files.fetch(FILENAME, ORIGIN, path=path, checksum=("sha256", SHA256))
    arrays = _files.load_npz(local, KEYS)
    _files.check_pairs(arrays, local)
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
