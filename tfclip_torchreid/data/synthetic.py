"""Procedurally generated ReID datasets in the real on-disk layouts of MARS, iLIDS-VID, LS-VID
(video) and Market-1501 (image).

The generated folders are read by the *unmodified* loaders: torchreid's ``Mars``, ``iLIDSVID``
(through ``torchreid.data.VideoDataManager`` or ``compat.init_video_dataset``) and ``Market1501``
(``ImageDataManager`` / ``init_image_dataset``), and this package's
:class:`~tfclip_torchreid.data.datasets.lsvid.LSVID`. They are meant for tests, demos and smoke
runs of the whole pipeline without the real data (docs/datasets.md describes the formats).

Each identity is a pedestrian-like figure (head and hair, torso, two arms, two legs, shoes, an
optional shoulder bag) with its own clothing colours (drawn from a small shared palette, so colours
alone do not identify a person), top pattern (solid, stripes, two-tone, open jacket, checks, logo),
sleeve and trouser length and build. Every frame adds what makes real tracklets hard: walking
motion (limb swing, body bob), detection jitter (box shift and scale), a per-camera background,
colour cast, contrast and noise level, per-tracklet illumination with drift, blur and occasional
occluders. Tracklet lengths vary.

Identity structure (defaults; all sizes are keyword arguments of :func:`make_synthetic_dataset`):

* ``mars``: disjoint train and test identities over up to 6 cameras; every test identity is seen
  by >= 2 cameras; one query per (identity, camera) for all but one of its cameras, as in MARS; the
  first query camera of about half the identities holds a second tracklet, so the evaluator's
  same-identity-same-camera removal matters; distractor tracklets (pid 0, kept in the gallery) and
  junk tracklets (pid -1, folder ``00-1``, dropped by the loader). The default gallery is larger
  than 50 + k tracklets (torchreid's Python ranker fails on smaller galleries).
* ``ilidsvid``: one sequence per identity in each of ``cam1``/``cam2`` (``personNNN`` folders with
  non-contiguous numbers), ``train-test people splits/train_test_splits_ilidsvid.mat`` with
  ``ls_set`` (num_splits x num_ids, 1-based) and the ``splits.json`` that torchreid would derive
  from it (first half of each row = test identities, following Wang et al. ECCV'14). torchreid
  asserts a 10 x 300 ``ls_set`` when it builds ``splits.json`` itself; writing ``splits.json``
  makes any size work.
* ``lsvid``: ``tracklet_train/`` and ``tracklet_test/`` frame folders, the two list files and a
  MATLAB v7.3 (HDF5) ``info_test.mat`` holding ``query``; either the public archive layout
  (``list_sequence/`` + ``test/data/``) or the authors' ``info/`` layout. Training tracklets are
  24-100 frames, so the authors' 48-frame chunking both cuts and drops some, while every identity
  keeps at least one tracklet of >= 48 frames; gallery-only identities and junk rows are added.
* ``market1501``: ``Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/`` with
  torchreid's names ``PPPP_cCsS_FFFFFF_NN.jpg``. Each (identity, camera) sequence is a short
  rendered walk of ``min_len..max_len`` images (one frame per image); every identity is seen by
  >= 2 cameras; train and test identities are disjoint; a test identity has one query image per
  camera for all but one of its cameras (the rest of that camera's sequence stays in the gallery,
  as in Market-1501, so the same-identity-same-camera removal matters); the gallery adds
  distractors (``0000_*``, pid 0, kept) and junk (``-1_*``, dropped by torchreid). The default
  gallery is larger than 50 + k images.

Generation is deterministic given ``seed`` (same bytes), and idempotent: a complete dataset that
this module wrote (marker file ``SYNTHETIC.json``) is left alone unless ``overwrite=True``. A folder
without the marker is never modified or deleted.

Example:
    >>> from tfclip_torchreid.data.synthetic import make_synthetic_dataset
    >>> path = make_synthetic_dataset("mars", "/tmp/reid-data", seed=0)  # doctest: +SKIP
    >>> path  # doctest: +SKIP
    '/tmp/reid-data/mars'
"""

from __future__ import annotations

import json
import logging
import os
import os.path as osp
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

__all__ = [
    "FORMATS",
    "DATASET_DIRS",
    "MARKER",
    "make_synthetic_dataset",
    "synthetic_info",
    "render_tracklet",
]

FORMATS: Tuple[str, ...] = ("mars", "ilidsvid", "lsvid", "market1501")
#: dataset folder under ``root`` for each format (the names torchreid / LSVID look for)
DATASET_DIRS: Dict[str, str] = {"mars": "mars", "ilidsvid": "ilids-vid", "lsvid": "lsvid",
                                "market1501": "market1501"}
#: Market-1501's versioned folder inside ``<root>/market1501``
MARKET_SUBDIR = "Market-1501-v15.09.15"
#: marker file written last into a complete synthetic dataset
MARKER = "SYNTHETIC.json"
_VERSION = 1

# default sizes per format (keyword arguments of make_synthetic_dataset)
_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "mars": dict(
        num_train_ids=16, num_test_ids=16, num_cams=6, num_distractors=40, num_junk=4,
        min_len=4, max_len=24, train_min_len=None, train_max_len=None,
    ),
    "ilidsvid": dict(num_ids=20, num_splits=10, min_len=8, max_len=24),
    "lsvid": dict(
        num_train_ids=16, num_test_ids=16, num_gallery_ids=12, num_cams=8, num_junk=3,
        min_len=4, max_len=24, train_min_len=24, train_max_len=100, layout="flat",
    ),
    # min_len..max_len = images per (identity, camera) sequence
    "market1501": dict(
        num_train_ids=16, num_test_ids=16, num_cams=6, num_distractors=20, num_junk=6,
        min_len=2, max_len=6,
    ),
}
_COMMON_DEFAULTS: Dict[str, Any] = dict(height=128, width=64)

