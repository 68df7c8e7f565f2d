"""TF-CLIP losses against hand computations in plain torch ops (docs/released_vs_paper.md#losses, paper Eq. 10)."""

from __future__ import annotations

import math
from collections import namedtuple

import pytest
import torch

from tfclip_torchreid import compat
from tfclip_torchreid.losses import TFCLIPLoss, V2MLoss
from tfclip_torchreid.losses.cross_entropy import SmoothedCrossEntropy

Out = namedtuple("Out", "id_logits features frame_logits v2m_logits")

Y, B, T = 7, 6, 3
PIDS = torch.tensor([0, 0, 3, 3, 5, 5])


# ----------------------------------------------------------------------------- references
def ref_ce(logits, targets, eps=0.1):
    """-sum_k ((1-eps) onehot + eps/Y) log_softmax, mean over rows, written element-wise."""
    logits = logits.double()
    n, y = logits.shape
    total = 0.0
    for i in range(n):
        lse = math.log(sum(math.exp(v) for v in logits[i].tolist()))
        for k in range(y):
            q = (1 - eps) * (k == int(targets[i])) + eps / y
            total -= q * (logits[i, k].item() - lse)
    return total / n


def ref_triplet(feats, pids, margin=0.3):
    """Batch-hard triplet with explicit loops over anchors and candidates."""
    f = feats.double()
    n = f.size(0)
    losses = []
    for i in range(n):
        ap, an = -math.inf, math.inf
        for j in range(n):
            d = math.sqrt(max(((f[i] - f[j]) ** 2).sum().item(), 1e-12))
            if pids[i] == pids[j]:
                ap = max(ap, d)
            else:
                an = min(an, d)
        losses.append(max(0.0, ap - an + margin))
    return sum(losses) / n, losses


def ref_v2m_paper(s, pids):
    """Eq. 10 by loops over the identities y in the batch and their positives P(y)."""
    s = s.double()
    per_id = []
    for y in sorted(set(pids.tolist())):
        pos = [p for p in range(len(pids)) if pids[p] == y]
        denom = sum(math.exp(s[j, y].item()) for j in range(len(pids)))
        per_id.append(-sum(math.log(math.exp(s[p, y].item()) / denom) for p in pos) / len(pos))
    return sum(per_id) / len(per_id)


def make_output(heads=3, frames=True, v2m=True, dtype=torch.float32, grad=True):
    g = torch.Generator().manual_seed(1)
    dims = [12, 8, 12][:heads]
    id_logits = [torch.randn(B, Y, generator=g).to(dtype) for _ in range(heads)]
    features = [torch.randn(B, d, generator=g).to(dtype) for d in dims]
    frame_logits = torch.randn(B * T, Y, generator=g).to(dtype) if frames else None
    v2m_logits = (3 * torch.randn(B, Y, generator=g)).to(dtype) if v2m else None
    tensors = id_logits + features + [frame_logits, v2m_logits]
    for t in tensors:
        if t is not None and grad:
            t.requires_grad_(True)
    return Out(id_logits, features, frame_logits, v2m_logits)


# ----------------------------------------------------------------------------- cross-entropy
def test_smoothed_ce_matches_formula_and_torchreid():
    logits, t = torch.randn(5, Y), torch.tensor([0, 6, 2, 2, 4])
    ce = SmoothedCrossEntropy(Y)
    assert float(ce(logits, t)) == pytest.approx(ref_ce(logits, t), abs=1e-5)
    plain = SmoothedCrossEntropy(Y, label_smooth=False)
    assert float(plain(logits, t)) == pytest.approx(ref_ce(logits, t, eps=0.0), abs=1e-5)
    torchreid_ce = compat.CrossEntropyLoss(num_classes=Y, use_gpu=False, label_smooth=True)
    assert float(ce(logits, t)) == pytest.approx(float(torchreid_ce(logits, t)), abs=1e-6)
    with pytest.raises(ValueError, match="num_classes"):
        ce(torch.randn(5, Y + 1), t)


# ----------------------------------------------------------------------------- triplet
def test_triplet_is_batch_hard_with_mixed_hinge():
    # two tight clusters per pid plus one straggler so some anchors hit the hinge, some do not
    feats = torch.tensor([[0.0, 0.0], [0.1, 0.0], [1.0, 1.0], [1.0, 1.15], [0.2, 0.05], [3.0, 3.0]])
    crit = TFCLIPLoss(Y, id_weight=0, v2m_weight=0, frame_weight=0)
    out = Out([torch.randn(B, Y)], [feats], None, None)
    loss, terms = crit(out, PIDS)
    expected, per_anchor = ref_triplet(feats, PIDS)
    assert any(v > 0 for v in per_anchor) and any(v == 0 for v in per_anchor)
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    assert terms["loss_tri"] == pytest.approx(expected, abs=1e-5)
    assert isinstance(crit.triplet, compat.TripletLoss) and crit.triplet.margin == 0.3


