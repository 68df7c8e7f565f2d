"""Weights, resolved once: the state dict, the model it fits and the preprocessing it expects.

One function, :func:`resolve_weights`, turns any weights spec into one :class:`Weights` (the
role timm's ``pretrained_cfg`` and open_clip's ``pretrained.py`` play there), reading the file
once. Training, evaluation, :func:`~.factory.build_tfclip`, :func:`~.factory.load_tfclip`,
:class:`~.feature_extractor.FeatureExtractor`, export and embedding all go through it.

Where each spec's model config, preprocessing and layout come from:

* ``zoo:NAME``: the zoo entry (model, preprocessing) and its file (checked against the entry);
  layout the entry's (``clipreid`` for CLIP-ReID's files);
* our checkpoint (self-describing): its ``model_cfg`` and ``preprocess`` entries (files written
  before the preprocessing was recorded: the arch's default); layout ``tfclip``;
* the TF-CLIP authors' file, CLIP-ReID's layout, a plain state dict with our keys: ``arch`` and
  the tensor shapes, the arch's default preprocessing; layouts ``tfclip_authors``, ``clipreid``,
  ``tfclip``;
* ``openai`` or a CLIP file (``layout="clip"``): backbone weights; the arch's model, CLIP's mean
  and std; layout ``clip``.

*Tensor shapes* (:func:`options_from_shapes`) give what a file that does not describe itself
still shows: identities (classifier rows), cameras and SIE (``cv_embed`` rows), the ViT's width,
depth, patch size, MLP ratio, joint space and stride (positional rows at the arch's input size;
if no stride fits, the input size of the arch's aspect ratio at its stride),
the ResNet's stages, SSP (layers, paper or released form), the temporal fusion, and CLIP-ReID's
text tower (width, depth, context length). What no tensor shows (attention heads, activation,
the test feature, the V2M form, ...) is the arch's default. The *arch default* preprocessing is
the ``preprocess_cfg`` of the arch's JSON config (:mod:`.archs`): ImageNet's mean / std for
TF-CLIP and CLIP-ReID RN50, 0.5 / 0.5 for CLIP-ReID ViTs (CLIP-ReID's configs); a log line says
when it is used. Checkpoints written by this package record their preprocessing
(``preprocess``: input size, mean, std of the training data; see
:func:`~tfclip_torchreid.utils.checkpoint.checkpoint_header`).

:attr:`Weights.described` names the options the weights decide (every option for self-describing
files and zoo entries, the ones read from shapes otherwise): applications let those win over a
config file (``runner.py``) and log every change (:meth:`Weights.configure`).

Example:
    >>> import os, tempfile, torch
    >>> from tfclip_torchreid.models.archs import model_config
    >>> from tfclip_torchreid.models.tfclip import TFCLIP
    >>> model = TFCLIP(model_config("tfclip_tiny", num_classes=5, camera_num=2, temporal="tap"))
    >>> path = os.path.join(tempfile.mkdtemp(), "plain.pth")
    >>> torch.save(model.state_dict(), path)
    >>> w = resolve_weights(path, arch="tfclip_tiny")
    >>> w.layout, w.config.num_classes, w.config.camera_num, w.config.temporal
    ('tfclip', 5, 2, 'tap')
    >>> w.preprocess.mean, w.preprocess.source
    ((0.485, 0.456, 0.406), 'arch default')
    >>> w.build().feature_dim
    192
"""

from __future__ import annotations

import dataclasses
import logging
import os
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Mapping, Sequence, Tuple, Union

import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from ..utils.checkpoint import (
    HEADER_KEYS,
    STATE_DICT_KEYS,
    load_checkpoint,
    preprocess_entry,
    read_header,
    unwrap_state_dict,
)
from . import zoo
from .archs import OPTION_NAMES, get_model_config, list_archs, model_config
from .config import TFCLIPConfig, option_fields
from .key_mapping import detect_layout, to_our_keys
from .pretrained import resolve_openai_weights
from .tfclip import TFCLIP

logger = logging.getLogger(__name__)

