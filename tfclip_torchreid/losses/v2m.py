"""Video-to-memory (V2M) loss of TF-CLIP (paper Eq. 10; docs/released_vs_paper.md#v2m).

Two forms, selected by ``form``:

``"released"`` (default, what the authors' code trains with)
    Each sequence b is classified over all Y identities with the logits
    ``s[b, k] = <v_b, M'_{b,k}>``: a **raw dot product** between the sequence's temporal-mean
    projected CLS and *its own* SSP-updated memory row k. The loss is torchreid's label-smoothed
    cross-entropy (eps = 0.1) averaged over the batch. Direction video -> memory.

``"paper"`` (Eq. 10)
    Supervised-contrastive loss in the memory -> video direction. With ``s[j, y] = cos(v_j, M'_y)``
    (the model returns cosine logits in this mode) and P(y) the batch sequences of identity y:

    ``L^(y) = -1/|P(y)| * sum_{p in P(y)} log( exp(s[p, y]) / sum_{j=1..B} exp(s[j, y]) )``

    i.e. a softmax over the **batch** (column y of the B x Y logits), no temperature and no label
    smoothing, as in the paper. **Averaging choice**: L_V2M is the mean of L^(y) over the distinct
    identities y present in the batch (the paper leaves the reduction unstated). With P x K
    sampling every identity has K positives, so this equals the mean over the B sequences.

The released code differs from the paper in direction, similarity (dot vs cosine), the set the
softmax runs over (all Y memories vs the batch) and label smoothing; see docs/released_vs_paper.md#v2m.

Example:
    >>> import torch
    >>> crit = V2MLoss(num_classes=10)
    >>> logits = torch.randn(4, 10, requires_grad=True)   # model output.v2m_logits
    >>> loss = crit(logits, torch.tensor([1, 1, 7, 7]))
    >>> loss.backward()
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tfclip_torchreid.losses.cross_entropy import SmoothedCrossEntropy, check_class_logits

V2M_FORMS = ("released", "paper")


class V2MLoss(nn.Module):
    """Video-to-memory loss over the B x Y logits of :class:`TFCLIPOutput` ``v2m_logits``.

    Args:
        num_classes: number of training identities Y (memory rows).
        form: ``"released"`` (label-smoothed CE over all Y dot-product logits, the authors' code)
            or ``"paper"`` (Eq. 10, memory -> video contrastive over the batch, cosine logits).
        label_smooth: label smoothing for the released form (ignored by the paper form).
        epsilon: smoothing weight (0.1 in TF-CLIP).

    Example:
        >>> import torch
        >>> crit = V2MLoss(5, form="paper")
        >>> cos = torch.rand(4, 5) * 2 - 1
        >>> loss = crit(cos, torch.tensor([0, 0, 3, 3]))
    """

    def __init__(
        self,
        num_classes: int,
        form: str = "released",
        label_smooth: bool = True,
        epsilon: float = 0.1,
    ) -> None:
        super().__init__()
        if form not in V2M_FORMS:
            raise ValueError(f"V2M form must be one of {V2M_FORMS}, got {form!r}")
        self.num_classes = int(num_classes)
        self.form = form
        self.ce = SmoothedCrossEntropy(num_classes, epsilon=epsilon, label_smooth=label_smooth)

    def forward(self, logits: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        """Loss (float32 scalar) of ``logits`` (B, Y) for labels ``pids`` (B,) in [0, Y)."""
        check_class_logits(logits, pids, self.num_classes,
                           "num_classes of the V2M loss must equal the number of memory rows")
        if self.form == "released":
            return self.ce(logits, pids)
        return self._paper(logits.float(), pids.to(logits.device))

    def _paper(self, s: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        # log softmax over the batch for every memory column y, read at (p, y_p).
        log_prob = F.log_softmax(s, dim=0).gather(1, pids.view(-1, 1)).squeeze(1)
        counts = torch.bincount(pids, minlength=self.num_classes).to(s.dtype)  # |P(y)|
        num_ids = (counts > 0).sum().to(s.dtype)
        # mean over identities of the per-identity mean over positives, without a host sync
        return -(log_prob / counts[pids]).sum() / num_ids

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, form={self.form!r}"
