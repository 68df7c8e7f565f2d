"""LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021) on the CLIP ViT,
through Hugging Face's ``peft`` library.

A frozen weight W0 (d_out x d_in) takes a trainable low-rank update (Hu et al. Eq. 3):
``h = W0 x + (alpha / r) B A x`` with A (r x d_in) random (peft: Kaiming-uniform) and B
(d_out x r) zero, so the model starts equal to its base. Options: ``lora_rank`` r,
``lora_alpha``, ``lora_dropout``, ``lora_modules`` and ``peft_layers`` (which blocks).

Where in open_clip's blocks, and why (measured; ``docs/peft.md``):

* ``mlp``: ``mlp.c_fc`` and ``mlp.c_proj`` are ``nn.Linear``: peft's ``lora.Linear``.
* ``qkv``: the blocks use ``nn.MultiheadAttention``, whose q, k and v projections are one fused
  parameter, ``in_proj_weight`` (3 width x width), read by ``F.multi_head_attention_forward``
  rather than through a Linear. peft's ``target_parameters`` adapts that parameter
  (``lora.ParamWrapper``: W0 + (alpha / r) B A as a parametrization during the forward): one
  rank-r update of the fused q, k, v (Hu et al. adapt W_q and W_v, each of rank r).
* the attention's ``out_proj`` is not adapted. ``nn.MultiheadAttention`` never calls
  ``out_proj.forward`` (it reads the weight), so a ``lora.Linear`` there would be ignored, and
  peft's ``lora.MultiheadAttention`` (which adapts in_proj and out_proj) adds the update to the
  frozen weights before every forward and subtracts it afterwards: ``(W0 + dW) - dW`` rounds,
  and the frozen weights drifted by 4e-8 in 10 steps. A base that changes is not frozen, and a
  checkpoint that refers to its base would not resume exactly.
* peft refuses dropout for ``lora.ParamWrapper``: ``lora_dropout`` applies to the mlp updates.

State-dict names: peft moves the weights of a module it wraps under ``base_layer``
(``mlp.c_fc.base_layer.weight``); hooks give them their own names back (``mlp.c_fc.weight``), so
CLIP weights, full checkpoints and the identity bank's cache key see the base as without LoRA.
The updates are ``<module>.lora_A.default.weight`` and ``<module>.lora_B.default.weight``.
:func:`merge_lora` folds ``(alpha / r) B A`` into W0 (peft's ``merge``) and puts the plain modules
back: the result is the plain ViT with other weights.

Example:
    >>> from tfclip_torchreid.models.backbone import CLIPVisualBackbone
    >>> vit = CLIPVisualBackbone(image_size=(32, 32), width=16, layers=2, heads=2, output_dim=8)
    >>> vit = add_lora(vit, rank=2, alpha=2.0, modules=("qkv", "mlp"))
    >>> sorted(k.split(".", 3)[3] for k in vit.state_dict()
    ...        if k.startswith("transformer.resblocks.0.") and ("attn" in k or "c_fc" in k))
    ... # doctest: +NORMALIZE_WHITESPACE
    ['attn.in_proj_bias', 'attn.in_proj_weight', 'attn.lora_A.default.weight',
     'attn.lora_B.default.weight', 'attn.out_proj.bias', 'attn.out_proj.weight', 'mlp.c_fc.bias',
     'mlp.c_fc.lora_A.default.weight', 'mlp.c_fc.lora_B.default.weight', 'mlp.c_fc.weight']
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import torch.nn as nn

__all__ = ["add_lora", "merge_lora", "lora_layers", "lora_disabled", "require_peft",
           "PEFT_INSTALL", "LORA_PARTS"]

#: how to get Hugging Face's peft (named in the error when it is missing)
PEFT_INSTALL = 'pip install "tfclip-torchreid[peft]"'
#: the names peft gives the update's modules (``<module>.lora_A.default.weight``)
LORA_PARTS = ("lora_A", "lora_B")
_BASE = "base_layer."


def require_peft() -> Any:
    """Hugging Face's ``peft`` module, or an ImportError that says how to install it."""
    try:
        import peft
    except ImportError as err:
        raise ImportError(
            f"model.peft lora uses Hugging Face's peft library, which is not installed: "
            f"{PEFT_INSTALL} (or pip install peft)") from err
    return peft