__all__ = ["Preprocess", "Weights", "resolve_weights", "weights_file", "arch_preprocess",
           "options_from_shapes", "load_model_weights", "weights_from_checkpoint", "zoo_weights", "OPENAI", "ALL_OPTIONS",
           "FEATURE_FREE_PREFIXES"]

#: the spec of OpenAI's CLIP weights (through open_clip's cache)
OPENAI = "openai"
#: every option of a model: what a self-describing file or a zoo entry decides
ALL_OPTIONS: FrozenSet[str] = frozenset(OPTION_NAMES | {"num_classes", "camera_num"})
#: parameters the test feature never uses: inference may load weights without them
FEATURE_FREE_PREFIXES = ("classifier", "memory.", "ssp.", "prompt_learner.", "text_encoder.")
#: options that shape the network itself: weights of another value never fit
_NETWORK_FIELDS = tuple(f["name"] for f in option_fields(("arch",)) if f["name"] != "openai_model")


# ---------------------------------------------------------------------------- preprocessing
@dataclass(frozen=True)
class Preprocess:
    """How frames must be prepared for the weights: resize to ``image_size`` (H, W), scale to
    [0, 1], normalise with ``mean`` / ``std``; ``source`` says where it comes from
    (``"checkpoint"``, ``"zoo entry"``, ``"arch default"``, ``"CLIP"``).

    Example:
        >>> Preprocess.from_entry({"image_size": [256, 128], "mean": [0.5] * 3,
        ...                        "std": [0.5] * 3}).norm
        ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    """

    image_size: Tuple[int, int]
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    source: str = ""

    @classmethod
    def from_entry(cls, entry: Mapping[str, Sequence], source: str = "checkpoint") -> Preprocess:
        """From a checkpoint's ``preprocess`` entry (checked)."""
        e = preprocess_entry(entry["image_size"], entry["mean"], entry["std"])
        return cls(tuple(e["image_size"]), tuple(e["mean"]), tuple(e["std"]), source)

    def to_entry(self) -> Dict[str, List]:
        """The checkpoint's ``preprocess`` entry."""
        return preprocess_entry(self.image_size, self.mean, self.std)

    @property
    def norm(self) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """``(mean, std)``: what the data transforms take as ``norm``."""
        return self.mean, self.std

    def describe(self) -> str:
        return (f"{self.image_size[0]}x{self.image_size[1]}, mean {list(self.mean)}, std "
                f"{list(self.std)}")


def arch_preprocess(arch: str, image_size: Sequence[int] | None = None) -> Preprocess:
    """The documented default preprocessing of ``arch`` (its JSON ``preprocess_cfg``) at
    ``image_size`` (default: the arch's input size).

    Example:
        >>> arch_preprocess("clipreid_vitb16").mean, arch_preprocess("clipreid_rn50").mean
        ((0.5, 0.5, 0.5), (0.485, 0.456, 0.406))
    """
    spec = get_model_config(arch)
    size = image_size if image_size is not None else spec["vision_cfg"]["image_size"]
    pre = spec["preprocess_cfg"]
    return Preprocess.from_entry({"image_size": size, **pre}, "arch default")


# ---------------------------------------------------------------------------- shapes
def _rows(state: Mapping[str, torch.Tensor], key: str) -> int | None:
    return int(state[key].shape[0]) if key in state else None


