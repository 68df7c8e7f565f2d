"""Datasets: LS-VID loader, torchreid's MARS / iLIDS-VID on synthetic trees, layout errors,
registration and split helpers."""

from __future__ import annotations

import glob
import json
import os
import os.path as osp
import shutil
import warnings

import h5py
import numpy as np
import pytest

import tfclip_torchreid  # noqa: F401  (registers the datasets)
from tfclip_torchreid import compat
from tfclip_torchreid.data import datasets as dsets
from tfclip_torchreid.data.datasets import check_dataset_layout, ilidsvid
from tfclip_torchreid.data.datasets.lsvid import LSVID, chunk_tracklets, read_query_indices
from tfclip_torchreid.testing import make_synthetic_dataset, synthetic_info


def assert_query_protocol(query, gallery):
    """One query per (identity, camera); every query has a cross-camera gallery match; some
    queries also have a same-identity same-camera gallery item (removed by the evaluation)."""
    q_keys = [(t[1], t[2]) for t in query]
    assert len(q_keys) == len(set(q_keys))
    same_cam = 0
    for pid, cam in q_keys:
        assert any(g[1] == pid and g[2] != cam for g in gallery)
        same_cam += any(g[1] == pid and g[2] == cam for g in gallery)
    assert same_cam >= 1


def _identity(x):
    return x


def _load(name: str, root: str, mode: str = "train", **kw):
    return compat.init_video_dataset(name, root=root, transform=_identity, mode=mode,
                                     verbose=False, **kw)


def _snapshot(d: str) -> dict:
    out = {}
    for dp, dns, fs in os.walk(d):
        for n in fs + dns:
            st = os.stat(osp.join(dp, n))
            out[osp.join(dp, n)] = (st.st_size, st.st_mtime_ns)
    return out


def _stats(items) -> dict:
    return {"tracklets": len(items), "ids": len({t[1] for t in items}),
            "cams": len({t[2] for t in items})}


# ---------------------------------------------------------------------------------------------
# LS-VID on generated trees
# ---------------------------------------------------------------------------------------------
LSVID_SIZES = dict(height=32, width=16, num_train_ids=4, num_test_ids=4, num_gallery_ids=2,
                   num_cams=5, num_junk=2, min_len=3, max_len=6, train_min_len=20,
                   train_max_len=110)


@pytest.mark.parametrize("layout", ["flat", "info"])
def test_lsvid_generated_tree(tmp_path, layout):
    d = make_synthetic_dataset("lsvid", str(tmp_path), seed=1, verbose=False, layout=layout,
                               **LSVID_SIZES)
    exp = synthetic_info(d)["expected"]
    before = _snapshot(str(tmp_path))
    full = _load("lsvid_unchunked", str(tmp_path))
    chunked = _load("lsvid", str(tmp_path))
    assert _snapshot(str(tmp_path)) == before  # nothing written into the dataset folder

    assert _stats(full.train) == {k: exp["train"][k] for k in ("tracklets", "ids", "cams")}
    assert _stats(full.query) == exp["query"]
    assert _stats(full.gallery) == exp["gallery"]
    assert full.num_train_pids == 4 and full.num_train_cams == 5
    assert len(chunked.train) == exp["train"]["chunks_48"]
    assert chunked.chunk_stats["kept_whole_ids"] == 0
    assert chunked.num_train_pids == 4  # the generator gives every identity one >= 48 tracklet

    # junk rows dropped; cameras 0-based from the 3rd field of the frame name
    for items in (full.train, full.query, full.gallery):
        for paths, pid, cam, _ in items:
            assert pid != -1 and "junk" not in paths[0]
            assert cam == int(osp.basename(paths[0]).split("_")[2]) - 1
            assert list(paths) == sorted(paths) and all(osp.isabs(p) for p in paths)
    # train labels are the sorted original pids (folder names) -> 0..Y-1
    pairs = sorted({(int(osp.basename(osp.dirname(p[0]))), lab) for p, lab, _, _ in full.train})
    assert [lab for _, lab in pairs] == list(range(4))
    # query and gallery are disjoint and every query has a cross-camera match in the gallery
    assert not {t[0] for t in full.query} & {t[0] for t in full.gallery}
    for _, pid, cam, _ in full.query:
        assert any(g[1] == pid and g[2] != cam for g in full.gallery)
    # chunks: 48 frames, the last one 48..95; every frame of a >= 48 tracklet is used once,
    # shorter tracklets are dropped
    lengths = [len(t[0]) for t in chunked.train]
    assert min(lengths) >= 48 and max(lengths) <= 95
    assert sum(lengths) == sum(n for n in exp["train"]["frames"] if n >= 48)
    assert min(exp["train"]["frames"]) < 48  # the drop rule is exercised