# ----------------------------------------------------------------------------- V2M
def test_v2m_released_is_smoothed_ce_over_all_memories():
    v = torch.randn(B, 16)
    mem = torch.randn(B, Y, 16)  # per-sequence updated memory M'_b
    dot = torch.einsum("bd,bkd->bk", v, mem)
    loss = V2MLoss(Y)(dot, PIDS)
    assert loss.item() == pytest.approx(ref_ce(dot, PIDS), abs=1e-4)
    no_ls = V2MLoss(Y, label_smooth=False)(dot, PIDS)
    assert float(no_ls) == pytest.approx(ref_ce(dot, PIDS, eps=0.0), abs=1e-4)


@pytest.mark.parametrize("pids", [PIDS, torch.tensor([0, 0, 0, 2, 5, 5])])
def test_v2m_paper_eq10(pids):
    v = torch.randn(B, 16)
    mem = torch.randn(Y, 16)  # M'_y shared by the batch (paper)
    cos = torch.nn.functional.normalize(v, dim=1) @ torch.nn.functional.normalize(mem, dim=1).T
    cos.requires_grad_(True)
    loss = V2MLoss(Y, form="paper")(cos, pids)
    assert loss.item() == pytest.approx(ref_v2m_paper(cos.detach(), pids), abs=1e-5)
    loss.backward()
    # only the columns of identities present in the batch get gradient
    absent = [k for k in range(Y) if k not in pids.tolist()]
    assert cos.grad[:, absent].abs().sum() == 0
    assert cos.grad[:, pids.unique()].abs().sum() > 0


def test_v2m_paper_unequal_positives_averages_over_identities():
    pids = torch.tensor([0, 0, 0, 2, 5, 5])
    s = torch.randn(B, Y)
    loss = float(V2MLoss(Y, form="paper")(s, pids))
    logp = torch.log_softmax(s.double(), dim=0)
    per_sample = -logp[torch.arange(B), pids]
    assert loss == pytest.approx(ref_v2m_paper(s, pids), abs=1e-6)
    assert loss != pytest.approx(float(per_sample.mean()), abs=1e-4)  # not a sample mean


def test_v2m_bad_input():
    with pytest.raises(ValueError, match="form"):
        V2MLoss(Y, form="cosine")
    with pytest.raises(ValueError, match="memory rows"):
        V2MLoss(Y)(torch.randn(B, Y + 2), PIDS)


# ----------------------------------------------------------------------------- full loss
def test_full_loss_matches_weighted_sum():
    out = make_output()
    crit = TFCLIPLoss(Y)
    loss, terms = crit(out, PIDS)
    ce = [ref_ce(x.detach(), PIDS) for x in out.id_logits]
    tri = [ref_triplet(f.detach(), PIDS)[0] for f in out.features]
    v2m = ref_ce(out.v2m_logits.detach(), PIDS)
    frame = ref_ce(out.frame_logits.detach(), PIDS.repeat_interleave(T)) / T
    expected = {
        "loss_id": 0.25 * sum(ce),
        "loss_tri": sum(tri),
        "loss_v2m": v2m,
        "loss_frame": frame,
    }
    assert list(terms) == ["loss_id", "loss_tri", "loss_v2m", "loss_frame", "acc"]
    for k, v in expected.items():
        assert terms[k] == pytest.approx(v, abs=1e-4), k
        assert isinstance(terms[k], float)
    assert loss.item() == pytest.approx(sum(expected.values()), abs=1e-4)
    acc = (out.id_logits[0].argmax(1) == PIDS).float().mean().item() * 100
    assert terms["acc"] == pytest.approx(acc)
    assert loss.dtype == torch.float32 and loss.dim() == 0


def test_custom_weights_and_frame_term_not_scaled_by_id_weight():
    out = make_output()
    base = TFCLIPLoss(Y)(out, PIDS)[1]
    crit = TFCLIPLoss(Y, id_weight=0.5, triplet_weight=2.0, v2m_weight=3.0, frame_weight=4.0)
    _, terms = crit(out, PIDS)
    assert terms["loss_id"] == pytest.approx(2 * base["loss_id"], rel=1e-5)
    assert terms["loss_tri"] == pytest.approx(2 * base["loss_tri"], rel=1e-5)
    assert terms["loss_v2m"] == pytest.approx(3 * base["loss_v2m"], rel=1e-5)
    assert terms["loss_frame"] == pytest.approx(4 * base["loss_frame"], rel=1e-5)
    # id_weight does not touch the frame term
    only_id = TFCLIPLoss(Y, id_weight=10.0)(out, PIDS)[1]
    assert only_id["loss_frame"] == pytest.approx(base["loss_frame"], rel=1e-6)


