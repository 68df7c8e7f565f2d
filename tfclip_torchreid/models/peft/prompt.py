"""Visual prompt tuning (VPT: Jia et al., "Visual Prompt Tuning", ECCV 2022) for the CLIP ViT.

VPT prepends ``p`` learnable tokens to the token sequence of a frozen ViT, after the patch
embedding: VPT-shallow at the first block's input only, ``[x_1, Z_1, E_1] = L_1([x_0, P, E_0])``;
VPT-deep at every block's input, where block i's prompt tokens P_{i-1} replace the prompt outputs
of the block before, ``[x_i, _, E_i] = L_i([x_{i-1}, P_{i-1}, E_{i-1}])`` (Jia et al. Sec. 3.2,
Eq. 4-6). Options: ``prompt_tokens`` p and ``prompt_depth`` (``deep``, ``shallow``).

Where, in TF-CLIP's ViT: after ``ln_pre`` (open_clip's embedding ends with it; the blocks' input
is VPT's "input space of the first layer"), between the CLS token and the patches, with no
positional embedding (VPT's prompts have none).

What TF-CLIP consumes decides where the tokens leave. The rest of the model reads the
:class:`~tfclip_torchreid.models.backbone.VisualFeatures` of every frame: the CLS token (the
global feature, its projection: the ID and triplet heads, the V2M logits, CLIP-Memory's
sequence feature), the whole token map after ``ln_post`` (TMD: ``L = 1 + grid`` tokens of each
frame, read back as the frame's grid) and its projection (SSP's keys and values: each clip's
frame-averaged projected token map) and, for CLIP-ReID, the penultimate block's CLS. The prompt
tokens are dropped after the last block, before ``ln_post``: TMD and SSP receive the same
``1 + grid`` tokens as without prompts (prompts are not positions of the frame), and VPT's own
head reads only the CLS token. The prompts act through attention on every block's CLS and patch
tokens; the penultimate CLS is read in the prompted sequence.

Initialisation, as VPT's released code: uniform in ``[-v, v]`` with ``v = sqrt(6 / (3 P^2 +
width))`` (Xavier-uniform over the patch embedding's fan-in and the width).

Example:
    >>> import torch
    >>> from tfclip_torchreid.models.backbone import CLIPVisualBackbone
    >>> vit = CLIPVisualBackbone(image_size=(32, 32), width=16, layers=2, heads=2, output_dim=8)
    >>> vit.prompt = VisualPrompt(width=16, tokens=3, layers=2, depth="deep", patch_size=16)
    >>> f = vit.features(torch.randn(2, 3, 32, 32), return_penultimate=True)
    >>> tuple(f.tokens.shape), tuple(vit.prompt.tokens.shape)
    ((2, 5, 16), (2, 3, 16))
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

__all__ = ["VisualPrompt", "PROMPT_DEPTHS"]

#: ``prompt_depth`` values: VPT-deep and VPT-shallow
PROMPT_DEPTHS = ("deep", "shallow")


class VisualPrompt(nn.Module):
    """VPT's prompt tokens and the ViT's block loop that inserts and drops them.

    Args:
        width: the ViT's width.
        tokens: prompt tokens p per prompted block.
        layers: the ViT's blocks (``deep``: one set of tokens per block).
        depth: ``"deep"`` or ``"shallow"``.
        patch_size: the patch size (for the initialisation's fan-in).

    Attributes:
        tokens: (layers or 1, p, width) learnable prompts.
    """

    def __init__(self, width: int, tokens: int, layers: int, depth: str = "deep",
                 patch_size: int = 16) -> None:
        super().__init__()
        if depth not in PROMPT_DEPTHS:
            raise ValueError(f"prompt depth must be one of {PROMPT_DEPTHS}, got {depth!r}")
        self.depth = depth
        self.active = True  # False: the ViT runs without prompts (peft.base_only)
        self.tokens = nn.Parameter(torch.empty(layers if depth == "deep" else 1, int(tokens),
                                               int(width)))
        bound = math.sqrt(6.0 / float(3 * patch_size * patch_size + width))
        nn.init.uniform_(self.tokens, -bound, bound)

    @property
    def num_tokens(self) -> int:
        """p: prompt tokens per prompted block."""
        return int(self.tokens.shape[1])

    def _with_prompt(self, x: torch.Tensor, index: int, replace: bool) -> torch.Tensor:
        """``[CLS, P_index, patches]`` from ``[CLS, patches]`` (or, with ``replace``, from
        ``[CLS, P_old, patches]``)."""
        prompt = self.tokens[index].to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
        rest = x[:, 1 + self.num_tokens:] if replace else x[:, 1:]
        return torch.cat([x[:, :1], prompt, rest], dim=1)

    def run_blocks(self, transformer: nn.Module, x: torch.Tensor, penultimate: bool = False
                   ) -> Tuple[torch.Tensor, torch.Tensor | None]:
        """open_clip's ``Transformer`` (batch first, its activation checkpointing) on the
        blocks' input ``x`` (N, 1 + grid, width) with the prompts inserted; returns the last
        block's output without the prompt tokens (N, 1 + grid, width) and, with
        ``penultimate``, the CLS token of the second-to-last block's output (of the input with
        one block)."""
        blocks = transformer.resblocks
        taken = x[:, 0] if penultimate and len(blocks) == 1 else None
        x = self._with_prompt(x, 0, replace=False)
        for i, block in enumerate(blocks):
            if i > 0 and self.depth == "deep":
                x = self._with_prompt(x, i, replace=True)
            if transformer.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(block, x, None, None, None, use_reentrant=False)
            else:
                x = block(x)
            if penultimate and i == len(blocks) - 2:
                taken = x[:, 0]
        return torch.cat([x[:, :1], x[:, 1 + self.num_tokens:]], dim=1), taken

    def extra_repr(self) -> str:
        return f"depth={self.depth}, tokens={tuple(self.tokens.shape)}"
