"""iLIDS-VID (Wang et al., ECCV 2014): layout, checks, split count, writer and the TF-CLIP
authors' split variant; torchreid's ``iLIDSVID`` parses it.

Files (docs/datasets.md#ilids-vid): ``i-LIDS-VID/sequences/cam{1,2}/personNNN/*.png`` and
``train-test people splits/train_test_splits_ilidsvid.mat`` (``ls_set``, 10 x 300, 1-based
indices of the sorted person folders). On first use torchreid writes ``splits.json`` from
``ls_set`` (the first half of each row = test identities).

Checks: :func:`precheck` (before torchreid parses) reads ``ls_set`` only while torchreid still
has to turn it into ``splits.json``: torchreid asserts its shape but maps an index 0 silently to
the last person folder. :func:`diagnose` (after torchreid's parser failed) names the empty or
missing person folders and the person sets that differ between the cameras, which torchreid
stops on with a bare ``AssertionError``.

:class:`ILIDSVIDFirstHalfTrain` (registered as ``ilidsvid_first_half_train``) trains on the first
half of each ``ls_set`` row, as the TF-CLIP authors' loader does (docs/datasets.md#ilids-vid).
:data:`NAMING` reads a frame path (:func:`frame_id`): one folder per camera and person.

Example:
    >>> LAYOUT.dirnames, LAYOUT.synthetic
    (('ilids-vid',), True)
    >>> frame_id("sequences/cam2/person014/cam2_person014_00317.png")
    FrameId(tracklet='cam2_person014', pid=14, camid=1)
    >>> num_splits("reid-data/ilids-vid")  # doctest: +SKIP
    10
"""

from __future__ import annotations

import glob
import json
import os
import os.path as osp
import re
from typing import Any, Dict, Iterable, List

import numpy as np

from ... import compat
from ..errors import DataValidationError, raise_listed
from .layout import FrameId, FrameNaming, Layout
from .matfile import load_array, savemat
from .writing import PlannedTracklet

__all__ = ["LAYOUT", "NAMING", "ILIDSVIDFirstHalfTrain", "num_splits", "precheck", "diagnose",
           "write", "read_splits", "frame_id"]

LAYOUT = Layout(
    name="ilidsvid",
    title="iLIDS-VID",
    dirnames=("ilids-vid",),
    variants=(
        ("i-LIDS-VID/sequences/cam1/", "i-LIDS-VID/sequences/cam2/",
         "train-test people splits/", "splits.json"),
        ("i-LIDS-VID/sequences/cam1/", "i-LIDS-VID/sequences/cam2/",
         "train-test people splits/train_test_splits_ilidsvid.mat"),
    ),
    tree="""\
<root>/
└── ilids-vid/                      iLIDS-VID.tar extracted here
    ├── i-LIDS-VID/
    │   └── sequences/
    │       ├── cam1/person001/cam1_person001_00317.png ...
    │       └── cam2/person001/cam2_person001_00317.png ...
    ├── train-test people splits/
    │   └── train_test_splits_ilidsvid.mat   ls_set, 10 x 300
    └── splits.json                 written by torchreid from the .mat on first use""",
    source="http://www.eecs.qmul.ac.uk/~xiatian/downloads_qmul_iLIDS-VID_ReID_dataset.html "
           "(iLIDS-VID.tar)",
    synthetic=True,
)

SPLIT_MAT = osp.join("train-test people splits", "train_test_splits_ilidsvid.mat")
_SEQUENCES = osp.join("i-LIDS-VID", "sequences")
#: a frame name ``cam<c>_person<NNN>_<frame>.png``
FRAME_NAME = re.compile(r"^(cam([0-9]+)_person([0-9]+))_[0-9]+\.png$")


def frame_id(path: str) -> FrameId | None:
    """Tracklet (camera and person), pid and 0-based camera of an iLIDS-VID frame path; None
    for another name.

    Example:
        >>> frame_id("cam1_person001_00317.png").pid, frame_id("0001.png")
        (1, None)
    """
    m = FRAME_NAME.match(osp.basename(path))
    if m is None:
        return None
    return FrameId(m.group(1), int(m.group(3)), max(int(m.group(2)) - 1, 0))


