"""Build TF-CLIP models from named JSON configs (in the style of open_clip's ``factory.py``).

Architectures live in ``model_configs/<arch>.json``: ``embed_dim`` (CLIP joint space),
``vision_cfg`` (image_size, layers, width, heads, mlp_ratio, patch_size, stride),
``openai_model`` (the open_clip model name whose ``openai`` weights fit, or null) and optional
``defaults`` (switch defaults of that arch). Keyword overrides replace any of them.

Example:
    >>> from tfclip_torchreid.models.factory import build_tfclip, list_archs
    >>> [a for a in list_archs() if a.startswith("tfclip_vit")]
    ['tfclip_vitb16', 'tfclip_vitb16_s12']
    >>> model = build_tfclip("tfclip_tiny", num_classes=10, camera_num=2, temporal="tap")
    >>> model.feature_dim
    192
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import os.path as osp
from typing import Any, Dict, List, Mapping, Union

import torch
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from ..utils.checkpoint import load_checkpoint, read_header
from .backbone import resolve_openai_weights
from .config import option_fields
from .key_mapping import convert_authors_state_dict, is_authors_state_dict
from .tfclip import TFCLIP, TFCLIPConfig
from .zoo import is_zoo, resolve_weights, zoo_model_kwargs

__all__ = ["build_tfclip", "create_model", "model_config", "list_archs", "get_model_config",
           "load_model_weights", "load_tfclip", "load_weights_in_place",
           "model_config_from_checkpoint", "add_model_config"]

_CONFIG_DIR = osp.join(osp.dirname(osp.abspath(__file__)), "model_configs")
_MODEL_CONFIGS: Dict[str, dict] = {}
_VISION_KEYS = ("backbone", "image_size", "layers", "resnet_layers", "width", "heads",
                "mlp_ratio", "patch_size", "stride", "last_stride")
_TEXT_KEYS = {"width": "text_width", "layers": "text_layers", "heads": "text_heads",
              "context_length": "context_length"}


def add_model_config(path: str) -> None:
    """Register a JSON config file, or every ``*.json`` in a folder (name = file stem)."""
    files = [path] if osp.isfile(path) else sorted(
        osp.join(path, f) for f in os.listdir(path) if f.endswith(".json")
    )
    for f in files:
        with open(f) as fh:
            cfg = json.load(fh)
        if "vision_cfg" not in cfg or "embed_dim" not in cfg:
            raise ValueError(f"{f}: a model config needs 'embed_dim' and 'vision_cfg'")
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


_SWITCHES = {f.name for f in dataclasses.fields(TFCLIPConfig)} - {"num_classes", "camera_num", "arch"}


def model_config(arch: str, num_classes: int, camera_num: int = 0,
                 **overrides: Any) -> TFCLIPConfig:
    """The :class:`~.config.TFCLIPConfig` of ``arch`` (its JSON) with ``overrides`` applied.

    A value of None (or ``stride=0``) keeps the arch's default; unknown names raise a TypeError.

    Example:
        >>> model_config("tfclip_vitb16_s12", 625, 6).stride
        12
    """
    spec = get_model_config(arch)
    unknown = sorted(set(overrides) - _SWITCHES)
    if unknown:
        raise TypeError(f"unknown TF-CLIP option(s) {unknown}; valid: {sorted(_SWITCHES)}")
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


def build_tfclip(
    arch: str = "tfclip_vitb16",
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
        arch: one of :func:`list_archs`.
        num_classes: number of training identities Y (heads and CLIP-Memory rows).
        camera_num: number of training cameras (SIE table rows; 0 disables SIE).
        pretrained: CLIP weights for the visual encoder: None/False (random), ``"openai"`` or
            True (OpenAI weights through open_clip's cache; fails within seconds offline), or a
            local file (``ViT-B-16.pt`` TorchScript, open_clip/HF state dict, visual-only).
        cache_dir: open_clip/HF cache folder for ``"openai"``.
        loss: torchreid's ``loss`` (``"softmax"``/``"triplet"``: the training forward returns
            what torchreid's engines expect) or None (every head, :class:`~.tfclip.TFCLIPOutput`).
        weights: trained weights to load: a checkpoint file (ours, the TF-CLIP authors' or
            CLIP-ReID's layout) or ``"zoo:NAME"`` (downloaded once, see :mod:`.zoo`; the entry's
            identities, cameras and switches are used, ``overrides`` still apply).
        **overrides: any option of :class:`~.config.TFCLIPConfig` (``use_memory``, ``use_ssp``,
            ``ssp_form``, ``temporal``, ``test_feature``, ``stride``, ...). None (or
            ``stride=0``) keeps the arch default.

    Example:
        >>> m = build_tfclip("tfclip_tiny", num_classes=5, camera_num=0, ssp_form="paper")
        >>> m.cfg.ssp_form, m.cv_embed is None
        ('paper', True)
    """
    if weights is not None and is_zoo(weights):
        spec = zoo_model_kwargs(weights)
        if spec.arch != arch:
            raise ValueError(f"{weights} holds a {spec.arch} model, not {arch}: build "
                             f"{spec.arch} (e.g. build_tfclip({spec.arch!r}, weights=...))")
        num_classes, camera_num = spec.num_classes, spec.camera_num
        overrides = {**spec.switches, **overrides}
    cfg = model_config(arch, num_classes, camera_num, **overrides)
    model = create_model(cfg, None if weights else pretrained, cache_dir, loss)
    if weights is not None:
        path = resolve_weights(weights)
        load_model_weights(model, load_checkpoint(path), source=path, strict=True)
    return model


