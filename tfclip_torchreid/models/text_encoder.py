"""CLIP text encoder for learned prompts (the CLIP-ReID baseline, Li et al., AAAI 2023).

CLIP-ReID feeds *prompt embeddings* (not token ids) to CLIP's text transformer: the prompt
learner builds ``(B, 77, width)`` embeddings in which the identity-specific context vectors replace
the words "X X X X", and the text encoder

1. adds the positional embedding,
2. runs the pre-LN transformer with the **causal** attention mask (a token sees itself and the
   tokens before it, never those after it),
3. applies ``ln_final``,
4. takes the feature at the end-of-text (EOT) position and projects it with ``text_projection``.

This is open_clip's ``TextTransformer.forward`` without its token-embedding lookup: the modules
(``transformer`` = open_clip ``Transformer`` with QuickGELU, ``ln_final`` = open_clip
``LayerNorm``, the causal mask, the initialisation) are taken from an open_clip
``TextTransformer``; its token table is not kept (the prompt learner owns the token embeddings).
Parameter names are OpenAI's (``transformer.resblocks.{i}.{ln_1,attn,ln_2,mlp.c_fc,mlp.c_proj}``,
``positional_embedding``, ``ln_final``, ``text_projection``), so the text part of an OpenAI /
open_clip CLIP state dict and CLIP-ReID's ``text_encoder.*`` checkpoint entries load 1:1.

Example:
    >>> import torch
    >>> enc = CLIPTextEncoder(embed_dim=32, width=64, heads=2, layers=2)
    >>> enc(torch.randn(3, 77, 64), eot_index=11).shape
    torch.Size([3, 32])
"""

from __future__ import annotations

from typing import Dict, Mapping, Tuple, Union

import torch
import torch.nn as nn
from open_clip.transformer import QuickGELU, TextTransformer

__all__ = ["CLIPTextEncoder", "text_state_dict", "TEXT_KEY_PREFIXES"]

# Top-level keys of the text tower in an OpenAI / open_clip CLIP state dict.
TEXT_KEY_PREFIXES = (
    "transformer.", "positional_embedding", "ln_final.", "text_projection", "token_embedding.",
)
TOKEN_EMBEDDING_KEY = "token_embedding.weight"


