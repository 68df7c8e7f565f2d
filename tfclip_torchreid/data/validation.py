"""Validate a ReID dataset before any compute is spent on it.

Three kinds of check, each raising :class:`DataValidationError` (a ``ValueError``) whose message
names the dataset, the file / row / tracklet, the offending value, what was allowed and how to fix
it:

1. **Parser pre-checks** (:func:`precheck_dataset`, run *before* torchreid parses a dataset).
   torchreid's own parsers stop on bare ``AssertionError``\\ s that name no file: a MARS
   ``tracks_*_info.mat`` row with camera 9 (``assert 1 <= camid <= 6``), a tracklet whose frame
   names mix persons or cameras, an empty iLIDS-VID / PRID2011 person folder
   (``assert len(img_names) > 0``), an iLIDS-VID ``ls_set`` that is not 10 x 300, Market-1501 /
   DukeMTMC-reID file names outside the ``PPPP_cC`` pattern or camera range. The pre-checks read
   the same files the parsers read and report the row, folder or file instead. They also include
   the layout check of :mod:`.datasets.layouts` (a missing dataset shows the expected tree).
2. **Tracklet checks** (:func:`check_tracklets`, :func:`check_test_cameras`, run on the parsed
   ``(img_paths, pid, camid[, dsetid])`` lists): empty frame lists, training labels that are not
   ``0..Y-1``, camera ids outside the camera-embedding table, and test cameras that never occur in
   training while the model has a camera embedding (SIE; see :func:`check_test_cameras`).
3. **Frame checks** (:func:`check_frames`, run once over every frame of train *and* test before
   training): each file exists, is not empty, PIL identifies it from its header (no pixel
   decoding) and it is not truncated (a JPEG ends with the end-of-image marker ``FF D9``, a PNG
   with its ``IEND`` chunk). Without this a corrupt *test* frame surfaces only at the final test,
   after the whole training. A successful check is cached under a hash of the file list with
   sizes and modification times, so a second run only ``stat``\\ s the files.

Where the data manager calls them::

    for name in sources + targets:               # before torchreid parses anything
        precheck_dataset(name, root)
    ...torchreid parses...
    check_tracklets(name, "train", train, num_classes=Y, num_cameras=C, relabelled=True)
    check_tracklets(name, "query", query, num_cameras=C)          # and "gallery"
    check_test_cameras(name, train, {"query": query, "gallery": gallery}, use_sie=...)
    check_frames(frame_paths(train, query, gallery))              # before the first epoch

Example:
    >>> from tfclip_torchreid.data.validation import check_tracklets
    >>> check_tracklets("toy", "train", [(("a.jpg",), 0, 0), (("b.jpg",), 2, 1)], relabelled=True)
    Traceback (most recent call last):
    ...
    tfclip_torchreid.data.validation.DataValidationError: toy train: 2 problem(s) in 2 tracklets:...
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import logging
import multiprocessing
import numbers
import os
import os.path as osp
import re
import stat
import sys
import time
import warnings
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Sequence, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..utils.checkpoint import save_json
from .datasets.layouts import ALIASES, resolve_layout

logger = logging.getLogger(__name__)

__all__ = [
    "DataValidationError",
    "FrameCheckError",
    "check_frames",
    "frame_problem",
    "frame_paths",
    "default_cache_dir",
    "check_tracklets",
    "check_test_cameras",
    "precheck_dataset",
    "PRECHECKS",
]

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


class DataValidationError(ValueError):
    """A dataset failed a check; the message names the file, row or tracklet and the fix."""


class FrameCheckError(DataValidationError):
    """Frames that are missing, empty, not images or truncated.

    ``problems`` holds ``(path, reason)`` for every bad file (the message lists the first few).
    """

    def __init__(self, message: str, problems: List[Tuple[str, str]]):
        super().__init__(message)
        self.problems = problems


# ==============================================================================================
# frame files
# ==============================================================================================
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
        tfclip_torchreid.data.validation.FrameCheckError: 1 of 1 frame files are bad (1 missing)...
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


# ==============================================================================================
# parsed tracklets: labels and cameras
# ==============================================================================================
def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _first_frame(paths: object) -> str:
    if isinstance(paths, (str, os.PathLike)):
        return os.fspath(paths)
    try:
        return os.fspath(paths[0]) if len(paths) else "<no frames>"
    except (TypeError, IndexError):
        return repr(paths)[:120]


def _raise_listed(header: str, problems: List[str], fixes: List[str], max_listed: int) -> None:
    lines = [header]
    lines += [f"  {p}" for p in problems[:max_listed]]
    if len(problems) > max_listed:
        lines.append(f"  ... and {len(problems) - max_listed} more")
    lines += [f"Fix: {f}" for f in fixes]
    raise DataValidationError("\n".join(lines))


def check_tracklets(
    name: str,
    split: str,
    tracklets: Sequence[tuple],
    num_classes: int | None = None,
    num_cameras: int | None = None,
    relabelled: bool = False,
    max_listed: int = 10,
) -> None:
    """Check parsed ``(img_paths, pid, camid[, dsetid])`` tuples of one split.

    Checks: a tuple of 3 or 4 fields; at least one frame (a single path string counts as one
    frame, as in image datasets); integer pid and camera; camera ids 0-based and, if
    ``num_cameras`` is given (the camera-embedding table size), below it; with ``relabelled``,
    labels in ``0..num_classes-1`` (default: the number of distinct labels) and every label used
    (a label without tracklets leaves a classifier row and a CLIP-Memory row without data).

    Args:
        name, split: dataset name and split (``train``, ``query``, ``gallery``) for the message.
        tracklets: the split's tuples.
        num_classes: size of the classifier (``relabelled`` only).
        num_cameras: camera ids must be in ``[0, num_cameras)``.
        relabelled: the pids are training labels ``0..Y-1``.
        max_listed: problems shown in the message.

    Raises:
        DataValidationError: naming dataset, split, tracklet index, first frame, value and the
            allowed range, for every problem found (the first ``max_listed`` are listed).

    Example:
        >>> check_tracklets("mars", "query", [(("q.jpg",), 3, 6)], num_cameras=6)
        Traceback (most recent call last):
        ...
        tfclip_torchreid.data.validation.DataValidationError: mars query: 1 problem(s) in 1 tracklets:
          tracklet 0 (first frame q.jpg): camera id 6 outside the allowed range 0..5 (num_cameras=6)
        Fix: camera ids are 0-based and index the camera-embedding table: build the model with camera_num >= 7 (the data manager's num_cameras) or correct the dataset's camera numbers
    """
    problems: List[str] = []
    kinds = set()
    labels: List[Tuple[str, int]] = []
    for i, item in enumerate(tracklets):
        if not isinstance(item, (tuple, list)) or len(item) not in (3, 4):
            problems.append(f"tracklet {i}: expected (img_paths, pid, camid[, dsetid]), "
                            f"got {item!r:.120}")
            kinds.add("shape")
            continue
        paths, pid, camid = item[0], item[1], item[2]
        where = f"tracklet {i} (first frame {_first_frame(paths)})"
        if not isinstance(paths, (str, os.PathLike)):
            try:
                n = len(paths)
            except TypeError:
                n = -1
            if n <= 0:
                problems.append(f"{where}: no frames (img_paths={paths!r:.80})")
                kinds.add("empty")
        if not _is_int(pid):
            problems.append(f"{where}: pid {pid!r} is not an integer")
            kinds.add("type")
        if not _is_int(camid):
            problems.append(f"{where}: camera id {camid!r} is not an integer")
            kinds.add("type")
            camid = None
        if camid is not None:
            if camid < 0:
                problems.append(f"{where}: camera id {camid} is negative (camera ids are 0-based)")
                kinds.add("camera")
            elif num_cameras is not None and camid >= num_cameras:
                problems.append(f"{where}: camera id {camid} outside the allowed range "
                                f"0..{num_cameras - 1} (num_cameras={num_cameras})")
                kinds.add("camera")
        if relabelled and _is_int(pid):
            labels.append((where, int(pid)))
    if relabelled and labels:
        used = {pid for _, pid in labels}
        size = num_classes if num_classes is not None else len(used)
        what = f"num_classes={num_classes}" if num_classes is not None else f"{size} labels"
        for where, pid in labels:
            if not 0 <= pid < size:
                problems.append(f"{where}: label {pid} outside the allowed range "
                                f"0..{size - 1} ({what})")
                kinds.add("label")
        unused = sorted(set(range(size)) - used)
        if unused:
            shown = ", ".join(map(str, unused[:10])) + (" ..." if len(unused) > 10 else "")
            problems.append(f"labels {shown} ({len(unused)} of 0..{size - 1}) have no tracklet: "
                            "training labels must be exactly 0..Y-1")
            kinds.add("label")
    if not problems:
        return
    fixes = {
        "shape": "build the split as torchreid does: a list of (img_paths, pid, camid[, dsetid])",
        "empty": "a tracklet needs at least one frame: restore its frames or remove it from the "
                 "dataset's list / info files",
        "type": "pids and camera ids must be Python or numpy integers",
        "camera": "camera ids are 0-based and index the camera-embedding table: build the model "
                  f"with camera_num >= {_max_cam(tracklets) + 1} (the data manager's num_cameras) "
                  "or correct the dataset's camera numbers",
        "label": "relabel the training pids to 0..Y-1 in ascending pid order (torchreid's "
                 "parsers do this with relabel=True) and build the classifier with Y classes",
    }
    _raise_listed(f"{name} {split}: {len(problems)} problem(s) in {len(tracklets)} tracklets:",
                  problems, [fixes[k] for k in sorted(kinds)], max_listed)


def _max_cam(tracklets: Sequence[tuple]) -> int:
    cams = [it[2] for it in tracklets
            if isinstance(it, (tuple, list)) and len(it) >= 3 and _is_int(it[2])]
    return max(cams) if cams else -1


def check_test_cameras(
    name: str,
    train: Sequence[tuple],
    test: Mapping[str, Sequence[tuple]],
    use_sie: bool = True,
    allow_unseen: bool = False,
    max_listed: int = 10,
) -> List[int]:
    """Find test cameras that never occur in training; an error if the model embeds cameras.

    With a camera embedding (SIE) the row of a camera that has no training tracklet never
    receives a gradient: it keeps its random initialisation and is still added to every test
    feature of that camera, which shifts the reported mAP/CMC without any sign. Hence:

    * ``use_sie=False``: nothing to do (camera ids then only drive the evaluation's
      same-camera filtering); the unseen cameras are returned.
    * ``use_sie=True`` (default): :class:`DataValidationError` naming the cameras, how many test
      tracklets use them and an example, with the two fixes: build without the embedding
      (``model.use_sie False``) or accept the untrained rows explicitly (``allow_unseen=True``,
      config ``data.allow_unseen_test_cameras True``).
    * ``use_sie=True, allow_unseen=True``: the same text as a ``UserWarning``.

    Camera ids are compared as numbers: for a target dataset that is not also a source they name
    other cameras than the training ids; this function does not try to judge that.

    Args:
        name: dataset name for the message.
        train: the training tuples (camera ids as the model sees them).
        test: ``{"query": [...], "gallery": [...]}``.
        use_sie: the model adds a per-camera embedding.
        allow_unseen: warn instead of raising.

    Returns:
        The sorted unseen camera ids (0-based).

    Example:
        >>> train = [(("t.jpg",), 0, 0), (("u.jpg",), 0, 1)]
        >>> check_test_cameras("toy", train, {"gallery": [(("g.jpg",), 5, 2)]}, use_sie=False)
        [2]
    """
    seen = {int(it[2]) for it in train}
    where: Dict[int, List[str]] = {}
    for split, items in test.items():
        for i, it in enumerate(items):
            cam = int(it[2])
            if cam not in seen:
                where.setdefault(cam, []).append(
                    f"{split} tracklet {i} (first frame {_first_frame(it[0])})")
    unseen = sorted(where)
    if not unseen or not use_sie:
        return unseen
    count = sum(len(v) for v in where.values())
    lines = [f"{name}: test camera(s) {unseen} (0-based) occur in {count} test tracklets but in "
             f"no training tracklet (training cameras: {sorted(seen)}). With the camera "
             "embedding (SIE) their rows are never trained and their random values are added to "
             "those test features."]
    lines += [f"  camera {c}: {len(where[c])} tracklets, e.g. {where[c][0]}"
              for c in unseen[:max_listed]]
    fix = ("build the model without the camera embedding (model.use_sie False), or accept the "
           "untrained rows explicitly (data.allow_unseen_test_cameras True; "
           "check_test_cameras(..., allow_unseen=True))")
    if allow_unseen:
        note = ("Accepted explicitly (allow_unseen=True); building the model without the camera "
                "embedding (model.use_sie False) avoids it.")
        warnings.warn("\n".join(lines + [note]), UserWarning, stacklevel=2)
        return unseen
    raise DataValidationError("\n".join(lines + [f"Fix: {fix}."]))


# ==============================================================================================
# pre-checks of the files torchreid's parsers read (run before they parse)
# ==============================================================================================
def _load_mat(path: str, key: str, title: str) -> np.ndarray:
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except NotImplementedError:
        raise DataValidationError(
            f"{title}: {path} is a MATLAB v7.3 (HDF5) file; torchreid reads it with "
            "scipy.io.loadmat, which cannot. Fix: re-save it as a v7 MAT-file (MATLAB "
            "`save(..., '-v7')`, or scipy.io.savemat) or re-download it.") from None
    except (OSError, ValueError, TypeError) as err:
        raise DataValidationError(f"{title}: cannot read {path} ({type(err).__name__}: {err}). "
                                  "Fix: re-download the file.") from None
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataValidationError(f"{title}: {path} has no variable '{key}' (found {found}); "
                                  "torchreid reads exactly this name. Fix: re-download the file.")
    arr = np.asarray(mat[key])
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataValidationError(
            f"{title}: '{key}' in {path} holds {arr.dtype} values; torchreid uses them as indices "
            "and slice bounds, which must be integers. Fix: save the array as integers "
            "(e.g. int32) or re-download the file.")
    return arr


def _read_names(path: str) -> List[str]:
    with open(path) as fh:
        return [line.rstrip() for line in fh]


def _segment_constant(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """For each inclusive 0-based range [start, end] (valid), whether ``values`` is constant."""
    change = np.concatenate([[0], np.cumsum(values[1:] != values[:-1])])
    return change[ends] == change[starts]


def _mars_rows(ddir: str, split: str, names: List[str], info: np.ndarray) -> List[str]:
    rel_info = f"info/tracks_{split}_info.mat"
    rel_names = f"info/{split}_name.txt"
    problems: List[str] = []
    n = len(names)
    start, end, pid, cam = (info[:, k].astype(np.int64) for k in range(4))
    keep = pid != -1  # torchreid skips junk rows before any check
    bad_cam = keep & ((cam < 1) | (cam > 6))
    bad_range = keep & ~((start >= 1) & (start <= end) & (end <= n))
    ok = keep & ~bad_range
    prefix = np.asarray([s[:4] for s in names]) if n else np.zeros(0, "<U4")
    camchar = np.asarray([s[5:6] for s in names]) if n else np.zeros(0, "<U1")
    mixed_pid = np.zeros(len(info), bool)
    mixed_cam = np.zeros(len(info), bool)
    if ok.any():
        s0, e0 = start[ok] - 1, end[ok] - 1
        mixed_pid[ok] = ~_segment_constant(prefix, s0, e0)
        mixed_cam[ok] = ~_segment_constant(camchar, s0, e0)
    for r in np.flatnonzero(bad_cam | bad_range | mixed_pid | mixed_cam):
        s, e = int(start[r]), int(end[r])
        row = (f"{rel_info} row {r + 1} (start {s}, end {e}, pid {int(pid[r])}, "
               f"camera {int(cam[r])})")
        frames = ""
        if not bad_range[r]:
            frames = (f"; frames {names[s - 1]} .. {names[e - 1]} ({rel_names} lines {s}-{e})")
        if bad_cam[r]:
            problems.append(f"{row}: camera {int(cam[r])} outside the allowed range 1..6{frames}")
        if bad_range[r]:
            problems.append(f"{row}: frame range {s}..{e} is not within 1..{n}, the lines of "
                            f"{rel_names} (need 1 <= start <= end <= {n})")
        if mixed_pid[r]:
            who = sorted(set(prefix[s - 1:e].tolist()))
            problems.append(f"{row}: frames of different persons {who[:4]} in one tracklet "
                            f"(first 4 characters of the names){frames}")
        if mixed_cam[r]:
            cams = sorted(set(camchar[s - 1:e].tolist()))
            problems.append(f"{row}: frames of different cameras {cams[:6]} in one tracklet "
                            f"(6th character of the names){frames}")
    return problems


def precheck_mars(ddir: str) -> None:
    """Pre-empt every assertion of torchreid's ``Mars`` parser on ``ddir`` (``<root>/mars``).

    torchreid asserts per non-junk row of ``tracks_{train,test}_info.mat`` (start, end, pid,
    camera; 1-based frame rows of ``{train,test}_name.txt``) that the camera is 1..6 and that the
    names of rows start..end share the person (characters 0-3) and the camera (character 5); it
    also needs integer arrays, a ``query_IDX`` within the test rows, and at least 2 queries (a
    single index is squeezed to a scalar and breaks the query selection).
    """
    title = "MARS"
    problems: List[str] = []
    num_test = 0
    for split in ("train", "test"):
        names = _read_names(osp.join(ddir, "info", f"{split}_name.txt"))
        path = osp.join(ddir, "info", f"tracks_{split}_info.mat")
        info = _load_mat(path, f"track_{split}_info", title)
        if info.ndim != 2 or info.shape[1] != 4 or info.shape[0] == 0:
            raise DataValidationError(
                f"{title}: 'track_{split}_info' in {path} has shape {info.shape}; expected "
                "(tracklets, 4) = start row, end row, pid, camera. Fix: re-download info/.")
        if split == "test":
            num_test = info.shape[0]
        problems += _mars_rows(ddir, split, names, info)
    qpath = osp.join(ddir, "info", "query_IDX.mat")
    query = _load_mat(qpath, "query_IDX", title).reshape(-1)
    if query.size < 2:
        problems.append(f"info/query_IDX.mat: {query.size} query index(es); torchreid needs at "
                        "least 2 (it squeezes the array, so a single index becomes a scalar)")
    bad_q = query[(query < 1) | (query > num_test)]
    if bad_q.size:
        problems.append(f"info/query_IDX.mat: indices {sorted(set(bad_q.tolist()))[:10]} outside "
                        f"the allowed range 1..{num_test} (rows of info/tracks_test_info.mat)")
    if problems:
        _raise_listed(
            f"{title} at {ddir}: {len(problems)} problem(s) that torchreid's Mars parser would "
            "stop on with a bare AssertionError (or parse wrongly):", problems,
            ["correct these rows / files, or re-download info/ from "
             "https://github.com/liangzheng06/MARS-evaluation (the MARS info files)"], 20)


def _png_folder_problems(base: str, folders: Iterable[str], label: str) -> List[str]:
    out = []
    for name in folders:
        d = osp.join(base, name)
        if not osp.isdir(d):
            out.append(f"{d}: missing ({label})")
        elif not glob.glob(osp.join(glob.escape(d), "*.png")):
            out.append(f"{d}: no .png frame in it ({label}; torchreid asserts at least one)")
    return out


def _person_dirs(path: str) -> List[str]:
    return sorted(d for d in os.listdir(path) if osp.isdir(osp.join(path, d)))


def _read_splits(path: str, title: str) -> list:
    try:
        with open(path) as fh:
            splits = json.load(fh)
    except (OSError, ValueError) as err:
        raise DataValidationError(f"{title}: cannot read the split file {path} ({err}). Fix: "
                                  "restore it (or delete it where torchreid regenerates it).") from None
    ok = isinstance(splits, list) and splits and all(
        isinstance(s, dict) and isinstance(s.get("train"), list)
        and isinstance(s.get("test"), list) for s in splits)
    if not ok:
        raise DataValidationError(f"{title}: {path} must be a non-empty JSON list of "
                                  "{'train': [folder, ...], 'test': [folder, ...]} splits.")
    return splits


def precheck_ilidsvid(ddir: str) -> None:
    """Pre-empt the assertions of torchreid's ``iLIDSVID`` parser on ``ddir``
    (``<root>/ilids-vid``).

    torchreid asserts that every person folder it reads (``sequences/cam{1,2}/<person>``) holds
    at least one ``.png``; when it creates ``splits.json`` from ``ls_set`` it also asserts 10 x 300
    and equal cam1 / cam2 person sets, and the indices must point at existing folders.
    """
    title = "iLIDS-VID"
    seq = osp.join(ddir, "i-LIDS-VID", "sequences")
    cams = {c: _person_dirs(osp.join(seq, c)) for c in ("cam1", "cam2")}
    split_path = osp.join(ddir, "splits.json")
    problems: List[str] = []
    if osp.isfile(split_path):
        splits = _read_splits(split_path, title)
        needed = sorted({d for s in splits for d in s["train"] + s["test"]})
        src = f"named in {split_path}"
    else:
        only1 = sorted(set(cams["cam1"]) - set(cams["cam2"]))
        only2 = sorted(set(cams["cam2"]) - set(cams["cam1"]))
        for cam, only in (("cam1", only1), ("cam2", only2)):
            if only:
                problems.append(f"{len(only)} person folder(s) only in sequences/{cam}: "
                                f"{only[:8]} (torchreid asserts equal cam1/cam2 person sets)")
        mat_path = osp.join(ddir, "train-test people splits", "train_test_splits_ilidsvid.mat")
        ls_set = _load_mat_any(mat_path, "ls_set", title)
        if ls_set.shape != (10, 300):
            problems.append(f"{mat_path}: 'ls_set' has shape {ls_set.shape}; torchreid asserts "
                            "(10, 300) when it builds splits.json (or write splits.json yourself)")
        n = len(cams["cam1"])
        bad = ls_set[(ls_set < 1) | (ls_set > n) | (ls_set != np.round(ls_set))]
        if bad.size:
            problems.append(f"{mat_path}: 'ls_set' values {sorted(set(bad.tolist()))[:10]} are "
                            f"not 1-based indices 1..{n} of the sorted cam1 person folders")
        needed = sorted(set(cams["cam1"]) | set(cams["cam2"]))
        src = "a person folder"
    for cam in ("cam1", "cam2"):
        problems += _png_folder_problems(osp.join(seq, cam), needed, src)
    if problems:
        _raise_listed(f"{title} at {ddir}: {len(problems)} problem(s) that torchreid's iLIDSVID "
                      "parser would stop on with a bare AssertionError:", problems,
                      ["restore the missing frames (re-extract iLIDS-VID.tar) or fix the split "
                       "files"], 20)


def _load_mat_any(path: str, key: str, title: str) -> np.ndarray:
    """Like :func:`_load_mat` but accepting float arrays (torchreid converts ``ls_set`` itself)."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except (NotImplementedError, OSError, ValueError, TypeError) as err:
        raise DataValidationError(f"{title}: cannot read {path} with scipy.io.loadmat "
                                  f"({type(err).__name__}: {err}). Fix: re-download it.") from None
    if key not in mat:
        raise DataValidationError(f"{title}: {path} has no variable '{key}'.")
    return np.asarray(mat[key])


def precheck_prid2011(ddir: str) -> None:
    """Pre-empt the assertions of torchreid's ``PRID2011`` parser on ``ddir``
    (``<root>/prid2011``): every person folder named in ``splits_prid2011.json`` must exist in
    ``multi_shot/cam_a`` and ``cam_b`` and hold at least one ``.png``."""
    title = "PRID2011"
    split_path = osp.join(ddir, "splits_prid2011.json")
    splits = _read_splits(split_path, title)
    needed = sorted({d for s in splits for d in s["train"] + s["test"]})
    problems: List[str] = []
    for cam in ("cam_a", "cam_b"):
        problems += _png_folder_problems(osp.join(ddir, "prid_2011", "multi_shot", cam), needed,
                                         f"named in {split_path}")
    if problems:
        _raise_listed(f"{title} at {ddir}: {len(problems)} problem(s) that torchreid's PRID2011 "
                      "parser would stop on with a bare AssertionError:", problems,
                      ["restore the frames (re-extract prid_2011.zip) or fix "
                       "splits_prid2011.json"], 20)


_PID_CAM = re.compile(r"([-\d]+)_c(\d)")  # torchreid's Market-1501 / DukeMTMC-reID pattern


def _image_folder_problems(folder: str, max_cam: int, max_pid: int | None) -> Tuple[List[str], int]:
    """Problems of torchreid's regex parsing of ``folder/*.jpg``; and the usable image count."""
    problems: List[str] = []
    usable = 0
    for path in sorted(glob.glob(osp.join(glob.escape(folder), "*.jpg"))):
        m = _PID_CAM.search(path)
        if m is None:
            problems.append(f"{path}: name does not match torchreid's pattern "
                            "'<pid>_c<camera>' (e.g. 0002_c1s1_000451_03.jpg)")
            continue
        if m.start() < len(folder):
            problems.append(f"{path}: torchreid searches the pattern '<pid>_c<camera>' in the "
                            f"whole path and finds '{m.group(0)}' in the folder part, not the "
                            "file name; move the data to a root whose path has no such text")
            continue
        pid, cam = int(m.group(1)), int(m.group(2))
        if pid == -1:
            continue  # junk: skipped by torchreid
        if not 1 <= cam <= max_cam:
            problems.append(f"{path}: camera {cam} outside the allowed range 1..{max_cam}")
        elif max_pid is not None and not 0 <= pid <= max_pid:
            problems.append(f"{path}: pid {pid} outside the allowed range 0..{max_pid}")
        else:
            usable += 1
    return problems, usable


def _precheck_image(title: str, data_dir: str, max_cam: int, max_pid: int | None) -> None:
    problems: List[str] = []
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        folder = osp.join(data_dir, sub)
        found, usable = _image_folder_problems(folder, max_cam, max_pid)
        problems += found
        if usable == 0:
            problems.append(f"{folder}: no usable .jpg image (torchreid fails on an empty split)")
    if problems:
        _raise_listed(f"{title} at {data_dir}: {len(problems)} problem(s) that torchreid's parser "
                      "would stop on (bare AssertionError / AttributeError) or parse wrongly:",
                      problems, ["rename or remove these files, or re-extract the archive"], 20)


def precheck_market1501(ddir: str) -> None:
    """Pre-empt torchreid's ``Market1501`` parser: file names match ``<pid>_c<camera>`` within
    the file name (torchreid searches the whole path), camera 1..6, pid -1 (junk) or 0..1501, and
    no split is empty."""
    sub = osp.join(ddir, "Market-1501-v15.09.15")
    _precheck_image("Market-1501", sub if osp.isdir(sub) else ddir, 6, 1501)


def precheck_dukemtmcreid(ddir: str) -> None:
    """Pre-empt torchreid's ``DukeMTMCreID`` parser: names match ``<pid>_c<camera>``, camera
    1..8, no split empty."""
    _precheck_image("DukeMTMC-reID", osp.join(ddir, "DukeMTMC-reID"), 8, None)


#: parser pre-checks by dataset name (aliases of :data:`~.datasets.layouts.ALIASES` map here)
PRECHECKS: Dict[str, Callable[[str], None]] = {
    "mars": precheck_mars,
    "ilidsvid": precheck_ilidsvid,
    "prid2011": precheck_prid2011,
    "market1501": precheck_market1501,
    "dukemtmcreid": precheck_dukemtmcreid,
}


def precheck_dataset(name: str, root: str) -> None:
    """Layout check plus the parser pre-checks of dataset ``name`` under ``root``.

    Call it for every source and target name *before* torchreid parses them. A known dataset
    that is missing raises ``FileNotFoundError`` with the expected tree
    (:func:`~.datasets.layouts.resolve_layout`); files that torchreid's parser would stop on with a
    bare ``AssertionError`` raise :class:`DataValidationError` naming the row / folder / file.
    Unknown names are a no-op.

    Example:
        >>> precheck_dataset("my_own_dataset", "/anywhere")  # no-op
    """
    found = resolve_layout(name, root)
    check = PRECHECKS.get(ALIASES.get(name, name))
    if found is not None and check is not None:
        check(found[0])
