"""LS-VID (Li et al., "Global-Local Temporal Representations for Video Person Re-Identification",
ICCV 2019) as a torchreid video dataset, parsed the way the TF-CLIP authors' loader parses it
(docs/datasets.md#ls-vid).

* Files: ``list_sequence/list_seq_{train,test}.txt`` and ``test/data/info_test.mat`` (the public
  archive), or the same under ``info/`` (``info/list_sequence/...``, ``info/data/info_test.mat``,
  the authors' layout); whichever exists is used (the archive layout if both do). The dataset
  folder is ``<root>/lsvid`` (torchreid style) or ``<root>/LS-VID`` (the archive's name).
* Each list line is ``"<frame path prefix> <pid>"``; the frames of a tracklet are the files
  matching ``<dataset dir>/<prefix>*``, sorted (the prefix is taken literally, not as a glob).
* Camera = 3rd underscore-separated field of the first frame's file name, 1..15 -> 0..14.
* Query = the test rows listed (1-based) in row 0 of the ``query`` dataset of ``info_test.mat``
  (MATLAB v7.3, read with h5py; a v5 file is read with scipy); gallery = the other test rows.
  Junk rows (pid -1) are dropped from every split. The authors' evaluator searches
  query ∪ gallery (11,333 tracklets); torchreid's data managers keep them apart, so pass
  ``gallery_includes_query`` to the TF-CLIP data manager for the paper's protocol.
* Train pids are relabelled in sorted order, 0..Y-1 (the authors enumerate ``set(pids)``).

Training chunks (``train_chunk``, default 48, the authors' ``train_dense`` list that produced the
paper's LS-VID numbers): every training tracklet of n >= 48 frames is cut into n // 48 chunks of 48
frames, the last chunk taking the remainder (48..95 frames); each chunk is a separate training
"tracklet" for the identity sampler, the clip sampler and the CLIP-Memory average. Tracklets of fewer
than 48 frames are dropped, as in the authors' code, **except** for an identity all of whose
tracklets are shorter: the authors' code silently loses such an identity (its classifier and memory
rows then belong to no data and later rows shift, docs/released_vs_paper.md#known-bugs-fixed); here its tracklets are kept
whole and a warning says how many identities this concerns, so labels stay 0..Y-1 and every label
has data. ``train_chunk=0`` (registered as ``lsvid_unchunked``) keeps the plain tracklet list.

Nothing is written into the dataset folder (the authors' loader caches JSON files with absolute
paths there). The parser names the file and line of anything it cannot read, so there is no
separate pre-check beyond the layout (:data:`LAYOUT`); :func:`write` lays out a synthetic copy.
:data:`NAMING` reads a frame path without the list files (:func:`frame_id`): the frames of one
person folder belong to several tracklets, each the files of one list prefix.

Example:
    >>> frame_id("tracklet_test/0002/0002_003_07_0011.jpg")
    FrameId(tracklet='0002_003_07', pid=2, camid=6)
    >>> import tfclip_torchreid  # registers "lsvid"
    >>> from tfclip_torchreid import compat
    >>> dm = compat.VideoDataManager(root="reid-data", sources="lsvid")  # doctest: +SKIP
"""

from __future__ import annotations

import bisect
import logging
import os
import os.path as osp
import re
import warnings
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ... import compat
from .layout import FrameId, FrameNaming, Layout, locate
from .matfile import write_matlab_v73
from .writing import PlannedTracklet, assign_tids, counts

logger = logging.getLogger(__name__)

__all__ = ["LAYOUT", "NAMING", "LSVID", "LSVIDUnchunked", "chunk_tracklets",
           "read_query_indices", "read_list", "frame_id", "write"]

Tracklet = Tuple[Tuple[str, ...], int, int]

LAYOUT = Layout(
    name="lsvid",
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
    synthetic=True,
)


#: a frame name ``<pid>_<tracklet>_<camera>_<frame>`` (the list prefix is all but the frame)
FRAME_NAME = re.compile(r"^(([0-9]+|junk)_[0-9]+_([0-9]+))_[0-9]+\.[A-Za-z]+$")