def _count(state: Mapping[str, Any], prefix: str) -> int:
    """How many numbered children ``<prefix><i>.`` the keys have."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for m in map(pattern.match, state) if m})


def _vit_grid(rows: int, image_size: Sequence[int], patch: int, stride: int) -> Dict[str, Any]:
    """``{"stride"}`` whose token grid at ``image_size`` has ``rows - 1`` patches (``stride``
    first); failing that, ``{"image_size"}`` of that aspect ratio whose grid at ``stride`` has;
    {} when neither fits."""
    h, w = int(image_size[0]), int(image_size[1])
    for s in dict.fromkeys([stride, *range(patch, 0, -1)]):
        if ((h - patch) // s + 1) * ((w - patch) // s + 1) + 1 == rows:
            return {"stride": s}
    gh0, gw0 = (h - patch) // stride + 1, (w - patch) // stride + 1
    for gw in range(1, rows):
        gh = (rows - 1) // gw
        if gh * gw == rows - 1 and gh * gw0 == gw * gh0:
            return {"image_size": ((gh - 1) * stride + patch, (gw - 1) * stride + patch)}
    return {}


def _backbone_options(state: Mapping[str, torch.Tensor], image_size: Sequence[int],
                      stride: int) -> Dict[str, Any]:
    if "backbone.class_embedding" in state and "backbone.conv1.weight" in state:
        conv = state["backbone.conv1.weight"]
        opts: Dict[str, Any] = {"backbone": "vit", "width": int(conv.shape[0]),
                                "patch_size": int(conv.shape[-1]),
                                "layers": _count(state, "backbone.transformer.resblocks.")}
        if "backbone.proj" in state:
            opts["embed_dim"] = int(state["backbone.proj"].shape[1])
        fc = state.get("backbone.transformer.resblocks.0.mlp.c_fc.weight")
        if fc is not None:
            opts["mlp_ratio"] = fc.shape[0] / opts["width"]
        rows = _rows(state, "backbone.positional_embedding")
        if rows:
            opts.update(_vit_grid(rows, image_size, opts["patch_size"], stride))
        return opts
    if "backbone.attnpool.c_proj.weight" in state:
        return {"backbone": "resnet", "width": int(state["backbone.conv3.weight"].shape[0]),
                "resnet_layers": tuple(_count(state, f"backbone.layer{i}.") for i in range(1, 5)),
                "embed_dim": int(state["backbone.attnpool.c_proj.weight"].shape[0])}
    return {}


def _bank_options(state: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    opts: Dict[str, Any] = {}
    ssp = [k for k in state if k.startswith("ssp.")]
    text = "prompt_learner.cls_ctx" in state
    if ssp or text or "memory.bank" in state:
        opts["use_memory"] = True
        opts["use_ssp"] = bool(ssp)
        opts["memory_source"] = "text" if text else "clip"
    if ssp:
        opts["ssp_layers"] = _count(state, "ssp.decoder.")
        opts["ssp_form"] = "released" if any(".self_attn." in k for k in ssp) else "paper"
    if "text_encoder.ln_final.weight" in state:
        opts["text_width"] = int(state["text_encoder.ln_final.weight"].shape[0])
        opts["text_layers"] = _count(state, "text_encoder.transformer.resblocks.")
        opts["context_length"] = _rows(state, "text_encoder.positional_embedding")
    return opts


def _temporal_options(state: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    if "temporal.message_fc.weight" in state:
        return {"temporal": "tmd",
                "tmd_diffusion": any(k.startswith("temporal.diffusion.") for k in state)}
    if "temporal.shift.weight" in state:
        return {"temporal": "conv1d"}
    if "temporal.cls_token" in state:
        return {"temporal": "transf_cls", "temporal_layers": _count(state, "temporal.encoder.layers.")}
    if any(k.startswith("temporal.resblocks.") for k in state):
        return {"temporal": "transf", "temporal_layers": _count(state, "temporal.resblocks.")}
    return {"temporal": "tap"}


def options_from_shapes(state: Mapping[str, torch.Tensor], image_size: Sequence[int] = (256, 128),
                        stride: int = 16) -> Dict[str, Any]:
    """The model options a state dict in our key names shows in its tensors (see the module
    notes); ``image_size`` and ``stride`` (the arch's) decide the ViT stride (preferring
    ``stride``), or else its input size, from the positional rows.

    Example:
        >>> from tfclip_torchreid.models.archs import model_config
        >>> sd = TFCLIP(model_config("tfclip_tiny", 7, camera_num=3, ssp_form="paper")).state_dict()
        >>> o = options_from_shapes(sd, (128, 64))
        >>> o["num_classes"], o["camera_num"], o["ssp_form"], o["temporal"], o["width"]
        (7, 3, 'paper', 'tmd', 128)
    """
    opts: Dict[str, Any] = {}
    classes = _rows(state, "classifier2.weight") or _rows(state, "classifier_proj.weight")
    if classes:
        opts["num_classes"] = classes
    opts["use_sie"] = "cv_embed" in state
    opts["camera_num"] = _rows(state, "cv_embed") or 0
    opts.update(_backbone_options(state, image_size, stride))
    opts.update(_bank_options(state))
    opts.update(_temporal_options(state))
    return opts


# ---------------------------------------------------------------------------- the object
def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass
class Weights:
    """Weights resolved by :func:`resolve_weights` (read once).

    Attributes:
        source: the spec as given (``zoo:NAME``, a path, ``openai``).
        path: the local file that was read.
        layout: the file's key layout (:data:`~.key_mapping.LAYOUTS`).
        config: the model the weights fit (:class:`~.config.TFCLIPConfig`).
        preprocess: how frames must be prepared (:class:`Preprocess`).
        state_dict: the weights in our key names (empty for ``clip``: loaded by the model).
        checkpoint: the rest of the checkpoint (``epoch``, ``optimizer``, ``scheduler``, ``rng``,
            ...: what resuming a training run needs; {} for other files).
        described: the options the weights decide (:data:`ALL_OPTIONS` for self-describing
            files and zoo entries; those read from tensor shapes otherwise).
    """

    source: str
    path: str
    layout: str
    config: TFCLIPConfig
    preprocess: Preprocess
    state_dict: Dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    checkpoint: Dict[str, Any] = field(default_factory=dict, repr=False)
    described: FrozenSet[str] = frozenset()

    @property
    def arch(self) -> str:
        return self.config.arch

    @property
    def self_describing(self) -> bool:
        """The file (or its zoo entry) names its architecture and every option."""
        return self.described >= ALL_OPTIONS

    def configure(self, reason: str = "", **overrides: Any) -> TFCLIPConfig:
        """:attr:`config` with ``overrides`` (None or ``stride=0``: keep); every change of an
        option the weights decide is logged: ``option: <source> says A -> B is used (reason)``.

        Example:
            >>> w.configure(reason="asked", test_feature="paper").test_feature  # doctest: +SKIP
            'paper'
        """
        unknown = sorted(set(overrides) - OPTION_NAMES)
        if unknown:
            raise TypeError(f"unknown TF-CLIP option(s) {unknown}; valid: {sorted(OPTION_NAMES)}")
        changes = {k: v for k, v in overrides.items()
                   if v is not None and not (k == "stride" and v == 0)
                   and _plain(v) != _plain(getattr(self.config, k))}
        for name, value in changes.items():
            if name in self.described:
                logger.info(f"=> model.{name}: {self.source} says {getattr(self.config, name)!r}"
                            f" -> {value!r} is used{f' ({reason})' if reason else ''}")
        return dataclasses.replace(self.config, **changes)

    def build(self, loss: str | None = None, strict: bool = True, inference: bool = False,
              **overrides: Any) -> TFCLIP:
        """The model the weights describe (with ``overrides``, see :meth:`configure`), loaded.

        Args:
            loss: torchreid's ``loss`` for the training forward (see ``build_tfclip``).
            strict: every key must fit (see :func:`load_model_weights`).
            inference: training-only parts (classifiers, identity bank, SSP, prompts) may be
                absent from a file that does not describe itself.
        """
        model = TFCLIP(self.configure(**overrides), loss=loss)
        load_model_weights(model, self, strict=strict,
                           optional=FEATURE_FREE_PREFIXES if inference else ())
        return model


# ---------------------------------------------------------------------------- resolving
def weights_file(spec: Union[str, os.PathLike], quiet: bool = False) -> str:
    """The local file of a spec: ``zoo:NAME`` (downloaded once, :func:`~.zoo.download_zoo`)
    or a path (``~`` expanded) that must exist.

    Raises:
        FileNotFoundError: a path that does not exist (the message lists the zoo names).
        ValueError: an unknown zoo name.
        RuntimeError: the download failed (the message names the manual download).
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"weights must be a path or 'zoo:NAME', got {type(spec).__name__}")
    spec = os.fspath(spec)
    if zoo.is_zoo(spec):
        return zoo.download_zoo(spec, quiet=quiet)
    path = osp.expanduser(spec)
    if not osp.isfile(path):
        names = zoo.list_zoo()
        raise FileNotFoundError(
            f"weights file not found: {spec!r}. Pass an existing checkpoint file, or a zoo "
            f"name such as zoo:{names[0]} (available: {', '.join(names)})")
    return path


