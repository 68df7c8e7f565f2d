"""CLIP-ReID in the TF-CLIP family: text bank, its two stages in one engine, exact resume across
the stage boundary, cache reuse, switch combinations, image and clip input."""

from __future__ import annotations

import glob
import os.path as osp

import open_clip
import pytest
import torch
from train_helpers import tiny_config

from tfclip_torchreid import compat
from tfclip_torchreid.engine import VideoV2MEngine
from tfclip_torchreid.engine.identity_bank import IdentityBankHook
from tfclip_torchreid.engine.prompt_learning import PromptLearningStage
from tfclip_torchreid.losses import TFCLIPLoss
from tfclip_torchreid.models import build_tfclip
from tfclip_torchreid.runner import build_engine, main
from tfclip_torchreid.testing import make_synthetic_dataset


def make_cfg(root: str, save_dir: str, cache: str = "none", **overrides):
    return tiny_config(root, save_dir, "clipreid_tiny", **{
        "train.memory_cache_dir": cache, "train.seed": 5, "stage1.max_epoch": 3,
        "stage1.batch_size": 16, "stage1.print_freq": 0, **overrides})


def new_engine(cfg) -> VideoV2MEngine:
    compat.set_random_seed(cfg.train.seed)
    return build_engine(cfg)


def state(engine: VideoV2MEngine) -> dict:
    return {k: v.detach().clone() for k, v in engine.raw_model.state_dict().items()}


# ---- CLIP's encoders written out from their parameters (float64), for an independent reference
def _layer_norm(x, p, name):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * p[f"{name}.weight"] + p[f"{name}.bias"]


def _block(x, p, name, heads, causal):
    """A pre-LN residual block: multi-head self-attention then a QuickGELU MLP (x: N, L, D)."""
    n, length, width = x.shape
    d = width // heads
    a = _layer_norm(x, p, f"{name}.ln_1")
    q, k, v = (a @ p[f"{name}.attn.in_proj_weight"].t() + p[f"{name}.attn.in_proj_bias"]).split(
        width, dim=-1)
    q, k, v = (t.reshape(n, length, heads, d).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / d ** 0.5
    if causal:  # token i attends to tokens 0..i
        scores = scores.masked_fill(torch.ones(length, length).triu(1).bool(), float("-inf"))
    att = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, length, width)
    x = x + att @ p[f"{name}.attn.out_proj.weight"].t() + p[f"{name}.attn.out_proj.bias"]
    h = _layer_norm(x, p, f"{name}.ln_2") @ p[f"{name}.mlp.c_fc.weight"].t() + p[
        f"{name}.mlp.c_fc.bias"]
    h = h * torch.sigmoid(1.702 * h)
    return x + h @ p[f"{name}.mlp.c_proj.weight"].t() + p[f"{name}.mlp.c_proj.bias"]


def _vit_cls_proj(p, frames, heads, layers, patch, stride):
    """Projected CLS token of CLIP's ViT: patches x conv kernel, CLS + positions, ln_pre, blocks,
    ln_post, ``@ proj``."""
    width = p["conv1.weight"].shape[0]
    patches = torch.nn.functional.unfold(frames, kernel_size=patch, stride=stride)  # N, 3PP, L
    x = (p["conv1.weight"].reshape(width, -1) @ patches).transpose(1, 2)
    cls = p["class_embedding"].expand(x.shape[0], 1, width)
    x = _layer_norm(torch.cat([cls, x], dim=1) + p["positional_embedding"], p, "ln_pre")
    for i in range(layers):
        x = _block(x, p, f"transformer.resblocks.{i}", heads, causal=False)
    return _layer_norm(x, p, "ln_post")[:, 0] @ p["proj"]


def _prompt_text_features(p, heads, layers, eot):
    """CLIP-ReID's text feature of every identity: [prefix, cls_ctx[y], suffix] + positions,
    causal blocks, ln_final, the EOT token ``@ text_projection``."""
    ctx = p["prompt_learner.cls_ctx"]
    n = ctx.shape[0]
    x = torch.cat([p["prompt_learner.token_prefix"].expand(n, -1, -1), ctx,
                   p["prompt_learner.token_suffix"].expand(n, -1, -1)], dim=1)
    t = {k[len("text_encoder."):]: v for k, v in p.items() if k.startswith("text_encoder.")}
    x = x + t["positional_embedding"]
    for i in range(layers):
        x = _block(x, t, f"transformer.resblocks.{i}", heads, causal=True)
    return _layer_norm(x, t, "ln_final")[:, eot] @ t["text_projection"]


