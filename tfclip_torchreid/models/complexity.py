"""Parameter counts and analytic MACs of TF-CLIP and CLIP-ReID (paper Table 2, supplement 3-6).

Models are built on the ``meta`` device (no weights, no memory, no time). torchreid's
``compute_model_complexity`` undercounts ViTs (it misses the attention products and the
projections inside ``nn.MultiheadAttention``), hence this module.

**The counting convention** (one for every row of every table; ``docs/complexity.md`` derives it
from the reported numbers). ``count_parameters(model)["paper_convention"]`` counts every
parameter of the model (trainable or frozen) except

* the SIE camera table (``sie``),
* the BN necks and classifiers of the TMD feature (``heads_temporal`` of a ``temporal="tmd"``
  model; the heads of the alternative fusions of supplement Table 5 *are* counted),

so it is: visual encoder + ID heads of the CLS features + SSP + the temporal module (+ the heads of
a fusion baseline) and, for CLIP-ReID's text bank, the text tower **without its token-embedding
table** (``text``; CLIP-ReID keeps the embedded prompt prefix/suffix as buffers, the table is
not a parameter) plus the per-identity prompts (``prompts`` = Y x 4 x 512 context vectors).
Buffers (the identity bank, the prompt prefix/suffix) are never parameters. The paper's ablation
SSP is the cross-attention + MLP form (``ssp_form="paper"``, 3,150,848 parameters per layer);
the released one (4,200,960 per layer) does not fit its tables.

The paper's "FLOPs" are multiply-accumulates (MACs). ``macs["paper_convention"]`` is, per
256x128 frame: the ViT blocks (11.26 G for ViT-B/16; the patch conv and the projection of all
tokens, +0.13 G, are reported apart and not included) + the text transformer on one 77-token
prompt for a text bank (2.98 G) + TMD per frame + the per-clip modules (SSP, the fusions of
supplement Table 5) divided by the T frames of a clip. The 11.26 G and 14.24 G (= 11.26 + 2.98)
of the paper are reproduced exactly; its SSP and TMD FLOPs (+0.42 G per SSP layer, +0.46 G for
TMD) are not reproduced by this or any consistent convention we found (an MD block alone costs
0.95 G per frame), so those rows differ.

Example:
    >>> r = model_complexity("tfclip_vitb16", num_classes=625, camera_num=6)
    >>> r["params"]["backbone"], round(r["macs"]["backbone_blocks"] / 1e9, 2)
    (86140416, 11.26)
    >>> b1 = model_complexity("clipreid_vitb16", num_classes=625, camera_num=6)
    >>> b1["params"]["text"], b1["params"]["prompts"], round(b1["macs"]["paper_convention"] / 1e9, 2)
    (38131200, 1280000, 14.24)
"""

from __future__ import annotations

from typing import Any, Dict

import torch
import torch.nn as nn

from .backbone import grid_size_for
from .backbone_rn50 import resnet_grid_size, rn50_complexity
from .config import TFCLIPConfig
from .factory import build_tfclip
from .tfclip import TFCLIP

__all__ = ["count_parameters", "vit_block_macs", "text_macs", "backbone_macs", "tmd_macs", "ssp_macs",
           "fusion_macs", "model_complexity", "PARAM_KEYS"]

_CLS_HEADS = ("bottleneck.", "classifier2.", "bottleneck_proj.", "classifier_proj.")

#: keys of :func:`count_parameters`, in print order
PARAM_KEYS = ("backbone", "sie", "ssp", "temporal", "heads_cls", "heads_temporal", "text",
              "prompts", "total", "paper_convention")