def _targets(vit: nn.Module, modules: Sequence[str], layers: Sequence[int]
             ) -> Tuple[List[str], List[str]]:
    """(Linear modules, parameters) to adapt, as full names inside ``vit.transformer``."""
    blocks = list(layers) or range(len(vit.transformer.resblocks))
    linear = [f"resblocks.{i}.mlp.{n}" for i in blocks for n in ("c_fc", "c_proj")
              if "mlp" in modules]
    params = [f"resblocks.{i}.attn.in_proj_weight" for i in blocks if "qkv" in modules]
    return linear, params


def _own_names(module: nn.Module, state: Dict[str, Any], prefix: str, *_: Any) -> None:
    """state_dict hook: ``<prefix>base_layer.X`` -> ``<prefix>X`` (the module's own names)."""
    for key in [k for k in state if k.startswith(prefix + _BASE)]:
        state[prefix + key[len(prefix) + len(_BASE):]] = state.pop(key)


def _peft_names(module: nn.Module, state: Dict[str, Any], prefix: str, *_: Any) -> None:
    """load_state_dict pre-hook: the inverse of :func:`_own_names`."""
    own = {n for n in LORA_PARTS}
    for key in [k for k in state if k.startswith(prefix)]:
        first = key[len(prefix):].split(".", 1)[0]
        if first + "." != _BASE and first not in own:
            state[prefix + _BASE + key[len(prefix):]] = state.pop(key)


def lora_layers(module: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(name, layer)`` of every peft LoRA layer inside ``module`` (outermost first); [] when
    peft was never imported (then there are none)."""
    import sys

    tuners = sys.modules.get("peft.tuners.tuners_utils")
    if tuners is None:
        return []
    return [(n, m) for n, m in module.named_modules() if isinstance(m, tuners.BaseTunerLayer)]


def add_lora(vit: nn.Module, rank: int = 8, alpha: float = 8.0, dropout: float = 0.0,
             modules: Sequence[str] = ("qkv", "mlp"), layers: Sequence[int] = ()) -> nn.Module:
    """Inject LoRA into the blocks of a CLIP ViT (``vit.transformer.resblocks``) in place.

    Args:
        vit: a :class:`~tfclip_torchreid.models.backbone.CLIPVisualBackbone`.
        rank, alpha: r and alpha (the update is scaled by alpha / r).
        dropout: dropout on the input of the ``mlp`` updates.
        modules: ``"qkv"`` and / or ``"mlp"`` (see the module notes).
        layers: the blocks (0-based); empty: every block.

    Returns:
        ``vit``, whose LoRA parameters are the only ones that require a gradient inside
        ``vit.transformer`` (the caller freezes the rest of the tower).
    """
    peft = require_peft()
    linear, params = _targets(vit, modules, layers)
    common = dict(r=int(rank), lora_alpha=float(alpha), bias="none")
    configs = []
    if params:  # lora.ParamWrapper takes no dropout: a config of its own
        configs.append(peft.LoraConfig(target_modules=[], target_parameters=params, **common))
    if linear:
        configs.append(peft.LoraConfig(target_modules=linear, lora_dropout=float(dropout),
                                       **common))
    blocks = vit.transformer
    for config in configs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # peft's notes on custom (non-transformers) models
            peft.inject_adapter_in_model(config, blocks, adapter_name="default")
        blocks.__dict__.pop("peft_config", None)  # peft's bookkeeping, not part of the model
    for _, layer in lora_layers(blocks):
        layer.register_state_dict_post_hook(_own_names)
        layer.register_load_state_dict_pre_hook(_peft_names)
    return vit


@contextlib.contextmanager
def lora_disabled(module: nn.Module) -> Iterator[None]:
    """Run ``module`` as its base: every LoRA update off inside the block (peft's
    ``enable_adapters``), back on afterwards."""
    layers = [m for _, m in lora_layers(module) if not m.disable_adapters]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)


def merge_lora(module: nn.Module) -> int:
    """Fold every LoRA update of ``module`` into its base weight (peft's ``merge``, which checks
    for non-finite results) and put the plain modules back; returns how many were merged."""
    merged = 0
    for name, layer in lora_layers(module):
        if not name or not hasattr(layer, "get_base_layer"):
            continue
        parent, _, child = name.rpartition(".")
        if not isinstance(getattr(module.get_submodule(parent) if parent else module, child),
                          type(layer)):
            continue  # inside a layer merged already
        layer.merge(safe_merge=True)
        base = layer.get_base_layer()
        for param in base.parameters(recurse=False):
            param.requires_grad_(False)
        setattr(module.get_submodule(parent) if parent else module, child, base)
        merged += 1
    return merged
