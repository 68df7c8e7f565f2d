"""Alternative temporal fusions of supplement Table 5 (baselines to TMD, paper Eq. 6-9).

The supplement compares TMD with ActionCLIP-style fusions of the per-frame 512-d projected CLS
features f_t (Section "CLIP-Memory", ``f_t = VP(z_t,0)``):

* ``tap``: temporal average pooling only (no module; the projected CLS mean is already a head);
* ``conv1d``: a depthwise temporal Conv1d (kernel 3, no bias, initialised as a temporal shift)
  with a residual, then TAP;
* ``transf``: 6 pre-LN CLIP blocks (width 512) over the T frame features with a residual,
  then TAP;
* ``transf_cls``: a learned CLS token + 6 ``nn.TransformerEncoderLayer`` + final LN; the output
  CLS token is the sequence feature.

Released code: these modules are not in the released model (only an unused ``Visual_Prompt.py``,
never run). Reconstructed from the parameter counts (docs/complexity.md): each
had a 77 x 512 frame-position embedding (here added to the frame features by all three, so it
is trained rather than dead) and its own BN + classifier head. Not reproduced: the extra
(T+1) x 512 table of ActionCLIP's ``Transf_cls`` (one table covers both uses here), so
``transf_cls`` counts 4,608 parameters fewer for T = 8.

Example:
    >>> import torch
    >>> fuse = build_temporal_fusion("transf", dim=64, layers=1)
    >>> fuse(torch.randn(2, 4, 64)).shape
    torch.Size([2, 64])
"""

from __future__ import annotations

import torch
import torch.nn as nn
from open_clip.transformer import LayerNorm, QuickGELU, ResidualAttentionBlock

__all__ = ["TemporalConv1d", "TemporalTransformer", "TemporalTransformerCLS",
           "build_temporal_fusion", "TEMPORAL_CHOICES", "FUSION_CHOICES"]

TEMPORAL_CHOICES = ("tmd", "tap", "conv1d", "transf", "transf_cls")
FUSION_CHOICES = ("conv1d", "transf", "transf_cls")
MAX_FRAMES = 77


class _FrameFusion(nn.Module):
    """Base: (B, T, d) frame features -> (B, d) sequence feature, with a frame-position table."""

    def __init__(self, dim: int, max_frames: int = MAX_FRAMES) -> None:
        super().__init__()
        self.dim, self.max_frames = dim, max_frames
        self.frame_position_embeddings = nn.Parameter(torch.zeros(max_frames, dim))
        nn.init.normal_(self.frame_position_embeddings, std=0.02)

    def add_positions(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"temporal fusion takes (B, T, {self.dim}), got {tuple(x.shape)}")
        if x.shape[1] > self.max_frames:
            raise ValueError(f"at most {self.max_frames} frames per clip, got {x.shape[1]}")
        return x + self.frame_position_embeddings[: x.shape[1]].to(x.dtype)


class TemporalConv1d(_FrameFusion):
    """Depthwise temporal conv (kernel 3, shift init) + residual, then TAP."""

    def __init__(self, dim: int, max_frames: int = MAX_FRAMES) -> None:
        super().__init__(dim, max_frames)
        self.shift = nn.Conv1d(dim, dim, 3, padding=1, groups=dim, bias=False)
        w = torch.zeros(dim, 1, 3)
        q = dim // 4
        w[:q, 0, 0] = 1.0  # a quarter of the channels look one frame back,
        w[q: dim - q, 0, 1] = 1.0  # half stay,
        w[dim - q:, 0, 2] = 1.0  # a quarter look one frame ahead
        with torch.no_grad():
            self.shift.weight.copy_(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.add_positions(x)
        y = self.shift(x.transpose(1, 2)).transpose(1, 2)
        return (x + y).mean(dim=1)


class TemporalTransformer(_FrameFusion):
    """Pre-LN CLIP blocks over the frames + residual, then TAP."""

    def __init__(self, dim: int, layers: int = 6, max_frames: int = MAX_FRAMES) -> None:
        super().__init__(dim, max_frames)
        heads = max(1, dim // 64)
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(dim, heads, 4.0, act_layer=QuickGELU, norm_layer=LayerNorm,
                                   batch_first=True)
            for _ in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.add_positions(x)
        for block in self.resblocks:
            y = block(y)
        return (x + y).mean(dim=1)


class TemporalTransformerCLS(_FrameFusion):
    """CLS token + ``nn.TransformerEncoder`` over the frames; returns the output CLS."""

    def __init__(self, dim: int, layers: int = 6, max_frames: int = MAX_FRAMES,
                 dropout: float = 0.1) -> None:
        super().__init__(dim, max_frames)
        heads = max(1, dim // 64)
        self.cls_token = nn.Parameter(torch.zeros(dim))
        nn.init.normal_(self.cls_token, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim),
                                             enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.add_positions(x)
        cls = self.cls_token.to(x.dtype).view(1, 1, -1).expand(x.shape[0], 1, -1)
        return self.encoder(torch.cat([cls, x], dim=1))[:, 0]


def build_temporal_fusion(name: str, dim: int, layers: int = 6) -> nn.Module:
    """``conv1d`` | ``transf`` | ``transf_cls`` fusion over (B, T, dim) frame features."""
    if name == "conv1d":
        return TemporalConv1d(dim)
    if name == "transf":
        return TemporalTransformer(dim, layers)
    if name == "transf_cls":
        return TemporalTransformerCLS(dim, layers)
    raise ValueError(f"temporal fusion must be one of {FUSION_CHOICES}, got {name!r}")
