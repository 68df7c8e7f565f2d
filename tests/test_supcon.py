"""SupCon loss of CLIP-ReID stage 1 against an explicit-loop float64 reference."""

from __future__ import annotations

import math

import pytest
import torch

from tfclip_torchreid.losses.supcon import PromptLearningLoss, SupConLoss


def reference_supcon(anchors, contrast, anchor_labels, contrast_labels, temperature=1.0):
    """Python-float loops: for each anchor, -mean over positives of log p(positive | anchor)."""
    a, c = anchors.tolist(), contrast.tolist()
    ya, yc = anchor_labels.tolist(), contrast_labels.tolist()
    total = 0.0
    for i in range(len(a)):
        logits = []
        for j in range(len(c)):
            dot = 0.0
            for k in range(len(a[i])):
                dot += a[i][k] * c[j][k]
            logits.append(dot / temperature)
        top = max(logits)  # shift by the row maximum so exp() cannot overflow
        denominator = sum(math.exp(s - top) for s in logits)
        log_probs = [(logits[j] - top) - math.log(denominator)
                     for j in range(len(c)) if yc[j] == ya[i]]
        total += -sum(log_probs) / len(log_probs)
    return total / len(a)


PATTERNS = {
    "distinct": [0, 1, 2, 3, 4, 5],
    "p_by_k": [3, 3, 3, 7, 7, 7],
    "unbalanced": [1, 1, 1, 1, 2, 5],
    "all_same": [4, 4, 4, 4, 4, 4],
}


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_matches_loop_reference_both_directions(pattern):
    labels = torch.tensor(PATTERNS[pattern])
    img = torch.randn(6, 5, dtype=torch.float64)
    txt = torch.randn(6, 5, dtype=torch.float64)
    crit = SupConLoss()
    i2t = crit(img, txt, labels, labels)
    t2i = crit(txt, img, labels, labels)
    assert i2t.dtype == torch.float64
    assert i2t.item() == pytest.approx(reference_supcon(img, txt, labels, labels), abs=1e-12)
    assert t2i.item() == pytest.approx(reference_supcon(txt, img, labels, labels), abs=1e-12)
    if pattern != "all_same":
        assert abs(i2t.item() - t2i.item()) > 1e-6  # the directions really differ


def test_different_sets_temperature_and_large_logits():
    anchors = torch.randn(3, 4, dtype=torch.float64) * 10  # logits ~ 100s: needs max-subtraction
    contrast = torch.randn(7, 4, dtype=torch.float64) * 10
    ya, yc = torch.tensor([2, 0, 2]), torch.tensor([0, 1, 2, 2, 0, 5, 1])
    for tau in (1.0, 0.5):
        got = SupConLoss(temperature=tau)(anchors, contrast, ya, yc)
        assert torch.isfinite(got)
        assert got.item() == pytest.approx(reference_supcon(anchors, contrast, ya, yc, tau),
                                           rel=1e-10)


def test_prompt_learning_loss_float32_terms_and_text_gradient():
    labels = torch.tensor([0, 0, 3, 3, 5, 5])
    img = torch.randn(6, 8)
    txt = torch.randn(6, 8, requires_grad=True)
    loss, terms = PromptLearningLoss()(img, txt, labels)
    assert list(terms) == ["loss_i2t", "loss_t2i"] and loss.dtype == torch.float32
    ref_i2t = reference_supcon(img.double(), txt.detach().double(), labels, labels)
    ref_t2i = reference_supcon(txt.detach().double(), img.double(), labels, labels)
    assert terms["loss_i2t"] == pytest.approx(ref_i2t, abs=1e-5)
    assert terms["loss_t2i"] == pytest.approx(ref_t2i, abs=1e-5)
    assert loss.item() == pytest.approx(ref_i2t + ref_t2i, abs=1e-5)
    loss.backward()
    assert txt.grad is not None and torch.isfinite(txt.grad).all() and txt.grad.abs().sum() > 0
    # each direction alone also reaches the text side
    for direction in ("i2t", "t2i"):
        t = txt.detach().clone().requires_grad_(True)
        crit = SupConLoss()
        out = crit(img, t, labels, labels) if direction == "i2t" else crit(t, img, labels, labels)
        out.backward()
        assert t.grad.abs().sum() > 0, direction


def test_prompt_learning_loss_under_autocast_is_float32():
    labels = torch.tensor([1, 1, 2, 2])
    img, txt = torch.randn(4, 8).bfloat16(), torch.randn(4, 8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = PromptLearningLoss()(img, txt, labels)
    assert loss.dtype == torch.float32
    expected, _ = PromptLearningLoss()(img.float(), txt.float(), labels)
    assert torch.equal(loss, expected)


def test_invalid_inputs_raise_clear_errors():
    crit = SupConLoss()
    x, y = torch.randn(4, 3), torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match="anchor features"):
        crit(torch.randn(4), x, y, y)
    with pytest.raises(ValueError, match="same size"):
        crit(x, torch.randn(4, 5), y, y)
    with pytest.raises(ValueError, match="3 contrast labels for 4"):
        crit(x, x, y, y[:3])
    with pytest.raises(ValueError, match="integer"):
        crit(x, x, y.float(), y)
    with pytest.raises(ValueError, match="non-empty"):
        crit(x[:0], x, y[:0], y)
    with pytest.raises(ValueError, match=r"at least one.*labels \[2\]"):
        crit(x, x, torch.tensor([0, 2, 1, 1]), y)
    with pytest.raises(ValueError, match="temperature"):
        SupConLoss(temperature=0.0)
