"""Supervised contrastive loss of CLIP-ReID's prompt-learning stage (Li et al., AAAI 2023).

For anchors ``a_i`` (N, d) with labels ``y_i`` and a contrast set ``c_j`` (M, d) with labels
``z_j``, logits ``s_ij = <a_i, c_j> / tau`` (raw dot products, tau = 1 in CLIP-ReID) and the
positives ``P(i) = {j : z_j = y_i}``:

``L = -1/N sum_i 1/|P(i)| sum_{j in P(i)} log( exp(s_ij) / sum_{k=1..M} exp(s_ik) )``

i.e. the mean over anchors of minus the mean over positives of the log-softmax over the contrast
set (computed with ``log_softmax``, which subtracts the row maximum as the reference does).
Stage 1 trains the prompts with both directions on a batch of cached image features v and
the text features t of their identities' prompts:
``L_i2t = SupCon(v, t, y, y)`` and ``L_t2i = SupCon(t, v, y, y)``, summed (CLIP-ReID stage 1).

Deviation from the reference: an anchor without any positive in the contrast set (a NaN there)
raises ``ValueError``. Half-precision inputs are computed in float32 (float64 stays float64).

Example:
    >>> import torch
    >>> v, t = torch.randn(4, 8), torch.randn(4, 8, requires_grad=True)
    >>> loss, terms = PromptLearningLoss()(v, t, torch.tensor([0, 0, 2, 2]))
    >>> loss.backward(); list(terms)
    ['loss_i2t', 'loss_t2i']
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["SupConLoss", "PromptLearningLoss"]


def _check_pair(feats: torch.Tensor, labels: torch.Tensor, name: str) -> None:
    if not torch.is_tensor(feats) or feats.dim() != 2 or feats.shape[0] == 0:
        shape = tuple(feats.shape) if torch.is_tensor(feats) else type(feats).__name__
        raise ValueError(f"{name} features must be a non-empty (n, d) tensor, got {shape}")
    if not torch.is_tensor(labels) or labels.dim() != 1 or labels.is_floating_point():
        raise ValueError(f"{name} labels must be a 1-D integer tensor (n,)")
    if labels.numel() != feats.shape[0]:
        raise ValueError(
            f"got {labels.numel()} {name} labels for {feats.shape[0]} {name} features"
        )


class SupConLoss(nn.Module):
    """Supervised contrastive loss of anchors against a labelled contrast set.

    Args:
        temperature: logits are divided by it (CLIP-ReID: 1.0).

    Forward ``loss(anchors (N, d), contrast (M, d), anchor_labels (N,), contrast_labels (M,))``
    returns a scalar: mean over anchors of minus the mean log-probability (softmax over the M
    contrast features) of the anchor's positives. Every anchor needs at least one positive.

    Example:
        >>> import torch
        >>> crit = SupConLoss()
        >>> img, txt, y = torch.randn(6, 4), torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2])
        >>> i2t, t2i = crit(img, txt, y, y), crit(txt, img, y, y)
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def forward(
        self,
        anchors: torch.Tensor,
        contrast: torch.Tensor,
        anchor_labels: torch.Tensor,
        contrast_labels: torch.Tensor,
    ) -> torch.Tensor:
        _check_pair(anchors, anchor_labels, "anchor")
        _check_pair(contrast, contrast_labels, "contrast")
        if anchors.shape[1] != contrast.shape[1]:
            raise ValueError(
                f"anchor and contrast features must have the same size, got "
                f"{anchors.shape[1]} and {contrast.shape[1]}"
            )
        dtype = torch.promote_types(torch.promote_types(anchors.dtype, contrast.dtype),
                                    torch.float32)
        logits = anchors.to(dtype) @ contrast.to(dtype).t() / self.temperature
        log_prob = F.log_softmax(logits, dim=1)
        positives = anchor_labels.to(logits.device).view(-1, 1) == (
            contrast_labels.to(logits.device).view(1, -1))
        num_pos = positives.sum(dim=1)
        if not torch.compiler.is_compiling() and bool((num_pos == 0).any()):
            raise ValueError(
                "every anchor needs at least one contrast feature of its label (SupCon "
                "positives); anchors without one: labels "
                f"{anchor_labels[(num_pos == 0).to(anchor_labels.device)].tolist()[:16]}"
            )
        mean_log_prob_pos = (log_prob * positives).sum(dim=1) / num_pos
        return -mean_log_prob_pos.mean()

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class PromptLearningLoss(nn.Module):
    """CLIP-ReID stage-1 objective: ``L_i2t + L_t2i`` (SupCon both ways), float32, no autocast.

    Args:
        temperature: SupCon temperature (1.0).

    Forward ``loss(image_features (B, d), text_features (B, d), labels (B,))`` returns
    ``(loss, terms)``: the float scalar tensor ``L_i2t + L_t2i`` and an ``OrderedDict`` of python
    floats ``loss_i2t``, ``loss_t2i`` (one host sync for both).

    Example:
        >>> import torch
        >>> crit = PromptLearningLoss()
        >>> img = torch.randn(4, 16).half()                 # cached, frozen image features
        >>> txt = torch.randn(4, 16, requires_grad=True)    # text encoder(prompt learner(y))
        >>> loss, terms = crit(img, txt, torch.tensor([1, 1, 3, 3]))
        >>> loss.dtype
        torch.float32
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.supcon = SupConLoss(temperature)

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor, labels: torch.Tensor
    ) -> Tuple[torch.Tensor, OrderedDict[str, float]]:
        if not torch.is_tensor(text_features):
            raise ValueError("text_features must be a (B, d) tensor")
        device = text_features.device
        with torch.autocast(device_type=device.type, enabled=False):
            image = image_features.to(device).float()
            text = text_features.float()
            i2t = self.supcon(image, text, labels, labels)
            t2i = self.supcon(text, image, labels, labels)
        loss = i2t + t2i
        values = torch.stack([i2t.detach(), t2i.detach()]).tolist()
        return loss, OrderedDict(zip(("loss_i2t", "loss_t2i"), values))
