"""Tracklets of a video, built while it streams and embedded part by part (bounded memory).

:class:`TrackletStream` takes the frames of one video in order. For every box of the track file
in that frame it cuts the crop (:mod:`.cropping`: clipped to the frame, or counted and skipped),
appends it to its track, and hands the crops on to be embedded as soon as a track has
``part_frames`` of them or has ended (its last box in the track file is passed): memory holds at
most ``part_frames`` crops per track that is in view, whatever the length of the video.

A track's feature is its tracklet's test feature under the dense protocol (TF-CLIP's test: all
its frames cut into consecutive ``seq_len``-frame clips, the last one filled by cycling, the clip
features averaged; :func:`~tfclip_torchreid.data.sampling.sample_clip_indices`). A part of
``part_frames`` crops, a multiple of ``seq_len``, holds whole clips of the tracklet, so the
tracklet's feature is the mean of its parts' features weighted by their clip counts -- the same
features as embedding all its crops at once (up to float rounding; tested). Parts of several
tracks are embedded together, ``batch_frames`` crops at a time, by ``embed`` (a
:class:`~.backends.Embedder`: :func:`~tfclip_torchreid.embedding.embed_tracklets` with the
weights' preprocessing).

Example:
    >>> from tfclip_torchreid.data.mot import Box
    >>> embed = lambda parts: np.stack([np.full(2, len(t.paths), np.float32) for t in parts])
    >>> stream = TrackletStream("cam1", 0, {7: [Box(1, 0, 0, 4, 8), Box(2, 0, 0, 4, 8)]},
    ...                         embed, seq_len=1, part_frames=1)
    >>> for n in (1, 2):
    ...     stream.add_frame(n, np.zeros((8, 8, 3), np.uint8))
    >>> [(t.track_id, t.frames, t.feature.tolist()) for t in stream.finish(decoded=2)]
    [(7, 2, [1.0, 1.0])]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np
from PIL import Image

from ..data.mot import Box
from ..data.sampling import num_clips
from ..utils.feature_files import Tracklet
from .cropping import BEYOND_END, SkipCounts, clip_box, crop

logger = logging.getLogger(__name__)

__all__ = ["TrackResult", "TrackletStream"]

#: ``embed(parts) -> (len(parts), D)`` features of tracklets whose frames are PIL crops
Embed = Callable[[Sequence[Tracklet]], np.ndarray]


@dataclass
class TrackResult:
    """One track of one camera: its feature, the frames it was cropped in and a few crops."""

    camera: str
    cam_index: int
    track_id: int
    frames: int = 0
    first: int = 0
    last: int = 0
    feature: np.ndarray | None = None
    thumbnails: List[Image.Image] = field(default_factory=list, repr=False)

    @property
    def key(self) -> Tuple[str, int]:
        return self.camera, self.track_id


def _thumbnail_frames(boxes: Sequence[Box], count: int) -> set:
    if count <= 0 or not boxes:
        return set()
    n = min(count, len(boxes))
    picks = ((np.arange(n) + 0.5) * len(boxes) / n).astype(int)  # centres of n equal stretches
    return {boxes[i].frame for i in picks}


class TrackletStream:
    """The tracks of one video, cropped frame by frame and embedded in parts (see the module
    notes).

    Args:
        camera: the camera's name (its video's file name without the extension).
        cam_index: its 0-based index (the SIE camera id of models that use one).
        tracks: ``{track id: boxes in frame order}`` (:func:`~tfclip_torchreid.data.mot.read_tracks`).
        embed: features of a list of tracklets of crops (see :data:`Embed`).
        seq_len: frames per clip of the dense protocol.
        part_frames: crops held per track before they are embedded (rounded up to a multiple
            of ``seq_len``).
        batch_frames: crops embedded together.
        thumbnails: crops kept per track for the report (from the middles of equal stretches
            of its boxes).
        thumb_height: their height in pixels.
    """

    def __init__(self, camera: str, cam_index: int, tracks: Mapping[int, Sequence[Box]],
                 embed: Embed, seq_len: int = 8, part_frames: int = 64,
                 batch_frames: int = 256, thumbnails: int = 4, thumb_height: int = 96) -> None:
        self.camera, self.cam_index, self.embed = camera, int(cam_index), embed
        self.seq_len = int(seq_len)
        self.part_frames = max(1, -(-int(part_frames) // self.seq_len)) * self.seq_len
        self.batch_frames = int(batch_frames)
        self.thumb_height = int(thumb_height)
        self.by_frame: Dict[int, List[Tuple[int, Box]]] = {}
        for track, boxes in tracks.items():
            for box in boxes:
                self.by_frame.setdefault(box.frame, []).append((int(track), box))
        self.ends = {int(t): boxes[-1].frame for t, boxes in tracks.items() if boxes}
        self.thumb_frames = {int(t): _thumbnail_frames(boxes, thumbnails)
                             for t, boxes in tracks.items()}
        self.results = {int(t): TrackResult(camera, self.cam_index, int(t)) for t in tracks}
        self.pending: Dict[int, List[Image.Image]] = {}
        self.queue: List[Tuple[int, Tracklet]] = []
        self.queued = 0
        self.sums: Dict[int, np.ndarray] = {}
        self.clips: Dict[int, int] = {}
        self.skipped = SkipCounts()
        self.crops = 0
        self.last_frame = max(self.by_frame, default=0)

    def wants(self, number: int) -> bool:
        """Whether frame ``number`` holds a box (frames without one need not be converted)."""
        return number in self.by_frame

    def add_frame(self, number: int, image: np.ndarray) -> None:
        """Crop the boxes of frame ``number`` (an ``(H, W, 3)`` uint8 RGB array)."""
        height, width = image.shape[:2]
        for track, box in self.by_frame.get(number, ()):
            bounds = clip_box(box, height, width)
            if isinstance(bounds, str):
                self.skipped[bounds] += 1
                continue
            piece = crop(image, bounds)
            res = self.results[track]
            res.frames += 1
            res.first = res.first or number
            res.last = number
            self.crops += 1
            if number in self.thumb_frames[track]:
                h = self.thumb_height
                res.thumbnails.append(piece.resize(
                    (max(1, round(piece.width * h / piece.height)), h), Image.BILINEAR))
            held = self.pending.setdefault(track, [])
            held.append(piece)
            if len(held) >= self.part_frames:
                self._hand_on(track)
        for track, _ in self.by_frame.get(number, ()):
            if self.ends.get(track) == number:
                self._hand_on(track)
        if self.queued >= self.batch_frames:
            self._flush()

    def _hand_on(self, track: int) -> None:
        crops = self.pending.pop(track, None)
        if crops:
            name = f"{self.camera}/{track}"
            self.queue.append((track, Tracklet(name, tuple(crops), -1, self.cam_index)))
            self.queued += len(crops)

    def _flush(self) -> None:
        if not self.queue:
            return
        feats = np.asarray(self.embed([t for _, t in self.queue]), dtype=np.float64)
        for (track, part), feat in zip(self.queue, feats):
            n = num_clips(len(part.paths), self.seq_len, "dense")
            self.sums[track] = self.sums.get(track, 0.0) + feat * n
            self.clips[track] = self.clips.get(track, 0) + n
        self.queue, self.queued = [], 0

    def finish(self, decoded: int) -> List[TrackResult]:
        """Embed what is left once the video has ended after ``decoded`` frames (boxes of later
        frames are counted as :data:`~.cropping.BEYOND_END`); the tracks with at least one crop,
        in track id order."""
        for number, items in self.by_frame.items():
            if number > decoded:
                self.skipped[BEYOND_END] += len(items)
        for track in list(self.pending):
            self._hand_on(track)
        self._flush()
        out = []
        for track, res in sorted(self.results.items()):
            if self.clips.get(track):
                res.feature = (self.sums[track] / self.clips[track]).astype(np.float32)
                out.append(res)
        return out

    @property
    def dropped(self) -> List[int]:
        """Tracks left without a single crop."""
        return [t for t, res in sorted(self.results.items()) if res.frames == 0]
