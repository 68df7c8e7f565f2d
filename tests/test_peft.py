"""Parameter-efficient TF-CLIP (model.peft: LoRA, visual prompts, adapters; models/peft/).

Expected parameter counts are written out from the architectures' sizes here, not read from the
code under test; the frozen base, exact resume, the merge, rebuilding from the file alone and
the refusals are checked on the tiny architectures.
"""

from __future__ import annotations

import copy
import os
import os.path as osp
import sys

import pytest
import torch
from train_helpers import tiny_config

from tfclip_torchreid import compat
from tfclip_torchreid.config import configs_path, get_default_config, merge_config_file
from tfclip_torchreid.engine import VideoV2MEngine
from tfclip_torchreid.export import export_model, verify_export
from tfclip_torchreid.losses import TFCLIPLoss
from tfclip_torchreid.models import build_tfclip, load_tfclip
from tfclip_torchreid.models.archs import model_config
from tfclip_torchreid.models.config import TFCLIPConfig
from tfclip_torchreid.models.peft import base_state_dict, is_peft_key
from tfclip_torchreid.models.weights import resolve_weights
from tfclip_torchreid.optim import build_tfclip_optimizer
from tfclip_torchreid.runner import build_engine, check_config, main, model_overrides
from tfclip_torchreid.utils.checkpoint import load_checkpoint

MODES = ("lora", "prompt", "adapter")


# ------------------------------------------------------------------ sizes, written out
def vit_params(width: int, layers: int, patch: int, grid: int, embed: int, mlp: int = 4) -> int:
    """Parameters of open_clip's CLIP ViT (conv1 without bias, CLS, positions, ln_pre, blocks,
    ln_post, proj)."""
    block = (2 * width  # ln_1
             + 3 * width * width + 3 * width  # attention in_proj (q, k, v)
             + width * width + width  # out_proj
             + 2 * width  # ln_2
             + mlp * width * width + mlp * width  # c_fc
             + mlp * width * width + width)  # c_proj
    return (3 * patch * patch * width + width + (grid + 1) * width + 2 * width
            + layers * block + 2 * width + width * embed)


def added_params(mode: str, width: int, layers: int, rank: int = 8, tokens: int = 10,
                 bottleneck: int = 64, mlp: int = 4) -> int:
    """What each method adds with its defaults: LoRA A (r x d_in) and B (d_out x r) on the fused
    q/k/v (width -> 3 width), c_fc (width -> 4 width) and c_proj (4 width -> width) of every
    block; VPT-deep p tokens per block; one AdaptFormer bottleneck (down with bias, up with
    bias) per block."""
    if mode == "lora":
        per_block = (rank * (width + 3 * width) + rank * (width + mlp * width)
                     + rank * (mlp * width + width))
        return layers * per_block
    if mode == "prompt":
        return layers * tokens * width
    return layers * (width * bottleneck + bottleneck + bottleneck * width + width)


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("mode", MODES)
def test_trainable_parameters_per_mode_tiny(mode):
    full = build_tfclip("tfclip_tiny", num_classes=8, camera_num=2)
    model = build_tfclip("tfclip_tiny", num_classes=8, camera_num=2, peft=mode)
    vit = vit_params(width=128, layers=2, patch=16, grid=8 * 4, embed=64)
    assert sum(p.numel() for p in full.backbone.parameters()) == vit  # the sizes are right
    assert trainable(model) == trainable(full) - vit + added_params(mode, 128, 2)
    assert not any(p.requires_grad for n, p in model.backbone.named_parameters()
                   if not is_peft_key(n))


@pytest.mark.parametrize("arch, grid", [("tfclip_vitb16", 16 * 8), ("tfclip_vitb16_s12", 21 * 10),
                                        ("clipreid_vitb16", 16 * 8)])
