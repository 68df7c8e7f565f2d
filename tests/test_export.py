"""Export: ONNX / TorchScript files of every registered architecture equal PyTorch's test feature.

Each architecture of ``list_archs()`` is built at a tiny size that keeps its structure
(:func:`tiny_overrides`: a ViT keeps its patch size and stride, a ResNet its four stages) with
random weights and random BatchNorm statistics, exported and run next to PyTorch in float32
(tolerance 1e-4); so is the tiny model with every choice of the options that change the exported
graph (the temporal fusion and the test feature, read from the option declarations, with and
without SIE: :data:`SWITCH_CASES`). TorchScript and the TorchScript-based ONNX exporter run for
every case; the
``torch.export``-based ONNX exporter (the default, ~5 s per model on a busy CPU, plus ~5 s the
first time) runs for the tiny model with SIE and TMD here, and for every case and for dynamic
frame axes under ``-m slow``.
"""

from __future__ import annotations

import importlib.util
import os.path as osp
from typing import Any, Dict

import numpy as np
import pytest
import torch
from train_helpers import count_loads

from tfclip_torchreid.export import (
    ExportWrapper,
    example_inputs,
    export_model,
    load_inference_model,
    run_exported,
    verify_export,
)
from tfclip_torchreid.models import build_tfclip, get_model_config, list_archs
from tfclip_torchreid.models.config import field_info
from tfclip_torchreid.utils.checkpoint import checkpoint_header, save_checkpoint

ATOL = 1e-4
FRAMES = 3
CAMERAS = 3

#: small structural overrides per visual-tower family; add a family here when one is registered
TINY: Dict[str, Dict[str, Any]] = {
    # 1 block, 2 heads of 64 (TMD: 2 heads too), 4x2 grid at stride 16 (5x2 at stride 12)
    "vit": dict(layers=1, width=128, heads=2, embed_dim=32, image_size=(64, 32)),
    # one Bottleneck per stage, 256-wide attention pool with 2 heads, 4x2 layer4 grid
    "resnet": dict(resnet_layers=(1, 1, 1, 1), width=8, heads=2, embed_dim=32,
                   image_size=(64, 32)),
}
#: a small CLIP text encoder for archs that have one (CLIP-ReID's text identity bank)
TINY_TEXT = dict(text_width=32, text_layers=1, text_heads=2)


def arch_family(arch: str) -> str:
    """The arch's visual tower: its config's ``backbone`` (``"vit"`` when not given)."""
    return get_model_config(arch)["vision_cfg"].get("backbone", "vit")


def tiny_overrides(arch: str) -> Dict[str, Any]:
    """Small structural overrides of ``arch`` (its patch size, stride and switches are kept)."""
    family = arch_family(arch)
    if family not in TINY:
        raise KeyError(f"no tiny overrides for {arch} ({family} family): add them to TINY")
    overrides = dict(TINY[family])
    if "text_cfg" in get_model_config(arch):
        overrides.update(TINY_TEXT)
    return overrides


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random running statistics and affine parameters for every BatchNorm (fresh ones are
    the identity, and ResNet blocks zero-initialise their last BN weight)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(1.0 + 0.5 * torch.rand(n, generator=g))
                if m.weight is not None:
                    m.weight.copy_(1.0 + 0.1 * torch.randn(n, generator=g))
                    m.bias.copy_(0.1 * torch.randn(n, generator=g))
    return model


