"""From camera videos to identities (tfclip_torchreid.video, tools/video_reid.py) on tiny videos.

The synthetic videos (testing.make_synthetic_videos) are a few seconds of small frames; the model
is a one-layer tfclip_tiny. Expected values come from the ground truth the generator wrote, from
SciPy, or are worked out by hand in the test.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import os.path as osp
import re
import runpy
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from tfclip_torchreid.data.mot import (
    Box,
    TrackFileError,
    read_ground_truth,
    read_tracks,
    write_tracks,
)
from tfclip_torchreid.embedding import embed_tracklets
from tfclip_torchreid.export import load_inference_model
from tfclip_torchreid.testing import make_synthetic_videos
from tfclip_torchreid.utils.feature_files import Tracklet
from tfclip_torchreid.video import (
    Embedder,
    VideoError,
    cannot_link,
    link_tracks,
    pairwise_scores,
    probe_video,
    run_video_reid,
)
from tfclip_torchreid.video.cropping import BEYOND_END, EMPTY, OUTSIDE, clip_box
from tfclip_torchreid.video.linking import Span, auto_threshold, cosine_distances
from tfclip_torchreid.video.report import find_browser, screenshot
from tfclip_torchreid.video.tracklets import TrackletStream

pytest.importorskip("av")

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = {"layers": 1}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Three cameras, five people, 5 s at 5 frames/s of 96x160 frames."""
    out = str(tmp_path_factory.mktemp("videos"))
    return make_synthetic_videos(out, cameras=3, people=5, seconds=5, seed=1, fps=5,
                                 size=(96, 160))


@pytest.fixture(scope="module")
def run(videos, tmp_path_factory):
    """The pipeline on ``videos`` with a random one-layer tfclip_tiny and the ground truth."""
    out = str(tmp_path_factory.mktemp("out"))
    return run_video_reid(videos.videos, videos.tracks, out, arch="tfclip_tiny",
                          gt=videos.ground_truth, seq_len=4, progress=False,
                          model_options=TINY)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _copy_set(videos, folder):
    os.makedirs(folder, exist_ok=True)
    for p in videos.videos + videos.tracks + [videos.ground_truth]:
        shutil.copy(p, folder)
    return ([osp.join(folder, osp.basename(p)) for p in videos.videos],
            [osp.join(folder, osp.basename(p)) for p in videos.tracks])


# ----------------------------------------------------------------------------- synthetic videos
def test_synthetic_videos_tracks_and_ground_truth(videos, tmp_path):
    truth = read_ground_truth(videos.ground_truth)
    listed = set()
    for cam, (video, track_file) in enumerate(zip(videos.videos, videos.tracks), start=1):
        assert osp.basename(video) == f"cam{cam}.mp4" and osp.basename(track_file) == f"cam{cam}.txt"
        info = probe_video(video)
        assert (info.frames, info.fps, info.height, info.width) == (25, 5.0, 96, 160)
        tracks = read_tracks(track_file)
        assert tracks and min(b.frame for bs in tracks.values() for b in bs) >= 1
        assert max(b.frame for bs in tracks.values() for b in bs) <= 25
        listed |= {(f"cam{cam}", t) for t in tracks}
        # two people cross in every view: boxes of two tracks of one camera overlap in a frame
        frames = {}
        for boxes in tracks.values():
            for b in boxes:
                frames.setdefault(b.frame, []).append(b)
        assert any(a.x < b.x + b.w and b.x < a.x + a.w for bs in frames.values()
                   for i, a in enumerate(bs) for b in bs[i + 1:])
    assert set(truth) == listed
    people = {}
    for (cam, _), person in truth.items():
        people.setdefault(person, set()).add(cam)
    assert max(len(c) for c in people.values()) >= 2  # some people are seen by several cameras