def test_lora_trains_a_fifth_of_full_fine_tuning_at_full_size(arch, grid):
    with torch.device("meta"):
        full = build_tfclip(arch, num_classes=625, camera_num=6)
        models = {m: build_tfclip(arch, num_classes=625, camera_num=6, peft=m) for m in MODES}
    vit = vit_params(width=768, layers=12, patch=16, grid=grid, embed=512)
    assert sum(p.numel() for p in full.backbone.parameters()) == vit
    for mode, model in models.items():
        assert trainable(model) == trainable(full) - vit + added_params(mode, 768, 12), mode
    assert added_params("lora", 768, 12) == 1_032_192
    assert trainable(models["lora"]) <= 0.25 * trainable(full)  # the goal of issue 19


def test_peft_none_is_the_plain_model_and_peft_leaves_the_rest_as_in_full_fine_tuning():
    torch.manual_seed(3)
    plain = build_tfclip("tfclip_tiny", num_classes=6, camera_num=2)
    torch.manual_seed(3)
    none = build_tfclip("tfclip_tiny", num_classes=6, camera_num=2, peft="none")
    assert list(plain.state_dict()) == list(none.state_dict())
    assert all(torch.equal(v, none.state_dict()[k]) for k, v in plain.state_dict().items())
    for mode in MODES:  # the methods' modules come last: the rest starts as in full training
        torch.manual_seed(3)
        model = build_tfclip("tfclip_tiny", num_classes=6, camera_num=2, peft=mode)
        own = model.state_dict()
        assert all(torch.equal(v, own[k]) for k, v in plain.state_dict().items()), mode


@pytest.mark.parametrize("mode", ["lora", "adapter"])
def test_lora_and_adapters_start_equal_to_their_base(mode):
    torch.manual_seed(4)
    plain = build_tfclip("tfclip_tiny", num_classes=6, camera_num=2).eval()
    torch.manual_seed(4)
    model = build_tfclip("tfclip_tiny", num_classes=6, camera_num=2, peft=mode).eval()
    x, cams = torch.randn(2, 3, 3, 128, 64), torch.tensor([0, 1])
    with torch.no_grad():
        assert torch.equal(model(x, cams), plain(x, cams))


def _step(model: torch.nn.Module, lr: float = 1e-2) -> None:
    """One training step of every loss (the identity bank filled with random rows)."""
    model.memory.set(torch.randn(model.num_classes, model.embed_dim))
    model.train()
    optimizer = build_tfclip_optimizer(model, lr=lr)
    x = torch.randn(4, 2, 3, *model.cfg.image_size)
    out = model(x, cam_label=torch.tensor([0, 1, 0, 1]), full_output=True)
    loss, _ = TFCLIPLoss(num_classes=model.num_classes)(out, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize("mode", MODES)
def test_a_step_leaves_the_frozen_base_unchanged_bitwise(mode):
    model = build_tfclip("tfclip_tiny", num_classes=4, camera_num=2, peft=mode,
                         lora_dropout=0.1)
    base = {k: v.clone() for k, v in base_state_dict(model).items()}
    added = {n: p.detach().clone() for n, p in model.named_parameters() if is_peft_key(n)}
    head = model.classifier2.weight.detach().clone()
    _step(model)
    after = base_state_dict(model)
    assert set(after) == set(base)
    for k, v in base.items():
        assert torch.equal(after[k], v), f"{mode} changed the frozen {k}"
    params = dict(model.named_parameters())
    assert any(not torch.equal(params[n], v) for n, v in added.items()), "nothing added trained"
    assert not torch.equal(model.classifier2.weight, head)


@pytest.mark.parametrize("mode", MODES)
def test_activation_checkpointing_gives_the_same_gradients(mode):
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(6)
        model = build_tfclip("tfclip_tiny", num_classes=4, camera_num=2, peft=mode,
                             grad_checkpointing=checkpointing)
        torch.manual_seed(7)
        _step(model, lr=1e-9)
        grads.append({n: p.grad for n, p in model.named_parameters() if is_peft_key(n)})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)


def test_optimiser_gives_the_added_modules_their_factor():
    model = build_tfclip("tfclip_tiny", num_classes=4, camera_num=2, peft="lora")
    groups = {g["name"]: g for g in build_tfclip_optimizer(model, lr=1e-4, peft_lr_factor=50)
              .param_groups}
    assert groups["peft"]["lr"] == pytest.approx(5e-3)
    assert all(is_peft_key(n) for n in groups["peft"]["param_names"])
    assert not any(is_peft_key(n) for g in groups.values() if g["name"] != "peft"
                   for n in g["param_names"])
    assert sum(len(g["params"]) for g in groups.values()) == sum(
        1 for p in model.parameters() if p.requires_grad)


