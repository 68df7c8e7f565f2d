"""The validation split held out of the training identities, and best.pth selected on it."""

from __future__ import annotations

import json
import os.path as osp

import pytest
from train_helpers import tiny_config

from tfclip_torchreid import compat, runner
from tfclip_torchreid.data.holdout import hold_out_identities
from tfclip_torchreid.models import load_tfclip
from tfclip_torchreid.utils.checkpoint import load_checkpoint


def _items(num_ids: int = 10) -> list[tuple]:
    """Identity p has 2 + p % 3 tracklets; identities 0 and 5 are seen by one camera only."""
    out = []
    for pid in range(num_ids):
        for i in range(2 + pid % 3):
            cam = 0 if pid in (0, 5) else i % 2
            out.append(((f"{pid}_{i}_a.jpg", f"{pid}_{i}_b.jpg"), pid, cam, 0))
    return out


def test_hold_out_partitions_items_and_every_query_has_a_cross_camera_match():
    items = _items()
    train, query, gallery = hold_out_identities(items, 4, seed=3)
    assert sorted(map(str, train + query + gallery)) == sorted(map(str, items))
    held = {it[1] for it in query}
    assert len(held) == 4 and len(query) == 4 and {it[1] for it in gallery} == held
    assert not held & {it[1] for it in train}
    assert not held & {0, 5}  # single-camera identities could give no valid query
    for q in query:
        assert any(g[1] == q[1] and g[2] != q[2] for g in gallery)


def test_hold_out_is_a_function_of_the_seed_and_leaves_global_rng_alone():
    import random

    items = _items(30)
    random.seed(0)
    before = random.random()
    random.seed(0)
    a = hold_out_identities(items, 5, seed=1)
    assert random.random() == before
    assert a == hold_out_identities(items, 5, seed=1)
    assert any(hold_out_identities(items, 5, seed=s)[1] != a[1] for s in range(2, 6))
    assert hold_out_identities(items, 0) == (items, [], [])


def test_hold_out_too_many_ids_names_the_limit():
    with pytest.raises(ValueError, match=r"10 identities, 8 of them seen by two or more cameras; "
                                         r"hold out at most 8"):
        hold_out_identities(_items(), 9)
    with pytest.raises(ValueError, match="int >= 0"):
        hold_out_identities(_items(), -1)


def _run(root: str, save_dir: str, max_epoch: int, resume: str = "") -> dict:
    cfg = tiny_config(root, save_dir, **{"data.val_ids": 2, "test.eval_freq": 1,
                                         "train.max_epoch": max_epoch, "train.resume": resume})
    compat.set_random_seed(cfg.train.seed)  # as tools/train.py does: the same initial weights
    engine = runner.build_engine(cfg)
    runner.run_engine(cfg, engine)
    return {"engine": engine, "cfg": cfg}


def test_validation_split_selects_best_and_test_set_is_evaluated_once(mars_root, tmp_path):
    save = str(tmp_path / "run")
    engine = _run(mars_root, save, 3)["engine"]
    dm = engine.datamanager
    assert dm.has_validation and dm.num_train_pids == 6 and engine.raw_model.num_classes == 6
    val_ids = {it[1] for it in dm.val_dataset["query"]}
    assert len(val_ids) == 2
    history = json.load(open(osp.join(save, "validation.json")))
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert all(row["num_valid_query"] == row["num_query"] == 2 for row in history)
    best = load_checkpoint(osp.join(save, "checkpoints", "best.pth"))
    assert best["best_metric"] == max(row["mAP"] for row in history)
    assert best["epoch"] == max(history, key=lambda r: (r["mAP"], -r["epoch"]))["epoch"]
    assert load_tfclip(osp.join(save, "checkpoints", "best.pth")).num_classes == 6
    results = json.load(open(osp.join(save, "results.json")))
    assert results["dataset"] == "mars" and results["epoch"] == 3  # the test set, once, at the end
    assert set(engine.results) == {"mars"}


def test_validation_history_and_best_survive_resume_exactly(mars_root, tmp_path):
    straight = str(tmp_path / "straight")
    _run(mars_root, straight, 3)
    resumed = str(tmp_path / "resumed")
    _run(mars_root, resumed, 2)
    _run(mars_root, resumed, 3, resume="auto")
    rows = [json.load(open(osp.join(d, "validation.json"))) for d in (straight, resumed)]
    assert rows[0] == rows[1] and len(rows[0]) == 3
    best = [load_checkpoint(osp.join(d, "checkpoints", "best.pth")) for d in (straight, resumed)]
    assert best[0]["best_metric"] == best[1]["best_metric"]
    assert best[0]["epoch"] == best[1]["epoch"]
