"""Sequence-Specific Prompt (SSP) and the V2M logits (paper Eq. 4, 5 and 10).

Paper: ``P = Transdecoder(query=M, key=V, value=V)`` (Eq. 4) with N blocks of multi-head
cross-attention + FFN, ``M' = M + P`` (Eq. 5), and the V2M loss on cosine similarities
``<v_p, M'_y>`` (Eq. 10). Here V is the batch's sequence features (B x d).

Released code (docs/released_vs_paper.md#ssp; class ``ImageSpecificPrompt``), the default ``form="released"``:

* key/value = **each sample's own** frame-averaged projected token map (B x 129 x 512), through
  ``memory_proj`` = LN -> Linear -> LN; query = the memory through ``text_proj`` = LN -> Linear;
* every layer: self-attention **among the Y memory rows** (not in the paper), cross-attention to
  the tokens, 4x QuickGELU MLP; all pre-LN, dropout 0.1; q/k/v bias-free, output proj biased;
  heads = D // 64;
* ``out_proj`` = LN -> Linear gives P (B x Y x D); ``M'_b = M + P_b`` for all Y rows;
* ``alpha`` and ``norm`` exist but are never used (kept, frozen, so parameter counts and
  authors' checkpoints match);
* V2M logits are raw dot products ``<v_b, M'_{b,k}>`` (no normalisation, no temperature).

Switches: ``form="paper"`` drops the self-attention (cross-attention + MLP per layer, Eq. 4);
key/value ``"batch"`` (the paper's V, see :class:`SequenceSpecificPrompt`) gives one prompt for
the whole batch; :func:`v2m_logits` with ``form="paper"`` uses cosine similarity.

Efficiency: the memory is the same for every sample, so ``text_proj`` and the first layer's
self-attention run once on (1, Y, D) and are broadcast; dropout is still drawn per sample. A
per-sample memory (B, Y, D) is also accepted.

Example:
    >>> import torch
    >>> ssp = SequenceSpecificPrompt(dim=64, layers=2).eval()
    >>> memory, tokens = torch.randn(5, 64), torch.randn(3, 9, 64)
    >>> prompt = ssp(memory, tokens)
    >>> tuple(prompt.shape)
    (3, 5, 64)
    >>> tuple(v2m_logits(tokens[:, 0], memory + prompt).shape)
    (3, 5)
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from open_clip.transformer import QuickGELU

__all__ = ["SSPAttention", "PromptGeneratorLayer", "SequenceSpecificPrompt", "v2m_logits"]

SSP_FORMS = ("released", "paper")


class SSPAttention(nn.Module):
    """Multi-head attention with bias-free q/k/v and a biased output projection (fused SDPA).

    Inputs may have batch 1 where the other has batch B (broadcast). Output dropout is applied
    after broadcasting to ``batch_size``, so each sample draws its own mask.
    """

    def __init__(self, dim: int, heads: int, proj_drop: float = 0.1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"SSP width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, key_value: torch.Tensor,
                batch_size: int | None = None) -> torch.Tensor:
        b = max(query.shape[0], key_value.shape[0])
        q = self._split(self.q_proj(query))
        k = self._split(self.k_proj(key_value))
        v = self._split(self.v_proj(key_value))
        if q.shape[0] != b:
            q = q.expand(b, -1, -1, -1)
        if k.shape[0] != b:
            k, v = k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)
        out = F.scaled_dot_product_attention(q, k, v)
        out = self.proj(out.transpose(1, 2).reshape(b, query.shape[1], -1))
        if (batch_size is not None and out.shape[0] != batch_size and self.training
                and self.proj_drop.p > 0):
            out = out.expand(batch_size, -1, -1)
        return self.proj_drop(out)


class PromptGeneratorLayer(nn.Module):
    """One SSP decoder layer: [self-attn over memory rows] -> cross-attn to visual -> MLP."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.1, self_attention: bool = True) -> None:
        super().__init__()
        if self_attention:
            self.norm1 = nn.LayerNorm(dim)
            self.self_attn = SSPAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = SSPAttention(dim, heads, dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim), QuickGELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    @property
    def has_self_attention(self) -> bool:
        return hasattr(self, "self_attn")

    def forward(self, x: torch.Tensor, visual: torch.Tensor, batch_size: int) -> torch.Tensor:
        if self.has_self_attention:
            y = self.norm1(x)
            x = x + self.self_attn(y, y, batch_size)
        x = x + self.cross_attn(self.norm2(x), visual, batch_size)
        return x + self.dropout(self.mlp(self.norm3(x)))


