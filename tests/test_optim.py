"""TF-CLIP optimiser groups and the per-epoch warm-up multi-step schedule (docs/released_vs_paper.md#optimiser)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from tfclip_torchreid.optim import WarmupMultiStepLR, build_tfclip_optimizer

BASE = 5e-6


class ToyTFCLIP(nn.Module):
    """Parameter names shaped like the released model's (docs/released_vs_paper.md#heads, #optimiser)."""

    def __init__(self, fc_name: str = "classifier_proj_temp", temporal_name: str = "temporal"):
        super().__init__()
        self.backbone = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8))
        self.backbone.add_module("attn", nn.MultiheadAttention(8, 2))  # in_proj_bias
        self.class_embedding = nn.Parameter(torch.zeros(8))
        self.add_module(temporal_name, nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8)))
        self.bottleneck = nn.BatchNorm1d(8)
        self.bottleneck.bias.requires_grad_(False)
        self.classifier2 = nn.Linear(8, 5, bias=False)
        self.classifier_proj = nn.Linear(8, 5, bias=False)
        self.add_module(fc_name, nn.Linear(8, 5, bias=False))

    def forward(self, x):  # pragma: no cover - not needed here
        return x


def lr_wd_by_name(opt):
    table = {}
    for g in opt.param_groups:
        for name in g["param_names"]:
            assert name not in table, f"{name} in two groups"
            table[name] = (g["lr"], g["weight_decay"])
    return table


def test_groups_released_recipe():
    model = ToyTFCLIP()
    opt = build_tfclip_optimizer(model, weight_decay_bias=3e-4)  # distinguishable from wd
    assert isinstance(opt, torch.optim.Adam)
    table = lr_wd_by_name(opt)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(table) == trainable
    assert "bottleneck.bias" not in table  # frozen BN bias excluded
    for name, (lr, wd) in table.items():
        if name == "classifier_proj_temp.weight":
            assert (lr, wd) == pytest.approx((10 * BASE, 1e-4))
        elif "bias" in name:  # includes backbone.attn.in_proj_bias and TMD biases
            assert (lr, wd) == pytest.approx((2 * BASE, 3e-4)), name
        else:  # LN weights, class embedding, other classifiers, TMD weights
            assert (lr, wd) == pytest.approx((BASE, 1e-4)), name
    assert table["backbone.attn.in_proj_bias"][0] == pytest.approx(2 * BASE)
    assert table["classifier2.weight"][0] == table["classifier_proj.weight"][0] == BASE
    for g in opt.param_groups:
        assert g["betas"] == (0.9, 0.999) and g["eps"] == 1e-8
        assert not g.get("decoupled_weight_decay", False)  # coupled L2, not AdamW


def test_groups_options():
    model = ToyTFCLIP()
    table = lr_wd_by_name(build_tfclip_optimizer(model, large_fc_lr=False))
    assert table["classifier_proj_temp.weight"][0] == pytest.approx(BASE)

    table = lr_wd_by_name(build_tfclip_optimizer(model, lr=1e-4, temporal_lr_factor=10.0))
    assert table["temporal.0.weight"][0] == pytest.approx(1e-3)
    assert table["temporal.0.bias"][0] == pytest.approx(2e-3)  # factors multiply, like the authors'
    assert table["classifier_proj_temp.weight"][0] == pytest.approx(1e-3)
    assert table["backbone.1.weight"][0] == pytest.approx(1e-4)


def test_configurable_patterns_and_warning():
    model = nn.Sequential()
    model.add_module("TMD", ToyTFCLIP(fc_name="tmd_fc", temporal_name="classifier_temporal"))
    opt = build_tfclip_optimizer(
        model,
        fc_name_patterns=("tmd_fc",),
        temporal_name_patterns=("TMD.classifier_temporal.",),
        temporal_lr_factor=10.0,
    )
    table = lr_wd_by_name(opt)
    assert table["TMD.tmd_fc.weight"][0] == pytest.approx(10 * BASE)
    assert table["TMD.classifier_temporal.1.weight"][0] == pytest.approx(10 * BASE)
    assert table["TMD.classifier_temporal.1.bias"][0] == pytest.approx(20 * BASE)
    assert table["TMD.classifier_proj.weight"][0] == pytest.approx(BASE)
    assert table["TMD.backbone.1.weight"][0] == pytest.approx(BASE)
    with pytest.warns(UserWarning, match="temporal_name_patterns"):
        build_tfclip_optimizer(model, temporal_lr_factor=10.0, temporal_name_patterns=("SAT",))


def test_optimizer_errors():
    with pytest.raises(TypeError):
        build_tfclip_optimizer([torch.zeros(1)])
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        build_tfclip_optimizer(frozen)


