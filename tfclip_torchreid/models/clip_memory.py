"""CLIP-Memory: one fixed 512-d prototype per training identity (paper Section "CLIP-Memory").

Paper: ``M_{y_i} = 1/N_i * sum_{v_a in y_i} v_a`` where ``v_a`` is the sequence feature (temporal
average of the projected CLS, Eq. 3) of a tracklet of identity ``y_i`` from the *frozen*
pretrained encoder; ``M`` in R^{Y x d}.

Released code (docs/released_vs_paper.md#clip-memory): computed once before epoch 1 with the freshly loaded encoder
(no separate frozen copy), every training tracklet embedded densely (8-frame clips, tail
cycled, no SIE), mean over frames, then clips, then the identity's tracklets; no L2
normalisation; a constant afterwards. The authors' rows silently misalign if an identity has
no tracklet; :func:`aggregate_identity_means` raises instead. The pass over the data is the
engine's; this module holds the bank and the pure per-identity reduction.

Example:
    >>> import torch
    >>> mem = CLIPMemory(num_classes=3, dim=4)
    >>> mem.initialized
    False
    >>> mem.set(torch.randn(3, 4)); mem.initialized
    True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

__all__ = ["CLIPMemory", "aggregate_identity_means"]


class CLIPMemory(nn.Module):
    """Identity memory bank ``bank`` (Y x d), a persistent buffer (saved in ``state_dict``).

    ``rows_set`` (persistent int64 scalar) records how many rows :meth:`set` wrote; the bank is
    :attr:`initialized` when that equals Y (a checkpoint from another dataset whose bank was
    skipped at load time therefore does not count as initialised). The bank never requires grad.

    Example:
        >>> import torch
        >>> mem = CLIPMemory(2, 3)
        >>> mem.set(torch.ones(2, 3))
        >>> sorted(mem.state_dict())
        ['bank', 'rows_set']
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        if num_classes < 1 or dim < 1:
            raise ValueError(f"CLIPMemory needs num_classes >= 1 and dim >= 1, got {num_classes}, {dim}")
        self.register_buffer("bank", torch.zeros(num_classes, dim))
        self.register_buffer("rows_set", torch.zeros((), dtype=torch.long))
        self._initialized = False  # python mirror of the buffer: no device sync per step
        self.register_load_state_dict_post_hook(_sync_flag)

    @property
    def num_classes(self) -> int:
        return self.bank.shape[0]

    @property
    def dim(self) -> int:
        return self.bank.shape[1]

    @property
    def initialized(self) -> bool:
        """True once :meth:`set` filled every row (also after loading such a state dict)."""
        return self._initialized

    @torch.no_grad()
    def set(self, bank: torch.Tensor) -> None:
        """Copy a (Y, d) tensor into the bank (cast to the bank's dtype/device)."""
        if not torch.is_tensor(bank):
            raise TypeError(f"CLIPMemory.set expects a tensor, got {type(bank).__name__}")
        if tuple(bank.shape) != tuple(self.bank.shape):
            raise ValueError(
                f"CLIP-Memory must be (num_classes, dim) = {tuple(self.bank.shape)}, got "
                f"{tuple(bank.shape)}: compute it over the {self.num_classes} training identities "
                f"with the model's {self.dim}-d projected features"
            )
        if not torch.isfinite(bank).all():
            raise ValueError("CLIP-Memory contains NaN/inf values; check the feature extraction")
        self.bank.copy_(bank.detach())
        self.rows_set.fill_(self.num_classes)
        self._initialized = True

    def reset(self) -> None:
        """Mark the bank as not initialised (zeros)."""
        self.bank.zero_()
        self.rows_set.zero_()
        self._initialized = False

    def forward(self) -> torch.Tensor:
        """The bank (Y, d)."""
        return self.bank

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, dim={self.dim}, initialized={self.initialized}"


def _sync_flag(module: CLIPMemory, incompatible_keys: Any) -> None:
    module._initialized = bool(int(module.rows_set) == module.num_classes)


def aggregate_identity_means(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Per-identity mean of tracklet features: row k = mean of the features labelled k.

    Labels < 0 (junk) are skipped, as in the authors' code. Every identity 0..Y-1 must have at
    least one tracklet (the authors' code would silently misalign the rows otherwise).

    Args:
        features: (N, d) tracklet features.
        labels: (N,) integer train labels in 0..num_classes-1 (or -1 to skip).
        num_classes: Y.

    Returns:
        (Y, d) float tensor on the features' device.

    Example:
        >>> import torch
        >>> aggregate_identity_means(torch.tensor([[1.], [3.], [5.]]), torch.tensor([0, 0, 1]), 2)
        tensor([[2.],
                [5.]])
    """
    if features.dim() != 2:
        raise ValueError(f"features must be (N, d), got shape {tuple(features.shape)}")
    labels = torch.as_tensor(labels, device=features.device)
    if labels.dim() != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"labels must be a 1-D tensor of the {features.shape[0]} train labels (pid column), "
            f"got shape {tuple(labels.shape)}"
        )
    labels = labels.long()
    keep = labels >= 0
    features, labels = features[keep], labels[keep]
    if labels.numel() and int(labels.max()) >= num_classes:
        raise ValueError(
            f"label {int(labels.max())} >= num_classes {num_classes}: labels must be the "
            f"relabelled train ids 0..{num_classes - 1}"
        )
    counts = torch.bincount(labels, minlength=num_classes)
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        shown = ", ".join(map(str, empty[:20])) + (" ..." if len(empty) > 20 else "")
        raise ValueError(
            f"{len(empty)} of {num_classes} identities have no tracklet for the CLIP-Memory "
            f"(labels {shown}); every train label must occur in the memory loader (e.g. LS-VID "
            f"identities whose tracklets are all shorter than the chunk length)"
        )
    sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, features)
    return sums / counts.to(features.dtype).unsqueeze(1)
