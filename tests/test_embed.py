"""Embedding CLI: folders of tracklets -> features + index (.npy/.json, .h5), query vs gallery
ranking, and tools/visualize.py on the result; a tiny synthetic MARS and a tiny checkpoint."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import os.path as osp
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import tfclip_torchreid  # noqa: F401  (registers the datasets)
from tfclip_torchreid import compat
from tfclip_torchreid.data.dataset import read_frame
from tfclip_torchreid.data.sampling import sample_clip_indices
from tfclip_torchreid.data.transforms import build_sequence_transforms
from tfclip_torchreid.embedding import (
    RANK_TABLE_COLUMNS,
    Tracklet,
    discover_tracklets,
    embed_tracklets,
    load_embeddings,
    parse_ids,
    rank_table,
)
from tfclip_torchreid.models import build_tfclip
from tfclip_torchreid.testing import make_synthetic_dataset
from tfclip_torchreid.utils.checkpoint import checkpoint_header, save_checkpoint
from tfclip_torchreid.visualize import ranked_image_size, read_feature_set

SIZES = dict(height=64, width=32, num_train_ids=1, num_test_ids=4, num_distractors=2,
             num_junk=1, min_len=3, max_len=10)
SEQ = 4  # frames per clip: tracklets of 5..10 frames give 2..3 dense clips
TOPK = 3
FAST = ["--seq-len", str(SEQ), "--workers", "0", "--batch-size", "3", "--quiet"]


def _identity(x):
    return x


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(
        f"{name}_cli", osp.join(osp.dirname(__file__), "..", "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _copy_tracklet(paths, folder: str) -> None:
    os.makedirs(folder)
    for p in paths:
        shutil.copy(p, folder)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Per-tracklet folders built from a synthetic MARS test split, and a tiny checkpoint."""
    base = tmp_path_factory.mktemp("embed")
    root = str(base / "reid-data")
    make_synthetic_dataset("mars", root, seed=0, verbose=False, **SIZES)
    ds = compat.init_video_dataset("mars", root=root, transform=_identity, mode="query",
                                   verbose=False)
    dirs = {}
    for split, items in (("query", ds.query), ("gallery", ds.gallery)):
        dirs[split] = str(base / split)
        for paths, *_ in items:
            name = osp.splitext(osp.basename(sorted(paths)[0]))[0]
            _copy_tracklet(paths, osp.join(dirs[split], name))
    # a mixed folder: nested tracklet folders plus two loose images (one-frame tracklets)
    mixed = str(base / "mixed")
    _copy_tracklet(ds.query[0][0], osp.join(mixed, "cam_a", "track1"))
    _copy_tracklet(ds.gallery[0][0], osp.join(mixed, "track2"))
    for paths in (ds.query[1][0], ds.gallery[1][0]):
        shutil.copy(sorted(paths)[0], mixed)

    torch.manual_seed(0)
    model = build_tfclip("tfclip_tiny", num_classes=2, camera_num=6, layers=1,
                         image_size=(64, 32)).eval()
    weights = save_checkpoint({**checkpoint_header(model), "state_dict": model.state_dict()},
                              str(base / "tiny.pth"))
    return {"query": ds.query, "gallery": ds.gallery, "dirs": dirs, "mixed": mixed,
            "model": model, "weights": weights}


def test_parse_ids():
    assert parse_ids("/x/0012C3T0004F017.jpg") == (12, 2)
    assert parse_ids("00-1C1T0001F001.jpg") == (-1, 0)
    assert parse_ids("0002_c3s1_000451_03.jpg") == (2, 2)
    assert parse_ids("-1_c1s1_000001_00.jpg") == (-1, 0)
    assert parse_ids("0005_c2_f0046985.jpg") == (5, 1)
    assert parse_ids("img_0001.png") == (-1, 0)


