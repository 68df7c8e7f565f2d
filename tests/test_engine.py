"""VideoV2MEngine: CLIP-Memory init, losses, dense evaluation, checkpoints, exact resume, CLI."""

from __future__ import annotations

import glob
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from train_helpers import tiny_config

from tfclip_torchreid import compat
from tfclip_torchreid.engine import VideoV2MEngine
from tfclip_torchreid.models.clip_memory import aggregate_identity_means
from tfclip_torchreid.runner import build_engine, main, run_engine
from tfclip_torchreid.testing import make_synthetic_dataset
from tfclip_torchreid.utils.feature_files import load_embeddings


def make_cfg(root: str, save_dir: str, cache: str = "none", **overrides):
    return tiny_config(root, save_dir, **{"train.memory_cache_dir": cache, **overrides})


def new_engine(cfg) -> VideoV2MEngine:
    torch.manual_seed(cfg.train.seed)
    compat.set_random_seed(cfg.train.seed)
    return build_engine(cfg)


def test_memory_init_equals_independent_identity_means(mars_root, tmp_path):
    engine = new_engine(make_cfg(mars_root, str(tmp_path / "log")))
    model = engine.raw_model
    assert not bool(model.memory.initialized)
    engine.identity_bank.fill()
    assert bool(model.memory.initialized)

    # independent computation: one tracklet at a time, all dense clips, mean over clips, per id
    dataset = engine.datamanager.memory_loader.dataset
    model.eval()
    sums: dict[int, list] = {}
    with torch.no_grad():
        for i in range(len(dataset)):
            item = dataset[i]
            clips = item["img"]  # (n, T, 3, H, W)
            frame_cls = model.encode_memory(clips)  # (n, D): projected CLS averaged over T
            sums.setdefault(int(item["pid"]), []).append(frame_cls.mean(0))
    expected = torch.stack([torch.stack(sums[k]).mean(0) for k in range(len(sums))])
    torch.testing.assert_close(model.memory.bank, expected, atol=1e-5, rtol=1e-5)
    assert model.memory.bank.shape[0] == engine.datamanager.num_train_pids == 8


def test_memory_missing_identity_is_named():
    feats = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"\b2\b"):
        aggregate_identity_means(feats, torch.tensor([0, 1, 1, 3]), num_classes=4)


def test_memory_cache_reused(mars_root, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    cfg = make_cfg(mars_root, str(tmp_path / "log"), cache=cache)
    e1 = new_engine(cfg)
    e1.identity_bank.fill()
    files = glob.glob(osp.join(cache, "*.pth"))
    assert len(files) == 1 and e1.identity_bank.cache_key in files[0]

    e2 = new_engine(cfg)  # same seed -> same random encoder -> same key

    def _fail():
        raise AssertionError("the cached CLIP-Memory should have been reused")

    monkeypatch.setattr(e2.identity_bank, "compute_memory", _fail)
    e2.identity_bank.fill()
    torch.testing.assert_close(e2.raw_model.memory.bank, e1.raw_model.memory.bank, atol=0, rtol=0)

    # other extraction settings -> another key
    e3 = new_engine(make_cfg(mars_root, str(tmp_path / "log3"), cache=cache, **{"data.seq_len": 6}))
    assert e3.identity_bank.compute_cache_key() != e1.identity_bank.cache_key


def _final_state(engine: VideoV2MEngine) -> dict:
    return {k: v.clone() for k, v in engine.raw_model.state_dict().items()}


def test_train_resume_after_interrupted_epoch_is_exact(mars_root, tmp_path, monkeypatch):
    # uninterrupted: 2 epochs
    cfg_a = make_cfg(mars_root, str(tmp_path / "a"))
    ea = new_engine(cfg_a)
    ea.run(save_dir=cfg_a.data.save_dir, max_epoch=2, print_freq=1000, normalize_feature=True)
    ref = _final_state(ea)

    # interrupted during epoch 2, then resumed from the end-of-epoch-1 checkpoint
    cfg_b = make_cfg(mars_root, str(tmp_path / "b"))
    eb = new_engine(cfg_b)
    eb.run(save_dir=cfg_b.data.save_dir, max_epoch=1, print_freq=1000, normalize_feature=True)
    step = VideoV2MEngine.forward_backward

    def interrupted(self, data):
        if self.epoch == 1 and self.batch_idx == 1:
            raise KeyboardInterrupt(f"simulated interruption at batch {self.batch_idx}")
        return step(self, data)

    monkeypatch.setattr(VideoV2MEngine, "forward_backward", interrupted)
    with pytest.raises(KeyboardInterrupt):
        eb.run(save_dir=cfg_b.data.save_dir, max_epoch=2, start_epoch=1, print_freq=1000)
    monkeypatch.setattr(VideoV2MEngine, "forward_backward", step)
    latest = osp.join(cfg_b.data.save_dir, "checkpoints", "latest.pth")
    state = torch.load(latest, map_location="cpu", weights_only=True)  # loadable weights-only
    assert state["epoch"] == 1 and set(state) >= {"state_dict", "optimizer", "scheduler", "rng"}

    ec = new_engine(cfg_b)
    torch.manual_seed(12345)  # the resumed run must not depend on the RNG state it starts with
    start = ec.resume(latest)
    assert start == 1
    ec.run(save_dir=cfg_b.data.save_dir, max_epoch=2, start_epoch=start, print_freq=1000, normalize_feature=True)
    got = _final_state(ec)
    assert set(got) == set(ref)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], atol=0, rtol=0, msg=f"{k} differs after resume")
    assert glob.glob(osp.join(cfg_b.data.save_dir, "checkpoints", "epoch_002.pth"))
    assert not glob.glob(osp.join(cfg_b.data.save_dir, "checkpoints", ".tmp-*"))


