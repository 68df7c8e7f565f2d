"""The one place that knows other implementations' parameter names: which layout a state dict
is in (:func:`detect_layout`) and how its keys map to ours (:func:`to_our_keys`).

Two layouts share most names: the TF-CLIP authors' model (``docs/released_vs_paper.md``) and
CLIP-ReID's ``build_transformer`` (the official checkpoints of the model zoo, :mod:`.zoo`), which
TF-CLIP's code grew out of. Both map onto :class:`~.tfclip.TFCLIP`:

============================================  ===============================================
authors' key                                   ours
============================================  ===============================================
``image_encoder.<open_clip visual key>``       ``backbone.<same>`` (conv1, class_embedding,
                                               positional_embedding, ln_pre, transformer.
                                               resblocks.i.*, ln_post, proj)
``image_encoder.<OpenAI RN50 visual key>``     ``backbone.<same>`` for the RN50 backbone
                                               (conv1..bn3, layerN.i.{conv,bn}{1,2,3},
                                               layerN.0.downsample.{0,1}, attnpool.*)
``cv_embed``                                   ``cv_embed`` (SIE table)
``SSP.<key>``                                  ``ssp.<same>`` (memory_proj, text_proj,
                                               decoder.i.{norm1,norm2,norm3,self_attn,
                                               cross_attn,mlp}, out_proj, alpha, norm)
``TMD.resblocks.0.message_{fc,ln,attn}.*``     ``temporal.message_{fc,ln,attn}.*``
``TMD.resblocks.0.{ln_1,attn,ln_2,mlp}.*``     ``temporal.diffusion.{ln_1,attn,ln_2,mlp}.*``
``classifier.weight`` (CLIP-ReID's CLS head)     ``classifier2.weight`` (the TF-CLIP authors'
                                               name for the same head; they have no
                                               ``classifier.``)
``prompt_learner.*``, ``text_encoder.*``       unchanged (CLIP-ReID's text bank)
other ``bottleneck*``, ``classifier*``         unchanged
============================================  ===============================================

The authors' RN50 (a CLIP ModifiedResNet with last stride 1) uses OpenAI's RN50 names, which are
also open_clip's ``ModifiedResNet`` names (their ``relu`` and open_clip's ``act1..3`` hold no
parameters; the stride-1 shortcut keeps its parameter-free ``downsample.-1`` pool), so the same
prefix rule maps it onto :class:`~.backbone_rn50.CLIPResNetBackbone`; its 129-row attention-pool
table already fits the 16x8 grid. A leading ``module.`` (DataParallel) is stripped from a key
(state dicts are unwrapped once, by :func:`~tfclip_torchreid.utils.checkpoint.unwrap_state_dict`).
The CLIP-Memory is not part of the authors' state dict (they keep it as a plain tensor), so a
converted checkpoint leaves ``memory`` uninitialised.

Layouts (:data:`LAYOUTS`):

* ``"tfclip"``: ours (``backbone.``, ``temporal.``, ``ssp.``, ``memory.``, ...);
* ``"tfclip_authors"``: the TF-CLIP authors' model (``image_encoder.`` with ``TMD.`` / ``SSP.``,
  or without a text side);
* ``"clipreid"``: CLIP-ReID's ``build_transformer`` (``image_encoder.`` with
  ``prompt_learner.`` / ``text_encoder.``): the model zoo's files;
* ``"clip"``: CLIP weights (OpenAI / open_clip: ``visual.``, or a bare visual tower), which are
  backbone weights, not a ReID model (:meth:`~.tfclip.TFCLIP.load_clip_weights` loads them).

Example:
    >>> import torch
    >>> sd = {"TMD.resblocks.0.attn.in_proj_weight": torch.zeros(1), "image_encoder.proj": torch.zeros(1)}
    >>> sorted(convert_authors_state_dict(sd))
    ['backbone.proj', 'temporal.diffusion.attn.in_proj_weight']
    >>> list(convert_authors_state_dict({"resblocks.0.message_fc.weight": torch.zeros(1)}, prefix="TMD."))
    ['message_fc.weight']
    >>> detect_layout(sd), detect_layout({"backbone.proj": 0}), detect_layout({"fc.weight": 0})
    ('tfclip_authors', 'tfclip', 'unknown')
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

import torch

__all__ = ["convert_authors_state_dict", "convert_authors_key", "detect_layout", "to_our_keys",
           "AUTHORS_PREFIXES", "LAYOUTS"]

#: the key layouts :func:`detect_layout` tells apart (see the module notes)
LAYOUTS = ("tfclip", "tfclip_authors", "clipreid", "clip")

# authors' / CLIP-ReID's submodule prefix -> our submodule prefix
AUTHORS_PREFIXES: Dict[str, str] = {
    "image_encoder.": "backbone.",
    "SSP.": "ssp.",
    "TMD.": "temporal.",
    "classifier.": "classifier2.",
}
_TMD_MESSAGE = ("message_fc.", "message_ln.", "message_attn.")
_TMD_BLOCK = ("ln_1.", "attn.", "ln_2.", "mlp.")


def convert_authors_key(key: str) -> str:
    """Our name for one authors' full-model key (unknown keys are returned unchanged)."""
    if key.startswith("module."):
        key = key[len("module."):]
    if key.startswith("TMD.resblocks."):
        rest = key[len("TMD.resblocks."):]
        index, _, sub = rest.partition(".")
        if index != "0":
            raise ValueError(f"{key}: TF-CLIP's TMD has one block; got block {index}")
        if sub.startswith(_TMD_MESSAGE):
            return "temporal." + sub
        if sub.startswith(_TMD_BLOCK):
            return "temporal.diffusion." + sub
        return "temporal." + sub
    for theirs, ours in AUTHORS_PREFIXES.items():
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    return key