def test_synthetic_videos_are_deterministic_and_take_rates_and_sizes(tmp_path):
    kw = dict(cameras=2, people=3, seconds=2, seed=4, fps=[4, 6], size=[(64, 96), (80, 128)])
    a = make_synthetic_videos(str(tmp_path / "a"), **kw)
    b = make_synthetic_videos(str(tmp_path / "b"), **kw)
    for x, y in zip(a.videos + a.tracks + [a.ground_truth], b.videos + b.tracks + [b.ground_truth]):
        assert open(x, "rb").read() == open(y, "rb").read(), x
    infos = [probe_video(v) for v in a.videos]
    assert [(i.fps, i.frames, i.height, i.width) for i in infos] == [(4.0, 8, 64, 96),
                                                                      (6.0, 12, 80, 128)]
    with pytest.raises(FileExistsError, match="overwrite"):
        make_synthetic_videos(str(tmp_path / "a"), **kw)


# ----------------------------------------------------------------------------- track files
@pytest.mark.parametrize("line, message", [
    ("0,1,1,1,5,5,1,-1,-1,-1", "1-based"),
    ("3,-1,1,1,5,5,0.9,-1,-1,-1", "detection file"),
    ("3,1,1,1", "4 column"),
    ("3,1,a,1,5,5", "not a number"),
    ("2.5,1,1,1,5,5", "not a whole number"),
])
def test_track_file_errors_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "cam1.txt"
    path.write_text(f"1,1,1,1,5,5,1,-1,-1,-1\n{line}\n")
    with pytest.raises(TrackFileError, match=re.escape(f"{path}, line 2")) as err:
        read_tracks(str(path))
    assert message in str(err.value)


def test_track_file_second_box_in_a_frame(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("1,4,1,1,5,5\n2,4,1,1,5,5\n1,4,2,2,5,5\n")
    with pytest.raises(TrackFileError, match="line 3: track 4 has a second box in frame 1 "
                                             r"\(line 1"):
        read_tracks(str(path))


def test_clip_box():
    assert clip_box(Box(1, -5.5, 10.2, 20, 30), 32, 64) == (0, 10, 15, 32)
    assert clip_box(Box(1, 60, 0, 10, 10), 32, 64) == (60, 0, 64, 10)
    assert clip_box(Box(1, 64, 0, 10, 10), 32, 64) == OUTSIDE
    assert clip_box(Box(1, -10, -10, 10, 10), 32, 64) == OUTSIDE
    assert clip_box(Box(1, 5, 5, 0, 10), 32, 64) == EMPTY
    assert clip_box(Box(1, 5, 5, 10, -1), 32, 64) == EMPTY
    assert clip_box(Box(1, 63.5, 5, 10, 10), 32, 64) == EMPTY  # one pixel left in the frame


# ----------------------------------------------------------------------------- embedding
def _crops(n, seed):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (int(rng.integers(20, 40)), 16, 3), np.uint8))
            for _ in range(n)]


def test_streamed_parts_give_the_dense_features_of_the_whole_tracklet():
    """A track embedded in parts as it streams has the features of all its crops embedded at
    once by embed_tracklets (the dense protocol), for lengths around the part and clip sizes."""
    torch.manual_seed(0)
    model = load_inference_model("tfclip_tiny", camera_num=0, layers=1)
    embedder = Embedder(model, "pytorch", seq_len=3)
    lengths = {1: 1, 2: 5, 3: 6, 4: 7, 5: 13}
    crops = {t: _crops(n, t) for t, n in lengths.items()}
    start = {t: 1 + t for t in lengths}
    # frame f shows the crop of track t at x = 16 (t - 1), its box exactly around it
    tracks = {t: [Box(start[t] + i, 16 * (t - 1), 0, 16, c.height)
                  for i, c in enumerate(crops[t])] for t in lengths}
    stream = TrackletStream("cam1", 0, tracks, embedder, seq_len=3, part_frames=6,
                            batch_frames=7)
    last = max(b.frame for bs in tracks.values() for b in bs)
    for number in range(1, last + 1):
        frame = np.zeros((40, 16 * len(lengths), 3), np.uint8)
        for t, boxes in tracks.items():
            if start[t] <= number < start[t] + len(boxes):
                c = np.asarray(crops[t][number - start[t]])
                frame[:c.shape[0], 16 * (t - 1):16 * t] = c
        assert stream.wants(number) == any(start[t] <= number < start[t] + lengths[t]
                                           for t in lengths)
        stream.add_frame(number, frame)
    got = {r.track_id: r.feature for r in stream.finish(decoded=last)}
    whole = embed_tracklets(model, [Tracklet(str(t), tuple(crops[t]), -1, 0) for t in lengths],
                            seq_len=3, progress=False)
    for i, t in enumerate(lengths):
        np.testing.assert_allclose(got[t], whole[i], atol=1e-5, rtol=0)