def _lsvid_tree(root, layout="flat", dirname="lsvid", mat="v73", query=(3, 1)) -> str:
    """A hand-made LS-VID folder with empty frame files (the loader never opens images)."""
    d = osp.join(root, dirname)
    train = [  # (prefix, pid, num_frames, cam)
        ("tracklet_train/0042/0042_001_03_", 42, 47, 3),
        ("tracklet_train/0042/0042_002_03_", 42, 48, 3),
        ("tracklet_train/0042/0042_003_07_", 42, 95, 7),
        ("tracklet_train/0042/0042_004_07_", 42, 96, 7),
        ("tracklet_train/0042/0042_005_12_", 42, 150, 12),
        ("tracklet_train/0007/0007_001_01_", 7, 10, 1),
        ("tracklet_train/0007/0007_002_02_", 7, 20, 2),
        ("tracklet_train/0500/0500_001_15_", 500, 60, 15),
    ]
    test = [
        ("tracklet_test/0003/0003_001_01_", 3, 5, 1),
        ("tracklet_test/0003/0003_002_02_", 3, 6, 2),
        ("tracklet_test/0009/0009_001_04_", 9, 4, 4),
        ("tracklet_test/junk/junk_001_05_", -1, 3, 5),
        ("tracklet_test/0009/0009_002_01_", 9, 7, 1),
    ]
    for prefix, _, n, _ in train + test:
        os.makedirs(osp.join(d, osp.dirname(prefix)), exist_ok=True)
        for i in range(n):
            open(osp.join(d, f"{prefix}{i + 1:04d}.jpg"), "w").close()
    base = "info" if layout == "info" else ""
    lists = osp.join(d, base, "list_sequence")
    os.makedirs(lists)
    order = [5, 0, 7, 1, 2, 6, 3, 4]  # not sorted: relabelling must not depend on line order
    with open(osp.join(lists, "list_seq_train.txt"), "w") as fh:
        fh.write("".join(f"{train[i][0]} {train[i][1]}\n" for i in order))
    with open(osp.join(lists, "list_seq_test.txt"), "w") as fh:
        fh.write("".join(f"{p} {pid}\n" for p, pid, _, _ in test))
    mat_dir = osp.join(d, "info", "data") if layout == "info" else osp.join(d, "test", "data")
    os.makedirs(mat_dir)
    q = np.asarray([query], np.float64)
    if mat == "v73":
        with h5py.File(osp.join(mat_dir, "info_test.mat"), "w") as fh:
            fh["query"] = q
            fh["gallery"] = np.arange(1, 6, dtype=np.float64)[None]
    else:
        from scipy.io import savemat

        savemat(osp.join(mat_dir, "info_test.mat"), {"query": q.T})  # a column, v5 format
    return d


@pytest.mark.parametrize("layout,dirname,mat", [("flat", "lsvid", "v73"), ("info", "LS-VID", "v73"),
                                                ("info", "lsvid", "v5")])
def test_lsvid_handmade_tree_and_chunk_rule(tmp_path, layout, dirname, mat):
    d = _lsvid_tree(str(tmp_path), layout, dirname, mat)
    before = _snapshot(str(tmp_path))
    full = LSVID(root=str(tmp_path), train_chunk=0, transform=_identity, verbose=False)
    with pytest.warns(UserWarning, match="1 training identities have only tracklets shorter"):
        ds = LSVID(root=str(tmp_path), transform=_identity, verbose=False)
    assert _snapshot(str(tmp_path)) == before
    assert ds.dataset_dir == d

    # relabel: sorted original pids 7, 42, 500 -> 0, 1, 2
    lab = {osp.basename(t[0][0]).split("_")[0]: t[1] for t in full.train}
    assert lab == {"0007": 0, "0042": 1, "0500": 2}
    assert sorted(t[2] for t in full.train) == [0, 1, 2, 2, 6, 6, 11, 14]
    assert ds.num_train_pids == 3

    # chunk rule on identity 42: 47 dropped, 48 -> [48], 95 -> [95], 96 -> [48, 48],
    # 150 -> [48, 48, 54]; identity 500: 60 -> [60]; identity 7 (all < 48) kept whole: [10, 20]
    by_pid = {}
    for paths, pid, _, _ in ds.train:
        by_pid.setdefault(pid, []).append(len(paths))
    assert sorted(by_pid[1]) == sorted([48, 95, 48, 48, 48, 48, 54])
    assert by_pid[2] == [60] and sorted(by_pid[0]) == [10, 20]
    assert ds.chunk_stats == {"tracklets": 8, "chunks": 10, "dropped": 1, "kept_whole_ids": 1}
    first = [t[0] for t in ds.train if t[1] == 1 and len(t[0]) == 54][0]
    assert osp.basename(first[0]) == "0042_005_12_0097.jpg"  # chunks are consecutive frames

    # query = test rows 3 and 1 (1-based, in file order), junk dropped from the gallery
    assert [(t[1], t[2], len(t[0])) for t in ds.query] == [(9, 3, 4), (3, 0, 5)]
    assert [(t[1], t[2]) for t in ds.gallery] == [(3, 1), (9, 0)]