# ------------------------------------------------------------------ merge and export
def test_merged_lora_equals_unmerged_forward_and_its_export(tmp_path):
    torch.manual_seed(5)
    model = build_tfclip("tfclip_tiny", num_classes=4, camera_num=2, layers=1, peft="lora")
    with torch.no_grad():  # a LoRA that changes the output (B starts at zero)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    model.eval()
    x, cams = torch.randn(3, 2, 3, 128, 64), torch.tensor([0, 1, 1])
    plain = build_tfclip("tfclip_tiny", num_classes=4, camera_num=2, layers=1).eval()
    plain.load_state_dict(base_state_dict(model), strict=False)
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.startswith("backbone.")}, strict=False)
    with torch.no_grad():
        unmerged = model(x, cams)
        assert (unmerged - plain(x, cams)).abs().max() > 1e-3  # LoRA does something
        merged_model = copy.deepcopy(model).merge_peft()
        merged = merged_model(x, cams)
    assert merged_model.cfg.peft == "none"
    assert set(merged_model.state_dict()) == set(plain.state_dict())
    assert (merged - unmerged).abs().max() < 1e-5
    for fmt, name, kw in (("torchscript", "m.pt", {}), ("onnx", "m.onnx", {"dynamo": False})):
        path = export_model(model, str(tmp_path / name), fmt, frames=2, **kw)
        assert verify_export(model, path, fmt, frames=2) < 1e-4  # the merged file vs unmerged
    assert model.cfg.peft == "lora" and any("lora_A" in k for k in model.state_dict())


def test_prompts_and_adapters_export_as_modules(tmp_path):
    for mode in ("prompt", "adapter"):
        model = build_tfclip("tfclip_tiny", num_classes=4, camera_num=2, layers=1, peft=mode)
        path = export_model(model, str(tmp_path / f"{mode}.pt"), "torchscript", frames=2)
        assert verify_export(model, path, "torchscript", frames=2) < 1e-4
        assert model.merge_peft().cfg.peft == mode


# ------------------------------------------------------------------ checkpoints
@pytest.fixture(scope="module")
def clip_file(tmp_path_factory) -> str:
    """CLIP weights for tfclip_tiny at the training tests' 64x32 frames (open_clip's
    ``visual.*`` names): the base a checkpoint refers to."""
    torch.manual_seed(11)
    src = build_tfclip("tfclip_tiny", num_classes=1, camera_num=0, image_size=(64, 32))
    path = str(tmp_path_factory.mktemp("clip") / "tiny_clip.pt")
    torch.save({"visual." + k: v for k, v in src.backbone.state_dict().items()}, path)
    return path


def make_cfg(root: str, save_dir: str, mode: str, pretrained: str = ""):
    return tiny_config(root, save_dir, **{"model.peft": mode, "model.pretrained": pretrained,
                                          "train.max_epoch": 2, "train.seed": 9,
                                          "train.peft_lr_factor": 10.0})


def new_engine(cfg) -> VideoV2MEngine:
    compat.set_random_seed(cfg.train.seed)
    return build_engine(cfg)


def _state(engine: VideoV2MEngine) -> dict:
    return {k: v.detach().clone() for k, v in engine.raw_model.state_dict().items()}


@pytest.mark.parametrize("mode, by_reference", [
    ("lora", True), pytest.param("prompt", False, marks=pytest.mark.slow),
    pytest.param("adapter", True, marks=pytest.mark.slow)])
