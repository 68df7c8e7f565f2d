"""Expected on-disk layouts of the ReID benchmarks, checked before any loader runs.

Video: MARS, iLIDS-VID, PRID2011, DukeMTMC-VideoReID, LS-VID; image: Market-1501, MSMT17,
DukeMTMC-reID. torchreid's datasets react badly to a missing folder: iLIDS-VID, DukeMTMC-VideoReID,
Market-1501 and DukeMTMC-reID try to download (the PyPI package then dies on
``ModuleNotFoundError: six`` and leaves an empty folder behind, so the next run fails with a
different message), MSMT17 stops on ``AssertionError: Dataset folder not found`` and MARS/PRID2011
raise a vague ``RuntimeError``. :func:`check_dataset_layout` raises a :class:`FileNotFoundError` instead that
names what is missing, draws the expected tree and says where the data comes from
(docs/torchreid.md#dataset-downloads; docs/datasets.md).

Example:
    >>> from tfclip_torchreid.data.datasets.layouts import check_dataset_layout
    >>> check_dataset_layout("mars", "/no/such/root")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: MARS not found under root '/no/such/root'...
"""

from __future__ import annotations

import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Tuple

__all__ = ["LAYOUTS", "ALIASES", "check_dataset_layout", "resolve_layout", "expected_tree"]


@dataclass(frozen=True)
class Layout:
    """Required paths of one benchmark.

    ``dirnames``: accepted dataset folder names under ``root`` (the first is torchreid's);
    ``variants``: alternative sets of required paths relative to the dataset folder (a trailing
    ``/`` marks a directory); the dataset is complete if every path of one variant exists.
    """

    title: str
    dirnames: Tuple[str, ...]
    variants: Tuple[Tuple[str, ...], ...]
    tree: str
    source: str
    synthetic: str | None = None


LAYOUTS: Dict[str, Layout] = {
    "mars": Layout(
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
        synthetic="mars",
    ),
    "ilidsvid": Layout(
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
        synthetic="ilidsvid",
    ),
    "prid2011": Layout(
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
    ),
    "dukemtmcvidreid": Layout(
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
    ),
    "lsvid": Layout(
        title="LS-VID",
        dirnames=("lsvid", "LS-VID"),
        variants=(
            ("list_sequence/list_seq_train.txt", "list_sequence/list_seq_test.txt",
             "test/data/info_test.mat"),
            ("info/list_sequence/list_seq_train.txt", "info/list_sequence/list_seq_test.txt",
             "info/data/info_test.mat"),
        ),
        tree="""\
<root>/
└── lsvid/                          (or LS-VID/, the archive's own name)
    ├── tracklet_train/ tracklet_val/ tracklet_test/    frames
    ├── list_sequence/
    │   ├── list_seq_train.txt      one tracklet per line: "<frame path prefix> <pid>"
    │   └── list_seq_test.txt
    └── test/data/info_test.mat     MATLAB v7.3; 'query' = 1-based rows of list_seq_test.txt
  or the layout of the TF-CLIP authors' code:
    ├── info/list_sequence/list_seq_{train,test}.txt
    └── info/data/info_test.mat""",
        source="on request from PKU's VMC lab, https://www.pkuvmc.com/dataset.html "
               "(Li et al., Global-Local Temporal Representations, ICCV 2019)",
        synthetic="lsvid",
    ),
    "market1501": Layout(
        title="Market-1501",
        dirnames=("market1501",),
        variants=(
            ("Market-1501-v15.09.15/bounding_box_train/", "Market-1501-v15.09.15/query/",
             "Market-1501-v15.09.15/bounding_box_test/"),
            # the older layout without the versioned folder (torchreid reads it with a warning)
            ("bounding_box_train/", "query/", "bounding_box_test/"),
        ),
        tree="""\
<root>/
└── market1501/
    └── Market-1501-v15.09.15/      Market-1501-v15.09.15.zip extracted here
        ├── bounding_box_train/     0002_c1s1_000451_03.jpg ... (<pid>_c<camera>s<seq>_<frame>_<box>)
        ├── query/                  one image per (identity, camera)
        └── bounding_box_test/      gallery; 0000_* = distractors, -1_* = junk (ignored)""",
        source=(
            "http://www.liangzheng.org/Project/project_reid.html (Market-1501-v15.09.15.zip; "
            "see also https://kaiyangzhou.github.io/deep-person-reid/datasets.html)"
        ),
        synthetic="market1501",
    ),
    "msmt17": Layout(
        title="MSMT17",
        dirnames=("msmt17",),
        variants=tuple(
            (f"{v}/{tr}/", f"{v}/{te}/", f"{v}/list_train.txt", f"{v}/list_val.txt",
             f"{v}/list_query.txt", f"{v}/list_gallery.txt")
            for v, tr, te in (("MSMT17_V1", "train", "test"),
                              ("MSMT17_V2", "mask_train_v2", "mask_test_v2"))
        ),
        tree="""\
<root>/
└── msmt17/
    └── MSMT17_V1/                  (or MSMT17_V2/ with mask_train_v2/ and mask_test_v2/;
        │                            torchreid takes V1 whenever that folder exists)
        ├── train/0000/0000_000_01_0303morning_0015_0.jpg ...   3rd '_' field = camera 1..15
        ├── test/...
        ├── list_train.txt          one image per line: "<pid folder>/<name> <pid>"
        ├── list_val.txt
        ├── list_query.txt
        └── list_gallery.txt""",
        source="on request from PKU's VMC lab, http://www.pkuvmc.com/publications/msmt17.html",
    ),
    "dukemtmcreid": Layout(
        title="DukeMTMC-reID",
        dirnames=("dukemtmc-reid",),
        variants=(("DukeMTMC-reID/bounding_box_train/", "DukeMTMC-reID/query/",
                   "DukeMTMC-reID/bounding_box_test/"),),
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
    ),
}