# Clothing palette (RGB). Identities draw from it with a small jitter, so many share colours.
_PALETTE = np.array(
    [
        [200, 30, 35], [30, 60, 170], [35, 140, 60], [230, 200, 40], [240, 240, 235],
        [25, 25, 30], [120, 120, 125], [150, 80, 40], [235, 120, 30], [120, 50, 150],
        [90, 180, 220], [230, 140, 170], [70, 90, 50], [20, 40, 80], [190, 170, 130],
    ],
    dtype=np.float32,
)
_SKIN = np.array([[250, 210, 180], [225, 180, 140], [190, 140, 100], [140, 95, 65], [95, 65, 45]],
                 dtype=np.float32)
_HAIR = np.array([[20, 15, 10], [70, 45, 25], [130, 90, 50], [200, 170, 110], [150, 150, 150]],
                 dtype=np.float32)
_NOISE_FRAMES = 12
_TOP_PATTERNS = ("solid", "hstripes", "vstripes", "twotone", "jacket", "checks", "logo")


# ----------------------------------------------------------------------------------------------
# appearance and camera models
# ----------------------------------------------------------------------------------------------
@dataclass
class Appearance:
    """Clothing and body of one identity (all colours RGB float in 0..255)."""

    top: np.ndarray
    top2: np.ndarray
    pattern: str
    period: float
    bottom: np.ndarray
    shoes: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    long_hair: bool
    sleeve: float  # fraction of the arm covered by the sleeve
    shorts: bool
    build: float  # width multiplier
    bag: np.ndarray | None  # bag colour or None
    bag_side: float  # +1 right, -1 left


@dataclass
class CameraStyle:
    """Per-camera colour cast, contrast, noise and background texture."""

    gain: np.ndarray  # (3,) per-channel gain
    offset: np.ndarray  # (3,) additive
    contrast: float
    noise: float
    blur: float
    background: np.ndarray  # (Hb, Wb, 3) float32
    noise_bank: np.ndarray  # (K, H, W, 3) float32 unit-variance sensor noise frames


def _jitter_colour(rng: np.random.Generator, base: np.ndarray, amount: float = 18.0) -> np.ndarray:
    return np.clip(base + rng.normal(0.0, amount, 3), 0, 255).astype(np.float32)


def random_appearance(rng: np.random.Generator) -> Appearance:
    """Draw one identity's appearance."""
    n = len(_PALETTE)
    i_top, i_top2, i_bot = rng.choice(n, 3, replace=False)
    return Appearance(
        top=_jitter_colour(rng, _PALETTE[i_top]),
        top2=_jitter_colour(rng, _PALETTE[i_top2]),
        pattern=_TOP_PATTERNS[int(rng.integers(len(_TOP_PATTERNS)))],
        period=float(rng.uniform(0.035, 0.07)),
        bottom=_jitter_colour(rng, _PALETTE[i_bot]),
        shoes=_jitter_colour(rng, _PALETTE[int(rng.choice([4, 5, 6, 7, 13]))], 10.0),
        skin=_jitter_colour(rng, _SKIN[int(rng.integers(len(_SKIN)))], 8.0),
        hair=_jitter_colour(rng, _HAIR[int(rng.integers(len(_HAIR)))], 8.0),
        long_hair=bool(rng.random() < 0.35),
        sleeve=float(rng.choice([0.45, 1.0])),
        shorts=bool(rng.random() < 0.25),
        build=float(rng.uniform(0.85, 1.2)),
        bag=_jitter_colour(rng, _PALETTE[int(rng.integers(n))]) if rng.random() < 0.4 else None,
        bag_side=float(rng.choice([-1.0, 1.0])),
    )


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: Tuple[int, int]) -> np.ndarray:
    """Low-frequency noise in [0, 1] of shape (h, w): a coarse random grid, bilinearly upsampled."""
    grid = rng.random((cells[0] + 1, cells[1] + 1)).astype(np.float32)
    ys = np.linspace(0, cells[0], h, dtype=np.float32)
    xs = np.linspace(0, cells[1], w, dtype=np.float32)
    y0 = np.minimum(ys.astype(np.int64), cells[0] - 1)
    x0 = np.minimum(xs.astype(np.int64), cells[1] - 1)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    g00 = grid[y0][:, x0]
    g01 = grid[y0][:, x0 + 1]
    g10 = grid[y0 + 1][:, x0]
    g11 = grid[y0 + 1][:, x0 + 1]
    return (g00 * (1 - fy) * (1 - fx) + g01 * (1 - fy) * fx + g10 * fy * (1 - fx) + g11 * fy * fx)


