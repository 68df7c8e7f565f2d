"""Atomic file writes: a temporary file in the target's folder, renamed over the target when
the write succeeded, removed when it failed, so a reader sees the old file or the new one,
never half of one (checkpoints, results files, search indexes)."""

from __future__ import annotations

import contextlib
import os
import os.path as osp
import tempfile
from typing import IO, Iterator

__all__ = ["atomic_file"]


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "wb", fsync: bool = True) -> Iterator[IO]:
    """Open a temporary file beside ``path`` (``.tmp-*`` with ``path``'s extension, the folder
    made if needed); on a clean exit it is flushed, fsync'ed when ``fsync`` and renamed to
    ``path``; on any exception (Ctrl-C included) it is removed and ``path`` left as it was.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
        >>> with atomic_file(path, "w") as f:
        ...     _ = f.write("done")
        >>> open(path).read()
        'done'
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=osp.splitext(path)[1], dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
