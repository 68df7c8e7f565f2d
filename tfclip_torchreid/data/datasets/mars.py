"""MARS (Zheng et al., ECCV 2016): layout, pre-check and writer; torchreid's ``Mars`` parses it.

Files (docs/datasets.md#mars): ``bbox_train/`` and ``bbox_test/`` hold the frames
(``0001C1T0001F001.jpg``: person, camera, tracklet, frame) in one folder per person; ``info/`` holds
the frame name lists ``{train,test}_name.txt``, the tracklet rows ``tracks_{train,test}_info.mat``
(``[start, end, pid, camera]``, 1-based inclusive rows of the name list) and ``query_IDX.mat``
(1-based test rows).

:func:`precheck` runs *before* torchreid parses: torchreid stops on bare ``AssertionError``\\ s
that name no file (camera 9, names of several persons or cameras in one tracklet), and it parses
some broken rows *silently* (a range past the end of the name list is cut short; a query index
0 wraps to the last test row), so the info files are read here first even though torchreid reads
them again (about a second on the real data).

:data:`NAMING` reads a frame path without the info files (:func:`frame_id`): the frames of one
person folder belong to several tracklets, told apart by the name's tracklet field.

Example:
    >>> LAYOUT.dirnames, LAYOUT.synthetic
    (('mars',), True)
    >>> frame_id("bbox_test/0001/0001C1T0002F017.jpg")
    FrameId(tracklet='0001C1T0002', pid=1, camid=0)
    >>> precheck("/data/reid/mars")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import os.path as osp
import re
from typing import Any, Dict, List

import numpy as np

from ..errors import DataValidationError, raise_listed
from .layout import FrameId, FrameNaming, Layout
from .matfile import load_int_array, savemat
from .writing import PlannedTracklet, assign_tids, counts

__all__ = ["LAYOUT", "NAMING", "FRAME_NAME", "frame_id", "precheck", "write"]

LAYOUT = Layout(
    name="mars",
    title="MARS",
    dirnames=("mars",),
    variants=((
        "bbox_train/", "bbox_test/", "info/train_name.txt", "info/test_name.txt",
        "info/tracks_train_info.mat", "info/tracks_test_info.mat", "info/query_IDX.mat",
    ),),
    tree="""\
