"""TF-CLIP and CLIP-ReID models; importing this package registers them with torchreid.

Registered names (one JSON file each in ``model_configs/``): ``tfclip_vitb16`` (ViT-B/16,
256x128, stride 16: the paper's model), ``tfclip_vitb16_s12`` (overlapping patches, stride 12),
``tfclip_rn50`` (the supplement's CNN TF-CLIP on CLIP's RN50), ``clipreid_vitb16``,
``clipreid_vitb16_s12`` (SIE + overlapping patches) and ``clipreid_rn50`` (CLIP-ReID, the
baseline TF-CLIP is compared with), and the tiny random ``tfclip_tiny``, ``clipreid_tiny``,
``tfclip_rn50_tiny`` for tests and demos. torchreid factories take ``(num_classes,
loss="softmax", pretrained=True, use_gpu=True, **kwargs)``; ``pretrained=True`` means OpenAI CLIP
via open_clip (or the file named by the ``TFCLIP_CLIP_WEIGHTS`` environment variable);
``camera_num`` defaults to 6 (MARS) and any :class:`~.config.TFCLIPConfig` option can be passed as
a keyword. ``torchreid.utils.FeatureExtractor`` becomes :class:`.feature_extractor.FeatureExtractor`
(torchreid's, building our architectures from their weights, :mod:`.weights`).

Example:
    >>> from tfclip_torchreid import compat
    >>> model = compat.build_model("tfclip_tiny", num_classes=8, pretrained=False)
    >>> type(model).__name__
    'TFCLIP'
"""

from __future__ import annotations

import os
from typing import Any, Callable

from .. import compat
from . import zoo
from .archs import get_model_config, list_archs
from .clip_memory import CLIPMemory, aggregate_identity_means
from .factory import build_tfclip, load_tfclip
from .feature_extractor import FeatureExtractor
from .key_mapping import convert_authors_state_dict
from .tfclip import TFCLIP, TFCLIPConfig, TFCLIPOutput
from .weights import Preprocess, Weights, load_model_weights, resolve_weights

__all__ = [
    "TFCLIP", "TFCLIPConfig", "TFCLIPOutput", "CLIPMemory", "aggregate_identity_means",
    "build_tfclip", "get_model_config", "list_archs", "load_model_weights", "load_tfclip",
    "resolve_weights", "Weights", "Preprocess", "FeatureExtractor", "zoo",
    "convert_authors_state_dict", "TORCHREID_MODELS", "DEFAULT_CAMERA_NUM",
]

DEFAULT_CAMERA_NUM = 6  # MARS; pass camera_num=15 (LS-VID) or 2 (iLIDS-VID) as needed
TORCHREID_MODELS = tuple(list_archs())


def _torchreid_factory(arch: str) -> Callable[..., TFCLIP]:
    def factory(num_classes: int, loss: str = "softmax", pretrained: Any = True,
                use_gpu: bool = True, camera_num: int = DEFAULT_CAMERA_NUM,
                **kwargs: Any) -> TFCLIP:
        # ``use_gpu`` is torchreid's convention: the engine moves the model to its device.
        if pretrained is True:
            pretrained = os.environ.get("TFCLIP_CLIP_WEIGHTS") or "openai"
        return build_tfclip(arch, num_classes=num_classes, camera_num=camera_num,
                            pretrained=pretrained or None, loss=loss, **kwargs)

    factory.__name__ = arch
    factory.__doc__ = f"torchreid factory of TF-CLIP ``{arch}`` (see build_tfclip)."
    return factory


for _name in TORCHREID_MODELS:
    compat.register_model(_name, _torchreid_factory(_name))
compat.set_feature_extractor(FeatureExtractor)
