"""Parameter counts and analytic MACs of TF-CLIP (paper Table 2, supplement Tables 3-6).

The paper's "FLOPs" are multiply-accumulates of the 12 ViT blocks for one 256x128 frame
(11.26 G for ViT-B/16, spec 11.3); the patch conv and the all-token projection (+0.13 G) were
not counted. Its parameter counts are the visual encoder plus the classifier heads; for TMD
the BN/classifier heads were **not** counted (spec 11.2), SIE was not counted, and the paper's
SSP is the cross-attention-only form (``ssp_form="paper"``). torchreid's
``compute_model_complexity`` undercounts ViTs (no attention matmuls, no ``nn.MultiheadAttention``
projections), hence this module. Models are built on the ``meta`` device: no memory, no time.

Example:
    >>> r = model_complexity("tfclip_vitb16", num_classes=625, camera_num=6)
    >>> r["params"]["backbone"], round(r["macs"]["backbone_blocks"] / 1e9, 2)
    (86140416, 11.26)
"""

from __future__ import annotations

from typing import Any, Dict

import torch
import torch.nn as nn

from .backbone import grid_size_for
from .factory import build_tfclip
from .tfclip import TFCLIP

__all__ = ["count_parameters", "vit_block_macs", "backbone_macs", "tmd_macs", "ssp_macs",
           "model_complexity"]

_CLS_HEADS = ("bottleneck.", "classifier2.", "bottleneck_proj.", "classifier_proj.")


def _numel(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def count_parameters(model: TFCLIP) -> Dict[str, int]:
    """Parameters per component of a :class:`TFCLIP` (frozen ones included, as the paper).

    Keys: ``backbone``, ``sie``, ``ssp``, ``temporal``, ``heads_cls`` (BN + classifier of the
    CLS and projected CLS), ``heads_temporal`` (heads of the temporal feature, incl. the unused
    ``classifier_proj_temp2``), ``total``, and ``paper_convention`` = total without SIE and
    without the TMD heads (how the paper counted, spec 11.2).
    """
    heads_cls = heads_temporal = 0
    for name, p in model.named_parameters():
        if name.startswith(("bottleneck", "classifier")):
            if name.startswith(_CLS_HEADS):
                heads_cls += p.numel()
            else:
                heads_temporal += p.numel()
    sie = 0 if model.cv_embed is None else model.cv_embed.numel()
    total = _numel(model)
    out = {
        "backbone": _numel(model.backbone),
        "sie": sie,
        "ssp": _numel(model.ssp),
        "temporal": _numel(model.temporal),
        "heads_cls": heads_cls,
        "heads_temporal": heads_temporal,
        "total": total,
    }
    tmd_heads = heads_temporal if model.cfg.temporal == "tmd" else 0
    out["paper_convention"] = total - sie - tmd_heads
    return out


def vit_block_macs(num_tokens: int, width: int, layers: int, mlp_ratio: float = 4.0) -> int:
    """MACs of ``layers`` pre-LN transformer blocks on ``num_tokens`` tokens (one sequence).

    Per block: q/k/v/out projections ``4 L D^2``, MLP ``2 L D (r D)``, attention matmuls
    ``2 L^2 D`` (QK^T and AV). LayerNorms/softmax/activations are not counted.

    Example:
        >>> round(vit_block_macs(129, 768, 12) / 1e9, 2)
        11.26
    """
    n, d = num_tokens, width
    hidden = int(d * mlp_ratio)
    per_block = 4 * n * d * d + 2 * n * d * hidden + 2 * n * n * d
    return layers * per_block


def backbone_macs(model_or_cfg: Any) -> Dict[str, int]:
    """MACs of the visual encoder for one frame: blocks, stem (patch conv), all-token proj."""
    cfg = getattr(model_or_cfg, "cfg", model_or_cfg)
    gh, gw = grid_size_for(cfg.image_size, cfg.patch_size, cfg.stride)
    tokens = gh * gw + 1
    blocks = vit_block_macs(tokens, cfg.width, cfg.layers, cfg.mlp_ratio)
    stem = gh * gw * cfg.width * 3 * cfg.patch_size * cfg.patch_size
    proj = tokens * cfg.width * cfg.embed_dim
    return {
        "tokens": tokens,
        "backbone_blocks": blocks,
        "backbone_stem": stem,
        "backbone_proj_all_tokens": proj,
        "backbone_total": blocks + stem + proj,
    }


def tmd_macs(num_tokens: int, width: int, num_frames: int) -> int:
    """MACs of TMD per frame: TMC (message fc + attention across T) + MD (one block on L+1)."""
    t, d = num_frames, width
    tmc_per_clip = t * d * d + 4 * t * d * d + 2 * t * t * d
    md = vit_block_macs(num_tokens + 1, d, 1)
    return tmc_per_clip // t + md


def ssp_macs(num_classes: int, num_visual: int, dim: int, layers: int,
             form: str = "released") -> int:
    """MACs of SSP for one sequence as the authors compute it (memory broadcast per sample).

    Our implementation shares ``text_proj`` and the first self-attention across the batch, so
    its per-sequence cost is lower by about ``(Y D^2 + 4 Y D^2 + 2 Y^2 D) (1 - 1/B)``.
    """
    y, n, d = num_classes, num_visual, dim
    cross = 2 * y * d * d + 2 * n * d * d + 2 * y * n * d
    mlp = 8 * y * d * d
    self_attn = 4 * y * d * d + 2 * y * y * d if form == "released" else 0
    return y * d * d + n * d * d + layers * (self_attn + cross + mlp) + y * d * d


def model_complexity(arch: str = "tfclip_vitb16", num_classes: int = 625, camera_num: int = 6,
                     num_frames: int = 8, **switches: Any) -> Dict[str, Any]:
    """Parameters and MACs of a TF-CLIP configuration, built on the meta device.

    Returns ``{"arch", "switches", "params": count_parameters(...), "macs": {...}}`` where macs
    has the per-frame backbone numbers (see :func:`backbone_macs`), ``tmd_per_frame`` and
    ``ssp_per_sequence`` (0 when absent).
    """
    with torch.device("meta"):
        model = build_tfclip(arch, num_classes=num_classes, camera_num=camera_num,
                             pretrained=None, **switches)
    macs: Dict[str, int] = dict(backbone_macs(model))
    cfg = model.cfg
    macs["tmd_per_frame"] = (
        tmd_macs(macs["tokens"], cfg.width, num_frames) if cfg.temporal == "tmd" else 0
    )
    macs["ssp_per_sequence"] = (
        ssp_macs(num_classes, macs["tokens"], cfg.embed_dim, cfg.ssp_layers, cfg.ssp_form)
        if model.ssp is not None else 0
    )
    return {
        "arch": arch,
        "num_classes": num_classes,
        "camera_num": camera_num,
        "switches": {k: getattr(cfg, k) for k in (
            "stride", "image_size", "use_sie", "use_memory", "use_ssp", "ssp_form", "ssp_layers",
            "temporal")},
        "params": count_parameters(model),
        "macs": macs,
    }
