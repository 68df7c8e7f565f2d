"""Gallery features kept on disk for re-ranking a compressed index's candidates.

A compressed index holds short codes in memory; to re-score its best candidates exactly, the
full features are kept as float16 rows (2 x dim bytes each: 4 GB for 1M x 2048) in files and
read back row by row (``pread``): they stay in the operating system's file cache (or on disk),
not in the process's memory. (Memory-mapped reads were no faster here and leave every page
touched counted in the process's resident memory.)

A store is a list of segments: regions of open files (a loaded index file) followed by one
temporary file taking the rows added since. :meth:`FeatureStore.write_to` copies every row,
in order, into another file (an index being saved).

Example:
    >>> store = FeatureStore(3)
    >>> store.append(np.eye(3, dtype=np.float32))
    >>> store.gather(np.array([2, 0])).tolist()
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
"""

from __future__ import annotations

import os
import tempfile
from typing import IO, Any, List

import numpy as np

__all__ = ["FeatureStore", "STORE_DTYPE"]

#: the stored precision: float16 keeps ~3 significant digits of each component of a unit
#: vector, so re-scored distances are within ~1e-4 of the float32 ones
STORE_DTYPE = np.dtype("<f2")
_COPY_BYTES = 64 * 2**20


def _read_into(fd: int, row: np.ndarray, at: int) -> int:
    """Read ``row.nbytes`` bytes at offset ``at`` into ``row``; the byte count read."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [row], at)
    data = os.pread(fd, row.nbytes, at)  # systems without preadv
    row.view(np.uint8)[:len(data)] = np.frombuffer(data, dtype=np.uint8)
    return len(data)


class FeatureStore:
    """float16 feature rows on disk (see the module notes).

    Args:
        dim: feature dimension.
        folder: where the temporary file of added rows goes (None: the system's temp folder).
    """

    def __init__(self, dim: int, folder: str | None = None) -> None:
        self.dim = int(dim)
        self.folder = folder
        self._segments: List[List[Any]] = []  # [file, byte offset, rows]
        self._tail: IO[bytes] | None = None

    @property
    def rows(self) -> int:
        """Number of stored rows."""
        return sum(seg[2] for seg in self._segments)

    @property
    def row_bytes(self) -> int:
        """Bytes per row."""
        return self.dim * STORE_DTYPE.itemsize

    def attach(self, f: IO[bytes], offset: int, rows: int) -> None:
        """Use ``rows`` rows stored in the open file ``f`` from byte ``offset`` (before any
        :meth:`append`)."""
        if self._tail is not None:
            raise RuntimeError("attach file regions before appending rows")
        self._segments.append([f, int(offset), int(rows)])

    def append(self, x: np.ndarray) -> None:
        """Add rows (float32, ``(n, dim)``) after the stored ones."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected rows of {self.dim} values, got shape {x.shape}")
        if self._tail is None:
            self._tail = tempfile.TemporaryFile(prefix="tfclip-search-", dir=self.folder)
            self._segments.append([self._tail, 0, 0])
        self._tail.seek(0, os.SEEK_END)
        self._tail.write(np.ascontiguousarray(x, dtype=STORE_DTYPE).tobytes())
        self._tail.flush()
        self._segments[-1][2] += len(x)

    def gather(self, ids: np.ndarray) -> np.ndarray:
        """Rows ``ids`` (1-D, each in ``0 .. rows - 1``) as float32 ``(len(ids), dim)``.

        Each row is read with one ``pread`` into a buffer of this call: nothing of the files
        stays in the process's memory (the OS file cache keeps what it can).
        """
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.rows):
            raise IndexError(f"row ids must lie in 0 .. {self.rows - 1}")
        raw = np.empty((len(ids), self.dim), dtype=STORE_DTYPE)
        size = self.row_bytes
        start = 0
        for f, offset, rows in self._segments:
            fd = f.fileno()
            for j in np.flatnonzero((ids >= start) & (ids < start + rows)).tolist():
                at = offset + (int(ids[j]) - start) * size
                if _read_into(fd, raw[j], at) != size:
                    raise OSError(f"feature store file ended before row {int(ids[j])}")
            start += rows
        return raw.astype(np.float32)

    def write_to(self, out: IO[bytes]) -> int:
        """Copy every row, in order, to the end of ``out``; returns the bytes written."""
        written = 0
        for f, offset, rows in self._segments:
            remaining, pos = rows * self.row_bytes, offset
            while remaining:
                block = os.pread(f.fileno(), min(_COPY_BYTES, remaining), pos)
                if not block:
                    raise OSError(f"feature store file ended {remaining} bytes early")
                out.write(block)
                pos += len(block)
                remaining -= len(block)
                written += len(block)
        return written

    def close(self) -> None:
        """Delete the temporary file (attached files stay open)."""
        if self._tail is not None:
            self._tail.close()
