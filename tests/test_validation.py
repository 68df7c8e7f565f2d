"""Up-front data validation: frame files (with the cache), tracklet labels / cameras, and the
pre-checks that replace torchreid's bare AssertionErrors by messages naming the row or folder."""

from __future__ import annotations

import glob
import json
import logging
import os
import os.path as osp
import shutil

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat, savemat

import tfclip_torchreid  # noqa: F401  (registers the datasets)
from tfclip_torchreid import compat
from tfclip_torchreid.data import validation as V
from tfclip_torchreid.data.synthetic import make_synthetic_dataset

TINY_MARS = dict(height=32, width=16, num_train_ids=3, num_test_ids=3, num_cams=4,
                 num_distractors=2, num_junk=1, min_len=3, max_len=5)
TINY_ILIDS = dict(height=32, width=16, num_ids=4, num_splits=2, min_len=3, max_len=4)
TINY_MARKET = dict(height=32, width=16, num_train_ids=3, num_test_ids=3, num_cams=3,
                   num_distractors=2, num_junk=2, min_len=2, max_len=3)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> str:
    """One tiny copy of each generated format; tests that corrupt files copy it first."""
    root = str(tmp_path_factory.mktemp("synth"))
    make_synthetic_dataset("mars", root, seed=1, verbose=False, **TINY_MARS)
    make_synthetic_dataset("ilidsvid", root, seed=1, verbose=False, **TINY_ILIDS)
    make_synthetic_dataset("market1501", root, seed=1, verbose=False, **TINY_MARKET)
    return root


def _copy(synth_root: str, tmp_path, *names: str) -> str:
    root = str(tmp_path / "data")
    for name in names:
        shutil.copytree(osp.join(synth_root, name), osp.join(root, name))
    return root


def _identity(x):
    return x


def _video(name: str, root: str, **kw):
    return compat.init_video_dataset(name, root=root, transform=_identity, mode="train",
                                     verbose=False, **kw)


def _mars_frames(root: str) -> list:
    ds = _video("mars", root)
    return V.frame_paths(ds.train, ds.query, ds.gallery)


