"""The full TF-CLIP training objective (paper Eq. 11; docs/released_vs_paper.md#losses).

Paper Eq. 11: ``L = L_V2M + L_tri + L_ce``. The released code (followed here; docs/released_vs_paper.md#losses) uses

``L = id_weight      * sum_h CE_ls(id_logits[h])          (0.25; 3 heads: cls, proj, TMD)``
``  + triplet_weight * sum_h Tri(features[h])              (1.0; batch-hard, margin 0.3)``
``  + v2m_weight     * V2M(v2m_logits)                     (1.0; see losses/v2m.py)``
``  + frame_weight   * CE_ls(frame_logits, pids x T) / T   (1.0; NOT scaled by id_weight)``

* CE_ls: torchreid's label-smoothed cross-entropy (eps 0.1) through
  :class:`~tfclip_torchreid.losses.cross_entropy.SmoothedCrossEntropy`.
* Tri: torchreid's ``TripletLoss`` (batch-hard: Euclidean distances of the *un-normalised*
  pre-BN features, sqrt with clamp 1e-12, hardest positive / hardest negative per anchor,
  ``MarginRankingLoss``), which is exactly the authors' loss.
* Frame logits are ``(B*T) x Y`` in sequence-major order (row ``b*T + t``), so the frame labels
  are ``pids.repeat_interleave(T)``.
* The frame-level term, the three-head structure and the weights are not in the paper.

A term is computed only when its model output exists and its weight is non-zero
(``temporal="tap"``: 2 heads and no frame logits; ``use_memory=False``: no V2M logits).
Everything is computed in float32 with autocast disabled, so fp16/bf16 model outputs are safe.

Example:
    >>> import torch
    >>> from collections import namedtuple
    >>> Out = namedtuple("Out", "id_logits features frame_logits v2m_logits")
    >>> B, T, Y = 4, 2, 6
    >>> out = Out([torch.randn(B, Y)] * 2, [torch.randn(B, 8)] * 2, torch.randn(B * T, Y), None)
    >>> loss, terms = TFCLIPLoss(Y)(out, torch.tensor([0, 0, 5, 5]))
    >>> list(terms)
    ['loss_id', 'loss_tri', 'loss_frame', 'acc']
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch
import torch.nn as nn

from tfclip_torchreid import compat
from tfclip_torchreid.losses.cross_entropy import SmoothedCrossEntropy
from tfclip_torchreid.losses.v2m import V2MLoss


class TFCLIPLoss(nn.Module):
    """Weighted sum of the TF-CLIP loss terms on a :class:`TFCLIPOutput`.

    Args:
        num_classes: number of training identities Y.
        id_weight: weight of the summed ID cross-entropies (released 0.25).
        triplet_weight: weight of the summed batch-hard triplet losses (1.0).
        v2m_weight: weight of the V2M loss (1.0).
        frame_weight: weight of the frame-level CE, which is also divided by T (1.0).
        margin: triplet margin (0.3).
        label_smooth: label smoothing (eps ``epsilon``) for every cross-entropy.
        v2m: ``"released"`` or ``"paper"`` V2M form, see :class:`V2MLoss`; must match the
            model's ``v2m`` switch (dot-product vs cosine logits).
        epsilon: label-smoothing weight (0.1).

    Returns of ``forward(output, pids)``: ``(loss, terms)`` with ``loss`` a float32 scalar tensor
    and ``terms`` an ``OrderedDict`` of python floats: ``loss_id``, ``loss_tri``, ``loss_v2m``,
    ``loss_frame`` (each already weighted, present only when computed) and ``acc`` (top-1 of
    ``id_logits[0]`` in %).

    Example:
        >>> crit = TFCLIPLoss(num_classes=625)             # released recipe
        >>> crit_paper = TFCLIPLoss(625, v2m="paper")      # paper Eq. 10 for V2M
    """

    def __init__(
        self,
        num_classes: int,
        id_weight: float = 0.25,
        triplet_weight: float = 1.0,
        v2m_weight: float = 1.0,
        frame_weight: float = 1.0,
        margin: float = 0.3,
        label_smooth: bool = True,
        v2m: str = "released",
        epsilon: float = 0.1,
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.id_weight = float(id_weight)
        self.triplet_weight = float(triplet_weight)
        self.v2m_weight = float(v2m_weight)
        self.frame_weight = float(frame_weight)
        self.margin = float(margin)
        self.ce = SmoothedCrossEntropy(num_classes, epsilon=epsilon, label_smooth=label_smooth)
        self.triplet = compat.TripletLoss(margin=self.margin)
        self.v2m = V2MLoss(num_classes, form=v2m, label_smooth=label_smooth, epsilon=epsilon)

    def forward(
        self, output: Any, pids: torch.Tensor
    ) -> tuple[torch.Tensor, OrderedDict[str, float]]:
        """Compute ``(loss, terms)`` for a training ``output`` and labels ``pids`` (B,)."""
        id_logits: Sequence[torch.Tensor] = list(getattr(output, "id_logits", None) or [])
        features: Sequence[torch.Tensor] = list(getattr(output, "features", None) or [])
        frame_logits: torch.Tensor | None = getattr(output, "frame_logits", None)
        v2m_logits: torch.Tensor | None = getattr(output, "v2m_logits", None)
        if not id_logits:
            raise ValueError(
                "TFCLIPLoss needs output.id_logits (a non-empty list of B x Y tensors): "
                "call the model in train() mode"
            )
        device = id_logits[0].device
        batch = self._check_pids(pids, id_logits[0].size(0))
        pids = pids.to(device)

        terms: OrderedDict[str, torch.Tensor] = OrderedDict()
        with torch.autocast(device_type=device.type, enabled=False):
            if self.id_weight != 0:
                terms["loss_id"] = self.id_weight * sum(self.ce(x, pids) for x in id_logits)
            if self.triplet_weight != 0 and features:
                terms["loss_tri"] = self.triplet_weight * sum(
                    self._triplet(f, pids) for f in features
                )
            if self.v2m_weight != 0 and v2m_logits is not None:
                terms["loss_v2m"] = self.v2m_weight * self.v2m(v2m_logits, pids)
            if self.frame_weight != 0 and frame_logits is not None:
                terms["loss_frame"] = self._frame(frame_logits, pids, batch)
            with torch.no_grad():
                acc = (id_logits[0].argmax(dim=1) == pids).float().mean() * 100.0
        if not terms:
            raise ValueError("TFCLIPLoss: every loss weight is zero or every output is missing")
        loss = sum(terms.values())
        # one host sync for all the logged numbers
        values = torch.stack([t.detach().float() for t in terms.values()] + [acc]).tolist()
        log = OrderedDict(zip(list(terms) + ["acc"], values))
        return loss, log

    def _check_pids(self, pids: torch.Tensor, batch: int) -> int:
        if not isinstance(pids, torch.Tensor) or pids.dim() != 1 or pids.is_floating_point():
            raise ValueError("pids must be a 1-D integer tensor of train labels (B,)")
        if batch == 0:
            raise ValueError("TFCLIPLoss got an empty batch")
        if pids.numel() != batch:
            raise ValueError(f"got {pids.numel()} pids for a batch of {batch} sequences")
        lo, hi = pids.aminmax()
        lo, hi = int(lo), int(hi)
        if lo < 0 or hi >= self.num_classes:
            raise ValueError(
                f"pids must lie in [0, {self.num_classes}), got range [{lo}, {hi}]: use the "
                "relabelled train pids (0..num_train_pids-1) and num_classes=num_train_pids"
            )
        if self.triplet_weight != 0 and lo == hi and batch > 1:
            raise ValueError(
                "the triplet loss needs at least 2 identities per batch: use a P x K identity "
                "sampler (e.g. RandomIdentitySampler) with P >= 2"
            )
        return batch

    def _triplet(self, feats: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        if feats.dim() != 2 or feats.size(0) != pids.numel():
            raise ValueError(
                f"triplet features must be (B={pids.numel()}, D), got {tuple(feats.shape)}"
            )
        return self.triplet(feats.float(), pids.to(feats.device))

    def _frame(self, frame_logits: torch.Tensor, pids: torch.Tensor, batch: int) -> torch.Tensor:
        n = frame_logits.size(0) if frame_logits.dim() == 2 else -1
        if n <= 0 or n % batch != 0:
            raise ValueError(
                f"frame_logits must be (B*T, Y) with B={batch}, got {tuple(frame_logits.shape)}"
            )
        seq_len = n // batch
        frame_pids = pids.repeat_interleave(seq_len)  # row b*T + t belongs to sequence b
        return self.frame_weight * self.ce(frame_logits, frame_pids) / seq_len

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, id_weight={self.id_weight}, "
            f"triplet_weight={self.triplet_weight}, v2m_weight={self.v2m_weight}, "
            f"frame_weight={self.frame_weight}, margin={self.margin}"
        )
