"""torchreid's ``FeatureExtractor`` for our architectures: the weights decide the model and its
preprocessing.

torchreid's extractor builds ``model_name`` with one identity, loads ``model_path`` with
``load_pretrained_weights`` (which drops every layer whose name or size does not fit and says
"Successfully loaded") and normalises with ImageNet's statistics unless told otherwise. For our
architectures, :class:`FeatureExtractor` resolves ``model_path`` first (a file or ``zoo:NAME``,
:func:`~.weights.resolve_weights`), builds the model the weights describe (identities, cameras,
switches, input size) and loads it strictly, and takes ``image_size`` / ``pixel_mean`` /
``pixel_std`` from the weights' preprocessing unless the caller passes them. For any other model
name it is torchreid's extractor, with torchreid's defaults. ``import tfclip_torchreid`` makes
it ``torchreid.utils.FeatureExtractor`` (:func:`~tfclip_torchreid.compat.set_feature_extractor`).

Example:
    >>> import torchreid  # doctest: +SKIP
    >>> extractor = torchreid.utils.FeatureExtractor(
    ...     model_name="clipreid_vitb16", model_path="zoo:clipreid_vitb16_market1501",
    ...     device="cpu")  # doctest: +SKIP
    >>> extractor.preprocess.transforms[-1]  # doctest: +SKIP
    Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
"""

from __future__ import annotations

import inspect
import logging
import os
from typing import Sequence

import torch
import torchvision.transforms as T

from .. import compat
from .archs import list_archs
from .weights import OPENAI, Weights, resolve_weights

logger = logging.getLogger(__name__)

__all__ = ["FeatureExtractor"]

#: torchreid's own defaults of its extractor (image_size, pixel_mean, ...), used for its models
_TORCHREID_DEFAULTS = {name: p.default for name, p in
                       inspect.signature(compat.FeatureExtractor.__init__).parameters.items()
                       if p.default is not inspect.Parameter.empty}


class FeatureExtractor(compat.FeatureExtractor):
    """torchreid's ``FeatureExtractor``; our architectures are built from their weights.

    Args:
        model_name: a torchreid model name (ours: :func:`~.archs.list_archs`).
        model_path: weights: a file (ours, the TF-CLIP authors', CLIP-ReID's, a plain state dict)
            or ``zoo:NAME``; empty: torchreid's behaviour (CLIP weights for ours,
            ``TFCLIP_CLIP_WEIGHTS`` or ``openai``).
        image_size, pixel_mean, pixel_std: None: the weights' (torchreid's defaults for
            torchreid's models). An ``image_size`` other than the weights' is an error: the
            model's positional tables are sized for it.
        pixel_norm, device, verbose: as torchreid's (``verbose``: torchreid's complexity count
            on the model's input size, logged).
    """

    def __init__(self, model_name: str = "", model_path: str = "",
                 image_size: Sequence[int] | None = None,
                 pixel_mean: Sequence[float] | None = None,
                 pixel_std: Sequence[float] | None = None, pixel_norm: bool = True,
                 device: str = "cuda", verbose: bool = True) -> None:
        if model_name not in list_archs():
            given = {"image_size": image_size, "pixel_mean": pixel_mean, "pixel_std": pixel_std}
            super().__init__(model_name=model_name, model_path=model_path, pixel_norm=pixel_norm,
                             device=device, verbose=verbose,
                             **{k: _TORCHREID_DEFAULTS[k] if v is None else v
                                for k, v in given.items()})
            return
        weights = self._weights(model_name, model_path, image_size)
        pre = weights.preprocess
        if image_size is not None and tuple(image_size) != tuple(pre.image_size):
            raise ValueError(
                f"{weights.source} holds a model for {pre.image_size[0]}x{pre.image_size[1]} "
                f"frames, not image_size={tuple(image_size)}: omit image_size (the weights' is "
                f"used) or pass {tuple(pre.image_size)}")
        model = weights.build(loss="softmax", inference=True).eval()
        if verbose:
            params, flops = compat.compute_model_complexity(model, (1, 3, *pre.image_size))
            logger.info(f"Model: {model_name} ({weights.source}); params: {params:,}; flops: "
                        f"{flops:,} (torchreid's count; tools/model_complexity.py for ViTs)")
        mean = pre.mean if pixel_mean is None else pixel_mean
        std = pre.std if pixel_std is None else pixel_std
        steps = [T.Resize(tuple(pre.image_size)), T.ToTensor()]
        if pixel_norm:
            steps.append(T.Normalize(mean=list(mean), std=list(std)))
        self.weights = weights
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.preprocess = T.Compose(steps)
        self.to_pil = T.ToPILImage()

    @staticmethod
    def _weights(arch: str, model_path: str, image_size: Sequence[int] | None) -> Weights:
        if model_path:  # a size given is the model's for files that do not record one
            return resolve_weights(model_path, arch, image_size=image_size)
        # torchreid builds with pretrained=True without weights: CLIP's, as our factory does
        return resolve_weights(os.environ.get("TFCLIP_CLIP_WEIGHTS") or OPENAI, arch,
                               layout="clip", camera_num=0)
