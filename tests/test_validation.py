"""Up-front data validation: frame files (with the cache), tracklet labels / cameras, and each
dataset's checks, which replace torchreid's bare AssertionErrors (and its silent misreadings) by
messages naming the row, file or folder."""

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
from tfclip_torchreid.data import frame_checks as F
from tfclip_torchreid.data import tracklet_checks as T
from tfclip_torchreid.data.datamanager import parse_datasets
from tfclip_torchreid.data.datasets import diagnose_dataset, precheck_dataset
from tfclip_torchreid.data.errors import DataValidationError
from tfclip_torchreid.testing import make_synthetic_dataset, synthetic_info

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
    return F.frame_paths(ds.train, ds.query, ds.gallery)


# ---------------------------------------------------------------------------------------------
# frame files
# ---------------------------------------------------------------------------------------------
def test_check_frames_passes_and_caches(synth_root, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    root = _copy(synth_root, tmp_path, "mars")
    paths = _mars_frames(root)
    cache = str(tmp_path / "cache")
    calls = []
    real = F.frame_problem
    monkeypatch.setattr(F, "frame_problem", lambda p: calls.append(p) or real(p))
    F.check_frames(paths + paths[:5], cache_dir=cache, verbose=True)  # duplicates read once
    assert sorted(calls) == sorted(paths)
    assert "checked" in caplog.text
    caplog.clear()
    assert len(os.listdir(cache)) == 1

    def no_reading(path):
        raise AssertionError(f"read {path} although the cache says the list is valid")

    monkeypatch.setattr(F, "frame_problem", no_reading)
    F.check_frames(list(reversed(paths)), cache_dir=cache, verbose=True)  # order-independent key
    assert "already checked" in caplog.text

    # a rewritten file (other mtime) invalidates the entry: the list is read again
    st = os.stat(paths[3])
    os.utime(paths[3], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(AssertionError, match="although the cache"):
        F.check_frames(paths, cache_dir=cache)

    # a corrupt cache file is ignored, the frames are checked again and the entry rewritten
    calls.clear()
    monkeypatch.setattr(F, "frame_problem", lambda p: calls.append(p) or real(p))
    F.check_frames(paths, cache_dir=cache)  # new entry for the new mtime
    entry = max(glob.glob(osp.join(cache, "*.json")), key=os.path.getmtime)
    with open(entry, "w") as fh:
        fh.write("{not json")
    calls.clear()
    with pytest.warns(UserWarning, match="frame-check cache entry .* is corrupt"):
        F.check_frames(paths, cache_dir=cache)
    assert len(calls) == len(paths)
    assert json.load(open(entry))["num_files"] == len(paths)

    # cache_dir="" disables the cache; TFCLIP_CACHE moves the default
    calls.clear()
    F.check_frames(paths, cache_dir="")
    assert len(calls) == len(paths)
    monkeypatch.setenv("TFCLIP_CACHE", str(tmp_path / "envcache"))
    assert F.default_cache_dir() == str(tmp_path / "envcache" / "frame_checks")


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
    with pytest.raises(F.FrameCheckError) as err:
        F.check_frames(paths, cache_dir=cache)
    msg = str(err.value)
    assert f"4 of {len(paths)} frame files are bad" in msg
    assert "1 empty, 1 missing, 1 not an image, 1 truncated" in msg
    for path, reason in bad.items():
        assert f"{path}: {reason}" in msg
    assert "re-extract" in msg
    assert dict(err.value.problems).keys() == bad.keys()
    assert not osp.exists(cache) or not os.listdir(cache)  # failures are never cached

    with pytest.raises(F.FrameCheckError, match=r"(?s)First 2:.*and 2 more"):
        F.check_frames(paths, cache_dir="", max_listed=2)


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
    assert F.frame_problem(good) is None and F.frame_problem(bmp) is None
    assert F.frame_problem(cut).startswith("truncated (PNG")
    with pytest.raises(F.FrameCheckError) as err:
        F.check_frames([good, cut, bmp, folder], cache_dir="")
    assert [p for p, _ in err.value.problems] == [cut, folder]
    assert "not a regular file" in str(err.value)


def test_check_frames_worker_pool(synth_root, tmp_path, monkeypatch):
    """The parallel path (forked workers on Linux) finds the same files in the same order."""
    root = _copy(synth_root, tmp_path, "mars")
    paths = _mars_frames(root)
    bad = _corrupt(paths)
    monkeypatch.setattr(F, "_SERIAL_BELOW", 8)
    monkeypatch.setattr(F, "_CHUNK", 16)
    with pytest.raises(F.FrameCheckError) as err:
        F.check_frames(paths, cache_dir="", workers=2)
    assert [p for p, _ in err.value.problems] == [p for p in paths if p in bad]


# ---------------------------------------------------------------------------------------------
# parsed tracklets
# ---------------------------------------------------------------------------------------------
def test_check_tracklets_messages():
    good = [(("a/1.jpg", "a/2.jpg"), 0, 0), (("b/1.jpg",), 1, 5, 0)]
    T.check_tracklets("mars", "train", good, num_classes=2, num_cameras=6, relabelled=True)
    T.check_tracklets("market1501", "query", [("q/0002_c1.jpg", 2, 0, 0)], num_cameras=6)

    with pytest.raises(DataValidationError) as err:
        T.check_tracklets("mars", "gallery", good + [((), 4, 1), (("c/9.jpg",), 4, 6)],
                          num_cameras=6)
    msg = str(err.value)
    assert msg.startswith("mars gallery: 2 problem(s) in 4 tracklets:")
    assert "tracklet 2 (first frame <no frames>): no frames" in msg
    assert "tracklet 3 (first frame c/9.jpg): camera id 6 outside the allowed range 0..5" in msg
    assert "camera_num >= 7" in msg and "at least one frame" in msg

    with pytest.raises(DataValidationError) as err:
        T.check_tracklets("lsvid", "train", [(("x.jpg",), 0, 0), (("y.jpg",), 3, -1)],
                          num_classes=3, relabelled=True)
    msg = str(err.value)
    assert "tracklet 1 (first frame y.jpg): label 3 outside the allowed range 0..2" in msg
    assert "camera id -1 is negative" in msg
    assert "labels 1, 2 (2 of 0..2) have no tracklet" in msg
    assert "relabel the training pids to 0..Y-1" in msg

    with pytest.raises(DataValidationError, match="pid '7' is not an integer"):
        T.check_tracklets("x", "query", [(("x.jpg",), "7", 0)])
    # numpy integers (torchreid's MARS parser yields them) are fine
    T.check_tracklets("x", "train", [(("x.jpg",), np.int32(0), np.int64(1))], relabelled=True)


def test_unseen_test_camera(synth_root):
    train = [(("t0.jpg",), 0, 0), (("t1.jpg",), 1, 1)]
    test = {"query": [(("q.jpg",), 7, 0)],
            "gallery": [(("g1.jpg",), 7, 2), (("g2.jpg",), 8, 2), (("g3.jpg",), 8, 1)]}
    assert T.check_test_cameras("lsvid", train, test, use_sie=False) == [2]
    with pytest.raises(DataValidationError) as err:
        T.check_test_cameras("lsvid", train, test)
    msg = str(err.value)
    assert "test camera(s) [2] (0-based) occur in 2 test tracklets" in msg
    assert "camera 2: 2 tracklets, e.g. gallery tracklet 0 (first frame g1.jpg)" in msg
    assert "model.use_sie False" in msg and "data.allow_unseen_test_cameras True" in msg
    with pytest.warns(UserWarning, match=r"(?s)camera\(s\) \[2\].*Accepted explicitly"):
        assert T.check_test_cameras("lsvid", train, test, allow_unseen=True) == [2]
    assert T.check_test_cameras("lsvid", train, {"query": test["query"]}) == []


# ---------------------------------------------------------------------------------------------
# each dataset's checks: before torchreid parses (precheck) and after it stopped (diagnose)
# ---------------------------------------------------------------------------------------------
def _parse(name: str, root: str):
    """The data manager's parse: prechecks, torchreid's parser, a diagnosis if it stops."""
    kind = "image" if name in compat.image_dataset_registry() else "video"
    return parse_datasets([name], root, kind, transform=_identity)[name]


@pytest.mark.parametrize("name,folder", [
    ("mars", "mars"), ("ilidsvid", "ilids-vid"), ("ilidsvid_first_half_train", "ilids-vid"),
    ("market1501", "market1501"),
])
def test_checks_pass_on_generated_datasets_and_torchreid_parses_them(synth_root, name, folder):
    ddir = osp.join(synth_root, folder)
    assert precheck_dataset(name, synth_root) == ddir
    assert diagnose_dataset(name, synth_root) is None  # nothing wrong to report
    ds = _parse(name, synth_root)
    expected = synthetic_info(ddir)["expected"]  # what the generator wrote
    unit = "images" if name == "market1501" else "tracklets"
    for split in ("train", "query", "gallery"):
        assert len(getattr(ds, split)) == expected[split][unit], split


def test_unknown_and_missing_datasets(synth_root):
    assert precheck_dataset("my_own_dataset", "/no/such/root") is None  # unknown: not checked
    assert diagnose_dataset("my_own_dataset", "/no/such/root") is None
    with pytest.raises(FileNotFoundError, match="(?s)PRID2011 not found.*Expected layout"):
        precheck_dataset("prid2011", synth_root)


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
    with pytest.raises(DataValidationError) as err:
        _parse("mars", root)
    assert err.value.__cause__ is None  # found before torchreid parsed anything
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
    with pytest.raises(DataValidationError) as err:
        precheck_dataset("mars", root)
    msg = str(err.value)
    assert f"row {r + 1} (start {s}, end {e}," in msg
    assert "frames of different persons" in msg and "'9999'" in msg
    assert f"row {r + 2} " in msg and f"is not within 1..{len(names)}" in msg
    assert f"indices [{len(track) + 1}] outside the allowed range 1..{len(track)}" in msg

    _rewrite_mat(osp.join(d, "tracks_train_info.mat"), "track_train_info",
                 lambda a: a.astype(np.float64))
    with pytest.raises(DataValidationError, match="holds float64 values.*must be integers"):
        precheck_dataset("mars", root)


def test_ilidsvid_empty_person_folder_named(synth_root, tmp_path):
    root = _copy(synth_root, tmp_path, "ilids-vid")
    seq = osp.join(root, "ilids-vid", "i-LIDS-VID", "sequences")
    person = sorted(os.listdir(osp.join(seq, "cam2")))[1]
    for f in glob.glob(osp.join(seq, "cam2", person, "*.png")):
        os.remove(f)
    split = json.load(open(osp.join(root, "ilids-vid", "splits.json")))[0]
    with pytest.raises(AssertionError):
        _video("ilidsvid", root, split_id=0 if person in split["train"] + split["test"] else 1)
    # nothing is read twice before parsing: the folders are looked at once torchreid stopped
    assert precheck_dataset("ilidsvid_first_half_train", root) == osp.join(root, "ilids-vid")
    with pytest.raises(DataValidationError) as err:
        _parse("ilidsvid_first_half_train", root)
    assert isinstance(err.value.__cause__, AssertionError)  # torchreid's, chained
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
    with pytest.raises(DataValidationError) as err:
        _parse("ilidsvid", root)
    assert err.value.__cause__ is None  # ls_set is checked before torchreid turns it into splits
    assert not osp.exists(osp.join(ddir, "splits.json"))
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
    assert precheck_dataset("prid2011", good) == osp.join(good, "prid2011")
    assert len(_parse("prid2011", good).train) == 4  # cam_b-only folders are allowed
    bad = str(tmp_path / "bad")
    _prid_tree(bad, empty="person_0003")
    with pytest.raises(AssertionError):
        _video("prid2011", bad)
    folder = osp.join(bad, "prid2011", "prid_2011", "multi_shot", "cam_b", "person_0003")
    with pytest.raises(DataValidationError, match=f"{folder}: no .png frame in it") as err:
        _parse("prid2011", bad)
    assert isinstance(err.value.__cause__, AssertionError)
    with open(osp.join(bad, "prid2011", "splits_prid2011.json"), "w") as fh:
        fh.write("[{]")
    with pytest.raises(DataValidationError, match="cannot read the split file") as err:
        _parse("prid2011", bad)
    assert isinstance(err.value.__cause__, ValueError)  # json's error, which names no file


def test_market1501_precheck(synth_root, tmp_path):
    root = _copy(synth_root, tmp_path, "market1501")
    ddir = osp.join(root, "market1501", "Market-1501-v15.09.15")
    train = sorted(glob.glob(osp.join(ddir, "bounding_box_train", "*.jpg")))
    os.rename(train[0], osp.join(ddir, "bounding_box_train", "Thumbs.jpg"))
    os.rename(train[1], osp.join(ddir, "bounding_box_train", "0005_c7s1_000025_01.jpg"))
    init_image = compat.tr_module("data.datasets").init_image_dataset
    with pytest.raises(AttributeError):  # torchreid: 'NoneType' object has no attribute 'groups'
        init_image("market1501", root=root, transform=None, verbose=False)
    with pytest.raises(DataValidationError) as err:
        _parse("market1501", root)
    assert isinstance(err.value.__cause__, AttributeError)
    msg = str(err.value)
    assert "Thumbs.jpg: name does not match torchreid's pattern" in msg
    assert "0005_c7s1_000025_01.jpg: camera 7 outside the allowed range 1..6" in msg

    # a root whose path itself matches '<pid>_c<camera>' makes torchreid read every image wrongly
    odd = str(tmp_path / "run_2024_c1")
    shutil.copytree(osp.join(synth_root, "market1501"), osp.join(odd, "market1501"))
    with pytest.raises(DataValidationError, match="finds '2024_c1' in the folder part"):
        precheck_dataset("market1501", odd)
    # an empty split: torchreid's dataset class stops on it with "list index out of range"
    empty = _copy(synth_root, tmp_path / "empty", "market1501")
    query = osp.join(empty, "market1501", "Market-1501-v15.09.15", "query")
    for f in glob.glob(osp.join(query, "*.jpg")):
        os.remove(f)
    with pytest.raises(IndexError):
        init_image("market1501", root=empty, transform=None, verbose=False)
    with pytest.raises(DataValidationError, match=f"{query}: no usable .jpg image") as err:
        _parse("market1501", empty)
    assert isinstance(err.value.__cause__, IndexError)


def _duke_tree(root: str) -> str:
    """A tiny DukeMTMC-reID: 4 train images (ids 1, 2), 1 query (id 3), 2 gallery (ids 3, 4)."""
    base = osp.join(root, "dukemtmc-reid", "DukeMTMC-reID")
    images = {"bounding_box_train": [(1, 1), (1, 2), (2, 1), (2, 2)], "query": [(3, 1)],
              "bounding_box_test": [(3, 2), (4, 3)]}
    for sub, items in images.items():
        os.makedirs(osp.join(base, sub))
        for k, (pid, cam) in enumerate(items):
            Image.new("RGB", (8, 16)).save(osp.join(base, sub, f"{pid:04d}_c{cam}_f{k:07d}.jpg"))
    return base


def test_dukemtmcreid_checks(tmp_path):
    good = str(tmp_path / "good")
    base = _duke_tree(good)
    assert precheck_dataset("dukemtmcreid", good) == osp.join(good, "dukemtmc-reid")
    ds = _parse("dukemtmcreid", good)
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (4, 1, 2)
    assert sorted(t[2] for t in ds.gallery) == [1, 2]  # cameras 2 and 3, 0-based

    # a missing folder: the expected tree instead of torchreid's download attempt
    shutil.rmtree(osp.join(base, "query"))
    with pytest.raises(FileNotFoundError) as err:
        _parse("dukemtmcreid", good)
    msg = str(err.value)
    assert f"missing {osp.join(good, 'dukemtmc-reid', 'DukeMTMC-reID/query/')}" in msg
    assert "Expected layout" in msg and "0001_c2_f0046182.jpg" in msg

    # wrong file names: named after torchreid stopped on them
    bad = str(tmp_path / "bad")
    base = _duke_tree(bad)
    train = osp.join(base, "bounding_box_train")
    os.rename(osp.join(train, "0001_c1_f0000000.jpg"), osp.join(train, "0001_cam1.jpg"))
    os.rename(osp.join(train, "0002_c2_f0000003.jpg"), osp.join(train, "0002_c9_f0000003.jpg"))
    with pytest.raises(DataValidationError) as err:
        _parse("dukemtmcreid", bad)
    assert isinstance(err.value.__cause__, AttributeError)  # torchreid: None has no 'groups'
    msg = str(err.value)
    assert f"{osp.join(train, '0001_cam1.jpg')}: name does not match torchreid's pattern" in msg
    assert "0002_c9_f0000003.jpg: camera 9 outside the allowed range 1..8" in msg
    os.remove(osp.join(train, "0001_cam1.jpg"))
    with pytest.raises(DataValidationError, match="camera 9 outside") as err:
        _parse("dukemtmcreid", bad)
    assert isinstance(err.value.__cause__, AssertionError)

    # a root that matches the pattern: torchreid reads one pid and camera for every image
    odd = str(tmp_path / "run_0005_c1")
    _duke_tree(odd)
    init_image = compat.tr_module("data.datasets").init_image_dataset
    silent = init_image("dukemtmcreid", root=odd, transform=None, verbose=False)
    assert {(t[1], t[2]) for t in silent.query + silent.gallery} == {(5, 0)}  # all wrong
    with pytest.raises(DataValidationError, match="finds '0005_c1' in the folder part") as err:
        _parse("dukemtmcreid", odd)
    assert err.value.__cause__ is None  # before torchreid


def _msmt_tree(root: str, version: str = "MSMT17_V1") -> str:
    """A tiny MSMT17: 4 train images (ids 0, 1), 1 val, 1 query (id 0), 2 gallery (ids 0, 1)."""
    base = osp.join(root, "msmt17", version)
    train, test = ("train", "test") if version == "MSMT17_V1" else ("mask_train_v2",
                                                                    "mask_test_v2")
    lists = {"list_train.txt": (train, [(0, 1), (0, 2), (1, 1), (1, 2)]),
             "list_val.txt": (train, [(1, 3)]),
             "list_query.txt": (test, [(0, 3)]), "list_gallery.txt": (test, [(0, 4), (1, 5)])}
    for name, (folder, items) in lists.items():
        lines = []
        for k, (pid, cam) in enumerate(items):
            rel = f"{pid:04d}/{pid:04d}_{k:03d}_{cam:02d}_0303morning_{k:04d}_0.jpg"
            os.makedirs(osp.join(base, folder, f"{pid:04d}"), exist_ok=True)
            Image.new("RGB", (8, 16)).save(osp.join(base, folder, rel))
            lines.append(f"{rel} {pid}\n")
        with open(osp.join(base, name), "w") as fh:
            fh.writelines(lines)
    return base


def test_msmt17_checks(tmp_path):
    good = str(tmp_path / "good")
    base = _msmt_tree(good)
    assert precheck_dataset("msmt17", good) == osp.join(good, "msmt17")
    ds = _parse("msmt17", good)
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (4, 1, 2)
    assert [t[2] for t in ds.gallery] == [3, 4]  # cameras 4 and 5, 0-based

    # a missing folder
    shutil.rmtree(osp.join(base, "test"))
    with pytest.raises(FileNotFoundError) as err:
        _parse("msmt17", good)
    msg = str(err.value)
    assert f"missing {osp.join(good, 'msmt17', 'MSMT17_V1/test/')}" in msg
    assert "Expected layout" in msg and "list_gallery.txt" in msg

    # a bad list file: a line without its pid, a pid that is no number
    bad = str(tmp_path / "bad")
    base = _msmt_tree(bad)
    query = osp.join(base, "list_query.txt")
    line = open(query).read()
    with open(query, "w") as fh:
        fh.write(line.split()[0] + "\n" + line.replace(" 0\n", " x\n"))
    with pytest.raises(ValueError):  # torchreid alone: "not enough values to unpack"
        compat.tr_module("data.datasets").init_image_dataset("msmt17", root=bad, transform=None,
                                                             verbose=False)
    with pytest.raises(DataValidationError) as err:
        _parse("msmt17", bad)
    assert isinstance(err.value.__cause__, ValueError)
    msg = str(err.value)
    assert "MSMT17_V1/list_query.txt line 1: '0000/0000_000_03_0303morning_0000_0.jpg' is not " \
           "'<image path> <pid>'" in msg
    assert "MSMT17_V1/list_query.txt line 2: pid 'x' is not an integer" in msg
    with open(query, "w") as fh:
        fh.write(line)

    # a wrong file name: no camera number in its 3rd '_' field
    gallery = osp.join(base, "list_gallery.txt")
    rows = open(gallery).read().splitlines()
    os.rename(osp.join(base, "test", rows[1].split()[0]), osp.join(base, "test", "0001/0001_x.jpg"))
    with open(gallery, "w") as fh:
        fh.write(f"{rows[0]}\n0001/0001_x.jpg 1\n")
    with pytest.raises(DataValidationError) as err:
        _parse("msmt17", bad)
    assert isinstance(err.value.__cause__, IndexError)
    msg = str(err.value)
    assert ("MSMT17_V1/list_gallery.txt line 2: the name '0001/0001_x.jpg' has no camera number "
            "as its 3rd '_' field") in msg
    assert len(msg.splitlines()) == 3  # header, the one problem, the fix

    # V2 complete, but an incomplete V1 folder: torchreid takes V1 whenever it exists
    both = str(tmp_path / "both")
    _msmt_tree(both, "MSMT17_V2")
    os.makedirs(osp.join(both, "msmt17", "MSMT17_V1", "train"))
    with pytest.raises(DataValidationError, match="torchreid reads MSMT17_V1/") as err:
        _parse("msmt17", both)
    assert f"{osp.join(both, 'msmt17', 'MSMT17_V1', 'list_train.txt')}: missing" in str(err.value)
    shutil.rmtree(osp.join(both, "msmt17", "MSMT17_V1"))
    assert len(_parse("msmt17", both).gallery) == 2