def frame_id(path: str) -> FrameId | None:
    """Tracklet (the list prefix without its folder), pid and 0-based camera of an LS-VID frame
    path: ``<pid>/<pid>_<tracklet>_<camera>_<frame>.jpg`` (the folder is the pid, or ``junk``);
    None for another path.

    Example:
        >>> frame_id("0002/0002_003_07_0011.jpg").camid, frame_id("x/0002_003_07_0011.jpg")
        (6, None)
    """
    m = FRAME_NAME.match(osp.basename(path))
    if m is None or osp.basename(osp.dirname(osp.abspath(path))) != m.group(2):
        return None
    pid = -1 if m.group(2) == "junk" else int(m.group(2))
    return FrameId(m.group(1), pid, max(int(m.group(3)) - 1, 0))


NAMING = FrameNaming(
    title=LAYOUT.title, example="tracklet_test/0002/0002_003_07_0011.jpg", parse=frame_id,
    rule="the name without its frame field: 0002_003_07_0011.jpg -> 0002_003_07")


def read_list(path: str) -> List[Tuple[str, int]]:
    """Rows ``(prefix, pid)`` of an LS-VID ``list_seq_*.txt`` file (blank lines skipped).

    Example:
        >>> read_list("reid-data/lsvid/list_sequence/list_seq_train.txt")[0]  # doctest: +SKIP
        ('tracklet_train/0001/0001_001_01_', 1)
    """
    rows = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.rsplit(None, 1)
            try:
                rows.append((parts[0], int(parts[1])))
            except (IndexError, ValueError):
                raise ValueError(
                    f"{path}:{lineno}: expected '<frame path prefix> <pid>', got {line!r}"
                ) from None
    return rows


def read_query_indices(path: str, num_test: int | None = None) -> np.ndarray:
    """0-based query rows from ``info_test.mat`` (dataset ``query``, row 0, 1-based in the file).

    MATLAB v7.3 files are HDF5 (read with h5py); older MAT files are read with scipy. A single
    column is read as the index list too.

    Example:
        >>> read_query_indices("reid-data/lsvid/test/data/info_test.mat")[:3]  # doctest: +SKIP
        array([ 2,  7, 11])
    """
    import h5py

    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as fh:
            if "query" not in fh:
                raise ValueError(f"{path} has no 'query' dataset (found {sorted(fh.keys())})")
            arr = np.asarray(fh["query"])
    else:
        from scipy.io import loadmat

        mat = loadmat(path)
        if "query" not in mat:
            raise ValueError(f"{path} has no 'query' variable")
        arr = np.asarray(mat["query"])
    if arr.ndim == 2:
        arr = arr[:, 0] if (arr.shape[1] == 1 and arr.shape[0] > 1) else arr[0]
    arr = arr.reshape(-1)
    idx = arr.astype(np.int64)
    if not np.array_equal(idx, arr) or (idx.size and idx.min() < 1):
        raise ValueError(f"{path}: 'query' must hold 1-based integer row indices")
    if num_test is not None and idx.size and idx.max() > num_test:
        raise ValueError(f"{path}: query index {idx.max()} exceeds the {num_test} test tracklets")
    if np.unique(idx).size != idx.size:
        raise ValueError(f"{path}: 'query' lists a test row twice")
    return idx - 1


class _FrameLister:
    """Files matching ``<dir>/<prefix>*`` with one sorted directory listing per folder."""

    def __init__(self, base: str):
        self.base = base
        self._dirs: Dict[str, List[str]] = {}

    def frames(self, prefix: str) -> Tuple[str, ...]:
        full = osp.join(self.base, prefix)
        folder, stem = osp.split(full)
        names = self._dirs.get(folder)
        if names is None:
            names = sorted(os.listdir(folder)) if osp.isdir(folder) else []
            self._dirs[folder] = names
        i = bisect.bisect_left(names, stem)
        out = []
        while i < len(names) and names[i].startswith(stem):
            if stem or not names[i].startswith("."):
                out.append(osp.join(folder, names[i]))
            i += 1
        return tuple(out)