def test_discover_matches_torchreid(data, tmp_path):
    found = discover_tracklets(data["dirs"]["gallery"])
    expected = sorted(((tuple(sorted(osp.basename(p) for p in paths)), pid, camid)
                       for paths, pid, camid, *_ in data["gallery"]))
    got = sorted((tuple(osp.basename(p) for p in t.paths), t.pid, t.camid) for t in found)
    assert got == expected  # frames in file-name order, MARS pid and 0-based camera
    mixed = discover_tracklets(data["mixed"])
    loose = sorted(osp.basename(sorted(data[split][1][0])[0]) for split in ("query", "gallery"))
    assert [t.name for t in mixed[:2]] == loose  # names sort digits first
    assert [len(t.paths) for t in mixed[:2]] == [1, 1]
    assert [t.name for t in mixed[2:]] == [osp.join("cam_a", "track1"), "track2"]
    assert all(t.camid == 0 and t.pid == -1 for t in discover_tracklets(data["mixed"], False))
    with pytest.raises(FileNotFoundError, match="no image files"):
        discover_tracklets(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover_tracklets(str(tmp_path / "missing"))


def _dense_feature(model, paths, camid):
    """The dense protocol by hand: clips of SEQ frames, test transform, mean clip feature."""
    idx = sample_clip_indices(len(paths), SEQ, "dense")
    tf = build_sequence_transforms(*model.cfg.image_size, is_train=False)
    frames = [read_frame(sorted(paths)[i]) for i in idx.reshape(-1).tolist()]
    clips = tf(frames).view(*idx.shape, 3, *model.cfg.image_size)
    with torch.no_grad():
        return model(clips, torch.full((len(idx),), camid)).mean(0).numpy()


def test_embed_cli_npy_and_h5(data, tmp_path):
    cli = _tool("embed")
    out = str(tmp_path / "mixed.npy")
    assert cli.main(["--weights", data["weights"], "--input", data["mixed"], "--out", out]
                    + FAST) == 0
    feats, index = load_embeddings(out)
    items = index["items"]
    model = data["model"]
    assert feats.dtype == np.float32 and feats.shape == (4, model.feature_dim)
    assert [it["num_frames"] for it in items] == [
        1, 1, len(data["query"][0][0]), len(data["gallery"][0][0])]
    assert set(items[0]) >= {"paths", "pid", "camid", "num_frames"}
    # the visualiser's reader resolves the relative frame paths
    _, parsed = read_feature_set(out, out[:-4] + ".json")
    assert all(osp.isfile(p) for t in parsed for p in t[0])
    for k in (0, 3):  # a one-frame tracklet and a dense multi-clip one
        paths, pid, camid = parsed[k]
        np.testing.assert_allclose(feats[k], _dense_feature(model, paths, camid), atol=1e-5)

    h5 = str(tmp_path / "mixed.h5")
    assert cli.main(["--weights", data["weights"], "--input", data["mixed"], "--out", h5]
                    + FAST[:-3] + ["--batch-size", "1", "--quiet"]) == 0
    feats_h5, index_h5 = load_embeddings(h5)
    np.testing.assert_allclose(feats_h5, feats, atol=1e-5)  # batching does not matter
    assert index_h5["items"] == items


def test_query_gallery_ranking_and_pictures(data, tmp_path, capsys):
    out = str(tmp_path / "run" / "mars")
    args = ["--weights", data["weights"], "--query", data["dirs"]["query"], "--gallery",
            data["dirs"]["gallery"], "--out", out, "--topk", str(TOPK)] + FAST
    assert _tool("embed").main(args) == 0
    text = capsys.readouterr().out
    assert "mAP" in text and "R1" in text
    qf, q_index = load_embeddings(out + "_query")
    gf, g_index = load_embeddings(out + "_gallery")
    assert (len(qf), len(gf)) == (len(data["query"]), len(data["gallery"]))

    with open(out + "_topk.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == RANK_TABLE_COLUMNS
    by_query = {}
    for row in rows:
        by_query.setdefault(row["query"], []).append(row)
    qdir, gdir = data["dirs"]["query"], data["dirs"]["gallery"]
    assert set(by_query) == {osp.join(qdir, it["name"]) for it in q_index["items"]}
    assert all(osp.isdir(p) for p in by_query)
    for q in q_index["items"]:
        ranked = by_query[osp.join(qdir, q["name"])]
        assert [int(r["rank"]) for r in ranked] == list(range(1, TOPK + 1))
        dist = [float(r["distance"]) for r in ranked]
        assert dist == sorted(dist)
        for r in ranked:  # same identity and camera is skipped; match = same pid
            g = next(it for it in g_index["items"] if osp.join(gdir, it["name"]) == r["gallery"])
            assert not (g["pid"] == q["pid"] and g["camid"] == q["camid"])
            assert int(r["match"]) == int(g["pid"] == q["pid"])

    vis = tmp_path / "vis"
    rc = _tool("visualize").main([
        "--query-features", out + "_query.npy", "--query-index", out + "_query.json",
        "--gallery-features", out + "_gallery.npy", "--gallery-index", out + "_gallery.json",
        "--out", str(vis), "--topk", str(TOPK), "--frames", "2", "--height", "32", "--width",
        "16", "--tsne", "--tsne-ignore-pids", "-1", "0"])
    assert rc == 0
    pngs = sorted(os.listdir(vis / "ranked"))
    assert len(pngs) == len(qf)
    for name in pngs:
        with Image.open(vis / "ranked" / name) as im:
            im.load()
            assert im.size == ranked_image_size(TOPK, 2, 32, 16)
    with Image.open(vis / "tsne.png") as im:
        im.load()
        assert im.format == "PNG"


def test_rank_table_without_labels():
    q = [{"name": "q", "pid": -1, "camid": 0}]
    g = [{"name": n, "pid": -1, "camid": 0} for n in "abc"]
    rows = rank_table(np.array([[0.3, 0.1, 0.2]]), q, g, topk=2)
    assert [(r["gallery"], r["match"]) for r in rows] == [("b", ""), ("c", "")]


def test_cameras_outside_the_sie_table_are_explained(data):
    model = build_tfclip("tfclip_tiny", num_classes=2, camera_num=2, layers=1,
                         image_size=(64, 32))
    t = Tracklet("x", tuple(sorted(data["query"][0][0])), 1, 4)
    with pytest.raises(ValueError, match=r"outside the model's SIE cameras 0\.\.1.*no-parse-ids"):
        embed_tracklets(model, [t], progress=False)
    feats = embed_tracklets(model, [t._replace(camid=0)], seq_len=SEQ, progress=False)
    assert feats.shape == (1, model.feature_dim)


def test_index_json_is_plain(data, tmp_path):
    out = str(tmp_path / "q")
    assert _tool("embed").main(["--weights", data["weights"], "--input", data["dirs"]["query"],
                                "--out", out] + FAST) == 0
    with open(out + ".json") as f:
        index = json.load(f)
    assert index["root"] == osp.abspath(data["dirs"]["query"])
    assert index["meta"]["arch"] == "tfclip_tiny" and index["meta"]["seq_len"] == SEQ
    assert sorted((it["pid"], it["camid"]) for it in index["items"]) == sorted(
        (pid, camid) for _, pid, camid, *_ in data["query"])