def _check_arch(found: str, wanted: str | None, source: str) -> None:
    if wanted and found != wanted:
        raise ValueError(
            f"{source} holds a {found} model, not {wanted}: build {found} (--arch {found}, "
            f"model_name / arch={found!r}), or omit the architecture: the file names it")


def _described_config(arch: str, num_classes: int, camera_num: int,
                      options: Mapping[str, Any]) -> TFCLIPConfig:
    return model_config(arch, num_classes, camera_num,
                        **{k: v for k, v in options.items() if k in OPTION_NAMES})


def _our_state(state: Dict[str, torch.Tensor], source: str) -> Tuple[str, Dict[str, torch.Tensor]]:
    """``(layout, state in our key names)``; CLIP weights and unknown layouts are errors."""
    layout = detect_layout(state)
    if layout == "clip":
        raise ValueError(
            f"{source} holds CLIP weights (visual.* / a bare visual tower), the backbone's "
            f"initialisation rather than a ReID model: pass it as the pretrained CLIP weights "
            f"(model.pretrained {source}, build_tfclip(pretrained=...))")
    if layout == "unknown":
        keys = list(state)[:4]
        raise ValueError(
            f"{source} holds none of the keys of a TF-CLIP / CLIP-ReID model (backbone.*, "
            f"image_encoder.*): its first keys are {keys}. Pass a checkpoint of this package, "
            f"the TF-CLIP authors' or CLIP-ReID's")
    return layout, to_our_keys(state, layout)