class CLIPTextEncoder(nn.Module):
    """CLIP's text transformer on prompt embeddings (no token-embedding table).

    Args:
        embed_dim: size of the joint CLIP space (``text_projection`` is width x embed_dim);
            512 for ViT-B/16, 1024 for RN50.
        context_length: number of token positions (77 in CLIP).
        width, heads, layers, mlp_ratio: transformer size (CLIP: 512, 8, 12, 4.0).
        quick_gelu: QuickGELU (OpenAI CLIP weights) instead of ``nn.GELU``.

    Forward ``encoder(prompts, eot_index)``: ``prompts`` (B, L, width) with L <= context_length,
    ``eot_index`` an int (same EOT position for every prompt) or a (B,) integer tensor; returns
    the projected EOT features (B, embed_dim).

    Example:
        >>> import torch
        >>> with torch.device("meta"):
        ...     enc = CLIPTextEncoder()                      # ViT-B/16 text tower
        >>> sum(p.numel() for p in enc.parameters())
        38131200
    """

    def __init__(
        self,
        embed_dim: int = 512,
        context_length: int = 77,
        width: int = 512,
        heads: int = 8,
        layers: int = 12,
        mlp_ratio: float = 4.0,
        quick_gelu: bool = True,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"text width {width} is not divisible by heads {heads}")
        # open_clip builds and initialises the tower (OpenAI's init, causal mask); a one-row token
        # table avoids allocating the 49408-row vocabulary that this module does not keep.
        tower = TextTransformer(
            context_length=context_length, vocab_size=1, width=width, heads=heads, layers=layers,
            mlp_ratio=mlp_ratio, output_dim=embed_dim,
            act_layer=QuickGELU if quick_gelu else nn.GELU,
        )
        self.context_length = int(context_length)
        self.width = int(width)
        self.embed_dim = int(embed_dim)
        self.transformer = tower.transformer
        self.positional_embedding = tower.positional_embedding
        self.ln_final = tower.ln_final
        self.text_projection = tower.text_projection
        self.register_buffer("attn_mask", tower.attn_mask, persistent=False)  # (L, L), -inf above

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each transformer block in backward (open_clip's checkpointing)."""
        self.transformer.grad_checkpointing = bool(enable)

    def forward(self, prompts: torch.Tensor, eot_index: Union[int, torch.Tensor]) -> torch.Tensor:
        """Projected EOT features (B, embed_dim) of prompt embeddings (B, L, width)."""
        seq_len = self._check_prompts(prompts)
        cast_dtype = self.transformer.get_cast_dtype()
        x = prompts.to(cast_dtype) + self.positional_embedding[:seq_len].to(cast_dtype)
        x = self.transformer(x, attn_mask=self.attn_mask[:seq_len, :seq_len])
        x = self.ln_final(x)
        return self._eot_features(x, eot_index) @ self.text_projection

    def _check_prompts(self, prompts: torch.Tensor) -> int:
        if not torch.is_tensor(prompts) or prompts.dim() != 3 or prompts.shape[-1] != self.width:
            shape = tuple(prompts.shape) if torch.is_tensor(prompts) else type(prompts).__name__
            raise ValueError(
                f"the text encoder takes prompt embeddings (B, L, {self.width}), got {shape}: "
                f"build them with the PromptLearner of the same text width"
            )
        if prompts.shape[1] > self.context_length:
            raise ValueError(
                f"prompts have {prompts.shape[1]} tokens but the text encoder has "
                f"context_length={self.context_length}"
            )
        return prompts.shape[1]

    @staticmethod
    def _eot_features(x: torch.Tensor, eot_index: Union[int, torch.Tensor]) -> torch.Tensor:
        batch, seq_len = x.shape[:2]
        if isinstance(eot_index, int):
            if not 0 <= eot_index < seq_len:
                raise ValueError(f"eot_index must be in [0, {seq_len}), got {eot_index}")
            return x[:, eot_index]
        if (not torch.is_tensor(eot_index) or eot_index.is_floating_point()
                or tuple(eot_index.shape) != (batch,)):
            raise ValueError(
                f"eot_index must be an int or an integer tensor of shape ({batch},), got "
                f"{tuple(eot_index.shape) if torch.is_tensor(eot_index) else eot_index!r}"
            )
        return x[torch.arange(batch, device=x.device), eot_index.to(x.device)]

    # ------------------------------------------------------------------ weights
    def load_text_state_dict(self, state: Mapping[str, torch.Tensor], source: str = "") -> None:
        """Load the text tower of an OpenAI / open_clip CLIP state dict (OpenAI key names).

        ``state`` holds ``transformer.*``, ``positional_embedding``, ``ln_final.*`` and
        ``text_projection`` (e.g. :func:`text_state_dict` of a full CLIP state dict);
        ``token_embedding.weight`` is ignored (it belongs to the prompt learner). Every other key
        must be present and of the same shape, else ``ValueError`` naming the key and shapes.
        Values are copied (cast to this module's dtype, e.g. OpenAI's fp16 weights to fp32).
        """
        where = f" from {source}" if source else ""
        state = {k: v for k, v in state.items() if k != TOKEN_EMBEDDING_KEY}
        own = self.state_dict()
        for key, value in state.items():
            if key in own and tuple(value.shape) != tuple(own[key].shape):
                raise ValueError(
                    f"the CLIP text weights{where} do not fit this text encoder: {key} has shape "
                    f"{tuple(value.shape)} in the checkpoint but {tuple(own[key].shape)} in the "
                    f"model (context_length {self.context_length}, width {self.width}, "
                    f"embed_dim {self.embed_dim}, layers {len(self.transformer.resblocks)}); "
                    f"build the encoder with the checkpoint's text config (RN50: embed_dim 1024)"
                )
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"the CLIP text weights{where} do not match the text encoder: missing "
                f"{missing[:8]}{'...' if len(missing) > 8 else ''}, unexpected "
                f"{unexpected[:8]}{'...' if len(unexpected) > 8 else ''} (expected OpenAI key "
                f"names without prefix, {len(self.transformer.resblocks)} layers; use "
                f"text_state_dict() on a full CLIP state dict)"
            )
        self.load_state_dict(state, strict=True)


def text_state_dict(state: Mapping[str, torch.Tensor]
                    ) -> Tuple[Dict[str, torch.Tensor], torch.Tensor | None]:
    """Split a full OpenAI / open_clip CLIP state dict into (text-encoder part, token table).

    Keeps the top-level text-tower keys (``transformer.*``, ``positional_embedding``,
    ``ln_final.*``, ``text_projection``; ``visual.*``, ``logit_scale`` and the TorchScript meta
    keys are dropped) and returns ``token_embedding.weight`` separately (None if absent) for
    :class:`~tfclip_torchreid.models.prompt_learner.PromptLearner`.

    Example:
        >>> import torch
        >>> sd = {"visual.proj": torch.zeros(2, 2), "logit_scale": torch.zeros(()),
        ...       "ln_final.weight": torch.ones(4), "token_embedding.weight": torch.zeros(9, 4)}
        >>> text, table = text_state_dict(sd)
        >>> sorted(text), tuple(table.shape)
        (['ln_final.weight'], (9, 4))
    """
    text = {k: v for k, v in state.items()
            if k.startswith(TEXT_KEY_PREFIXES) and k != TOKEN_EMBEDDING_KEY}
    return text, state.get(TOKEN_EMBEDDING_KEY)