def test_lsvid_chunking_and_query_helpers(tmp_path):
    t = [(tuple(range(n)), pid, 0) for n, pid in ((47, 0), (48, 0), (95, 0), (96, 0), (20, 1))]
    chunks, stats = chunk_tracklets(t, 48)
    assert [len(c[0]) for c in chunks] == [48, 95, 48, 48, 20]
    assert chunks[3][0] == tuple(range(48, 96))
    assert stats == {"tracklets": 5, "chunks": 5, "dropped": 1, "kept_whole_ids": 1}
    assert chunk_tracklets(t, 0)[0] == t

    path = str(tmp_path / "q.mat")
    with h5py.File(path, "w") as fh:
        fh["query"] = np.array([[2.0, 5.0], [9.0, 9.0]])  # row 0 is used
    np.testing.assert_array_equal(read_query_indices(path, 5), [1, 4])
    with pytest.raises(ValueError, match="exceeds"):
        read_query_indices(path, 4)
    with h5py.File(path, "w") as fh:
        fh["probe"] = np.array([[1.0]])
    with pytest.raises(ValueError, match="no 'query'"):
        read_query_indices(path)


def test_lsvid_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="list_seq_train.txt"):
        LSVID(root=str(tmp_path), transform=_identity)
    with pytest.raises(FileNotFoundError, match="LS-VID not found"):
        _load("lsvid", str(tmp_path))
    d = _lsvid_tree(str(tmp_path))
    os.remove(osp.join(d, "tracklet_test/0009/0009_001_04_0001.jpg"))
    for i in range(2, 5):
        os.remove(osp.join(d, f"tracklet_test/0009/0009_001_04_{i:04d}.jpg"))
    with pytest.raises(FileNotFoundError, match="no frame matches .*0009_001_04_"):
        LSVID(root=str(tmp_path), transform=_identity, verbose=False)
    with pytest.raises(ValueError, match="train_chunk"):
        LSVID(root=str(tmp_path), train_chunk=-2, transform=_identity)


# ---------------------------------------------------------------------------------------------
# torchreid's own loaders on generated MARS / iLIDS-VID trees
# ---------------------------------------------------------------------------------------------
def test_mars_generated_tree_with_torchreid_loader(tmp_path):
    d = make_synthetic_dataset("mars", str(tmp_path), seed=2, verbose=False, height=32, width=16,
                               num_train_ids=5, num_test_ids=6, num_cams=5, num_distractors=6,
                               num_junk=2, min_len=3, max_len=5)
    exp = synthetic_info(d)["expected"]
    ds = _load("mars", str(tmp_path))
    assert _stats(ds.train) == exp["train"] == {"tracklets": exp["train"]["tracklets"], "ids": 5,
                                                "cams": 5}
    assert _stats(ds.query) == exp["query"] and exp["query"]["ids"] == 6
    assert _stats(ds.gallery) == exp["gallery"]
    assert ds.num_train_pids == 5 and ds.num_train_cams == 5
    assert sorted({t[1] for t in ds.train}) == list(range(5))
    g_pids = [t[1] for t in ds.gallery]
    assert g_pids.count(0) == 6 and -1 not in g_pids  # distractors kept, junk dropped
    assert exp["junk_tracklets"] == 2 and osp.isdir(osp.join(d, "bbox_test", "00-1"))
    assert_query_protocol(ds.query, ds.gallery)
    # frames in temporal order, images readable by torchreid
    paths = ds.train[0][0]
    assert list(paths) == sorted(paths)
    img = compat.read_image(paths[0])
    assert img.size == (16, 32)