def test_onnxruntime_gives_the_pytorch_features(tmp_path):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = load_inference_model("tfclip_tiny", camera_num=0, layers=1)
    parts = [Tracklet(str(i), tuple(_crops(n, i)), -1, 0) for i, n in enumerate((1, 4, 9))]
    eager = Embedder(model, "pytorch", seq_len=4)(parts)
    onnx = Embedder(model, "onnxruntime", seq_len=4, cache_dir=str(tmp_path))(parts)
    assert np.abs(onnx - eager).max() < 1e-4
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".onnx")]) == 1
    Embedder(model, "onnxruntime", seq_len=4, cache_dir=str(tmp_path))  # cached: no new export
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".onnx")]) == 1


# ----------------------------------------------------------------------------- linking, metrics
def test_linking_without_constraints_is_scipys_average_linkage():
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    rng = np.random.default_rng(0)
    for trial in range(10):
        dist = cosine_distances(rng.normal(size=(30, 6)))
        cut = float(np.quantile(dist[np.triu_indices(30, 1)], 0.05 + 0.04 * trial))
        ours = link_tracks(dist, np.zeros((30, 30), bool), cut)
        ref = fcluster(linkage(squareform(dist, checks=False), "average"), cut, "distance")
        assert ((ours[:, None] == ours[None]) == (ref[:, None] == ref[None])).all()


def test_cannot_link_keeps_overlapping_tracks_of_a_camera_apart():
    # tracks 0, 1, 2 look the same; 0 and 1 overlap in camera a, 2 is later in camera a
    feats = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    spans = [Span("a", 1, 10), Span("a", 5, 20), Span("a", 30, 40), Span("b", 1, 40)]
    labels = link_tracks(cosine_distances(feats), cannot_link(spans), threshold=0.5)
    assert labels[0] != labels[1]  # one camera, same time: two people
    assert labels[2] in (labels[0], labels[1])  # one camera, later: may be one person
    assert labels[3] not in labels[:3]


def test_auto_threshold_is_a_quantile_of_the_known_different_pairs():
    n = 7
    dist = np.full((n, n), 0.9)
    np.fill_diagonal(dist, 0)
    cannot = np.zeros((n, n), bool)
    touching = np.zeros((n, n), bool)
    for i in range(n):  # every pair overlaps in time: 21 known-different pairs
        for j in range(i + 1, n):
            cannot[i, j] = cannot[j, i] = True
            dist[i, j] = dist[j, i] = 0.1 * (i + j)
    touching[0, 1] = touching[1, 0] = touching[0, 2] = touching[2, 0] = True  # 0.1, 0.2: crossing
    pairs = sorted(0.1 * (i + j) for i in range(n) for j in range(i + 1, n))
    t = auto_threshold(dist, cannot, touching, quantile=0.5)
    assert t.pairs == 19 and t.value == pytest.approx(np.median(pairs[2:]))
    assert "boxes apart" in t.rule
    # under 10 pairs with their boxes apart: all the overlapping pairs
    touching[:] = cannot
    touching[5, 6] = touching[6, 5] = False
    t = auto_threshold(dist, cannot, touching, quantile=0.5)
    assert t.pairs == 21 and t.value == pytest.approx(np.median(pairs))


