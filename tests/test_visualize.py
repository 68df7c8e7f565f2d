"""Pictures: ranked tracklet strips and t-SNE, on a tiny synthetic MARS with random features."""

from __future__ import annotations

import json
import os
import os.path as osp
import sys

import numpy as np
import pytest
from PIL import Image

import tfclip_torchreid  # noqa: F401  (registers the datasets)
from tfclip_torchreid import compat, visualize
from tfclip_torchreid.data.dataset import read_frame
from tfclip_torchreid.testing import make_synthetic_dataset

SIZES = dict(height=64, width=32, num_train_ids=2, num_test_ids=6, num_distractors=40, num_junk=2,
             min_len=3, max_len=10)
H, W, F, K = 32, 16, 3, 4  # frame size in the pictures, frames per strip, top-k


def _identity(x):
    return x


@pytest.fixture(scope="module")
def mars(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("data"))
    make_synthetic_dataset("mars", root, seed=0, verbose=False, **SIZES)
    ds = compat.init_video_dataset("mars", root=root, transform=_identity, mode="query",
                                   verbose=False)
    return root, ds.query, ds.gallery


def _valid(q, gallery):
    return [i for i, g in enumerate(gallery) if not (g[1] == q[1] and g[2] == q[2])]


def _distmat(query, gallery):
    """Random distances; query 0's nearest valid item is a true match, query 1's a wrong one."""
    d = np.random.default_rng(0).random((len(query), len(gallery)))
    match = [i for i in _valid(query[0], gallery) if gallery[i][1] == query[0][1]]
    d[0, match[0]] = -1.0
    wrong = [i for i in _valid(query[1], gallery) if gallery[i][1] != query[1][1]]
    d[1, wrong[0]] = -1.0
    return d


def _border_colour(img: np.ndarray, rank: int) -> tuple:
    sw, sh = visualize.strip_size(F, H, W)
    y = 0 if rank == 0 else rank * (sh + visualize.GAP) + visualize.QUERY_GAP
    x = visualize.LABEL_WIDTH
    corners = {tuple(img[y + dy, x + dx]) for dy in (0, visualize.BORDER - 1, sh - 1)
               for dx in (0, visualize.BORDER - 1, sw - 1)}
    assert len(corners) == 1, f"strip {rank} frame is not one colour: {corners}"
    return corners.pop()


def test_ranked_pictures(mars, tmp_path):
    _, query, gallery = mars
    d = _distmat(query, gallery)
    out = tmp_path / "ranked"
    paths = visualize.draw_ranked_video(d, query, gallery, str(out), topk=K, frames_per_strip=F,
                                        height=H, width=W, query_indices=[0, 1, 2])
    assert len(paths) == 3 and all(osp.isfile(p) for p in paths)
    assert sorted(os.listdir(out)) == sorted(osp.basename(p) for p in paths)
    sw, sh = visualize.strip_size(F, H, W)
    assert (sw, sh) == (F * W + 2 * visualize.BORDER, H + 2 * visualize.BORDER)
    for qi, path in zip([0, 1, 2], paths):
        with Image.open(path) as im:
            assert im.format == "PNG" and im.mode == "RGB"
            img = np.asarray(im)
        ranked = visualize.rank_gallery(d[qi], query[qi][1], query[qi][2],
                                        [g[1] for g in gallery], [g[2] for g in gallery], K)
        assert len(ranked) == K
        n = K + 1  # strips
        assert img.shape[:2] == (n * sh + (n - 1) * visualize.GAP + visualize.QUERY_GAP,
                                 visualize.LABEL_WIDTH + sw)
        assert _border_colour(img, 0) == visualize.QUERY_COLOUR
        for r, gi in enumerate(ranked, start=1):
            expected = (visualize.MATCH_COLOUR if gallery[gi][1] == query[qi][1]
                        else visualize.MISMATCH_COLOUR)
            assert _border_colour(img, r) == expected
    # the crafted first results: query 0 -> true match (green), query 1 -> wrong (red)
    assert _border_colour(np.asarray(Image.open(paths[0])), 1) == (0, 255, 0)
    assert _border_colour(np.asarray(Image.open(paths[1])), 1) == (255, 0, 0)


