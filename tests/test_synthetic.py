"""Synthetic dataset generator: determinism, idempotence, sizes, appearance statistics, CLI."""

from __future__ import annotations

import filecmp
import glob
import importlib.util
import json
import logging
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from tfclip_torchreid.data.datasets import LAYOUTS, dataset_module, market1501, precheck_dataset
from tfclip_torchreid.testing import (
    FORMATS,
    MARKER,
    make_synthetic_dataset,
    plan,
    synthetic,
    synthetic_info,
)

TINY_MARS = dict(height=32, width=16, num_train_ids=3, num_test_ids=3, num_cams=4,
                 num_distractors=2, num_junk=1, min_len=3, max_len=5)
TINY_LSVID = dict(height=32, width=16, num_train_ids=3, num_test_ids=3, num_gallery_ids=2,
                  num_cams=4, num_junk=1, min_len=3, max_len=5, train_min_len=3, train_max_len=6)
TINY_ILIDS = dict(height=32, width=16, num_ids=4, num_splits=3, min_len=3, max_len=5)
TINY = {"mars": TINY_MARS, "lsvid": TINY_LSVID, "ilidsvid": TINY_ILIDS}


def _files(d: str) -> list:
    return sorted(osp.relpath(osp.join(dp, f), d) for dp, _, fs in os.walk(d) for f in fs)


@pytest.mark.parametrize("fmt", ["mars", "ilidsvid", "lsvid"])
def test_same_seed_same_bytes_other_seed_differs(tmp_path, fmt):
    a = make_synthetic_dataset(fmt, str(tmp_path / "a"), seed=3, verbose=False, **TINY[fmt])
    b = make_synthetic_dataset(fmt, str(tmp_path / "b"), seed=3, verbose=False, **TINY[fmt])
    c = make_synthetic_dataset(fmt, str(tmp_path / "c"), seed=4, verbose=False, **TINY[fmt])
    fa = _files(a)
    assert fa == _files(b)
    # every file (images, lists, .mat headers, splits.json, marker) is byte-identical
    _, mismatch, errors = filecmp.cmpfiles(a, b, fa, shallow=False)
    assert not mismatch and not errors
    imgs = [f for f in fa if f.endswith((".jpg", ".png"))]
    assert len(imgs) == synthetic_info(a)["num_images"]
    common = [f for f in imgs if osp.isfile(osp.join(c, f))][:5]
    diffs = [not filecmp.cmp(osp.join(a, f), osp.join(c, f), shallow=False) for f in common]
    assert fa != _files(c) or any(diffs)