def _numel(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def count_parameters(model: TFCLIP) -> Dict[str, int]:
    """Parameters per component of a :class:`TFCLIP` (frozen ones included, as the paper).

    Keys (:data:`PARAM_KEYS`): ``backbone`` (visual encoder), ``sie`` (camera table), ``ssp``,
    ``temporal`` (TMD or a fusion module), ``heads_cls`` (BN + classifier of the CLS and the
    projected CLS), ``heads_temporal`` (heads of the temporal feature, incl. TMD's unused
    ``classifier_proj_temp2``), ``text`` (CLIP-ReID's text tower: it has no token table),
    ``prompts`` (CLIP-ReID's per-identity context vectors), ``total`` (every parameter), and
    ``paper_convention`` = total without SIE and without the TMD heads (the module docstring).

    Example:
        >>> import torch
        >>> with torch.device("meta"):
        ...     m = build_tfclip("clipreid_vitb16", num_classes=625, camera_num=6)
        >>> p = count_parameters(m)
        >>> p["paper_convention"], p["prompts"]
        (126354176, 1280000)
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
        "text": _numel(getattr(model, "text_encoder", None)),
        "prompts": _numel(getattr(model, "prompt_learner", None)),
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


def text_macs(context_length: int = 77, width: int = 512, layers: int = 12,
              mlp_ratio: float = 4.0) -> int:
    """MACs of the text transformer blocks on one prompt (the paper's ViT-block convention).

    Linear layers and attention matmuls of every token position (the causal mask does not
    reduce the count, as for a dense implementation); LayerNorms, softmax, the positional
    addition and the EOT projection are not counted.

    Example:
        >>> round(text_macs(77, 512, 12) / 1e9, 2)
        2.98
    """
    return vit_block_macs(context_length, width, layers, mlp_ratio)


def backbone_macs(model_or_cfg: Any) -> Dict[str, int]:
    """MACs of the visual encoder for one frame: blocks, stem, all-token projection, total.

    ViT: ``backbone_blocks`` = the transformer blocks (the paper's "FLOPs"), ``backbone_stem`` =
    the patch conv, ``backbone_proj_all_tokens`` = ``proj`` of every token. ResNet (measured by
    :func:`~.backbone_rn50.rn50_complexity`): blocks = the four stages + the attention pool of all
    tokens, stem = the 3-conv stem, no separate projection.

    Example:
        >>> m = backbone_macs(TFCLIPConfig(num_classes=1))
        >>> m["tokens"], round(m["backbone_total"] / 1e9, 2)
        (129, 11.39)
    """
    cfg: TFCLIPConfig = getattr(model_or_cfg, "cfg", model_or_cfg)
    if cfg.backbone == "resnet":
        return _resnet_macs(cfg)
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


def _resnet_macs(cfg: TFCLIPConfig) -> Dict[str, int]:
    gh, gw = resnet_grid_size(cfg.image_size, cfg.last_stride)
    macs = rn50_complexity(image_size=cfg.image_size, layers=tuple(cfg.resnet_layers),
                           width=cfg.width, heads=cfg.heads, output_dim=cfg.embed_dim,
                           last_stride=cfg.last_stride)["macs"]
    return {
        "tokens": gh * gw + 1,
        "backbone_blocks": macs["total"] - macs["stem"],
        "backbone_stem": macs["stem"],
        "backbone_proj_all_tokens": 0,
        "backbone_total": macs["total"],
    }


def tmd_macs(num_tokens: int, width: int, num_frames: int, diffusion: bool = True) -> int:
    """MACs of TMD per frame: TMC (message fc + attention across T) + MD (one block on L+1).

    ``diffusion=False`` is TMC alone (supplement Table 3, A2/A5).

    Example:
        >>> round(tmd_macs(129, 768, 8) / 1e9, 3), round(tmd_macs(129, 768, 8, False) / 1e9, 3)
        (0.949, 0.003)
    """
    t, d = num_frames, width
    tmc_per_clip = t * d * d + 4 * t * d * d + 2 * t * t * d
    md = vit_block_macs(num_tokens + 1, d, 1) if diffusion else 0
    return tmc_per_clip // t + md


def ssp_macs(num_classes: int, num_visual: int, dim: int, layers: int,
             form: str = "released") -> int:
    """MACs of SSP for one sequence as the authors compute it (memory broadcast per sample).

    Our implementation shares ``text_proj`` and the first self-attention across the batch, so
    its per-sequence cost is lower by about ``(Y D^2 + 4 Y D^2 + 2 Y^2 D) (1 - 1/B)``.

    Example:
        >>> round(ssp_macs(625, 129, 512, 2, "paper") / 1e9, 2)
        3.94
    """
    y, n, d = num_classes, num_visual, dim
    cross = 2 * y * d * d + 2 * n * d * d + 2 * y * n * d
    mlp = 8 * y * d * d
    self_attn = 4 * y * d * d + 2 * y * y * d if form == "released" else 0
    return y * d * d + n * d * d + layers * (self_attn + cross + mlp) + y * d * d


def fusion_macs(name: str, dim: int, num_frames: int, layers: int = 6) -> int:
    """MACs per clip of a temporal fusion of supplement Table 5 on T frame features of width d.

    ``conv1d``: depthwise kernel 3 (``3 T d``); ``transf``: ``layers`` blocks on T tokens;
    ``transf_cls``: ``layers`` blocks on T + 1 tokens (the CLS token); ``tap``/``tmd``: 0 here
    (TMD: :func:`tmd_macs`).

    Example:
        >>> round(fusion_macs("transf", 512, 8) / 1e9, 3)
        0.151
    """
    if name == "conv1d":
        return 3 * num_frames * dim
    if name == "transf":
        return vit_block_macs(num_frames, dim, layers)
    if name == "transf_cls":
        return vit_block_macs(num_frames + 1, dim, layers)
    return 0


def model_complexity(arch: str = "tfclip_vitb16", num_classes: int = 625, camera_num: int = 6,
                     num_frames: int = 8, **switches: Any) -> Dict[str, Any]:
    """Parameters and MACs of a TF-CLIP / CLIP-ReID configuration, built on the meta device.

    Returns ``{"arch", "num_classes", "camera_num", "num_frames", "switches", "params", "macs"}``:
    ``params`` = :func:`count_parameters`; ``macs`` = :func:`backbone_macs` per frame plus
    ``tmd_per_frame``, ``fusion_per_clip``, ``ssp_per_sequence``, ``text_per_prompt`` (0 when
    the module is absent) and ``paper_convention`` (per frame, the module docstring's sum).

    Example:
        >>> r = model_complexity("tfclip_vitb16", temporal="tap", use_ssp=False)
        >>> r["params"]["paper_convention"], round(r["macs"]["paper_convention"] / 1e9, 2)
        (86942976, 11.26)
    """
    with torch.device("meta"):
        model = build_tfclip(arch, num_classes=num_classes, camera_num=camera_num,
                             pretrained=None, **switches)
    cfg = model.cfg
    macs: Dict[str, int] = dict(backbone_macs(model))
    macs["tmd_per_frame"] = (tmd_macs(macs["tokens"], model.token_dim, num_frames,
                                      cfg.tmd_diffusion) if cfg.temporal == "tmd" else 0)
    macs["fusion_per_clip"] = fusion_macs(cfg.temporal, model.embed_dim, num_frames,
                                          cfg.temporal_layers)
    macs["ssp_per_sequence"] = (
        ssp_macs(num_classes, macs["tokens"], model.embed_dim, cfg.ssp_layers, cfg.ssp_form)
        if model.ssp is not None else 0
    )
    macs["text_per_prompt"] = 0
    if model.uses_text:
        macs["text_per_prompt"] = text_macs(cfg.context_length, cfg.text_width, cfg.text_layers)
    macs["paper_convention"] = (
        macs["backbone_blocks"] + macs["text_per_prompt"] + macs["tmd_per_frame"]
        + (macs["ssp_per_sequence"] + macs["fusion_per_clip"]) // num_frames)
    return {
        "arch": arch,
        "num_classes": num_classes,
        "camera_num": camera_num,
        "num_frames": num_frames,
        "switches": {k: getattr(cfg, k) for k in (
            "stride", "image_size", "use_sie", "use_memory", "memory_source", "use_ssp",
            "ssp_form", "ssp_layers", "temporal", "tmd_diffusion")},
        "params": count_parameters(model),
        "macs": macs,
    }
