"""Embedding CLI: folders of tracklets -> features + index (.npy/.json, .h5), query vs gallery
ranking, and tools/visualize.py on the result; a tiny synthetic MARS and a tiny checkpoint."""

from __future__ import annotations

import csv
import glob
import importlib.util
import json
import logging
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
from tfclip_torchreid.data.datasets.matfile import load_int_array
from tfclip_torchreid.data.frame_checks import FrameCheckError
from tfclip_torchreid.data.sampling import sample_clip_indices
from tfclip_torchreid.data.transforms import build_sequence_transforms
from tfclip_torchreid.embedding import (
    RANK_TABLE_COLUMNS,
    EmbeddingError,
    EmbeddingInterrupted,
    Tracklet,
    discover_tracklets,
    embed_folder,
    embed_tracklets,
    load_embeddings,
    parse_ids,
    rank_table,
    weights_digest,
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
            "model": model, "weights": weights, "root": root}


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
    # loose frames of two MARS tracklets: named by their tracklet (the name up to "F")
    loose = sorted(osp.basename(sorted(data[split][1][0])[0]).split("F")[0]
                   for split in ("query", "gallery"))
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
    # the weights' digest: the same for the model the checkpoint came from, another for others
    assert index["meta"]["weights_digest"] == weights_digest(data["model"])
    assert weights_digest(build_tfclip("tfclip_tiny", num_classes=2, camera_num=6, layers=1,
                                       image_size=(64, 32))) != weights_digest(data["model"])
    assert sorted((it["pid"], it["camid"]) for it in index["items"]) == sorted(
        (pid, camid) for _, pid, camid, *_ in data["query"])


# ----------------------------------------------------------------------------------------------
# benchmark layouts: real tracklets, not one per folder
# ----------------------------------------------------------------------------------------------
def _mars_test_rows(ddir):
    """Every test tracklet of MARS's info files (junk and distractors included): (frame names,
    pid, 0-based camera), from ``test_name.txt`` and ``tracks_test_info.mat``."""
    with open(osp.join(ddir, "info", "test_name.txt")) as f:
        names = [line.strip() for line in f if line.strip()]
    info = load_int_array(osp.join(ddir, "info", "tracks_test_info.mat"), "track_test_info",
                          "MARS")
    return sorted((tuple(names[s - 1:e]), int(pid), int(cam) - 1) for s, e, pid, cam in info)


def _found(tracklets):
    return sorted((tuple(osp.basename(p) for p in t.paths), t.pid, t.camid) for t in tracklets)


def test_mars_bbox_test_gives_every_tracklet(data, caplog):
    """MARS keeps the tracklets of a person in one folder: each is found on its own, as the info
    files list them (the distractor folder 0000 and junk folder 00-1 included)."""
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    ddir = osp.join(data["root"], "mars")
    found = discover_tracklets(osp.join(ddir, "bbox_test"))
    expected = _mars_test_rows(ddir)
    assert len(found) == len(expected) > len(os.listdir(osp.join(ddir, "bbox_test")))
    assert _found(found) == expected
    per_folder = {}
    for t in found:
        per_folder.setdefault(osp.basename(osp.dirname(t.paths[0])), []).append(t)
    for folder, ts in per_folder.items():  # a folder of one tracklet is named by the folder
        assert [t.name for t in ts] == ([folder] if len(ts) == 1 else [
            f"{folder}/{osp.basename(t.paths[0]).split('F')[0]}" for t in ts])
    assert max(len(ts) for ts in per_folder.values()) > 1
    assert "hold several MARS tracklets each, embedded apart" in caplog.text
    # without parsed ids the tracklets are still apart
    plain = discover_tracklets(osp.join(ddir, "bbox_test"), parse_names=False)
    assert [t.paths for t in plain] == [t.paths for t in found]
    assert {(t.pid, t.camid) for t in plain} == {(-1, 0)}
    # one person folder given as the input: its tracklets, named by the names
    person = sorted(d for d in os.listdir(osp.join(ddir, "bbox_test")) if d not in ("0000", "00-1"))[0]
    own = discover_tracklets(osp.join(ddir, "bbox_test", person))
    assert _found(own) == [r for r in expected if r[0][0].startswith(person)]
    assert all("/" not in t.name and t.name.startswith(person + "C") for t in own)


