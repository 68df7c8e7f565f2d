"""CLIP visual encoder of TF-CLIP (paper Eq. 2-3), built from open_clip's ``VisionTransformer``.

Paper Eq. 2: ``z_t = [CLS_t, E_emb^T I_t,1 ... E_emb^T I_t,Np] + e_sp``; Eq. 3: ``z_t = V(z_t)``;
the frame representation is ``f_t = VP(z_t,0)`` with the visual projection ``VP = proj``.

What the authors' released code computes, reproduced here on open_clip's public submodules
(``conv1``, ``class_embedding``, ``positional_embedding``, ``ln_pre``, ``transformer.resblocks``,
``ln_post``, ``proj``):

* input 256x128, patch 16, stride 16 by default (grid 16x8, 129 tokens). A stride smaller than the
  patch gives overlapping patches: grid ``((H - P) // S + 1, (W - P) // S + 1)`` (stride 12: 21x10);
* the SIE camera embedding is added to the CLS token **only**, before the positional embedding;
* ``ln_post`` is applied to **all** tokens and **all** tokens are projected (open_clip applies
  them to the pooled CLS only); the forward returns ``(tokens, tokens @ proj)``;
* QuickGELU (OpenAI weights), pre-LN blocks, no dropout;
* the 14x14 positional table of the 224 weights is resized once at load time with **bilinear,
  align_corners=False, no antialias** (open_clip's loader uses bicubic + antialias); weight
  sources and the resize live in :mod:`.pretrained`.

Both visual towers (this ViT and :class:`~.backbone_rn50.CLIPResNetBackbone`) answer
``features(x, cls_embed=None, return_penultimate=False)`` with a :class:`VisualFeatures`.

Example:
    >>> import torch
    >>> m = CLIPVisualBackbone(image_size=(64, 32), width=32, layers=2, heads=4, output_dim=16)
    >>> tokens, tokens_proj = m(torch.randn(2, 3, 64, 32))
    >>> tuple(tokens.shape), tuple(tokens_proj.shape)
    ((2, 9, 32), (2, 9, 16))
    >>> f = m.features(torch.randn(2, 3, 64, 32), return_penultimate=True)
    >>> tuple(f.global_feature.shape), tuple(f.penultimate.shape)
    ((2, 32), (2, 32))
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence, Tuple, Union

import torch
import torch.nn as nn
from open_clip.transformer import QuickGELU, VisionTransformer

from .pretrained import (
    load_clip_state_dict,
    load_visual_weights,
    read_clip_checkpoint,
    resize_positional_embedding,
    resolve_openai_weights,
    visual_state_dict,
)

__all__ = [
    "CLIPTower",
    "CLIPVisualBackbone",
    "VisualFeatures",
    "check_frames",
    "grid_size_for",
    # weight sources, re-exported from .pretrained (their home)
    "resize_positional_embedding",
    "read_clip_checkpoint",
    "resolve_openai_weights",
    "visual_state_dict",
]


class VisualFeatures(NamedTuple):
    """What a CLIP visual tower gives TF-CLIP / CLIP-ReID for N frames.

    Attributes:
        tokens: (N, L, C_t) the token map temporal modules (TMD) run on. ViT: ``ln_post`` of
            every token (C_t = width, 768); RN50: the attention-pool outputs of all tokens
            (C_t = output_dim, 1024).
        tokens_proj: (N, L, d) every token in the CLIP joint space; token 0 is the CLS / pooled
            token. ViT: ``tokens @ proj`` (512); RN50: the same tensor as ``tokens`` (1024).
        global_feature: (N, C_g) the "img_feature" of CLIP-ReID / TF-CLIP. ViT: ``tokens[:, 0]``
            (768); RN50: global average pool of layer4 (2048).
        penultimate: (N, C_p) or None (only with ``return_penultimate=True``): CLIP-ReID's third
            triplet feature. ViT: the CLS token of the second-to-last block's output (no
            ``ln_post``); RN50: global average pool of layer3 (1024).
    """

    tokens: torch.Tensor
    tokens_proj: torch.Tensor
    global_feature: torch.Tensor
    penultimate: torch.Tensor | None = None


def check_frames(x: torch.Tensor, image_size: Sequence[int]) -> None:
    """Raise a clear error if ``x`` is not (N, 3, H, W) frames at ``image_size`` = (H, W).

    Example:
        >>> check_frames(torch.zeros(1, 3, 8, 4), (8, 4))
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(
            f"the CLIP visual encoder takes frames (N, 3, H, W), got shape {tuple(x.shape)}"
        )
    h, w = int(image_size[0]), int(image_size[1])
    if tuple(x.shape[-2:]) != (h, w):
        raise ValueError(
            f"this model expects {h}x{w} (HxW) frames, got {x.shape[-2]}x{x.shape[-1]}: resize "
            f"the input to {h}x{w} (e.g. height={h}, width={w} in the data manager) or build "
            f"the model with image_size=({x.shape[-2]}, {x.shape[-1]})"
        )