def test_resume_is_exact_and_the_checkpoint_rebuilds_its_model(mars_root, clip_file, tmp_path,
                                                                mode, by_reference):
    pretrained = clip_file if by_reference else ""
    ref = new_engine(make_cfg(mars_root, str(tmp_path / "ref"), mode, pretrained))
    ref.run(save_dir=str(tmp_path / "ref"), max_epoch=2, print_freq=1000)
    expected = _state(ref)

    cfg = make_cfg(mars_root, str(tmp_path / "a"), mode, pretrained)
    first = new_engine(cfg)
    first.run(save_dir=cfg.data.save_dir, max_epoch=1, print_freq=1000)
    latest = osp.join(cfg.data.save_dir, "checkpoints", "latest.pth")
    ck = load_checkpoint(latest)
    base_keys = [k for k in expected if k.startswith("backbone.") and not is_peft_key(k)]
    assert ck["base"]["kind"] == ("clip" if by_reference else "stored")
    if by_reference:  # what trains, without the frozen base
        assert ck["base"]["source"] == clip_file and len(ck["base"]["sha256"]) == 64
        assert not any(k in ck["state_dict"] for k in base_keys)
    else:
        assert all(k in ck["state_dict"] for k in base_keys)

    resumed = new_engine(cfg)
    torch.manual_seed(999)  # the resumed run must not depend on the RNG state it starts with
    start = resumed.resume(latest)
    resumed.run(save_dir=cfg.data.save_dir, max_epoch=2, start_epoch=start, print_freq=1000)
    got = _state(resumed)
    assert set(got) == set(expected)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], atol=0, rtol=0, msg=k)

    # the final file alone rebuilds the model (its base from the reference, then the rest)
    rebuilt = load_tfclip(osp.join(cfg.data.save_dir, "checkpoints", "latest.pth")).eval()
    trained = resumed.raw_model.cpu().eval()
    x = torch.randn(2, 3, 3, 64, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), trained(x))
    assert rebuilt.cfg.peft == mode


def test_checkpoint_is_a_fraction_and_names_its_missing_base(mars_root, clip_file, tmp_path):
    sizes = {}
    for mode in ("none", "lora"):
        cfg = make_cfg(mars_root, str(tmp_path / mode), mode, clip_file)
        cfg.train.max_epoch = 1
        engine = new_engine(cfg)
        engine.run(save_dir=cfg.data.save_dir, max_epoch=1, print_freq=1000)
        sizes[mode] = osp.getsize(osp.join(cfg.data.save_dir, "checkpoints", "latest.pth"))
    assert sizes["lora"] < sizes["none"]
    lora = osp.join(str(tmp_path / "lora"), "checkpoints", "latest.pth")
    moved = clip_file + ".moved"
    os.rename(clip_file, moved)
    try:
        with pytest.raises(FileNotFoundError, match=r"frozen base, the CLIP weights .*"
                           r"tiny_clip\.pt, is not available: no such file.*model\.pretrained"):
            load_tfclip(lora)
        # the command line says so before any data is read, and takes the new place
        args = ["--arch", "tfclip_tiny", "--sources", "mars", "--root", str(tmp_path / "none"),
                "--save-dir", str(tmp_path / "eval"), "--evaluate-only", "--weights", lora,
                "data.height", "64", "data.width", "32"]
        with pytest.raises(FileNotFoundError, match="tiny_clip.pt, is not available"):
            main(args)
        model = load_tfclip(lora, base=moved)
        assert model.peft_base["source"] == moved
        out = main([*args, "model.pretrained", moved, "--root", mars_root, "data.seq_len", "4",
                    "data.workers", "0", "test.batch_size", "8"])
        assert "mars" in out["after"]
    finally:
        os.rename(moved, clip_file)
    # another base (same shapes, other values) is refused by its sha256
    other = str(tmp_path / "other_clip.pt")
    torch.save({k: v + 1 for k, v in torch.load(clip_file).items()}, other)
    with pytest.raises(ValueError, match="base differs"):
        load_tfclip(lora, base=other)


def test_fine_tuning_a_trained_model_refers_to_its_file(mars_root, tmp_path):
    cfg = make_cfg(mars_root, str(tmp_path / "full"), "none")
    cfg.train.max_epoch = 1
    new_engine(cfg).run(save_dir=cfg.data.save_dir, max_epoch=1, print_freq=1000)
    full = osp.join(cfg.data.save_dir, "checkpoints", "latest.pth")
    cfg = make_cfg(mars_root, str(tmp_path / "lora"), "lora")
    cfg.model.load_weights, cfg.train.max_epoch = full, 1
    engine = new_engine(cfg)
    engine.run(save_dir=cfg.data.save_dir, max_epoch=1, print_freq=1000)
    ck = load_checkpoint(osp.join(cfg.data.save_dir, "checkpoints", "latest.pth"))
    assert ck["base"]["kind"] == "weights" and ck["base"]["source"] == full
    rebuilt = load_tfclip(osp.join(cfg.data.save_dir, "checkpoints", "latest.pth")).eval()
    x = torch.randn(1, 2, 3, 64, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), engine.raw_model.cpu().eval()(x))