def _from_header(checkpoint: Mapping[str, Any], header: Mapping[str, Any], source: str,
                 path: str, arch: str | None) -> Weights:
    try:
        config = TFCLIPConfig.from_dict(dict(header["model_cfg"] or {}))
    except TypeError as err:
        raise ValueError(f"{source} was written by tfclip_torchreid {header.get('version')} "
                         f"with options this version does not know: {err}") from err
    _check_arch(config.arch, arch, source)
    if header.get("preprocess"):
        preprocess = Preprocess.from_entry(header["preprocess"], "checkpoint")
    else:
        preprocess = arch_preprocess(config.arch, config.image_size)
        logger.info(f"=> {source} records no preprocessing (written before checkpoints "
                    f"recorded it): using {config.arch}'s default, {preprocess.describe()}")
    rest = {k: v for k, v in checkpoint.items() if k not in HEADER_KEYS + STATE_DICT_KEYS}
    return Weights(source, path, "tfclip", config, preprocess, unwrap_state_dict(checkpoint),
                   rest, ALL_OPTIONS)


def weights_from_checkpoint(checkpoint: Mapping[str, Any], source: str = "",
                            arch: str | None = None, *, default_arch: str | None = None,
                            path: str = "", num_classes: int = 1,
                            image_size: Sequence[int] | None = None) -> Weights:
    """A :class:`Weights` from a checkpoint already in memory (no file is read).

    ``arch`` must match a self-describing checkpoint and is needed for the others
    (``default_arch`` is used when ``arch`` is None); for those, ``num_classes`` is used when the
    file holds no classifier and ``image_size`` (default: the arch's) is the model's input size.
    """
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"{source or 'the checkpoint'} must be a dict (a checkpoint or a state "
                        f"dict), got {type(checkpoint).__name__}")
    source = source or "the checkpoint"
    header = read_header(checkpoint)
    if header is not None:
        return _from_header(checkpoint, header, source, path, arch)
    layout, state = _our_state(unwrap_state_dict(checkpoint), source)
    arch = arch or default_arch
    if not arch:
        raise ValueError(f"{source} does not name its architecture (a {layout}-layout state "
                         f"dict): give --arch NAME (arch=... / model_name=... in Python)")
    base = model_config(arch, num_classes, image_size=image_size)
    shapes = options_from_shapes(state, base.image_size, base.stride)
    config = _described_config(arch, shapes.get("num_classes", num_classes),
                               shapes["camera_num"], {"image_size": base.image_size, **shapes})
    preprocess = arch_preprocess(arch, config.image_size)
    logger.info(f"=> {source}: {layout} layout, {arch} with {config.num_classes} identities and "
                f"{config.camera_num} SIE cameras read from its tensors; no preprocessing "
                f"recorded: using {arch}'s default, {preprocess.describe()}")
    rest = {k: v for k, v in checkpoint.items() if k not in STATE_DICT_KEYS} \
        if any(isinstance(checkpoint.get(k), Mapping) for k in STATE_DICT_KEYS) else {}
    return Weights(source, path, layout, config, preprocess, state, rest, frozenset(shapes))


