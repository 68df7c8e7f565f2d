"""``test.save_features``: every evaluation writes the features it ranked, one row per tracklet in
the order of the test dataset, with a JSON index that ``visualize.read_feature_set`` reads."""

from __future__ import annotations

import json
import os.path as osp

import numpy as np
import pytest
import torch
from train_helpers import tiny_config

from tfclip_torchreid import compat
from tfclip_torchreid.runner import build_engine
from tfclip_torchreid.visualize import read_feature_set


def evaluated_engine(root: str, save_dir: str, **overrides):
    """A tiny model evaluated once (no training) with ``test.save_features True``."""
    cfg = tiny_config(root, save_dir, **{"test.save_features": True, **overrides})
    compat.set_random_seed(cfg.train.seed)
    engine = build_engine(cfg)
    engine.run(save_dir=save_dir, test_only=True)
    return engine


def tracklet_features(model, loaders) -> dict:
    """Each tracklet's test feature computed on its own: the model on all of its clips (the
    loader's dense clips), averaged; keyed by its frame paths."""
    model.eval()
    out = {}
    with torch.no_grad():
        for loader in loaders:
            data = loader.dataset
            for i in range(len(data)):
                item = data[i]
                clips = item["img"] if item["img"].dim() == 5 else item["img"].unsqueeze(0)
                cams = torch.full((clips.shape[0],), int(item["camid"]))
                out[tuple(sorted(data.tracklets[i][0]))] = model(clips, cam_label=cams).mean(0)
    return out


def saved(folder: str, name: str, split: str):
    return read_feature_set(osp.join(folder, f"{name}_{split}.npy"),
                            osp.join(folder, f"{name}_{split}.json"))


@pytest.fixture(scope="module")
def evaluated(mars_root, tmp_path_factory):
    save_dir = str(tmp_path_factory.mktemp("log"))
    return save_dir, evaluated_engine(mars_root, save_dir)


def test_saved_rows_are_the_evaluated_features_in_dataset_order(evaluated):
    save_dir, engine = evaluated
    dm = engine.datamanager
    folder = osp.join(save_dir, "features")
    reference = tracklet_features(engine.model, dm.test_loader["mars"].values())
    for split in ("query", "gallery"):
        feats, items = saved(folder, "mars", split)
        expected_items = [(tuple(it[0]), int(it[1]), int(it[2]))
                          for it in dm.test_dataset["mars"][split]]
        assert items == expected_items  # the test dataset's order, its paths, pids and cameras
        assert feats.dtype == np.float32 and feats.shape[1] == engine.model.feature_dim
        expected = torch.stack([reference[tuple(sorted(paths))] for paths, _, _ in items])
        torch.testing.assert_close(torch.from_numpy(feats), expected, atol=1e-5, rtol=1e-4)
        with open(osp.join(folder, f"mars_{split}.json")) as f:
            assert json.load(f)["meta"]["arch"] == "tfclip_tiny"
    # MARS ranks query + gallery: the gallery file starts with the query rows
    q, _ = saved(folder, "mars", "query")
    g, _ = saved(folder, "mars", "gallery")
    assert len(g) == len(q) + len(dm.test_loader["mars"]["gallery"].dataset)
    np.testing.assert_array_equal(g[:len(q)], q)


def test_saved_features_give_back_the_reported_metrics(evaluated):
    """torchreid's own distance and rank evaluation on the saved files reproduces the run's
    results.json: the files hold the features that were ranked."""
    save_dir, _ = evaluated
    folder = osp.join(save_dir, "features")
    qf, q_items = saved(folder, "mars", "query")
    gf, g_items = saved(folder, "mars", "gallery")
    distmat = compat.compute_distance_matrix(torch.from_numpy(qf), torch.from_numpy(gf),
                                             "euclidean").numpy()
    cmc, mean_ap = compat.evaluate_rank_torchreid(
        distmat, np.array([it[1] for it in q_items]), np.array([it[1] for it in g_items]),
        np.array([it[2] for it in q_items]), np.array([it[2] for it in g_items]),
        max_rank=10, use_cython=False)
    with open(osp.join(save_dir, "results.json")) as f:
        results = json.load(f)
    assert results["mAP"] == pytest.approx(mean_ap, abs=1e-6)
    assert results["R1"] == pytest.approx(cmc[0], abs=1e-6)


def test_no_feature_files_without_the_option(mars_root, tmp_path):
    save_dir = str(tmp_path / "log")
    evaluated_engine(mars_root, save_dir, **{"test.save_features": False})
    assert osp.isfile(osp.join(save_dir, "results.json"))
    assert not osp.exists(osp.join(save_dir, "features"))
