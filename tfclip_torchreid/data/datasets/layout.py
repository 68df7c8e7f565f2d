"""What every dataset module declares: its on-disk layout, found (or explained) before parsing.

torchreid's datasets react badly to a missing folder: iLIDS-VID, DukeMTMC-VideoReID, Market-1501
and DukeMTMC-reID try to download (the PyPI package then dies on ``ModuleNotFoundError: six`` and
leaves an empty folder behind, so the next run fails with a different message), MSMT17 stops on
``AssertionError: Dataset folder not found`` and MARS/PRID2011 raise a vague ``RuntimeError``.
:func:`locate` raises a :class:`FileNotFoundError` instead that names what is missing, draws the
expected tree and says where the data comes from (docs/torchreid.md#dataset-downloads;
docs/datasets.md). It only ``stat``\\ s paths; the files themselves are read by the parsers.

Each dataset module (``mars.py``, ``lsvid.py``, ...) holds one :class:`Layout` as ``LAYOUT``;
the modules whose frames carry identity, camera and tracklet in their names also hold one
:class:`FrameNaming` as ``NAMING`` (how a frame path reads under the benchmark's naming, used to
find the tracklets of a plain folder of frames: :func:`~tfclip_torchreid.data.datasets.folder_tracklets`).

Example:
    >>> from tfclip_torchreid.data.datasets import mars
    >>> locate(mars.LAYOUT, "/no/such/root")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: MARS not found under root '/no/such/root'...
"""

from __future__ import annotations

import os.path as osp
from dataclasses import dataclass
from typing import Callable, List, NamedTuple, Tuple

__all__ = ["Layout", "locate", "FrameId", "FrameNaming"]


@dataclass(frozen=True)
class Layout:
    """Required paths of one benchmark.

    Attributes:
        name: the torchreid dataset name (``mars``, ``market1501``, ...).
        title: how the benchmark is written (``MARS``, ``Market-1501``).
        dirnames: accepted dataset folder names under ``root`` (the first is torchreid's).
        variants: alternative sets of required paths relative to the dataset folder (a trailing
            ``/`` marks a directory); the dataset is complete if every path of one variant exists.
        tree: the expected tree, drawn for the user.
        source: where the data comes from.
        synthetic: ``tools/make_synthetic_dataset.py`` can write this layout (the module has a
            ``write`` function).
    """

    name: str
    title: str
    dirnames: Tuple[str, ...]
    variants: Tuple[Tuple[str, ...], ...]
    tree: str
    source: str
    synthetic: bool = False


class FrameId(NamedTuple):
    """What a frame's path says under a benchmark's naming: the tracklet it belongs to (a key
    unique among the frames of its folder, e.g. ``0001C1T0001`` for MARS), the identity (-1 for
    junk) and the 0-based camera."""

    tracklet: str
    pid: int
    camid: int


@dataclass(frozen=True)
class FrameNaming:
    """How one benchmark names its frames.

    Attributes:
        title: the benchmark (``MARS``).
        example: a frame path in this naming (``0001/0001C1T0001F001.jpg``).
        rule: how the tracklet is read, for people (``the tracklet field T ...``).
        parse: ``parse(path) -> FrameId | None`` (None: the path does not follow this naming).
        tracklet_folders: the benchmark keeps each tracklet in a folder of its own (iLIDS-VID,
            PRID2011, DukeMTMC-VideoReID); otherwise several tracklets share a folder and the
            names tell them apart (MARS, LS-VID).
        images: every image is a tracklet of its own (Market-1501, DukeMTMC-reID, MSMT17).
    """

    title: str
    example: str
    rule: str
    parse: Callable[[str], FrameId | None]
    tracklet_folders: bool = False
    images: bool = False


def _exists(path: str) -> bool:
    return osp.isdir(path) if path.endswith("/") else osp.isfile(path)


def locate(layout: Layout, root: str) -> Tuple[str, int]:
    """Find a complete copy of the dataset under ``root``.

    Returns:
        ``(dataset_dir, variant_index)``.

    Raises:
        FileNotFoundError: the folder or one of its required files is missing; the message shows
            the missing path, the expected tree and where to get the data.

    Example:
        >>> from tfclip_torchreid.data.datasets import lsvid
        >>> locate(lsvid.LAYOUT, "reid-data")  # doctest: +SKIP
        ('/home/me/reid-data/lsvid', 0)
    """
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
            f"--format {layout.name} --root {root_abs}")
    raise FileNotFoundError("\n".join(lines))