NAMING = FrameNaming(
    title=LAYOUT.title, example="cam1/person001/cam1_person001_00317.png", parse=frame_id,
    rule="the name's camera and person: cam1_person001_00317.png -> cam1_person001",
    tracklet_folders=True)

_iLIDSVID = compat.video_dataset_registry()["ilidsvid"]


class ILIDSVIDFirstHalfTrain(_iLIDSVID):
    """torchreid's iLIDS-VID with train and test identities swapped in every split.

    torchreid (after Wang et al. ECCV'14) tests on the first 150 identities of each ``ls_set``
    row and trains on the last 150; the TF-CLIP authors' loader trains on the first half
    (docs/datasets.md#ilids-vid). Query = cam1 and gallery = cam2 as in torchreid.

    Example:
        >>> from tfclip_torchreid import compat
        >>> dm = compat.VideoDataManager(root="reid-data", sources="ilidsvid_first_half_train")
        ... # doctest: +SKIP
    """

    def __init__(self, root: str = "", split_id: int = 0, **kwargs):
        self._split_id = split_id
        super().__init__(root=root, split_id=split_id, **kwargs)

    def process_data(self, dirnames, cam1=True, cam2=True):
        # torchreid calls this with (train dirs, both cameras), then (test dirs, cam1 only) and
        # (test dirs, cam2 only); the split file exists by then (torchreid writes it first).
        with open(self.split_path) as fh:
            split = json.load(fh)[self._split_id]
        dirnames = split["test"] if (cam1 and cam2) else split["train"]
        return super().process_data(dirnames, cam1=cam1, cam2=cam2)


def num_splits(ddir: str) -> int:
    """Number of train/test splits of the iLIDS-VID copy in ``ddir`` (``<root>/ilids-vid``).

    Read from ``splits.json`` if present (torchreid's file, or the synthetic generator's), else
    from the rows of ``ls_set``.
    """
    path = osp.join(ddir, "splits.json")
    if osp.isfile(path):
        with open(path) as fh:
            return len(json.load(fh))
    return int(load_array(osp.join(ddir, SPLIT_MAT), "ls_set", LAYOUT.title).shape[0])


# ---------------------------------------------------------------------------------- checks
def read_splits(path: str, title: str) -> list:
    """A torchreid split file (a JSON list of ``{"train": [...], "test": [...]}``), or a
    :class:`DataValidationError` naming it (shared with PRID2011)."""
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


def png_folder_problems(base: str, folders: Iterable[str], label: str) -> List[str]:
    """Folders of ``base`` that are missing or hold no ``.png`` (torchreid asserts >= 1);
    shared with PRID2011."""
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


def _ls_set_problems(ddir: str) -> List[str]:
    mat_path = osp.join(ddir, SPLIT_MAT)
    ls_set = load_array(mat_path, "ls_set", LAYOUT.title)
    problems: List[str] = []
    if ls_set.shape != (10, 300):
        problems.append(f"{mat_path}: 'ls_set' has shape {ls_set.shape}; torchreid asserts "
                        "(10, 300) when it builds splits.json (or write splits.json yourself)")
    n = len(_person_dirs(osp.join(ddir, _SEQUENCES, "cam1")))
    bad = ls_set[(ls_set < 1) | (ls_set > n) | (ls_set != np.round(ls_set))]
    if bad.size:
        problems.append(f"{mat_path}: 'ls_set' values {sorted(set(bad.tolist()))[:10]} are "
                        f"not 1-based indices 1..{n} of the sorted cam1 person folders")
    return problems


