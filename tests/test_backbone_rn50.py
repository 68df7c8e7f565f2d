"""CLIP RN50 backbone (last stride 1, all-token attention pool) and the shared visual interface.

References are built independently of the code under test: open_clip's own ``ModifiedResNet``
(float64, random weights and BatchNorm statistics), a float64 bilinear resize written here with
plain index arithmetic, and multi-head attention written here with plain matmuls.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from open_clip.modified_resnet import ModifiedResNet

from tfclip_torchreid.models.backbone import CLIPVisualBackbone, VisualFeatures
from tfclip_torchreid.models.backbone_rn50 import CLIPResNetBackbone, rn50_complexity
from tfclip_torchreid.models.key_mapping import convert_authors_state_dict

ATOL = 1e-10
TINY = {"layers": (1, 1, 1, 1), "width": 16, "heads": 8, "output_dim": 64}  # pool width 512
POOL = 32 * TINY["width"]
RN50_VISUAL_PARAMS = 38_316_896  # open_clip RN50 visual tower at 224


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Random parameters and BatchNorm statistics (open_clip zero-inits every bn3 weight)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(1.0 + 0.5 * torch.rand(b.shape, generator=g))
    return module


def open_clip_resnet(image_size: int = 224, seed: int = 0) -> ModifiedResNet:
    torch.manual_seed(seed)
    ref = ModifiedResNet(list(TINY["layers"]), TINY["output_dim"], TINY["heads"],
                         image_size=image_size, width=TINY["width"])
    return randomize(ref, seed).double().eval()


def authors_layout_reference(seed: int = 1) -> ModifiedResNet:
    """open_clip's network changed as the authors / CLIP-ReID change it: layer4 stride 1
    (Bottleneck without its average pools) and a 16x8 + 1 attention-pool table."""
    ref = open_clip_resnet(256, seed)
    block = ref.layer4[0]
    block.avgpool = nn.Identity()
    block.downsample[0] = nn.AvgPool2d(1)  # the shortcut's "-1" pool (no parameters)
    g = torch.Generator().manual_seed(seed + 100)
    ref.attnpool.positional_embedding = nn.Parameter(
        torch.randn(129, POOL, generator=g, dtype=torch.float64) / POOL**0.5)
    return ref.eval()


def ours(image_size=(256, 128), last_stride: int = 1) -> CLIPResNetBackbone:
    return CLIPResNetBackbone(image_size=image_size, last_stride=last_stride, **TINY)


def bilinear_reference(table: torch.Tensor, side: int, out_h: int, out_w: int) -> torch.Tensor:
    """Half-pixel (align_corners=False) bilinear resize of a (1 + side^2, C) table, 4 taps."""

    def taps(n_in: int, n_out: int):
        out = []
        for o in range(n_out):
            src = max((o + 0.5) * n_in / n_out - 0.5, 0.0)
            i0 = int(math.floor(src))
            out.append((i0, min(i0 + 1, n_in - 1), src - i0))
        return out

    grid = table[1:].reshape(side, side, -1)
    rows = []
    for y0, y1, ly in taps(side, out_h):
        for x0, x1, lx in taps(side, out_w):
            top = (1 - lx) * grid[y0, x0] + lx * grid[y0, x1]
            bottom = (1 - lx) * grid[y1, x0] + lx * grid[y1, x1]
            rows.append((1 - ly) * top + ly * bottom)
    return torch.cat([table[:1], torch.stack(rows)])


def plain_attention_pool(pool, x: torch.Tensor) -> torch.Tensor:
    """All tokens of CLIP's attention pool with plain matmuls: (N, C, H, W) -> (N, 1+HW, out)."""
    t = x.flatten(2).transpose(1, 2)  # (N, HW, C)
    t = torch.cat([t.mean(dim=1, keepdim=True), t], dim=1) + pool.positional_embedding
    n, length, c = t.shape
    heads = pool.num_heads

    def split(y):
        return y.view(n, length, heads, c // heads).transpose(1, 2)

    q, k, v = (split(proj(t)) for proj in (pool.q_proj, pool.k_proj, pool.v_proj))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // heads), dim=-1)
    return pool.c_proj((weights @ v).transpose(1, 2).reshape(n, length, c))


# ---------------------------------------------------------------------------- vs open_clip


def test_last_stride_2_reproduces_open_clip_modified_resnet_at_224():
    ref = open_clip_resnet(224)
    m = ours((224, 224), last_stride=2).double().eval()
    assert m.state_dict().keys() == ref.state_dict().keys()
    m.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64)
    with torch.no_grad():
        pooled = ref(x)
        maps = ref.forward_intermediates(x, indices=[3, 4], intermediates_only=True)
        f = m.features(x, return_penultimate=True)
    assert f.tokens.shape == (2, 50, 64)
    torch.testing.assert_close(f.tokens[:, 0], pooled, atol=ATOL, rtol=0)
    layer3, layer4 = maps["image_intermediates"]
    torch.testing.assert_close(f.global_feature, layer4.mean(dim=(2, 3)), atol=ATOL, rtol=0)
    torch.testing.assert_close(f.penultimate, layer3.mean(dim=(2, 3)), atol=ATOL, rtol=0)
    assert f.tokens_proj is f.tokens


