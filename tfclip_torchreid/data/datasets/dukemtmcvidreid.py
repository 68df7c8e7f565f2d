"""DukeMTMC-VideoReID (Wu et al., CVPR 2018): the layout torchreid's ``DukeMTMCVidReID``
parses (docs/datasets.md#dukemtmc-videoreid).

torchreid writes ``split_{train,query,gallery}.json`` caches into the dataset folder on first
use; no pre-check beyond the layout (its parser reads the folder tree, not annotation files).

Example:
    >>> LAYOUT.dirnames
    ('dukemtmc-vidreid',)
"""

from __future__ import annotations

from .layout import Layout

__all__ = ["LAYOUT"]

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
