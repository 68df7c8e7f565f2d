"""Full-size ViT-B/16 checks (seconds per step on CPU): run with `pytest -m slow tests`."""

from __future__ import annotations

import pytest
import torch

from tfclip_torchreid.losses import TFCLIPLoss
from tfclip_torchreid.models import build_tfclip

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("arch,tokens", [("tfclip_vitb16", 129), ("tfclip_vitb16_s12", 211)])
def test_full_size_training_step_and_test_feature(arch, tokens):
    torch.manual_seed(0)
    model = build_tfclip(arch, num_classes=625, camera_num=6, pretrained=None,
                         grad_checkpointing=arch.endswith("s12"))
    model.memory.set(torch.randn(625, 512))
    x = torch.randn(4, 2, 3, 256, 128)
    cams = torch.tensor([0, 1, 2, 5])
    pids = torch.tensor([3, 3, 7, 7])
    feats, b, t = model.encode(x, cams)
    assert (b, t) == (4, 2) and feats.tokens.shape == (8, tokens, 768)
    assert feats.tokens_proj.shape == (8, tokens, 512)
    model.train()
    out = model(x, cam_label=cams)
    assert [f.shape[1] for f in out.features] == [768, 512, 768]
    assert out.v2m_logits.shape == (4, 625) and out.frame_logits.shape == (8, 625)
    loss, terms = TFCLIPLoss(num_classes=625)(out, pids)
    loss.backward()
    assert model.backbone.conv1.weight.grad is not None and model.ssp is not None
    assert all(p.grad is not None for n, p in model.ssp.named_parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        feat = model(x, cam_label=cams)
    assert feat.shape == (4, 2048)