def test_frame_labels_are_sequence_major():
    # frame row b*T+t belongs to sequence b: logits peaked on pid of b give near-zero loss
    frame = torch.full((B * T, Y), -20.0)
    frame[torch.arange(B * T), PIDS.repeat_interleave(T)] = 20.0
    crit = TFCLIPLoss(Y, id_weight=0, triplet_weight=0, v2m_weight=0, label_smooth=False)
    out = Out([torch.randn(B, Y)], [], frame, None)
    _, terms = crit(out, PIDS)
    assert terms["loss_frame"] < 1e-6
    wrong = frame.view(B, T, Y).transpose(0, 1).reshape(B * T, Y)  # time-major order
    assert crit(Out([torch.randn(B, Y)], [], wrong, None), PIDS)[1]["loss_frame"] > 1.0


@pytest.mark.parametrize(
    "term, inputs",
    [
        ("id", {"id_logits"}),
        ("triplet", {"features"}),
        ("v2m", {"v2m_logits"}),
        ("frame", {"frame_logits"}),
    ],
)
def test_gradients_reach_only_their_inputs(term, inputs):
    weights = {"id_weight": 0.0, "triplet_weight": 0.0, "v2m_weight": 0.0, "frame_weight": 0.0}
    weights[f"{term}_weight"] = 1.0
    out = make_output()
    loss, terms = TFCLIPLoss(Y, **weights)(out, PIDS)
    loss.backward()
    for field in Out._fields:
        value = getattr(out, field)
        tensors = value if isinstance(value, list) else [value]
        for t in tensors:
            has_grad = t.grad is not None and t.grad.abs().sum() > 0
            assert has_grad == (field in inputs), (term, field)


def test_absent_outputs_tap_and_no_memory():
    out = make_output(heads=2, frames=False, v2m=False)
    loss, terms = TFCLIPLoss(Y)(out, PIDS)
    assert list(terms) == ["loss_id", "loss_tri", "acc"]
    expected = 0.25 * sum(ref_ce(x.detach(), PIDS) for x in out.id_logits) + sum(
        ref_triplet(f.detach(), PIDS)[0] for f in out.features
    )
    assert loss.item() == pytest.approx(expected, abs=1e-4)
    loss.backward()
    assert all(f.grad is not None for f in out.features)


@pytest.mark.parametrize("v2m", ["released", "paper"])
def test_bf16_inputs_and_autocast(v2m):
    out = make_output(dtype=torch.bfloat16)
    crit = TFCLIPLoss(Y, v2m=v2m)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, terms = crit(out, PIDS)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    # same numbers as float32 losses on the (bf16-rounded) values
    out32 = Out(
        *(
            [t.detach().float() for t in v] if isinstance(v, list) else v.detach().float()
            for v in out
        )
    )
    ref_loss, _ = crit(out32, PIDS)
    assert loss.item() == pytest.approx(float(ref_loss), rel=1e-6)
    loss.backward()
    assert out.id_logits[0].grad.dtype == torch.bfloat16
    assert torch.isfinite(out.v2m_logits.grad.float()).all()


def test_bad_input_messages():
    out = make_output(grad=False)
    crit = TFCLIPLoss(Y)
    with pytest.raises(ValueError, match=r"\[0, 7\)"):
        crit(out, torch.tensor([0, 0, 3, 3, 5, 9]))
    with pytest.raises(ValueError, match="2 identities"):
        crit(out, torch.zeros(B, dtype=torch.long))
    with pytest.raises(ValueError, match="pids"):
        crit(out, PIDS[:4])
    with pytest.raises(ValueError, match="train"):
        crit(Out([], [], None, None), PIDS)
    bad_frames = out._replace(frame_logits=torch.randn(B * T + 1, Y))
    with pytest.raises(ValueError, match="B\\*T"):
        crit(bad_frames, PIDS)
    with pytest.raises(ValueError, match="num_classes"):
        TFCLIPLoss(Y + 1)(out, PIDS)


@pytest.mark.parametrize("v2m", ["released", "paper"])
def test_on_tfclip_tiny_output(v2m):
    """The real TFCLIPOutput of the tiny model: all four terms, SSP trained only through V2M."""
    from tfclip_torchreid.models import build_tfclip

    model = build_tfclip(arch="tfclip_tiny", num_classes=5, camera_num=2, v2m=v2m).train()
    model.memory.set(torch.randn(5, model.embed_dim))
    h, w = model.cfg.image_size
    pids = torch.tensor([0, 0, 4, 4])
    out = model(torch.randn(4, 2, 3, h, w), cam_label=torch.tensor([0, 1, 0, 1]))
    loss, terms = TFCLIPLoss(5, v2m=v2m)(out, pids)
    assert list(terms) == ["loss_id", "loss_tri", "loss_v2m", "loss_frame", "acc"]
    assert torch.isfinite(loss)
    loss.backward()
    assert model.classifier_proj_temp.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.ssp.parameters())
    model.zero_grad(set_to_none=True)
    out = model(torch.randn(4, 2, 3, h, w))
    TFCLIPLoss(5, v2m=v2m, v2m_weight=0.0)(out, pids)[0].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.ssp.parameters())
