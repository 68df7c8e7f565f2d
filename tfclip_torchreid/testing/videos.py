"""Synthetic multi-camera videos: pedestrians walking through several views, with their tracks.

:func:`make_synthetic_videos` writes, for ``cameras`` static cameras, one mp4 video each
(``cam1.mp4`` ...; PyAV, the ``video`` extra), the MOTChallenge track file a perfect tracker
would give for it (``cam1.txt``, :mod:`~tfclip_torchreid.data.mot`: 1-based frames) and
``gt.csv`` (``camera,track_id,person``: who each track is). It is the test bed of
:mod:`tfclip_torchreid.video`.

The pedestrians are those of the synthetic ReID datasets (:mod:`.render`: the same appearance
model, figure and camera styles), so a model trained on those datasets transfers; the
identities are new ones (their own random stream), never those of a dataset of the same seed.
The scene (:func:`plan_walks`):

* every person walks through ``2..cameras`` of the views (a few through one only), each walk a
  straight line across the view at its own depth (box size and foot line) and speed, entering and
  leaving through the sides (boxes partly outside the frame at both ends); about a quarter of
  the walks are followed by a second walk of the same person through the same view, later
  (one camera, two tracks that do not overlap in time: the same person);
* in every view two walks in opposite directions are timed to cross at its centre at different
  depths, so the nearer person occludes the farther one (and others cross by chance); some views
  have a pole in front of everyone;
* a camera's frames get its background, colour cast, contrast, blur and sensor noise
  (:func:`~.render.random_camera`) and a slowly drifting illumination.

A track is one walk: its boxes are the figure's box in every frame where at least 30 % of the box
width is inside the frame. Frame rates and sizes may differ per camera. Generation is
deterministic for a seed (the same files, byte for byte, with the same PyAV build).

Example:
    >>> walks = plan_walks(np.random.default_rng(0), cameras=2, people=3, seconds=4,
    ...                    fps=[5, 5], sizes=[(96, 160)] * 2)
    >>> sorted({w.camera for w in walks}), all(w.frames > 0 for w in walks)
    ([0, 1], True)
    >>> make_synthetic_videos("/tmp/videos", cameras=3, people=8)  # doctest: +SKIP
    SyntheticVideos(videos=['/tmp/videos/cam1.mp4', ...], tracks=[...], ground_truth='/tmp/videos/gt.csv')
"""

from __future__ import annotations

import json
import logging
import math
import os
import os.path as osp
import time
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Sequence, Tuple

import cv2
import numpy as np

from ..data.mot import Box, write_ground_truth, write_tracks
from ..utils.optional import import_optional
from .render import CameraStyle, random_appearance, random_camera, render_figure

logger = logging.getLogger(__name__)

__all__ = ["Walk", "SyntheticVideos", "plan_walks", "make_synthetic_videos", "VIDEO_MARKER"]

#: marker file of a folder written by :func:`make_synthetic_videos` (its settings)
VIDEO_MARKER = "SYNTHETIC_VIDEOS.json"
#: a box is written when at least this fraction of its width is inside the frame
_MIN_VISIBLE = 0.3
# random streams: (seed, stream, ...) keeps every part independent of the others' sizes
_PLAN, _STYLE, _PERSON, _FIGURE, _FRAMES = 20, 21, 31, 22, 23


@dataclass
class Walk:
    """One person's walk through one camera's view: one track of that camera.

    Frames are 0-based here; ``x0``/``x1`` are the box's left edge at the first and last frame.
    """

    person: int
    camera: int
    track_id: int
    start: int
    frames: int
    x0: float
    x1: float
    bottom: float
    height: int

    @property
    def width(self) -> int:
        return max(2, int(round(self.height / 2)))

    def left(self, t: int) -> int:
        """The box's left edge at frame ``t`` (0-based video frame)."""
        k = (t - self.start) / max(self.frames - 1, 1)
        return int(round(self.x0 + (self.x1 - self.x0) * k))

    @property
    def top(self) -> int:
        return int(round(self.bottom)) - self.height


class SyntheticVideos(NamedTuple):
    """The files :func:`make_synthetic_videos` wrote."""

    videos: List[str]
    tracks: List[str]
    ground_truth: str


