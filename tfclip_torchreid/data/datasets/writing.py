"""What the dataset writers share: a tracklet to write, and the counts its loader should parse.

Each dataset module with a layout that can be generated has a ``write(ddir, tracks, ...)``: it
lays out the annotation files (name lists, ``.mat`` files, split files) under the dataset folder
``ddir``, assigns every :class:`PlannedTracklet` the relative paths of its frames, and returns the
train / query / gallery statistics torchreid's (or our) parser should report. The frames
themselves are rendered by the synthetic generator (:mod:`tfclip_torchreid.testing`) at those
paths.

Example:
    >>> t = [PlannedTracklet("train", 1, 2, 5, key=1), PlannedTracklet("train", 1, 2, 4, key=1)]
    >>> assign_tids(t, per="cam")
    >>> [x.tid for x in t], counts(t)
    ([1, 2], {'tracklets': 2, 'ids': 1, 'cams': 1})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

__all__ = ["PlannedTracklet", "assign_tids", "counts", "image_counts"]


@dataclass
class PlannedTracklet:
    """One tracklet (or, for an image dataset, one walk of separate images) to write.

    Attributes:
        split: ``"train"``, ``"test"`` (or ``"all"`` where the split files decide, iLIDS-VID).
        pid: the identity as written in the dataset (-1 junk, 0 distractor).
        cam: 1-based camera number.
        num_frames: frames (images) of the tracklet.
        key: appearance key (one per identity; junk and distractors get their own), for the
            renderer.
        query: a query tracklet (its first image, for image datasets).
        tid: tracklet number, assigned by the writer.
        paths: frame paths relative to the dataset folder, assigned by the writer.
    """

    split: str
    pid: int
    cam: int
    num_frames: int
    key: int
    query: bool = False
    tid: int = 0
    paths: List[str] = field(default_factory=list)


def assign_tids(tracks: Sequence[PlannedTracklet], per: str) -> None:
    """Number the tracklets 1, 2, ... per ``(split, pid, cam)`` (``per="cam"``) or per
    ``(split, pid)``."""
    counters: Dict[Any, int] = {}
    for t in tracks:
        k = (t.split, t.pid, t.cam) if per == "cam" else (t.split, t.pid)
        counters[k] = counters.get(k, 0) + 1
        t.tid = counters[k]


def counts(items: Sequence[PlannedTracklet]) -> Dict[str, int]:
    """Tracklets, identities and cameras of ``items``, as torchreid's video summary shows them."""
    return {
        "tracklets": len(items),
        "ids": len({t.pid for t in items}),
        "cams": len({t.cam for t in items}),
    }


def image_counts(items: Sequence[Tuple[int, int]]) -> Dict[str, int]:
    """Counts of (pid, cam) per image, as torchreid's image-dataset summary shows them."""
    return {"images": len(items), "ids": len({p for p, _ in items}),
            "cams": len({c for _, c in items})}