# ---------------------------------------------------------------------------------------------
# frame files
# ---------------------------------------------------------------------------------------------
def test_check_frames_passes_and_caches(synth_root, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    root = _copy(synth_root, tmp_path, "mars")
    paths = _mars_frames(root)
    cache = str(tmp_path / "cache")
    calls = []
    real = V.frame_problem
    monkeypatch.setattr(V, "frame_problem", lambda p: calls.append(p) or real(p))
    V.check_frames(paths + paths[:5], cache_dir=cache, verbose=True)  # duplicates read once
    assert sorted(calls) == sorted(paths)
    assert "checked" in caplog.text
    caplog.clear()
    assert len(os.listdir(cache)) == 1

    def no_reading(path):
        raise AssertionError(f"read {path} although the cache says the list is valid")

    monkeypatch.setattr(V, "frame_problem", no_reading)
    V.check_frames(list(reversed(paths)), cache_dir=cache, verbose=True)  # order-independent key
    assert "already checked" in caplog.text

    # a rewritten file (other mtime) invalidates the entry: the list is read again
    st = os.stat(paths[3])
    os.utime(paths[3], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(AssertionError, match="although the cache"):
        V.check_frames(paths, cache_dir=cache)

    # a corrupt cache file is ignored, the frames are checked again and the entry rewritten
    calls.clear()
    monkeypatch.setattr(V, "frame_problem", lambda p: calls.append(p) or real(p))
    V.check_frames(paths, cache_dir=cache)  # new entry for the new mtime
    entry = max(glob.glob(osp.join(cache, "*.json")), key=os.path.getmtime)
    with open(entry, "w") as fh:
        fh.write("{not json")
    calls.clear()
    with pytest.warns(UserWarning, match="frame-check cache entry .* is corrupt"):
        V.check_frames(paths, cache_dir=cache)
    assert len(calls) == len(paths)
    assert json.load(open(entry))["num_files"] == len(paths)

    # cache_dir="" disables the cache; TFCLIP_CACHE moves the default
    calls.clear()
    V.check_frames(paths, cache_dir="")
    assert len(calls) == len(paths)
    monkeypatch.setenv("TFCLIP_CACHE", str(tmp_path / "envcache"))
    assert V.default_cache_dir() == str(tmp_path / "envcache" / "frame_checks")


def _corrupt(paths):
    """Truncated JPEG, zero-byte frame, text renamed .jpg, missing frame: 4 distinct files."""
    truncated, empty, text, missing = paths[1], paths[4], paths[7], paths[10]
    data = open(truncated, "rb").read()
    with open(truncated, "wb") as fh:
        fh.write(data[:-10])  # header intact, end of the scan and the EOI marker lost
    open(empty, "wb").close()
    with open(text, "w") as fh:
        fh.write("this is not an image\n")
    os.remove(missing)
    return {truncated: "truncated", empty: "empty", text: "not an image", missing: "missing"}


def test_check_frames_names_every_bad_file(synth_root, tmp_path):
    root = _copy(synth_root, tmp_path, "mars")
    paths = _mars_frames(root)
    bad = _corrupt(paths)
    # a complete JPEG with padding after its end marker is fine
    with open(paths[13], "ab") as fh:
        fh.write(b"\0" * 40)
    cache = str(tmp_path / "cache")
    with pytest.raises(V.FrameCheckError) as err:
        V.check_frames(paths, cache_dir=cache)
    msg = str(err.value)
    assert f"4 of {len(paths)} frame files are bad" in msg
    assert "1 empty, 1 missing, 1 not an image, 1 truncated" in msg
    for path, reason in bad.items():
        assert f"{path}: {reason}" in msg
    assert "re-extract" in msg
    assert dict(err.value.problems).keys() == bad.keys()
    assert not osp.exists(cache) or not os.listdir(cache)  # failures are never cached

    with pytest.raises(V.FrameCheckError, match=r"(?s)First 2:.*and 2 more"):
        V.check_frames(paths, cache_dir="", max_listed=2)


def test_truncated_png_and_other_formats(tmp_path):
    good = str(tmp_path / "good.png")
    Image.new("RGB", (8, 16), (10, 20, 30)).save(good)
    cut = str(tmp_path / "cut.png")
    with open(cut, "wb") as fh:
        fh.write(open(good, "rb").read()[:-12])
    bmp = str(tmp_path / "frame.bmp")
    Image.new("RGB", (8, 16)).save(bmp)
    folder = str(tmp_path / "folder.jpg")
    os.mkdir(folder)
    assert V.frame_problem(good) is None and V.frame_problem(bmp) is None
    assert V.frame_problem(cut).startswith("truncated (PNG")
    with pytest.raises(V.FrameCheckError) as err:
        V.check_frames([good, cut, bmp, folder], cache_dir="")
    assert [p for p, _ in err.value.problems] == [cut, folder]
    assert "not a regular file" in str(err.value)


def test_check_frames_worker_pool(synth_root, tmp_path, monkeypatch):
    """The parallel path (forked workers on Linux) finds the same files in the same order."""
    root = _copy(synth_root, tmp_path, "mars")
    paths = _mars_frames(root)
    bad = _corrupt(paths)
    monkeypatch.setattr(V, "_SERIAL_BELOW", 8)
    monkeypatch.setattr(V, "_CHUNK", 16)
    with pytest.raises(V.FrameCheckError) as err:
        V.check_frames(paths, cache_dir="", workers=2)
    assert [p for p, _ in err.value.problems] == [p for p in paths if p in bad]


# ---------------------------------------------------------------------------------------------
# parsed tracklets
# ---------------------------------------------------------------------------------------------
def test_check_tracklets_messages():
    good = [(("a/1.jpg", "a/2.jpg"), 0, 0), (("b/1.jpg",), 1, 5, 0)]
    V.check_tracklets("mars", "train", good, num_classes=2, num_cameras=6, relabelled=True)
    V.check_tracklets("market1501", "query", [("q/0002_c1.jpg", 2, 0, 0)], num_cameras=6)

    with pytest.raises(V.DataValidationError) as err:
        V.check_tracklets("mars", "gallery", good + [((), 4, 1), (("c/9.jpg",), 4, 6)],
                          num_cameras=6)
    msg = str(err.value)
    assert msg.startswith("mars gallery: 2 problem(s) in 4 tracklets:")
    assert "tracklet 2 (first frame <no frames>): no frames" in msg
    assert "tracklet 3 (first frame c/9.jpg): camera id 6 outside the allowed range 0..5" in msg
    assert "camera_num >= 7" in msg and "at least one frame" in msg

    with pytest.raises(V.DataValidationError) as err:
        V.check_tracklets("lsvid", "train", [(("x.jpg",), 0, 0), (("y.jpg",), 3, -1)],
                          num_classes=3, relabelled=True)
    msg = str(err.value)
    assert "tracklet 1 (first frame y.jpg): label 3 outside the allowed range 0..2" in msg
    assert "camera id -1 is negative" in msg
    assert "labels 1, 2 (2 of 0..2) have no tracklet" in msg
    assert "relabel the training pids to 0..Y-1" in msg

    with pytest.raises(V.DataValidationError, match="pid '7' is not an integer"):
        V.check_tracklets("x", "query", [(("x.jpg",), "7", 0)])
    # numpy integers (torchreid's MARS parser yields them) are fine
    V.check_tracklets("x", "train", [(("x.jpg",), np.int32(0), np.int64(1))], relabelled=True)


def test_unseen_test_camera(synth_root):
    train = [(("t0.jpg",), 0, 0), (("t1.jpg",), 1, 1)]
    test = {"query": [(("q.jpg",), 7, 0)],
            "gallery": [(("g1.jpg",), 7, 2), (("g2.jpg",), 8, 2), (("g3.jpg",), 8, 1)]}
    assert V.check_test_cameras("lsvid", train, test, use_sie=False) == [2]
    with pytest.raises(V.DataValidationError) as err:
        V.check_test_cameras("lsvid", train, test)
    msg = str(err.value)
    assert "test camera(s) [2] (0-based) occur in 2 test tracklets" in msg
    assert "camera 2: 2 tracklets, e.g. gallery tracklet 0 (first frame g1.jpg)" in msg
    assert "model.use_sie False" in msg and "data.allow_unseen_test_cameras True" in msg
    with pytest.warns(UserWarning, match=r"(?s)camera\(s\) \[2\].*Accepted explicitly"):
        assert V.check_test_cameras("lsvid", train, test, allow_unseen=True) == [2]
    assert V.check_test_cameras("lsvid", train, {"query": test["query"]}) == []


# ---------------------------------------------------------------------------------------------
# pre-checks before torchreid's parsers
# ---------------------------------------------------------------------------------------------
def test_prechecks_pass_on_generated_datasets(synth_root):
    for name in ("mars", "ilidsvid", "ilidsvid_first_half_train", "market1501"):
        V.precheck_dataset(name, synth_root)
    V.precheck_dataset("my_own_dataset", "/no/such/root")  # unknown: no-op
    with pytest.raises(FileNotFoundError, match="(?s)PRID2011 not found.*Expected layout"):
        V.precheck_dataset("prid2011", synth_root)


def _rewrite_mat(path: str, key: str, fn) -> None:
    arr = loadmat(path)[key]
    savemat(path, {key: fn(arr)})


def test_mars_camera_9_named_before_torchreid(synth_root, tmp_path):
    root = _copy(synth_root, tmp_path, "mars")
    info = osp.join(root, "mars", "info", "tracks_train_info.mat")
    names = open(osp.join(root, "mars", "info", "train_name.txt")).read().split()

    def cam9(arr):
        arr = arr.copy()
        arr[2, 3] = 9
        return arr

    _rewrite_mat(info, "track_train_info", cam9)
    row = loadmat(info)["track_train_info"][2]
    with pytest.raises(AssertionError):  # what torchreid alone says: nothing
        _video("mars", root)
    with pytest.raises(V.DataValidationError) as err:
        V.precheck_dataset("mars", root)
    msg = str(err.value)
    assert f"info/tracks_train_info.mat row 3 (start {row[0]}, end {row[1]}" in msg
    assert "camera 9 outside the allowed range 1..6" in msg
    assert f"frames {names[row[0] - 1]} .. {names[row[1] - 1]}" in msg
    assert f"info/train_name.txt lines {row[0]}-{row[1]}" in msg
    assert "MARS-evaluation" in msg


def test_mars_mixed_names_ranges_and_types(synth_root, tmp_path):
    root = _copy(synth_root, tmp_path, "mars")
    d = osp.join(root, "mars", "info")
    names = open(osp.join(d, "test_name.txt")).read().split()
    track = loadmat(osp.join(d, "tracks_test_info.mat"))["track_test_info"]
    r = int(np.flatnonzero(track[:, 2] > 0)[0])
    s, e = int(track[r, 0]), int(track[r, 1])
    names[e - 1] = "9999" + names[e - 1][4:]  # last frame of row r names another person
    with open(osp.join(d, "test_name.txt"), "w") as fh:
        fh.write("\n".join(names) + "\n")
    with pytest.raises(AssertionError, match="different person"):
        _video("mars", root)

    def bad(arr):
        arr = arr.copy()
        arr[r + 1, 1] = len(names) + 5  # end past the name list
        return arr

    _rewrite_mat(osp.join(d, "tracks_test_info.mat"), "track_test_info", bad)
    _rewrite_mat(osp.join(d, "query_IDX.mat"), "query_IDX",
                 lambda a: np.concatenate([a, [[len(track) + 1]]], axis=1))
    with pytest.raises(V.DataValidationError) as err:
        V.precheck_dataset("mars", root)
    msg = str(err.value)
    assert f"row {r + 1} (start {s}, end {e}," in msg
    assert "frames of different persons" in msg and "'9999'" in msg
    assert f"row {r + 2} " in msg and f"is not within 1..{len(names)}" in msg
    assert f"indices [{len(track) + 1}] outside the allowed range 1..{len(track)}" in msg

    _rewrite_mat(osp.join(d, "tracks_train_info.mat"), "track_train_info",
                 lambda a: a.astype(np.float64))
    with pytest.raises(V.DataValidationError, match="holds float64 values.*must be integers"):
        V.precheck_dataset("mars", root)


def test_ilidsvid_empty_person_folder_named(synth_root, tmp_path):
    root = _copy(synth_root, tmp_path, "ilids-vid")
    seq = osp.join(root, "ilids-vid", "i-LIDS-VID", "sequences")
    person = sorted(os.listdir(osp.join(seq, "cam2")))[1]
    for f in glob.glob(osp.join(seq, "cam2", person, "*.png")):
        os.remove(f)
    split = json.load(open(osp.join(root, "ilids-vid", "splits.json")))[0]
    with pytest.raises(AssertionError):
        _video("ilidsvid", root, split_id=0 if person in split["train"] + split["test"] else 1)
    with pytest.raises(V.DataValidationError) as err:
        V.precheck_dataset("ilidsvid_first_half_train", root)
    msg = str(err.value)
    assert f"{osp.join(seq, 'cam2', person)}: no .png frame in it" in msg
    assert "re-extract iLIDS-VID.tar" in msg


def test_ilidsvid_without_splits_json(synth_root, tmp_path):
    """torchreid builds splits.json from ls_set: 10 x 300 and equal cam1/cam2 person sets."""
    root = _copy(synth_root, tmp_path, "ilids-vid")
    ddir = osp.join(root, "ilids-vid")
    os.remove(osp.join(ddir, "splits.json"))
    seq = osp.join(ddir, "i-LIDS-VID", "sequences")
    only1 = sorted(os.listdir(osp.join(seq, "cam2")))[0]
    shutil.rmtree(osp.join(seq, "cam2", only1))
    with pytest.raises(AssertionError):
        _video("ilidsvid", root)
    with pytest.raises(V.DataValidationError) as err:
        V.precheck_dataset("ilidsvid", root)
    msg = str(err.value)
    assert f"1 person folder(s) only in sequences/cam1: ['{only1}']" in msg
    assert "'ls_set' has shape (2, 4); torchreid asserts (10, 300)" in msg
    assert f"{osp.join(seq, 'cam2', only1)}: missing" in msg


def _prid_tree(root: str, empty: str | None = None) -> None:
    base = osp.join(root, "prid2011", "prid_2011", "multi_shot")
    people = [f"person_{i:04d}" for i in range(1, 5)]
    for cam in ("cam_a", "cam_b"):
        for p in people + ([f"person_{9:04d}"] if cam == "cam_b" else []):
            os.makedirs(osp.join(base, cam, p))
            if (cam, p) != ("cam_b", empty):
                for k in range(1, 4):
                    Image.new("RGB", (8, 16)).save(osp.join(base, cam, p, f"{k:04d}.png"))
    with open(osp.join(root, "prid2011", "splits_prid2011.json"), "w") as fh:
        json.dump([{"train": people[:2], "test": people[2:]}], fh)


def test_prid2011_precheck(tmp_path):
    good = str(tmp_path / "good")
    _prid_tree(good)
    V.precheck_dataset("prid2011", good)
    assert len(_video("prid2011", good).train) == 4  # cam_b-only folders are allowed
    bad = str(tmp_path / "bad")
    _prid_tree(bad, empty="person_0003")
    with pytest.raises(AssertionError):
        _video("prid2011", bad)
    folder = osp.join(bad, "prid2011", "prid_2011", "multi_shot", "cam_b", "person_0003")
    with pytest.raises(V.DataValidationError, match=f"{folder}: no .png frame in it"):
        V.precheck_dataset("prid2011", bad)
    with open(osp.join(bad, "prid2011", "splits_prid2011.json"), "w") as fh:
        fh.write("[{]")
    with pytest.raises(V.DataValidationError, match="cannot read the split file"):
        V.precheck_dataset("prid2011", bad)


def test_market1501_precheck(synth_root, tmp_path):
    root = _copy(synth_root, tmp_path, "market1501")
    ddir = osp.join(root, "market1501", "Market-1501-v15.09.15")
    train = sorted(glob.glob(osp.join(ddir, "bounding_box_train", "*.jpg")))
    os.rename(train[0], osp.join(ddir, "bounding_box_train", "Thumbs.jpg"))
    os.rename(train[1], osp.join(ddir, "bounding_box_train", "0005_c7s1_000025_01.jpg"))
    init_image = compat.tr_module("data.datasets").init_image_dataset
    with pytest.raises(AttributeError):  # torchreid: 'NoneType' object has no attribute 'groups'
        init_image("market1501", root=root, transform=None, verbose=False)
    with pytest.raises(V.DataValidationError) as err:
        V.precheck_dataset("market1501", root)
    msg = str(err.value)
    assert "Thumbs.jpg: name does not match torchreid's pattern" in msg
    assert "0005_c7s1_000025_01.jpg: camera 7 outside the allowed range 1..6" in msg

    # a root whose path itself matches '<pid>_c<camera>' makes torchreid read every image wrongly
    odd = str(tmp_path / "run_2024_c1")
    shutil.copytree(osp.join(synth_root, "market1501"), osp.join(odd, "market1501"))
    with pytest.raises(V.DataValidationError, match="finds '2024_c1' in the folder part"):
        V.precheck_dataset("market1501", odd)