def create_model(cfg: TFCLIPConfig, pretrained: Union[None, bool, str] = None,
                 cache_dir: str | None = None, loss: str | None = None) -> TFCLIP:
    """A :class:`~.tfclip.TFCLIP` from a whole configuration, with CLIP weights if asked."""
    arch = cfg.arch
    weights: str | None = None
    if pretrained is True or pretrained == "openai":
        if not cfg.openai_model:
            raise ValueError(
                f"{arch} has no OpenAI CLIP weights (random architecture); use pretrained=None"
            )
        weights = resolve_openai_weights(cfg.openai_model, cache_dir=cache_dir)  # fails fast
    elif isinstance(pretrained, str) and pretrained:
        weights = osp.expanduser(pretrained)
        if not osp.isfile(weights):
            raise FileNotFoundError(
                f"pretrained CLIP weights not found: {pretrained!r}; pass 'openai', None, or the "
                f"path of ViT-B-16.pt / an open_clip state dict"
            )
    elif pretrained not in (None, False, ""):
        raise TypeError(f"pretrained must be None, True, 'openai' or a path, got {pretrained!r}")

    model = TFCLIP(cfg, loss=loss)
    if weights is not None:
        model.load_clip_weights(weights)
    return model


def _unwrap(checkpoint: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """The state dict of a checkpoint (``state_dict`` entry or the dict itself), without
    ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) prefixes."""
    state = checkpoint
    for key in ("state_dict", "model"):
        if isinstance(checkpoint.get(key), Mapping):
            state = checkpoint[key]
            break
    state = dict(state)
    for prefix in ("module.", "_orig_mod."):
        consume_prefix_in_state_dict_if_present(state, prefix)
    return state


#: fields that shape the network itself: weights of another value never belong to the model
_NETWORK_FIELDS = tuple(f["name"] for f in option_fields(("arch",)) if f["name"] != "openai_model")


def _config_differences(header: Mapping[str, Any] | None, model: TFCLIP
                        ) -> Dict[str, tuple]:
    """``{option: (checkpoint value, model value)}`` where the model config a checkpoint
    describes and ``model.cfg`` differ ({} for files that do not describe their model)."""
    if header is None or not header.get("model_cfg"):
        return {}
    ours = model.cfg.to_dict()
    return {k: (v, ours[k]) for k, v in header["model_cfg"].items()
            if k in ours and k != "arch" and v != ours[k]}


def _describe(differences: Mapping[str, tuple]) -> str:
    return "; ".join(f"{k} {a!r} (model: {b!r})" for k, (a, b) in differences.items())


def load_model_weights(
    model: TFCLIP,
    checkpoint: Mapping[str, Any],
    source: str = "",
    strict: bool = True,
) -> Dict[str, List[str]]:
    """Load our or the authors' TF-CLIP weights into ``model`` with clear errors.

    ``checkpoint`` is a state dict or a dict holding one under ``state_dict``/``model``.
    Authors' key names (``image_encoder.``, ``SSP.``, ``TMD.``) are converted via
    :mod:`.key_mapping`. A missing CLIP-Memory (authors' checkpoints have none) leaves the memory
    uninitialised. With ``strict=False``, keys of other shapes (e.g. classifiers of another
    dataset) and missing/unexpected keys are skipped and reported instead of raising. A bank in
    the checkpoint of a model built with ``use_memory=False`` is ignored.

    Returns:
        ``{"missing": [...], "unexpected": [...], "skipped": [...]}``.
    """
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"checkpoint must be a dict, got {type(checkpoint).__name__}")
    header = read_header(checkpoint)
    if header is not None and header["arch"] != model.cfg.arch:
        raise ValueError(
            f"the checkpoint{f' {source}' if source else ''} holds a {header['arch']} model, "
            f"not {model.cfg.arch}: build {header['arch']} (e.g. --arch {header['arch']}), or "
            f"use load_tfclip(path), which rebuilds the model the file describes")
    differences = _config_differences(header, model)
    network = {k: v for k, v in differences.items() if k in _NETWORK_FIELDS}
    if network:
        raise ValueError(
            f"the checkpoint{f' {source}' if source else ''} holds another {model.cfg.arch} "
            f"network: {_describe(network)}. Build the model the file describes "
            f"(load_tfclip(path), or omit these options)")
    state = _unwrap(checkpoint)
    if is_authors_state_dict(state):
        state = convert_authors_state_dict(state)
    where = f" ({source})" if source else ""
    own = model.state_dict()
    skipped = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    missing = [k for k in own if k not in state and not k.startswith("memory.")]
    unexpected = [k for k in state if k not in own and not k.startswith("memory.")]
    if strict and (skipped or missing or unexpected):
        parts = []
        if skipped:
            parts.append("shape mismatch: " + "; ".join(skipped[:6]))
        if missing:
            parts.append(f"missing {missing[:6]}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}")
        if differences:
            parts.insert(0, "the checkpoint's model differs: " + _describe(differences))
        raise ValueError(
            f"checkpoint{where} does not fit the model ({model.cfg.arch}, num_classes="
            f"{model.num_classes}, camera_num={model.cfg.camera_num}, temporal="
            f"{model.cfg.temporal}, use_ssp={model.ssp is not None}): " + " | ".join(parts)
            + ". Build the model with the checkpoint's arch/switches/num_classes/camera_num, or "
            "skip the mismatching keys (load_model_weights(strict=False); on the command line "
            "model.load_strict False)"
        )
    loadable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    model.load_state_dict(loadable, strict=False)
    return {"missing": missing, "unexpected": unexpected, "skipped": skipped}