def grid_size_for(image_size: Sequence[int], patch_size: int, stride: int) -> Tuple[int, int]:
    """Token grid of a patch conv: ``((H - P) // S + 1, (W - P) // S + 1)``.

    Example:
        >>> grid_size_for((256, 128), 16, 12)
        (21, 10)
    """
    h, w = int(image_size[0]), int(image_size[1])
    if h < patch_size or w < patch_size:
        raise ValueError(f"image size {h}x{w} is smaller than the patch size {patch_size}")
    if not 0 < stride <= patch_size:
        raise ValueError(f"stride must be in 1..patch_size ({patch_size}), got {stride}")
    return (h - patch_size) // stride + 1, (w - patch_size) // stride + 1


class CLIPTower:
    """What both CLIP visual towers share: the token count of their grid, the joint-space size
    and weight loading (``grid_size``, ``output_dim`` and ``architecture`` come from the tower).

    ``OPENAI_MODEL`` is the open_clip model whose ``openai`` weights fit; ``POS_KEY`` the
    positional table resized to ``grid_size`` on load.

    Example:
        >>> m = CLIPVisualBackbone(image_size=(64, 32), width=32, layers=1, heads=2, output_dim=8)
        >>> m.num_tokens, m.embed_dim
        (9, 8)
    """

    OPENAI_MODEL = "ViT-B-16-quickgelu"
    POS_KEY = "positional_embedding"
    grid_size: Tuple[int, int]
    output_dim: int

    @property
    def num_tokens(self) -> int:
        """1 (CLS / pooled token) + one per grid cell."""
        return self.grid_size[0] * self.grid_size[1] + 1

    @property
    def embed_dim(self) -> int:
        """Size of the CLIP joint space (``output_dim``): channels of ``tokens_proj``."""
        return self.output_dim

    @property
    def architecture(self) -> str:
        """One line naming the tower's sizes (in weight-mismatch messages)."""
        raise NotImplementedError

    def load_pretrained(self, source: str, cache_dir: str | None = None,
                        openai_model: str | None = None) -> None:
        """Load CLIP visual weights: ``'openai'`` (open_clip cache / download) or a local file.

        Local files may be an OpenAI TorchScript archive (``ViT-B-16.pt``, ``RN50.pt``), an
        open_clip / full CLIP state dict (``visual.`` keys), a visual-only state dict, a
        ``.safetensors`` file, or an authors' TF-CLIP checkpoint (``image_encoder.`` keys). The
        positional table is resized bilinearly (align_corners=False, no antialias) to this
        model's grid. Offline, ``'openai'`` fails within seconds with the local-file alternative
        (see :func:`~.pretrained.resolve_openai_weights`).
        """
        visual = load_clip_state_dict(source, openai_model or self.OPENAI_MODEL, cache_dir).visual
        self.load_visual_state_dict(visual, source=str(source))

    def load_visual_state_dict(self, state: Mapping[str, torch.Tensor], source: str = "") -> None:
        """Load a visual-tower state dict (OpenAI / open_clip key names), resizing ``POS_KEY``."""
        load_visual_weights(self, state, {self.POS_KEY: self.grid_size}, source=source,
                            architecture=self.architecture)