def test_boxes_touch_only_in_a_shared_frame():
    from tfclip_torchreid.video.linking import boxes_touch

    a = [Box(1, 0, 0, 10, 20), Box(2, 10, 0, 10, 20)]
    assert not boxes_touch(a, [Box(1, 10, 0, 10, 20)])  # edges meet: no pixel shared
    assert not boxes_touch(a, [Box(3, 10, 0, 10, 20)])  # same place, another frame
    assert boxes_touch(a, [Box(2, 19, 19, 5, 5)])


def test_pairwise_scores_against_a_hand_computed_case():
    # cameras a, b, c. Truth: p = a1, b1, c1; q = a2, b2; r = c2.
    truth = {("a", 1): "p", ("b", 1): "p", ("c", 1): "p", ("a", 2): "q", ("b", 2): "q",
             ("c", 2): "r"}
    # predicted: {a1, b1}, {c1, b2, c2}, {a2}
    ids = {("a", 1): 1, ("b", 1): 1, ("c", 1): 2, ("b", 2): 2, ("c", 2): 2, ("a", 2): 3}
    m = pairwise_scores(ids, truth)
    # cross-camera pairs: 6 tracks, same-camera pairs a1a2, b1b2, c1c2 -> 15 - 3 = 12
    # true: a1b1 a1c1 b1c1 (p), a2b2 (q) -> 4; predicted: a1b1, c1b2, b2c2 (c1c2 same camera) -> 3
    # TP: a1b1 -> 1; FP: c1b2, b2c2 -> 2; FN: a1c1, b1c1, a2b2 -> 3
    assert (m["cross_camera_pairs"], m["true_pairs"]) == (12, 4)
    assert (m["true_positives"], m["false_positives"], m["false_negatives"]) == (1, 2, 3)
    assert m["pairwise_precision"] == pytest.approx(1 / 3)
    assert m["pairwise_recall"] == pytest.approx(1 / 4)
    assert m["pairwise_f1"] == pytest.approx(2 * (1 / 3) * (1 / 4) / (1 / 3 + 1 / 4))
    # the truth's own partition scores 1; a track left unembedded loses its pairs
    perfect = {k: {"p": 1, "q": 2, "r": 3}[v] for k, v in truth.items()}
    assert pairwise_scores(perfect, truth)["pairwise_f1"] == 1.0
    del perfect[("c", 1)]
    m = pairwise_scores(perfect, truth)
    assert (m["false_negatives"], m["unembedded_tracks"]) == (2, 1)


def test_ground_truth_features_link_every_person(videos):
    """Linking itself: with features that are the truth (one-hot person), the data-driven
    threshold links every person's tracks and F1 is 1."""
    truth = read_ground_truth(videos.ground_truth)
    keys = sorted(truth)
    people = sorted(set(truth.values()))
    feats = np.eye(len(people))[[people.index(truth[k]) for k in keys]]
    spans = []
    for cam, tid in keys:
        boxes = read_tracks(videos.tracks[int(cam[3:]) - 1])[tid]
        spans.append(Span(cam, boxes[0].frame, boxes[-1].frame))
    dist, cannot = cosine_distances(feats), cannot_link(spans)
    labels = link_tracks(dist, cannot, auto_threshold(dist, cannot).value)
    assert pairwise_scores(dict(zip(keys, labels.tolist())), truth)["pairwise_f1"] == 1.0