def test_embed_cli_on_mars_bbox_test(data, tmp_path, capsys):
    ddir = osp.join(data["root"], "mars")
    out = str(tmp_path / "bbox_test.npy")
    assert _tool("embed").main(["--weights", data["weights"], "--input",
                                osp.join(ddir, "bbox_test"), "--out", out] + FAST) == 0
    feats, index = load_embeddings(out)
    rows = _mars_test_rows(ddir)
    assert len(feats) == len(index["items"]) == len(rows)
    assert sorted((tuple(osp.basename(p) for p in it["paths"]), it["pid"], it["camid"])
                  for it in index["items"]) == rows
    assert "hold several MARS tracklets each" in capsys.readouterr().out


def test_lsvid_ilidsvid_market_layouts(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    root = str(tmp_path)
    sizes = dict(height=32, width=16, min_len=2, max_len=4)
    # LS-VID: a person folder holds several tracklets, each the files of one list prefix
    lsvid = make_synthetic_dataset("lsvid", root, seed=0, verbose=False, num_train_ids=2,
                                   num_test_ids=4, num_gallery_ids=2, num_junk=1,
                                   train_min_len=2, train_max_len=4, **sizes)
    with open(osp.join(lsvid, "list_sequence", "list_seq_test.txt")) as f:
        rows = [line.split() for line in f if line.strip()]
    expected = sorted((tuple(sorted(osp.basename(p) for p in glob.glob(
        osp.join(lsvid, glob.escape(prefix)) + "*"))), int(pid),
        int(osp.basename(prefix).split("_")[2]) - 1) for prefix, pid in rows)
    found = discover_tracklets(osp.join(lsvid, "tracklet_test"))
    assert _found(found) == expected
    assert len(found) > len(os.listdir(osp.join(lsvid, "tracklet_test")))
    # iLIDS-VID: a folder per camera and person; pid and camera from the folders' names
    ilids = make_synthetic_dataset("ilidsvid", root, seed=0, verbose=False, num_ids=4,
                                   num_splits=1, **sizes)
    seq = osp.join(ilids, "i-LIDS-VID", "sequences")
    found = discover_tracklets(seq)
    folders = sorted(glob.glob(osp.join(seq, "cam*", "person*")))
    assert [t.name for t in found] == [osp.relpath(d, seq) for d in folders]
    assert [(t.pid, t.camid) for t in found] == [
        (int(osp.basename(d)[len("person"):]), int(osp.basename(osp.dirname(d))[3:]) - 1)
        for d in folders]
    assert [len(t.paths) for t in found] == [len(os.listdir(d)) for d in folders]
    # Market-1501: every image is a tracklet, with torchreid's pid and camera
    market = make_synthetic_dataset("market1501", root, seed=0, verbose=False, num_train_ids=2,
                                    num_test_ids=3, num_distractors=1, num_junk=1, **sizes)
    gallery_dir = osp.join(market, "Market-1501-v15.09.15", "bounding_box_test")
    found = discover_tracklets(gallery_dir)
    ds = compat.init_image_dataset("market1501", root=root, transform=_identity, mode="gallery",
                                   verbose=False)
    assert sorted((t.paths, t.pid, t.camid) for t in found if t.pid != -1) == sorted(
        ((p,), pid, cam) for p, pid, cam, *_ in ds.gallery)
    assert len(found) == len(os.listdir(gallery_dir))
    assert all(t.name == osp.basename(t.paths[0]) for t in found)
    assert "Market-1501 images, one tracklet each" in caplog.text


def test_folder_of_several_tracklets_is_split_and_said(data, tmp_path, caplog):
    """Frames of two iLIDS-VID tracklets copied into one folder are embedded apart, with a
    warning; a folder whose names follow a naming only in part stays one tracklet, with a
    warning naming a file that does not follow it."""
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    both = tmp_path / "in" / "both"
    both.mkdir(parents=True)
    frame = sorted(data["query"][0][0])[0]
    for name in ("cam1_person003_00010.png", "cam1_person003_00011.png",
                 "cam2_person003_00010.png"):
        shutil.copy(frame, both / name)
    found = discover_tracklets(str(tmp_path / "in"))
    assert [(t.name, len(t.paths), t.pid, t.camid) for t in found] == [
        ("both/cam1_person003", 2, 3, 0), ("both/cam2_person003", 1, 3, 1)]
    assert "1 folder(s) hold several iLIDS-VID tracklets each" in caplog.text
    assert any(r.levelname == "WARNING" for r in caplog.records)
    caplog.clear()
    shutil.copy(frame, both / "thumbnail.png")
    found = discover_tracklets(str(tmp_path / "in"))
    assert [(t.name, len(t.paths)) for t in found] == [("both", 4)]
    assert "3 of 4 frames are named as iLIDS-VID" in caplog.text and "thumbnail.png" in caplog.text


# ----------------------------------------------------------------------------------------------
# bad frames: checked before any compute, skipped on request, partial output kept
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def tracks(data, tmp_path):
    """Five tracklet folders t0..t4 (query tracklets of the synthetic MARS)."""
    root = tmp_path / "tracks"
    for i, (paths, *_) in enumerate(data["query"][:5]):
        _copy_tracklet(paths, str(root / f"t{i}"))
    return root


def _frames(folder):
    return sorted(str(p) for p in folder.iterdir())


def _truncate(path):
    with open(path, "rb") as f:
        head = f.read()
    with open(path, "wb") as f:
        f.write(head[: len(head) // 2])


def _undecodable(path):
    """A JPEG that passes the header / end-marker check but whose pixels cannot be decoded."""
    b = bytearray(open(path, "rb").read())
    b[len(b) // 2: len(b) // 2 + 300] = b"\xff" * 300
    open(path, "wb").write(bytes(b))


class _Counting:
    """The fixture's model with a count of forward passes."""

    def __init__(self, model):
        self.calls = 0
        self.handle = model.register_forward_hook(lambda *a: setattr(self, "calls",
                                                                     self.calls + 1))


def test_bad_frame_stops_before_any_compute(data, tracks, tmp_path):
    bad = _frames(tracks / "t2")[1]
    _truncate(bad)
    counter = _Counting(data["model"])
    try:
        with pytest.raises(FrameCheckError) as err:
            embed_folder(data["model"], str(tracks), seq_len=SEQ, progress=False)
    finally:
        counter.handle.remove()
    assert counter.calls == 0
    msg = str(err.value)
    assert bad in msg and "truncated" in msg and "--skip-bad-frames" in msg
    out = str(tmp_path / "out.npy")
    with pytest.raises(FrameCheckError, match="--skip-bad-frames"):
        _tool("embed").main(["--weights", data["weights"], "--input", str(tracks), "--out", out]
                            + FAST)
    assert not osp.exists(out) and not osp.exists(str(tmp_path / "out_partial.npy"))


def test_skip_bad_frames_completes_and_lists_them(data, tracks, tmp_path, capsys):
    bad = _frames(tracks / "t2")[1]
    _truncate(bad)
    for p in _frames(tracks / "t4"):  # a tracklet left without frames
        open(p, "wb").close()
    undecodable = _frames(tracks / "t1")[0]  # passes the check, fails when read
    _undecodable(undecodable)
    out = str(tmp_path / "out.npy")
    assert _tool("embed").main(["--weights", data["weights"], "--input", str(tracks), "--out",
                                out, "--skip-bad-frames", "--part-size", "2"] + FAST) == 0
    feats, index = load_embeddings(out)
    assert [it["name"] for it in index["items"]] == ["t0", "t1", "t2", "t3"]
    meta = index["meta"]
    skipped = {s["path"]: s["reason"] for s in meta["skipped_frames"]}
    assert set(skipped) == {osp.relpath(p, tracks) for p in [bad, undecodable]
                            + _frames(tracks / "t4")}
    assert skipped[osp.relpath(bad, tracks)].startswith("truncated")
    assert skipped[osp.relpath(undecodable, tracks)].startswith("cannot be decoded")
    assert meta["skipped_tracklets"] == ["t4"]
    text = capsys.readouterr().out
    assert "left out" in text and "t4" in text
    # the tracklets that lost a frame: the dense feature of their other frames
    model = data["model"]
    for k, gone in ((1, undecodable), (2, bad)):
        rest = [p for p in _frames(tracks / f"t{k}") if p != gone]
        camid = index["items"][k]["camid"]
        np.testing.assert_allclose(feats[k], _dense_feature(model, rest, camid), atol=1e-5)


def test_failure_part_way_keeps_what_was_embedded(data, tracks, tmp_path):
    clean = str(tmp_path / "clean.npy")
    assert _tool("embed").main(["--weights", data["weights"], "--input", str(tracks), "--out",
                                clean] + FAST) == 0
    full, _ = load_embeddings(clean)
    undecodable = _frames(tracks / "t3")[0]
    _undecodable(undecodable)
    out = str(tmp_path / "run" / "out.npy")
    with pytest.raises(RuntimeError) as err:
        _tool("embed").main(["--weights", data["weights"], "--input", str(tracks), "--out", out,
                             "--part-size", "2"] + FAST)
    msg = str(err.value)
    partial = str(tmp_path / "run" / "out_partial.npy")
    assert "stopped after 2 of 5 tracklets" in msg and undecodable in msg
    assert "--skip-bad-frames" in msg and partial in msg
    assert not osp.exists(out)
    feats, index = load_embeddings(partial)
    assert index["meta"]["partial"]["embedded"] == 2 and index["meta"]["partial"]["of"] == 5
    assert undecodable in index["meta"]["partial"]["stopped_by"]
    assert [it["name"] for it in index["items"]] == ["t0", "t1"]
    np.testing.assert_allclose(feats, full[:2], atol=1e-5)
    # a later complete run replaces the partial output
    assert _tool("embed").main(["--weights", data["weights"], "--input", str(tracks), "--out",
                                out, "--skip-bad-frames"] + FAST) == 0
    assert not osp.exists(partial) and not osp.exists(partial[:-4] + ".json")


def test_ctrl_c_part_way_keeps_what_was_embedded(data, tracks, monkeypatch):
    model = data["model"]
    calls = []
    real = type(model).forward

    def forward(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:  # the second part
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", forward)
    with pytest.raises(EmbeddingInterrupted) as err:
        embed_folder(model, str(tracks), seq_len=SEQ, part_size=2, batch_size=2,
                     progress=False)
    assert isinstance(err.value, KeyboardInterrupt)
    assert err.value.features.shape == (2, model.feature_dim)
    assert err.value.index["meta"]["partial"]["embedded"] == 2
    monkeypatch.undo()
    with pytest.raises(EmbeddingError, match="no such"):  # other errors: EmbeddingError
        monkeypatch.setattr(type(model), "forward",
                            lambda self, *a, **k: (_ for _ in ()).throw(OSError("no such")))
        embed_folder(model, str(tracks), seq_len=SEQ, progress=False)


def test_prid_dukevideo_msmt17_names(data, tmp_path):
    """The other benchmarks' names: PRID2011's camera / person folders, a DukeMTMC-VideoReID
    tracklet folder, MSMT17 images (one tracklet each, camera = 3rd field)."""
    frame = sorted(data["query"][0][0])[0]
    files = ["prid/multi_shot/cam_b/person_0007/0001.png",
             "prid/multi_shot/cam_b/person_0007/0002.png",
             "duke/gallery/0012/0003/0012_C4_F0040_X30001.jpg",
             "duke/gallery/0012/0003/0012_C4_F0041_X30001.jpg",
             "msmt/test/0002/0002_003_12_0303afternoon_0069_0.jpg",
             "msmt/test/0002/0002_004_12_0303afternoon_0070_0.jpg"]
    for f in files:
        os.makedirs(osp.dirname(tmp_path / f), exist_ok=True)
        shutil.copy(frame, tmp_path / f)
    found = {t.name: (len(t.paths), t.pid, t.camid) for t in discover_tracklets(str(tmp_path))}
    assert found == {
        "prid/multi_shot/cam_b/person_0007": (2, 7, 1),
        "duke/gallery/0012/0003": (2, 12, 3),
        "msmt/test/0002/0002_003_12_0303afternoon_0069_0.jpg": (1, 2, 11),
        "msmt/test/0002/0002_004_12_0303afternoon_0070_0.jpg": (1, 2, 11)}
