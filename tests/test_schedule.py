"""The stage-2 learning rate per epoch: CLIP-ReID's as its reference runs it, TF-CLIP's unchanged.

CLIP-ReID's processors (Syliz517/CLIP-ReID, ``processor/processor_clipreid_stage2.py``) call
``scheduler.step()`` at the top of each epoch, after the step its ``WarmupMultiStepLR``
constructor took: 1-based epoch e runs at step e. TF-CLIP's processor steps after each epoch:
epoch e runs at step e - 1. At step s the reference's rate is
``base * w(s) * gamma ** #{m in steps: m <= s}``, ``w(s) = f + (1 - f) s / 10`` for s < 10 (warm-up
10 epochs from factor f) and 1 after. The numbers below are that formula worked out by hand from
the reference's configs (``configs/person/vit_clipreid.yml``: base 5e-6, f 0.1, steps (30, 50), 60
epochs; ``cnn_clipreid.yml``: base 3.5e-4, f 0.01, steps (40, 70), 120 epochs); they are written
out, not computed by the code under test.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from train_helpers import tiny_config

from tfclip_torchreid import compat, runner
from tfclip_torchreid.config import configs_path, merge_config_file
from tfclip_torchreid.engine.hooks import HookBase
from tfclip_torchreid.optim import WarmupMultiStepLR

# CLIP-ReID ViT-B/16, epochs 1..60: 5e-6 x (0.1 + 0.09 e) for e = 1..9, then 5e-6 from epoch 10,
# 5e-7 from epoch 30, 5e-8 from epoch 50
CLIPREID_VIT = ([9.5e-7, 1.4e-6, 1.85e-6, 2.3e-6, 2.75e-6, 3.2e-6, 3.65e-6, 4.1e-6, 4.55e-6]
                + [5e-6] * 20 + [5e-7] * 20 + [5e-8] * 11)
# CLIP-ReID RN50, epochs 1..120: 3.5e-4 x (0.01 + 0.099 e) for e = 1..9, then 3.5e-4 from epoch
# 10, 3.5e-5 from epoch 40, 3.5e-6 from epoch 70
CLIPREID_RN50 = ([3.815e-5, 7.28e-5, 1.0745e-4, 1.421e-4, 1.7675e-4, 2.114e-4, 2.4605e-4,
                  2.807e-4, 3.1535e-4] + [3.5e-4] * 30 + [3.5e-5] * 30 + [3.5e-6] * 51)
# TF-CLIP ViT-B/16, epochs 1..60: 5e-6 x (0.1 + 0.09 (e - 1)) for e = 1..10, then 5e-6 from
# epoch 11, 5e-7 from epoch 31, 5e-8 from epoch 51
TFCLIP_VIT = ([5e-7, 9.5e-7, 1.4e-6, 1.85e-6, 2.3e-6, 2.75e-6, 3.2e-6, 3.65e-6, 4.1e-6, 4.55e-6]
              + [5e-6] * 20 + [5e-7] * 20 + [5e-8] * 10)


def test_the_written_out_schedules_differ_where_the_issue_says():
    assert len(CLIPREID_VIT) == len(TFCLIP_VIT) == 60 and len(CLIPREID_RN50) == 120
    differ = [e for e in range(1, 61) if CLIPREID_VIT[e - 1] != TFCLIP_VIT[e - 1]]
    assert differ == list(range(1, 11)) + [30, 50]
    assert CLIPREID_VIT[0] == 9.5e-7 and CLIPREID_VIT[9] == 5e-6  # full rate from epoch 10


def engine_lrs(config: str, arch: str, root: str, save_dir: str) -> tuple[list[float], dict]:
    """The base learning rate of every stage-2 epoch of an engine built by the runner from a
    shipped config's ``train`` section (the tiny ``arch`` on the synthetic MARS), stepped as
    torchreid's ``train`` steps it (``update_lr`` after each epoch), and the scheduler's state."""
    cfg = tiny_config(root, save_dir, arch)
    merge_config_file(cfg, configs_path(config))
    cfg.model.name, cfg.model.pretrained = arch, ""
    cfg.data.root, cfg.data.sources, cfg.data.targets = root, ["mars"], ["mars"]
    cfg.data.height, cfg.data.width, cfg.data.workers, cfg.data.norm = 64, 32, 0, "imagenet"
    cfg.data.erasing, cfg.data.save_dir, cfg.train.batch_size = "authors", save_dir, 8
    compat.set_random_seed(0)
    engine = runner.build_engine(cfg)
    lrs = []
    with warnings.catch_warnings():  # no optimisation step here: only the schedule is stepped
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
        for _ in range(cfg.train.max_epoch):
            lrs.append(engine.get_current_lr())
            engine.update_lr()
    return lrs, engine.scheduler.state_dict()


@pytest.mark.parametrize("config, arch, expected", [
    ("clipreid_vitb16_mars.yaml", "clipreid_tiny", CLIPREID_VIT),
    ("clipreid_rn50_market1501.yaml", "clipreid_tiny", CLIPREID_RN50),
    ("tfclip_vitb16_mars.yaml", "tfclip_tiny", TFCLIP_VIT),
], ids=["clipreid-vit", "clipreid-rn50", "tfclip-vit"])
def test_stage2_lr_of_every_epoch_equals_the_reference(mars_root, tmp_path, config, arch,
                                                       expected):
    lrs, _ = engine_lrs(config, arch, mars_root, str(tmp_path / "log"))
    assert len(lrs) == len(expected)
    for epoch, (got, want) in enumerate(zip(lrs, expected), start=1):
        assert got == pytest.approx(want, rel=1e-9, abs=0), f"epoch {epoch}"


class _LearningRates(HookBase):
    """Records the base learning rate of every optimisation step."""

    def __init__(self) -> None:
        self.seen: dict[int, set] = {}

    def before_step(self) -> None:
        t = self.trainer
        self.seen.setdefault(t.epoch + 1, set()).add(t.get_current_lr())


def test_training_runs_each_epoch_at_the_reference_rate(mars_root, tmp_path):
    """The engine's own loop (stage 1, then torchreid's epochs) trains CLIP-ReID's epoch 1 at
    step 1 and TF-CLIP's at step 0 (warm-up of 10 epochs from 0.1 x 1e-3)."""
    for arch, epoch1, epoch2 in (("clipreid_tiny", 1.9e-4, 2.8e-4),
                                 ("tfclip_tiny", 1e-4, 1.9e-4)):
        cfg = tiny_config(mars_root, str(tmp_path / arch), arch, **{
            "train.lr": 1e-3, "train.warmup_epochs": 10, "train.max_epoch": 2,
            "stage1.max_epoch": 1, "stage1.batch_size": 16, "stage1.print_freq": 0})
        compat.set_random_seed(0)
        engine = runner.build_engine(cfg)
        record = _LearningRates()
        engine.register_hooks([record])
        engine.run(save_dir=cfg.data.save_dir, max_epoch=2, print_freq=1000)
        assert record.seen.keys() == {1, 2}
        assert [sorted(record.seen[e]) for e in (1, 2)] == [
            [pytest.approx(epoch1, rel=1e-9)], [pytest.approx(epoch2, rel=1e-9)]], arch


def test_resuming_the_clipreid_schedule_is_exact(tmp_path):
    def build(step_at: str) -> tuple[torch.optim.Optimizer, WarmupMultiStepLR]:
        opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=5e-6)
        return opt, WarmupMultiStepLR(opt, milestones=(30, 50), step_at=step_at)

    def lrs(opt, sched, n):
        out = []
        for _ in range(n):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    opt, sched = build("start")
    first = lrs(opt, sched, 25)
    torch.save({"scheduler": sched.state_dict()}, tmp_path / "s.pth")
    opt, sched = build("end")  # the checkpoint's schedule wins over the constructor's
    sched.load_state_dict(torch.load(tmp_path / "s.pth", weights_only=True)["scheduler"])
    assert first + lrs(opt, sched, 35) == pytest.approx(CLIPREID_VIT, rel=1e-9)