def random_camera(rng: np.random.Generator, height: int, width: int) -> CameraStyle:
    """Draw one camera: colour cast and a background texture 1.5 x 3 times the frame size."""
    hb, wb = int(height * 1.5), int(width * 3)
    wall = _jitter_colour(rng, rng.uniform(60, 200, 3).astype(np.float32), 25.0)
    floor = _jitter_colour(rng, rng.uniform(50, 170, 3).astype(np.float32), 25.0)
    horizon = int(hb * rng.uniform(0.62, 0.8))
    bg = np.empty((hb, wb, 3), np.float32)
    bg[:horizon] = wall
    bg[horizon:] = floor
    # clutter: doors, windows, shop fronts
    for _ in range(int(rng.integers(4, 9))):
        h0 = int(rng.integers(0, max(1, horizon - 4)))
        x0 = int(rng.integers(0, wb - 4))
        hh = int(rng.integers(hb // 10, hb // 2))
        ww = int(rng.integers(wb // 16, wb // 4))
        bg[h0:min(h0 + hh, horizon), x0:x0 + ww] = _jitter_colour(
            rng, rng.uniform(20, 235, 3).astype(np.float32), 10.0)
    # floor tiles / wall texture and low-frequency shading
    yy, xx = np.mgrid[0:hb, 0:wb]
    tile = max(4, height // 12)
    tiles = (((yy // tile) + (xx // tile)) % 2).astype(np.float32)
    bg[horizon:] *= (0.92 + 0.08 * tiles[horizon:])[..., None]
    shade = 0.75 + 0.5 * _smooth_noise(rng, hb, wb, (4, 6))
    bg *= shade[..., None]
    bg += rng.normal(0.0, 6.0, bg.shape).astype(np.float32)
    return CameraStyle(
        gain=rng.uniform(0.78, 1.22, 3).astype(np.float32),
        offset=rng.uniform(-18, 18, 3).astype(np.float32),
        contrast=float(rng.uniform(0.8, 1.1)),
        noise=float(rng.uniform(2.0, 7.0)),
        blur=float(rng.uniform(0.0, 0.8)),
        background=np.clip(bg, 0, 255),
        noise_bank=rng.standard_normal((_NOISE_FRAMES, height, width, 3), dtype=np.float32),
    )


# ----------------------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------------------
def _capsule(u, v, ax, ay, dx, dy, radius):
    """Mask of points within ``radius`` of the segment A->A+d, and the segment parameter t."""
    px = u - ax
    py = v - ay
    dd = dx * dx + dy * dy
    t = np.clip((px * dx + py * dy) / dd, 0.0, 1.0)
    ex = px - t * dx
    ey = py - t * dy
    return (ex * ex + ey * ey) <= radius * radius, t


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (OpenCV) of every frame of a (T, H, W, 3) float32 array, in place."""
    if sigma >= 0.3:
        for frame in img:
            cv2.GaussianBlur(frame, (0, 0), sigma, dst=frame, borderType=cv2.BORDER_REPLICATE)
    return img


# label values of the part map (index into the per-identity colour table)
_BG, _BOTTOM, _SKIN_L, _SHOES, _TOP, _TOP2, _HAIR_L, _BAG = range(8)


def render_tracklet(
    app: Appearance,
    cam: CameraStyle,
    num_frames: int,
    height: int,
    width: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Render ``num_frames`` frames of one walking person seen by one camera.

    The body is painted as a per-pixel part-label map (painter's order: back leg, front leg,
    back arm, torso with pattern, bag, front arm, hair, head), coloured from the identity's
    colour table and composited over a crop of the camera background; then shading,
    illumination, camera cast, blur and noise are applied. All frames are drawn at once.

    Returns:
        uint8 array (num_frames, height, width, 3).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> cam = random_camera(rng, 128, 64)
        >>> render_tracklet(random_appearance(rng), cam, 8, 128, 64, rng).shape
        (8, 128, 64, 3)
    """
    T, H, W = int(num_frames), int(height), int(width)
    f32 = np.float32
    f = np.arange(T, dtype=f32)[:, None, None]

    # --- detection box jitter and walking cycle (per frame) ---
    base_scale = rng.uniform(0.8, 0.95)
    scale = (base_scale * (1.0 + rng.normal(0.0, 0.035, (T, 1, 1)))).astype(f32)
    cx = (W / 2.0 + rng.normal(0.0, 0.045 * W, (T, 1, 1))).astype(f32)
    top = (H * rng.uniform(0.02, 0.06) + rng.normal(0.0, 0.02 * H, (T, 1, 1))).astype(f32)
    phase = (rng.uniform(0, 2 * np.pi) + f * rng.uniform(0.45, 0.85)).astype(f32)
    swing = np.sin(phase)
    bob = f32(0.008) * np.abs(np.cos(phase))

    ys = np.arange(H, dtype=f32)[None, :, None]
    xs = np.arange(W, dtype=f32)[None, None, :]
    unit = scale * H  # pixels per body height
    v, u = np.broadcast_arrays((ys - top) / unit - bob, (xs - cx) / unit)  # (T,H,W) each
    lab = np.zeros((T, H, W), np.int8)

    def paint(mask: np.ndarray, value) -> None:
        np.copyto(lab, np.asarray(value, np.int8), where=mask)

    b = app.build
    torso_w_top, torso_w_bot = 0.105 * b, 0.085 * b
    leg_len, leg_r = 0.46, 0.036 * b
    arm_len, arm_r = 0.31, 0.028 * b
    sw_leg = f32(0.38) * swing
    sw_arm = f32(-0.45) * swing

    # legs (back leg first): trousers, skin below the knee for shorts, shoes
    legs = []
    for side in (-1.0, 1.0):
        ang = -side * sw_leg
        m, t = _capsule(u, v, side * 0.045 * b, 0.5, leg_len * np.sin(ang), leg_len * np.cos(ang),
                        leg_r)
        legs.append(m)
        part = np.where(t > 0.9, _SHOES, _SKIN_L if app.shorts else _BOTTOM).astype(np.int8)
        if app.shorts:
            part[t <= 0.42] = _BOTTOM
        paint(m, part)

    # arms: sleeve then skin
    arms = []
    for side in (-1.0, 1.0):
        ang = -side * sw_arm
        m, t = _capsule(u, v, side * (torso_w_top + 0.012), 0.17,
                        arm_len * np.sin(ang) + side * 0.02, arm_len * np.cos(ang), arm_r)
        arms.append((m, np.where(t < app.sleeve, _TOP, _SKIN_L).astype(np.int8)))
    paint(*arms[0])

    # torso with its pattern
    v0, v1 = 0.155, 0.52
    half_w = torso_w_top + (torso_w_bot - torso_w_top) * (v - v0) / (v1 - v0)
    torso = (v >= v0) & (v <= v1) & (np.abs(u) <= half_w)
    p = app.period
    if app.pattern == "hstripes":
        sec = ((v - v0) / p) % 1.0 < 0.5
    elif app.pattern == "vstripes":
        sec = ((u + 1.0) / (0.7 * p)) % 1.0 < 0.5
    elif app.pattern == "twotone":
        sec = v > (v0 + v1) / 2
    elif app.pattern == "jacket":
        sec = np.abs(u) < 0.035 * b
    elif app.pattern == "checks":
        sec = ((np.floor((v - v0) / p) + np.floor((u + 1.0) / p)) % 2) == 0
    elif app.pattern == "logo":
        sec = (np.abs(u) < 0.04 * b) & (np.abs(v - 0.3) < 0.05)
    else:
        sec = None
    paint(torso, _TOP)
    if sec is not None:
        paint(torso & sec, _TOP2)

    # bag on a shoulder strap
    if app.bag is not None:
        bx = app.bag_side * (torso_w_bot + 0.03)
        sx = -app.bag_side * 0.7 * torso_w_top
        strap, _ = _capsule(u, v, sx, 0.16, bx - sx, 0.42 - 0.16, 0.011)
        paint(((np.abs(u - bx) < 0.045) & (v > 0.4) & (v < 0.52)) | strap, _BAG)

    paint(*arms[1])

    # head and hair
    hcy, rx, ry = 0.085, 0.05, 0.068
    head = (u / rx) ** 2 + ((v - hcy) / ry) ** 2 <= 1.0
    if app.long_hair:
        au = np.abs(u)
        paint((au < rx * 1.15) & (au > rx * 0.55) & (v > hcy) & (v < hcy + 0.13), _HAIR_L)
    paint(head, _SKIN_L)
    paint(head & (v < hcy - 0.25 * ry), _HAIR_L)

    # colour the parts; cylindrical shading across the body
    bag = app.bag * 0.85 if app.bag is not None else app.top
    table = np.stack([np.zeros(3, f32), app.bottom, app.skin, app.shoes, app.top, app.top2,
                      app.hair, bag]).astype(f32)
    person = lab > 0
    shade = 1.0 - 0.35 * np.minimum((u / (0.16 * b)) ** 2, 1.0)
    body = table[lab] * shade[..., None]

    # --- background: a per-frame crop of the camera texture (slow pan + jitter) ---
    bg = cam.background
    hb, wb = bg.shape[:2]
    oy0 = rng.integers(0, hb - H + 1)
    ox0 = rng.integers(0, wb - W + 1)
    pan = rng.uniform(-1.0, 1.0) * np.arange(T)
    oy = np.clip(oy0 + rng.integers(-1, 2, T), 0, hb - H)
    ox = np.clip((ox0 + pan).astype(np.int64), 0, wb - W)
    img = np.stack([bg[oy[i]:oy[i] + H, ox[i]:ox[i] + W] for i in range(T)])
    np.copyto(img, body, where=person[..., None])

    # occluder (a pole or passer-by edge) in some tracklets
    if rng.random() < 0.15:
        ow = int(rng.integers(max(2, W // 10), max(3, W // 4)))
        ox_ = int(rng.integers(0, W - ow))
        img[:, :, ox_:ox_ + ow] = _jitter_colour(rng, rng.uniform(30, 220, 3).astype(f32), 5)

    # illumination (per tracklet, drifting), camera contrast and colour cast, fused:
    # out = ((img * light - m) * contrast + m) * gain + offset, m = mean(img * light)
    light = rng.uniform(0.7, 1.25) * (1.0 + rng.uniform(-0.15, 0.15) * f / max(T - 1, 1))
    light = (light + rng.normal(0.0, 0.02, (T, 1, 1))).astype(f32)[..., None]  # (T,1,1,1)
    m = img.mean(axis=(1, 2, 3), keepdims=True, dtype=f32) * light
    scale_ = light * f32(cam.contrast) * cam.gain
    shift_ = m * f32(1.0 - cam.contrast) * cam.gain + cam.offset
    img *= scale_
    img += shift_

    # blur (camera focus + per-tracklet motion/compression) and sensor noise
    sigma = (cam.blur + rng.uniform(0.0, 0.9)) * H / 128.0
    img = _blur(img, sigma)
    noise = cam.noise_bank[rng.integers(0, len(cam.noise_bank), T)]
    img += f32(cam.noise) * noise
    img += 0.5
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# dataset plans
# ----------------------------------------------------------------------------------------------
@dataclass
class _Track:
    split: str  # "train" | "test"
    pid: int  # pid as written in the dataset (-1 junk, 0 MARS distractor)
    cam: int  # 1-based camera number
    num_frames: int
    key: int  # appearance key (one per identity; junk/distractors get their own)
    query: bool = False
    tid: int = 0  # tracklet number, assigned by the writer
    paths: List[str] = field(default_factory=list)


def _lengths(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(rng.integers(lo, hi + 1))


def _cover_all_cams(rng: np.random.Generator, tracks: List[_Track], num_cams: int,
                    lo: int, hi: int) -> None:
    """Give every camera at least one training tracklet (torchreid counts cameras by presence)."""
    train = [t for t in tracks if t.split == "train"]
    if not train:
        return
    seen = {t.cam for t in train}
    for cam in range(1, num_cams + 1):
        if cam not in seen:
            donor = train[int(rng.integers(len(train)))]
            tracks.append(_Track("train", donor.pid, cam, _lengths(rng, lo, hi), donor.key))


def _test_identity(rng: np.random.Generator, pid: int, num_cams: int, lo: int, hi: int,
                   max_queries: int, second_same_cam: bool) -> List[_Track]:
    """Tracklets of one test identity: >= 2 cameras, queries on all but its last camera."""
    k = int(rng.integers(2, min(4, num_cams) + 1))
    cams = [int(c) + 1 for c in rng.permutation(num_cams)[:k]]
    out = []
    for j, cam in enumerate(cams):
        is_query_cam = j < min(k - 1, max_queries)
        n = 1 + int(rng.random() < 0.25)
        if j == 0 and second_same_cam:
            n = 2
        for i in range(n):
            out.append(_Track("test", pid, cam, _lengths(rng, lo, hi), pid,
                              query=is_query_cam and i == 0))
    return out


def _plan_mars(rng: np.random.Generator, p: Dict[str, Any]) -> List[_Track]:
    C = p["num_cams"]
    if not 2 <= C <= 6:
        raise ValueError(f"mars: num_cams must be in 2..6 (MARS camera ids are one digit 1..6), got {C}")
    lo, hi = p["min_len"], p["max_len"]
    tlo = p["train_min_len"] or lo
    thi = p["train_max_len"] or hi
    tracks: List[_Track] = []
    for i in range(p["num_train_ids"]):
        pid = 2 * i + 1
        k = int(rng.integers(min(2, C), min(4, C) + 1))
        for cam in sorted(int(c) + 1 for c in rng.permutation(C)[:k]):
            for _ in range(1 + int(rng.random() < 0.3)):
                tracks.append(_Track("train", pid, cam, _lengths(rng, tlo, thi), pid))
    _cover_all_cams(rng, tracks, C, tlo, thi)
    for i in range(p["num_test_ids"]):
        pid = 2 * i + 2
        tracks += _test_identity(rng, pid, C, lo, hi, max_queries=C,
                                 second_same_cam=(i == 0 or rng.random() < 0.5))
    key = 100_000
    for _ in range(p["num_distractors"]):
        tracks.append(_Track("test", 0, int(rng.integers(1, C + 1)), _lengths(rng, lo, hi), key))
        key += 1
    for _ in range(p["num_junk"]):
        tracks.append(_Track("test", -1, int(rng.integers(1, C + 1)), _lengths(rng, lo, hi), key))
        key += 1
    return tracks


def _plan_lsvid(rng: np.random.Generator, p: Dict[str, Any]) -> List[_Track]:
    C = p["num_cams"]
    if not 2 <= C <= 99:
        raise ValueError(f"lsvid: num_cams must be in 2..99 (LS-VID has 15), got {C}")
    lo, hi = p["min_len"], p["max_len"]
    tlo, thi = p["train_min_len"] or lo, p["train_max_len"] or hi
    n_tr, n_te, n_g = p["num_train_ids"], p["num_test_ids"], p["num_gallery_ids"]
    total = n_tr + n_te + n_g
    pids = rng.choice(np.arange(1, 5 * total + 2), total, replace=False)
    tr_pids = sorted(int(x) for x in pids[:n_tr])
    te_pids = sorted(int(x) for x in pids[n_tr:n_tr + n_te])
    g_pids = sorted(int(x) for x in pids[n_tr + n_te:])
    tracks: List[_Track] = []
    for pid in tr_pids:
        k = int(rng.integers(1, min(3, C) + 1))
        first = len(tracks)
        for cam in sorted(int(c) + 1 for c in rng.permutation(C)[:k]):
            for _ in range(1 + int(rng.random() < 0.4)):
                tracks.append(_Track("train", pid, cam, _lengths(rng, tlo, thi), pid))
        # the authors' 48-frame chunking drops shorter tracklets: keep every identity trainable
        if thi >= 48 and max(t.num_frames for t in tracks[first:]) < 48:
            tracks[first].num_frames = _lengths(rng, 48, thi)
    _cover_all_cams(rng, tracks, C, tlo, thi)
    for i, pid in enumerate(te_pids):
        tracks += _test_identity(rng, pid, C, lo, hi, max_queries=1 + int(rng.random() < 0.5),
                                 second_same_cam=(i == 0 or rng.random() < 0.3))
    for pid in g_pids:
        k = int(rng.integers(1, min(3, C) + 1))
        for cam in sorted(int(c) + 1 for c in rng.permutation(C)[:k]):
            tracks.append(_Track("test", pid, cam, _lengths(rng, lo, hi), pid))
    key = 100_000
    for _ in range(p["num_junk"]):
        tracks.append(_Track("test", -1, int(rng.integers(1, C + 1)), _lengths(rng, lo, hi), key))
        key += 1
    return tracks


def _plan_ilidsvid(rng: np.random.Generator, p: Dict[str, Any]) -> Tuple[List[_Track], List[int]]:
    n = p["num_ids"]
    if n < 2 or n % 2:
        raise ValueError(f"ilidsvid: num_ids must be even and >= 2 (half train, half test), got {n}")
    if p["num_splits"] < 1:
        raise ValueError(f"ilidsvid: num_splits must be >= 1, got {p['num_splits']}")
    # person numbers are not contiguous in the real data (person001 ... person319 with gaps)
    numbers = sorted(int(x) for x in rng.choice(np.arange(1, n + n // 3 + 2), n, replace=False))
    tracks = []
    for num in numbers:
        for cam in (1, 2):
            tracks.append(_Track("all", num, cam, _lengths(rng, p["min_len"], p["max_len"]), num))
    return tracks, numbers


def _plan_market1501(rng: np.random.Generator, p: Dict[str, Any]) -> List[_Track]:
    """Market-1501: like MARS, with a track = one (identity, camera) walk of separate images."""
    C = p["num_cams"]
    if not 2 <= C <= 6:
        raise ValueError(f"market1501: num_cams must be in 2..6 (torchreid asserts camera 1..6), "
                         f"got {C}")
    n_ids = max(p["num_train_ids"], p["num_test_ids"])
    if 2 * n_ids > 1500:
        raise ValueError(f"market1501: at most 750 train and 750 test identities (torchreid "
                         f"asserts pid <= 1501), got {n_ids}")
    lo, hi = p["min_len"], p["max_len"]
    tracks: List[_Track] = []
    for i in range(p["num_train_ids"]):
        pid = 2 * i + 1
        k = int(rng.integers(2, min(4, C) + 1))
        for cam in sorted(int(c) + 1 for c in rng.permutation(C)[:k]):
            tracks.append(_Track("train", pid, cam, _lengths(rng, lo, hi), pid))
    _cover_all_cams(rng, tracks, C, lo, hi)
    for i in range(p["num_test_ids"]):
        pid = 2 * i + 2
        tracks += _test_identity(rng, pid, C, lo, hi, max_queries=C,
                                 second_same_cam=(i == 0 or rng.random() < 0.3))
    key = 100_000
    for pid, count in ((0, p["num_distractors"]), (-1, p["num_junk"])):
        for _ in range(count):
            tracks.append(_Track("test", pid, int(rng.integers(1, C + 1)), 1, key))
            key += 1
    return tracks


# ----------------------------------------------------------------------------------------------
# writers
# ----------------------------------------------------------------------------------------------
def _counts(items: Sequence[_Track]) -> Dict[str, int]:
    return {
        "tracklets": len(items),
        "ids": len({t.pid for t in items}),
        "cams": len({t.cam for t in items}),
    }


def _chunk_count(n: int, step: int) -> int:
    """Number of training chunks the authors' ``train_dense`` rule makes of an n-frame tracklet."""
    return n // step


def _assign_tids(tracks: Sequence[_Track], per: str) -> None:
    counters: Dict[Any, int] = {}
    for t in tracks:
        k = (t.split, t.pid, t.cam) if per == "cam" else (t.split, t.pid)
        counters[k] = counters.get(k, 0) + 1
        t.tid = counters[k]


def _savemat(path: str, variables: Dict[str, np.ndarray]) -> None:
    """scipy's MATLAB v5 writer, with a fixed header text (scipy stamps the current time)."""
    from scipy.io import savemat

    savemat(path, variables)
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 5.0 MAT-file, written by tfclip_torchreid synthetic".ljust(116, b" "))


def _write_mars(ddir: str, tracks: List[_Track]) -> Dict[str, Any]:
    _assign_tids(tracks, per="cam")
    os.makedirs(osp.join(ddir, "info"))
    expected: Dict[str, Any] = {}
    for split, home in (("train", "bbox_train"), ("test", "bbox_test")):
        items = sorted((t for t in tracks if t.split == split),
                       key=lambda t: ("00-1" if t.pid < 0 else f"{t.pid:04d}", t.cam, t.tid))
        names: List[str] = []
        rows = []
        for t in items:
            folder = "00-1" if t.pid < 0 else f"{t.pid:04d}"
            start = len(names) + 1
            for fno in range(1, t.num_frames + 1):
                name = f"{folder}C{t.cam}T{t.tid:04d}F{fno:03d}.jpg"
                names.append(name)
                t.paths.append(osp.join(home, folder, name))
            rows.append([start, len(names), t.pid, t.cam])
        with open(osp.join(ddir, "info", f"{split}_name.txt"), "w") as fh:
            fh.write("\n".join(names) + "\n")
        info = np.asarray(rows, dtype=np.int32).reshape(-1, 4)
        _savemat(osp.join(ddir, "info", f"tracks_{split}_info.mat"), {f"track_{split}_info": info})
        if split == "test":
            qidx = np.asarray([i + 1 for i, t in enumerate(items) if t.query], np.int32)
            _savemat(osp.join(ddir, "info", "query_IDX.mat"), {"query_IDX": qidx[None, :]})
            query = [t for t in items if t.query]
            gallery = [t for t in items if not t.query and t.pid != -1]
            expected["query"] = _counts(query)
            expected["gallery"] = _counts(gallery)
            expected["junk_tracklets"] = sum(t.pid == -1 for t in items)
            expected["distractor_tracklets"] = sum(t.pid == 0 for t in items)
        else:
            expected["train"] = _counts(items)
    return expected


def _write_matlab_v73(path: str, datasets: Dict[str, np.ndarray]) -> None:
    """A MATLAB v7.3 MAT-file: HDF5 with MATLAB's 512-byte header in the user block."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as fh:
        for name, arr in datasets.items():
            d = fh.create_dataset(name, data=arr)
            d.attrs["MATLAB_class"] = np.bytes_("double")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: synthetic HDF5 schema 1.00 ."
    header = header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as fh:
        fh.write(header.ljust(512, b"\x00"))


def _write_lsvid(ddir: str, tracks: List[_Track], layout: str) -> Dict[str, Any]:
    _assign_tids(tracks, per="pid")
    if layout == "flat":
        list_dir, mat_dir = osp.join(ddir, "list_sequence"), osp.join(ddir, "test", "data")
    elif layout == "info":
        list_dir, mat_dir = osp.join(ddir, "info", "list_sequence"), osp.join(ddir, "info", "data")
    else:
        raise ValueError(f"lsvid: layout must be 'flat' or 'info', got {layout!r}")
    os.makedirs(list_dir)
    os.makedirs(mat_dir)
    expected: Dict[str, Any] = {"layout": layout}
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
            expected["train"] = _counts(items)
            expected["train"]["chunks_48"] = sum(_chunk_count(t.num_frames, 48) for t in items)
            expected["train"]["frames"] = sorted(t.num_frames for t in items)
        else:
            ordered = [t for _, t in lines]
            qidx = np.asarray([[i + 1 for i, t in enumerate(ordered) if t.query]], np.float64)
            _write_matlab_v73(osp.join(mat_dir, "info_test.mat"), {"query": qidx})
            expected["query"] = _counts([t for t in ordered if t.query])
            expected["gallery"] = _counts([t for t in ordered if not t.query and t.pid != -1])
            expected["junk_tracklets"] = sum(t.pid == -1 for t in ordered)
    return expected


def _write_ilidsvid(ddir: str, tracks: List[_Track], numbers: List[int], num_splits: int,
                    rng: np.random.Generator) -> Dict[str, Any]:
    width = max(3, len(str(max(numbers))))
    dirs = [f"person{n:0{width}d}" for n in numbers]  # sorted like torchreid's glob + sort
    for t in tracks:
        pdir = f"person{t.pid:0{width}d}"
        first = int(rng.integers(0, 500))
        t.paths = [
            f"i-LIDS-VID/sequences/cam{t.cam}/{pdir}/cam{t.cam}_{pdir}_{first + i:05d}.png"
            for i in range(t.num_frames)
        ]
    split_dir = osp.join(ddir, "train-test people splits")
    os.makedirs(split_dir)
    n = len(numbers)
    ls_set = np.stack([rng.permutation(n) + 1 for _ in range(num_splits)]).astype(np.float64)
    _savemat(osp.join(split_dir, "train_test_splits_ilidsvid.mat"), {"ls_set": ls_set})
    splits = []
    half = n // 2
    for row in ls_set.astype(np.int64):
        # torchreid's convention (Wang et al. ECCV'14): first half of the row = test identities
        splits.append({
            "train": [dirs[i - 1] for i in sorted(row[half:])],
            "test": [dirs[i - 1] for i in sorted(row[:half])],
        })
    with open(osp.join(ddir, "splits.json"), "w") as fh:
        json.dump(splits, fh, indent=4, separators=(",", ": "))
    return {
        "num_splits": num_splits,
        "train": {"tracklets": 2 * (n - half), "ids": n - half, "cams": 2},
        "query": {"tracklets": half, "ids": half, "cams": 1},
        "gallery": {"tracklets": half, "ids": half, "cams": 1},
    }


def _image_counts(items: Sequence[Tuple[int, int]]) -> Dict[str, int]:
    """Counts of (pid, cam) per image, as torchreid's image-dataset summary shows them."""
    return {"images": len(items), "ids": len({p for p, _ in items}),
            "cams": len({c for _, c in items})}


def _write_market1501(ddir: str, tracks: List[_Track]) -> Dict[str, Any]:
    """Market-1501 names ``PPPP_cCsS_FFFFFF_NN.jpg`` (junk ``-1_c...``); a query track's first
    image goes to ``query/``, the rest of the sequence to the gallery."""
    _assign_tids(tracks, per="cam")
    base = MARKET_SUBDIR
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
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
    expected: Dict[str, Any] = {k: _image_counts(v) for k, v in split_items.items()}
    expected["junk_images"] = sum(t.num_frames for t in tracks if t.pid == -1)
    expected["distractor_images"] = sum(t.num_frames for t in tracks if t.pid == 0)
    return expected


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def _resolve_params(fmt: str, sizes: Dict[str, Any]) -> Dict[str, Any]:
    if fmt not in FORMATS:
        raise ValueError(f"unknown synthetic format {fmt!r}; choose one of {list(FORMATS)}")
    params = dict(_COMMON_DEFAULTS)
    params.update(_DEFAULTS[fmt])
    unknown = sorted(set(sizes) - set(params))
    if unknown:
        raise ValueError(f"{fmt}: unknown option(s) {unknown}; valid: {sorted(params)}")
    params.update({k: v for k, v in sizes.items() if v is not None})
    if params["height"] < 32 or params["width"] < 16:
        raise ValueError(f"image size must be at least 32x16, got {params['height']}x{params['width']}")
    longest = {"mars": 999, "ilidsvid": 9999, "lsvid": 9999, "market1501": 999}[fmt]
    pairs = [("min_len", "max_len"), ("train_min_len", "train_max_len")]
    for a, b in pairs:
        if a not in params:
            continue
        lo = params[a] if params[a] is not None else params["min_len"]
        hi = params[b] if params[b] is not None else params["max_len"]
        if not 1 <= lo <= hi <= longest:
            raise ValueError(f"{fmt}: need 1 <= {a} <= {b} <= {longest}, got {lo}, {hi}")
    if fmt == "lsvid" and params["layout"] not in ("flat", "info"):
        raise ValueError(f"lsvid: layout must be 'flat' or 'info', got {params['layout']!r}")
    for k in ("num_train_ids", "num_test_ids", "num_ids"):
        if k in params and params[k] < 1:
            raise ValueError(f"{fmt}: {k} must be >= 1, got {params[k]}")
    return params


def synthetic_info(dataset_dir: str) -> Dict[str, Any]:
    """Contents of the ``SYNTHETIC.json`` marker of a generated dataset (format, seed, parameters
    and the expected train/query/gallery statistics); raises FileNotFoundError if absent."""
    path = osp.join(dataset_dir, MARKER)
    if not osp.isfile(path):
        raise FileNotFoundError(f"{dataset_dir!r} is not a complete synthetic dataset (no {MARKER})")
    with open(path) as fh:
        return json.load(fh)


def _count_images(ddir: str) -> int:
    n = 0
    for _, _, files in os.walk(ddir):
        n += sum(fn.endswith((".jpg", ".png")) for fn in files)
    return n


def _is_complete(ddir: str) -> bool:
    try:
        info = synthetic_info(ddir)
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return _count_images(ddir) == info.get("num_images", -1)


def _print_summary(ddir: str, info: Dict[str, Any], seconds: float) -> None:
    e = info["expected"]
    p = info["params"]
    logger.info(f"=> synthetic {info['format']} dataset at {ddir} (seed {info['seed']}, "
                f"{p['height']}x{p['width']}, {info['num_images']} images, {seconds:.1f} s)")
    unit = "images" if "images" in e["train"] else "tracklets"
    logger.info(f"  subset   | # ids | # {unit:9s} | # cameras")
    for sub in ("train", "query", "gallery"):
        c = e[sub]
        logger.info(f"  {sub:8s} | {c['ids']:5d} | {c[unit]:11d} | {c['cams']:9d}")
    extra = {k: v for k, v in e.items() if k not in ("train", "query", "gallery")}
    if extra:
        logger.info("  " + ", ".join(f"{k}={v}" for k, v in extra.items()))


def _render_all(ddir: str, tracks: Sequence[_Track], H: int, W: int, seed: int) -> int:
    """Render and save every tracklet's frames at the paths the writer assigned."""
    cams: Dict[int, CameraStyle] = {}
    apps: Dict[int, Appearance] = {}
    num_images = 0
    for idx, t in enumerate(tracks):
        if t.cam not in cams:
            cams[t.cam] = random_camera(np.random.default_rng([seed, 2, t.cam]), H, W)
        if t.key not in apps:
            apps[t.key] = random_appearance(np.random.default_rng([seed, 1, t.key]))
        frames = render_tracklet(apps[t.key], cams[t.cam], t.num_frames, H, W,
                                 np.random.default_rng([seed, 4, idx]))
        os.makedirs(osp.join(ddir, osp.dirname(t.paths[0])), exist_ok=True)
        for rel, frame in zip(t.paths, frames):
            im = Image.fromarray(frame)
            if rel.endswith(".png"):
                im.save(osp.join(ddir, rel), compress_level=1)
            else:
                im.save(osp.join(ddir, rel), quality=90)
        num_images += len(t.paths)
    return num_images


def make_synthetic_dataset(
    fmt: str,
    root: str,
    seed: int = 0,
    overwrite: bool = False,
    verbose: bool = True,
    **sizes: Any,
) -> str:
    """Write a synthetic ReID dataset in the on-disk layout of ``fmt`` under ``root``.

    Args:
        fmt: ``"mars"`` (``<root>/mars``), ``"ilidsvid"`` (``<root>/ilids-vid``), ``"lsvid"``
            (``<root>/lsvid``) or ``"market1501"`` (``<root>/market1501``, images).
        root: the data root, as passed to torchreid's data managers.
        seed: generation seed; the same seed and sizes give identical files.
        overwrite: regenerate a complete synthetic dataset. A folder not written by this function
            is never touched (FileExistsError), except an empty one (e.g. left by a failed
            torchreid download), which is replaced.
        verbose: print a summary.
        **sizes: ``height``/``width`` (default 128x64), ``min_len``/``max_len`` (tracklet
            lengths) and per format: mars: ``num_train_ids`` 16, ``num_test_ids`` 16,
            ``num_cams`` 6, ``num_distractors`` 40, ``num_junk`` 4, ``train_min_len``,
            ``train_max_len``; ilidsvid: ``num_ids`` 20, ``num_splits`` 10; lsvid:
            ``num_train_ids`` 16, ``num_test_ids`` 16, ``num_gallery_ids`` 12, ``num_cams`` 8,
            ``num_junk`` 3, ``train_min_len`` 24, ``train_max_len`` 100, ``layout``
            ``"flat"`` (public archive) or ``"info"`` (the authors' ``info/`` folder);
            market1501: ``num_train_ids`` 16, ``num_test_ids`` 16, ``num_cams`` 6,
            ``num_distractors`` 20, ``num_junk`` 6 (single images), ``min_len``/``max_len`` 2/6
            (images per identity and camera).

    Returns:
        The dataset directory (``<root>/<mars|ilids-vid|lsvid|market1501>``).

    Example:
        >>> d = make_synthetic_dataset("ilidsvid", "/tmp/data", num_ids=8, height=64, width=32)
        ... # doctest: +SKIP
    """
    params = _resolve_params(fmt, sizes)
    root = osp.abspath(osp.expanduser(root))
    ddir = osp.join(root, DATASET_DIRS[fmt])
    record = {"format": fmt, "version": _VERSION, "seed": int(seed), "params": params}

    if osp.isdir(ddir):
        has_marker = osp.isfile(osp.join(ddir, MARKER))
        if not has_marker and os.listdir(ddir):
            raise FileExistsError(
                f"{ddir} exists and was not written by the synthetic generator (no {MARKER}); "
                "refusing to modify it. Use another root for synthetic data.")
        if has_marker and _is_complete(ddir) and not overwrite:
            info = synthetic_info(ddir)
            if verbose:
                same = all(info.get(k) == record[k] for k in ("version", "seed", "params"))
                note = "" if same else (
                    f" (generated with seed {info.get('seed')} and other parameters; "
                    "pass overwrite=True / --overwrite to regenerate)")
                logger.info(f"=> synthetic {fmt} dataset already complete at {ddir}{note}")
            return ddir

    t0 = time.time()
    plan_rng = np.random.default_rng([int(seed), 3, FORMATS.index(fmt)])
    if fmt == "mars":
        tracks = _plan_mars(plan_rng, params)
    elif fmt == "lsvid":
        tracks = _plan_lsvid(plan_rng, params)
    elif fmt == "market1501":
        tracks = _plan_market1501(plan_rng, params)
    else:
        tracks, numbers = _plan_ilidsvid(plan_rng, params)

    tmp = osp.join(root, f".{DATASET_DIRS[fmt]}.partial")
    if osp.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        if fmt == "mars":
            expected = _write_mars(tmp, tracks)
        elif fmt == "lsvid":
            expected = _write_lsvid(tmp, tracks, params["layout"])
        elif fmt == "market1501":
            expected = _write_market1501(tmp, tracks)
        else:
            expected = _write_ilidsvid(tmp, tracks, numbers, params["num_splits"], plan_rng)
        num_images = _render_all(tmp, tracks, params["height"], params["width"], int(seed))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    record.update(expected=expected, num_images=num_images)
    with open(osp.join(tmp, MARKER), "w") as fh:
        json.dump(record, fh, indent=1)
    if osp.isdir(ddir):
        shutil.rmtree(ddir)  # ours (marker present, checked above) or empty
    os.replace(tmp, ddir)
    if verbose:
        _print_summary(ddir, record, time.time() - t0)
    return ddir