# ----------------------------------------------------------------------------- the pipeline
def test_pipeline_identities_report_and_metrics(run, videos):
    truth = read_ground_truth(videos.ground_truth)
    rows = _rows(run.files["identities"])
    assert list(rows[0]) == ["camera", "track_id", "global_id", "frames"]
    assert {(r["camera"], int(r["track_id"])) for r in rows} == set(truth)
    for r in rows:  # every box of the synthetic tracks is inside its frame: all were cropped
        cam = int(r["camera"][3:])
        assert int(r["frames"]) == len(read_tracks(videos.tracks[cam - 1])[int(r["track_id"])])
    gids = {(r["camera"], int(r["track_id"])): int(r["global_id"]) for r in rows}
    assert sorted(set(gids.values())) == list(range(1, len(set(gids.values())) + 1))
    assert gids == {t.key: g for t, g in zip(run.tracks, run.global_ids)}
    metrics = json.load(open(run.files["metrics"]))
    assert metrics == pytest.approx(pairwise_scores(gids, truth))
    assert set(metrics) >= {"pairwise_precision", "pairwise_recall", "pairwise_f1"}
    summary = json.load(open(run.files["summary"]))
    assert summary["videos"]["cam1"]["frames_read"] <= 25
    assert summary["threshold"] == run.threshold.value
    page = open(run.files["report"], encoding="utf-8").read()
    # self-contained: every picture is embedded, nothing is fetched
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/jpeg;base64,") for s in srcs)
    assert "http" not in page and "<link" not in page and "<script" not in page
    assert page.count('<td class="gid">') == len(set(gids.values()))


def test_pipeline_never_links_overlapping_tracks_of_one_camera(videos, tmp_path):
    """With a threshold above every distance, everything the constraint allows is merged: the
    tracks of one camera that overlap in time must still be apart."""
    result = run_video_reid(videos.videos, videos.tracks, str(tmp_path), arch="tfclip_tiny",
                            seq_len=4, threshold=2.5, progress=False, model_options=TINY)
    spans = [Span(t.camera, t.first, t.last) for t in result.tracks]
    cannot = cannot_link(spans)
    ids = np.array(result.global_ids)
    assert cannot.any()
    assert not (cannot & (ids[:, None] == ids[None, :])).any()
    assert len(set(result.global_ids)) < len(result.tracks)  # non-overlapping ones were merged