def test_last_stride_1_changes_only_the_stride_and_the_table():
    stride2 = ours((256, 128), last_stride=2).state_dict()
    stride1 = ours((256, 128), last_stride=1).state_dict()
    assert stride1.keys() == stride2.keys()
    differ = [k for k in stride1 if stride1[k].shape != stride2[k].shape]
    assert differ == ["attnpool.positional_embedding"]
    assert stride1["attnpool.positional_embedding"].shape == (129, POOL)
    assert stride2["attnpool.positional_embedding"].shape == (33, POOL)  # 8x4 + 1

    ref = authors_layout_reference()
    m = ours().double().eval()
    m.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 256, 128, dtype=torch.float64)
    with torch.no_grad():
        f = m.features(x)
        torch.testing.assert_close(f.tokens[:, 0], ref(x), atol=ATOL, rtol=0)
        layer3, layer4 = m.feature_maps(x)
    assert layer4.shape == (2, POOL, 16, 8) and layer3.shape == (2, POOL // 2, 16, 8)
    assert f.tokens.shape == (2, 129, 64)


def test_every_pooled_token_equals_plain_multi_head_attention():
    ref = authors_layout_reference(seed=2)
    m = ours().double().eval()
    m.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 256, 128, dtype=torch.float64)
    with torch.no_grad():
        expected = plain_attention_pool(m.attnpool, m.feature_maps(x)[1])
        tokens, tokens_proj = m(x)
    torch.testing.assert_close(tokens, expected, atol=ATOL, rtol=0)
    assert tokens_proj is tokens and m(x, project=False).shape == (2, 129, 64)


# ---------------------------------------------------------------------------- table resize


def test_attention_pool_table_is_resized_by_half_pixel_bilinear():
    src = open_clip_resnet(224, seed=3)  # 7x7 + 1 table
    m = ours().double()
    m.load_visual_state_dict(src.state_dict(), source="test")
    table = src.attnpool.positional_embedding.detach()
    torch.testing.assert_close(m.attnpool.positional_embedding.detach(),
                               bilinear_reference(table, 7, 16, 8), atol=ATOL, rtol=0)
    for name, p in src.state_dict().items():
        if name != "attnpool.positional_embedding":
            torch.testing.assert_close(m.state_dict()[name], p, msg=name)
    # the same rule for any target grid (up and down), e.g. the ViT's 14x14 -> 21x10
    from tfclip_torchreid.models.pretrained import resize_positional_embedding

    vit_table = torch.randn(197, 6, dtype=torch.float64)
    for h, w in ((21, 10), (16, 8), (5, 3)):
        torch.testing.assert_close(resize_positional_embedding(vit_table, (h, w)),
                                   bilinear_reference(vit_table, 14, h, w), atol=ATOL, rtol=0)


# ---------------------------------------------------------------------------- sizes


