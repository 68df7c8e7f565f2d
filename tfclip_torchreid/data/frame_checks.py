"""Frame files checked once before training: each exists, is not empty, is an image by its header
and is not truncated.

Without this a corrupt *test* frame surfaces only at the final test, after the whole training.
:func:`check_frames` reads the first 64 KiB and the last 64 bytes of each file: PIL identifies the
image from the header (no pixel decoding; a plainly laid-out JPEG header, as MARS's frames have, is
read by :func:`_jpeg_size` without PIL, about 20x faster, every other one by PIL), and a JPEG must end with the end-of-image marker
``FF D9``, a PNG with its ``IEND`` chunk. A successful check is cached under a hash of the file list
with sizes and modification times, so a second run only ``stat``\\ s the files. The data manager
calls it on the frames of train *and* test (:meth:`~.datamanager.TFCLIPVideoDataManager.check_frames`).

:func:`decode_problems` decodes whole files: what to run on a few frames when one that passed the
check still cannot be read (``tools/embed.py --skip-bad-frames``).

Example:
    >>> check_frames(frame_paths([(("/no/such/0001C1T0001F001.jpg",), 0, 0)]), cache_dir="")
    Traceback (most recent call last):
    ...
    tfclip_torchreid.data.frame_checks.FrameCheckError: 1 of 1 frame files are bad (1 missing)...
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import multiprocessing
import os
import os.path as osp
import stat
import sys
import time
import warnings
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterable, Iterator, List, Sequence, Tuple

from PIL import Image, UnidentifiedImageError

from ..utils.checkpoint import save_json
from .errors import DataValidationError

logger = logging.getLogger(__name__)

__all__ = ["FrameCheckError", "check_frames", "frame_problem", "frame_paths", "default_cache_dir",
           "decode_problems"]

#: bump when the per-file check changes: old cache entries then no longer match
_CHECK_VERSION = 1
_HEAD_BYTES = 64 * 1024  # PIL identifies a JPEG / PNG from its first markers / chunks
_TAIL_BYTES = 64
_JPEG_EOI = b"\xff\xd9"
_PNG_IEND = b"IEND\xaeB`\x82"  # chunk type + CRC of the empty IEND chunk
_PADDING = b"\x00\r\n "  # bytes some writers append after the end marker
_FORMAT_BY_EXT = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
_SERIAL_BELOW = 4096  # fewer files: check in this process (a pool costs more than it saves)
_CHUNK = 1024


class FrameCheckError(DataValidationError):
    """Frames that are missing, empty, not images or truncated.

    ``problems`` holds ``(path, reason)`` for every bad file (the message lists the first few).
    """

    def __init__(self, message: str, problems: List[Tuple[str, str]]):
        super().__init__(message)
        self.problems = problems


def default_cache_dir() -> str:
    """``$TFCLIP_CACHE/frame_checks``, or ``~/.cache/tfclip_torchreid/frame_checks``."""
    root = os.environ.get("TFCLIP_CACHE", osp.join(osp.expanduser("~"), ".cache", "tfclip_torchreid"))
    return osp.join(root, "frame_checks")


def _strip_padding(tail: bytes) -> bytes:
    return tail.rstrip(_PADDING)


def _identify(source, hint: str | None) -> Tuple[str, Tuple[int, int]]:
    """PIL's format and size from the header. The extension's format is tried first: once all
    plugins are registered, ``Image.open`` otherwise probes dozens of formats (2-3x slower)."""
    if hint is not None:
        try:
            with Image.open(source, formats=[hint]) as im:
                return im.format, im.size
        except UnidentifiedImageError:  # misnamed file: let PIL say what it is
            if not isinstance(source, str):
                source.seek(0)
    with Image.open(source) as im:
        return im.format, im.size


#: SOFn markers (0xC0-0xCF but DHT 0xC4, JPG 0xC8, DAC 0xCC)
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: segments the fast path reads: SOFn, DHT, DQT, DRI, APP0 (JFIF), COM; any other -> PIL
_JPEG_FAST = _JPEG_SOF | {0xC4, 0xDB, 0xDD, 0xE0, 0xFE}


def _dqt_ok(seg: bytes) -> bool:
    """PIL's DQT parse: tables of 1 + 64 x (1 or 2) bytes filling the segment."""
    while seg:
        size = 1 + (1 if seg[0] // 16 == 0 else 2) * 64
        if len(seg) < size:
            return False
        seg = seg[size:]
    return True


def _jpeg_size(head: bytes) -> Tuple[int, int] | None:
    """(width, height) of a plainly laid-out JPEG header, read without PIL; None wherever PIL
    must judge (another segment, a malformed one, no SOS within ``head``).

    Only accepts: SOI, then segments of :data:`_JPEG_FAST` with consistent lengths (a JFIF APP0
    of >= 14 bytes, DQT tables as PIL reads them), one SOFn of 8-bit, 1/3/4-component, non-empty
    size and whole 3-byte component entries, up to the start of scan. PIL reads such a header without error; every other header
    (including every bad one) goes to PIL, which words the problem. About 20x faster than
    ``Image.open`` on the frames of MARS (JFIF, DQT, SOF0, DHT, SOS).

    Example:
        >>> _jpeg_size(bytes([0xFF, 0xD8, 0xFF, 0xD9])) is None  # no frame header: PIL judges it
        True
    """
    n, i, size = len(head), 2, None
    if head[:3] != b"\xff\xd8\xff":
        return None
    while i + 4 <= n:
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        length = (head[i + 2] << 8) | head[i + 3]
        seg = head[i + 4:i + 2 + length]
        if marker == 0xDA:  # start of scan: PIL reads (skips) its header too
            return size if length >= 2 and len(seg) == length - 2 else None
        if marker not in _JPEG_FAST or length < 2 or len(seg) != length - 2:
            return None
        if marker in _JPEG_SOF:
            if (size is not None or len(seg) < 6 or (len(seg) - 6) % 3 or seg[0] != 8
                    or seg[5] not in (1, 3, 4)):
                return None
            size = ((seg[3] << 8) | seg[4], (seg[1] << 8) | seg[2])
            if min(size) <= 0:
                return None
        elif marker == 0xDB and not _dqt_ok(seg):
            return None
        elif marker == 0xE0 and seg[:4] == b"JFIF" and len(seg) < 14:
            return None
        i += 2 + length
    return None


def frame_problem(path: str) -> str | None:
    """What is wrong with one frame file, or None if it looks complete.

    Reads the first 64 KiB and the last 64 bytes; PIL identifies the image from the header
    without decoding pixels. JPEG must end with ``FF D9`` and PNG with the ``IEND`` chunk
    (NUL / newline padding after the marker is accepted); other formats PIL knows get the header
    check only.

    Example:
        >>> frame_problem("/no/such/frame.jpg")
        'missing'
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEAD_BYTES)
            if not head:
                return "empty (0 bytes)"
            if len(head) == _HEAD_BYTES:
                fh.seek(-_TAIL_BYTES, os.SEEK_END)
                tail = fh.read()
            else:
                tail = head[-_TAIL_BYTES:]
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    hint = _FORMAT_BY_EXT.get(osp.splitext(path)[1].lower())
    fast = _jpeg_size(head)
    if fast is not None:  # a plain JPEG header (PIL would read it the same)
        return None if _strip_padding(tail).endswith(_JPEG_EOI) else (
            "truncated (JPEG without its end-of-image marker FF D9)")
    try:
        try:
            fmt, size = _identify(io.BytesIO(head), hint)
        except (OSError, SyntaxError, ValueError, EOFError):
            if len(head) < _HEAD_BYTES:
                raise
            fmt, size = _identify(path, hint)  # header longer than 64 KiB (e.g. large EXIF)
    except UnidentifiedImageError:
        return "not an image (PIL cannot identify the header)"
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        return f"corrupt header ({type(err).__name__}: {err})"
    if min(size) <= 0:
        return f"corrupt header (image size {size[0]}x{size[1]})"
    if fmt == "JPEG" and not _strip_padding(tail).endswith(_JPEG_EOI):
        return "truncated (JPEG without its end-of-image marker FF D9)"
    if fmt == "PNG" and not _strip_padding(tail).endswith(_PNG_IEND):
        return "truncated (PNG without its IEND chunk)"
    return None


def decode_problems(paths: Iterable[str]) -> List[Tuple[str, str]]:
    """``(path, reason)`` of every file that fails :func:`frame_problem` or whose pixels cannot
    be decoded (the whole image is read: slow, for a few files).

    Example:
        >>> decode_problems(["/no/such/frame.jpg"])
        [('/no/such/frame.jpg', 'missing')]
    """
    out = []
    for path in dict.fromkeys(os.fspath(p) for p in paths):
        reason = frame_problem(path)
        if reason is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    with Image.open(path) as im:
                        im.load()
            except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
                reason = f"cannot be decoded ({type(err).__name__}: {err})"
        if reason is not None:
            out.append((path, reason))
    return out


def _stat_chunk(paths: Sequence[str]) -> Tuple[bytes, List[Tuple[int, str]]]:
    """A digest of ``(path, size, mtime)`` over the chunk, and ``(index, reason)`` for files
    that cannot be checked (missing, unreadable, not a regular file, empty)."""
    h = hashlib.sha256()
    bad: List[Tuple[int, str]] = []
    for i, p in enumerate(paths):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            bad.append((i, "missing"))
            continue
        except OSError as err:
            bad.append((i, f"unreadable ({err.strerror or err})"))
            continue
        if not stat.S_ISREG(st.st_mode):
            bad.append((i, "not a regular file"))
        elif st.st_size == 0:
            bad.append((i, "empty (0 bytes)"))
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.digest(), bad


def _check_chunk(paths: Sequence[str]) -> List[str | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # only headers are read
        return [frame_problem(p) for p in paths]


def _executor(workers: int) -> Executor:
    """Processes (forked, like torch's DataLoader workers) where available: PIL's header parsing
    holds the GIL, so threads do not scale; elsewhere a thread pool overlaps the file reads."""
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(workers)


@contextlib.contextmanager
def _no_pool() -> Iterator[None]:
    yield None


def _chunks(paths: Sequence[str]) -> List[Sequence[str]]:
    return [paths[i:i + _CHUNK] for i in range(0, len(paths), _CHUNK)]


def _map(fn: Callable[[Sequence[str]], Any], chunks: List[Sequence[str]],
         pool: Executor | None) -> List[Any]:
    return list(pool.map(fn, chunks) if pool is not None else map(fn, chunks))


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(8, cpus)


def _cache_hit(path: str, num_files: int) -> bool:
    """Whether ``path`` records a successful check of ``num_files`` files. An absent entry is a
    miss; a corrupt one is a miss with a warning (the frames are checked again, the entry
    rewritten)."""
    try:
        with open(path) as fh:
            record = json.load(fh)
        if record["num_files"] == num_files and record["version"] == _CHECK_VERSION:
            return True
        problem = f"it records {record['num_files']} files, not {num_files}"
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError) as err:
        problem = f"{type(err).__name__}: {err}"
    warnings.warn(f"frame-check cache entry {path} is corrupt ({problem}); checking the frames "
                  "again and rewriting it", stacklevel=3)
    return False


def _write_cache(path: str, record: dict) -> None:
    try:
        save_json(record, path, indent=None)
    except OSError as err:
        warnings.warn(f"could not write the frame-check cache {path} ({err}); the frames will be "
                      "checked again next time. Set $TFCLIP_CACHE to a writable folder.",
                      stacklevel=3)


def _frame_error(problems: List[Tuple[str, str]], total: int, max_listed: int) -> FrameCheckError:
    kinds: Dict[str, int] = {}
    for _, reason in problems:
        kind = reason.split(" (")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    lines = [f"{len(problems)} of {total} frame files are bad ({summary}). "
             f"First {min(max_listed, len(problems))}:"]
    lines += [f"  {path}: {reason}" for path, reason in problems[:max_listed]]
    if len(problems) > max_listed:
        lines.append(f"  ... and {len(problems) - max_listed} more (FrameCheckError.problems "
                     "lists them all)")
    lines.append("Fix: re-extract the dataset archive (or replace / restore these files from a "
                 "good copy) and run again; only a fully valid file list is cached, so nothing "
                 "needs to be deleted.")
    return FrameCheckError("\n".join(lines), problems)


def check_frames(
    paths: Iterable[str],
    cache_dir: str | None = None,
    workers: int | None = None,
    max_listed: int = 20,
    verbose: bool = False,
) -> None:
    """Check every frame file once: exists, non-empty, an image by its header, not truncated.

    The result of a fully successful check is cached under ``cache_dir`` (default
    :func:`default_cache_dir`), keyed by a hash of the sorted file list with each file's size and
    modification time: a second run only ``stat``\\ s the files, and a replaced or rewritten file
    (other size or mtime) invalidates the entry. A corrupt cache file is ignored and rewritten.
    Failures are never cached.

    Args:
        paths: frame paths (duplicates are checked once), e.g. :func:`frame_paths`.
        cache_dir: cache folder; ``""`` disables the cache.
        workers: parallel workers: threads for the ``stat`` pass (all a cache hit needs), then
            forked processes on Linux (threads elsewhere) to read the files; default
            ``min(8, usable CPUs)``; ``0`` or ``1`` checks in this process. Lists shorter than
            4096 files are always checked in this process.
        max_listed: bad files named in the error message.
        verbose: print one line with the count and time.

    Raises:
        FrameCheckError: listing up to ``max_listed`` bad files with the reason (missing, empty,
            not an image, corrupt header, truncated) and the total count.

    Example:
        >>> check_frames(["/no/such/0001C1T0001F001.jpg"], cache_dir="")
        Traceback (most recent call last):
        ...
        tfclip_torchreid.data.frame_checks.FrameCheckError: 1 of 1 frame files are bad (1 missing)...
    """
    t0 = time.perf_counter()
    given = list(dict.fromkeys(os.fspath(p) for p in paths))
    if not given:
        return
    unique = sorted(given)  # the cache key does not depend on the order
    workers = _default_workers() if workers is None else workers
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    parallel = workers > 1 and len(unique) >= _SERIAL_BELOW
    chunks = _chunks(unique)
    # stat: threads (the syscalls release the GIL; they overlap on network file systems)
    with ThreadPoolExecutor(workers) if parallel else _no_pool() as pool:
        stats = _map(_stat_chunk, chunks, pool)
    problems = [(chunk[i], reason) for chunk, (_, bad) in zip(chunks, stats) for i, reason in bad]
    cache_file = None
    if not problems and cache_dir:
        h = hashlib.sha256(f"tfclip frame check v{_CHECK_VERSION} {_CHUNK}\n".encode())
        for digest, _ in stats:
            h.update(digest)
        cache_file = osp.join(cache_dir, h.hexdigest()[:40] + ".json")
        if _cache_hit(cache_file, len(unique)):
            if verbose:
                logger.info(f"=> {len(unique)} frame files already checked (unchanged since; cache "
                            f"{cache_file}), {time.perf_counter() - t0:.1f} s")
            return
    skip = {p for p, _ in problems}
    chunks = _chunks([p for p in unique if p not in skip] if skip else unique)
    # contents: processes where possible (PIL's header parsing holds the GIL)
    with _executor(workers) if parallel else _no_pool() as pool:
        reasons = _map(_check_chunk, chunks, pool)
    problems += [(p, r) for chunk, part in zip(chunks, reasons)
                 for p, r in zip(chunk, part) if r is not None]
    seconds = time.perf_counter() - t0
    if problems:
        order = {p: i for i, p in enumerate(given)}
        problems.sort(key=lambda item: order[item[0]])
        raise _frame_error(problems, len(unique), max_listed)
    if cache_file is not None:
        _write_cache(cache_file, {"version": _CHECK_VERSION, "num_files": len(unique),
                                  "seconds": round(seconds, 3), "checked_at": time.time()})
    if verbose:
        logger.info(f"=> checked {len(unique)} frame files in {seconds:.1f} s "
                    f"({len(unique) / max(seconds, 1e-9):,.0f} files/s)")


def frame_paths(*tracklet_lists: Sequence[tuple]) -> List[str]:
    """All frame paths of torchreid tracklet / image lists, in order, without duplicates.

    Example:
        >>> frame_paths([(("a.jpg", "b.jpg"), 0, 0)], [("b.jpg", 1, 0)])
        ['a.jpg', 'b.jpg']
    """
    out: Dict[str, None] = {}
    for items in tracklet_lists:
        for item in items:
            paths = item[0]
            if isinstance(paths, (str, os.PathLike)):
                out[os.fspath(paths)] = None
            else:
                out.update(dict.fromkeys(os.fspath(p) for p in paths))
    return list(out)
