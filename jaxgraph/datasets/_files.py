"""Locate, download and read dataset files with numpy and the standard library only."""

import hashlib
import http.client
import os
import pickle
import tempfile
import urllib.request
import zipfile

import numpy as np

KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
TIMEOUT = 10.0  # seconds; without a network, fail fast instead of hanging


def cache_dir(subdir=None):
    """`$JAXGRAPH_HOME/datasets[/subdir]`, read at call time so tests can redirect it."""
    home = os.environ.get("JAXGRAPH_HOME") or os.path.join("~", ".jaxgraph")
    root = os.path.join(os.path.abspath(os.path.expanduser(home)), "datasets")
    return os.path.join(root, subdir) if subdir else root


def _open_url(url, timeout):
    """The one network call, kept separate so tests can replace it."""
    return urllib.request.urlopen(url, timeout=timeout)


def file_digest(path, algorithm="sha256"):
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url, dest, checksum=None):
    """Fetch `url` into `dest`; checksum is (algorithm, hexdigest) or None.

    The data goes to a temporary file beside `dest` and is renamed only once it is
    complete and verified, so an interrupted or corrupt download never sits in the cache.
    """
    directory = os.path.dirname(dest) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=directory)
    try:
        digest = hashlib.new(checksum[0]) if checksum else None
        with os.fdopen(fd, "wb") as out, _open_url(url, TIMEOUT) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                if digest is not None:
                    digest.update(chunk)
        if digest is not None and digest.hexdigest() != checksum[1].lower():
            raise ValueError(
                f"Checksum mismatch for {os.path.basename(dest)!r} downloaded from {url}: "
                f"expected {checksum[0]} {checksum[1]}, got {digest.hexdigest()}. "
                "The file was discarded; retry, or download it by hand and pass path=..."
            )
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return dest


def fetch(fname, origin, path=None, subdir=None, checksum=None):
    """Return a local file for `fname`: explicit `path`, then the cache, then a download.

    `path` may be the file itself, a directory holding `fname` (downloads then go there),
    or, as in Keras, a bare file name looked up in the cache directory.
    """
    target_dir = cache_dir(subdir)
    if path is not None:
        given = os.path.expanduser(os.fspath(path))
        if os.path.isfile(given):
            return given
        if os.path.isdir(given):
            if os.path.isfile(os.path.join(given, fname)):
                return os.path.join(given, fname)
            target_dir = os.path.abspath(given)
        elif os.path.dirname(given):
            raise FileNotFoundError(
                f"path={given!r} does not exist; pass the {fname!r} file or the directory "
                "that holds it."
            )
        else:
            fname = given
    for directory in dict.fromkeys([target_dir, cache_dir(subdir)]):
        if os.path.isfile(os.path.join(directory, fname)):
            return os.path.join(directory, fname)
    dest = os.path.join(target_dir, fname)
    try:
        return download(origin, dest, checksum)
    except (OSError, http.client.HTTPException) as err:
        raise FileNotFoundError(
            f"Dataset file {fname!r} is not on this machine and could not be downloaded "
            f"from {origin} ({type(err).__name__}: {err}). Copy it into the directory "
            f"{target_dir}{os.sep} (that is, to {dest}), or pass its location with "
            "load_data(path=...). Set JAXGRAPH_HOME to move the cache directory."
        ) from err


# numpy stores object arrays (ragged sequences, as in imdb.npz) as pickle streams.
# These globals are all such a stream needs; anything else (os.system, eval, ...)
# is refused, so loading a tampered file cannot run code, unlike allow_pickle=True.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_SCALAR = np.int64(0).__reduce__()[0]
_SAFE_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only numpy arrays may be unpickled"
            ) from None


def _read_member(stream, where):
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f"{where}: unsupported .npy format version {version}")
    if dtype.hasobject:
        array = _ArrayUnpickler(stream, encoding="latin1").load()
        if not isinstance(array, np.ndarray) or array.shape != shape:
            raise ValueError(f"{where}: pickled data does not match its header {shape}")
        return array
    count = int(np.prod(shape, dtype=np.int64))
    data = bytearray(stream.read())  # bytearray: the result must be writeable
    if len(data) != count * dtype.itemsize:
        raise ValueError(f"{where}: truncated array data")
    return np.frombuffer(data, dtype, count).reshape(shape, order="F" if fortran else "C")


def load_npz(path, keys):
    """Read the arrays `keys` from an .npz file without np.load(allow_pickle=True)."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{path} is not an .npz archive ({err})") from err
    with archive:
        present = {n[:-4] for n in archive.namelist() if n.endswith(".npy")}
        missing = [k for k in keys if k not in present]
        if missing:
            raise ValueError(
                f"{path} lacks the arrays {missing} (it has {sorted(present)}); "
                f"expected the keys {list(keys)}"
            )
        arrays = {}
        for key in keys:
            with archive.open(key + ".npy") as stream:
                arrays[key] = _read_member(stream, f"{path}[{key!r}]")
    return arrays


def check_pairs(arrays, path, image_shape=None):
    """Check that x and y agree in length (and images in shape) before handing them out."""
    for split in ("train", "test"):
        x, y = arrays["x_" + split], arrays["y_" + split]
        if y.ndim != 1 or len(x) != len(y):
            raise ValueError(
                f"{path}: x_{split} has {len(x)} samples but y_{split} has shape {y.shape}"
            )
        if image_shape is not None and x.shape[1:] != image_shape:
            raise ValueError(
                f"{path}: x_{split} holds images of shape {x.shape[1:]}, expected {image_shape}"
            )