def chunk_tracklets(tracklets: Sequence[Tracklet], step: int = 48) -> Tuple[List[Tracklet], Dict]:
    """The authors' ``train_dense`` chunking (see the module docstring).

    Returns:
        ``(chunks, stats)``; stats has ``tracklets``, ``chunks``, ``dropped`` (shorter than
        ``step``) and ``kept_whole_ids`` (identities kept whole because all their tracklets are
        shorter than ``step``).

    Example:
        >>> t = [(tuple(map(str, range(100))), 0, 0), (("a",) * 10, 0, 1)]
        >>> chunks, stats = chunk_tracklets(t, 48)
        >>> [len(c[0]) for c in chunks], stats["dropped"]
        ([48, 52], 1)
    """
    if step <= 0:
        return list(tracklets), {"tracklets": len(tracklets), "chunks": len(tracklets),
                                 "dropped": 0, "kept_whole_ids": 0}
    has_long: Dict[int, bool] = {}
    for paths, pid, _ in tracklets:
        has_long[pid] = has_long.get(pid, False) or len(paths) >= step
    out: List[Tracklet] = []
    dropped = 0
    for paths, pid, cam in tracklets:
        k = len(paths) // step
        if k == 0:
            if has_long[pid]:
                dropped += 1
            else:
                out.append((tuple(paths), pid, cam))
            continue
        for i in range(k):
            end = (i + 1) * step if i < k - 1 else len(paths)
            out.append((tuple(paths[i * step:end]), pid, cam))
    kept_ids = sum(1 for v in has_long.values() if not v)
    return out, {"tracklets": len(tracklets), "chunks": len(out), "dropped": dropped,
                 "kept_whole_ids": kept_ids}


class LSVID(compat.VideoDataset):
    """LS-VID.

    Reference:
        Li et al. Global-Local Temporal Representations for Video Person Re-Identification.
        ICCV 2019.

    URL: `<https://www.pkuvmc.com/dataset.html>`_

    Dataset statistics:
        - identities: 842 (train) + 2730 (test: query ∪ gallery).
        - tracklets: 2831 (train) + 3504 (query) + 7829 (gallery); 48-frame train chunks
          by default (see the module docstring).
        - cameras: 15.

    Args:
        root: data root containing ``lsvid/`` (or ``LS-VID/``).
        train_chunk: chunk length for training tracklets: 48 = the authors' behaviour, 0 = whole
            tracklets, None = the class default (48; 0 for :class:`LSVIDUnchunked`).
        **kwargs: torchreid's ``VideoDataset`` arguments (``transform``, ``mode``,
            ``combineall``, ``seq_len``, ``sample_method``, ``verbose``; ``split_id`` is ignored).

    Example:
        >>> import torchvision.transforms as T
        >>> ds = LSVID(root="reid-data", transform=T.ToTensor(), mode="query")  # doctest: +SKIP
    """

    dataset_dir = "lsvid"
    dataset_url = None
    default_train_chunk: int = 48

    def __init__(self, root: str = "", train_chunk: int | None = None, **kwargs):
        if train_chunk is None:
            train_chunk = self.default_train_chunk
        if train_chunk < 0:
            raise ValueError(f"train_chunk must be >= 0 (0 = no chunking), got {train_chunk}")
        self.train_chunk = int(train_chunk)
        self.root = osp.abspath(osp.expanduser(root))
        self.dataset_dir, variant = locate(LAYOUT, self.root)
        files = [osp.join(self.dataset_dir, p) for p in LAYOUT.variants[variant]]
        self.train_name_path, self.test_name_path, self.query_idx_path = files

        lister = _FrameLister(self.dataset_dir)
        train_rows = [r for r in read_list(self.train_name_path) if r[1] != -1]
        test_rows = read_list(self.test_name_path)
        query_idx = read_query_indices(self.query_idx_path, len(test_rows))
        is_query = np.zeros(len(test_rows), bool)
        is_query[query_idx] = True

        pid2label = {pid: i for i, pid in enumerate(sorted({pid for _, pid in train_rows}))}
        train = self._process(train_rows, lister, self.train_name_path, pid2label)
        query = self._process([test_rows[i] for i in query_idx if test_rows[i][1] != -1],
                              lister, self.test_name_path)
        gallery = self._process(
            [r for r, q in zip(test_rows, is_query) if not q and r[1] != -1],
            lister, self.test_name_path)
        self.num_train_tracklets_unchunked = len(train)

        self.chunk_stats = None
        if self.train_chunk:
            train, self.chunk_stats = chunk_tracklets(train, self.train_chunk)
            if self.chunk_stats["kept_whole_ids"]:
                warnings.warn(
                    f"LS-VID: {self.chunk_stats['kept_whole_ids']} training identities have only "
                    f"tracklets shorter than {self.train_chunk} frames; the authors' code drops "
                    "them (misaligning labels and memory rows); they are kept whole here.",
                    stacklevel=2)
        super().__init__(train, query, gallery, **kwargs)
        if self.chunk_stats and kwargs.get("verbose", True):
            s = self.chunk_stats
            logger.info(f"  LS-VID train: {s['tracklets']} tracklets -> {s['chunks']} chunks of "
                        f"{self.train_chunk}+ frames ({s['dropped']} shorter tracklets dropped)")

    def _process(self, rows: Sequence[Tuple[str, int]], lister: _FrameLister, list_path: str,
                 pid2label: Dict[int, int] | None = None) -> List[Tracklet]:
        tracklets = []
        for prefix, pid in rows:
            frames = lister.frames(prefix)
            if not frames:
                raise FileNotFoundError(
                    f"LS-VID: no frame matches '{osp.join(self.dataset_dir, prefix)}*' "
                    f"(listed in {list_path}); is the dataset fully extracted?")
            name = osp.basename(frames[0])
            fields = name.split("_")
            try:
                cam = int(fields[2])
            except (IndexError, ValueError):
                raise ValueError(
                    f"LS-VID: cannot read the camera (3rd '_'-separated field) of {frames[0]}"
                ) from None
            if cam < 1:
                raise ValueError(f"LS-VID: camera numbers start at 1, got {cam} in {frames[0]}")
            label = pid2label[pid] if pid2label is not None else pid
            tracklets.append((frames, label, cam - 1))
        return tracklets