def test_ilidsvid_generated_tree_with_torchreid_loader(tmp_path):
    d = make_synthetic_dataset("ilidsvid", str(tmp_path), seed=0, verbose=False, height=32,
                               width=16, num_ids=6, num_splits=3, min_len=3, max_len=5)
    splits = json.load(open(osp.join(d, "splits.json")))
    from scipy.io import loadmat

    ls_set = loadmat(osp.join(d, "train-test people splits", "train_test_splits_ilidsvid.mat"))
    assert ls_set["ls_set"].shape == (3, 6)
    assert ilidsvid.num_splits(osp.join(str(tmp_path), "ilids-vid")) == 3
    assert dsets.num_splits("ilidsvid", str(tmp_path)) == 3
    assert dsets.num_splits("ilidsvid_first_half_train", str(tmp_path)) == 3
    for split_id in (0, 2):
        ds = _load("ilidsvid", str(tmp_path), split_id=split_id)
        assert _stats(ds.train) == {"tracklets": 6, "ids": 3, "cams": 2}
        assert _stats(ds.query) == {"tracklets": 3, "ids": 3, "cams": 1}
        assert _stats(ds.gallery) == {"tracklets": 3, "ids": 3, "cams": 1}
        assert {t[2] for t in ds.query} == {0} and {t[2] for t in ds.gallery} == {1}
        person = {osp.basename(osp.dirname(t[0][0])) for t in ds.train}
        assert person == set(splits[split_id]["train"])
        assert {osp.basename(osp.dirname(t[0][0])) for t in ds.query} == set(
            splits[split_id]["test"])
        swapped = _load("ilidsvid_first_half_train", str(tmp_path), split_id=split_id)
        assert {osp.basename(osp.dirname(t[0][0])) for t in swapped.train} == set(
            splits[split_id]["test"])
        assert _stats(swapped.query) == {"tracklets": 3, "ids": 3, "cams": 1}
    with pytest.raises(ValueError, match="split_id exceeds range"):
        _load("ilidsvid", str(tmp_path), split_id=3)
    os.remove(osp.join(d, "splits.json"))  # before torchreid's first use: the rows of ls_set
    assert ilidsvid.num_splits(d) == 3


# ---------------------------------------------------------------------------------------------
# layouts, registration, split counts
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,needle", [
    ("mars", "query_IDX.mat"),
    ("ilidsvid", "train-test people splits"),
    ("prid2011", "splits_prid2011.json"),
    ("dukemtmcvidreid", "DukeMTMC-VideoReID/"),
    ("lsvid", "list_seq_train.txt"),
    ("lsvid_unchunked", "info_test.mat"),
    ("market1501", "Market-1501-v15.09.15/"),
    ("msmt17", "list_gallery.txt"),
    ("dukemtmcreid", "DukeMTMC-reID/"),
])
def test_missing_dataset_shows_expected_layout(tmp_path, name, needle):
    with pytest.raises(FileNotFoundError) as err:
        check_dataset_layout(name, str(tmp_path))
    msg = str(err.value)
    assert str(tmp_path) in msg and "Expected layout" in msg and needle in msg
    assert "└──" in msg and "Get the data:" in msg
    assert ("make_synthetic_dataset.py --format market1501" in msg) == (name == "market1501")
    assert os.listdir(tmp_path) == []  # nothing created (torchreid's download would mkdir)


def test_incomplete_dataset_names_missing_path(tmp_path):
    (tmp_path / "ilids-vid").mkdir()  # what a failed torchreid download leaves behind
    with pytest.raises(FileNotFoundError, match="failed automatic download") as err:
        check_dataset_layout("ilidsvid", str(tmp_path))
    assert osp.join(str(tmp_path), "ilids-vid", "i-LIDS-VID/sequences/cam1/") in str(err.value)
    make_synthetic_dataset("mars", str(tmp_path), verbose=False, height=32, width=16,
                           num_train_ids=2, num_test_ids=2, num_distractors=1, num_junk=1,
                           min_len=2, max_len=3)
    check_dataset_layout("mars", str(tmp_path))  # complete: no error
    os.remove(tmp_path / "mars" / "info" / "query_IDX.mat")
    with pytest.raises(FileNotFoundError, match="missing .*query_IDX.mat"):
        check_dataset_layout("mars", str(tmp_path))
    check_dataset_layout("my_own_dataset", str(tmp_path))  # unknown names: no-op