class CLIPVisualBackbone(CLIPTower, VisionTransformer):
    """open_clip's CLIP ``VisionTransformer`` with the TF-CLIP forward (all tokens, SIE on CLS).

    Args:
        image_size: (H, W) of the input frames.
        patch_size: patch (conv kernel) size.
        stride: patch stride; ``stride < patch_size`` gives overlapping patches.
        width, layers, heads, mlp_ratio: transformer size (ViT-B/16: 768, 12, 12, 4.0).
        output_dim: size of the joint CLIP space (``proj`` is width x output_dim).
        quick_gelu: QuickGELU (OpenAI CLIP) instead of ``nn.GELU``.

    Example:
        >>> import torch
        >>> m = CLIPVisualBackbone(image_size=(64, 32), width=32, layers=1, heads=2, output_dim=8)
        >>> m(torch.randn(1, 3, 64, 32), cls_embed=torch.randn(1, 32))[1].shape
        torch.Size([1, 9, 8])
    """

    def __init__(
        self,
        image_size: Sequence[int] = (256, 128),
        patch_size: int = 16,
        stride: int | None = None,
        width: int = 768,
        layers: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        output_dim: int = 512,
        quick_gelu: bool = True,
    ) -> None:
        image_size = (int(image_size[0]), int(image_size[1]))
        stride = patch_size if stride is None else int(stride)
        grid = grid_size_for(image_size, patch_size, stride)
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        super().__init__(
            image_size=image_size,
            patch_size=patch_size,
            width=width,
            layers=layers,
            heads=heads,
            mlp_ratio=mlp_ratio,
            output_dim=output_dim,
            act_layer=QuickGELU if quick_gelu else nn.GELU,
            pool_type="none",
            output_tokens=True,
        )
        self.stride = stride
        self.width = width
        self.prompt: nn.Module | None = None  # VPT's prompts (peft="prompt", .peft.prompt)
        if stride != patch_size or tuple(self.grid_size) != grid:
            # open_clip's conv1 uses stride = patch size; overlapping patches need their own conv
            # and a positional table sized for the larger grid.
            self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=stride, bias=False)
            self.grid_size = grid
            self.positional_embedding = nn.Parameter(
                width**-0.5 * torch.randn(grid[0] * grid[1] + 1, width)
            )

    @property
    def token_dim(self) -> int:
        """Channels of ``VisualFeatures.tokens`` (width)."""
        return self.width

    @property
    def global_dim(self) -> int:
        """Channels of ``VisualFeatures.global_feature`` (width: the CLS token)."""
        return self.width

    @property
    def penultimate_dim(self) -> int:
        """Channels of ``VisualFeatures.penultimate`` (width)."""
        return self.width

    @property
    def sie_dim(self) -> int:
        """Size of the ``cls_embed`` (SIE camera embedding) the forward accepts (width)."""
        return self.width

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each transformer block in backward (``torch.utils.checkpoint``)."""
        self.transformer.grad_checkpointing = bool(enable)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error if ``x`` is not (N, 3, H, W) at the configured size."""
        check_frames(x, self.image_size)

    def _embed(self, x: torch.Tensor, cls_embed: torch.Tensor | None) -> torch.Tensor:
        """Patch embedding + CLS (+ SIE) + positional embedding + ln_pre: the blocks' input."""
        self.check_input(x)
        x = self.conv1(x).flatten(2).transpose(1, 2)  # (N, gh*gw, width), row-major grid
        cls = self.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], 1, -1)
        if cls_embed is not None:
            cls = cls + cls_embed.to(x.dtype).unsqueeze(1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.ln_pre(x)

    def forward(
        self,
        x: torch.Tensor,
        cls_embed: torch.Tensor | None = None,
        project: bool = True,
    ) -> Union[Tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """Encode frames.

        Args:
            x: frames (N, 3, H, W).
            cls_embed: optional (N, width) added to the CLS token before the positional
                embedding (SIE camera embedding, already scaled by its coefficient).
            project: also return ``tokens @ proj``.

        Returns:
            ``(tokens, tokens_proj)``: (N, L, width) after ``ln_post`` on every token and
            (N, L, output_dim); only ``tokens`` when ``project=False``.
        """
        x, _ = self._blocks(self._embed(x, cls_embed))
        tokens = self.ln_post(x)
        if not project:
            return tokens
        return tokens, tokens @ self.proj

    def features(
        self,
        x: torch.Tensor,
        cls_embed: torch.Tensor | None = None,
        return_penultimate: bool = False,
    ) -> VisualFeatures:
        """Encode frames into :class:`VisualFeatures` (the interface shared with RN50).

        ``tokens``/``tokens_proj`` are the :meth:`forward` outputs, ``global_feature`` the CLS
        token after ``ln_post``. With ``return_penultimate`` the blocks run through open_clip's
        ``Transformer.forward_intermediates`` (activation checkpointing included) and
        ``penultimate`` is the CLS token of the second-to-last block's output, without
        ``ln_post`` (CLIP-ReID's ``image_features_last``; with one block: the block's input).

        Example:
            >>> m = CLIPVisualBackbone(image_size=(32, 32), width=16, layers=2, heads=2,
            ...                        output_dim=8)
            >>> f = m.features(torch.randn(3, 3, 32, 32))
            >>> tuple(f.tokens.shape), tuple(f.tokens_proj.shape), f.penultimate is None
            ((3, 5, 16), (3, 5, 8), True)
        """
        x, penultimate = self._blocks(self._embed(x, cls_embed), return_penultimate)
        tokens = self.ln_post(x)
        return VisualFeatures(tokens, tokens @ self.proj, tokens[:, 0], penultimate)

    def _blocks(self, x: torch.Tensor, return_penultimate: bool = False
                ) -> Tuple[torch.Tensor, torch.Tensor | None]:
        """The transformer blocks on their input x: open_clip's ``Transformer`` (its activation
        checkpointing included), or with visual prompts (``peft="prompt"``) their block loop,
        which drops the prompt tokens again (:mod:`.peft.prompt`); and, with
        ``return_penultimate``, the CLS token of the second-to-last block's output."""
        if self.prompt is not None and self.prompt.active:
            return self.prompt.run_blocks(self.transformer, x, return_penultimate)
        if not return_penultimate:
            return self.transformer(x), None
        layers = len(self.transformer.resblocks)
        if layers == 1:
            return self.transformer(x), x[:, 0]
        x, taken = self.transformer.forward_intermediates(x, indices=[layers - 2])
        return x, taken[0][:, 0]

    @property
    def architecture(self) -> str:
        """One line naming the ViT's sizes."""
        return (f"ViT: width {self.width}, layers {len(self.transformer.resblocks)}, output_dim "
                f"{self.output_dim}, patch {self.patch_size[0]}, grid {self.grid_size}")
