"""CLIP-ReID checkpoints in the reference's own key layout, built from its recorded key list.

``tests/data/clipreid_keys/{vit,vit_sie,rn50}.json`` list every key of CLIP-ReID's
``build_transformer.state_dict()`` (``model/make_model_clipreid.py``) with its full-size shape and
that shape's dimensions named (``"num_classes"``, ``"3*width"``, ``"positions"``, ...);
``tests/data/README.md`` says how the lists were taken from the reference. The state dicts made
here take key names, nesting, dtypes and shape rules from those lists only; the caller picks the
sizes (small widths keep the files small) and may keep fewer transformer blocks / ResNet blocks
per stage (the first ones, whose shapes are the reference's).

Example:
    >>> sd = clipreid_state_dict("vit", num_classes=3, width=32, layers=1, embed=16,
    ...                          text_width=16, text_layers=1)
    >>> tuple(sd["classifier.weight"].shape), tuple(sd["image_encoder.positional_embedding"].shape)
    ((3, 32), (129, 32))
"""

from __future__ import annotations

import functools
import json
import math
import os.path as osp
import re
from typing import Dict, Mapping, Sequence, Tuple

import torch

KEYS_DIR = osp.join(osp.dirname(osp.abspath(__file__)), "data", "clipreid_keys")
VARIANTS = ("vit", "vit_sie", "rn50")

#: the reference's input size (``INPUT.SIZE_TRAIN`` of every person-ReID config) and patch size
INPUT_SIZE = (256, 128)
PATCH = 16

# blocks whose count the caller may lower: (pattern, size name); the index is the last group
_DEPTH = ((re.compile(r"^image_encoder\.transformer\.resblocks\.(\d+)\."), "layers"),
          (re.compile(r"^text_encoder\.transformer\.resblocks\.(\d+)\."), "text_layers"),
          (re.compile(r"^image_encoder\.layer([1-4])\.(\d+)\."), "blocks"))
_DIM = re.compile(r"^(?:(\d+)\*)?([a-z_]+)(?://(\d+))?$")


@functools.cache
def key_list(variant: str) -> dict:
    """The recorded list: ``{"sizes": {...}, "keys": {name: {"shape", "dims", "dtype"}}, ...}``."""
    if variant not in VARIANTS:
        raise ValueError(f"no recorded CLIP-ReID key list {variant!r}; known: {VARIANTS}")
    with open(osp.join(KEYS_DIR, f"{variant}.json")) as f:
        return json.load(f)


def positions(stride: int, size: Tuple[int, int] = INPUT_SIZE) -> int:
    """Rows of the positional table: CLIP-ReID's ``h_resolution * w_resolution + 1`` with
    ``resolution = (side - 16) // stride + 1`` (129 at stride 16, 211 at stride 12)."""
    return ((size[0] - PATCH) // stride + 1) * ((size[1] - PATCH) // stride + 1) + 1


def dim_value(dim, sizes: Mapping[str, int]) -> int:
    """One recorded dimension: an int, or ``"name"``, ``"k*name"``, ``"name//k"``."""
    if isinstance(dim, int):
        return dim
    m = _DIM.match(dim)
    if m is None or m.group(2) not in sizes:
        raise ValueError(f"cannot read dimension {dim!r} with sizes {sorted(sizes)}")
    value = sizes[m.group(2)] * int(m.group(1) or 1)
    return value // int(m.group(3)) if m.group(3) else value


def _kept(key: str, depth: Mapping[str, Sequence[int] | int]) -> bool:
    for pattern, name in _DEPTH:
        m = pattern.match(key)
        if m and depth.get(name) is not None:
            if name == "blocks":
                return int(m.group(2)) < depth[name][int(m.group(1)) - 1]
            return int(m.group(1)) < depth[name]
    return True


def _check_depth(keys, depth: Mapping[str, Sequence[int] | int]) -> None:
    """Fewer blocks than the reference only: the reference's depth bounds what can be kept."""
    have: Dict[str, list] = {}
    for key in keys:
        for pattern, name in _DEPTH:
            m = pattern.match(key)
            if m:
                have.setdefault(name, [0, 0, 0, 0] if name == "blocks" else [0])
                stage = int(m.group(1)) - 1 if name == "blocks" else 0
                have[name][stage] = max(have[name][stage], int(m.group(m.lastindex)) + 1)
    for name, want in depth.items():
        if want is None:
            continue
        want = list(want) if name == "blocks" else [want]
        if name not in have or any(w > h or w < 1 for w, h in zip(want, have[name])):
            raise ValueError(f"{name}={want} is not within the reference's {have.get(name)}")


def reference_shapes(variant: str, sizes: Mapping[str, int] | None = None,
                     **depth) -> Dict[str, Tuple[Tuple[int, ...], torch.dtype]]:
    """``{key: (shape, dtype)}`` of ``variant`` at ``sizes`` (default: the reference's own,
    full size), in the reference's key order; ``depth`` (``layers``, ``text_layers``,
    ``blocks``) keeps the first blocks only."""
    data = key_list(variant)
    sizes = dict(data["sizes"], **(sizes or {}))
    _check_depth(data["keys"], depth)
    return {key: (tuple(dim_value(d, sizes) for d in entry["dims"]),
                  getattr(torch, entry["dtype"]))
            for key, entry in data["keys"].items() if _kept(key, depth)}


def _tensor(key: str, shape: Tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.int64:  # BN's num_batches_tracked
        return torch.full(shape, 100, dtype=dtype)
    if key.endswith("running_var"):
        return torch.rand(shape, dtype=dtype) + 0.5
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1  # keeps deep stacks finite
    return torch.randn(shape, dtype=dtype) / math.sqrt(fan_in)


def clipreid_state_dict(
    backbone: str = "vit",
    num_classes: int = 7,
    camera_num: int = 0,
    stride: int = 16,
    width: int = 32,
    layers: int = 2,
    embed: int = 16,
    text_width: int = 16,
    text_layers: int = 1,
    blocks: Tuple[int, int, int, int] = (1, 1, 1, 1),
) -> Dict[str, torch.Tensor]:
    """A CLIP-ReID ``build_transformer.state_dict()`` with random tensors (torch's global RNG).

    ``backbone`` ``"vit"`` (``camera_num > 0``: with SIE's ``cv_embed``) or ``"rn50"``;
    ``width`` is the visual width (ViT-B/16: 768; RN50: 64, features ``32 * width``), ``embed``
    the joint space (512 / 1024), ``text_width`` the text tower's (512). ``layers`` /
    ``text_layers`` / ``blocks`` keep the first transformer blocks / ResNet blocks per stage
    (the reference has 12 / 12 / (3, 4, 6, 3)).
    """
    if backbone == "vit":
        variant = "vit_sie" if camera_num else "vit"
        depth = {"layers": layers, "text_layers": text_layers}
    elif backbone == "rn50":
        if camera_num:
            raise ValueError("no recorded CLIP-ReID RN50 layout with SIE (the zoo has none)")
        variant = "rn50"
        depth = {"text_layers": text_layers, "blocks": tuple(blocks)}
    else:
        raise ValueError(f"backbone {backbone!r}: 'vit' or 'rn50'")
    sizes = {"num_classes": num_classes, "camera_num": camera_num, "width": width,
             "embed": embed, "text_width": text_width, "positions": positions(stride)}
    return {key: _tensor(key, shape, dtype)
            for key, (shape, dtype) in reference_shapes(variant, sizes, **depth).items()}