def test_text_bank_i2t_logits_match_float64_reference():
    """CLIP-ReID's image-to-text logits (stage 2: projected feature @ text features^T), with
    the visual feature averaged over frames, against both encoders written out from the
    parameters in float64."""
    torch.manual_seed(0)
    model = build_tfclip("clipreid_tiny", num_classes=5, camera_num=0).double()
    cfg, p = model.cfg, {k: v.detach() for k, v in model.state_dict().items()}
    eot = int(open_clip.tokenize(["A photo of a X X X X person."])[0].argmax())
    bank = _prompt_text_features(p, cfg.text_heads, cfg.text_layers, eot)
    with torch.no_grad():
        torch.testing.assert_close(model.text_features(torch.arange(5)), bank, atol=1e-10,
                                   rtol=0)
    model.memory.set(bank)
    model.train()
    x = torch.randn(4, 2, 3, 128, 64, dtype=torch.float64)
    out = model(x, full_output=True)
    visual = {k[len("backbone."):]: v for k, v in p.items() if k.startswith("backbone.")}
    cls_proj = _vit_cls_proj(visual, x.reshape(8, 3, 128, 64), cfg.heads, cfg.layers,
                             cfg.patch_size, cfg.stride)
    v = cls_proj.reshape(4, 2, -1).mean(dim=1)  # temporal mean of projected CLS
    expected = torch.stack([torch.stack([(v[i] * bank[k]).sum() for k in range(5)])
                            for i in range(4)])
    torch.testing.assert_close(out.v2m_logits, expected, atol=1e-10, rtol=0)
    # CLIP-ReID's triplet features: [penultimate CLS, CLS, projected CLS] and two ID heads (TAP)
    assert [f.shape[1] for f in out.features] == [128, 128, 64] and len(out.id_logits) == 2


def test_text_tower_and_prompts_are_frozen_parameters():
    model = build_tfclip("clipreid_tiny", num_classes=5, camera_num=0)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert {n for n, _ in model.named_parameters()
            if n.startswith(("text_encoder.", "prompt_learner."))} <= frozen
    assert not any(n.startswith("backbone.") for n in frozen)


def test_stage1_changes_only_the_prompts_and_stage2_never_the_text_side(mars_root, tmp_path):
    engine = new_engine(make_cfg(mars_root, str(tmp_path / "log")))
    before = state(engine)
    engine.checkpointer.folder = str(tmp_path / "ck")
    engine.identity_bank.fill()
    after_stage1 = state(engine)
    changed = {k for k in before if not torch.equal(before[k], after_stage1[k])}
    assert changed == {"prompt_learner.cls_ctx", "memory.bank", "memory.rows_set"}
    bank = engine.raw_model.memory.bank
    with torch.no_grad():
        expected = engine.raw_model.text_features(torch.arange(bank.shape[0]))
    torch.testing.assert_close(bank, expected)

    engine.run(save_dir=str(tmp_path / "log"), max_epoch=1, print_freq=1000)
    after_stage2 = state(engine)
    for k, v in after_stage1.items():
        if k.startswith(("text_encoder.", "prompt_learner.", "memory.")):
            assert torch.equal(after_stage2[k], v), f"stage 2 changed {k}"
    assert not torch.equal(after_stage2["backbone.conv1.weight"], after_stage1["backbone.conv1.weight"])


def test_resume_across_the_stage_boundary_is_exact(mars_root, tmp_path, monkeypatch):
    ref = new_engine(make_cfg(mars_root, str(tmp_path / "ref")))
    ref.run(save_dir=str(tmp_path / "ref"), max_epoch=2, print_freq=1000)
    expected = state(ref)

    # killed during stage 1 (after its first epoch's checkpoint), then resumed
    cfg = make_cfg(mars_root, str(tmp_path / "a"))
    first = new_engine(cfg)
    run_epoch = PromptLearningStage.run_epoch

    def crash_at_second(self):
        if self.epoch == 1:
            raise KeyboardInterrupt("killed in stage 1")
        return run_epoch(self)

    monkeypatch.setattr(PromptLearningStage, "run_epoch", crash_at_second)
    with pytest.raises(KeyboardInterrupt):
        first.run(save_dir=cfg.data.save_dir, max_epoch=2, print_freq=1000)
    monkeypatch.setattr(PromptLearningStage, "run_epoch", run_epoch)
    latest = osp.join(cfg.data.save_dir, "checkpoints", "latest.pth")
    ck = torch.load(latest, weights_only=True)
    assert ck["epoch"] == 0 and ck["prompt_stage"]["epoch"] == 1

    resumed = new_engine(cfg)
    torch.manual_seed(999)  # the resumed run must not depend on the RNG state it starts with
    start = resumed.resume(latest)
    resumed.run(save_dir=cfg.data.save_dir, max_epoch=2, start_epoch=start, print_freq=1000)
    got = state(resumed)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], atol=0, rtol=0, msg=k)

    # killed in stage 2 (epoch 2): the stage-1 result comes from the checkpoint, not recomputed
    cfg_b = make_cfg(mars_root, str(tmp_path / "b"))
    second = new_engine(cfg_b)
    second.run(save_dir=cfg_b.data.save_dir, max_epoch=1, print_freq=1000)
    again = new_engine(cfg_b)
    monkeypatch.setattr(IdentityBankHook, "compute_text_bank",
                        lambda self: pytest.fail("stage 1 rerun after resume"))
    again.run(save_dir=cfg_b.data.save_dir, max_epoch=2,
              start_epoch=again.resume(osp.join(cfg_b.data.save_dir, "checkpoints",
                                                "latest.pth")),
              print_freq=1000)
    got = state(again)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], atol=0, rtol=0, msg=k)