def test_full_size_rn50_on_meta_device():
    with torch.device("meta"):
        ref = ModifiedResNet([3, 4, 6, 3], 1024, 32, image_size=224, width=64)
        original = CLIPResNetBackbone(image_size=(224, 224), last_stride=2)
        m = CLIPResNetBackbone()
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert count(ref) == count(original) == RN50_VISUAL_PARAMS
    assert count(m) == RN50_VISUAL_PARAMS + 79 * 2048
    assert (m.grid_size, m.num_tokens) == ((16, 8), 129)
    assert (m.token_dim, m.embed_dim, m.global_dim, m.penultimate_dim, m.sie_dim) == (
        1024, 1024, 2048, 1024, 2048)
    f = m.features(torch.empty(3, 3, 256, 128, device="meta"), return_penultimate=True)
    assert isinstance(f, VisualFeatures)
    assert [tuple(t.shape) for t in f] == [(3, 129, 1024), (3, 129, 1024), (3, 2048), (3, 1024)]


def test_complexity_per_frame():
    r = rn50_complexity()
    p, macs = r["params"], r["macs"]
    assert p["total"] == RN50_VISUAL_PARAMS + 79 * 2048
    assert p["total"] == sum(p[k] for k in ("stem", "layer1", "layer2", "layer3", "layer4",
                                            "attnpool"))
    assert p["attnpool_positional"] == 129 * 2048
    length, c, out = 129, 2048, 1024  # q/k/v + c_proj of every token, QK^T and AV
    assert macs["attnpool"] == 3 * length * c * c + length * c * out + 2 * length * length * c
    h, w = 128, 64  # the stem runs at half resolution: 3->32, 32->32, 32->64, 3x3 kernels
    assert macs["stem"] == h * w * 9 * (3 * 32 + 32 * 32 + 32 * 64)
    assert macs["total"] == sum(v for k, v in macs.items() if k != "total") == 6_624_645_120


# ---------------------------------------------------------------------------- weights


def test_full_openai_layout_state_dict_loads_and_resizes(tmp_path):
    src = open_clip_resnet(224, seed=4).float()
    full = {"visual." + k: v for k, v in src.state_dict().items()}
    full.update({"token_embedding.weight": torch.randn(10, 64), "positional_embedding":
                 torch.randn(77, 64), "transformer.resblocks.0.ln_1.weight": torch.randn(64),
                 "ln_final.weight": torch.randn(64), "text_projection": torch.randn(64, 64),
                 "logit_scale": torch.ones(())})
    path = str(tmp_path / "RN50-like.pt")
    torch.save(full, path)
    m = ours()
    m.load_pretrained(path)
    got = m.state_dict()
    for k, v in src.state_dict().items():
        if k == "attnpool.positional_embedding":
            expected = bilinear_reference(v.double(), 7, 16, 8).float()
            torch.testing.assert_close(got[k], expected, atol=1e-6, rtol=0)
        else:
            torch.testing.assert_close(got[k], v, msg=k)
    with pytest.raises(ValueError, match="do not fit this architecture"):
        CLIPResNetBackbone(image_size=(256, 128), layers=(1, 1, 1, 1), width=8, heads=2,
                           output_dim=64).load_pretrained(path)


