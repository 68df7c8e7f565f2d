"""``train.amp bf16`` on the CPU (torch's CPU autocast): training and evaluation of the tiny model
run in bfloat16, with finite losses, and the features are bf16 approximations of fp32's."""

from __future__ import annotations

import math
import os.path as osp

import torch
from test_save_features import evaluated_engine, saved
from train_helpers import tiny_config

from tfclip_torchreid import compat
from tfclip_torchreid.runner import build_engine


def record_precision(model: torch.nn.Module) -> list:
    """(training?, output dtype) of every Linear / Conv2d call of ``model``."""
    calls = []

    def hook(module, inputs, output):
        calls.append((module.training, output.dtype))

    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            m.register_forward_hook(hook)
    return calls


def test_bf16_training_and_evaluation_on_cpu(mars_root, tmp_path):
    save_dir = str(tmp_path / "log")
    cfg = tiny_config(mars_root, save_dir, **{"train.amp": "bf16", "train.max_epoch": 1})
    compat.set_random_seed(cfg.train.seed)
    engine = build_engine(cfg)
    assert engine.device.type == "cpu"
    calls = record_precision(engine.model)
    losses = []
    engine.criterion.register_forward_hook(lambda m, i, out: losses.append(out))
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}

    engine.run(save_dir=save_dir, max_epoch=1, print_freq=1000)  # one epoch, then the test

    # every layer ran in bf16, in the training steps and in the evaluation
    assert {dtype for training, dtype in calls if training} == {torch.bfloat16}
    assert {dtype for training, dtype in calls if not training} == {torch.bfloat16}
    assert losses and all(math.isfinite(float(loss.detach())) for loss, _ in losses)
    assert all(math.isfinite(v) for _, terms in losses for v in terms.values())
    after = engine.model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert not torch.equal(after["backbone.conv1.weight"], before["backbone.conv1.weight"])
    assert after["backbone.conv1.weight"].dtype == torch.float32  # fp32 master weights
    assert osp.isfile(osp.join(save_dir, "results.json"))


def test_bf16_features_approximate_fp32(mars_root, tmp_path):
    """The same weights evaluated in fp32 and in bf16: the saved features differ (bf16 really
    ran) but only by bf16 rounding."""
    feats = {}
    for amp in ("off", "bf16"):
        save_dir = str(tmp_path / amp)
        evaluated_engine(mars_root, save_dir, **{"train.amp": amp})
        feats[amp] = torch.from_numpy(saved(osp.join(save_dir, "features"), "mars", "query")[0])
    fp32, bf16 = feats["off"], feats["bf16"]
    assert fp32.shape == bf16.shape and torch.isfinite(bf16).all()
    assert not torch.equal(fp32, bf16)
    rel = (bf16 - fp32).norm(dim=1) / fp32.norm(dim=1)
    assert rel.max() < 0.03, rel.max()  # bf16 keeps 8 bits: one rounding is 0.4 %
    assert torch.nn.functional.cosine_similarity(bf16, fp32).min() > 0.999