def test_idempotent_overwrite_and_foreign_folders(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    root = str(tmp_path)
    d = make_synthetic_dataset("mars", root, seed=0, **TINY_MARS)
    assert d == osp.join(root, "mars")
    stamp = {f: os.stat(osp.join(d, f)).st_mtime_ns for f in _files(d)}
    caplog.clear()
    # complete -> nothing is rewritten, also when called with other parameters
    assert make_synthetic_dataset("mars", root, seed=0, **TINY_MARS) == d
    assert make_synthetic_dataset("mars", root, seed=9, **TINY_MARS) == d
    out = caplog.text
    assert "already complete" in out and "other parameters" in out
    assert stamp == {f: os.stat(osp.join(d, f)).st_mtime_ns for f in _files(d)}
    # an image deleted -> incomplete -> regenerated
    victim = next(f for f in stamp if f.endswith(".jpg"))
    os.remove(osp.join(d, victim))
    make_synthetic_dataset("mars", root, seed=0, verbose=False, **TINY_MARS)
    assert osp.isfile(osp.join(d, victim))
    # overwrite regenerates with the new seed
    make_synthetic_dataset("mars", root, seed=5, overwrite=True, verbose=False, **TINY_MARS)
    assert synthetic_info(d)["seed"] == 5
    assert not osp.exists(osp.join(root, ".mars.partial"))
    # a folder the generator did not write is never touched, even with overwrite
    foreign = tmp_path / "real" / "mars"
    foreign.mkdir(parents=True)
    (foreign / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not written by the synthetic generator"):
        make_synthetic_dataset("mars", str(tmp_path / "real"), overwrite=True, **TINY_MARS)
    assert (foreign / "keep.txt").read_text() == "user data"
    # an empty folder (e.g. left by torchreid's failed download) is replaced
    (tmp_path / "empty" / "ilids-vid").mkdir(parents=True)
    d2 = make_synthetic_dataset("ilidsvid", str(tmp_path / "empty"), verbose=False, **TINY_ILIDS)
    assert osp.isfile(osp.join(d2, MARKER))


@pytest.mark.parametrize("fmt,ext", [("mars", ".jpg"), ("ilidsvid", ".png"), ("lsvid", ".jpg")])
def test_images_have_requested_size(tmp_path, fmt, ext):
    sizes = dict(TINY[fmt], height=40, width=24)
    d = make_synthetic_dataset(fmt, str(tmp_path), verbose=False, **sizes)
    files = sorted(glob.glob(osp.join(d, "**", "*" + ext), recursive=True))
    assert files
    for f in files[:: max(1, len(files) // 10)]:
        with Image.open(f) as im:
            assert im.size == (24, 40) and im.mode == "RGB"


def test_identities_differ_more_than_their_tracklets(tmp_path):
    d = make_synthetic_dataset("mars", str(tmp_path), seed=0, verbose=False, height=64, width=32,
                               num_train_ids=8, num_test_ids=2, num_distractors=1, num_junk=1,
                               min_len=4, max_len=8)
    per_tracklet = {}
    for f in sorted(glob.glob(osp.join(d, "bbox_train", "*", "*.jpg"))):
        name = osp.basename(f)  # 0001C1T0001F001.jpg
        crop = np.asarray(Image.open(f), np.float32)[16:40, 10:22]  # torso area
        per_tracklet.setdefault(name[:10], []).append(crop.reshape(-1, 3).mean(0))
    keys = sorted(per_tracklet)
    feats = np.stack([np.mean(per_tracklet[k], 0) for k in keys])
    pids = np.array([k[:4] for k in keys])
    dist = np.linalg.norm(feats[:, None] - feats[None], axis=2)
    same = pids[:, None] == pids[None]
    off_diag = ~np.eye(len(keys), dtype=bool)
    assert (same & off_diag).sum() >= 8  # several identities have 2+ tracklets
    intra, inter = dist[same & off_diag].mean(), dist[~same].mean()
    assert intra < 0.8 * inter
    # ...but a tracklet is not a copy of another one of the same identity (cameras, light, motion)
    assert dist[same & off_diag].min() > 1.0


def test_default_sizes_plan_big_enough_galleries():
    """Default MARS / LS-VID galleries exceed 50 + k (torchreid's Python ranker needs it)."""
    for fmt, planner in (("mars", plan.plan_mars), ("lsvid", plan.plan_lsvid)):
        params = synthetic._resolve_params(fmt, {})
        tracks = planner(np.random.default_rng([0, 3, FORMATS.index(fmt)]), params)
        gallery = [t for t in tracks if t.split == "test" and not t.query and t.pid != -1]
        worst = max(sum(g.pid == q.pid and g.cam == q.cam for g in gallery)
                    for q in tracks if q.query)
        assert worst >= 1  # a same-identity same-camera gallery tracklet exists
        assert len(gallery) >= 50 + worst
        if fmt == "mars":
            assert 150 <= len(tracks) <= 260  # "~200 tracklets"
            assert {t.pid for t in tracks} >= {0, -1}  # distractors and junk


def test_formats_are_the_layouts_with_a_writer(tmp_path):
    """The layout error's hint (make_synthetic_dataset.py --format X) names what we can write."""
    writable = {name for name, layout in LAYOUTS.items() if layout.synthetic}
    assert set(FORMATS) == writable == {"mars", "ilidsvid", "lsvid", "market1501"}
    for fmt in FORMATS:
        assert callable(dataset_module(fmt).write)
        with pytest.raises(FileNotFoundError, match=f"--format {fmt} --root"):
            precheck_dataset(fmt, str(tmp_path))


def test_bad_options_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic format"):
        make_synthetic_dataset("market", str(tmp_path))
    with pytest.raises(ValueError, match="unknown option"):
        make_synthetic_dataset("mars", str(tmp_path), num_ids=4)
    with pytest.raises(ValueError, match="num_cams"):
        make_synthetic_dataset("mars", str(tmp_path), num_cams=7)
    with pytest.raises(ValueError, match="even"):
        make_synthetic_dataset("ilidsvid", str(tmp_path), num_ids=5)
    with pytest.raises(ValueError, match="max_len"):
        make_synthetic_dataset("mars", str(tmp_path), min_len=9, max_len=4)
    with pytest.raises(ValueError, match="layout"):
        make_synthetic_dataset("lsvid", str(tmp_path), layout="nested")
    assert not os.listdir(tmp_path)


def test_cli(tmp_path, capsys):
    path = osp.join(osp.dirname(__file__), "..", "tools", "make_synthetic_dataset.py")
    spec = importlib.util.spec_from_file_location("make_synthetic_dataset", path)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    rc = cli.main(["--format", "lsvid", "--root", str(tmp_path), "--layout", "info",
                   "--height", "32", "--width", "16", "--num-train-ids", "2", "--num-test-ids",
                   "2", "--num-gallery-ids", "1", "--num-cams", "3", "--max-len", "4",
                   "--train-min-len", "3", "--train-max-len", "5", "--seed", "2"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "synthetic lsvid dataset" in out and "train" in out and "gallery" in out
    info = json.load(open(tmp_path / "lsvid" / MARKER))
    assert info["params"]["layout"] == "info" and info["seed"] == 2
    assert (tmp_path / "lsvid" / "info" / "data" / "info_test.mat").is_file()
    assert cli.main(["--format", "mars", "--root", str(tmp_path), "--num-ids", "3"]) == 2
    assert "unknown option" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Market-1501 (image ReID)
# ---------------------------------------------------------------------------------------------
TINY_MARKET = dict(height=32, width=16, num_train_ids=3, num_test_ids=3, num_cams=4,
                   num_distractors=2, num_junk=2, min_len=2, max_len=3)


def test_market1501_deterministic_and_idempotent(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    a = make_synthetic_dataset("market1501", str(tmp_path / "a"), seed=3, verbose=False,
                               **TINY_MARKET)
    b = make_synthetic_dataset("market1501", str(tmp_path / "b"), seed=3, verbose=False,
                               **TINY_MARKET)
    c = make_synthetic_dataset("market1501", str(tmp_path / "c"), seed=4, verbose=False,
                               **TINY_MARKET)
    assert a == str(tmp_path / "a" / "market1501")
    fa = _files(a)
    assert fa == _files(b)
    _, mismatch, errors = filecmp.cmpfiles(a, b, fa, shallow=False)
    assert not mismatch and not errors
    assert fa != _files(c)
    imgs = [f for f in fa if f.endswith(".jpg")]
    assert len(imgs) == synthetic_info(a)["num_images"]
    assert all(f.startswith("Market-1501-v15.09.15/") for f in imgs)
    # complete -> untouched; an image deleted -> regenerated; foreign folders refused
    stamp = {f: os.stat(osp.join(a, f)).st_mtime_ns for f in fa}
    caplog.clear()
    make_synthetic_dataset("market1501", str(tmp_path / "a"), seed=3, **TINY_MARKET)
    assert "already complete" in caplog.text
    assert stamp == {f: os.stat(osp.join(a, f)).st_mtime_ns for f in fa}
    os.remove(osp.join(a, imgs[0]))
    make_synthetic_dataset("market1501", str(tmp_path / "a"), seed=3, verbose=False,
                           **TINY_MARKET)
    assert osp.isfile(osp.join(a, imgs[0]))
    (tmp_path / "real" / "market1501").mkdir(parents=True)
    (tmp_path / "real" / "market1501" / "x.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not written by the synthetic generator"):
        make_synthetic_dataset("market1501", str(tmp_path / "real"), overwrite=True)


def test_market1501_names_and_defaults(tmp_path):
    """Names follow torchreid's '<pid>_c<camera>' pattern; the default gallery exceeds 50 + k."""
    import re

    params = synthetic._resolve_params("market1501", {})
    rng = np.random.default_rng([0, 3, FORMATS.index("market1501")])
    tracks = plan.plan_market1501(rng, params)
    market1501.write(str(tmp_path), tracks)  # assigns the paths (renders nothing)
    pattern = re.compile(r"([-\d]+)_c(\d)")
    names = [p for t in tracks for p in t.paths]
    assert len(set(names)) == len(names) == sum(t.num_frames for t in tracks)
    for t in tracks:
        for p in t.paths:
            assert tuple(map(int, pattern.search(osp.basename(p)).groups())) == (t.pid, t.cam)
            folder = p.split("/")[1]
            assert folder == ("bounding_box_train" if t.split == "train" else
                              "query" if t.query and p == t.paths[0] else "bounding_box_test")
    train = [t for t in tracks if t.split == "train"]
    test = [t for t in tracks if t.split == "test"]
    for pid in {t.pid for t in tracks if t.pid > 0}:
        assert len({t.cam for t in tracks if t.pid == pid}) >= 2  # every identity: >= 2 cameras
    assert not {t.pid for t in train} & {t.pid for t in test}
    assert {t.pid for t in test} >= {0, -1}
    gallery = sum(t.num_frames - int(t.query) for t in test if t.pid != -1)
    worst = max(sum(g.num_frames - int(g.query) for g in test if (g.pid, g.cam) == (q.pid, q.cam))
                for q in test if q.query)
    assert worst >= 1 and gallery >= 50 + worst
    with pytest.raises(ValueError, match="num_cams must be in 2..6"):
        make_synthetic_dataset("market1501", str(tmp_path / "x"), num_cams=7)
    with pytest.raises(ValueError, match="at most 750"):
        make_synthetic_dataset("market1501", str(tmp_path / "x"), num_train_ids=800)


def test_cli_market1501(tmp_path, capsys):
    path = osp.join(osp.dirname(__file__), "..", "tools", "make_synthetic_dataset.py")
    spec = importlib.util.spec_from_file_location("make_synthetic_dataset", path)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    rc = cli.main(["--format", "market1501", "--root", str(tmp_path), "--height", "32",
                   "--width", "16", "--num-train-ids", "2", "--num-test-ids", "2",
                   "--num-cams", "3", "--num-distractors", "1", "--num-junk", "1",
                   "--min-len", "1", "--max-len", "2"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "synthetic market1501 dataset" in out and "# images" in out
    info = json.load(open(tmp_path / "market1501" / MARKER))
    assert info["format"] == "market1501" and info["params"]["num_cams"] == 3