def test_query_strip_shows_first_and_last_frame(mars, tmp_path):
    _, query, gallery = mars
    d = _distmat(query, gallery)
    path = visualize.draw_ranked_video(d, query, gallery, str(tmp_path), topk=1,
                                       frames_per_strip=F, height=H, width=W,
                                       query_indices=[0])[0]
    img = np.asarray(Image.open(path))
    frames = sorted(query[0][0], key=osp.basename)
    x0, y0 = visualize.LABEL_WIDTH + visualize.BORDER, visualize.BORDER
    for slot, frame in ((0, frames[0]), (F - 1, frames[-1])):
        want = np.asarray(read_frame(frame).resize((W, H), Image.BILINEAR))
        got = img[y0:y0 + H, x0 + slot * W:x0 + (slot + 1) * W]
        assert np.array_equal(got, want)


def test_ranking_skips_same_identity_same_camera():
    ranked = visualize.rank_gallery([0.1, 0.2, 0.3, 0.0], q_pid=5, q_camid=1,
                                    g_pids=[5, 5, 7, 5], g_camids=[2, 1, 1, 1], topk=5)
    assert ranked == [0, 2]
    assert visualize.strip_frame_indices(2, 4).tolist() == [0, 0, 1, 1]


def test_distmat_shape_checked(mars, tmp_path):
    _, query, gallery = mars
    with pytest.raises(ValueError, match="num_query"):
        visualize.draw_ranked_video(np.zeros((2, 3)), query, gallery, str(tmp_path))


def test_tsne_png(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 16))
    pids = np.repeat(np.arange(12), 5)
    feats = centres[pids] + 0.1 * rng.normal(size=(60, 16))
    out = visualize.draw_tsne(feats, pids, str(tmp_path / "sub" / "tsne.png"), max_ids=6)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 300
        colours = {c for _, c in im.convert("RGB").getcolors(1 << 20)}
    tab10 = {tuple(round(255 * v) for v in c[:3]) for c in
             __import__("matplotlib").colormaps["tab10"].colors[:6]}
    assert len(tab10 & colours) == 6  # six identities, six colours
    with pytest.raises(ValueError, match="at least 4"):
        visualize.draw_tsne(feats[:3], pids[:3], str(tmp_path / "x.png"))


