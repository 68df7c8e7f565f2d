"""The one place that maps other implementations' parameter names to ours.

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
table already fits the 16x8 grid. A leading ``module.`` (DataParallel) is stripped. The CLIP-Memory is not part of the authors'
state dict (they keep it as a plain tensor), so a converted checkpoint leaves ``memory``
uninitialised.

Example:
    >>> import torch
    >>> sd = {"TMD.resblocks.0.attn.in_proj_weight": torch.zeros(1), "image_encoder.proj": torch.zeros(1)}
    >>> sorted(convert_authors_state_dict(sd))
    ['backbone.proj', 'temporal.diffusion.attn.in_proj_weight']
    >>> list(convert_authors_state_dict({"resblocks.0.message_fc.weight": torch.zeros(1)}, prefix="TMD."))
    ['message_fc.weight']
"""

from __future__ import annotations

from typing import Dict, Mapping

import torch

__all__ = ["convert_authors_state_dict", "convert_authors_key", "is_authors_state_dict",
           "AUTHORS_PREFIXES"]

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


def is_authors_state_dict(state: Mapping[str, torch.Tensor]) -> bool:
    """True if ``state`` uses the authors' or CLIP-ReID's names (``image_encoder.``...)."""
    return any(k.split("module.", 1)[-1].startswith("image_encoder.") for k in state)


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
        if key.startswith("module."):
            key = key[len("module."):]
        new = convert_authors_key(prefix + key)
        if ours_prefix:
            if not new.startswith(ours_prefix):  # pragma: no cover - defensive
                raise ValueError(f"{prefix}{key} does not map into {ours_prefix}")
            new = new[len(ours_prefix):]
        if new in out:
            raise ValueError(f"two authors' keys map to {new!r}")
        out[new] = value
    return out
