"""Parameter-efficient TF-CLIP: the supplement's future work (LoRA, visual prompts, adapters).

The supplement's "Limitations" paragraph names "the huge parameters and computational
complexities, since we fine-tuned the pre-trained CLIP visual encoder ViT-B/16" and leaves prompt
tuning and adapters to future work. ``model.peft`` (:class:`~..config.TFCLIPConfig`) picks how
the CLIP ViT is tuned:

* ``none`` (default): the paper's full fine-tuning; the model is exactly as without this package;
* ``lora``: LoRA (Hu et al. 2021) through Hugging Face's ``peft`` (:mod:`.lora`);
* ``prompt``: visual prompt tuning, VPT (Jia et al. 2022; :mod:`.prompt`);
* ``adapter``: bottleneck adapters (Houlsby et al. 2019) in AdaptFormer's parallel form (Chen et
  al. 2022; :mod:`.adapter`).

Every mode but ``none`` freezes the CLIP ViT and trains what the method adds; TF-CLIP's own parts
train as before: the SIE camera embedding, CLIP-Memory's SSP, TMD, the BN-necks and the
classifiers (CLIP-ReID's text tower is frozen in every mode). ``docs/peft.md`` has the choices
and the measurements.

The base. The frozen tensors of the towers (:func:`base_state_dict`: ``backbone.*`` and
``text_encoder.*`` without what the method adds, under the names they have without it) are the
model's *base*: CLIP's weights, or a trained checkpoint's when training starts from one. A
checkpoint of a PEFT model (:func:`checkpoint_entries`) holds what trains and a reference to its
base (``"base": {"kind", "source", "sha256", ...}``, :func:`base_entry`), and
:mod:`~tfclip_torchreid.models.weights` rebuilds the model from the file alone: the base from
the reference (its sha256 checked), then the rest from the file. A base that cannot be named
(a random initialisation) is kept in the file (``kind`` ``"stored"``).

CLIP-Memory and CLIP-ReID's first stage read the *pretrained* encoder: :func:`base_only` runs the
model without what the method adds, so the identity bank and its cache key are those of
``peft none`` on the same base. :func:`merge_peft` folds LoRA into the weights (for export: the
result is the plain model); prompts and adapters stay modules.

Example:
    >>> from tfclip_torchreid.models import build_tfclip
    >>> model = build_tfclip("tfclip_tiny", num_classes=4, camera_num=2, peft="adapter")
    >>> any(p.requires_grad for n, p in model.named_parameters() if n == "backbone.proj")
    False
    >>> sorted({n.split(".")[-3] for n, p in model.backbone.named_parameters() if p.requires_grad})
    ['adapter']
    >>> base_entry(model)["kind"]  # random initialisation: the file keeps the base
    'stored'
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from typing import Any, Dict, Iterator, List, Mapping

import torch
import torch.nn as nn

from .adapter import AdaptedMLP, Adapter
from .lora import LORA_PARTS, PEFT_INSTALL, add_lora, lora_disabled, merge_lora, require_peft
from .prompt import VisualPrompt

__all__ = ["apply_peft", "freeze_base", "is_peft_key", "base_keys", "base_state_dict",
           "base_digest", "base_entry", "set_base", "describe_base", "base_only", "merge_peft",
           "checkpoint_entries", "peft_summary", "PEFT_PARTS", "BASE_PREFIXES", "BASE_KINDS",
           "PEFT_INSTALL", "require_peft", "VisualPrompt", "Adapter", "AdaptedMLP"]

#: dotted name components of what the methods add (peft's ``lora_A`` / ``lora_B``; the ViT's
#: ``prompt``; each block's ``mlp.adapter``)
PEFT_PARTS = (*LORA_PARTS, "prompt", "adapter")
#: where the frozen base lives in a TF-CLIP state dict
BASE_PREFIXES = ("backbone.", "text_encoder.")
#: a base entry's ``kind``: CLIP weights (``openai`` or a file), a trained checkpoint (a file
#: or ``zoo:NAME``), or ``stored`` in the checkpoint itself
BASE_KINDS = ("clip", "weights", "stored")


def is_peft_key(key: str) -> bool:
    """Whether a parameter / state-dict name belongs to what a PEFT method adds.

    Example:
        >>> is_peft_key("backbone.transformer.resblocks.0.mlp.c_fc.lora_A.default.weight")
        True
        >>> is_peft_key("backbone.prompt.tokens"), is_peft_key("prompt_learner.cls_ctx")
        (True, False)
    """
    return any(part in PEFT_PARTS for part in key.split("."))


def _blocks(vit: nn.Module, layers: Any) -> List[int]:
    return list(layers) or list(range(len(vit.transformer.resblocks)))


def _add_adapters(vit: nn.Module, width: int, scale: float, layers: Any) -> None:
    for i in _blocks(vit, layers):
        block = vit.transformer.resblocks[i]
        block.mlp = AdaptedMLP(block.mlp, Adapter(vit.width, width), scale)


def apply_peft(model: nn.Module) -> None:
    """Add ``model.cfg.peft``'s modules to a TF-CLIP model's ViT and freeze its base
    (:func:`freeze_base`); nothing for ``none``."""
    cfg = model.cfg
    if cfg.peft == "none":
        return
    vit = model.backbone
    if cfg.peft == "lora":
        add_lora(vit, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_modules,
                 cfg.peft_layers)
    elif cfg.peft == "prompt":
        vit.prompt = VisualPrompt(vit.width, cfg.prompt_tokens, len(vit.transformer.resblocks),
                                  cfg.prompt_depth, cfg.patch_size)
    elif cfg.peft == "adapter":
        _add_adapters(vit, cfg.adapter_width, cfg.adapter_scale, cfg.peft_layers)
    freeze_base(model)


def freeze_base(model: nn.Module) -> None:
    """No gradient for the towers' own parameters: under :data:`BASE_PREFIXES`, only what a
    method adds trains."""
    for name, param in model.named_parameters():
        if name.startswith(BASE_PREFIXES):
            param.requires_grad_(is_peft_key(name))


def base_keys(model: nn.Module) -> List[str]:
    """The state-dict names of the model's base (see the module notes)."""
    return [k for k in model.state_dict() if k.startswith(BASE_PREFIXES) and not is_peft_key(k)]


