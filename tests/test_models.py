"""TF-CLIP model: torchreid registration, switches, gradients, weights loading, clear errors."""

from __future__ import annotations

import logging
import socket
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tfclip_torchreid  # noqa: F401  (registers the models)
from tfclip_torchreid import compat
from tfclip_torchreid.models import (
    TFCLIP,
    TFCLIPOutput,
    aggregate_identity_means,
    build_tfclip,
    load_model_weights,
)
from tfclip_torchreid.models.backbone import CLIPVisualBackbone

Y, CAMS, B, T = 6, 3, 4, 2
H, W = 128, 64  # tfclip_tiny


def tiny(**kw) -> TFCLIP:
    kw.setdefault("camera_num", CAMS)
    return build_tfclip("tfclip_tiny", num_classes=Y, **kw)


def clips(b: int = B, t: int = T, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(b, t, 3, H, W, dtype=dtype)


def pids(b: int = B) -> torch.Tensor:
    return torch.arange(b) % Y


def total_loss(out: TFCLIPOutput, labels: torch.Tensor) -> torch.Tensor:
    loss = sum(F.cross_entropy(s, labels) for s in out.id_logits)
    loss = loss + sum(f.pow(2).mean() for f in out.features)
    if out.frame_logits is not None:
        n = out.frame_logits.shape[0] // labels.shape[0]
        loss = loss + F.cross_entropy(out.frame_logits, labels.repeat_interleave(n))
    if out.v2m_logits is not None:
        loss = loss + F.cross_entropy(out.v2m_logits, labels)
    return loss


def grad_norm(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


# ---------------------------------------------------------------------------- torchreid


def test_torchreid_build_model_by_name():
    for name in ("tfclip_vitb16", "tfclip_vitb16_s12", "tfclip_tiny", "tfclip_rn50",
                 "clipreid_vitb16", "clipreid_vitb16_s12", "clipreid_rn50"):
        assert name in compat.model_factory()
    model = compat.build_model("tfclip_tiny", num_classes=Y, loss="softmax", pretrained=False)
    assert isinstance(model, TFCLIP) and model.cfg.camera_num == 6
    model.memory.set(torch.randn(Y, model.embed_dim))
    out = model(clips(), cam_label=torch.tensor([0, 1, 2, 5]), full_output=True)
    assert [s.shape for s in out.id_logits] == [(B, Y)] * 3
    assert [f.shape[1] for f in out.features] == [128, 64, 128]
    assert out.frame_logits.shape == (B * T, Y) and out.v2m_logits.shape == (B, Y)
    # torchreid's contract for loss="softmax": the ID logits only (a list: DeepSupervision)
    logits = model(clips(), cam_label=torch.tensor([0, 1, 2, 5]))
    assert isinstance(logits, list) and [s.shape for s in logits] == [(B, Y)] * 3


def test_feature_extractor_with_saved_checkpoint(tmp_path, caplog, monkeypatch):
    from PIL import Image

    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    loads, real_load = [], torch.load
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: (loads.append(f), real_load(f, *a, **k))[1])
    torch.manual_seed(1)
    trained = compat.build_model("tfclip_tiny", num_classes=Y, pretrained=False).eval()
    path = str(tmp_path / "model.pth")
    torch.save({"state_dict": trained.state_dict(), "epoch": 3}, path)
    torch.load(path, weights_only=True)  # plain, weights-only loadable

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(3)]
    files = []
    for i, a in enumerate(arrays):
        files.append(str(tmp_path / f"{i}.png"))  # lossless, so both inputs decode the same
        Image.fromarray(a).save(files[-1])
    Image.fromarray(arrays[0]).save(str(tmp_path / "a.jpg"))

    extractor = compat.utils.FeatureExtractor(model_name="tfclip_tiny", model_path=path,
                                              device="cpu")
    assert loads.count(path) == 2  # the test's own check above, and one read by the extractor
    assert "params" in caplog.text  # verbose: torchreid's complexity on 4-D input
    # the model the file holds: its identities and cameras, the arch's input size and
    # (no preprocessing recorded in a plain state dict) the arch's documented statistics
    assert (extractor.model.num_classes, extractor.model.cfg.camera_num) == (Y, 6)
    assert "no preprocessing recorded" in caplog.text
    from_arrays = extractor(arrays)
    from_files = extractor(files)
    assert extractor(str(tmp_path / "a.jpg")).shape == (1, trained.feature_dim)
    assert from_arrays.shape == (3, trained.feature_dim)
    torch.testing.assert_close(from_arrays, from_files)

    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    x = torch.stack([(torch.from_numpy(a).permute(2, 0, 1) / 255.0 - mean) / std for a in arrays])
    with torch.no_grad():
        expected = trained(x)  # the same weights: the backbone + TMD were loaded
    torch.testing.assert_close(from_arrays, expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------- forward


def test_feature_extractor_takes_the_checkpoint_image_size(tmp_path, caplog):
    """torchreid's FeatureExtractor with only a model name and one of our checkpoints trained at
    64x32: the checkpoint's size, also in torchreid's complexity pass (verbose, its default);
    another arch name is refused first with the checkpoint's arch."""
    from tfclip_torchreid.utils.checkpoint import checkpoint_header, save_checkpoint

    caplog.set_level(logging.INFO, logger="tfclip_torchreid")
    torch.manual_seed(2)
    model = build_tfclip("tfclip_tiny", num_classes=Y, layers=1, image_size=(64, 32)).eval()
    path = save_checkpoint({**checkpoint_header(model), "state_dict": model.state_dict()},
                           str(tmp_path / "ckpt.pth"))
    extractor = compat.utils.FeatureExtractor(model_name="tfclip_tiny", model_path=path,
                                              device="cpu")
    assert extractor.model.cfg.image_size == (64, 32)
    assert tuple(extractor.preprocess.transforms[0].size) == (64, 32)
    assert "params" in caplog.text and "flops" in caplog.text  # the complexity pass ran
    x = torch.rand(2, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(extractor(x), model(x))
    for other in ("clipreid_tiny", "tfclip_vitb16"):
        with pytest.raises(ValueError) as err:
            compat.utils.FeatureExtractor(model_name=other, model_path=path, device="cpu")
        assert str(err.value).startswith(f"{path} holds a tfclip_tiny model, not {other}")
        assert "image_size" not in str(err.value)


def test_eval_clip_and_image_inputs():
    model = tiny().eval()
    with torch.no_grad():
        x = clips()
        cams = torch.tensor([0, 1, 2, 0])
        f_clip = model(x, cam_label=cams)
        f_img = model(x[:, 0], cam_label=cams)
        f_t1 = model(x[:, :1], cam_label=cams)
    assert f_clip.shape == (B, 128 + 64 + 128) == (B, model.feature_dim)
    torch.testing.assert_close(f_img, f_t1)


def test_camera_embedding_broadcast_to_every_frame():
    model = tiny(temporal="tap").eval()  # feature = [mean CLS, mean proj CLS]
    x, cams = clips(), torch.tensor([2, 0, 1, 2])
    with torch.no_grad():
        clip_feat = model(x, cam_label=cams)
        frame_feats = torch.stack(
            [model(x[:, t], cam_label=cams) for t in range(T)], dim=1
        ).mean(dim=1)
        no_sie = model(x)
    torch.testing.assert_close(clip_feat, frame_feats, atol=1e-5, rtol=1e-5)
    assert (clip_feat - no_sie).abs().max() > 1e-4


def test_encode_memory_ignores_sie_and_matches_projected_cls():
    model = tiny(temporal="tap", test_feature="paper").eval()
    x = clips()
    with torch.inference_mode():
        mem = model.encode_memory(x)
        feat = model(x)  # paper + tap = projected CLS mean only
    assert mem.shape == (B, model.embed_dim)
    torch.testing.assert_close(mem, feat)


SWITCHES = [
    {}, {"temporal": "tap"}, {"temporal": "conv1d"}, {"temporal": "transf"},
    {"temporal": "transf_cls"}, {"ssp_form": "paper"}, {"ssp_layers": 1}, {"ssp_layers": 3},
    {"use_memory": False}, {"use_ssp": False}, {"test_feature": "paper"},
    {"test_feature": "after"}, {"v2m": "paper"}, {"tmd_detach": False}, {"stride": 12},
    {"use_sie": False}, {"ssp_kv": "batch"}, {"grad_checkpointing": True},
]


@pytest.mark.parametrize("switch", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default")
def test_every_switch_trains_and_evaluates(switch):
    model = tiny(**switch)
    for key, value in switch.items():
        assert getattr(model.cfg, key) == value
    if model.memory is not None:
        model.memory.set(torch.randn(Y, model.embed_dim))
    model.train()
    out = model(clips(), cam_label=torch.tensor([0, 1, 2, 1]))
    n_heads = 2 if model.cfg.temporal == "tap" else 3
    assert len(out.id_logits) == len(out.features) == n_heads
    assert (out.frame_logits is not None) == (model.cfg.temporal == "tmd")
    assert (out.v2m_logits is not None) == model.cfg.use_memory
    total_loss(out, pids()).backward()
    assert grad_norm(model.backbone) > 0
    if model.temporal is not None:
        assert grad_norm(model.temporal) > 0
    if model.ssp is not None:
        assert grad_norm(model.ssp) > 0
    model.eval()
    with torch.no_grad():
        feat = model(clips(b=3))
    assert feat.shape == (3, model.feature_dim) and torch.isfinite(feat).all()


def test_feature_dims():
    assert tiny().feature_dim == 128 + 64 + 128
    assert tiny(test_feature="paper").feature_dim == 64 + 128
    assert tiny(test_feature="after").feature_dim == 128 + 64
    assert tiny(temporal="conv1d").feature_dim == 128 + 64 + 64
    assert tiny(stride=12).backbone.num_tokens == ((128 - 16) // 12 + 1) * ((64 - 16) // 12 + 1) + 1
    with torch.device("meta"):
        assert build_tfclip("tfclip_vitb16_s12", 10, stride=0).cfg.stride == 12  # 0 = arch default
        assert build_tfclip("tfclip_vitb16_s12", 10, stride=None).cfg.stride == 12


def test_use_memory_off_and_uninitialised_memory():
    model = tiny(use_memory=False).train()
    assert model.memory is None and model.ssp is None
    assert model(clips()).v2m_logits is None
    model = tiny().train()
    assert not model.memory.initialized and model(clips()).v2m_logits is None


# ---------------------------------------------------------------------------- gradients


def _grads_of(loss_fn, **kw):
    model = tiny(**kw).train()
    model.memory.set(torch.randn(Y, model.embed_dim))
    out = model(clips(), cam_label=torch.tensor([0, 1, 2, 1]))
    loss_fn(out).backward()
    return model


def test_tmd_losses_do_not_reach_backbone_by_default():
    def tmd_loss(out):
        return F.cross_entropy(out.frame_logits, pids().repeat_interleave(T)) + F.cross_entropy(
            out.id_logits[2], pids()) + out.features[2].pow(2).mean()

    model = _grads_of(tmd_loss)
    assert grad_norm(model.backbone) == 0 and grad_norm(model.temporal) > 0
    model = _grads_of(tmd_loss, tmd_detach=False)
    assert grad_norm(model.backbone) > 0


def test_v2m_reaches_backbone_and_ssp():
    model = _grads_of(lambda out: F.cross_entropy(out.v2m_logits, pids()))
    assert grad_norm(model.backbone) > 0 and grad_norm(model.ssp) > 0
    assert model.ssp.alpha.grad is None and model.classifier_proj_temp2.weight.grad is None
    assert not model.memory.bank.requires_grad


def test_activation_checkpointing_gives_identical_gradients():
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = tiny(grad_checkpointing=ckpt, tmd_detach=False).double().train()
        model.memory.set(torch.randn(Y, model.embed_dim, dtype=torch.float64))
        torch.manual_seed(1)
        x = clips(dtype=torch.float64)
        total_loss(model(x, cam_label=torch.tensor([0, 1, 2, 1])), pids()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-10, rtol=0, msg=name)


def test_shared_memory_ssp_matches_per_sample_memory_in_training():
    model = tiny().train()
    bank = torch.randn(Y, model.embed_dim)
    visual = torch.randn(B, 9, model.embed_dim)
    torch.manual_seed(3)
    shared = model.ssp(bank, visual)
    torch.manual_seed(3)
    per_sample = model.ssp(bank.expand(B, -1, -1), visual)
    assert shared.shape == per_sample.shape == (B, Y, model.embed_dim)
    # dropout is drawn per sample in both cases (not one mask for the whole batch)
    assert (shared[0] - shared[1]).abs().max() > 0


# ---------------------------------------------------------------------------- pretrained


def test_openai_offline_fails_fast_with_local_file_hint(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read by the hub at import
    with socket.socket() as sock:  # a free port, closed again: connection refused
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", closed)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        closed + "/{repo_id}/resolve/{revision}/{filename}")
    t0 = time.time()
    with pytest.raises(RuntimeError, match=r"pretrained='/path/to/ViT-B-16.pt'") as err:
        build_tfclip("tfclip_vitb16", num_classes=Y, pretrained="openai", cache_dir=str(tmp_path))
    assert "unreachable" in str(err.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # nothing cached
    monkeypatch.setenv("HOME", str(tmp_path))  # nor in ~/.cache/clip
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE=1") as err:
        compat.build_model("tfclip_vitb16", num_classes=Y, pretrained=True)
    assert "/path/to/ViT-B-16.pt" in str(err.value)
    assert time.time() - t0 < 5
    with pytest.raises(ValueError, match="no OpenAI CLIP weights"):
        tiny(pretrained="openai")


def _source_tower(width: int = 128) -> CLIPVisualBackbone:
    """A 64x64 (4x4 grid, like a 224 checkpoint's square grid) tower with random weights."""
    torch.manual_seed(5)
    m = CLIPVisualBackbone(image_size=(64, 64), width=width, layers=2, heads=2, output_dim=64)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p))
    return m


def _expected_pos(src: torch.Tensor, grid) -> torch.Tensor:
    grid_in = src[1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    out = F.interpolate(grid_in, size=grid, mode="bilinear", align_corners=False, antialias=False)
    return torch.cat([src[:1], out.permute(0, 2, 3, 1).reshape(-1, src.shape[1])])


def _check_loaded(model: TFCLIP, src: CLIPVisualBackbone) -> None:
    got, want = model.backbone.state_dict(), src.state_dict()
    for k, v in want.items():
        if k == "positional_embedding":
            torch.testing.assert_close(got[k], _expected_pos(v, model.backbone.grid_size))
        else:
            torch.testing.assert_close(got[k], v, msg=k)


@pytest.mark.parametrize("layout", ["open_clip_full", "visual_only", "torchscript"])
def test_local_file_pretrained_loading(tmp_path, layout):
    src = _source_tower()
    path = str(tmp_path / "clip.pt")
    if layout == "open_clip_full":
        sd = {"visual." + k: v for k, v in src.state_dict().items()}
        sd.update({"positional_embedding": torch.zeros(77, 64), "token_embedding.weight": torch.zeros(10, 64)})
        torch.save({"state_dict": sd}, path)
    elif layout == "visual_only":
        torch.save(src.state_dict(), path)
    else:  # an OpenAI-style TorchScript archive (visual.* + the 3 meta buffers)
        holder = torch.nn.Module()
        holder.visual = src
        for name, val in (("input_resolution", 64), ("context_length", 77), ("vocab_size", 10)):
            holder.register_buffer(name, torch.tensor(val))
        holder.forward = lambda x: x * holder.visual.proj.sum()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.trace(holder, torch.ones(2)).save(path)
    model = tiny(pretrained=path)
    _check_loaded(model, src)
    stride12 = tiny(pretrained=path, stride=12)
    assert stride12.backbone.positional_embedding.shape[0] == stride12.backbone.num_tokens
    _check_loaded(stride12, src)


def test_pretrained_for_another_architecture_is_a_clear_error(tmp_path):
    path = str(tmp_path / "wide.pt")
    torch.save(_source_tower(width=256).state_dict(), path)
    with pytest.raises(ValueError, match="different architecture|do not fit this architecture"):
        tiny(pretrained=path)
    with pytest.raises(FileNotFoundError, match="not found"):
        tiny(pretrained=str(tmp_path / "missing.pt"))


# ---------------------------------------------------------------------------- checkpoints


def _to_authors_names(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        if k.startswith("memory."):
            continue  # the authors' memory is not in their state dict
        for ours, theirs in (("backbone.", "image_encoder."), ("ssp.", "SSP."),
                             ("temporal.diffusion.", "TMD.resblocks.0."),
                             ("temporal.", "TMD.resblocks.0.")):
            if k.startswith(ours):
                k = theirs + k[len(ours):]
                break
        out["module." + k] = v
    return out


def test_authors_full_model_state_dict_loads_strict():
    torch.manual_seed(7)
    src = tiny()
    authors = _to_authors_names(src.state_dict())
    assert any(k.startswith("module.TMD.resblocks.0.message_attn.") for k in authors)
    dst = tiny()
    report = load_model_weights(dst, authors, source="authors.pth")
    assert report == {"missing": [], "unexpected": [], "skipped": []}
    for k, v in src.state_dict().items():
        if not k.startswith("memory."):
            torch.testing.assert_close(dst.state_dict()[k], v, msg=k)
    assert not dst.memory.initialized


def test_checkpoint_roundtrip_keeps_memory_and_mismatch_is_clear(tmp_path):
    src = tiny()
    src.memory.set(torch.randn(Y, src.embed_dim))
    path = str(tmp_path / "ckpt.pth")
    torch.save({"state_dict": src.state_dict()}, path)
    dst = tiny()
    load_model_weights(dst, torch.load(path, weights_only=True))
    assert dst.memory.initialized
    torch.testing.assert_close(dst.memory.bank, src.memory.bank)
    other = build_tfclip("tfclip_tiny", num_classes=Y + 1, camera_num=CAMS)
    with pytest.raises(ValueError, match="num_classes"):
        load_model_weights(other, torch.load(path, weights_only=True), source=path)
    report = load_model_weights(other, torch.load(path, weights_only=True), strict=False)
    assert any(s.startswith("classifier2.weight") for s in report["skipped"])
    assert not other.memory.initialized  # the bank of the other dataset was skipped
    no_memory = tiny(use_memory=False)
    report = load_model_weights(no_memory, torch.load(path, weights_only=True), strict=False)
    assert report["unexpected"] and all(k.startswith("ssp.") for k in report["unexpected"])


# ---------------------------------------------------------------------------- errors


def test_clear_errors_for_bad_input():
    model = tiny().eval()
    with pytest.raises(ValueError, match=r"expects 128x64 \(HxW\) frames, got 224x224"):
        model(torch.randn(1, 3, 224, 224))
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        model(torch.randn(2, 8, 3))
    with pytest.raises(ValueError, match="camera ids must be in 0..2"):
        model(clips(), cam_label=torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="temporal must be one of"):
        tiny(temporal="lstm")
    with pytest.raises(TypeError, match="unknown TF-CLIP option"):
        tiny(use_text_encoder=True)
    with pytest.raises(ValueError, match="unknown TF-CLIP arch"):
        build_tfclip("tfclip_vitl14", num_classes=Y)


def test_clip_memory_set_and_identity_means():
    model = tiny()
    with pytest.raises(ValueError, match=r"\(num_classes, dim\) = \(6, 64\)"):
        model.memory.set(torch.randn(Y + 1, model.embed_dim))
    assert "memory.bank" in model.state_dict() and "memory.rows_set" in model.state_dict()
    feats = torch.tensor([[0.0, 1.0], [2.0, 5.0], [4.0, 3.0], [100.0, 100.0]])
    means = aggregate_identity_means(feats, torch.tensor([1, 0, 1, -1]), 2)
    # row k = mean of label k's rows; the junk row (-1) is left out
    torch.testing.assert_close(means, torch.tensor([[2.0, 5.0], [2.0, 2.0]]))
    with pytest.raises(ValueError, match=r"identities have no tracklet .*labels 2"):
        aggregate_identity_means(feats, torch.tensor([0, 1, 1, 0]), 3)
    with pytest.raises(ValueError, match="1-D tensor"):
        aggregate_identity_means(feats, torch.zeros(4, 3, dtype=torch.long), 3)


def test_models_package_env_weights(monkeypatch, tmp_path):
    src = _source_tower()
    path = str(tmp_path / "env.pt")
    torch.save(src.state_dict(), path)
    monkeypatch.setenv("TFCLIP_CLIP_WEIGHTS", path)
    model = compat.build_model("tfclip_tiny", num_classes=Y, pretrained=True)
    _check_loaded(model, src)
    monkeypatch.delenv("TFCLIP_CLIP_WEIGHTS")  # without it, pretrained=True asks for 'openai'
    with pytest.raises(ValueError, match="no OpenAI CLIP weights"):
        compat.build_model("tfclip_tiny", num_classes=Y, pretrained=True)