class LSVIDUnchunked(LSVID):
    """LS-VID with whole training tracklets (no 48-frame chunking); registered as
    ``lsvid_unchunked``.

    Example:
        >>> from tfclip_torchreid import compat
        >>> dm = compat.VideoDataManager(root="reid-data", sources="lsvid_unchunked")
        ... # doctest: +SKIP
    """

    default_train_chunk = 0


# ---------------------------------------------------------------------------------- writer
def _chunk_count(n: int, step: int) -> int:
    """Number of training chunks the authors' ``train_dense`` rule makes of an n-frame tracklet."""
    return n // step


def write(ddir: str, tracks: List[PlannedTracklet], layout: str) -> Dict:
    """Lay out LS-VID under ``ddir`` in the public archive's layout (``layout="flat"``:
    ``list_sequence/`` + ``test/data/``) or the authors' (``"info"``: ``info/...``): the two list
    files, ``info_test.mat`` (MATLAB v7.3) and the frame paths
    ``tracklet_{train,test}/<pid>/<pid>_<tracklet>_<camera>_<frame>.jpg`` (junk: ``junk/``).
    Returns the counts :class:`LSVID` should parse (with the 48-frame chunk count)."""
    assign_tids(tracks, per="pid")
    if layout == "flat":
        list_dir, mat_dir = osp.join(ddir, "list_sequence"), osp.join(ddir, "test", "data")
    elif layout == "info":
        list_dir, mat_dir = osp.join(ddir, "info", "list_sequence"), osp.join(ddir, "info", "data")
    else:
        raise ValueError(f"lsvid: layout must be 'flat' or 'info', got {layout!r}")
    os.makedirs(list_dir)
    os.makedirs(mat_dir)
    expected: Dict = {"layout": layout}
    for split in ("train", "test"):
        items = [t for t in tracks if t.split == split]
        lines = []
        for t in items:
            folder = "junk" if t.pid < 0 else f"{t.pid:04d}"
            prefix = f"tracklet_{split}/{folder}/{folder}_{t.tid:03d}_{t.cam:02d}_"
            t.paths = [f"{prefix}{fno:04d}.jpg" for fno in range(1, t.num_frames + 1)]
            lines.append((prefix, t))
        lines.sort(key=lambda x: x[0])
        with open(osp.join(list_dir, f"list_seq_{split}.txt"), "w") as fh:
            fh.write("".join(f"{prefix} {t.pid}\n" for prefix, t in lines))
        if split == "train":
            expected["train"] = counts(items)
            expected["train"]["chunks_48"] = sum(_chunk_count(t.num_frames, 48) for t in items)
            expected["train"]["frames"] = sorted(t.num_frames for t in items)
        else:
            ordered = [t for _, t in lines]
            qidx = np.asarray([[i + 1 for i, t in enumerate(ordered) if t.query]], np.float64)
            write_matlab_v73(osp.join(mat_dir, "info_test.mat"), {"query": qidx})
            expected["query"] = counts([t for t in ordered if t.query])
            expected["gallery"] = counts([t for t in ordered if not t.query and t.pid != -1])
            expected["junk_tracklets"] = sum(t.pid == -1 for t in ordered)
    return expected
