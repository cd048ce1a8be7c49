"""Regenerate jaxgraph/datasets/data/digits.npz from scikit-learn's copy of the digits.

Source: the 8x8 "Optical Recognition of Handwritten Digits" data (E. Alpaydin and
C. Kaynak, UCI Machine Learning Repository), as shipped in scikit-learn
(sklearn/datasets/data/digits.csv.gz), which is distributed under the BSD 3-Clause
licence. Only this script needs scikit-learn; the library reads the .npz it writes.

Stored like mnist.npz: uint8 arrays x_train, y_train, x_test, y_test, pixels rescaled
from 0..16 to 0..255 with round(v * 255 / 16) so that `x / 255` gives 0..1. The split
is a seeded, stratified permutation fixed once here, so every user gets the same one.

Usage: python scripts/make_digits_npz.py [output.npz]
"""

import os
import sys

import numpy as np
from sklearn.datasets import load_digits

SEED = 1797
N_TEST = 360
DEFAULT_OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "jaxgraph", "datasets", "data", "digits.npz"
)


def stratified_split(labels, n_test, rng):
    """Per-class test quotas by largest remainder, so each digit keeps its share in both."""
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n_test / len(labels)
    quotas = np.floor(exact).astype(int)
    quotas[np.argsort(quotas - exact)[: n_test - quotas.sum()]] += 1
    train, test = [], []
    for c, q in zip(classes, quotas, strict=True):
        members = rng.permutation(np.flatnonzero(labels == c))
        test.append(members[:q])
        train.append(members[q:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def main(out=DEFAULT_OUT):
    digits = load_digits()
    images = np.round(digits.images * 255.0 / 16.0).astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    train, test = stratified_split(labels, N_TEST, np.random.default_rng(SEED))
    np.savez_compressed(
        out,
        x_train=images[train],
        y_train=labels[train],
        x_test=images[test],
        y_test=labels[test],
    )
    print(f"wrote {os.path.normpath(out)}: {len(train)} train, {len(test)} test")


if __name__ == "__main__":
    main(*sys.argv[1:])