# ------------------------------------------------------------------ the identity bank
def test_clip_memory_and_its_cache_key_are_the_base_s(mars_root, tmp_path):
    banks, keys = {}, {}
    for mode in ("none", *MODES):
        engine = new_engine(make_cfg(mars_root, str(tmp_path / mode), mode))
        keys[mode] = engine.identity_bank.compute_cache_key()
        engine.identity_bank.fill()
        banks[mode] = engine.raw_model.memory.bank.clone()
    for mode in MODES:
        assert keys[mode] == keys["none"], mode
        assert torch.equal(banks[mode], banks["none"]), mode


def test_clipreid_stage1_sees_the_base_and_stage2_trains_the_prompts(mars_root, tmp_path):
    def cfg_for(mode: str):
        return tiny_config(mars_root, str(tmp_path / mode), "clipreid_tiny", **{
            "model.peft": mode, "train.seed": 5, "stage1.max_epoch": 1,
            "stage1.batch_size": 16, "stage1.print_freq": 0})

    plain, prompted = new_engine(cfg_for("none")), new_engine(cfg_for("prompt"))
    assert plain.identity_bank.compute_cache_key() == prompted.identity_bank.compute_cache_key()
    feats = [e.identity_bank.train_features().features for e in (plain, prompted)]
    assert torch.equal(*feats)
    tokens = prompted.raw_model.backbone.prompt.tokens.detach().clone()
    text = {k: v.clone() for k, v in prompted.raw_model.text_encoder.state_dict().items()}
    prompted.run(save_dir=str(tmp_path / "prompt"), max_epoch=1, print_freq=1000)
    assert not torch.equal(prompted.raw_model.backbone.prompt.tokens, tokens)
    for k, v in prompted.raw_model.text_encoder.state_dict().items():
        assert torch.equal(v, text[k]), k


# ------------------------------------------------------------------ refusals
def test_refusals_name_the_problem_and_the_fix(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match=r"model.peft lora is for the CLIP ViT: tfclip_rn50_tiny "
                                         r"is a ResNet.*model.peft none"):
        build_tfclip("tfclip_rn50_tiny", num_classes=4, camera_num=0, peft="lora")
    with pytest.raises(ValueError, match=r"peft must be one of \('none', 'lora', 'prompt', "
                                         r"'adapter'\), got 'loar'"):
        build_tfclip("tfclip_tiny", num_classes=4, peft="loar")
    with pytest.raises(ValueError, match=r"lora_modules must be one of \('qkv', 'mlp'\), got "
                                         r"'out'"):
        TFCLIPConfig(num_classes=4, peft="lora", lora_modules=("qkv", "out"))
    with pytest.raises(ValueError, match=r"peft_layers \[2\] are not blocks of this 2-block ViT"):
        build_tfclip("tfclip_tiny", num_classes=4, peft="adapter", peft_layers=(0, 2))
    monkeypatch.setitem(sys.modules, "peft", None)  # Hugging Face's peft not installed
    with pytest.raises(ImportError, match=r'pip install "tfclip-torchreid\[peft\]"'):
        build_tfclip("tfclip_tiny", num_classes=4, peft="lora")
    # on the command line: before any data is read
    cfg = tiny_config(str(tmp_path / "no-data"), str(tmp_path / "log"), "tfclip_rn50_tiny",
                      **{"model.peft": "prompt"})
    with pytest.raises(ValueError, match="model.peft prompt is for the CLIP ViT"):
        check_config(cfg)
    assert not osp.exists(tmp_path / "no-data") and not osp.exists(tmp_path / "log")


