"""Identity-specific learnable prompts of CLIP-ReID (Li et al., AAAI 2023, stage 1).

Every training identity y owns ``n_ctx`` (4) learnable word vectors ``cls_ctx[y]`` that replace the
placeholder words of the template "A photo of a X X X X person." ("vehicle." for vehicle
datasets). With open_clip's tokenizer (the OpenAI BPE, lower-cased) the template becomes, in a
77-position context::

    position  0    1  2      3   4  5  6  7  8  9       10  11   12 ... 76
    token     SOT  a  photo  of  a  x  x  x  x  person  .   EOT  0  ... 0

so ``token_prefix`` = embeddings of positions 0-4 (SOT + "a photo of a"), positions 5-8 are the
identity's ``cls_ctx``, ``token_suffix`` = embeddings of positions 9-76 ("person." + EOT + padding)
and the EOT position is 11 (EOT has the largest token id, hence ``argmax`` of the ids, as CLIP
pools). The reference hard-codes the split (prefix of ``n_ctx + 1`` tokens); here the placeholder
positions are found in the tokenized template, which must contain exactly one run of ``n_ctx``
"X" words, so any template works.

Prefix and suffix are frozen buffers computed once from a token-embedding table (CLIP's
``token_embedding.weight``). They are **persistent**, as in CLIP-ReID, so its checkpoints
(``prompt_learner.cls_ctx``, ``prompt_learner.token_prefix``, ``prompt_learner.token_suffix``)
load 1:1; :meth:`PromptLearner.load_token_embedding` recomputes them when CLIP weights are loaded
after construction. Without a table (random initialisation) a normal(0, 0.02) table of CLIP's
vocabulary size (open_clip's initialisation) is drawn, used once and discarded.

Example:
    >>> import torch
    >>> pl = PromptLearner(num_classes=10, width=16)
    >>> pl(torch.tensor([3, 3, 7])).shape, pl.eot_index
    (torch.Size([3, 77, 16]), 11)
"""

from __future__ import annotations

from typing import Union

import open_clip
import torch
import torch.nn as nn
from open_clip.model import CLIPTextCfg

__all__ = ["PromptLearner", "PERSON_TEMPLATE", "VEHICLE_TEMPLATE", "CLIP_VOCAB_SIZE"]

PERSON_TEMPLATE = "A photo of a X X X X person."
VEHICLE_TEMPLATE = "A photo of a X X X X vehicle."
PLACEHOLDER = "X"
CLIP_VOCAB_SIZE = CLIPTextCfg().vocab_size  # 49408, OpenAI's BPE vocabulary + SOT/EOT


def tokenize_template(template: str, context_length: int = 77) -> torch.Tensor:
    """Token ids (context_length,) of ``template`` with open_clip's tokenizer, on the CPU.

    Example:
        >>> tokenize_template(PERSON_TEMPLATE)[:12].tolist()
        [49406, 320, 1125, 539, 320, 343, 343, 343, 343, 2533, 269, 49407]
    """
    with torch.device("cpu"):  # also under an enclosing torch.device("meta") context
        return open_clip.tokenize([template], context_length=context_length)[0]


def placeholder_start(tokens: torch.Tensor, n_ctx: int, template: str = "") -> int:
    """First position of the ``n_ctx`` consecutive placeholder ("X") tokens in ``tokens``."""
    x_id = int(tokenize_template(PLACEHOLDER)[1])
    positions = (tokens == x_id).nonzero().flatten().tolist()
    if len(positions) != n_ctx or positions != list(range(positions[0], positions[0] + n_ctx)):
        raise ValueError(
            f"the prompt template {template!r} must contain exactly one run of {n_ctx} "
            f"consecutive {PLACEHOLDER!r} words (the learnable context), found {len(positions)} "
            f"at token positions {positions}; e.g. {PERSON_TEMPLATE!r}"
        )
    return positions[0]