def test_authors_tfclip_rn50_checkpoint_loads_through_key_mapping(tmp_path):
    ref = authors_layout_reference(seed=5)
    visual = ref.state_dict()
    authors = {"module.image_encoder." + k: v for k, v in visual.items()}  # DataParallel
    authors.update({"module.classifier2.weight": torch.zeros(7, 64),
                    "module.bottleneck.weight": torch.ones(64)})
    # the authors' RN50 names and shapes (OpenAI's names; 129 x 2048-channel table at full size)
    for key, shape in (("image_encoder.conv1.weight", (8, 3, 3, 3)),
                       ("image_encoder.layer4.0.downsample.0.weight", (POOL, POOL // 2, 1, 1)),
                       ("image_encoder.layer4.0.bn3.running_var", (POOL,)),
                       ("image_encoder.attnpool.positional_embedding", (129, POOL)),
                       ("image_encoder.attnpool.c_proj.weight", (64, POOL))):
        assert tuple(authors["module." + key].shape) == shape, key

    converted = convert_authors_state_dict(authors)
    backbone = {k[len("backbone."):]: v for k, v in converted.items() if k.startswith("backbone.")}
    assert set(converted) - {"backbone." + k for k in backbone} == {
        "classifier2.weight", "bottleneck.weight"}
    module_level = convert_authors_state_dict(
        {k[len("module.image_encoder."):]: v for k, v in authors.items() if "image_encoder" in k},
        prefix="image_encoder.")
    assert module_level.keys() == backbone.keys()

    x = torch.randn(2, 3, 256, 128, dtype=torch.float64)
    with torch.no_grad():
        expected = ref(x)
    m = ours().double().eval()
    m.load_state_dict(backbone, strict=True)
    from_file = ours().double().eval()
    path = str(tmp_path / "tfclip_rn50_authors.pth")
    torch.save(authors, path)
    from_file.load_pretrained(path)  # the same checkpoint file, through the CLIP loader
    with torch.no_grad():
        torch.testing.assert_close(m.features(x).tokens[:, 0], expected, atol=ATOL, rtol=0)
        torch.testing.assert_close(from_file.features(x).tokens, m.features(x).tokens)


# ---------------------------------------------------------------------------- options, errors


def test_camera_embedding_on_the_pool_query_is_optional():
    m = ours().double().eval()
    x = torch.randn(1, 3, 256, 128, dtype=torch.float64)
    with torch.no_grad():
        plain = m.features(x).tokens
        zero = m.features(x, torch.zeros(1, m.sie_dim, dtype=torch.float64)).tokens
        cam = m.features(x, torch.randn(1, m.sie_dim, dtype=torch.float64)).tokens
    torch.testing.assert_close(zero, plain, atol=ATOL, rtol=0)
    assert (cam[:, 0] - plain[:, 0]).abs().max() > 1e-3


def test_clear_errors():
    m = ours()
    with pytest.raises(ValueError, match=r"expects 256x128 \(HxW\) frames, got 224x224"):
        m.features(torch.randn(1, 3, 224, 224))
    with pytest.raises(NotImplementedError, match="BatchNorm"):
        m.set_grad_checkpointing(True)
    m.set_grad_checkpointing(False)
    with pytest.raises(ValueError, match="last_stride must be 1 or 2"):
        ours(last_stride=3)
    with pytest.raises(ValueError, match="not divisible by heads"):
        CLIPResNetBackbone(layers=(1, 1, 1, 1), width=8, heads=3, output_dim=8)
    with pytest.raises(ValueError, match="too small"):
        ours(image_size=(8, 8))


# ---------------------------------------------------------------------------- shared interface


def test_vit_features_interface():
    torch.manual_seed(6)
    m = CLIPVisualBackbone(image_size=(64, 64), width=32, layers=2, heads=2,
                           output_dim=16).double().eval()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    cams = torch.randn(2, 32, dtype=torch.float64)
    captured = []
    m.transformer.resblocks[0].register_forward_hook(lambda mod, i, o: captured.append(o))
    with torch.no_grad():
        f = m.features(x, cams, return_penultimate=True)
        tokens, tokens_proj = m(x, cams)
    torch.testing.assert_close(f.tokens, tokens, atol=ATOL, rtol=0)
    torch.testing.assert_close(f.tokens_proj, tokens_proj, atol=ATOL, rtol=0)
    torch.testing.assert_close(f.global_feature, tokens[:, 0], atol=0, rtol=0)
    torch.testing.assert_close(f.penultimate, captured[0][:, 0], atol=0, rtol=0)  # no ln_post
    assert m.features(x).penultimate is None
    assert (m.token_dim, m.global_dim, m.penultimate_dim, m.embed_dim, m.sie_dim) == (
        32, 32, 32, 16, 32)
    assert m.grid_size == (4, 4) and m.num_tokens == 17
    # open_clip's forward_intermediates keeps activation checkpointing: same values, gradients
    m.train().set_grad_checkpointing(True)
    g = m.features(x, cams, return_penultimate=True)
    (g.tokens.sum() + g.penultimate.sum()).backward()
    assert m.conv1.weight.grad is not None and m.transformer.grad_checkpointing
    torch.testing.assert_close(g.penultimate, f.penultimate, atol=ATOL, rtol=0)
    one_block = CLIPVisualBackbone(image_size=(32, 32), width=16, layers=1, heads=2, output_dim=8)
    assert one_block.features(torch.randn(1, 3, 32, 32), return_penultimate=True
                              ).penultimate.shape == (1, 16)