def test_training_logs_every_loss_term(mars_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_cfg(mars_root, str(tmp_path / "log"), **{"train.max_epoch": 1})
    engine = new_engine(cfg)
    engine.run(save_dir=cfg.data.save_dir, max_epoch=1, print_freq=1, normalize_feature=True)
    acc = EventAccumulator(cfg.data.save_dir)
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for term in ("loss_id", "loss_tri", "loss_v2m", "loss_frame"):
        assert f"Train/{term}" in tags, tags
    assert "Test/mars/mAP" in tags


def dense_by_hand(model, dataset) -> tuple:
    """The dense protocol one tracklet at a time: all its clips through the model with its
    camera, the clip features averaged; (features, pids, camids) in dataset order."""
    model.eval()
    rows, pids, camids = [], [], []
    with torch.no_grad():
        for i in range(len(dataset)):
            item = dataset[i]
            clips = item["img"]
            rows.append(model(clips, cam_label=torch.full((clips.shape[0],), int(item["camid"])))
                        .mean(0))
            pids.append(int(item["pid"]))
            camids.append(int(item["camid"]))
    return torch.stack(rows), np.array(pids), np.array(camids)


def minp_by_hand(dist, q_pids, g_pids, q_camids, g_camids) -> float:
    """Mean inverse negative penalty (Ye et al. 2021): per query with a true match, the number
    of true matches over the rank of the hardest one (same identity and camera left out)."""
    values = []
    for i in range(len(q_pids)):
        order = np.argsort(dist[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        matches = g_pids[order][keep] == q_pids[i]
        if matches.any():
            values.append(matches.sum() / (np.flatnonzero(matches)[-1] + 1))
    return float(np.mean(values))


def test_dense_evaluation_protocols(mars_root, tmp_path):
    cfg = make_cfg(mars_root, str(tmp_path / "log"))
    engine = new_engine(cfg)
    engine.save_features = True
    save = str(tmp_path / "out")
    dm = engine.datamanager
    n_q = len(dm.test_dataset["mars"]["query"])
    n_g = len(dm.test_dataset["mars"]["gallery"])  # query + gallery (MARS default)
    rank1 = engine.test(normalize_feature=True, ranks=[1, 5], save_dir=save)
    res = engine.results["mars"]
    assert res["num_query"] == n_q and res["num_gallery"] == n_g and res["gallery_includes_query"]

    # the same evaluation by hand: per-tracklet dense features, gallery = query + gallery, L2,
    # torchreid's distance and torchreid's own (Python) ranker; mINP by its definition
    qf, qp, qc = dense_by_hand(engine.raw_model, dm.test_loader["mars"]["query"].dataset)
    gf, gp, gc = dense_by_hand(engine.raw_model, dm.test_loader["mars"]["gallery"].dataset)
    gf, gp, gc = torch.cat([qf, gf]), np.concatenate([qp, gp]), np.concatenate([qc, gc])
    qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
    dist = compat.compute_distance_matrix(qf, gf).numpy()
    cmc, mAP = compat.evaluate_rank_torchreid(dist, qp, gp, qc, gc, max_rank=5)
    assert rank1 == pytest.approx(cmc[0], abs=1e-9) and res["R5"] == pytest.approx(cmc[4])
    assert res["mAP"] == pytest.approx(mAP, abs=1e-6)
    assert res["mINP"] == pytest.approx(minp_by_hand(dist, qp, gp, qc, gc), abs=1e-6)

    # test.save_features: the ranked (normalised) features with their tracklets
    for split, expected in (("query", qf), ("gallery", gf)):
        feats, index = load_embeddings(osp.join(save, "features", f"mars_{split}.npy"))
        items = dm.test_dataset["mars"][split]
        np.testing.assert_allclose(feats, expected.numpy(), atol=1e-5)
        assert [(it["pid"], it["camid"], it["num_frames"]) for it in index["items"]] == [
            (int(it[1]), int(it[2]), len(it[0])) for it in items]
        assert [osp.join(index["root"], it["paths"][0]) for it in index["items"]] == [
            osp.abspath(it[0][0]) for it in items]
        assert index["meta"] == {"arch": "tfclip_tiny"}

    # torchreid's gallery (query not added)
    cfg2 = make_cfg(mars_root, str(tmp_path / "log2"), **{"data.gallery_includes_query": "no"})
    e2 = new_engine(cfg2)
    e2.test(normalize_feature=True)
    assert e2.results["mars"]["num_gallery"] == n_g - n_q
    assert not e2.results["mars"]["gallery_includes_query"]


def test_cli_train_then_evaluate_only(mars_root, tmp_path):
    save = str(tmp_path / "cli")
    args = [
        "--arch", "tfclip_tiny", "--sources", "mars", "--root", mars_root, "--save-dir", save,
        "model.pretrained", "", "data.height", "64", "data.width", "32", "data.seq_len", "4",
        "data.workers", "0", "train.batch_size", "8", "train.max_epoch", "1",
        "train.memory_cache_dir", "none", "test.batch_size", "8",
    ]
    out = main(args)
    assert "mars" in out["after"]
    with open(osp.join(save, "results.json")) as f:
        row = json.load(f)
    assert row["model"] == "tfclip_tiny" and 0 <= row["mAP"] <= 1 and row["gallery_includes_query"]
    weights = osp.join(save, "checkpoints", "latest.pth")
    ev = main(["--evaluate-only", "--weights", weights, *args[:-2], "test.batch_size", "4"])
    assert ev["after"]["mars"]["mAP"] == pytest.approx(out["after"]["mars"]["mAP"], abs=1e-6)
    assert glob.glob(osp.join(save, "*test.log"))


def test_cli_errors_are_actionable(tmp_path):
    with pytest.raises(ValueError, match="--weights"):
        main(["--arch", "tfclip_tiny", "--evaluate-only", "--root", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="mars"):
        cfg = make_cfg(str(tmp_path / "nowhere"), str(tmp_path / "log"))
        run_engine(cfg, build_engine(cfg))
    with pytest.raises(FileNotFoundError, match="config"):
        main(["--config-file", str(tmp_path / "missing.yaml")])


def test_bad_frame_names_the_file(mars_root, tmp_path):
    import shutil

    root = str(tmp_path / "copy")
    shutil.copytree(mars_root, root)
    engine = new_engine(make_cfg(root, str(tmp_path / "log")))
    path = engine.datamanager.memory_loader.dataset.tracklets[0][0][0]
    with open(path, "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(RuntimeError, match=os.path.basename(path)):
        engine.identity_bank.fill()


def test_ilidsvid_all_splits_reports_each_and_mean(tmp_path):
    root = str(tmp_path / "data")
    make_synthetic_dataset("ilidsvid", root, seed=0, verbose=False, num_ids=12, num_splits=2,
                           height=64, width=32, min_len=4, max_len=12)
    save = str(tmp_path / "splits")
    out = main([
        "--arch", "tfclip_tiny", "--sources", "ilidsvid", "--root", root, "--save-dir", save,
        "--all-splits", "model.pretrained", "", "data.height", "64", "data.width", "32",
        "data.seq_len", "4", "data.workers", "0", "train.batch_size", "8", "train.max_epoch", "1",
        "train.memory_cache_dir", "none", "test.batch_size", "4",
    ])
    assert len(out["splits"]) == 2
    for key in ("mAP", "R1"):
        assert out["mean"][key] == pytest.approx(sum(s[key] for s in out["splits"]) / 2)
    rows = open(osp.join(save, "splits.csv")).read().splitlines()
    assert rows[0].startswith("split,") and rows[-1].startswith("mean,") and len(rows) == 4
    # the standard protocol: query = cam 1, gallery = cam 2, query not in the gallery
    assert out["splits"][0]["num_query"] == out["splits"][0]["num_gallery"] == 6


def test_rerank_visrank_and_rrs_test(mars_root, tmp_path):
    cfg = make_cfg(mars_root, str(tmp_path / "log"), **{"data.test_sample_method": "rrs_test"})
    engine = new_engine(cfg)
    save = str(tmp_path / "vis")
    engine.test(normalize_feature=True, rerank=True, visrank=True, visrank_topk=3, save_dir=save)
    res = engine.results["mars"]
    # the same ranking computed independently from the evaluator's rrs_test features: L2,
    # torchreid's re-ranking and torchreid's ranker
    dm = engine.datamanager
    q, g = (engine.evaluator.extract(dm.test_loader["mars"][s]) for s in ("query", "gallery"))
    qp, qc, gp, gc = q.pids.numpy(), q.camids.numpy(), g.pids.numpy(), g.camids.numpy()
    gf, gp, gc = torch.cat([q.features, g.features]), np.concatenate([qp, gp]), np.concatenate([qc, gc])
    qf, gf = F.normalize(q.features, dim=1), F.normalize(gf, dim=1)
    dist = [compat.compute_distance_matrix(a, b).numpy() for a, b in ((qf, gf), (qf, qf), (gf, gf))]
    cmc, mAP = compat.evaluate_rank_torchreid(compat.re_ranking(*dist), qp, gp, qc, gc, max_rank=5)
    assert res["mAP"] == pytest.approx(mAP, abs=1e-9) and res["R1"] == pytest.approx(cmc[0])
    cmc_plain, mAP_plain = compat.evaluate_rank_torchreid(dist[0], qp, gp, qc, gc, max_rank=5)
    assert mAP != pytest.approx(mAP_plain, abs=1e-6)  # re-ranking really changed the ranking
    n_q = len(engine.datamanager.test_dataset["mars"]["query"])
    assert len(glob.glob(osp.join(save, "visrank_mars", "*"))) == n_q


def test_non_finite_loss_stops_before_the_update(mars_root, tmp_path):
    from collections import OrderedDict

    engine = new_engine(make_cfg(mars_root, str(tmp_path / "log")))
    before = {k: v.detach().clone() for k, v in engine.raw_model.named_parameters()}

    def nan_loss(output, pids):
        return output.id_logits[0].sum() * float("nan"), OrderedDict(loss_id=float("nan"))

    engine.criterion = nan_loss
    engine.batch_idx, engine.epoch = 0, 0
    batch = next(iter(engine.train_loader))
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        engine.forward_backward(batch)
    after = dict(engine.raw_model.named_parameters())
    assert all(torch.equal(before[k], after[k]) for k in before)  # no optimiser step was taken


def test_cache_hit_and_miss_train_identically(mars_root, tmp_path):
    cache = str(tmp_path / "cache")
    states = []
    for run in ("miss", "hit"):
        cfg = make_cfg(mars_root, str(tmp_path / run), cache=cache, **{"train.max_epoch": 1})
        engine = new_engine(cfg)
        engine.run(save_dir=cfg.data.save_dir, max_epoch=1, print_freq=1000)
        states.append(_final_state(engine))
    assert len(glob.glob(osp.join(cache, "*.pth"))) == 1
    for k in states[0]:
        torch.testing.assert_close(states[1][k], states[0][k], atol=0, rtol=0, msg=k)
