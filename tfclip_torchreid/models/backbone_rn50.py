"""CLIP ResNet-50 visual encoder for TF-CLIP's CNN variant and CLIP-ReID's RN50.

open_clip's ``ModifiedResNet`` (OpenAI's CLIP RN50: 3-conv stem, anti-aliased strided
Bottlenecks, QKV attention pooling) with the changes person ReID makes:

* **last stride 1** (supplement, "CNN-based TF-CLIP"; CLIP-ReID): layer4's first Bottleneck keeps
  the resolution (no average pool in the block or its shortcut), so a 256x128 frame gives a
  16x8 layer4 map instead of 8x4. ``last_stride=2`` is the original network;
* the attention-pool positional table sized for that grid (16*8 + 1 = 129 rows), resized at load
  time from the pretrained 7x7 + 1 table with the same bilinear rule as the ViT
  (:func:`~.pretrained.resize_positional_embedding`);
* attention pooling returns **all** tokens (token 0 = the pooled vector, the rest one per
  layer4 cell), 1024-d (``output_dim``), as the authors' and CLIP-ReID's encoders do; open_clip's
  ``AttentionPool2d`` returns token 0 only. :func:`attention_pool_tokens` runs the same
  ``F.multi_head_attention_forward`` call on the module's own parameters;
* :meth:`CLIPResNetBackbone.features` returns :class:`~.backbone.VisualFeatures`: ``tokens`` =
  ``tokens_proj`` = the attention-pool outputs (N, 129, 1024), ``global_feature`` = global
  average pool of layer4 (2048, CLIP-ReID's ``img_feature``), ``penultimate`` = global average
  pool of layer3 (1024, CLIP-ReID's ``img_feature_last``).

SIE: the ViT adds the camera embedding to its CLS token. ResNet has no CLS token, and neither
CLIP-ReID nor the authors' RN50 code applies a camera embedding to it (their RN50 encoder takes
no camera input), so by default none is applied. The closest analogue of the CLS token is the
attention pool's query token 0 (the spatial mean); ``cls_embed`` (N, 2048) is added there,
before the positional embedding, for experiments only: it is not part of any reference model.

Example:
    >>> import torch
    >>> m = CLIPResNetBackbone(image_size=(64, 32), layers=(1, 1, 1, 1), width=8, heads=2,
    ...                        output_dim=16)
    >>> m.grid_size, m.num_tokens
    ((4, 2), 9)
    >>> f = m.features(torch.randn(2, 3, 64, 32), return_penultimate=True)
    >>> [tuple(t.shape) for t in f]
    [(2, 9, 16), (2, 9, 16), (2, 256), (2, 128)]
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from open_clip.modified_resnet import AttentionPool2d, ModifiedResNet

from .backbone import CLIPTower, VisualFeatures, check_frames

__all__ = ["CLIPResNetBackbone", "attention_pool_tokens", "resnet_grid_size", "rn50_complexity"]

def resnet_grid_size(image_size: Sequence[int], last_stride: int = 1) -> Tuple[int, int]:
    """Size of the layer4 map of a CLIP ModifiedResNet for (H, W) input.

    Stem conv (stride 2, padding 1), stem average pool /2, layer2 /2, layer3 /2, layer4
    /``last_stride`` (the pools floor).

    Example:
        >>> resnet_grid_size((256, 128)), resnet_grid_size((224, 224), last_stride=2)
        ((16, 8), (7, 7))
    """
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")

    def side(n: int) -> int:
        return (n + 1) // 2 // 2 // 2 // 2 // last_stride

    h, w = int(image_size[0]), int(image_size[1])
    grid = (side(h), side(w))
    if min(grid) < 1:
        raise ValueError(
            f"image size {h}x{w} is too small for the ResNet (layer4 map {grid[0]}x{grid[1]}); "
            f"use at least {16 * last_stride}x{16 * last_stride}"
        )
    return grid


def attention_pool_tokens(pool: AttentionPool2d, x: torch.Tensor,
                          query_embed: torch.Tensor | None = None) -> torch.Tensor:
    """open_clip's ``AttentionPool2d`` on a (N, C, H, W) map, returning every token.

    Tokens are ``[mean, cell_1 ... cell_HW]`` (row-major) plus the positional table, one
    multi-head self-attention with the pool's q/k/v/c projections; open_clip returns token 0
    only. ``query_embed`` (N, C), if given, is added to token 0 before the positional table.

    Returns:
        (N, 1 + H*W, output_dim); token 0 equals open_clip's ``pool(x)``.
    """
    x = x.flatten(2).permute(2, 0, 1)  # (HW, N, C)
    mean = x.mean(dim=0, keepdim=True)
    if query_embed is not None:
        mean = mean + query_embed.to(x.dtype).unsqueeze(0)
    x = torch.cat([mean, x], dim=0) + pool.positional_embedding[:, None, :].to(x.dtype)
    out, _ = F.multi_head_attention_forward(
        query=x, key=x, value=x,
        embed_dim_to_check=x.shape[-1],
        num_heads=pool.num_heads,
        q_proj_weight=pool.q_proj.weight,
        k_proj_weight=pool.k_proj.weight,
        v_proj_weight=pool.v_proj.weight,
        in_proj_weight=None,
        in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None,
        bias_v=None,
        add_zero_attn=False,
        dropout_p=0.0,
        out_proj_weight=pool.c_proj.weight,
        out_proj_bias=pool.c_proj.bias,
        use_separate_proj_weight=True,
        training=pool.training,
        need_weights=False,
    )
    return out.transpose(0, 1)


class CLIPResNetBackbone(CLIPTower, ModifiedResNet):
    """open_clip's CLIP ``ModifiedResNet`` with last stride 1 and an all-token attention pool.

    Args:
        image_size: (H, W) of the input frames.
        layers: Bottlenecks per stage (RN50: 3, 4, 6, 3).
        width: stem width (RN50: 64); layer4 has ``32 * width`` channels.
        heads: attention-pool heads (RN50: 32).
        output_dim: size of the CLIP joint space (RN50: 1024).
        last_stride: stride of layer4 (1 for ReID; 2 is open_clip's / OpenAI's network).

    The state-dict keys are OpenAI's / open_clip's (``conv1``, ``layer4.0.downsample.0``,
    ``attnpool.positional_embedding``...), so OpenAI files, open_clip files and the authors'
    ``image_encoder.*`` weights load as they are; only the positional table is resized.

    Example:
        >>> m = CLIPResNetBackbone(image_size=(224, 224), layers=(1, 1, 1, 1), width=8,
        ...                        heads=2, output_dim=16, last_stride=2)
        >>> m.grid_size, tuple(m.attnpool.positional_embedding.shape)
        ((7, 7), (50, 256))
    """

    OPENAI_MODEL = "RN50-quickgelu"
    POS_KEY = "attnpool.positional_embedding"

    def __init__(
        self,
        image_size: Sequence[int] = (256, 128),
        layers: Sequence[int] = (3, 4, 6, 3),
        width: int = 64,
        heads: int = 32,
        output_dim: int = 1024,
        last_stride: int = 1,
    ) -> None:
        image_size = (int(image_size[0]), int(image_size[1]))
        grid = resnet_grid_size(image_size, last_stride)
        if len(layers) != 4:
            raise ValueError(f"layers must give 4 stage depths, got {tuple(layers)}")
        if (32 * width) % heads:
            raise ValueError(f"the pool width 32 * {width} is not divisible by heads {heads}")
        super().__init__(list(layers), output_dim=output_dim, heads=heads,
                         image_size=image_size[0], width=width)
        self.image_size = image_size
        self.grid_size = grid
        self.width, self.layers, self.heads = width, tuple(int(n) for n in layers), heads
        self.last_stride = last_stride
        if last_stride != 2:
            # open_clip builds layer4 with stride 2; rebuild it with its own _make_layer
            self._inplanes = 16 * width
            self.layer4 = self._make_layer(8 * width, self.layers[3], stride=last_stride)
        rows = grid[0] * grid[1] + 1
        if self.attnpool.positional_embedding.shape[0] != rows:
            dim = 32 * width
            self.attnpool.positional_embedding = nn.Parameter(torch.randn(rows, dim) / dim**0.5)
        self.init_parameters()

    # ------------------------------------------------------------------ sizes
    @property
    def token_dim(self) -> int:
        """Channels of ``VisualFeatures.tokens`` (the attention-pool output, ``output_dim``)."""
        return self.output_dim

    @property
    def global_dim(self) -> int:
        """Channels of ``VisualFeatures.global_feature`` (layer4: 32 * width)."""
        return 32 * self.width

    @property
    def penultimate_dim(self) -> int:
        """Channels of ``VisualFeatures.penultimate`` (layer3: 16 * width)."""
        return 16 * self.width

    @property
    def sie_dim(self) -> int:
        """Size of the optional ``cls_embed`` (added to the pool's token 0: 32 * width)."""
        return 32 * self.width

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Not offered: recomputing BatchNorm in training would update its statistics twice."""
        if enable:
            raise NotImplementedError(
                "activation checkpointing is not supported for the RN50 backbone: recomputing "
                "its BatchNorm layers in training would update their running statistics twice; "
                "build the model with grad_checkpointing=False"
            )

    # ------------------------------------------------------------------ forward
    def feature_maps(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(layer3, layer4) maps of frames x (N, 3, H, W): (N, 16w, ...), (N, 32w, gh, gw)."""
        check_frames(x, self.image_size)
        x = self.layer2(self.layer1(self.stem(x)))
        x3 = self.layer3(x)
        return x3, self.layer4(x3)

    def features(
        self,
        x: torch.Tensor,
        cls_embed: torch.Tensor | None = None,
        return_penultimate: bool = False,
    ) -> VisualFeatures:
        """Encode frames into :class:`~.backbone.VisualFeatures` (the interface shared with ViT).

        Args:
            x: frames (N, 3, H, W).
            cls_embed: optional (N, 32 * width) added to the attention pool's token 0 (not used
                by any reference model; see the module docstring).
            return_penultimate: also return the layer3 global average pool.
        """
        x3, x4 = self.feature_maps(x)
        tokens = attention_pool_tokens(self.attnpool, x4, cls_embed)
        penultimate = x3.mean(dim=(2, 3)) if return_penultimate else None
        return VisualFeatures(tokens, tokens, x4.mean(dim=(2, 3)), penultimate)

    def forward(
        self,
        x: torch.Tensor,
        cls_embed: torch.Tensor | None = None,
        project: bool = True,
    ) -> Union[Tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``(tokens, tokens_proj)`` like the ViT backbone (here the same (N, L, 1024) tensor);
        only ``tokens`` when ``project=False``."""
        tokens = self.features(x, cls_embed).tokens
        return (tokens, tokens) if project else tokens

    @property
    def architecture(self) -> str:
        """One line naming the ResNet's sizes."""
        return (f"ModifiedResNet: layers {list(self.layers)}, width {self.width}, output_dim "
                f"{self.output_dim}, grid {self.grid_size}")


# ---------------------------------------------------------------------------- complexity

_STEM = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3")
_STAGES = ("layer1", "layer2", "layer3", "layer4")


def rn50_complexity(**kwargs: Any) -> Dict[str, Dict[str, int]]:
    """Parameters per component and MACs per frame of a :class:`CLIPResNetBackbone`.

    The backbone (``kwargs`` as its constructor; default RN50 at 256x128, last stride 1) is built
    on the ``meta`` device and run once under ``torch.utils.flop_counter.FlopCounterMode``:
    MACs = counted FLOPs / 2 of the convolutions and of the attention pool (q/k/v/c projections
    of all tokens and the two attention matmuls); BatchNorm, ReLU, pooling and softmax are not
    counted (the usual convention).

    Returns:
        ``{"params": {stem, layer1..layer4, attnpool, attnpool_positional, total},
        "macs": {stem, layer1..layer4, attnpool, total}}``; ``attnpool`` includes its
        positional table, listed again on its own as ``attnpool_positional``.

    Example:
        >>> r = rn50_complexity()
        >>> r["params"]["total"], r["params"]["attnpool_positional"]
        (38478688, 264192)
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = CLIPResNetBackbone(**kwargs)
    params = {"stem": sum(p.numel() for n, p in model.named_parameters()
                          if n.split(".")[0] in _STEM)}
    for stage in _STAGES + ("attnpool",):
        params[stage] = sum(p.numel() for p in getattr(model, stage).parameters())
    params["attnpool_positional"] = model.attnpool.positional_embedding.numel()
    params["total"] = sum(p.numel() for p in model.parameters())

    x = torch.empty(1, 3, *model.image_size, device="meta")
    steps = [("stem", model.stem)] + [(stage, getattr(model, stage)) for stage in _STAGES]
    steps.append(("attnpool", lambda t: attention_pool_tokens(model.attnpool, t)))
    macs: Dict[str, int] = {}
    for name, step in steps:
        with FlopCounterMode(display=False) as counter:
            x = step(x)
        macs[name] = counter.get_total_flops() // 2
    macs["total"] = sum(macs.values())
    return {"params": params, "macs": macs}
