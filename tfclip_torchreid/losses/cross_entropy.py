"""Label-smoothed cross-entropy as TF-CLIP uses it (paper Eq. 11, the ``L_ce`` term).

Smoothed target ``(1 - eps) * onehot + eps / Y``, loss ``-sum(target * log_softmax(logits))``
averaged over the batch, eps = 0.1 -- exactly torchreid's ``CrossEntropyLoss(label_smooth=True)``
and the authors' ``CrossEntropyLabelSmooth``. It is torch's own
``F.cross_entropy(label_smoothing=eps)``, computed in float32 (safe under fp16/bf16 autocast) on
whatever device the logits live, with the input checks that name the usual mistakes.

Example:
    >>> import torch
    >>> ce = SmoothedCrossEntropy(num_classes=5)
    >>> loss = ce(torch.randn(4, 5), torch.tensor([0, 1, 2, 3]))
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["SmoothedCrossEntropy", "check_class_logits"]


def check_class_logits(logits: torch.Tensor, labels: torch.Tensor, num_classes: int,
                       what: str = "num_classes of the loss must equal the classifier's output size",
                       ) -> None:
    """Raise ``ValueError`` unless ``logits`` is (N, num_classes) and ``labels`` is (N,); ``what``
    names the usual cause of a wrong width.

    Example:
        >>> check_class_logits(torch.zeros(2, 3), torch.tensor([0, 2]), 3)
    """
    if logits.dim() != 2 or logits.size(1) != num_classes:
        raise ValueError(
            f"expected logits of shape (N, {num_classes}), got {tuple(logits.shape)}: {what}"
        )
    if labels.shape != logits.shape[:1]:
        raise ValueError(
            f"expected {logits.size(0)} labels for logits {tuple(logits.shape)}, "
            f"got labels of shape {tuple(labels.shape)}"
        )


class SmoothedCrossEntropy(nn.Module):
    """Label-smoothed cross-entropy over ``num_classes`` (``F.cross_entropy``), in float32.

    Args:
        num_classes: number of classes Y (the logits must have Y columns).
        epsilon: smoothing weight (0.1 in TF-CLIP).
        label_smooth: when False, the plain cross-entropy (eps = 0).

    Example:
        >>> import torch
        >>> ce = SmoothedCrossEntropy(3, label_smooth=False)
        >>> float(ce(torch.zeros(2, 3), torch.tensor([0, 2])))  # doctest: +ELLIPSIS
        1.098...
    """

    def __init__(self, num_classes: int, epsilon: float = 0.1, label_smooth: bool = True) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.epsilon = float(epsilon) if label_smooth else 0.0

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean smoothed CE of ``logits`` (N, Y) against integer ``targets`` (N,)."""
        check_class_logits(logits, targets, self.num_classes)
        return F.cross_entropy(logits.float(), targets.to(logits.device),
                               label_smoothing=self.epsilon)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, epsilon={self.epsilon}"