def zoo_weights(name: str, checkpoint: Mapping[str, Any], path: str = "") -> Weights:
    """The :class:`Weights` of zoo entry ``name`` from its file's content (no file is read):
    the entry's model and preprocessing, checked against the tensors (layout, identities,
    cameras, widths, stride, ...).

    Raises:
        ValueError: the content does not fit the entry (the message names ``path`` and says to
            download it again).
    """
    entry = zoo.get_entry(name)
    where = f"the cached file {path}" if path else "the checkpoint"
    state = unwrap_state_dict(checkpoint)
    config = _described_config(entry.arch, entry.num_classes, entry.camera_num, entry.switches)
    layout = detect_layout(state)
    problems = []
    if layout != entry.layout:
        problems.append(f"layout {layout!r} (expected {entry.layout!r})")
    else:
        state = to_our_keys(state, layout)
        shapes = options_from_shapes(state, config.image_size, config.stride)
        for option, value in shapes.items():
            if option == "camera_num" and not shapes["use_sie"]:
                continue
            if _plain(value) != _plain(getattr(config, option)):
                problems.append(f"{option} {value!r} (expected {getattr(config, option)!r})")
    if problems:
        problem = f"{where} does not look like zoo:{entry.name}: {', '.join(problems)}"
        if path:
            raise zoo.cached_file_error(entry.name, path, problem)
        raise ValueError(f"{problem}: pass the file of zoo:{entry.name} (download it from "
                         f"{entry.manual_url})")
    return Weights(f"zoo:{entry.name}", path, layout, config,
                   Preprocess.from_entry(entry.preprocess, "zoo entry"), state, {}, ALL_OPTIONS)


def _from_zoo(spec: str, arch: str | None, quiet: bool) -> Weights:
    entry = zoo.get_entry(spec)
    _check_arch(entry.arch, arch, f"zoo:{entry.name}")
    path = zoo.download_zoo(entry.name, quiet=quiet)
    try:
        checkpoint = _read(path)
    except ValueError as err:  # CheckpointFileError included: not a checkpoint
        raise zoo.cached_file_error(entry.name, path, str(err)) from err
    return zoo_weights(entry.name, checkpoint, path)


def _clip(spec: str, arch: str, num_classes: int, camera_num: int,
          cache_dir: str | None, openai_model: str | None = None) -> Weights:
    config = (model_config(arch, num_classes, camera_num) if arch in list_archs()
              else TFCLIPConfig(num_classes, camera_num, arch=arch))  # a hand-made config
    name = openai_model if openai_model is not None else config.openai_model
    if spec == OPENAI:
        if not name:
            raise ValueError(f"{arch} has no OpenAI CLIP weights (random architecture); use "
                             f"pretrained=None")
        path = resolve_openai_weights(name, cache_dir=cache_dir)  # fails fast offline
    else:
        path = osp.expanduser(spec)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f"pretrained CLIP weights not found: {spec!r}; pass 'openai', None, or the path "
                f"of ViT-B-16.pt / an open_clip state dict")
    preprocess = Preprocess(tuple(config.image_size), tuple(OPENAI_DATASET_MEAN),
                            tuple(OPENAI_DATASET_STD), "CLIP")
    return Weights(spec, path, "clip", config, preprocess, {}, {}, frozenset())


