"""DukeMTMC-VideoReID (Wu et al., CVPR 2018): the layout torchreid's ``DukeMTMCVidReID``
parses (docs/datasets.md#dukemtmc-videoreid).

torchreid writes ``split_{train,query,gallery}.json`` caches into the dataset folder on first
use; no pre-check beyond the layout (its parser reads the folder tree, not annotation files).
:data:`NAMING` reads a frame path (:func:`frame_id`): one folder per tracklet.

Example:
    >>> LAYOUT.dirnames
    ('dukemtmc-vidreid',)
    >>> frame_id("gallery/0001/0003/0001_C2_F0040_X30001.jpg")
    FrameId(tracklet='0001_C2', pid=1, camid=1)
"""

from __future__ import annotations

import os.path as osp
import re

from .layout import FrameId, FrameNaming, Layout

__all__ = ["LAYOUT", "NAMING", "frame_id"]

LAYOUT = Layout(
    name="dukemtmcvidreid",
    title="DukeMTMC-VideoReID",
    dirnames=("dukemtmc-vidreid",),
    variants=(("DukeMTMC-VideoReID/train/", "DukeMTMC-VideoReID/query/",
               "DukeMTMC-VideoReID/gallery/"),),
    tree="""\
<root>/
└── dukemtmc-vidreid/
    └── DukeMTMC-VideoReID/
        ├── train/0001/<tracklet>/0001_C1_F0001_X00001.jpg ...
        ├── query/
        └── gallery/
    (torchreid writes split_train/query/gallery.json caches here)""",
    source=(
        "https://github.com/Yu-Wu/DukeMTMC-VideoReID (the original duke.edu download is "
        "offline; the DukeMTMC data was withdrawn by its creators)"
    ),
)

#: a frame name ``<pid>_C<camera>_F<frame>_X<n>.jpg``
FRAME_NAME = re.compile(r"^(([0-9]+)_C([0-9]+))_F[0-9]+_X[0-9]+\.[A-Za-z]+$")


def frame_id(path: str) -> FrameId | None:
    """Person and camera (the tracklet is its folder), pid and 0-based camera of a
    DukeMTMC-VideoReID frame path; None for another name.

    Example:
        >>> frame_id("0001_C1_F0001_X00001.jpg").camid, frame_id("0001_c1_f0001.jpg")
        (0, None)
    """
    m = FRAME_NAME.match(osp.basename(path))
    if m is None:
        return None
    return FrameId(m.group(1), int(m.group(2)), max(int(m.group(3)) - 1, 0))


NAMING = FrameNaming(
    title=LAYOUT.title, example="gallery/0001/0001/0001_C1_F0001_X00001.jpg", parse=frame_id,
    rule="the name's person and camera: 0001_C1_F0001_X00001.jpg -> 0001_C1",
    tracklet_folders=True)
