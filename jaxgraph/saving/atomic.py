"""Atomic file replacement: a reader sees the old file or the new one, never half of one.

Every saver in jaxgraph writes through `atomic_write`: the bytes go to a temporary
file in the destination's directory (so the final rename never crosses a file
system; for a symbolic link, its target's directory: links are written through, not
replaced), are flushed and fsynced, and only then replace the target with
`os.replace`. If anything fails before that, the temporary file is removed and the
previous file is untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading

_umask_lock = threading.Lock()


def _default_mode(target: str) -> int:
    """The permission bits a plain `open(target, 'wb')` would have produced."""
    try:
        return os.stat(target).st_mode & 0o7777
    except OSError:
        pass
    with _umask_lock:
        mask = os.umask(0)
        os.umask(mask)
    return 0o666 & ~mask


def _fsync_directory(directory: str) -> None:
    """Persist the rename itself; not every platform lets a directory be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path):
    """Yield a binary file object; on clean exit it atomically becomes `path`.

    A `path` that is a symbolic link is written through: the link's final target is
    replaced (the temporary file lives in the target's directory) and the link stays.
    """
    # realpath follows every link (a dangling one too, as open() would).
    path = os.path.realpath(os.path.abspath(os.fspath(path)))
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Cannot write {path!r}: the directory {directory!r} does not exist"
        )
    if os.path.isdir(path):
        raise IsADirectoryError(f"Cannot write {path!r}: it is a directory")
    mode = _default_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def write_bytes_atomic(path, data: bytes) -> None:
    """Replace `path` with `data` atomically."""
    with atomic_write(path) as f:
        f.write(data)