def _read(path: str) -> Mapping[str, Any]:
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint (a dict "
                         f"with a state dict)")
    return checkpoint


def resolve_weights(
    spec: Union[str, os.PathLike, Weights],
    arch: str | None = None,
    *,
    default_arch: str | None = None,
    layout: str | None = None,
    num_classes: int = 1,
    camera_num: int = 0,
    image_size: Sequence[int] | None = None,
    cache_dir: str | None = None,
    openai_model: str | None = None,
    quiet: bool = False,
) -> Weights:
    """Resolve any weights spec into a :class:`Weights`, reading its file once.

    Args:
        spec: ``"zoo:NAME"``, a checkpoint file (ours, the TF-CLIP authors', CLIP-ReID's, a
            plain state dict), ``"openai"`` or, with ``layout="clip"``, a CLIP file; a
            :class:`Weights` is returned as it is.
        arch: the architecture wanted: must match a file or zoo entry that names its own, and
            is needed for files that do not.
        default_arch: the architecture of files that do not name one when ``arch`` is None.
        layout: ``"clip"``: ``spec`` is CLIP weights (``openai`` or a CLIP file; not read
            here: the model's CLIP loader reads and resizes it once); None: found from the file.
        num_classes, camera_num: for CLIP weights (and ``num_classes`` for a file without a
            classifier); other weights say.
        image_size: the input size (H, W) of a file that does not record it (a plain state dict,
            the authors' or CLIP-ReID's layout; default: the arch's); its positional rows are
            read at that size.
        cache_dir: open_clip / HF cache for ``openai``.
        openai_model: the open_clip model of ``openai`` weights (default: the arch's).
        quiet: no download messages.

    Raises:
        FileNotFoundError, ValueError, RuntimeError: with the file, the problem and the fix.
    """
    if isinstance(spec, Weights):
        _check_arch(spec.arch, arch, spec.source)
        return spec
    if spec == OPENAI or layout == "clip":
        if not (arch or default_arch):
            raise ValueError(f"CLIP weights {spec!r} are backbone weights: give the arch")
        return _clip(os.fspath(spec), arch or default_arch, num_classes, camera_num, cache_dir,
                     openai_model)
    if layout is not None:
        raise ValueError(f"layout must be None (found from the file) or 'clip', got {layout!r}")
    if zoo.is_zoo(spec):
        return _from_zoo(os.fspath(spec), arch, quiet)
    path = weights_file(spec)
    return weights_from_checkpoint(_read(path), path, arch, default_arch=default_arch,
                                   path=path, num_classes=num_classes, image_size=image_size)


# ---------------------------------------------------------------------------- loading
def _describe(differences: Mapping[str, tuple]) -> str:
    return "; ".join(f"{k} {a!r} (model: {b!r})" for k, (a, b) in differences.items())


def _header_differences(weights: Weights, model: TFCLIP) -> Dict[str, tuple]:
    """``{option: (checkpoint value, model value)}`` where a self-describing checkpoint and
    ``model.cfg`` differ ({} for weights that do not describe their model)."""
    if not weights.self_describing:
        return {}
    ours, theirs = model.cfg.to_dict(), weights.config.to_dict()
    return {k: (v, ours[k]) for k, v in theirs.items() if k != "arch" and v != ours[k]}


def _check_model(weights: Weights, model: TFCLIP, where: str) -> Dict[str, tuple]:
    """Refuse a self-describing checkpoint of another architecture or network; returns the
    other differences (for the message of a misfit)."""
    if weights.self_describing and weights.arch != model.cfg.arch:
        raise ValueError(
            f"the checkpoint {where} holds a {weights.arch} model, not {model.cfg.arch}: build "
            f"{weights.arch} (e.g. --arch {weights.arch}), or use load_tfclip(path), which "
            f"rebuilds the model the file describes")
    differences = _header_differences(weights, model)
    network = {k: v for k, v in differences.items() if k in _NETWORK_FIELDS}
    if network:
        raise ValueError(
            f"the checkpoint {where} holds another {model.cfg.arch} network: "
            f"{_describe(network)}. Build the model the file describes (load_tfclip(path), or "
            f"omit these options)")
    return differences


