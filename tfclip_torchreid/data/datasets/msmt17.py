"""MSMT17 (Wei et al., CVPR 2018): layout and checks; torchreid's ``MSMT17`` parses it.

Files (docs/datasets.md): ``MSMT17_V1/`` (or ``MSMT17_V2/`` with ``mask_train_v2/`` and
``mask_test_v2/``; torchreid takes V1 whenever that folder exists) holds the images
``<pid folder>/<pid>_<seq>_<camera>_<date><time>_<id>_<n>.jpg`` and four lists
``list_{train,val,query,gallery}.txt`` with one image per line: ``"<pid folder>/<name> <pid>"``.
torchreid reads pid and camera from the lists only (``line.split(' ')``, camera = 3rd ``_`` field
of the name); it never looks at the image files, so a listed image that is missing surfaces in
the frame check before training (:mod:`~tfclip_torchreid.data.frame_checks`).

Checks: :func:`precheck` (before torchreid parses, nothing read) makes sure the version folder
torchreid will take is the complete one; :func:`diagnose` (after torchreid's parser failed,
typically ``ValueError: not enough values to unpack`` or ``IndexError: list index out of range``,
naming no file) names the list file, line and value: a line that is not ``"<path> <pid>"``, a pid
that is not an integer, a name without its camera field, a camera outside 1..15, a listed image
that does not exist. :data:`NAMING` reads an image path (:func:`frame_id`): every image is a
tracklet of its own.

Example:
    >>> LAYOUT.dirnames, [v[0] for v in LAYOUT.variants]
    (('msmt17',), ['MSMT17_V1/train/', 'MSMT17_V2/mask_train_v2/'])
    >>> frame_id("test/0002/0002_003_12_0303afternoon_0069_0.jpg").camid
    11
"""

from __future__ import annotations

import os.path as osp
import re
from typing import List, Tuple

from ..errors import raise_listed
from .layout import FrameId, FrameNaming, Layout
from .market1501 import image_frame_id

__all__ = ["LAYOUT", "NAMING", "VERSIONS", "LISTS", "precheck", "diagnose", "frame_id"]

#: version folder -> (train folder, test folder), in torchreid's order of preference
VERSIONS: Tuple[Tuple[str, str, str], ...] = (("MSMT17_V1", "train", "test"),
                                             ("MSMT17_V2", "mask_train_v2", "mask_test_v2"))
#: list file -> whether its images are in the train (True) or the test folder
LISTS: Tuple[Tuple[str, bool], ...] = (("list_train.txt", True), ("list_val.txt", True),
                                       ("list_query.txt", False), ("list_gallery.txt", False))
NUM_CAMS = 15
_EXAMPLE = "0000/0000_000_01_0303morning_0015_0.jpg 0"

LAYOUT = Layout(
    name="msmt17",
    title="MSMT17",
    dirnames=("msmt17",),
    variants=tuple(
        (f"{v}/{tr}/", f"{v}/{te}/", *(f"{v}/{name}" for name, _ in LISTS))
        for v, tr, te in VERSIONS
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
)

#: an image name ``<pid>_<seq>_<camera>_<date><time of day>_<frame>_<n>.jpg``
IMAGE_NAME = re.compile(r"^([0-9]{4})_[0-9]+_([0-9]{2})_[0-9]{4}[a-z]+_[0-9]+_[0-9]+\.[A-Za-z]+$")


def frame_id(path: str) -> FrameId | None:
    """An MSMT17 image path as a one-image tracklet with its pid and 0-based camera (3rd field,
    as torchreid reads it); None for another name."""
    return image_frame_id(IMAGE_NAME, path)


NAMING = FrameNaming(
    title=LAYOUT.title, example="test/0000/0000_000_01_0303morning_0015_0.jpg", parse=frame_id,
    rule="every image on its own", images=True)


def _version(ddir: str) -> Tuple[str, str, str]:
    """The version folder torchreid takes: the first of :data:`VERSIONS` that exists."""
    for version in VERSIONS:
        if osp.exists(osp.join(ddir, version[0])):
            return version
    return VERSIONS[0]


def precheck(ddir: str) -> None:
    """Before torchreid parses ``ddir`` (``<root>/msmt17``): when ``MSMT17_V1/`` exists,
    torchreid reads it even if ``MSMT17_V2/`` is the complete copy, so V1 must be complete."""
    version, train, test = _version(ddir)
    required = [f"{train}/", f"{test}/"] + [name for name, _ in LISTS]
    missing = [osp.join(ddir, version, p) for p in required
               if not (osp.isdir if p.endswith("/") else osp.isfile)(osp.join(ddir, version, p))]
    if missing:
        raise_listed(f"{LAYOUT.title} at {ddir}: torchreid reads {version}/ (it takes MSMT17_V1 "
                     "whenever that folder exists), which is incomplete:",
                     [f"{p}: missing" for p in missing],
                     ["complete it, or remove it to use MSMT17_V2/"])


def _line_problems(list_path: str, image_dir: str) -> List[str]:
    problems: List[str] = []
    rel = osp.relpath(list_path, osp.dirname(osp.dirname(list_path)))
    with open(list_path) as fh:
        lines = fh.readlines()
    for lineno, line in enumerate(lines, 1):
        where = f"{rel} line {lineno}"
        parts = line.split(" ")
        if len(parts) != 2:
            problems.append(f"{where}: {line.rstrip()!r} is not '<image path> <pid>' (one space; "
                            f"e.g. '{_EXAMPLE}')")
            continue
        path, pid = parts
        try:
            int(pid)
        except ValueError:
            problems.append(f"{where}: pid {pid.strip()!r} is not an integer")
        fields = path.split("_")
        try:
            cam = int(fields[2])
        except (IndexError, ValueError):
            problems.append(f"{where}: the name {path!r} has no camera number as its 3rd '_' "
                            f"field (e.g. '{_EXAMPLE.split()[0]}')")
            continue
        if not 1 <= cam <= NUM_CAMS:
            problems.append(f"{where}: camera {cam} of {path!r} outside the allowed range "
                            f"1..{NUM_CAMS}")
        if not osp.isfile(osp.join(image_dir, path)):
            problems.append(f"{where}: {osp.join(image_dir, path)} does not exist")
    return problems


def diagnose(ddir: str) -> None:
    """After torchreid's ``MSMT17`` parser failed on ``ddir``: every line of the four lists of
    the version folder torchreid reads (see the module docstring for what is checked)."""
    version, train, test = _version(ddir)
    base = osp.join(ddir, version)
    problems: List[str] = []
    for name, is_train in LISTS:
        problems += _line_problems(osp.join(base, name), osp.join(base, train if is_train else test))
    if problems:
        raise_listed(f"{LAYOUT.title} at {ddir}: {len(problems)} problem(s) in the image lists "
                     "that torchreid's parser stops on (or reads wrongly):", problems,
                     ["correct these lines / file names, or restore the lists from the "
                      "archive"], 20)