class PromptLearner(nn.Module):
    """Per-identity learnable context vectors inserted into a fixed prompt template.

    Args:
        num_classes: number of training identities Y (rows of ``cls_ctx``).
        token_embedding: CLIP's token table (``nn.Embedding`` or its (vocab, width) weight), or
            None for a random normal(0, 0.02) table of ``CLIP_VOCAB_SIZE`` rows (then ``width``
            is required).
        width: text transformer width (512 for CLIP); taken from the table when given.
        template: prompt text with ``n_ctx`` placeholder words "X" (``PERSON_TEMPLATE``,
            ``VEHICLE_TEMPLATE``).
        n_ctx: learnable vectors per identity (4 in CLIP-ReID).
        context_length: token positions of the text encoder (77).

    Forward ``learner(labels)``: labels (B,) identity indices in [0, Y); returns the prompt
    embeddings (B, context_length, width) for :class:`~.text_encoder.CLIPTextEncoder`, whose EOT
    position is :attr:`eot_index`.

    Example:
        >>> import torch
        >>> table = torch.randn(CLIP_VOCAB_SIZE, 8)
        >>> pl = PromptLearner(625, token_embedding=table)
        >>> tuple(pl.cls_ctx.shape), tuple(pl.token_prefix.shape), tuple(pl.token_suffix.shape)
        ((625, 4, 8), (1, 5, 8), (1, 68, 8))
    """

    def __init__(
        self,
        num_classes: int,
        token_embedding: Union[nn.Embedding, torch.Tensor, None] = None,
        width: int | None = None,
        template: str = PERSON_TEMPLATE,
        n_ctx: int = 4,
        context_length: int = 77,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if n_ctx < 1:
            raise ValueError(f"n_ctx must be >= 1, got {n_ctx}")
        if token_embedding is None and width is None:
            raise ValueError(
                "PromptLearner needs CLIP's token_embedding (nn.Embedding or its weight) or, "
                "for a random initialisation, the text width")
        self.num_classes, self.n_ctx = int(num_classes), int(n_ctx)
        self.template = template
        tokens = tokenize_template(template, context_length)
        self.ctx_start = placeholder_start(tokens, self.n_ctx, template)
        self._eot_index = int(tokens.argmax())
        self.register_buffer("tokenized_prompt", tokens.unsqueeze(0), persistent=False)
        table = (self._random_rows(tokens, int(width)) if token_embedding is None
                 else self._table(token_embedding, width))
        self.width = int(table.shape[1])

        self.cls_ctx = nn.Parameter(torch.empty(self.num_classes, self.n_ctx, self.width))
        nn.init.normal_(self.cls_ctx, std=0.02)
        prefix, suffix = self._split(table)
        self.register_buffer("token_prefix", prefix.to(self.cls_ctx.dtype))
        self.register_buffer("token_suffix", suffix.to(self.cls_ctx.dtype))

    @staticmethod
    def _random_rows(tokens: torch.Tensor, width: int) -> torch.Tensor:
        """A random token table (open_clip's N(0, 0.02) init) holding only the rows the template
        uses: the distribution of the full 49408-row table, without allocating it."""
        table = torch.empty(int(tokens.max()) + 1, width)  # untouched rows are never read
        ids = tokens.unique()
        table[ids] = torch.randn(len(ids), width) * 0.02
        return table

    @property
    def eot_index(self) -> int:
        """Position of the EOT token (``argmax`` of the tokenized template)."""
        return self._eot_index

    @staticmethod
    def _table(token_embedding: Union[nn.Embedding, torch.Tensor],
               width: int | None) -> torch.Tensor:
        table = token_embedding.weight if isinstance(token_embedding, nn.Embedding) else (
            token_embedding)
        if not torch.is_tensor(table) or table.dim() != 2:
            raise ValueError(
                f"token_embedding must be an nn.Embedding or a (vocab, width) tensor, got "
                f"{tuple(table.shape) if torch.is_tensor(table) else type(table).__name__}"
            )
        if width is not None and table.shape[1] != width:
            raise ValueError(f"token_embedding has width {table.shape[1]}, but width={width}")
        return table

    @torch.no_grad()
    def _split(self, table: torch.Tensor):
        tokens = self.tokenized_prompt[0]
        if table.shape[0] <= int(tokens.max()):
            raise ValueError(
                f"token_embedding has {table.shape[0]} rows but the tokenized template uses id "
                f"{int(tokens.max())}: pass CLIP's token_embedding.weight ({CLIP_VOCAB_SIZE} rows)"
            )
        tokens = tokens.to(table.device)
        embedding = table.detach()[tokens].unsqueeze(0)  # (1, L, width)
        end = self.ctx_start + self.n_ctx
        return embedding[:, : self.ctx_start].clone(), embedding[:, end:].clone()

    @torch.no_grad()
    def load_token_embedding(self, token_embedding: Union[nn.Embedding, torch.Tensor]) -> None:
        """Recompute the frozen prefix/suffix from CLIP's token table (after loading weights).

        Example:
            >>> import torch
            >>> pl = PromptLearner(2, width=4)
            >>> pl.load_token_embedding(torch.zeros(CLIP_VOCAB_SIZE, 4))
            >>> float(pl.token_prefix.abs().sum())
            0.0
        """
        prefix, suffix = self._split(self._table(token_embedding, self.width))
        self.token_prefix.copy_(prefix)
        self.token_suffix.copy_(suffix)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """Prompt embeddings (B, context_length, width) of identities ``labels`` (B,)."""
        if not torch.is_tensor(labels) or labels.dim() != 1 or labels.is_floating_point():
            raise ValueError("labels must be a 1-D integer tensor of identity indices (B,)")
        if not torch.compiler.is_compiling() and labels.numel():
            lo, hi = labels.aminmax()
            if int(lo) < 0 or int(hi) >= self.num_classes:
                raise ValueError(
                    f"identity labels must lie in [0, {self.num_classes}), got range "
                    f"[{int(lo)}, {int(hi)}]: use the relabelled train pids and "
                    f"num_classes=num_train_pids"
                )
        ctx = self.cls_ctx[labels.to(self.cls_ctx.device)]
        b = ctx.shape[0]
        prefix = self.token_prefix.to(ctx.dtype).expand(b, -1, -1)
        suffix = self.token_suffix.to(ctx.dtype).expand(b, -1, -1)
        return torch.cat([prefix, ctx, suffix], dim=1)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, n_ctx={self.n_ctx}, width={self.width}, "
                f"template={self.template!r}, eot_index={self.eot_index}")
