"""Device-safe wrapper around torchreid's label-smoothed cross-entropy.

torchreid's :class:`CrossEntropyLoss` builds its smoothed targets on the CPU and moves them with
``.cuda()`` when ``use_gpu=True``, so one instance only works for one kind of device and, on CUDA,
for the *current* device. :class:`SmoothedCrossEntropy` keeps one CPU and one CUDA instance of it,
picks the one that matches the logits, enters the logits' CUDA device (safe under DDP, whatever
the current device is) and always computes in float32 (safe under fp16/bf16 autocast).

Smoothed target (Szegedy et al. 2016; spec §6): ``(1 - eps) * onehot + eps / Y``, loss
``-sum(target * log_softmax(logits))`` averaged over the batch, eps = 0.1 in TF-CLIP.

Example:
    >>> import torch
    >>> ce = SmoothedCrossEntropy(num_classes=5)
    >>> loss = ce(torch.randn(4, 5), torch.tensor([0, 1, 2, 3]))
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tfclip_torchreid import compat


class SmoothedCrossEntropy(nn.Module):
    """torchreid's ``CrossEntropyLoss(label_smooth=...)`` on any device, in float32.

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
        kwargs = dict(num_classes=self.num_classes, eps=float(epsilon), label_smooth=label_smooth)
        self._cpu = compat.CrossEntropyLoss(use_gpu=False, **kwargs)
        self._cuda = compat.CrossEntropyLoss(use_gpu=True, **kwargs)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean smoothed CE of ``logits`` (N, Y) against integer ``targets`` (N,)."""
        if logits.dim() != 2 or logits.size(1) != self.num_classes:
            raise ValueError(
                f"expected logits of shape (N, {self.num_classes}), got {tuple(logits.shape)}: "
                "num_classes of the loss must equal the classifier's output size"
            )
        if targets.shape != logits.shape[:1]:
            raise ValueError(
                f"expected {logits.size(0)} targets for logits {tuple(logits.shape)}, "
                f"got targets of shape {tuple(targets.shape)}"
            )
        logits = logits.float()
        targets = targets.to(logits.device)
        if logits.device.type == "cuda":
            with torch.cuda.device(logits.device):
                return self._cuda(logits, targets)
        if logits.device.type == "cpu":
            return self._cpu(logits, targets)
        # Other accelerators: torchreid's loss only knows CPU/CUDA; same formula, torch built-in.
        return F.cross_entropy(logits, targets, label_smoothing=self.epsilon)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, epsilon={self.epsilon}"
