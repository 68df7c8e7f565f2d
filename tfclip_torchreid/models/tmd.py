"""Temporal Memory Diffusion (TMD) = TMC + MD (paper Eq. 6-9).

* TMC (Eq. 6): a memory token per frame ``s_t = theta(mean of the frame's N_p + 1 tokens)``
  (``message_fc``), then ``S' = MHSA(LN(S)) + S`` across the T frames of each sequence.
* MD (Eq. 7): ``s'_t`` is appended to the frame's tokens as an extra **last** token and one
  pre-LN CLIP block (MHSA then FFN, each with its residual) runs within each frame. The
  memory token is kept through the FFN (X-CLIP drops it).
* Pooling (Eq. 8-9): frame feature = mean over the N_p + 2 output tokens; sequence feature
  ``v_hat`` = mean over T (TAP).

Released code (``docs/released_vs_paper.md#tmd``): one block, width 768, 12 heads, post-``ln_post`` final tokens as
input, **detached** (the TMD losses never reach the backbone, although the paper says they train
the encoder): switch ``detach_input`` / model switch ``tmd_detach``. Default PyTorch init.
The MD block is open_clip's ``ResidualAttentionBlock``; both attentions are
``nn.MultiheadAttention`` (packed ``in_proj_weight``/``out_proj`` as in the authors' weights),
whose ``need_weights=False`` path runs fused ``F.scaled_dot_product_attention``. Any T works,
including T = 1 (single images).

Example:
    >>> import torch
    >>> tmd = TemporalMemoryDiffusion(width=64, heads=4)
    >>> out = tmd(torch.randn(2 * 4, 9, 64), num_frames=4)
    >>> tuple(out.tokens.shape), tuple(out.frame_feature.shape), tuple(out.sequence_feature.shape)
    ((8, 10, 64), (8, 64), (2, 64))
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
from open_clip.transformer import LayerNorm, QuickGELU, ResidualAttentionBlock

__all__ = ["TemporalMemoryDiffusion", "TMDOutput"]


class TMDOutput(NamedTuple):
    tokens: torch.Tensor  # (B*T, L+1, D): frame tokens + memory token (last)
    frame_feature: torch.Tensor  # (B*T, D), Eq. 8
    sequence_feature: torch.Tensor  # (B, D), Eq. 9


class TemporalMemoryDiffusion(nn.Module):
    """TMD block on per-frame token maps (batch-first, frames of a clip contiguous).

    Args:
        width: token width D (768 for ViT-B/16).
        heads: attention heads (D // 64).
        detach_input: stop gradients into the tokens (the released behaviour).
        diffusion: run MD (True). Without it (supplement Table 3, A2/A5: TMC only) the
            temporal memory tokens themselves are the frame features and v_hat their TAP.

    Forward: ``tmd(tokens, num_frames)`` with tokens (B*T, L, D), row ``b*T + t`` = frame t of
    clip b. Returns :class:`TMDOutput`.
    """

    def __init__(self, width: int = 768, heads: int = 12, detach_input: bool = True,
                 diffusion: bool = True) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"TMD width {width} is not divisible by {heads} heads")
        self.width, self.heads = width, heads
        self.detach_input = detach_input
        # TMC (Eq. 6)
        self.message_fc = nn.Linear(width, width)
        self.message_ln = LayerNorm(width)
        self.message_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        # MD (Eq. 7): one pre-LN CLIP block (ln_1, attn, ln_2, mlp.c_fc, mlp.c_proj)
        self.diffusion = ResidualAttentionBlock(width, heads, 4.0, act_layer=QuickGELU,
                                                norm_layer=LayerNorm, batch_first=True
                                                ) if diffusion else None

    def construct_memory(self, tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
        """TMC: temporal-aware memory tokens S' (B*T, D) from tokens (B*T, L, D)."""
        n, _, d = tokens.shape
        if n % num_frames:
            raise ValueError(f"TMD got {n} frames, not a multiple of T={num_frames}")
        s = self.message_fc(tokens.mean(dim=1)).view(n // num_frames, num_frames, d)
        y = self.message_ln(s)
        s = s + self.message_attn(y, y, y, need_weights=False)[0]
        return s.reshape(n, d)

    def forward(self, tokens: torch.Tensor, num_frames: int) -> TMDOutput:
        if tokens.dim() != 3 or tokens.shape[-1] != self.width:
            raise ValueError(f"TMD takes tokens (B*T, L, {self.width}), got {tuple(tokens.shape)}")
        if self.detach_input:
            tokens = tokens.detach()
        memory = self.construct_memory(tokens, num_frames)
        if self.diffusion is None:  # TMC only
            x, frame = memory.unsqueeze(1), memory
        else:
            x = self.diffusion(torch.cat([tokens, memory.unsqueeze(1)], dim=1))
            frame = x.mean(dim=1)
        sequence = frame.view(-1, num_frames, self.width).mean(dim=1)
        return TMDOutput(x, frame, sequence)
