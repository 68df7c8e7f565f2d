"""Synthetic ReID datasets in the real on-disk layouts of MARS, iLIDS-VID, LS-VID (video) and
Market-1501 (image), for tests, demos and smoke runs of the whole pipeline without the real data.

The generated folders are read by the *unmodified* loaders: torchreid's ``Mars``, ``iLIDSVID``
(through ``torchreid.data.VideoDataManager`` or ``compat.init_video_dataset``) and ``Market1501``
(``ImageDataManager`` / ``init_image_dataset``), and this package's
:class:`~tfclip_torchreid.data.datasets.lsvid.LSVID` (docs/datasets.md describes the formats).
Three steps: :mod:`.plan` decides identities, cameras, lengths and queries; the dataset module's
``write`` (:mod:`tfclip_torchreid.data.datasets`, the one home of each layout) lays out the
annotation files and the frame paths; :mod:`.render` draws the frames.

* ``mars``, ``market1501``: see :mod:`.plan`.
* ``ilidsvid``: ``train-test people splits/train_test_splits_ilidsvid.mat`` with ``ls_set``
  (num_splits x num_ids, 1-based) and the ``splits.json`` that torchreid would derive from it
  (first half of each row = test identities, following Wang et al. ECCV'14). torchreid asserts a
  10 x 300 ``ls_set`` when it builds ``splits.json`` itself; writing ``splits.json`` makes any
  size work.
* ``lsvid``: ``tracklet_train/`` and ``tracklet_test/`` frame folders, the two list files and a
  MATLAB v7.3 (HDF5) ``info_test.mat`` holding ``query``; either the public archive layout
  (``list_sequence/`` + ``test/data/``) or the authors' ``info/`` layout.
* ``market1501``: ``Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/`` with
  torchreid's names ``PPPP_cCsS_FFFFFF_NN.jpg``; the default gallery is larger than 50 + k
  images.

Generation is deterministic given ``seed`` (same bytes), and idempotent: a complete dataset that
this module wrote (marker file ``SYNTHETIC.json``) is left alone unless ``overwrite=True``. A folder
without the marker is never modified or deleted.

Example:
    >>> from tfclip_torchreid.testing import make_synthetic_dataset
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
from typing import Any, Dict, Sequence, Tuple

import numpy as np
from PIL import Image

from ..data.datasets import LAYOUTS, ilidsvid, lsvid, market1501, mars
from ..data.datasets.writing import PlannedTracklet
from .plan import plan_ilidsvid, plan_lsvid, plan_market1501, plan_mars
from .render import Appearance, CameraStyle, random_appearance, random_camera, render_tracklet

logger = logging.getLogger(__name__)

__all__ = ["FORMATS", "DATASET_DIRS", "MARKER", "make_synthetic_dataset", "synthetic_info"]

FORMATS: Tuple[str, ...] = ("mars", "ilidsvid", "lsvid", "market1501")
#: dataset folder under ``root`` for each format (the name torchreid / LSVID look for first)
DATASET_DIRS: Dict[str, str] = {fmt: LAYOUTS[fmt].dirnames[0] for fmt in FORMATS}
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


def _render_all(ddir: str, tracks: Sequence[PlannedTracklet], H: int, W: int, seed: int) -> int:
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
        tracks = plan_mars(plan_rng, params)
    elif fmt == "lsvid":
        tracks = plan_lsvid(plan_rng, params)
    elif fmt == "market1501":
        tracks = plan_market1501(plan_rng, params)
    else:
        tracks, numbers = plan_ilidsvid(plan_rng, params)

    tmp = osp.join(root, f".{DATASET_DIRS[fmt]}.partial")
    if osp.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        if fmt == "mars":
            expected = mars.write(tmp, tracks)
        elif fmt == "lsvid":
            expected = lsvid.write(tmp, tracks, params["layout"])
        elif fmt == "market1501":
            expected = market1501.write(tmp, tracks)
        else:
            expected = ilidsvid.write(tmp, tracks, numbers, params["num_splits"], plan_rng)
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