def test_stage1_result_is_reused_from_the_cache(mars_root, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    first = new_engine(make_cfg(mars_root, str(tmp_path / "a"), cache=cache))
    first.checkpointer.folder = str(tmp_path / "ck")
    first.identity_bank.fill()
    assert len(glob.glob(osp.join(cache, "*.pth"))) == 1
    second = new_engine(make_cfg(mars_root, str(tmp_path / "b"), cache=cache))
    monkeypatch.setattr(IdentityBankHook, "compute_text_bank",
                        lambda self: pytest.fail("the cached stage-1 result was not reused"))
    second.identity_bank.fill()
    for key in ("memory.bank", "prompt_learner.cls_ctx"):
        torch.testing.assert_close(state(second)[key], state(first)[key], atol=0, rtol=0)
    # other stage-1 settings: another entry
    third = new_engine(make_cfg(mars_root, str(tmp_path / "c"), cache=cache,
                                **{"stage1.lr": 1e-3}))
    assert third.identity_bank.compute_cache_key() != first.identity_bank.cache_key


COMBOS = [
    ("clipreid_tiny", {}),                                   # B1: text bank + TAP
    ("clipreid_tiny", {"temporal": "tmd"}),                  # B5: text bank + TMD
    ("clipreid_tiny", {"use_ssp": True}),                    # text bank + SSP
    ("clipreid_tiny", {"use_memory": False}),                # no bank
    ("tfclip_tiny", {"memory_source": "text"}),              # TF-CLIP heads, text bank
    ("tfclip_tiny", {"tmd_diffusion": False}),               # S3: TMC without MD
    ("tfclip_tiny", {"ssp_form": "paper", "temporal": "tap"}),
    ("tfclip_rn50_tiny", {}),                                # CNN TF-CLIP
    ("tfclip_rn50_tiny", {"memory_source": "text", "temporal": "tap",
                          "penultimate_triplet": True}),     # CNN CLIP-ReID
]


@pytest.mark.parametrize("arch,switches", COMBOS, ids=lambda c: str(c))
def test_switch_combinations_train_and_evaluate(arch, switches):
    torch.manual_seed(0)
    model = build_tfclip(arch, num_classes=6, camera_num=3, **switches)
    if model.memory is not None:
        with torch.no_grad():
            bank = (model.text_features(torch.arange(6)) if model.uses_text
                    else torch.randn(6, model.embed_dim))
        model.memory.set(bank)
    model.train()
    x = torch.randn(4, 2, 3, *model.cfg.image_size)
    out = model(x, cam_label=torch.tensor([0, 1, 2, 0]), full_output=True)
    loss, terms = TFCLIPLoss(6)(out, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert (out.v2m_logits is not None) == model.cfg.use_memory
    assert all(p.grad is None for n, p in model.named_parameters()
               if n.startswith(("text_encoder.", "prompt_learner.")))
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.backbone.parameters())
    model.eval()
    with torch.no_grad():
        clips, images = model(x), model(x[:, 0])
    assert clips.shape == (4, model.feature_dim) and images.shape == (4, model.feature_dim)
    assert torch.isfinite(clips).all() and torch.isfinite(images).all()


def test_clipreid_on_synthetic_images_through_the_cli(tmp_path):
    root, save = str(tmp_path / "data"), str(tmp_path / "log")
    make_synthetic_dataset("market1501", root, seed=0, verbose=False, height=64, width=32,
                           num_train_ids=8, num_test_ids=8)
    out = main([
        "--arch", "clipreid_tiny", "-s", "market1501", "--root", root, "--save-dir", save,
        "model.pretrained", "", "data.height", "64", "data.width", "32", "data.workers", "0",
        "train.batch_size", "8", "train.max_epoch", "1", "stage1.max_epoch", "1",
        "train.memory_cache_dir", "none", "test.batch_size", "16",
    ])
    res = out["after"]["market1501"]
    assert 0 <= res["mAP"] <= 1 and res["num_query"] > 0
    assert osp.isfile(osp.join(save, "results.json"))
