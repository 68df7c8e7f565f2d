"""Checks of parsed ``(img_paths, pid, camid[, dsetid])`` tracklets: labels and cameras.

Run by the data manager (and the runner) on torchreid's parsed splits, before any compute:

* :func:`check_tracklets`: empty splits or frame lists, training labels that are not ``0..Y-1``,
  camera ids outside the camera-embedding table;
* :func:`check_test_cameras`: test cameras that never occur in training while the model has a
  camera embedding (SIE), whose rows would then stay untrained.

Example:
    >>> check_tracklets("toy", "train", [(("a.jpg",), 0, 0), (("b.jpg",), 2, 1)], relabelled=True)
    Traceback (most recent call last):
    ...
    tfclip_torchreid.data.errors.DataValidationError: toy train: 2 problem(s) in 2 tracklets:...
"""

from __future__ import annotations

import numbers
import os
import warnings
from typing import Dict, List, Mapping, Sequence, Tuple

from .errors import DataValidationError, raise_listed

__all__ = ["check_tracklets", "check_test_cameras"]


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _first_frame(paths: object) -> str:
    if isinstance(paths, (str, os.PathLike)):
        return os.fspath(paths)
    try:
        return os.fspath(paths[0]) if len(paths) else "<no frames>"
    except (TypeError, IndexError):
        return repr(paths)[:120]


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
        tfclip_torchreid.data.errors.DataValidationError: mars query: 1 problem(s) in 1 tracklets:
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
    raise_listed(f"{name} {split}: {len(problems)} problem(s) in {len(tracklets)} tracklets:",
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
