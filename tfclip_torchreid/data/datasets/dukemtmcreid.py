"""DukeMTMC-reID (Zheng et al., ICCV 2017): layout and checks; torchreid's ``DukeMTMCreID``
parses it. Its images are named like Market-1501's (``<pid>_c<camera>_f<frame>.jpg``, camera 1..8),
and so are its checks (:mod:`.market1501`).

:func:`precheck` (before torchreid parses): no folder path matching ``<pid>_c<camera>`` (torchreid
would read every image as that pid and camera; it has no pid range to stop it). :func:`diagnose`
(after torchreid's parser failed): names that do not match, cameras outside 1..8.
:data:`NAMING` reads an image path (:func:`frame_id`): every image is a tracklet of its own.

Example:
    >>> LAYOUT.dirnames
    ('dukemtmc-reid',)
    >>> frame_id("query/0005_c2_f0046985.jpg")
    FrameId(tracklet='0005_c2_f0046985.jpg', pid=5, camid=1)
"""

from __future__ import annotations

import os.path as osp
import re

from .layout import FrameId, FrameNaming, Layout
from .market1501 import (
    SPLIT_DIRS,
    image_frame_id,
    image_name_problems,
    path_pattern_problems,
    raise_image_problems,
)

__all__ = ["LAYOUT", "NAMING", "precheck", "diagnose", "frame_id"]

SUBDIR = "DukeMTMC-reID"
NUM_CAMS = 8

LAYOUT = Layout(
    name="dukemtmcreid",
    title="DukeMTMC-reID",
    dirnames=("dukemtmc-reid",),
    variants=(tuple(f"{SUBDIR}/{d}/" for d in SPLIT_DIRS),),
    tree="""\
<root>/
└── dukemtmc-reid/
    └── DukeMTMC-reID/              DukeMTMC-reID.zip extracted here
        ├── bounding_box_train/     0001_c2_f0046182.jpg ... (<pid>_c<camera 1..8>_f<frame>)
        ├── query/
        └── bounding_box_test/""",
    source=(
        "https://github.com/layumi/DukeMTMC-reID_evaluation (the original duke.edu download "
        "is offline; the DukeMTMC data was withdrawn by its creators)"
    ),
)

#: an image name ``<pid>_c<camera>_f<frame>.jpg``
IMAGE_NAME = re.compile(r"^([0-9]+)_c([0-9]+)_f[0-9]+\.[A-Za-z]+$")


def frame_id(path: str) -> FrameId | None:
    """A DukeMTMC-reID image path as a one-image tracklet with its pid and 0-based camera;
    None for another name."""
    return image_frame_id(IMAGE_NAME, path)


NAMING = FrameNaming(
    title=LAYOUT.title, example="bounding_box_test/0005_c2_f0046985.jpg", parse=frame_id,
    rule="every image on its own", images=True)


def precheck(ddir: str) -> None:
    """Before torchreid parses ``ddir`` (``<root>/dukemtmc-reid``): no split folder path that
    matches ``<pid>_c<camera>`` (nothing is read)."""
    data_dir = osp.join(ddir, SUBDIR)
    problems = path_pattern_problems(data_dir)
    if problems:
        raise_image_problems(LAYOUT.title, data_dir, problems)


def diagnose(ddir: str) -> None:
    """After torchreid's ``DukeMTMCreID`` parser failed on ``ddir``: image names that do not
    match ``<pid>_c<camera>`` and cameras outside 1..8."""
    data_dir = osp.join(ddir, SUBDIR)
    problems = image_name_problems(data_dir, NUM_CAMS, None)
    if problems:
        raise_image_problems(LAYOUT.title, data_dir, problems)