@pytest.mark.parametrize("missing,dist", [("sklearn", "scikit-learn"), ("matplotlib", "matplotlib")])
def test_tsne_without_the_viz_extra(tmp_path, monkeypatch, missing, dist):
    """matplotlib and scikit-learn are the `viz` extra: without them the ranked pictures work
    and the t-SNE says how to install them."""
    for name in [m for m in sys.modules if m == missing or m.startswith(missing + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)  # import fails as if not installed
    with pytest.raises(ImportError, match=rf'needs {dist} .*pip install "tfclip-torchreid\[viz\]"'):
        visualize.draw_tsne(np.random.rand(8, 4), np.repeat(np.arange(2), 4),
                            str(tmp_path / "t.png"))
    assert not (tmp_path / "t.png").exists()
    assert visualize.strip_frame_indices(10, 4).tolist() == [0, 3, 6, 9]  # no viz needed


def test_read_feature_set_in_memory_and_files(tmp_path):
    items = [{"paths": ["a/1.jpg", "a/2.jpg"], "pid": 3, "camid": 1, "frames": 2},
             {"paths": ["/abs/b.jpg"], "pid": 4, "camid": 0}]
    feats, parsed = visualize.read_feature_set(np.ones((2, 5)), items, root="/data")
    assert feats.dtype == np.float32 and parsed[0] == (("/data/a/1.jpg", "/data/a/2.jpg"), 3, 1)
    assert parsed[1] == (("/abs/b.jpg",), 4, 0)
    np.save(tmp_path / "f.npy", np.zeros((2, 5)))
    (tmp_path / "i.json").write_text(json.dumps({"root": "/r", "items": items}))
    feats, parsed = visualize.read_feature_set(str(tmp_path / "f.npy"), str(tmp_path / "i.json"))
    assert parsed[0][0] == ("/r/a/1.jpg", "/r/a/2.jpg")
    with pytest.raises(ValueError, match="index has 2 items"):
        visualize.read_feature_set(np.zeros((3, 5)), items)


def test_cli(mars, tmp_path):
    import importlib.util

    root, query, gallery = mars
    spec = importlib.util.spec_from_file_location(
        "visualize_cli", osp.join(osp.dirname(__file__), "..", "tools", "visualize.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)

    rng = np.random.default_rng(1)
    args = []
    for name, items in (("query", query), ("gallery", gallery)):
        np.save(tmp_path / f"{name}.npy", rng.normal(size=(len(items), 8)).astype(np.float32))
        index = {"root": root, "items": [
            {"paths": [osp.relpath(p, root) for p in t[0]], "pid": int(t[1]), "camid": int(t[2])}
            for t in items]}
        (tmp_path / f"{name}.json").write_text(json.dumps(index))
        args += [f"--{name}-features", str(tmp_path / f"{name}.npy"),
                 f"--{name}-index", str(tmp_path / f"{name}.json")]
    out = tmp_path / "vis"
    rc = cli.main(args + ["--out", str(out), "--topk", "3", "--frames", "2", "--height", "32",
                          "--width", "16", "--max-queries", "4", "--tsne", "--tsne-ids", "6"])
    assert rc == 0
    pngs = sorted(os.listdir(out / "ranked"))
    assert len(pngs) == 4
    for name in pngs:
        with Image.open(out / "ranked" / name) as im:
            assert im.size == visualize.ranked_image_size(3, 2, 32, 16)
    with Image.open(out / "tsne.png") as im:
        im.load()


# ----------------------------------------------------------------------------------------------
# feature files of different weights, pairs that do not match, swapped arguments
# ----------------------------------------------------------------------------------------------
def _cli():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "visualize_cli", osp.join(osp.dirname(__file__), "..", "tools", "visualize.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli


def _feature_files(folder, name, items, root, meta, rows=None):
    rng = np.random.default_rng(len(name))
    npy, js = folder / f"{name}.npy", folder / f"{name}.json"
    np.save(npy, rng.normal(size=(rows or len(items), 8)).astype(np.float32))
    js.write_text(json.dumps({"root": root, "meta": meta, "items": [
        {"paths": [osp.relpath(p, root) for p in t[0]], "pid": int(t[1]), "camid": int(t[2])}
        for t in items]}))
    return str(npy), str(js)


MODEL_A = {"arch": "tfclip_tiny", "weights": "run_a/latest.pth", "weights_digest": "a" * 32,
           "norm": {"mean": [0.5] * 3, "std": [0.5] * 3}, "seq_len": 8}


def _args(q, g, out):
    return ["--query-features", q[0], "--query-index", q[1], "--gallery-features", g[0],
            "--gallery-index", g[1], "--out", str(out), "--topk", "2", "--frames", "2",
            "--height", "32", "--width", "16", "--max-queries", "1"]


def test_features_of_different_weights_are_refused(mars, tmp_path, capsys):
    root, query, gallery = mars
    q = _feature_files(tmp_path, "q", query, root, MODEL_A)
    other = {**MODEL_A, "weights": "run_b/latest.pth", "weights_digest": "b" * 32}
    g = _feature_files(tmp_path, "g", gallery, root, other)
    cli = _cli()
    with pytest.raises(ValueError) as err:
        cli.main(_args(q, g, tmp_path / "vis"))
    msg = str(err.value)
    assert "different weights" in msg and q[1] in msg and g[1] in msg
    assert "run_a/latest.pth" in msg and "run_b/latest.pth" in msg
    assert "--allow-mixed-weights" in msg
    assert not (tmp_path / "vis").exists()
    assert cli.main(_args(q, g, tmp_path / "vis") + ["--allow-mixed-weights"]) == 0
    assert "warning: the query and gallery features come from different weights" in \
        capsys.readouterr().err
    # the same weights given by another path: same digest, drawn without a word on weights
    same = {**MODEL_A, "weights": "/abs/run_a/latest.pth", "seq_len": 4}
    g = _feature_files(tmp_path, "g2", gallery, root, same)
    assert cli.main(_args(q, g, tmp_path / "vis2")) == 0
    err_text = capsys.readouterr().err
    assert "different weights" not in err_text and "seq_len 8 vs 4" in err_text


def test_feature_and_index_files_that_do_not_pair(mars, tmp_path):
    root, query, gallery = mars
    q = _feature_files(tmp_path, "q", query, root, MODEL_A, rows=len(query) + 1)
    g = _feature_files(tmp_path, "g", gallery, root, MODEL_A)
    cli = _cli()
    with pytest.raises(ValueError) as err:
        cli.main(_args(q, g, tmp_path / "vis"))
    msg = str(err.value)
    assert f"{q[0]} holds features of shape ({len(query) + 1}, 8)" in msg
    assert f"{q[1]} lists {len(query)} items" in msg and "not a pair" in msg
    q = _feature_files(tmp_path, "q", query, root, MODEL_A)
    with pytest.raises(ValueError, match="swapped") as err:  # .json given as features and back
        cli.main(_args(q, (g[1], g[0]), tmp_path / "vis"))
    assert "--gallery-features" in str(err.value) and "allow_pickle" not in str(err.value)
    with pytest.raises(ValueError, match=f"{q[1]} is a JSON index, not a feature array"):
        cli.main(_args((q[1], q[1]), g, tmp_path / "vis"))
    with pytest.raises(ValueError, match=f"{g[0]} is a numpy array .*not a JSON index"):
        cli.main(_args(q, (g[0], g[0]), tmp_path / "vis"))


# ----------------------------------------------------------------------------------------------
# t-SNE colours
# ----------------------------------------------------------------------------------------------
def _lab(rgb):
    """CIELAB (D65) of sRGB colours in 0..1, written out from the sRGB and CIE formulas."""
    rgb = np.asarray(rgb, dtype=np.float64)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
    xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    d = 6 / 29
    f = np.where(xyz > d ** 3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]),
                     200 * (f[:, 1] - f[:, 2])], axis=1)


@pytest.mark.parametrize("n", [6, 12, 20, 40, 100])
def test_consecutive_identities_get_distinct_colours(n):
    """Neighbouring identities: colour difference (CIE76) at least 20 and, for two chromatic
    colours, hues at least 30 degrees apart; with up to 20 identities all colours differ by at
    least 15."""
    lab = _lab(visualize.identity_colours(n))
    assert lab.shape == (n, 3)
    step = np.linalg.norm(lab[1:] - lab[:-1], axis=1)
    assert step.min() >= 20, (n, step.min())
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    hue = np.degrees(np.arctan2(lab[:, 2], lab[:, 1]))
    turn = np.abs((hue[1:] - hue[:-1] + 180) % 360 - 180)
    both = (chroma[1:] > 15) & (chroma[:-1] > 15)
    assert turn[both].min() >= 30, (n, turn[both].min())
    if n <= 20:
        pairs = np.linalg.norm(lab[:, None] - lab[None], axis=2)[np.triu_indices(n, 1)]
        assert pairs.min() >= 15, (n, pairs.min())