def test_registration_and_num_splits(tmp_path):
    registry = compat.video_dataset_registry()
    assert registry["lsvid"] is LSVID
    assert registry["lsvid_unchunked"] is dsets.LSVIDUnchunked
    assert registry["ilidsvid_first_half_train"] is dsets.ILIDSVIDFirstHalfTrain
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dsets.register_datasets()  # idempotent
    assert dsets.num_splits("mars", str(tmp_path)) == 1
    assert dsets.num_splits("lsvid", str(tmp_path)) == 1
    prid = tmp_path / "prid2011"
    (prid / "prid_2011" / "multi_shot" / "cam_a").mkdir(parents=True)
    (prid / "prid_2011" / "multi_shot" / "cam_b").mkdir(parents=True)
    (prid / "splits_prid2011.json").write_text(json.dumps([{"train": [], "test": []}] * 4))
    assert dsets.num_splits("prid2011", str(tmp_path)) == 4
    with pytest.raises(FileNotFoundError, match="iLIDS-VID not found"):
        dsets.num_splits("ilidsvid", str(tmp_path))


# ---------------------------------------------------------------------------------------------
# image ReID: torchreid's own Market1501 on the generated tree; image layouts
# ---------------------------------------------------------------------------------------------
def test_market1501_generated_tree_with_torchreid_loader(tmp_path):
    # default identity counts (small images): the gallery is big enough for torchreid's ranker
    d = make_synthetic_dataset("market1501", str(tmp_path), seed=0, verbose=False, height=32,
                               width=16)
    exp = synthetic_info(d)["expected"]
    before = _snapshot(str(tmp_path))
    init_image = compat.tr_module("data.datasets").init_image_dataset
    ds = init_image("market1501", root=str(tmp_path), transform=_identity, mode="train",
                    verbose=False)
    assert _snapshot(str(tmp_path)) == before
    assert ds.data_dir == osp.join(d, "Market-1501-v15.09.15")  # no deprecated-layout fallback

    def stats(items):
        return {"images": len(items), "ids": len({t[1] for t in items}),
                "cams": len({t[2] for t in items})}

    assert stats(ds.train) == exp["train"] and exp["train"]["ids"] == 16
    assert stats(ds.query) == exp["query"] and exp["query"]["ids"] == 16
    assert stats(ds.gallery) == exp["gallery"]
    assert ds.num_train_pids == 16 and ds.num_train_cams == 6
    assert sorted({t[1] for t in ds.train}) == list(range(16))
    g_pids = [t[1] for t in ds.gallery]
    assert g_pids.count(0) == exp["distractor_images"] == 20 and -1 not in g_pids
    assert len(glob.glob(osp.join(ds.gallery_dir, "-1_c*.jpg"))) == exp["junk_images"] == 6
    assert_query_protocol(ds.query, ds.gallery)
    assert compat.read_image(ds.query[0][0]).size == (16, 32)

    # torchreid's Python ranker runs on it (it fails on galleries of <= 50 + k images)
    rng = np.random.default_rng(0)
    q_pids = np.array([t[1] for t in ds.query])
    g_pids = np.array(g_pids)
    cmc, mAP = compat.evaluate_rank_torchreid(
        rng.random((len(ds.query), len(ds.gallery))), q_pids, g_pids,
        np.array([t[2] for t in ds.query]), np.array([t[2] for t in ds.gallery]),
        use_cython=False)
    assert len(cmc) == 50 and 0.0 < mAP <= 1.0

    # and torchreid's ImageDataManager trains on it
    dm = compat.data.ImageDataManager(root=str(tmp_path), sources="market1501", height=32,
                                      width=16, batch_size_train=8, workers=0, use_gpu=False,
                                      transforms=None)
    assert dm.num_train_pids == 16 and dm.num_train_cams == 6
    batch = next(iter(dm.train_loader))
    assert tuple(batch["img"].shape) == (8, 3, 32, 16)


def test_market1501_layout_variants(tmp_path):
    d = make_synthetic_dataset("market1501", str(tmp_path), verbose=False, height=32, width=16,
                               num_train_ids=2, num_test_ids=2, num_cams=2, num_distractors=1,
                               num_junk=1, min_len=1, max_len=2)
    check_dataset_layout("market1501", str(tmp_path))
    shutil.rmtree(osp.join(d, "Market-1501-v15.09.15", "query"))
    with pytest.raises(FileNotFoundError, match="missing .*Market-1501-v15.09.15/query/"):
        check_dataset_layout("market1501", str(tmp_path))
    # the older layout without the versioned folder, which torchreid still reads
    old = tmp_path / "old" / "market1501"
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        (old / sub).mkdir(parents=True)
    check_dataset_layout("market1501", str(tmp_path / "old"))