class SequenceSpecificPrompt(nn.Module):
    """SSP: a prompt P that updates the CLIP-Memory per sequence (``M' = M + P``).

    Args:
        dim: width D (= CLIP joint space, 512 for ViT-B/16); heads = max(1, D // 64).
        layers: number of decoder layers N (2).
        form: ``"released"`` (self + cross attention + MLP) or ``"paper"`` (cross + MLP).
        dropout: dropout of attention outputs and MLP (0.1).
        alpha: initial value of the unused ``alpha`` vector (kept for checkpoint compatibility).

    Forward: ``prompt = ssp(memory, visual)`` with memory (Y, D) or (B, Y, D) and visual
    (B, N_v, D) (each sample's token map; or (1, B, D) for the paper's batch key/value, which
    gives one prompt (1, Y, D) shared by the batch). Returns P (B or 1, Y, D).

    Example:
        >>> import torch
        >>> ssp = SequenceSpecificPrompt(dim=64, layers=1, form="paper")
        >>> ssp(torch.randn(4, 64), torch.randn(1, 6, 64)).shape  # batch key/value
        torch.Size([1, 4, 64])
    """

    def __init__(self, dim: int = 512, layers: int = 2, form: str = "released",
                 dropout: float = 0.1, alpha: float = 0.1) -> None:
        super().__init__()
        if form not in SSP_FORMS:
            raise ValueError(f"ssp_form must be one of {SSP_FORMS}, got {form!r}")
        if layers < 1:
            raise ValueError(f"ssp_layers must be >= 1, got {layers}")
        self.dim, self.form = dim, form
        self.heads = max(1, dim // 64)
        self.memory_proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.LayerNorm(dim))
        self.text_proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))
        self.out_proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))
        self.decoder = nn.ModuleList(
            PromptGeneratorLayer(dim, self.heads, dropout, self_attention=form == "released")
            for _ in range(layers)
        )
        self.apply(_init_weights)
        # Unused in the authors' forward; kept (frozen) so parameter counts and checkpoints match.
        self.alpha = nn.Parameter(torch.full((dim,), float(alpha)), requires_grad=False)
        self.norm = nn.LayerNorm(dim)
        self.norm.requires_grad_(False)

    def forward(self, memory: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        if memory.dim() == 2:
            memory = memory.unsqueeze(0)
        if memory.dim() != 3 or visual.dim() != 3:
            raise ValueError(
                f"SSP takes memory (Y, D) or (B, Y, D) and visual (B, N, D); got "
                f"{tuple(memory.shape)} and {tuple(visual.shape)}"
            )
        if memory.shape[-1] != self.dim or visual.shape[-1] != self.dim:
            raise ValueError(f"SSP width is {self.dim}; got memory {tuple(memory.shape)}, "
                             f"visual {tuple(visual.shape)}")
        if memory.shape[0] not in (1, visual.shape[0]) and visual.shape[0] != 1:
            raise ValueError(f"memory batch {memory.shape[0]} does not match visual batch "
                             f"{visual.shape[0]}")
        batch = max(memory.shape[0], visual.shape[0])
        v = self.memory_proj(visual)
        x = self.text_proj(memory)
        for layer in self.decoder:
            x = layer(x, v, batch)
        return self.out_proj(x)

    def project_visual(self, visual: torch.Tensor) -> torch.Tensor:
        """``memory_proj`` of the key/value tokens (exposed for parity checks)."""
        return self.memory_proj(visual)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def v2m_logits(features: torch.Tensor, updated_memory: torch.Tensor,
               form: str = "released") -> torch.Tensor:
    """V2M similarities ``logits[b, k] = <v_b, M'_{b,k}>``.

    Args:
        features: (B, d) sequence features v (temporal mean of the projected CLS).
        updated_memory: (B, Y, d) per-sample memories, or (1, Y, d) / (Y, d) shared.
        form: ``"released"`` raw dot product; ``"paper"`` cosine similarity (Eq. 10).

    Example:
        >>> import torch
        >>> v2m_logits(torch.ones(2, 3), torch.ones(4, 3)).tolist()
        [[3.0, 3.0, 3.0, 3.0], [3.0, 3.0, 3.0, 3.0]]
    """
    if form not in ("released", "paper"):
        raise ValueError(f"v2m must be 'released' or 'paper', got {form!r}")
    if form == "paper":
        features = F.normalize(features, dim=-1)
        updated_memory = F.normalize(updated_memory, dim=-1)
    if updated_memory.dim() == 2 or updated_memory.shape[0] == 1:
        return features @ updated_memory.reshape(-1, updated_memory.shape[-1]).t()
    return torch.einsum("bd,bkd->bk", features, updated_memory)
