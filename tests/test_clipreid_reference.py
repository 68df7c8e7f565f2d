"""CLIP-ReID's checkpoint layout, as recorded from the reference's code (tests/data/clipreid_keys,
see tests/data/README.md), loads into our clipreid_* models with 0 missing / 0 unexpected keys,
every tensor of the file landing unchanged in the model."""

from __future__ import annotations

import collections
import hashlib
import re

import pytest
import torch
from clipreid_reference import VARIANTS, clipreid_state_dict, key_list, positions, reference_shapes

from tfclip_torchreid.models import build_tfclip

# (backbone, camera_num, stride, our arch, switches): the reference's ViT with and without SIE at
# strides 16 and 12 (OLP), and its RN50
CASES = [
    ("vit", 0, 16, "clipreid_vitb16", {}),
    ("vit", 3, 16, "clipreid_vitb16", {"use_sie": True}),
    ("vit", 0, 12, "clipreid_vitb16_s12", {"use_sie": False}),
    ("vit", 3, 12, "clipreid_vitb16_s12", {}),
    ("rn50", 0, 16, "clipreid_rn50", {}),
]
CASE_IDS = ["vit", "vit_sie", "vit_s12", "vit_sie_s12", "rn50"]


def _depth(keys, pattern: str) -> collections.Counter:
    """Blocks per group: ``pattern`` captures (group, block index)."""
    found = {m.groups() for k in keys if (m := re.match(pattern, k))}
    return collections.Counter(group for group, _ in found)


def test_recorded_lists_are_the_full_size_reference_models():
    for variant in VARIANTS:
        data = key_list(variant)
        ref, sizes = data["reference"], data["sizes"]
        assert sizes["positions"] == positions(ref["MODEL.STRIDE_SIZE"][0],
                                               tuple(ref["INPUT.SIZE_TRAIN"]))
        assert sizes["num_classes"] == ref["num_classes"]
        # the named dimensions give back every recorded full-size shape
        shapes = reference_shapes(variant)
        assert list(shapes) == list(data["keys"])
        for key, entry in data["keys"].items():
            assert list(shapes[key][0]) == entry["shape"], key
        keys = list(data["keys"])
        assert _depth(keys, r"^(text_encoder)\.transformer\.resblocks\.(\d+)\.") == {
            "text_encoder": 12}
        if variant == "rn50":
            assert sizes["width"] == 64 and sizes["embed"] == 1024
            assert _depth(keys, r"^image_encoder\.(layer\d)\.(\d+)\.") == {
                "layer1": 3, "layer2": 4, "layer3": 6, "layer4": 3}
        else:
            assert (sizes["width"], sizes["embed"], sizes["text_width"]) == (768, 512, 512)
            assert _depth(keys, r"^(image_encoder)\.transformer\.resblocks\.(\d+)\.") == {
                "image_encoder": 12}
    vit, sie = key_list("vit")["keys"], key_list("vit_sie")["keys"]
    assert list(sie) == ["cv_embed", *vit]
    assert sie["cv_embed"]["shape"] == [15, 768]
    assert key_list("vit_sie")["sizes"]["positions"] == 211  # OLP: 21 x 10 + 1


def test_depth_can_only_be_lowered():
    sd = clipreid_state_dict("rn50", width=8, blocks=(1, 2, 1, 3))
    assert _depth(sd, r"^image_encoder\.(layer\d)\.(\d+)\.") == {
        "layer1": 1, "layer2": 2, "layer3": 1, "layer4": 3}
    with pytest.raises(ValueError, match="within the reference"):
        clipreid_state_dict("vit", layers=13)
    with pytest.raises(ValueError, match="within the reference"):
        clipreid_state_dict("rn50", blocks=(4, 1, 1, 1))


def _fingerprints(state) -> collections.Counter:
    """Multiset of (shape, dtype, bytes) of every tensor: equal multisets mean every tensor was
    loaded unchanged (only renamed)."""
    return collections.Counter(
        (tuple(v.shape), str(v.dtype), hashlib.sha1(v.contiguous().numpy().tobytes()).hexdigest())
        for v in state.values())


def _load(tmp_path, state, arch, camera_num, switches, **overrides):
    """Save ``state`` as CLIP-ReID does and build ``arch`` from it (strict: any missing,
    unexpected or mis-shaped key raises)."""
    path = tmp_path / "clipreid.pth"
    torch.save(state, path)
    return build_tfclip(arch, num_classes=7, camera_num=camera_num, weights=str(path),
                        **switches, **overrides)


@pytest.mark.parametrize("backbone,camera_num,stride,arch,switches", CASES, ids=CASE_IDS)
def test_full_depth_reference_layout_loads_unchanged(tmp_path, backbone, camera_num, stride,
                                                     arch, switches):
    """Every key of the reference at its full depth (12 + 12 blocks, RN50 stages 3/4/6/3), small
    widths: the file loads strictly and each of its tensors is in the model unchanged."""
    torch.manual_seed(0)
    width = 8 if backbone == "rn50" else 32
    depth = ({"blocks": (3, 4, 6, 3)} if backbone == "rn50" else {"layers": 12})
    state = clipreid_state_dict(backbone, num_classes=7, camera_num=camera_num, stride=stride,
                                width=width, embed=16, text_width=16, text_layers=12, **depth)
    model = _load(tmp_path, state, arch, camera_num, switches, width=width, embed_dim=16,
                  text_width=16, heads=2, text_heads=2)
    ours = {k: v for k, v in model.state_dict().items() if not k.startswith("memory.")}
    assert len(ours) == len(state)
    assert _fingerprints(ours) == _fingerprints(state)
    model.eval()
    x = torch.randn(2, 3, 256, 128)
    with torch.no_grad():
        feat = model(x, cam_label=torch.tensor([0, 2])) if camera_num else model(x)
    feat_dim = 32 * width if backbone == "rn50" else width
    assert feat.shape == (2, feat_dim + 16) and torch.isfinite(feat).all()


@pytest.mark.slow
@pytest.mark.parametrize("backbone,camera_num,stride,arch,switches",
                         [CASES[0], CASES[3], CASES[4]], ids=["vit", "vit_sie_s12", "rn50"])
def test_full_size_reference_layout_loads(tmp_path, backbone, camera_num, stride, arch,
                                          switches):
    """The reference's full-size layouts (ViT-B/16, RN50, at their recorded widths) load
    strictly into our full-size clipreid_* models."""
    torch.manual_seed(0)
    variant = "rn50" if backbone == "rn50" else ("vit_sie" if camera_num else "vit")
    full = key_list(variant)["sizes"]
    depth = {"blocks": (3, 4, 6, 3)} if backbone == "rn50" else {"layers": 12}
    state = clipreid_state_dict(backbone, num_classes=7, camera_num=camera_num, stride=stride,
                                width=full["width"], embed=full["embed"],
                                text_width=full["text_width"], text_layers=12, **depth)
    assert len(state) == len(key_list(variant)["keys"])
    model = _load(tmp_path, state, arch, camera_num, switches)
    ours = {k: v for k, v in model.state_dict().items() if not k.startswith("memory.")}
    assert len(ours) == len(state)
    assert sum(v.numel() for v in state.values()) == sum(v.numel() for v in ours.values())