def base_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The base's tensors, under the names they have without PEFT."""
    return {k: v for k, v in model.state_dict().items()
            if k.startswith(BASE_PREFIXES) and not is_peft_key(k)}


def base_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 (hex) of tensors: every name, dtype, shape and the bytes, in name order.

    Example:
        >>> base_digest({"w": torch.zeros(2)}) == base_digest({"w": torch.zeros(2)})
        True
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def set_base(model: nn.Module, kind: str, source: str = "", **details: Any) -> None:
    """Record where the model's base comes from (``model.peft_base``; see :func:`base_entry`);
    the sha256 of its tensors is computed when a checkpoint needs it."""
    if kind not in BASE_KINDS:
        raise ValueError(f"base kind must be one of {BASE_KINDS}, got {kind!r}")
    model.peft_base = {"kind": kind, "source": str(source), **details}


def base_entry(model: nn.Module) -> Dict[str, Any]:
    """The checkpoint's ``base`` entry of a PEFT model: ``kind`` (:data:`BASE_KINDS`),
    ``source`` (``openai``, a file, ``zoo:NAME``; ``""`` when stored), for ``openai`` the
    ``openai_model``, and ``sha256`` (:func:`base_digest` of :func:`base_state_dict`)."""
    entry = dict(getattr(model, "peft_base", None) or {"kind": "stored", "source": ""})
    if "sha256" not in entry:
        entry["sha256"] = base_digest(base_state_dict(model))
        if getattr(model, "peft_base", None) is not None:
            model.peft_base["sha256"] = entry["sha256"]  # the base is frozen: computed once
    return entry


def describe_base(entry: Mapping[str, Any]) -> str:
    """A base entry in words (for messages).

    Example:
        >>> describe_base({"kind": "clip", "source": "openai", "openai_model": "ViT-B-16"})
        "OpenAI's CLIP weights (openai, open_clip model ViT-B-16)"
    """
    kind, source = entry.get("kind"), entry.get("source", "")
    if kind == "clip" and source == "openai":
        return f"OpenAI's CLIP weights (openai, open_clip model {entry.get('openai_model')})"
    if kind == "clip":
        return f"the CLIP weights {source}"
    if kind == "weights":
        return f"the trained weights {source}"
    return "the base stored in the file"


@contextlib.contextmanager
def base_only(model: nn.Module) -> Iterator[None]:
    """Run ``model`` as its base inside the block: LoRA off, prompts and adapters skipped
    (CLIP-Memory and CLIP-ReID's first stage read the pretrained encoder)."""
    added = [m for m in model.modules() if isinstance(m, (VisualPrompt, AdaptedMLP))]
    for module in added:
        module.active = False
    try:
        with lora_disabled(model):
            yield
    finally:
        for module in added:
            module.active = True


def merge_peft(model: nn.Module) -> int:
    """Fold LoRA into the weights (:func:`~.lora.merge_lora`); the model is then the plain one
    (``cfg.peft`` becomes ``none``). Prompts and adapters are modules of their own and stay.
    Returns how many layers were merged."""
    merged = merge_lora(model)
    if merged and getattr(model, "cfg", None) is not None and model.cfg.peft == "lora":
        model.cfg = dataclasses.replace(model.cfg, peft="none")
        model.peft_base = None
    return merged


def checkpoint_entries(model: nn.Module) -> Dict[str, Any]:
    """``{"state_dict": ...}`` of a checkpoint, and for a PEFT model its ``"base"`` entry: the
    state dict then leaves the base out unless it is stored (:func:`base_entry`)."""
    state = model.state_dict()
    if getattr(getattr(model, "cfg", None), "peft", "none") == "none":
        return {"state_dict": state}
    base = base_entry(model)
    if base["kind"] != "stored":
        keys = set(base_keys(model))
        state = type(state)((k, v) for k, v in state.items() if k not in keys)
    return {"state_dict": state, "base": base}


def peft_summary(model: nn.Module) -> Dict[str, int]:
    """Parameter counts: ``total``, ``trainable``, ``added`` (by the method), ``base``."""
    params = dict(model.named_parameters())
    return {"total": sum(p.numel() for p in params.values()),
            "trainable": sum(p.numel() for p in params.values() if p.requires_grad),
            "added": sum(p.numel() for n, p in params.items() if is_peft_key(n)),
            "base": sum(v.numel() for v in base_state_dict(model).values())}
