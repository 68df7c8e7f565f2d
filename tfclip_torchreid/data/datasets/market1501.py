"""Market-1501 (Zheng et al., ICCV 2015): layout, checks and writer; torchreid's ``Market1501``
parses it. The image-name checks are shared with DukeMTMC-reID, which uses the same names.

Files (docs/datasets.md): ``Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/``
with images ``<pid>_c<camera>s<seq>_<frame>_<box>.jpg`` (pid -1 = junk, 0 = distractor).
torchreid finds pid and camera with the regular expression ``([-\\d]+)_c(\\d)`` searched in the
*whole path*.

Checks: :func:`precheck` (before torchreid parses) only looks at the folder paths: a root whose
path itself contains ``<digits>_c<digit>`` makes torchreid read the same pid and camera for every
image without a word. :func:`diagnose` (after torchreid's parser failed) names the images whose
names do not match the pattern (torchreid: ``'NoneType' object has no attribute 'groups'``) or
whose camera / pid is out of range (a bare ``AssertionError``), and split folders without a
usable image (an ``IndexError`` in torchreid's dataset class).

:data:`NAMING` reads an image path (:func:`frame_id`): every image is a tracklet of its own.

Example:
    >>> LAYOUT.dirnames, LAYOUT.synthetic
    (('market1501',), True)
    >>> PID_CAM.search("0002_c1s1_000451_03.jpg").groups()
    ('0002', '1')
    >>> frame_id("query/0002_c3s1_000451_03.jpg")
    FrameId(tracklet='0002_c3s1_000451_03.jpg', pid=2, camid=2)
"""

from __future__ import annotations

import glob
import os
import os.path as osp
import re
from typing import Any, Dict, List, Tuple

from ..errors import raise_listed
from .layout import FrameId, FrameNaming, Layout
from .writing import PlannedTracklet, assign_tids, image_counts

__all__ = ["LAYOUT", "NAMING", "SUBDIR", "SPLIT_DIRS", "PID_CAM", "precheck", "diagnose", "write",
           "path_pattern_problems", "image_name_problems", "frame_id", "image_frame_id"]

#: the versioned folder inside ``<root>/market1501`` (Market-1501-v15.09.15.zip)
SUBDIR = "Market-1501-v15.09.15"
#: train, query and gallery folders (also DukeMTMC-reID's)
SPLIT_DIRS = ("bounding_box_train", "query", "bounding_box_test")
#: torchreid's Market-1501 / DukeMTMC-reID pattern, searched in the whole path
PID_CAM = re.compile(r"([-\d]+)_c(\d)")