def detect_layout(state: Mapping[str, Any]) -> str:
    """Key layout of an unwrapped state dict: one of :data:`LAYOUTS`, or ``"unknown"``.

    CLIP-ReID's ``build_transformer`` and the TF-CLIP authors' model both keep the CLIP visual
    tower under ``image_encoder.``; CLIP-ReID adds its text side (``prompt_learner.``,
    ``text_encoder.``), the TF-CLIP authors add ``TMD.`` / ``SSP.``. Ours uses ``backbone.``;
    CLIP's own files ``visual.`` (or, visual-only, the tower's keys at the top level).
    """
    keys = list(state)

    def has(*prefixes: str) -> bool:
        return any(k.startswith(prefixes) for k in keys)

    if has("image_encoder."):
        if has("TMD.", "SSP."):
            return "tfclip_authors"
        return "clipreid" if has("prompt_learner.", "text_encoder.") else "tfclip_authors"
    if has("backbone."):
        return "tfclip"
    if has("visual.") or (has("conv1.") and has("class_embedding", "attnpool.")):
        return "clip"
    return "unknown"


def to_our_keys(state: Mapping[str, torch.Tensor], layout: str) -> Dict[str, torch.Tensor]:
    """``state`` (in ``layout``, from :func:`detect_layout`) with our key names.

    Example:
        >>> list(to_our_keys({"image_encoder.proj": torch.zeros(1)}, "clipreid"))
        ['backbone.proj']
    """
    if layout == "tfclip":
        return dict(state)
    if layout in ("tfclip_authors", "clipreid"):
        return convert_authors_state_dict(state)
    raise ValueError(f"no mapping from the {layout!r} layout to ours; known: "
                     f"{', '.join(LAYOUTS[:3])} (CLIP weights load as pretrained weights)")


def convert_authors_state_dict(
    state: Mapping[str, torch.Tensor], prefix: str = ""
) -> Dict[str, torch.Tensor]:
    """Rename an authors' state dict to our names.

    Args:
        state: the authors' ``model.state_dict()`` (full model), or with ``prefix`` the state
            dict of one authors' submodule whose keys lack that prefix (the parity files).
        prefix: ``""`` for a full model; ``"TMD."``, ``"SSP."`` or ``"image_encoder."`` for a
            submodule. The result is then relative to our matching submodule
            (``model.temporal``, ``model.ssp``, ``model.backbone``).

    Returns:
        A new dict with our key names (tensors shared, not copied).
    """
    if prefix and prefix not in AUTHORS_PREFIXES:
        raise ValueError(f"prefix must be one of {sorted(AUTHORS_PREFIXES)} or '', got {prefix!r}")
    out: Dict[str, torch.Tensor] = {}
    ours_prefix = AUTHORS_PREFIXES.get(prefix, "")
    for key, value in state.items():
        new = convert_authors_key(prefix + key)
        if ours_prefix:
            if not new.startswith(ours_prefix):  # pragma: no cover - defensive
                raise ValueError(f"{prefix}{key} does not map into {ours_prefix}")
            new = new[len(ours_prefix):]
        if new in out:
            raise ValueError(f"two authors' keys map to {new!r}")
        out[new] = value
    return out