def test_progress_shows_frames_per_second(videos, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    run_video_reid(videos.videos[:1], videos.tracks[:1], str(tmp_path), arch="tfclip_tiny",
                   seq_len=4, progress=True, model_options=TINY)
    assert "frame/s" in capsys.readouterr().err  # the tqdm bar
    assert re.search(r"cam1: \d+ frames, \d+ boxes cropped into \d+ tracklets in .* frames/s",
                     caplog.text)


# ----------------------------------------------------------------------------- edges
@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "missing", "text"])
def test_unreadable_video_is_named_before_any_compute(videos, tmp_path, damage):
    vids, tracks = _copy_set(videos, str(tmp_path / "in"))
    bad = vids[1]
    data = open(bad, "rb").read()
    if damage == "garbage":
        open(bad, "wb").write(os.urandom(4096))
    elif damage == "truncated":
        open(bad, "wb").write(data[: len(data) // 2])
    elif damage == "empty":
        open(bad, "wb").write(b"")
    elif damage == "missing":
        os.remove(bad)
    else:
        shutil.copy(tracks[0], bad)
    out = tmp_path / "out"
    with pytest.raises(VideoError, match=re.escape(bad)):
        run_video_reid(vids, tracks, str(out), arch="tfclip_tiny", progress=False,
                       model_options=TINY)
    assert not out.exists()  # stopped before the model was built or anything written


def test_missing_pyav_names_the_extra(monkeypatch, videos):
    import sys

    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    with pytest.raises(ImportError, match=re.escape('pip install "tfclip-torchreid[video]"')):
        probe_video(videos.videos[0])


def test_boxes_that_do_not_fit_the_video_are_counted_and_skipped(videos, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    vids, tracks = _copy_set(videos, str(tmp_path / "in"))
    t = read_tracks(tracks[0])
    first = min(t)
    t[first] = t[first] + [Box(40, 10, 10, 20, 40), Box(41, 10, 10, 20, 40)]  # video has 25
    t[first][0] = t[first][0]._replace(x=500.0)  # entirely outside the 160-wide frame
    t[first][1] = t[first][1]._replace(w=0.0)  # degenerate
    t[99] = [Box(3, 20, 20, 20, 40)]  # a track of one frame
    write_tracks(tracks[0], t)
    result = run_video_reid(vids, tracks, str(tmp_path / "out"), arch="tfclip_tiny", seq_len=4,
                            progress=False, model_options=TINY)
    skipped = result.summary["videos"]["cam1"]["boxes_skipped"]
    assert skipped == {BEYOND_END: 2, OUTSIDE: 1, EMPTY: 1}
    assert "2 box(es) past the last frame (25) and 1 entirely outside" in caplog.text
    rows = {(r["camera"], int(r["track_id"])): r for r in _rows(result.files["identities"])}
    assert rows[("cam1", 99)]["frames"] == "1"
    assert int(rows[("cam1", first)]["frames"]) == len(t[first]) - 4


def test_track_file_of_another_video_is_refused(videos, tmp_path):
    vids, tracks = _copy_set(videos, str(tmp_path / "in"))
    write_tracks(tracks[2], {1: [Box(30, 5, 5, 20, 40)], 2: [Box(2, 300, 5, 20, 40)]})
    with pytest.raises(ValueError, match=re.escape(f"none of the 2 boxes of {tracks[2]} fits "
                                                   f"{vids[2]} (25 frames of 160x96): 1 are past "
                                                   "its last frame and 1 outside its frame")):
        run_video_reid(vids, tracks, str(tmp_path / "out"), arch="tfclip_tiny",
                       progress=False, model_options=TINY)


def test_pairing_errors(videos, tmp_path):
    with pytest.raises(ValueError, match="2 video.* but 1 track file"):
        run_video_reid(videos.videos[:2], videos.tracks[:1], str(tmp_path), arch="tfclip_tiny")


def test_cameras_with_their_own_frame_rates_and_sizes(tmp_path):
    v = make_synthetic_videos(str(tmp_path / "v"), cameras=2, people=3, seconds=3, seed=2,
                              fps=[4, 7], size=[(80, 128), (112, 192)])
    result = run_video_reid(v.videos, v.tracks, str(tmp_path / "out"), arch="tfclip_tiny",
                            gt=v.ground_truth, seq_len=4, progress=False, model_options=TINY)
    per = result.summary["videos"]
    assert (per["cam1"]["fps"], per["cam1"]["height"], per["cam1"]["width"]) == (4.0, 80, 128)
    assert (per["cam2"]["fps"], per["cam2"]["height"], per["cam2"]["width"]) == (7.0, 112, 192)
    assert per["cam1"]["frames_read"] <= 12 and per["cam2"]["frames_read"] <= 21
    assert {t.key for t in result.tracks} == set(read_ground_truth(v.ground_truth))
    assert all(sum(per[c]["boxes_skipped"].values()) == 0 for c in per)


# ----------------------------------------------------------------------------- tools, browser
def test_tools_write_videos_and_identities(tmp_path, capsys):
    make = runpy.run_path(osp.join(REPO, "tools", "make_synthetic_videos.py"))
    reid = runpy.run_path(osp.join(REPO, "tools", "video_reid.py"))
    folder = str(tmp_path / "v")
    assert make["main"](["--out", folder, "--cameras", "2", "--people", "2", "--seconds", "2",
                         "--fps", "4", "--size", "64x96", "80x96"]) == 0
    assert sorted(os.listdir(folder)) == ["SYNTHETIC_VIDEOS.json", "cam1.mp4", "cam1.txt",
                                          "cam2.mp4", "cam2.txt", "gt.csv"]
    out = str(tmp_path / "out")
    argv = ["--videos", f"{folder}/cam1.mp4", f"{folder}/cam2.mp4", "--tracks",
            f"{folder}/cam1.txt", f"{folder}/cam2.txt", "--arch", "tfclip_tiny", "--out", out,
            "--gt", f"{folder}/gt.csv", "--seq-len", "2", "--quiet"]
    assert reid["main"](argv) == 0
    assert {"identities.csv", "report.html", "metrics.json", "summary.json"} <= set(os.listdir(out))
    assert "pairwise precision" in capsys.readouterr().out


def test_report_opens_in_a_real_browser(run, tmp_path):
    """Headless Chromium draws report.html from disk: its crops (data URIs) show."""
    if find_browser() is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    png = screenshot(run.files["report"], str(tmp_path / "report.png"), size=(900, 600))
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert img.shape == (600, 900, 3)
    # crops are drawn: many pixels far from grey (the page itself is white, grey and black text)
    colourful = (img.max(axis=2) - img.min(axis=2)) > 60
    assert colourful.mean() > 0.01


def test_video_cut_short_keeps_the_frames_before(videos, tmp_path, caplog):
    """A recording cut short whose index is at its start (faststart mp4) opens and says 25
    frames, then ends early: the run goes on with the frames before, the file named. (FFmpeg's
    frame-threaded decoder ends such a file quietly; one that raises part-way is caught the same
    way, its message naming the file and frame.)"""
    import av

    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    vids, tracks = _copy_set(videos, str(tmp_path / "in"))
    with av.open(videos.videos[0]) as src:
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    with av.open(vids[0], "w", options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream("libx264", rate=5)
        stream.height, stream.width, stream.pix_fmt = 96, 160, "yuv420p"
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    data = open(vids[0], "rb").read()
    open(vids[0], "wb").write(data[: len(data) * 2 // 3])
    assert probe_video(vids[0]).frames == 25  # the index still says 25 frames
    result = run_video_reid(vids, tracks, str(tmp_path / "out"), arch="tfclip_tiny", seq_len=4,
                            progress=False, model_options=TINY)
    cam1 = result.summary["videos"]["cam1"]
    read = cam1["frames_read"]
    assert 0 < read < 25
    assert cam1["boxes_skipped"][BEYOND_END] == sum(
        b.frame > read for bs in read_tracks(tracks[0]).values() for b in bs) > 0
    assert f"{vids[0]} ended after {read} frames, though its container says 25" in caplog.text


def test_bench_f1_runs_both_models_per_backend_in_one_run(videos, tmp_path, capsys):
    """tools/bench_video.py f1 (the acceptance's command) on the tiny set: a checkpoint and an
    untrained model, each per backend, with F1, frames/s and the cosine to PyTorch float32."""
    pytest.importorskip("onnxruntime")
    from tfclip_torchreid.models import build_tfclip
    from tfclip_torchreid.utils.checkpoint import checkpoint_header, save_checkpoint

    torch.manual_seed(5)
    model = build_tfclip("tfclip_tiny", num_classes=4, camera_num=0, layers=1)
    weights = save_checkpoint({**checkpoint_header(model), "state_dict": model.state_dict()},
                              str(tmp_path / "tiny.pth"))
    bench = runpy.run_path(osp.join(REPO, "tools", "bench_video.py"))
    out = str(tmp_path / "f1")
    assert bench["main"](["f1", "--weights", weights, "--videos-dir", osp.dirname(videos.videos[0]),
                          "--out", out, "--seq-len", "4", "--backends", "onnxruntime-int8",
                          "pytorch"]) == 0
    printed = capsys.readouterr().out
    result = json.loads(printed.strip().splitlines()[-1])
    runs = result["runs"]
    assert list(runs) == ["pytorch", "onnxruntime-int8"]  # the reference first
    for backend, models in runs.items():
        assert set(models) == {"trained", "untrained"}
        for name, r in models.items():
            saved = json.load(open(osp.join(out, backend, name, "metrics.json")))
            assert r["pairwise_f1"] == saved["pairwise_f1"]
            assert r["video_frames_per_s"] > 0 and r["tracks"] == len(read_ground_truth(
                videos.ground_truth))
        assert result["f1_gain"][backend] == pytest.approx(
            models["trained"]["pairwise_f1"] - models["untrained"]["pairwise_f1"])
    int8 = runs["onnxruntime-int8"]["trained"]
    assert 0.5 < int8["cosine_to_pytorch_min"] <= int8["cosine_to_pytorch_mean"] <= 1 + 1e-6
    assert "cosine_to_pytorch_min" not in runs["pytorch"]["trained"]
    assert "F1 gain of the trained model (pytorch)" in printed