def expected_factor(k, milestones=(30, 50), warmup=10, wf=0.1, gamma=0.1):
    f = wf * (1 - k / warmup) + k / warmup if k < warmup else 1.0
    return f * gamma ** sum(m <= k for m in milestones)


def run_epochs(opt, sched, n):
    lrs = []
    for _ in range(n):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return lrs


def test_schedule_trajectory_60_epochs():
    opt = build_tfclip_optimizer(ToyTFCLIP())
    sched = WarmupMultiStepLR(
        opt, milestones=(30, 50), gamma=0.1, warmup_factor=0.1, warmup_epochs=10
    )
    lrs = run_epochs(opt, sched, 60)
    names = [g["name"] for g in opt.param_groups]
    for k, row in enumerate(lrs):
        for name, lr in zip(names, row):
            mult = {"base": 1, "bias": 2, "fc": 10}[name]
            assert lr == pytest.approx(mult * BASE * expected_factor(k), rel=1e-12), (k, name)
    base = [row[names.index("base")] for row in lrs]  # epoch e (1-based) = base[e - 1]
    assert base[0] == pytest.approx(5e-7)
    assert base[9] == pytest.approx(4.55e-6)
    assert all(v == pytest.approx(5e-6) for v in base[10:30])
    assert all(v == pytest.approx(5e-7) for v in base[30:50])
    assert all(v == pytest.approx(5e-8) for v in base[50:60])


def test_schedule_variants():
    p = [torch.zeros(1, requires_grad=True)]
    opt = torch.optim.Adam(p, lr=5e-6)
    lrs = [r[0] for r in run_epochs(opt, WarmupMultiStepLR(opt, milestones=(30, 50, 70)), 80)]
    assert all(v == pytest.approx(5e-9) for v in lrs[70:80])
    opt = torch.optim.Adam(p, lr=1.0)
    lrs = [r[0] for r in run_epochs(opt, WarmupMultiStepLR(opt, warmup_method="constant"), 12)]
    assert lrs[:10] == pytest.approx([0.1] * 10) and lrs[10:] == pytest.approx([1.0] * 2)
    opt = torch.optim.Adam(p, lr=1.0)
    lrs = [r[0] for r in run_epochs(opt, WarmupMultiStepLR(opt, (2,), warmup_epochs=0), 3)]
    assert lrs == pytest.approx([1.0, 1.0, 0.1])
    with pytest.raises(ValueError, match="increasing"):
        WarmupMultiStepLR(opt, milestones=(50, 30))
    with pytest.raises(ValueError, match="warmup_method"):
        WarmupMultiStepLR(opt, warmup_method="exp")


@pytest.mark.parametrize("restore_optimizer", [True, False])
def test_resume_mid_schedule(tmp_path, restore_optimizer):
    def build():
        torch.manual_seed(0)
        model = ToyTFCLIP()
        opt = build_tfclip_optimizer(model)
        return model, opt, WarmupMultiStepLR(opt, milestones=(30, 50))

    _, opt, sched = build()
    straight = run_epochs(opt, sched, 60)

    _, opt, sched = build()
    first = run_epochs(opt, sched, 25)
    path = tmp_path / "ckpt.pth"
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, path)

    state = torch.load(path, weights_only=True)
    _, opt2, sched2 = build()
    if restore_optimizer:
        opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    assert sched2.last_epoch == 25
    resumed = first + run_epochs(opt2, sched2, 35)
    assert resumed == straight


def test_groups_on_tfclip_tiny():
    """The default patterns against the real model's parameter names (temporal="tmd")."""
    from tfclip_torchreid.models import build_tfclip

    model = build_tfclip(arch="tfclip_tiny", num_classes=5, camera_num=2)
    table = lr_wd_by_name(build_tfclip_optimizer(model, temporal_lr_factor=10.0))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert {"bottleneck.bias", "bottleneck_proj_temp2.bias"} <= frozen
    assert not frozen & set(table)
    assert table["classifier_proj_temp.weight"][0] == pytest.approx(10 * BASE)
    assert table["classifier2.weight"][0] == table["classifier_proj.weight"][0] == BASE
    assert table["bottleneck_proj_temp.weight"][0] == pytest.approx(BASE)
    tmd = [n for n in table if n.startswith("temporal.")]
    assert tmd and all(
        table[n][0] == pytest.approx((20 if "bias" in n else 10) * BASE) for n in tmd
    )
    assert table["cv_embed"][0] == pytest.approx(BASE)
    in_proj = [n for n in table if n.endswith("in_proj_bias") and n.startswith("backbone.")]
    assert all(table[n] == pytest.approx((2 * BASE, 1e-4)) for n in in_proj)