LAYOUT = Layout(
    name="market1501",
    title="Market-1501",
    dirnames=("market1501",),
    variants=(
        tuple(f"{SUBDIR}/{d}/" for d in SPLIT_DIRS),
        # the older layout without the versioned folder (torchreid reads it with a warning)
        tuple(f"{d}/" for d in SPLIT_DIRS),
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
    synthetic=True,
)

NUM_CAMS = 6
MAX_PID = 1501
#: an image name ``<pid>_c<camera>s<sequence>_<frame>_<box>.jpg`` (pid -1: junk)
IMAGE_NAME = re.compile(r"^(-1|[0-9]+)_c([0-9])s[0-9]+_[0-9]+_[0-9]+\.[A-Za-z]+$")


def image_frame_id(pattern: re.Pattern, path: str) -> FrameId | None:
    """The image as a one-image tracklet (its file name), with the pid and 0-based camera of
    ``pattern``'s groups 1 and 2; None when the name does not match. Shared by the image
    datasets (Market-1501, DukeMTMC-reID, MSMT17)."""
    name = osp.basename(path)
    m = pattern.match(name)
    if m is None:
        return None
    return FrameId(name, int(m.group(1)), max(int(m.group(2)) - 1, 0))


def frame_id(path: str) -> FrameId | None:
    """A Market-1501 image path as a one-image tracklet with its pid and 0-based camera; None
    for another name.

    Example:
        >>> frame_id("-1_c1s1_000001_00.jpg").pid, frame_id("0001C1T0001F001.jpg")
        (-1, None)
    """
    return image_frame_id(IMAGE_NAME, path)


NAMING = FrameNaming(
    title=LAYOUT.title, example="bounding_box_test/0002_c1s1_000451_03.jpg", parse=frame_id,
    rule="every image on its own", images=True)


# ---------------------------------------------------------------------------------- checks
def _data_dir(ddir: str) -> str:
    sub = osp.join(ddir, SUBDIR)
    return sub if osp.isdir(sub) else ddir


def path_pattern_problems(data_dir: str) -> List[str]:
    """The split folders whose path matches ``<pid>_c<camera>``: torchreid would then read pid
    and camera from the folder part of every image path (the pattern holds no ``/``, so a match
    in the folder part always comes first)."""
    out = []
    for sub in SPLIT_DIRS:
        folder = osp.join(data_dir, sub)
        m = PID_CAM.search(folder)
        if m is not None:
            out.append(f"{folder}: torchreid searches the pattern '<pid>_c<camera>' in the "
                       f"whole path and finds '{m.group(0)}' in the folder part, not the file "
                       "name; move the data to a root whose path has no such text")
    return out


def image_name_problems(data_dir: str, max_cam: int, max_pid: int | None) -> List[str]:
    """Images of the split folders whose name torchreid's regular expression cannot read, or
    reads as a camera outside ``1..max_cam`` or a pid outside ``0..max_pid``; split folders
    without a usable image (torchreid's dataset stops on an empty split with an IndexError)."""
    problems: List[str] = []
    for sub in SPLIT_DIRS:
        folder = osp.join(data_dir, sub)
        usable = 0
        for path in sorted(glob.glob(osp.join(glob.escape(folder), "*.jpg"))):
            m = PID_CAM.search(osp.basename(path))
            if m is None:
                problems.append(f"{path}: name does not match torchreid's pattern "
                                "'<pid>_c<camera>' (e.g. 0002_c1s1_000451_03.jpg)")
                continue
            pid, cam = int(m.group(1)), int(m.group(2))
            if pid == -1:
                continue  # junk: skipped by torchreid
            if not 1 <= cam <= max_cam:
                problems.append(f"{path}: camera {cam} outside the allowed range 1..{max_cam}")
            elif max_pid is not None and not 0 <= pid <= max_pid:
                problems.append(f"{path}: pid {pid} outside the allowed range 0..{max_pid}")
            else:
                usable += 1
        if usable == 0:
            problems.append(f"{folder}: no usable .jpg image (torchreid stops on an empty split)")
    return problems


def raise_image_problems(title: str, data_dir: str, problems: List[str]) -> None:
    """The :class:`~tfclip_torchreid.data.errors.DataValidationError` of an image dataset."""
    raise_listed(f"{title} at {data_dir}: {len(problems)} problem(s) that torchreid's parser "
                 "stops on (bare AssertionError / AttributeError) or parses wrongly:",
                 problems, ["rename or remove these files, or re-extract the archive"], 20)


def precheck(ddir: str) -> None:
    """Before torchreid parses ``ddir`` (``<root>/market1501``): no split folder path that
    matches torchreid's ``<pid>_c<camera>`` pattern (nothing is read)."""
    data_dir = _data_dir(ddir)
    problems = path_pattern_problems(data_dir)
    if problems:
        raise_image_problems(LAYOUT.title, data_dir, problems)


def diagnose(ddir: str) -> None:
    """After torchreid's ``Market1501`` parser failed on ``ddir``: image names that do not match
    ``<pid>_c<camera>``, cameras outside 1..6, pids outside -1 (junk) and 0..1501, split folders
    without a usable image."""
    data_dir = _data_dir(ddir)
    problems = image_name_problems(data_dir, NUM_CAMS, MAX_PID)
    if problems:
        raise_image_problems(LAYOUT.title, data_dir, problems)


# ---------------------------------------------------------------------------------- writer
def write(ddir: str, tracks: List[PlannedTracklet]) -> Dict[str, Any]:
    """Lay out Market-1501 under ``ddir``: names ``PPPP_cCsS_FFFFFF_NN.jpg`` (junk ``-1_c...``);
    a query track's first image goes to ``query/``, the rest of the sequence to the gallery.
    Returns the counts torchreid's ``Market1501`` should parse."""
    assign_tids(tracks, per="cam")
    base = SUBDIR
    for sub in SPLIT_DIRS:
        os.makedirs(osp.join(ddir, base, sub))
    frame_no: Dict[int, int] = {}  # running frame number per camera: names stay unique
    split_items: Dict[str, List[Tuple[int, int]]] = {"train": [], "query": [], "gallery": []}
    for t in tracks:
        seq = min(t.tid, 6)
        pid_txt = "-1" if t.pid < 0 else f"{t.pid:04d}"
        for j in range(t.num_frames):
            frame_no[t.cam] = frame_no.get(t.cam, 0) + 1
            name = f"{pid_txt}_c{t.cam}s{seq}_{25 * frame_no[t.cam]:06d}_{1 + j % 8:02d}.jpg"
            if t.split == "train":
                sub, split = "bounding_box_train", "train"
            elif t.query and j == 0:
                sub, split = "query", "query"
            else:
                sub, split = "bounding_box_test", "gallery"
            t.paths.append(f"{base}/{sub}/{name}")
            if t.pid != -1:
                split_items[split].append((t.pid, t.cam))
    expected: Dict[str, Any] = {k: image_counts(v) for k, v in split_items.items()}
    expected["junk_images"] = sum(t.num_frames for t in tracks if t.pid == -1)
    expected["distractor_images"] = sum(t.num_frames for t in tracks if t.pid == 0)
    return expected
