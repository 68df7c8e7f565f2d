"""The ReID benchmarks: one module each, registration with torchreid, checks before parsing.

Each benchmark has one module, the one home of what is known about its files: ``LAYOUT`` (the
expected tree and required paths, :mod:`.layout`), its checks and, where one exists, its
``write`` (the synthetic generator of :mod:`tfclip_torchreid.testing` lays out the files with it):

========================  ================  =============================================
module                    parser            checks
========================  ================  =============================================
:mod:`.mars`              torchreid         ``precheck`` (info files)
:mod:`.ilidsvid`          torchreid         ``precheck`` (``ls_set``), ``diagnose`` (folders)
:mod:`.prid2011`          torchreid         ``diagnose`` (split file, folders)
:mod:`.dukemtmcvidreid`   torchreid         layout only
:mod:`.lsvid`             ours (``LSVID``)  its parser names file and line
:mod:`.market1501`        torchreid         ``precheck`` (paths), ``diagnose`` (names)
:mod:`.msmt17`            torchreid         ``precheck`` (version folder), ``diagnose`` (lists)
:mod:`.dukemtmcreid`      torchreid         ``precheck`` (paths), ``diagnose`` (names)
========================  ================  =============================================

torchreid's parsers stay the parsers. :func:`precheck_dataset` runs *before* one parses: the
layout (a missing dataset shows the expected tree instead of torchreid's download attempt) and
what torchreid would parse wrongly without a word; it reads a file only where that is the only
way to see such a problem. What torchreid *stops* on (bare ``AssertionError``\\ s and the like,
naming no file) is looked for only once it has stopped: :func:`diagnose_dataset` then re-reads
the files and raises a :class:`~tfclip_torchreid.data.errors.DataValidationError` naming the
file, row or folder, so a good dataset is read once.

Importing this package registers with torchreid's video-dataset registry (so that
``VideoDataManager(sources=...)`` and ``init_video_dataset`` know them):

* ``lsvid``: :class:`~.lsvid.LSVID`, with the authors' 48-frame training chunks (docs/datasets.md#ls-vid);
* ``lsvid_unchunked``: the same with whole training tracklets;
* ``ilidsvid_first_half_train``: torchreid's iLIDS-VID with the halves of each split swapped, i.e.
  training on the first half of each ``ls_set`` row as the TF-CLIP authors' code does
  (docs/datasets.md#ilids-vid); torchreid's ``ilidsvid`` trains on the second half (Wang et al. ECCV'14).

:func:`num_splits` gives the number of train/test splits of a benchmark (10 for iLIDS-VID and
PRID2011) for a driver that runs every split.

Folders of frames without annotation files (``tools/embed.py``): :func:`folder_tracklets` reads
the frames of one folder with the benchmarks' namings (:data:`NAMINGS`, each module's ``NAMING``):
MARS and LS-VID person folders hold several tracklets told apart by the names, iLIDS-VID, PRID2011
and DukeMTMC-VideoReID keep one tracklet per folder, and every Market-1501, DukeMTMC-reID or
MSMT17 image is a tracklet of its own; :func:`parse_frame` reads one path.

Example:
    >>> import tfclip_torchreid.data.datasets as ds
    >>> from tfclip_torchreid import compat
    >>> "lsvid" in compat.video_dataset_registry()
    True
    >>> ds.num_splits("mars", "/anywhere")
    1
    >>> ds.precheck_dataset("my_own_dataset", "/anywhere") is None  # unknown names: no check
    True
    >>> found = ds.folder_tracklets(["0001/0001C1T0001F001.jpg", "0001/0001C1T0001F002.jpg",
    ...                              "0001/0001C2T0001F001.jpg"])
    >>> found.naming.title, [(t.name, len(t.paths), t.pid, t.camid) for t in found.tracklets]
    ('MARS', [('0001C1T0001', 2, 1, 0), ('0001C2T0001', 1, 1, 1)])
"""

from __future__ import annotations

from types import ModuleType
from typing import Dict, List, NamedTuple, Sequence, Tuple

from ... import compat
from ...utils.feature_files import Tracklet
from ..errors import DataValidationError
from . import dukemtmcreid, dukemtmcvidreid, ilidsvid, lsvid, market1501, mars, msmt17, prid2011
from .ilidsvid import ILIDSVIDFirstHalfTrain
from .layout import FrameId, FrameNaming, Layout, locate
from .lsvid import LSVID, LSVIDUnchunked, chunk_tracklets

