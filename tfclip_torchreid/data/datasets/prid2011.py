"""PRID2011 (Hirzer et al., SCIA 2011): layout, diagnosis and split count; torchreid's
``PRID2011`` parses it.

Files (docs/datasets.md#prid2011): ``prid_2011/multi_shot/cam_{a,b}/person_NNNN/*.png`` and
torchreid's ``splits_prid2011.json`` (10 splits of person folders). torchreid stops on every
problem :func:`diagnose` names (an unreadable split file, a person folder named there that is
missing or has no ``.png``), so the folders are only read again once its parser has failed.
:data:`NAMING` reads a frame path (:func:`frame_id`): the folders name camera and person.

Example:
    >>> LAYOUT.dirnames, LAYOUT.synthetic
    (('prid2011',), False)
    >>> frame_id("multi_shot/cam_b/person_0007/0001.png")
    FrameId(tracklet='cam_b/person_0007', pid=7, camid=1)
"""

from __future__ import annotations

import os.path as osp
import re
from typing import List

from ..errors import raise_listed
from .ilidsvid import png_folder_problems, read_splits
from .layout import FrameId, FrameNaming, Layout

__all__ = ["LAYOUT", "NAMING", "num_splits", "diagnose", "frame_id"]

LAYOUT = Layout(
    name="prid2011",
    title="PRID2011",
    dirnames=("prid2011",),
    variants=(("prid_2011/multi_shot/cam_a/", "prid_2011/multi_shot/cam_b/",
               "splits_prid2011.json"),),
    tree="""\
<root>/
└── prid2011/
    ├── prid_2011/                  prid_2011.zip extracted here
    │   └── multi_shot/
    │       ├── cam_a/person_0001/0001.png ...
    │       └── cam_b/person_0001/0001.png ...
    └── splits_prid2011.json        torchreid's 10 splits""",
    source=(
        "https://www.tugraz.at/institute/icg/research/team-bischof/lrs/downloads/PRID11/ ; "
        "splits_prid2011.json: see "
        "https://kaiyangzhou.github.io/deep-person-reid/datasets.html#prid2011"
    ),
)

SPLIT_FILE = "splits_prid2011.json"
_FRAME = re.compile(r"^[0-9]+\.png$")
_PERSON = re.compile(r"^person_([0-9]+)$")
_CAMERA = re.compile(r"^cam_([ab])$")


def frame_id(path: str) -> FrameId | None:
    """Tracklet (camera and person folders), pid and 0-based camera (a -> 0, b -> 1) of a
    PRID2011 frame ``cam_<a|b>/person_<NNNN>/<frame>.png``; None for another path.

    Example:
        >>> frame_id("/d/cam_a/person_0001/0005.png").camid, frame_id("/d/person_0001/0005.png")
        (0, None)
    """
    folder = osp.dirname(osp.abspath(path))
    person, camera = osp.basename(folder), osp.basename(osp.dirname(folder))
    pm, cm = _PERSON.match(person), _CAMERA.match(camera)
    if not (_FRAME.match(osp.basename(path)) and pm and cm):
        return None
    return FrameId(f"{camera}/{person}", int(pm.group(1)), "ab".index(cm.group(1)))


NAMING = FrameNaming(
    title=LAYOUT.title, example="multi_shot/cam_a/person_0001/0001.png", parse=frame_id,
    rule="the camera and person folders: cam_a/person_0001", tracklet_folders=True)


def num_splits(ddir: str) -> int:
    """Number of train/test splits in ``<ddir>/splits_prid2011.json``."""
    return len(read_splits(osp.join(ddir, SPLIT_FILE), LAYOUT.title))


def diagnose(ddir: str) -> None:
    """After torchreid's ``PRID2011`` parser failed on ``ddir`` (``<root>/prid2011``): the split
    file must be readable, and every person folder it names must exist in ``multi_shot/cam_a``
    and ``cam_b`` and hold at least one ``.png``."""
    title = LAYOUT.title
    split_path = osp.join(ddir, SPLIT_FILE)
    splits = read_splits(split_path, title)
    needed = sorted({d for s in splits for d in s["train"] + s["test"]})
    problems: List[str] = []
    for cam in ("cam_a", "cam_b"):
        problems += png_folder_problems(osp.join(ddir, "prid_2011", "multi_shot", cam), needed,
                                        f"named in {split_path}")
    if problems:
        raise_listed(f"{title} at {ddir}: {len(problems)} problem(s) that torchreid's PRID2011 "
                     "parser stops on with a bare AssertionError:", problems,
                     ["restore the frames (re-extract prid_2011.zip) or fix "
                      "splits_prid2011.json"], 20)