def tiny_model(arch: str, **switches: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = dict(num_classes=4, camera_num=CAMERAS, **tiny_overrides(arch))
    kwargs.update(switches)
    return randomize_batchnorm(build_tfclip(arch, pretrained=None, **kwargs)).eval()


def _switch_cases() -> list:
    """The tiny model with every declared choice of ``temporal`` and of ``test_feature`` (paired
    in turn), SIE on and off alternately: a new choice is exported without editing this file."""
    temporal, feature = field_info("temporal")["choices"], field_info("test_feature")["choices"]
    cases = []
    for i in range(max(len(temporal), len(feature))):
        sw = dict(temporal=temporal[i % len(temporal)], test_feature=feature[i % len(feature)],
                  camera_num=CAMERAS if i % 2 == 0 else 0)
        cases.append(pytest.param("tfclip_tiny", sw, id="-".join(
            [sw["temporal"], sw["test_feature"], "SIE" if sw["camera_num"] else "noSIE"])))
    return cases


#: every arch with its own defaults (strides 16 and 12, ViT and ResNet, with and without a text
#: tower), plus :func:`_switch_cases`
SWITCH_CASES = _switch_cases()
CASES = [pytest.param(arch, {}, id=arch) for arch in list_archs()] + SWITCH_CASES


def _check(model: torch.nn.Module, path: str, fmt: str, dynamo: bool = True,
           dynamic_frames: bool = False) -> float:
    export_model(model, path, fmt, frames=FRAMES, dynamic_frames=dynamic_frames, dynamo=dynamo)
    assert osp.isfile(path) and osp.getsize(path) > 0
    diff = verify_export(model, path, fmt, frames=FRAMES, dynamic_frames=dynamic_frames)
    assert diff < ATOL, f"{fmt}: max |exported - PyTorch| = {diff:.3g}"
    return diff


@pytest.mark.parametrize("arch, switches", CASES)
def test_torchscript_matches_pytorch(arch, switches, tmp_path):
    model = tiny_model(arch, **switches)
    _check(model, str(tmp_path / "m.pt"), "torchscript")


@pytest.mark.parametrize("arch, switches", CASES)
def test_onnx_torchscript_exporter_matches_pytorch(arch, switches, tmp_path):
    model = tiny_model(arch, **switches)
    _check(model, str(tmp_path / "m.onnx"), "onnx", dynamo=False)


@pytest.mark.slow
@pytest.mark.parametrize("arch, switches", CASES)
def test_onnx_matches_pytorch(arch, switches, tmp_path):
    model = tiny_model(arch, **switches)
    _check(model, str(tmp_path / "m.onnx"), "onnx")


def _onnx_inputs(path: str):
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return [(i.name, i.shape, i.type) for i in session.get_inputs()]


def test_onnx_default_exporter_tiny(tmp_path):
    """The default (torch.export) exporter on the tiny model with SIE and TMD: fixed frames,
    dynamic batch, camera ids as the second input."""
    model = tiny_model("tfclip_tiny")
    path = str(tmp_path / "tiny.onnx")
    _check(model, path, "onnx")
    (clips, clip_shape, clip_type), (cams, cam_shape, cam_type) = _onnx_inputs(path)
    assert (clips, cams) == ("clips", "cam_ids")
    assert clip_type == "tensor(float)" and cam_type == "tensor(int64)"
    assert isinstance(clip_shape[0], str) and clip_shape[1:] == [FRAMES, 3, 64, 32]
    assert isinstance(cam_shape[0], str)


@pytest.mark.slow
def test_onnx_dynamic_frames_without_sie(tmp_path):
    model = tiny_model("tfclip_tiny", temporal="tap", camera_num=0)
    path = str(tmp_path / "tiny.onnx")
    _check(model, path, "onnx", dynamic_frames=True)  # checks T = 3, 6 and 1
    [(name, shape, _)] = _onnx_inputs(path)
    assert name == "clips" and all(isinstance(s, str) for s in shape[:2])


@pytest.mark.slow
def test_onnx_dynamic_frames_with_sie(tmp_path):
    model = tiny_model("tfclip_tiny", temporal="tap")
    _check(model, str(tmp_path / "tiny.onnx"), "onnx", dynamic_frames=True)


def test_torchscript_runs_other_frame_counts(tmp_path):
    model = tiny_model("tfclip_tiny")
    _check(model, str(tmp_path / "tiny.pt"), "torchscript", dynamic_frames=True)


def test_export_leaves_model_mode_and_ignores_cameras_without_sie(tmp_path):
    model = tiny_model("tfclip_tiny", camera_num=0).train()
    path = export_model(model, str(tmp_path / "sub" / "m.pt"), "torchscript", frames=2)
    assert model.training
    (clips,) = example_inputs(model.eval(), batch=2, frames=2)
    with torch.no_grad():
        want = ExportWrapper(model)(clips, torch.tensor([5, 7])).numpy()  # ids ignored
    np.testing.assert_allclose(run_exported(path, "torchscript")(clips), want, atol=ATOL)


def test_bad_requests_are_explained(tmp_path):
    model = tiny_model("tfclip_tiny")
    with pytest.raises(ValueError, match="dynamo=True"):
        export_model(model, str(tmp_path / "m.onnx"), "onnx", dynamic_frames=True, dynamo=False)
    with pytest.raises(ValueError, match="format must be one of"):
        export_model(model, str(tmp_path / "m.tf"), "tflite")
    with pytest.raises(ValueError, match="frames >= 2"):
        export_model(model, str(tmp_path / "m.pt"), "torchscript", frames=1,
                     dynamic_frames=True)
    with pytest.raises(RuntimeError, match="call model.eval"):
        ExportWrapper(model.train())(*example_inputs(model))


# ------------------------------------------------------------------------------ loading + CLI
def _save_ours(model: torch.nn.Module, path: str) -> str:
    return save_checkpoint({**checkpoint_header(model), "state_dict": model.state_dict()}, path)


def _cli():
    spec = importlib.util.spec_from_file_location(
        "export_cli", osp.join(osp.dirname(__file__), "..", "tools", "export.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli


def test_load_inference_model_sources(tmp_path):
    model = tiny_model("tfclip_tiny")
    ours = _save_ours(model, str(tmp_path / "ours.pth"))
    rebuilt = load_inference_model(weights=ours)
    assert not rebuilt.training and rebuilt.cfg.to_dict() == model.cfg.to_dict()
    with pytest.raises(ValueError, match="holds a tfclip_tiny model"):
        load_inference_model("tfclip_vitb16", ours)

    torch.manual_seed(1)
    full = randomize_batchnorm(build_tfclip("tfclip_tiny", num_classes=7, camera_num=CAMERAS))
    plain = str(tmp_path / "plain.pth")
    torch.save(full.state_dict(), plain)
    with pytest.raises(ValueError, match="give --arch"):
        load_inference_model(weights=plain)
    loaded = load_inference_model("tfclip_tiny", plain)  # cameras and classes from the tensors
    assert (loaded.cfg.camera_num, loaded.num_classes) == (CAMERAS, 7)
    inputs = example_inputs(full.eval(), batch=2, frames=2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(*inputs), full(*inputs))
    # a plain state dict without the training-only parts still gives the test feature
    features_only = {k: v for k, v in full.state_dict().items()
                     if not k.startswith(("memory.", "ssp.", "classifier"))}
    torch.save(features_only, plain)
    with torch.no_grad():
        torch.testing.assert_close(load_inference_model("tfclip_tiny", plain)(*inputs),
                                   full(*inputs))


def test_cli_exports_a_checkpoint(tmp_path, capsys):
    weights = _save_ours(tiny_model("tfclip_tiny"), str(tmp_path / "ckpt.pth"))
    out = tmp_path / "exported"
    rc = _cli().main(["--weights", weights, "--format", "torchscript", "onnx", "--out", str(out),
                      "--frames", "2", "--onnx-exporter", "legacy"])
    text = capsys.readouterr().out
    assert rc == 0, text
    for name in ("tfclip_tiny.pt", "tfclip_tiny.onnx"):
        assert (out / name).is_file()
    diffs = [float(line.split("=")[1].split()[0]) for line in text.splitlines()
             if "max |" in line]
    assert len(diffs) == 2 and max(diffs) < ATOL
    assert text.count("MiB") == 2 and "cam_ids (B,) int64" in text
    assert _cli().main(["--format", "onnx"]) == 2  # neither --arch nor --weights


def test_cli_exports_a_plain_two_camera_state_dict_without_camera_num(tmp_path, capsys,
                                                                      monkeypatch):
    """The camera count of weights that do not describe themselves comes from ``cv_embed``;
    the file is read once."""
    model = tiny_model("tfclip_tiny", camera_num=2)
    plain = str(tmp_path / "plain.pth")
    torch.save({"state_dict": model.state_dict(), "epoch": 4}, plain)
    loads = count_loads(monkeypatch, plain)
    out = str(tmp_path / "plain.pt")
    rc = _cli().main(["--arch", "tfclip_tiny", "--weights", plain, "--format", "torchscript",
                      "--out", out, "--frames", "2"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert len(loads) == 1
    assert "cam_ids (B,) int64" in text
    clips = torch.randn(2, 2, 3, *model.cfg.image_size)
    cams = torch.tensor([0, 1])
    with torch.no_grad():
        want = model(clips, cams).numpy()
    np.testing.assert_allclose(run_exported(out, "torchscript")(clips, cams), want, atol=ATOL)