#: registered names that share a layout with a base benchmark
ALIASES: Dict[str, str] = {
    "lsvid_unchunked": "lsvid",
    "ilidsvid_first_half_train": "ilidsvid",
}


def _exists(path: str) -> bool:
    return osp.isdir(path) if path.endswith("/") else osp.isfile(path)


def expected_tree(name: str) -> str:
    """The ASCII tree of the expected layout of dataset ``name`` (empty for unknown names)."""
    layout = LAYOUTS.get(ALIASES.get(name, name))
    return layout.tree if layout else ""


def resolve_layout(name: str, root: str) -> Tuple[str, int] | None:
    """Find a complete copy of dataset ``name`` under ``root``.

    Returns:
        ``(dataset_dir, variant_index)``, or None for a name without a known layout.

    Raises:
        FileNotFoundError: the folder or one of its required files is missing; the message shows
            the missing path, the expected tree and where to get the data.

    Example:
        >>> resolve_layout("my_own_dataset", "/data") is None
        True
    """
    key = ALIASES.get(name, name)
    layout = LAYOUTS.get(key)
    if layout is None:
        return None
    root_abs = osp.abspath(osp.expanduser(root))
    best: Tuple[int, str, List[str]] | None = None
    for dirname in layout.dirnames:
        ddir = osp.join(root_abs, dirname)
        if not osp.isdir(ddir):
            continue
        for vi, variant in enumerate(layout.variants):
            missing = [p for p in variant if not _exists(osp.join(ddir, p))]
            if not missing:
                return ddir, vi
            if best is None or len(missing) < len(best[2]):
                best = (vi, ddir, missing)
    if best is None:
        what = " or ".join(f"'{d}/'" for d in layout.dirnames)
        problem = f"no folder {what} in it"
    else:
        _, ddir, missing = best
        shown = ", ".join(osp.join(ddir, p) for p in missing)
        problem = f"{ddir} is incomplete: missing {shown}"
        if not any(_exists(osp.join(ddir, p)) for v in layout.variants for p in v):
            problem += (" (an empty folder may be left over from a failed automatic download "
                        "by torchreid: delete it)")
    lines = [
        f"{layout.title} not found under root '{root_abs}': {problem}.",
        "Expected layout:",
        layout.tree,
        f"Get the data: {layout.source}.",
        f"Then pass root='{root_abs}' (the folder that contains '{layout.dirnames[0]}/').",
    ]
    if layout.synthetic:
        lines.append(
            "For a smoke test without the real data: python tools/make_synthetic_dataset.py "
            f"--format {layout.synthetic} --root {root_abs}")
    raise FileNotFoundError("\n".join(lines))


def check_dataset_layout(name: str, root: str) -> None:
    """Raise a FileNotFoundError showing the expected layout if dataset ``name`` is missing.

    Known names: ``mars``, ``ilidsvid``, ``prid2011``, ``dukemtmcvidreid``, ``lsvid``,
    ``market1501``, ``msmt17``, ``dukemtmcreid`` (and the aliases in :data:`ALIASES`). Unknown
    names are not checked.

    Example:
        >>> check_dataset_layout("my_own_dataset", "/anywhere")  # no-op
    """
    resolve_layout(name, root)