def _first(keys: Sequence[str]) -> str:
    return f"{list(keys[:6])}{' ...' if len(keys) > 6 else ''}"


def _misfit(model: TFCLIP, where: str, shapes: List[str], missing: List[str],
            unexpected: List[str], differences: Mapping[str, tuple]) -> ValueError:
    parts = (["the checkpoint's model differs: " + _describe(differences)] if differences else [])
    parts += ["shape mismatch: " + "; ".join(shapes[:6])] if shapes else []
    parts += [f"missing {_first(missing)}"] if missing else []
    parts += [f"unexpected {_first(unexpected)}"] if unexpected else []
    return ValueError(
        f"checkpoint ({where}) does not fit the model ({model.cfg.arch}, num_classes="
        f"{model.num_classes}, camera_num={model.cfg.camera_num}, temporal={model.cfg.temporal}, "
        f"use_ssp={model.ssp is not None}): " + " | ".join(parts) + ". Build the model with the "
        "checkpoint's arch/switches/num_classes/camera_num, or skip the mismatching keys "
        "(load_model_weights(strict=False); on the command line model.load_strict False)")


def load_model_weights(
    model: TFCLIP,
    checkpoint: Union[Mapping[str, Any], Weights],
    source: str = "",
    strict: bool = True,
    optional: Sequence[str] = (),
) -> Dict[str, List[str]]:
    """Load weights into ``model`` with clear errors.

    ``checkpoint`` is a :class:`Weights` (from :func:`resolve_weights`) or a checkpoint / state
    dict in memory (ours, the TF-CLIP authors' or CLIP-ReID's: keys are mapped by
    :mod:`.key_mapping`). A missing CLIP-Memory (the authors' files have none) leaves the memory
    uninitialised; a bank in the weights of a model built with ``use_memory=False`` is ignored.
    A self-describing checkpoint of another architecture or network (sizes, activation) is
    refused. With ``strict=False``, keys of other shapes (e.g. classifiers of another dataset)
    and missing / unexpected keys are skipped and reported instead of raising; keys under an
    ``optional`` prefix may be missing or of another shape even when strict. CLIP weights
    (layout ``clip``) load through the model's CLIP loader.

    Returns:
        ``{"missing": [...], "unexpected": [...], "skipped": [...]}``.
    """
    if not isinstance(checkpoint, (Mapping, Weights)):
        raise TypeError(f"checkpoint must be a dict or Weights, got {type(checkpoint).__name__}")
    weights = checkpoint if isinstance(checkpoint, Weights) else weights_from_checkpoint(
        checkpoint, source, default_arch=model.cfg.arch, num_classes=model.num_classes)
    where = source or weights.source
    if weights.layout == "clip":
        model.load_clip_weights(weights.path)
        return {"missing": [], "unexpected": [], "skipped": []}
    differences = _check_model(weights, model, where)
    state, own = weights.state_dict, model.state_dict()
    skipped = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
               for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state and not k.startswith("memory.")]
    unexpected = [k for k in state if k not in own and not k.startswith("memory.")]
    if strict:
        optional = tuple(optional)
        bad_shapes = [k for k in skipped if not k.startswith(optional)]
        bad_missing = [k for k in missing if not k.startswith(optional)]
        if bad_shapes or bad_missing or unexpected:
            raise _misfit(model, where, bad_shapes, bad_missing, unexpected, differences)
        if missing or skipped:
            logger.info(f"=> {where}: not in the weights (training-only, left as built): "
                        f"{sorted({k.split('.')[0] for k in missing + skipped})}")
    loadable = {k: v for k, v in state.items()
                if k in own and tuple(v.shape) == tuple(own[k].shape)}
    model.load_state_dict(loadable, strict=False)
    return {"missing": missing, "unexpected": unexpected, "skipped": skipped}