__all__ = [
    "LSVID",
    "LSVIDUnchunked",
    "ILIDSVIDFirstHalfTrain",
    "chunk_tracklets",
    "LAYOUTS",
    "ALIASES",
    "Layout",
    "dataset_module",
    "resolve_layout",
    "check_dataset_layout",
    "expected_tree",
    "precheck_dataset",
    "diagnose_dataset",
    "num_splits",
    "register_datasets",
    "NAMINGS",
    "FrameId",
    "FrameNaming",
    "FolderTracklets",
    "parse_frame",
    "folder_tracklets",
]

#: the dataset modules by torchreid name
MODULES: Dict[str, ModuleType] = {m.LAYOUT.name: m for m in (
    mars, ilidsvid, prid2011, dukemtmcvidreid, lsvid, market1501, msmt17, dukemtmcreid)}
#: the expected layouts by torchreid name
LAYOUTS: Dict[str, Layout] = {name: m.LAYOUT for name, m in MODULES.items()}
#: the benchmarks' frame namings, in the order :func:`folder_tracklets` tries them
NAMINGS: Tuple[FrameNaming, ...] = tuple(m.NAMING for m in (
    mars, lsvid, ilidsvid, prid2011, dukemtmcvidreid, market1501, dukemtmcreid, msmt17))
#: registered names that share a benchmark's files
ALIASES: Dict[str, str] = {
    "lsvid_unchunked": "lsvid",
    "ilidsvid_first_half_train": "ilidsvid",
}


def _register(name: str, cls: type) -> None:
    registry = compat.video_dataset_registry()
    old = registry.get(name)
    if old is not None and old is not cls and (old.__module__, old.__qualname__) == (
            cls.__module__, cls.__qualname__):
        registry[name] = cls  # the same class from a reloaded module
        return
    compat.register_video_dataset(name, cls)


def register_datasets() -> None:
    """Register this package's datasets with torchreid (idempotent; done at import)."""
    _register("lsvid", LSVID)
    _register("lsvid_unchunked", LSVIDUnchunked)
    _register("ilidsvid_first_half_train", ILIDSVIDFirstHalfTrain)


register_datasets()


def dataset_module(name: str) -> ModuleType | None:
    """The module of dataset ``name`` (aliases included), or None for a name we do not know.

    Example:
        >>> dataset_module("ilidsvid_first_half_train").__name__
        'tfclip_torchreid.data.datasets.ilidsvid'
    """
    return MODULES.get(ALIASES.get(name, name))


def resolve_layout(name: str, root: str) -> Tuple[str, int] | None:
    """``(dataset_dir, variant_index)`` of a complete copy of dataset ``name`` under ``root``,
    or None for a name without a known layout; a FileNotFoundError showing the expected tree
    if it is missing (:func:`~.layout.locate`).

    Example:
        >>> resolve_layout("my_own_dataset", "/data") is None
        True
    """
    module = dataset_module(name)
    return None if module is None else locate(module.LAYOUT, root)


def check_dataset_layout(name: str, root: str) -> None:
    """Raise a FileNotFoundError showing the expected layout if dataset ``name`` is missing.

    Known names: those of :data:`LAYOUTS` and :data:`ALIASES`; unknown names are not checked.

    Example:
        >>> check_dataset_layout("mars", "/no/such/root")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: MARS not found under root '/no/such/root'...
    """
    resolve_layout(name, root)


def expected_tree(name: str) -> str:
    """The ASCII tree of the expected layout of dataset ``name`` (empty for unknown names).

    Example:
        >>> expected_tree("market1501").splitlines()[:2]
        ['<root>/', '└── market1501/']
    """
    module = dataset_module(name)
    return module.LAYOUT.tree if module else ""


def precheck_dataset(name: str, root: str) -> str | None:
    """The checks of dataset ``name`` under ``root`` that run *before* its parser.

    Call it for every source and target name before torchreid parses them: a known dataset that
    is missing raises ``FileNotFoundError`` with the expected tree; the module's ``precheck``
    then raises :class:`~tfclip_torchreid.data.errors.DataValidationError` for what the parser
    would stop on obscurely or read wrongly without a word.

    Returns:
        The dataset folder, or None for a name we do not know (not checked).

    Example:
        >>> precheck_dataset("mars", "reid-data")  # doctest: +SKIP
        '/home/me/reid-data/mars'
    """
    found = resolve_layout(name, root)
    if found is None:
        return None
    check = getattr(dataset_module(name), "precheck", None)
    if check is not None:
        check(found[0])
    return found[0]