def _folder_problems(ddir: str) -> List[str]:
    seq = osp.join(ddir, _SEQUENCES)
    cams = {c: _person_dirs(osp.join(seq, c)) for c in ("cam1", "cam2")}
    split_path = osp.join(ddir, "splits.json")
    problems: List[str] = []
    if osp.isfile(split_path):
        splits = read_splits(split_path, LAYOUT.title)
        needed = sorted({d for s in splits for d in s["train"] + s["test"]})
        src = f"named in {split_path}"
    else:
        only1 = sorted(set(cams["cam1"]) - set(cams["cam2"]))
        only2 = sorted(set(cams["cam2"]) - set(cams["cam1"]))
        for cam, only in (("cam1", only1), ("cam2", only2)):
            if only:
                problems.append(f"{len(only)} person folder(s) only in sequences/{cam}: "
                                f"{only[:8]} (torchreid asserts equal cam1/cam2 person sets)")
        needed = sorted(set(cams["cam1"]) | set(cams["cam2"]))
        src = "a person folder"
    for cam in ("cam1", "cam2"):
        problems += png_folder_problems(osp.join(seq, cam), needed, src)
    return problems


def _raise(ddir: str, problems: List[str]) -> None:
    raise_listed(f"{LAYOUT.title} at {ddir}: {len(problems)} problem(s) that torchreid's "
                 "iLIDSVID parser stops on with a bare AssertionError (or reads wrongly):",
                 problems, ["restore the missing frames (re-extract iLIDS-VID.tar) or fix the "
                            "split files"], 20)


def precheck(ddir: str) -> None:
    """Before torchreid builds ``splits.json`` from ``ls_set`` (only while it is absent): the
    shape torchreid asserts (10 x 300) and 1-based indices of existing cam1 person folders
    (with the person-folder problems of :func:`diagnose`, if any, in the same message)."""
    if osp.isfile(osp.join(ddir, "splits.json")):
        return
    problems = _ls_set_problems(ddir)
    if problems:
        _raise(ddir, problems + _folder_problems(ddir))


def diagnose(ddir: str) -> None:
    """After torchreid's ``iLIDSVID`` parser failed on ``ddir``: every person folder it reads
    (``sequences/cam{1,2}/<person>``) must hold at least one ``.png``; while it builds
    ``splits.json`` the cam1 and cam2 person sets must be equal."""
    problems = _folder_problems(ddir)
    if problems:
        _raise(ddir, problems)


# ---------------------------------------------------------------------------------- writer
def write(ddir: str, tracks: List[PlannedTracklet], numbers: List[int], num_splits: int,
          rng: np.random.Generator) -> Dict[str, Any]:
    """Lay out iLIDS-VID under ``ddir``: frame paths ``sequences/cam<c>/person<NNN>/...png`` for
    the person ``numbers``, ``ls_set`` with ``num_splits`` random rows (from ``rng``) and the
    ``splits.json`` torchreid would derive from it. Returns the counts of one split."""
    width = max(3, len(str(max(numbers))))
    dirs = [f"person{n:0{width}d}" for n in numbers]  # sorted like torchreid's glob + sort
    for t in tracks:
        pdir = f"person{t.pid:0{width}d}"
        first = int(rng.integers(0, 500))
        t.paths = [
            f"i-LIDS-VID/sequences/cam{t.cam}/{pdir}/cam{t.cam}_{pdir}_{first + i:05d}.png"
            for i in range(t.num_frames)
        ]
    split_dir = osp.join(ddir, "train-test people splits")
    os.makedirs(split_dir)
    n = len(numbers)
    ls_set = np.stack([rng.permutation(n) + 1 for _ in range(num_splits)]).astype(np.float64)
    savemat(osp.join(split_dir, "train_test_splits_ilidsvid.mat"), {"ls_set": ls_set})
    splits = []
    half = n // 2
    for row in ls_set.astype(np.int64):
        # torchreid's convention (Wang et al. ECCV'14): first half of the row = test identities
        splits.append({
            "train": [dirs[i - 1] for i in sorted(row[half:])],
            "test": [dirs[i - 1] for i in sorted(row[:half])],
        })
    with open(osp.join(ddir, "splits.json"), "w") as fh:
        json.dump(splits, fh, indent=4, separators=(",", ": "))
    return {
        "num_splits": num_splits,
        "train": {"tracklets": 2 * (n - half), "ids": n - half, "cams": 2},
        "query": {"tracklets": half, "ids": half, "cams": 1},
        "gallery": {"tracklets": half, "ids": half, "cams": 1},
    }
