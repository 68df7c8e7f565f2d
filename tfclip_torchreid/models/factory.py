"""Build TF-CLIP models (in the style of open_clip's ``factory.py``).

Architectures are named JSON configs (:mod:`.archs`: :func:`list_archs`, :func:`model_config`);
trained weights are resolved once by :func:`~.weights.resolve_weights`, which gives the model
they fit and its preprocessing. :func:`build_tfclip` builds an architecture with CLIP weights
(``pretrained``) or the model some trained weights describe (``weights``);
:func:`load_tfclip` rebuilds the model a checkpoint file describes.

Example:
    >>> from tfclip_torchreid.models.factory import build_tfclip, list_archs
    >>> [a for a in list_archs() if a.startswith("tfclip_vit")]
    ['tfclip_vitb16', 'tfclip_vitb16_s12']
    >>> model = build_tfclip("tfclip_tiny", num_classes=10, camera_num=2, temporal="tap")
    >>> model.feature_dim
    192
"""

from __future__ import annotations

from typing import Any, Union

from .archs import add_model_config, get_model_config, list_archs, model_config
from .tfclip import TFCLIP, TFCLIPConfig
from .weights import OPENAI, load_model_weights, resolve_weights

__all__ = ["build_tfclip", "create_model", "load_tfclip", "DEFAULT_ARCH",
           # public names of the factory that live in models/archs.py and models/weights.py
           "model_config", "list_archs", "get_model_config", "add_model_config",
           "load_model_weights"]

#: the paper's model: what ``build_tfclip()`` builds without an ``arch``
DEFAULT_ARCH = "tfclip_vitb16"


def build_tfclip(
    arch: str | None = None,
    num_classes: int = 625,
    camera_num: int = 6,
    pretrained: Union[None, bool, str] = None,
    cache_dir: str | None = None,
    loss: str | None = None,
    weights: str | None = None,
    **overrides: Any,
) -> TFCLIP:
    """Build a :class:`~.tfclip.TFCLIP`.

    Args:
        arch: one of :func:`list_archs` (default: the weights' architecture, else
            ``tfclip_vitb16``).
        num_classes: number of training identities Y (heads and CLIP-Memory rows).
        camera_num: number of training cameras (SIE table rows; 0 disables SIE).
        pretrained: CLIP weights for the visual encoder: None/False (random), ``"openai"`` or
            True (OpenAI weights through open_clip's cache; fails within seconds offline), or a
            local file (``ViT-B-16.pt`` TorchScript, open_clip/HF state dict, visual-only).
        cache_dir: open_clip/HF cache folder for ``"openai"``.
        loss: torchreid's ``loss`` (``"softmax"``/``"triplet"``: the training forward returns
            what torchreid's engines expect) or None (every head, :class:`~.tfclip.TFCLIPOutput`).
        weights: trained weights to load: a checkpoint file (ours, the TF-CLIP authors' or
            CLIP-ReID's layout, a plain state dict) or ``"zoo:NAME"`` (downloaded once, see
            :mod:`.zoo`). The model the weights describe is built (identities, cameras and
            switches from the file, its zoo entry or its tensor shapes: ``num_classes`` and
            ``camera_num`` are then ignored); ``overrides`` still apply, each change logged.
        **overrides: any option of :class:`~.config.TFCLIPConfig` (``use_memory``, ``use_ssp``,
            ``ssp_form``, ``temporal``, ``test_feature``, ``stride``, ...). None (or
            ``stride=0``) keeps the arch default.

    Example:
        >>> m = build_tfclip("tfclip_tiny", num_classes=5, camera_num=0, ssp_form="paper")
        >>> m.cfg.ssp_form, m.cv_embed is None
        ('paper', True)
    """
    if weights is not None:
        return resolve_weights(weights, arch).build(loss=loss, **overrides)
    cfg = model_config(arch or DEFAULT_ARCH, num_classes, camera_num, **overrides)
    return create_model(cfg, pretrained, cache_dir, loss)


def create_model(cfg: TFCLIPConfig, pretrained: Union[None, bool, str] = None,
                 cache_dir: str | None = None, loss: str | None = None) -> TFCLIP:
    """A :class:`~.tfclip.TFCLIP` from a whole configuration, with CLIP weights if asked
    (resolved before the model is built: an offline ``"openai"`` fails within seconds)."""
    clip = None
    if pretrained is True or pretrained == OPENAI:
        clip = resolve_weights(OPENAI, cfg.arch, cache_dir=cache_dir,
                               openai_model=cfg.openai_model or "")
    elif isinstance(pretrained, str) and pretrained:
        clip = resolve_weights(pretrained, cfg.arch, layout="clip")
    elif pretrained not in (None, False, ""):
        raise TypeError(f"pretrained must be None, True, 'openai' or a path, got {pretrained!r}")
    model = TFCLIP(cfg, loss=loss)
    if clip is not None:
        load_model_weights(model, clip)
    return model


def load_tfclip(path: str, loss: str | None = None, strict: bool = True,
                **overrides: Any) -> TFCLIP:
    """Rebuild the model a checkpoint file (or ``zoo:NAME``) describes and load its weights.

    Args:
        path: a checkpoint written by this package (every epoch's ``latest.pth`` is one) or a
            zoo name; read once.
        loss: torchreid's ``loss`` for the training forward (see :func:`build_tfclip`).
        strict: every key must fit.
        **overrides: options to change (e.g. ``test_feature="paper"``; each change is logged).

    Example:
        >>> model = load_tfclip("log/demo/checkpoints/latest.pth")  # doctest: +SKIP
    """
    return resolve_weights(path).build(loss=loss, strict=strict, **overrides)
