"""Boxes of a track file cut out of a frame: clipped to the frame, or counted and skipped.

A tracker's box may reach past the frame's edges (a person entering or leaving the view), have no
area, or lie entirely outside the frame (a track file that belongs to another video, another
frame size). :func:`clip_box` turns a box into whole-pixel bounds inside the frame, or into the
reason it cannot be cropped:

* :data:`EMPTY`: width or height <= 0, or less than :data:`MIN_SIDE` pixels left on a side once
  clipped to the frame (a degenerate box);
* :data:`OUTSIDE`: no pixel of the box is inside the frame;

and :data:`BEYOND_END` is the reason of a box whose frame number is past the video's last frame.
The pipeline counts the skipped boxes per reason and video (:class:`SkipCounts`) and reports them.

Example:
    >>> from tfclip_torchreid.data.mot import Box
    >>> clip_box(Box(1, -10, 5, 30, 40), height=32, width=64)
    (0, 5, 20, 32)
    >>> clip_box(Box(1, 70, 5, 30, 40), height=32, width=64), clip_box(Box(1, 3, 5, 0, 9), 32, 64)
    ('outside the frame', 'empty or degenerate box')
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Tuple, Union

import numpy as np
from PIL import Image

from ..data.mot import Box

__all__ = ["EMPTY", "OUTSIDE", "BEYOND_END", "REASONS", "MIN_SIDE", "SkipCounts", "clip_box",
           "crop"]

EMPTY = "empty or degenerate box"
OUTSIDE = "outside the frame"
BEYOND_END = "beyond the video's end"
#: every reason a box is skipped, in report order
REASONS = (EMPTY, OUTSIDE, BEYOND_END)
#: fewest pixels a crop may have on a side
MIN_SIDE = 2

Bounds = Tuple[int, int, int, int]


class SkipCounts(Counter):
    """Skipped boxes per reason (a :class:`collections.Counter`)."""

    def describe(self) -> str:
        """``"3 outside the frame, 1 beyond the video's end"`` (or ``"none"``)."""
        parts = [f"{self[r]} {r}" for r in REASONS if self[r]]
        return ", ".join(parts) if parts else "none"


def clip_box(box: Box, height: int, width: int) -> Union[Bounds, str]:
    """``(x0, y0, x1, y1)`` whole-pixel bounds of ``box`` inside a ``height x width`` frame
    (edges rounded outwards), or the reason it cannot be cropped (:data:`EMPTY`,
    :data:`OUTSIDE`)."""
    if not (box.w > 0 and box.h > 0):
        return EMPTY
    x0, y0 = max(math.floor(box.x), 0), max(math.floor(box.y), 0)
    x1, y1 = min(math.ceil(box.x + box.w), width), min(math.ceil(box.y + box.h), height)
    if x1 <= x0 or y1 <= y0:
        return OUTSIDE
    if x1 - x0 < MIN_SIDE or y1 - y0 < MIN_SIDE:
        return EMPTY
    return int(x0), int(y0), int(x1), int(y1)


def crop(image: np.ndarray, bounds: Bounds) -> Image.Image:
    """The RGB crop ``bounds`` (from :func:`clip_box`) of an ``(H, W, 3)`` uint8 frame, as a PIL
    image that owns its pixels."""
    x0, y0, x1, y1 = bounds
    return Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1]))