<root>/
└── mars/
    ├── bbox_train/                 from bbox_train.zip
    │   ├── 0001/0001C1T0001F001.jpg ...
    │   └── ...
    ├── bbox_test/                  from bbox_test.zip (folders 00-1 = junk, 0000 = distractors)
    │   └── ...
    └── info/                       from MARS-evaluation/info
        ├── train_name.txt
        ├── test_name.txt
        ├── tracks_train_info.mat
        ├── tracks_test_info.mat
        └── query_IDX.mat""",
    source=(
        "images: http://www.liangzheng.com.cn/Project/project_mars.html (bbox_train.zip, "
        "bbox_test.zip); info/: https://github.com/liangzheng06/MARS-evaluation/tree/master/info"
    ),
    synthetic=True,
)

#: torchreid's camera range (``assert 1 <= camid <= 6``)
NUM_CAMS = 6
#: a frame name: person (4 digits; ``00-1`` junk, ``0000`` distractors), camera, tracklet, frame
FRAME_NAME = re.compile(r"^((\d{4}|00-1)C(\d+)T(\d+))F\d+\.[A-Za-z]+$")


def frame_id(path: str) -> FrameId | None:
    """Tracklet (person, camera and tracklet fields), pid and 0-based camera of a MARS frame
    path; None for another name.

    Example:
        >>> frame_id("00-1C6T0002F010.jpg"), frame_id("frame_0001.jpg")
        (FrameId(tracklet='00-1C6T0002', pid=-1, camid=5), None)
    """
    m = FRAME_NAME.match(osp.basename(path))
    if m is None:
        return None
    pid = -1 if m.group(2) == "00-1" else int(m.group(2))
    return FrameId(m.group(1), pid, max(int(m.group(3)) - 1, 0))


NAMING = FrameNaming(
    title=LAYOUT.title, example="0001/0001C1T0001F001.jpg", parse=frame_id,
    rule="the name's person, camera and tracklet fields: 0001C1T0001F001.jpg -> 0001C1T0001")


# ---------------------------------------------------------------------------------- pre-check
def _read_names(path: str) -> List[str]:
    with open(path) as fh:
        return [line.rstrip() for line in fh]


def _segment_constant(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """For each inclusive 0-based range [start, end] (valid), whether ``values`` is constant."""
    change = np.concatenate([[0], np.cumsum(values[1:] != values[:-1])])
    return change[ends] == change[starts]


def _row_problems(split: str, names: List[str], info: np.ndarray) -> List[str]:
    rel_info = f"info/tracks_{split}_info.mat"
    rel_names = f"info/{split}_name.txt"
    problems: List[str] = []
    n = len(names)
    start, end, pid, cam = (info[:, k].astype(np.int64) for k in range(4))
    keep = pid != -1  # torchreid skips junk rows before any check
    bad_cam = keep & ((cam < 1) | (cam > NUM_CAMS))
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
            problems.append(f"{row}: camera {int(cam[r])} outside the allowed range "
                            f"1..{NUM_CAMS}{frames}")
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


def precheck(ddir: str) -> None:
    """Pre-empt every assertion of torchreid's ``Mars`` parser on ``ddir`` (``<root>/mars``),
    and the rows it would parse wrongly without a word.

    torchreid asserts per non-junk row of ``tracks_{train,test}_info.mat`` (start, end, pid,
    camera; 1-based frame rows of ``{train,test}_name.txt``) that the camera is 1..6 and that the
    names of rows start..end share the person (characters 0-3) and the camera (character 5); it
    also needs integer arrays, a ``query_IDX`` within the test rows, and at least 2 queries (a
    single index is squeezed to a scalar and breaks the query selection).

    Raises:
        DataValidationError: listing every bad row with its frames and the fix.
    """
    title = LAYOUT.title
    problems: List[str] = []
    num_test = 0
    for split in ("train", "test"):
        names = _read_names(osp.join(ddir, "info", f"{split}_name.txt"))
        path = osp.join(ddir, "info", f"tracks_{split}_info.mat")
        info = load_int_array(path, f"track_{split}_info", title)
        if info.ndim != 2 or info.shape[1] != 4 or info.shape[0] == 0:
            raise DataValidationError(
                f"{title}: 'track_{split}_info' in {path} has shape {info.shape}; expected "
                "(tracklets, 4) = start row, end row, pid, camera. Fix: re-download info/.")
        if split == "test":
            num_test = info.shape[0]
        problems += _row_problems(split, names, info)
    qpath = osp.join(ddir, "info", "query_IDX.mat")
    query = load_int_array(qpath, "query_IDX", title).reshape(-1)
    if query.size < 2:
        problems.append(f"info/query_IDX.mat: {query.size} query index(es); torchreid needs at "
                        "least 2 (it squeezes the array, so a single index becomes a scalar)")
    bad_q = query[(query < 1) | (query > num_test)]
    if bad_q.size:
        problems.append(f"info/query_IDX.mat: indices {sorted(set(bad_q.tolist()))[:10]} outside "
                        f"the allowed range 1..{num_test} (rows of info/tracks_test_info.mat)")
    if problems:
        raise_listed(
            f"{title} at {ddir}: {len(problems)} problem(s) that torchreid's Mars parser would "
            "stop on with a bare AssertionError (or parse wrongly):", problems,
            ["correct these rows / files, or re-download info/ from "
             "https://github.com/liangzheng06/MARS-evaluation (the MARS info files)"], 20)


# ---------------------------------------------------------------------------------- writer
def write(ddir: str, tracks: List[PlannedTracklet]) -> Dict[str, Any]:
    """Lay out MARS under ``ddir``: ``info/`` (name lists, track rows, query rows) and the frame
    paths ``bbox_{train,test}/<person>/<person>C<cam>T<tracklet>F<frame>.jpg`` (junk: folder
    ``00-1``). Returns the counts torchreid's ``Mars`` should parse."""
    assign_tids(tracks, per="cam")
    os.makedirs(osp.join(ddir, "info"))
    expected: Dict[str, Any] = {}
    for split, home in (("train", "bbox_train"), ("test", "bbox_test")):
        items = sorted((t for t in tracks if t.split == split),
                       key=lambda t: ("00-1" if t.pid < 0 else f"{t.pid:04d}", t.cam, t.tid))
        names: List[str] = []
        rows = []
        for t in items:
            folder = "00-1" if t.pid < 0 else f"{t.pid:04d}"
            start = len(names) + 1
            for fno in range(1, t.num_frames + 1):
                name = f"{folder}C{t.cam}T{t.tid:04d}F{fno:03d}.jpg"
                names.append(name)
                t.paths.append(osp.join(home, folder, name))
            rows.append([start, len(names), t.pid, t.cam])
        with open(osp.join(ddir, "info", f"{split}_name.txt"), "w") as fh:
            fh.write("\n".join(names) + "\n")
        info = np.asarray(rows, dtype=np.int32).reshape(-1, 4)
        savemat(osp.join(ddir, "info", f"tracks_{split}_info.mat"), {f"track_{split}_info": info})
        if split == "test":
            qidx = np.asarray([i + 1 for i, t in enumerate(items) if t.query], np.int32)
            savemat(osp.join(ddir, "info", "query_IDX.mat"), {"query_IDX": qidx[None, :]})
            query = [t for t in items if t.query]
            gallery = [t for t in items if not t.query and t.pid != -1]
            expected["query"] = counts(query)
            expected["gallery"] = counts(gallery)
            expected["junk_tracklets"] = sum(t.pid == -1 for t in items)
            expected["distractor_tracklets"] = sum(t.pid == 0 for t in items)
        else:
            expected["train"] = counts(items)
    return expected
