"""Named architectures: JSON model configs (in the style of open_clip's ``model_configs``).

Architectures live in ``model_configs/<arch>.json``: ``embed_dim`` (CLIP joint space),
``vision_cfg`` (image_size, layers, width, heads, mlp_ratio, patch_size, stride),
``openai_model`` (the open_clip model name whose ``openai`` weights fit, or null), optional
``text_cfg`` (CLIP text tower), ``defaults`` (switch defaults of that arch) and
``preprocess_cfg`` (``mean`` / ``std`` the arch's models are trained with: the documented default
for weights that do not record their preprocessing, see :mod:`.weights`). Keyword overrides
replace any of them.

Example:
    >>> from tfclip_torchreid.models.archs import list_archs, model_config
    >>> [a for a in list_archs() if a.startswith("tfclip_vit")]
    ['tfclip_vitb16', 'tfclip_vitb16_s12']
    >>> model_config("clipreid_vitb16", 751).temporal
    'tap'
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import os.path as osp
from typing import Any, Dict, List

from .config import TFCLIPConfig

__all__ = ["add_model_config", "list_archs", "get_model_config", "model_config", "OPTION_NAMES"]

_CONFIG_DIR = osp.join(osp.dirname(osp.abspath(__file__)), "model_configs")
_MODEL_CONFIGS: Dict[str, dict] = {}
_VISION_KEYS = ("backbone", "image_size", "layers", "resnet_layers", "width", "heads",
                "mlp_ratio", "patch_size", "stride", "last_stride")
_TEXT_KEYS = {"width": "text_width", "layers": "text_layers", "heads": "text_heads",
              "context_length": "context_length"}
#: the keyword options of :func:`model_config` (every TFCLIPConfig field but the data's)
OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(TFCLIPConfig)) - {
    "num_classes", "camera_num", "arch"}


def add_model_config(path: str) -> None:
    """Register a JSON config file, or every ``*.json`` in a folder (name = file stem)."""
    files = [path] if osp.isfile(path) else sorted(
        osp.join(path, f) for f in os.listdir(path) if f.endswith(".json")
    )
    for f in files:
        with open(f) as fh:
            cfg = json.load(fh)
        missing = [k for k in ("embed_dim", "vision_cfg", "preprocess_cfg") if k not in cfg]
        if missing:
            raise ValueError(f"{f}: a model config needs {missing} (see models/archs.py)")
        pre = cfg["preprocess_cfg"]
        if any(len(pre.get(k, ())) != 3 for k in ("mean", "std")):
            raise ValueError(f"{f}: preprocess_cfg needs a 3-value 'mean' and 'std', got {pre}")
        _MODEL_CONFIGS[osp.splitext(osp.basename(f))[0]] = cfg


add_model_config(_CONFIG_DIR)


def list_archs() -> List[str]:
    """Names of the available TF-CLIP architectures."""
    return sorted(_MODEL_CONFIGS)


def get_model_config(arch: str) -> dict:
    """A deep copy of the JSON config of ``arch``."""
    if arch not in _MODEL_CONFIGS:
        raise ValueError(f"unknown TF-CLIP arch {arch!r}; available: {list_archs()}")
    return copy.deepcopy(_MODEL_CONFIGS[arch])


def model_config(arch: str, num_classes: int, camera_num: int = 0,
                 **overrides: Any) -> TFCLIPConfig:
    """The :class:`~.config.TFCLIPConfig` of ``arch`` (its JSON) with ``overrides`` applied.

    A value of None (or ``stride=0``) keeps the arch's default; unknown names raise a TypeError.

    Example:
        >>> model_config("tfclip_vitb16_s12", 625, 6).stride
        12
    """
    spec = get_model_config(arch)
    unknown = sorted(set(overrides) - OPTION_NAMES)
    if unknown:
        raise TypeError(f"unknown TF-CLIP option(s) {unknown}; valid: {sorted(OPTION_NAMES)}")
    kwargs: Dict[str, Any] = {k: spec["vision_cfg"][k] for k in _VISION_KEYS
                              if k in spec["vision_cfg"]}
    kwargs.update({ours: spec["text_cfg"][k] for k, ours in _TEXT_KEYS.items()
                   if k in spec.get("text_cfg", {})})
    kwargs["embed_dim"] = spec["embed_dim"]
    kwargs["openai_model"] = spec.get("openai_model")
    kwargs.update(spec.get("defaults", {}))
    if overrides.get("stride") == 0:  # 0 = the arch's stride
        overrides = dict(overrides, stride=None)
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    return TFCLIPConfig(num_classes=int(num_classes), camera_num=int(camera_num), arch=arch,
                        **kwargs)
