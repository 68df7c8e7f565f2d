"""Identity and tracklet plans of the synthetic datasets: who is seen by which camera, for how
long, and which tracklets are queries, distractors or junk.

A plan is a list of :class:`~tfclip_torchreid.data.datasets.writing.PlannedTracklet`; the dataset
module's ``write`` then lays out the files and assigns the frame paths, and the renderer draws the
frames. Identity structure per format (sizes: keyword arguments of
:func:`~tfclip_torchreid.testing.make_synthetic_dataset`):

* ``mars``: disjoint train and test identities over up to 6 cameras; every test identity is seen
  by >= 2 cameras; one query per (identity, camera) for all but one of its cameras, as in MARS; the
  first query camera of about half the identities holds a second tracklet, so the evaluator's
  same-identity-same-camera removal matters; distractor tracklets (pid 0, kept in the gallery) and
  junk tracklets (pid -1, folder ``00-1``, dropped by the loader). The default gallery is larger
  than 50 + k tracklets (torchreid's Python ranker fails on smaller galleries).
* ``ilidsvid``: one sequence per identity in each of ``cam1``/``cam2`` (``personNNN`` folders with
  non-contiguous numbers); the writer draws ``ls_set`` and ``splits.json``.
* ``lsvid``: training tracklets of 24-100 frames, so the authors' 48-frame chunking both cuts and
  drops some, while every identity keeps at least one tracklet of >= 48 frames; gallery-only
  identities and junk rows are added.
* ``market1501``: like MARS, with a track = one (identity, camera) walk of ``min_len..max_len``
  separate images; a test identity has one query image per camera for all but one of its cameras
  (the rest of that camera's walk stays in the gallery); distractors (pid 0) and junk (pid -1)
  are single images.

Example:
    >>> tracks = plan_market1501(np.random.default_rng(0), dict(
    ...     num_cams=2, num_train_ids=2, num_test_ids=2, num_distractors=1, num_junk=1,
    ...     min_len=1, max_len=2))
    >>> sorted({t.pid for t in tracks})
    [-1, 0, 1, 2, 3, 4]
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

from ..data.datasets.writing import PlannedTracklet

__all__ = ["plan_mars", "plan_lsvid", "plan_ilidsvid", "plan_market1501"]


# ----------------------------------------------------------------------------------------------
def _lengths(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(rng.integers(lo, hi + 1))


def _cover_all_cams(rng: np.random.Generator, tracks: List[PlannedTracklet], num_cams: int,
                    lo: int, hi: int) -> None:
    """Give every camera at least one training tracklet (torchreid counts cameras by presence)."""
    train = [t for t in tracks if t.split == "train"]
    if not train:
        return
    seen = {t.cam for t in train}
    for cam in range(1, num_cams + 1):
        if cam not in seen:
            donor = train[int(rng.integers(len(train)))]
            tracks.append(PlannedTracklet("train", donor.pid, cam, _lengths(rng, lo, hi), donor.key))


def _test_identity(rng: np.random.Generator, pid: int, num_cams: int, lo: int, hi: int,
                   max_queries: int, second_same_cam: bool) -> List[PlannedTracklet]:
    """Tracklets of one test identity: >= 2 cameras, queries on all but its last camera."""
    k = int(rng.integers(2, min(4, num_cams) + 1))
    cams = [int(c) + 1 for c in rng.permutation(num_cams)[:k]]
    out = []
    for j, cam in enumerate(cams):
        is_query_cam = j < min(k - 1, max_queries)
        n = 1 + int(rng.random() < 0.25)
        if j == 0 and second_same_cam:
            n = 2
        for i in range(n):
            out.append(PlannedTracklet("test", pid, cam, _lengths(rng, lo, hi), pid,
                              query=is_query_cam and i == 0))
    return out


def plan_mars(rng: np.random.Generator, p: Dict[str, Any]) -> List[PlannedTracklet]:
    C = p["num_cams"]
    if not 2 <= C <= 6:
        raise ValueError(f"mars: num_cams must be in 2..6 (MARS camera ids are one digit 1..6), got {C}")
    lo, hi = p["min_len"], p["max_len"]
    tlo = p["train_min_len"] or lo
    thi = p["train_max_len"] or hi
    tracks: List[PlannedTracklet] = []
    for i in range(p["num_train_ids"]):
        pid = 2 * i + 1
        k = int(rng.integers(min(2, C), min(4, C) + 1))
        for cam in sorted(int(c) + 1 for c in rng.permutation(C)[:k]):
            for _ in range(1 + int(rng.random() < 0.3)):
                tracks.append(PlannedTracklet("train", pid, cam, _lengths(rng, tlo, thi), pid))
    _cover_all_cams(rng, tracks, C, tlo, thi)
    for i in range(p["num_test_ids"]):
        pid = 2 * i + 2
        tracks += _test_identity(rng, pid, C, lo, hi, max_queries=C,
                                 second_same_cam=(i == 0 or rng.random() < 0.5))
    key = 100_000
    for _ in range(p["num_distractors"]):
        tracks.append(PlannedTracklet("test", 0, int(rng.integers(1, C + 1)), _lengths(rng, lo, hi), key))
        key += 1
    for _ in range(p["num_junk"]):
        tracks.append(PlannedTracklet("test", -1, int(rng.integers(1, C + 1)), _lengths(rng, lo, hi), key))
        key += 1
    return tracks


def plan_lsvid(rng: np.random.Generator, p: Dict[str, Any]) -> List[PlannedTracklet]:
    C = p["num_cams"]
    if not 2 <= C <= 99:
        raise ValueError(f"lsvid: num_cams must be in 2..99 (LS-VID has 15), got {C}")
    lo, hi = p["min_len"], p["max_len"]
    tlo, thi = p["train_min_len"] or lo, p["train_max_len"] or hi
    n_tr, n_te, n_g = p["num_train_ids"], p["num_test_ids"], p["num_gallery_ids"]
    total = n_tr + n_te + n_g
    pids = rng.choice(np.arange(1, 5 * total + 2), total, replace=False)
    tr_pids = sorted(int(x) for x in pids[:n_tr])
    te_pids = sorted(int(x) for x in pids[n_tr:n_tr + n_te])
    g_pids = sorted(int(x) for x in pids[n_tr + n_te:])
    tracks: List[PlannedTracklet] = []
    for pid in tr_pids:
        k = int(rng.integers(1, min(3, C) + 1))
        first = len(tracks)
        for cam in sorted(int(c) + 1 for c in rng.permutation(C)[:k]):
            for _ in range(1 + int(rng.random() < 0.4)):
                tracks.append(PlannedTracklet("train", pid, cam, _lengths(rng, tlo, thi), pid))
        # the authors' 48-frame chunking drops shorter tracklets: keep every identity trainable
        if thi >= 48 and max(t.num_frames for t in tracks[first:]) < 48:
            tracks[first].num_frames = _lengths(rng, 48, thi)
    _cover_all_cams(rng, tracks, C, tlo, thi)
    for i, pid in enumerate(te_pids):
        tracks += _test_identity(rng, pid, C, lo, hi, max_queries=1 + int(rng.random() < 0.5),
                                 second_same_cam=(i == 0 or rng.random() < 0.3))
    for pid in g_pids:
        k = int(rng.integers(1, min(3, C) + 1))
        for cam in sorted(int(c) + 1 for c in rng.permutation(C)[:k]):
            tracks.append(PlannedTracklet("test", pid, cam, _lengths(rng, lo, hi), pid))
    key = 100_000
    for _ in range(p["num_junk"]):
        tracks.append(PlannedTracklet("test", -1, int(rng.integers(1, C + 1)), _lengths(rng, lo, hi), key))
        key += 1
    return tracks


def plan_ilidsvid(rng: np.random.Generator, p: Dict[str, Any]) -> Tuple[List[PlannedTracklet], List[int]]:
    n = p["num_ids"]
    if n < 2 or n % 2:
        raise ValueError(f"ilidsvid: num_ids must be even and >= 2 (half train, half test), got {n}")
    if p["num_splits"] < 1:
        raise ValueError(f"ilidsvid: num_splits must be >= 1, got {p['num_splits']}")
    # person numbers are not contiguous in the real data (person001 ... person319 with gaps)
    numbers = sorted(int(x) for x in rng.choice(np.arange(1, n + n // 3 + 2), n, replace=False))
    tracks = []
    for num in numbers:
        for cam in (1, 2):
            tracks.append(PlannedTracklet("all", num, cam, _lengths(rng, p["min_len"], p["max_len"]), num))
    return tracks, numbers


def plan_market1501(rng: np.random.Generator, p: Dict[str, Any]) -> List[PlannedTracklet]:
    """Market-1501: like MARS, with a track = one (identity, camera) walk of separate images."""
    C = p["num_cams"]
    if not 2 <= C <= 6:
        raise ValueError(f"market1501: num_cams must be in 2..6 (torchreid asserts camera 1..6), "
                         f"got {C}")
    n_ids = max(p["num_train_ids"], p["num_test_ids"])
    if 2 * n_ids > 1500:
        raise ValueError(f"market1501: at most 750 train and 750 test identities (torchreid "
                         f"asserts pid <= 1501), got {n_ids}")
    lo, hi = p["min_len"], p["max_len"]
    tracks: List[PlannedTracklet] = []
    for i in range(p["num_train_ids"]):
        pid = 2 * i + 1
        k = int(rng.integers(2, min(4, C) + 1))
        for cam in sorted(int(c) + 1 for c in rng.permutation(C)[:k]):
            tracks.append(PlannedTracklet("train", pid, cam, _lengths(rng, lo, hi), pid))
    _cover_all_cams(rng, tracks, C, lo, hi)
    for i in range(p["num_test_ids"]):
        pid = 2 * i + 2
        tracks += _test_identity(rng, pid, C, lo, hi, max_queries=C,
                                 second_same_cam=(i == 0 or rng.random() < 0.3))
    key = 100_000
    for pid, count in ((0, p["num_distractors"]), (-1, p["num_junk"])):
        for _ in range(count):
            tracks.append(PlannedTracklet("test", pid, int(rng.integers(1, C + 1)), 1, key))
            key += 1
    return tracks

