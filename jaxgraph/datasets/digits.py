"""The real 8x8 handwritten digits, bundled so they work offline and without downloads.

They are scikit-learn's copy (BSD 3-Clause licence) of the UCI "Optical Recognition of
Handwritten Digits" data (E. Alpaydin, C. Kaynak); scripts/make_digits_npz.py made
data/digits.npz from it once.
"""

import os

from jaxgraph.datasets import _files

DATA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "digits.npz")


def load_data():
    """Return `(x_train, y_train), (x_test, y_test)` with 1437 and 360 samples.

    Images are uint8 arrays (n, 8, 8). The original pixels count ink in 4x4 blocks
    (0..16); they are rescaled to round(v * 255 / 16) so that, as with MNIST,
    `x.astype('float32') / 255` lies in 0..1. Labels are uint8 digits 0..9. The split
    is fixed (seeded and stratified): every call and every user gets the same one.
    """
    arrays = _files.load_npz(DATA_FILE, ("x_train", "y_train", "x_test", "y_test"))
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
