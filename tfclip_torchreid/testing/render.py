"""The procedural pedestrian renderer of the synthetic datasets.

Each identity is a pedestrian-like figure (head and hair, torso, two arms, two legs, shoes, an
optional shoulder bag) with its own clothing colours (drawn from a small shared palette, so colours
alone do not identify a person), top pattern (solid, stripes, two-tone, open jacket, checks, logo),
sleeve and trouser length and build (:func:`random_appearance`). Every frame adds what makes real
tracklets hard: walking motion (limb swing, body bob), detection jitter (box shift and scale), a
per-camera background, colour cast, contrast and noise level (:func:`random_camera`),
per-tracklet illumination with drift, blur and occasional occluders (:func:`render_tracklet`).

Example:
    >>> rng = np.random.default_rng(0)
    >>> frames = render_tracklet(random_appearance(rng), random_camera(rng, 64, 32), 3, 64, 32, rng)
    >>> frames.shape, frames.dtype
    ((3, 64, 32, 3), dtype('uint8'))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np

__all__ = ["Appearance", "CameraStyle", "random_appearance", "random_camera", "render_figure",
           "render_tracklet"]

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


# ---------------------------------------------------------------------------------- appearance and cameras
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


# ---------------------------------------------------------------------------------- rendering
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


def render_figure(app: Appearance, num_frames: int, height: int, width: int,
                  rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """The walking figure of one person in a ``height x width`` detection box, frame by frame.

    The body is painted as a per-pixel part-label map (painter's order: back leg, front leg,
    back arm, torso with pattern, bag, front arm, hair, head) and coloured from the identity's
    colour table with a cylindrical shading; the figure fills 80-95 % of the box height and
    moves inside it from frame to frame as a detector's box would (shift, scale), while its
    limbs swing through a walking cycle.

    Returns:
        ``(body, mask)``: float32 RGB ``(num_frames, height, width, 3)`` (0 outside the figure)
        and bool ``(num_frames, height, width)``, True on the figure.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> body, mask = render_figure(random_appearance(rng), 2, 64, 32, rng)
        >>> body.shape, mask.dtype, bool(0.15 < mask.mean() < 0.5)
        ((2, 64, 32, 3), dtype('bool'), True)
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
    return table[lab] * shade[..., None], person


def render_tracklet(
    app: Appearance,
    cam: CameraStyle,
    num_frames: int,
    height: int,
    width: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Render ``num_frames`` frames of one walking person seen by one camera.

    The figure (:func:`render_figure`) is composited over a crop of the camera background; then
    occluders, illumination, camera cast, blur and noise are applied. All frames are drawn at
    once.

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
    body, person = render_figure(app, T, H, W, rng)

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