def _per_camera(value, cameras: int, what: str) -> list:
    """One value per camera from one value (a number, an ``(h, w)`` pair) or a list of them."""
    if isinstance(value, (int, float)) or (
            what == "size" and len(value) == 2 and all(isinstance(v, (int, np.integer))
                                                       for v in value)):
        return [value] * cameras
    value = list(value)
    if len(value) == 1:
        return value * cameras
    if len(value) != cameras:
        raise ValueError(f"{what}: give one value or one per camera ({cameras}), got {len(value)}")
    return value


def _new_walk(rng: np.random.Generator, person: int, camera: int, size: Tuple[int, int],
              fps: float, earliest: int, total: int) -> Walk | None:
    """A walk across the view starting at or after frame ``earliest``; None if it cannot start
    before the video ends."""
    H, W = size
    depth = float(rng.uniform(0.0, 1.0))
    height = int(round(H * (0.42 + 0.30 * depth)))
    bottom = H * (0.76 + 0.22 * depth)
    width = max(2, int(round(height / 2)))
    speed = height * float(rng.uniform(0.55, 0.9))  # pixels per second
    start_x, end_x = -(1 - _MIN_VISIBLE) * width, W - _MIN_VISIBLE * width
    if rng.random() < 0.5:
        start_x, end_x = end_x, start_x
    frames = max(2, int(math.ceil(abs(end_x - start_x) / speed * fps)))
    latest = total - frames // 2
    if latest <= earliest:
        return None
    start = int(rng.integers(earliest, latest))
    return Walk(person, camera, 0, start, frames, start_x, end_x, bottom, height)