def test_offline_openai_base_says_what_to_do(tmp_path, monkeypatch):
    """A LoRA checkpoint of tfclip_vitb16 whose base is OpenAI's CLIP, read where that is not
    cached and HF_HUB_OFFLINE=1: the message names the base and the fix, within seconds."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = str(tmp_path / "lora.pth")
    with torch.device("meta"):
        model = build_tfclip("tfclip_vitb16", num_classes=4, camera_num=0, peft="lora")
    cfg = model.cfg.to_dict()
    state = {k: torch.zeros(v.shape) for k, v in model.state_dict().items()
             if not k.startswith("backbone.") or is_peft_key(k)}
    torch.save({"format": "tfclip_torchreid.checkpoint/1", "version": "0", "arch": cfg["arch"],
                "model_cfg": cfg, "state_dict": state,
                "base": {"kind": "clip", "source": "openai",
                         "openai_model": "ViT-B-16-quickgelu", "sha256": "0" * 64}}, path)
    weights = resolve_weights(path)
    assert weights.base_by_reference and len(weights.state_dict) == len(state)
    with pytest.raises(FileNotFoundError, match=r"its frozen base, OpenAI's CLIP weights \(openai, "
                                                r"open_clip model ViT-B-16-quickgelu\), is not "
                                                r"available: .*HF_HUB_OFFLINE"):
        weights.build()


# ------------------------------------------------------------------ configs and command line
@pytest.mark.parametrize("name", MODES)
def test_peft_configs_are_valid(name):
    cfg = merge_config_file(get_default_config(), configs_path("peft", f"{name}.yaml"))
    mcfg = model_config(cfg.model.name, 625, 6, **model_overrides(cfg))
    assert mcfg.peft == name and cfg.model.name == "tfclip_vitb16"
    assert cfg.train.lr == 5e-6 and cfg.train.peft_lr_factor > 1.0
    demo = merge_config_file(get_default_config(), configs_path("peft", f"demo_{name}.yaml"))
    plain = merge_config_file(get_default_config(), configs_path("demo.yaml"))
    assert demo.model.peft == name and demo.data.save_dir == f"log/demo_peft_{name}"
    assert demo.train.peft_lr_factor == 20.0 and demo.train.max_epoch == 12
    for key in ("model.peft", "data.save_dir", "train.peft_lr_factor", "train.max_epoch",
                "train.milestones"):
        section, option = key.split(".")
        setattr(getattr(demo, section), option, getattr(getattr(plain, section), option))
    assert demo == plain  # the demo in every other respect


def test_demo_command_line_trains_a_peft_mode(mars_root, tmp_path):
    save = str(tmp_path / "run")
    out = main(["--arch", "tfclip_tiny", "--sources", "mars", "--root", mars_root,
                "--save-dir", save, "model.peft", "adapter", "model.adapter_width", "16",
                "model.pretrained", "", "data.height", "64", "data.width", "32",
                "data.seq_len", "2", "data.workers", "0", "train.batch_size", "8",
                "train.max_epoch", "1", "train.memory_cache_dir", "none", "test.batch_size", "8"])
    assert "mars" in out["after"]
    ck = load_checkpoint(osp.join(save, "checkpoints", "latest.pth"))
    assert ck["model_cfg"]["peft"] == "adapter" and ck["model_cfg"]["adapter_width"] == 16
    assert ck["state_dict"]["backbone.transformer.resblocks.0.mlp.adapter.down.weight"].shape == (
        16, 128)


@pytest.mark.slow
def test_bench_peft_runs_every_mode_in_its_own_process():
    sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "tools"))
    import bench_peft

    rows = bench_peft.main(["--arch", "tfclip_tiny", "--batch", "4", "--frames", "2",
                            "--stride", "16", "--modes", "none", "lora:qkv", "--steps", "1",
                            "--num-classes", "8", "--no-live"])
    full, lora = rows
    assert full["trainable"] - lora["trainable"] == vit_params(128, 2, 16, 32, 64) - 2 * 8 * 4 * 128
    assert lora["optimizer_bytes"] < full["optimizer_bytes"]
    assert "| 16 | lora:qkv |" in bench_peft.table(rows)