def diagnose_dataset(name: str, root: str, cause: BaseException | None = None) -> None:
    """After the parser of dataset ``name`` failed with ``cause``: look for what it stopped on.

    Runs the module's ``diagnose`` on the dataset folder; a problem found is raised as
    :class:`~tfclip_torchreid.data.errors.DataValidationError` naming the file, row or folder
    (chained to ``cause``). Returns None when it finds nothing (the caller re-raises ``cause``).

    Example:
        >>> try:
        ...     compat.init_video_dataset("prid2011", root="reid-data")
        ... except Exception as err:
        ...     diagnose_dataset("prid2011", "reid-data", err)
        ...     raise  # doctest: +SKIP
    """
    check = getattr(dataset_module(name), "diagnose", None)
    if check is None:
        return
    try:
        ddir, _ = resolve_layout(name, root)
    except FileNotFoundError:
        return
    try:
        check(ddir)
    except DataValidationError as found:
        raise found from cause


def num_splits(name: str, root: str) -> int:
    """Number of train/test splits of dataset ``name`` (``split_id`` ranges over them).

    iLIDS-VID and PRID2011 have 10 (read from their split files); MARS, LS-VID, DukeMTMC-VideoReID
    and unknown names have 1.

    Example:
        >>> num_splits("lsvid", "reid-data")
        1
    """
    count = getattr(dataset_module(name), "num_splits", None)
    if count is None:
        return 1
    ddir, _ = resolve_layout(name, root)
    return count(ddir)


# ---------------------------------------------------------------------------------- folders
class FolderTracklets(NamedTuple):
    """The tracklets of one folder's frames (:func:`folder_tracklets`).

    Attributes:
        naming: the naming that reads every frame (None: no benchmark's naming does).
        tracklets: the tracklets in the order of their first frame, each named by its key under
            ``naming`` (``0001C1T0001``), frames in the given order; without a naming, one
            tracklet named ``""`` (pid -1, camera 0).
        partly: a naming that reads some frames but not all (then ``naming`` is None), with
            ``unread``, the frames it does not read.
    """

    naming: FrameNaming | None
    tracklets: List[Tracklet]
    partly: FrameNaming | None = None
    unread: Tuple[str, ...] = ()


def parse_frame(path: str) -> Tuple[FrameNaming, FrameId] | None:
    """The first naming of :data:`NAMINGS` that reads ``path``, and what it reads; None if none.

    Example:
        >>> naming, fid = parse_frame("0002_c3s1_000451_03.jpg")
        >>> naming.title, fid.pid, fid.camid
        ('Market-1501', 2, 2)
    """
    for naming in NAMINGS:
        fid = naming.parse(path)
        if fid is not None:
            return naming, fid
    return None


def folder_tracklets(paths: Sequence[str]) -> FolderTracklets:
    """The tracklets of the frames ``paths`` of one folder: grouped by the tracklet their names
    say under the first naming of :data:`NAMINGS` that reads every one of them (MARS: the
    person, camera and tracklet fields; Market-1501: each image alone; ...), else one tracklet.

    Example:
        >>> folder_tracklets(["a/frame_1.png", "a/frame_2.png"]).tracklets
        [Tracklet(name='', paths=('a/frame_1.png', 'a/frame_2.png'), pid=-1, camid=0)]
    """
    paths = list(paths)
    best: Tuple[int, FrameNaming | None, List[str]] = (0, None, [])
    for naming in NAMINGS:
        ids = [naming.parse(p) for p in paths]
        unread = [p for p, fid in zip(paths, ids) if fid is None]
        if not unread:
            groups: Dict[FrameId, List[str]] = {}
            for p, fid in zip(paths, ids):
                groups.setdefault(fid, []).append(p)
            return FolderTracklets(naming, [Tracklet(fid.tracklet, tuple(ps), fid.pid, fid.camid)
                                            for fid, ps in groups.items()])
        if len(paths) - len(unread) > best[0]:
            best = (len(paths) - len(unread), naming, unread)
    whole = [Tracklet("", tuple(paths), -1, 0)] if paths else []
    return FolderTracklets(None, whole, best[1], tuple(best[2]))