def _cross(a: Walk, b: Walk, total: int) -> None:
    """Time ``b`` to meet ``a`` at the centre of the view, walking the other way, at another
    depth (the nearer one occludes the farther)."""
    if (a.x1 - a.x0) * (b.x1 - b.x0) > 0:
        b.x0, b.x1 = b.x1, b.x0
    centre = a.start + a.frames // 2
    b.start = int(min(max(centre - b.frames // 2, 0), max(total - b.frames, 0)))


def plan_walks(rng: np.random.Generator, cameras: int, people: int, seconds: float,
               fps: Sequence[float], sizes: Sequence[Tuple[int, int]]) -> List[Walk]:
    """Who walks where and when (see the module notes); track ids numbered per camera from 1 in
    order of the first frame."""
    totals = [max(1, int(round(seconds * f))) for f in fps]
    walks: List[Walk] = []
    for person in range(1, people + 1):
        k = int(rng.integers(2, cameras + 1)) if cameras >= 2 and rng.random() < 0.85 else 1
        for cam in sorted(int(c) for c in rng.choice(cameras, k, replace=False)):
            walk = _new_walk(rng, person, cam, sizes[cam], fps[cam], 0, totals[cam])
            if walk is None:
                continue
            walks.append(walk)
            if rng.random() < 0.25:  # the same person again, later, in the same view
                again = _new_walk(rng, person, cam, sizes[cam], fps[cam],
                                  walk.start + walk.frames + 1, totals[cam])
                if again is not None:
                    walks.append(again)
    for cam in range(cameras):
        mine = [w for w in walks if w.camera == cam]
        alone = [w for w in mine if sum(v.person == w.person for v in mine) == 1]
        if len(alone) >= 2:
            _cross(alone[0], alone[1], totals[cam])
    by_cam: Dict[int, List[Walk]] = {}
    for w in sorted(walks, key=lambda w: (w.camera, w.start, w.person)):
        by_cam.setdefault(w.camera, []).append(w)
        w.track_id = len(by_cam[w.camera])
    return [w for cam in sorted(by_cam) for w in by_cam[cam]]


def _visible_boxes(walk: Walk, size: Tuple[int, int], total: int) -> List[Box]:
    H, W = size
    boxes = []
    for t in range(walk.start, min(walk.start + walk.frames, total)):
        x = walk.left(t)
        inside = min(x + walk.width, W) - max(x, 0)
        if inside >= _MIN_VISIBLE * walk.width:
            boxes.append(Box(t + 1, float(x), float(walk.top), float(walk.width),
                             float(walk.height)))
    return boxes


def _paste(img: np.ndarray, body: np.ndarray, mask: np.ndarray, x: int, y: int) -> None:
    """Paste a figure (``body`` where ``mask``) with its top-left corner at (x, y), clipped."""
    H, W = img.shape[:2]
    h, w = mask.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x1 <= x0 or y1 <= y0:
        return
    region = img[y0:y1, x0:x1]
    np.copyto(region, body[y0 - y:y1 - y, x0 - x:x1 - x],
              where=mask[y0 - y:y1 - y, x0 - x:x1 - x, None])


class _Camera:
    """One camera's static view, its style and the per-frame effects of :mod:`.render`."""

    def __init__(self, style: CameraStyle, size: Tuple[int, int], rng: np.random.Generator,
                 box_height: float) -> None:
        H, W = size
        self.style, self.rng = style, rng
        hb, wb = style.background.shape[:2]
        oy, ox = int(rng.integers(0, hb - H + 1)), int(rng.integers(0, wb - W + 1))
        self.view = np.ascontiguousarray(style.background[oy:oy + H, ox:ox + W])
        self.pole = None
        if rng.random() < 0.5:
            pw = max(2, int(W * rng.uniform(0.02, 0.04)))
            self.pole = (int(rng.integers(0, W - pw)), pw,
                         rng.uniform(30, 220, 3).astype(np.float32))
        self.light = float(rng.uniform(0.8, 1.15))
        self.drift = (float(rng.uniform(-0.12, 0.12)), float(rng.uniform(20, 60)))
        self.sigma = (style.blur + float(rng.uniform(0.0, 0.9))) * box_height / 128.0

    def frame(self, t: int, fps: float, figures: Sequence[Tuple[np.ndarray, np.ndarray, int, int]]
              ) -> np.ndarray:
        f32, cam = np.float32, self.style
        img = self.view.copy()
        for body, mask, x, y in figures:
            _paste(img, body, mask, x, y)
        if self.pole is not None:
            px, pw, colour = self.pole
            img[:, px:px + pw] = colour
        amp, period = self.drift
        light = f32(self.light * (1 + amp * math.sin(2 * math.pi * t / (fps * period)))
                    + self.rng.normal(0.0, 0.01))
        m = img.mean(dtype=f32) * light
        img *= light * f32(cam.contrast) * cam.gain
        img += m * f32(1.0 - cam.contrast) * cam.gain + cam.offset
        if self.sigma >= 0.3:
            cv2.GaussianBlur(img, (0, 0), self.sigma, dst=img, borderType=cv2.BORDER_REPLICATE)
        img += f32(cam.noise) * cam.noise_bank[int(self.rng.integers(len(cam.noise_bank)))]
        img += 0.5
        np.clip(img, 0, 255, out=img)
        return img.astype(np.uint8)


def _encode(av, path: str, fps: float, frames) -> int:
    """Write RGB frames to an mp4 (H.264 when PyAV's FFmpeg has it, else MPEG-4 part 2)."""
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    count = 0
    with av.open(path, mode="w") as container:
        stream = container.add_stream(codec, rate=int(round(fps)))
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"} if codec == "libx264" else {}
        for img in frames:
            if count == 0:
                stream.height, stream.width = img.shape[:2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
            count += 1
        for packet in stream.encode():
            container.mux(packet)
    return count


def _camera_frames(walks: Sequence[Walk], camera: _Camera, fps: float, total: int, seed: int):
    """The camera's frames, one at a time; each walk's figure is drawn when it starts and
    dropped when it ends (bounded memory)."""
    live: Dict[int, Tuple[Walk, np.ndarray, np.ndarray]] = {}
    starts: Dict[int, List[Walk]] = {}
    for w in walks:
        starts.setdefault(w.start, []).append(w)
    for t in range(total):
        for w in starts.get(t, []):
            app = random_appearance(np.random.default_rng([seed, _PERSON, w.person]))
            rng = np.random.default_rng([seed, _FIGURE, w.camera, w.track_id])
            body, mask = render_figure(app, w.frames, w.height, w.width, rng)
            live[w.track_id] = (w, body, mask)
        figures = []
        for w, body, mask in sorted(live.values(), key=lambda item: item[0].bottom):
            figures.append((body[t - w.start], mask[t - w.start], w.left(t), w.top))
        yield camera.frame(t, fps, figures)
        for key in [k for k, (w, _, _) in live.items() if t >= w.start + w.frames - 1]:
            del live[key]


def _check_folder(out: str, overwrite: bool) -> None:
    if osp.isdir(out) and os.listdir(out) and not osp.isfile(osp.join(out, VIDEO_MARKER)):
        raise FileExistsError(f"{out} holds other files (no {VIDEO_MARKER}): synthetic videos "
                              "are written into an empty or new folder")
    if osp.isfile(osp.join(out, VIDEO_MARKER)) and not overwrite:
        raise FileExistsError(f"{out} already holds synthetic videos: pass overwrite=True "
                              "(--overwrite) to write them again")


def make_synthetic_videos(out: str, cameras: int = 3, people: int = 12, seconds: float = 20.0,
                          seed: int = 0, fps: float | Sequence[float] = 10,
                          size: Tuple[int, int] | Sequence[Tuple[int, int]] = (270, 480),
                          overwrite: bool = False) -> SyntheticVideos:
    """Write ``cameras`` videos of ``people`` synthetic pedestrians, their track files and the
    ground truth into ``out`` (see the module notes).

    Args:
        out: output folder (new, empty, or one this function wrote, with ``overwrite``).
        cameras, people: how many of each (>= 1).
        seconds: length of every video.
        seed: the same seed and settings give the same files.
        fps: frame rate, one for all cameras or one per camera.
        size: frame size ``(height, width)`` in pixels (even numbers: mp4's 4:2:0 colour), one
            for all or one per camera.
        overwrite: write again into a folder this function wrote before.

    Returns:
        The paths written: ``out/camK.mp4``, ``out/camK.txt`` (K = 1..cameras), ``out/gt.csv``.
    """
    if cameras < 1 or people < 1 or seconds <= 0:
        raise ValueError(f"need cameras >= 1, people >= 1 and seconds > 0, got {cameras}, "
                         f"{people}, {seconds}")
    fps_list = [float(f) for f in _per_camera(fps, cameras, "fps")]
    sizes = [tuple(int(v) for v in s) for s in _per_camera(size, cameras, "size")]
    for (h, w), f in zip(sizes, fps_list):
        if h < 32 or w < 32 or h % 2 or w % 2 or f <= 0:
            raise ValueError(f"frame sizes must be even and >= 32 and frame rates > 0, got "
                             f"{h}x{w} at {f} fps")
    av = import_optional("av", "video", "writing mp4 videos")
    _check_folder(out, overwrite)
    os.makedirs(out, exist_ok=True)
    start = time.time()
    walks = plan_walks(np.random.default_rng([seed, _PLAN]), cameras, people, seconds,
                       fps_list, sizes)
    videos, track_files, gt_rows = [], [], []
    for cam in range(cameras):
        name = f"cam{cam + 1}"
        mine = [w for w in walks if w.camera == cam]
        total = max(1, int(round(seconds * fps_list[cam])))
        style = random_camera(np.random.default_rng([seed, _STYLE, cam]), *sizes[cam])
        box_height = float(np.mean([w.height for w in mine])) if mine else sizes[cam][0] / 2
        camera = _Camera(style, sizes[cam], np.random.default_rng([seed, _FRAMES, cam]),
                         box_height)
        video = osp.join(out, f"{name}.mp4")
        _encode(av, video, fps_list[cam], _camera_frames(mine, camera, fps_list[cam], total, seed))
        tracks = {w.track_id: _visible_boxes(w, sizes[cam], total) for w in mine}
        tracks = {t: boxes for t, boxes in tracks.items() if boxes}
        write_tracks(osp.join(out, f"{name}.txt"), tracks)
        gt_rows += [(name, w.track_id, w.person) for w in mine if w.track_id in tracks]
        videos.append(video)
        track_files.append(osp.join(out, f"{name}.txt"))
        logger.info(f"=> {video}: {total} frames {sizes[cam][0]}x{sizes[cam][1]} at "
                    f"{fps_list[cam]:g} fps, {len(tracks)} tracks")
    gt = osp.join(out, "gt.csv")
    write_ground_truth(gt, gt_rows)
    with open(osp.join(out, VIDEO_MARKER), "w") as f:
        json.dump({"cameras": cameras, "people": people, "seconds": seconds, "seed": seed,
                   "fps": fps_list, "sizes": [list(s) for s in sizes]}, f, indent=1)
    logger.info(f"=> {cameras} videos of {people} people in {out} ({time.time() - start:.1f} s)")
    return SyntheticVideos(videos, track_files, gt)