def model_config_from_checkpoint(checkpoint: Mapping[str, Any], **overrides: Any
                                 ) -> TFCLIPConfig:
    """The :class:`~.config.TFCLIPConfig` a self-describing checkpoint stores, with overrides."""
    header = read_header(checkpoint)
    if header is None or not header.get("model_cfg"):
        raise ValueError(
            "this checkpoint does not describe its model (no arch/model_cfg: an authors' or a "
            "plain state dict); build the model yourself (build_tfclip(arch, ...)) and load it "
            "with load_model_weights")
    values = dict(header["model_cfg"])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TFCLIPConfig.from_dict(values)


def load_tfclip(path: str, loss: str | None = None, strict: bool = True,
                **overrides: Any) -> TFCLIP:
    """Rebuild the model a checkpoint file describes and load its weights.

    Args:
        path: a checkpoint written by this package (every epoch's ``latest.pth`` is one).
        loss: torchreid's ``loss`` for the training forward (see :func:`build_tfclip`).
        strict: every key must fit.
        **overrides: options to change (e.g. ``test_feature="paper"``).

    Example:
        >>> model = load_tfclip("log/demo/checkpoints/latest.pth")  # doctest: +SKIP
    """
    checkpoint = load_checkpoint(path)
    model = TFCLIP(model_config_from_checkpoint(checkpoint, **overrides), loss=loss)
    load_model_weights(model, checkpoint, source=path, strict=strict)
    return model


#: parameters the test feature never uses: they may be absent or sized for another dataset
FEATURE_FREE_PREFIXES = ("classifier", "memory.", "ssp.", "prompt_learner.", "text_encoder.")


def load_weights_in_place(model: TFCLIP, path: str) -> None:
    """Make ``model`` the model the file at ``path`` describes, then load its weights.

    For torchreid's ``FeatureExtractor(model_name=..., model_path=...)``, which builds the named
    model with ``num_classes=1`` before loading: a self-describing checkpoint (or a
    ``"zoo:NAME"``) of the same architecture re-initialises ``model`` in place with the
    configuration it describes (identities, cameras, switches) and loads strictly; another
    architecture is an error. A file
    that does not describe itself (a plain state dict, the authors' checkpoints) must supply
    every weight the test feature uses; only classifiers, the identity bank and the prompt /
    SSP modules (training-only) may be absent or sized for another dataset.
    """
    if is_zoo(path):  # the zoo entry describes the model
        spec = zoo_model_kwargs(path)
        if spec.arch == model.cfg.arch:
            training, loss = model.training, model.loss
            cfg = model_config(spec.arch, spec.num_classes, spec.camera_num, **spec.switches)
            TFCLIP.__init__(model, cfg, loss=loss)
            model.train(training)
        path = resolve_weights(path)
        load_model_weights(model, load_checkpoint(path), source=path, strict=True)
        return
    checkpoint = load_checkpoint(path)
    header = read_header(checkpoint)
    if header is not None:
        if header["arch"] == model.cfg.arch:
            training, loss = model.training, model.loss
            TFCLIP.__init__(model, model_config_from_checkpoint(checkpoint), loss=loss)
            model.train(training)
        load_model_weights(model, checkpoint, source=path, strict=True)
        return
    report = load_model_weights(model, checkpoint, source=path, strict=False)
    bad = [k for k in report["missing"] + report["skipped"]
           if not k.startswith(FEATURE_FREE_PREFIXES)]
    if bad:
        raise ValueError(
            f"{path} does not fit {model.cfg.arch}: weights the features need are missing or "
            f"of another shape: {bad[:6]}{' ...' if len(bad) > 6 else ''}; pick the "
            f"architecture the checkpoint was trained with")
