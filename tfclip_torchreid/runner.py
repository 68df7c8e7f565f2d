"""From a config to results: what ``tools/train.py`` runs (torchreid's ``scripts/main.py`` style).

Everything that can be wrong with the command line is found before any data is read: unknown
flags or options, an unknown architecture, a bad model option, an unwritable output folder,
``--evaluate-only`` without weights, weights that do not exist or do not fit. The run prints
where its log, checkpoints and results go, at the start and at the end, and writes
``results.json`` after every evaluation.

Weights (``--weights``, or the checkpoint to resume) are resolved once
(:func:`~tfclip_torchreid.models.weights.resolve_weights`: one read of the file) and describe
the model: its options win over a config file's, unless set on the command line
(``model.test_feature paper``); every change of an option the weights decide is logged, one line
per option, with the reason. Evaluating or resuming, the frames follow the weights'
preprocessing too (``data.height`` / ``data.width``, and ``data.norm`` where the weights record
it) unless set on the command line. ``data.seq_len`` is the evaluation protocol's clip length,
not a property of the weights: checkpoints do not record it and the config's is used.

Example:
    >>> from tfclip_torchreid.config import get_default_config
    >>> cfg = get_default_config()
    >>> cfg.merge_from_file("configs/demo.yaml")  # doctest: +SKIP
    >>> results = run_from_config(cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import os.path as osp
import sys
import time
from typing import Any, Sequence

import torch
from yacs.config import CfgNode

from . import compat
from .config import get_default_config, looks_like_key, merge_config_file, merge_options
from .data.datamanager import build_datamanager
from .data.datasets import num_splits
from .data.tracklet_checks import check_test_cameras
from .data.transforms import NORM_STATS, norm_stats
from .engine.checkpoint import check_writable
from .engine.evaluation import DIST_METRICS
from .engine.precision import AMP_MODES
from .engine.prompt_learning import PromptStageConfig
from .engine.v2m_engine import VideoV2MEngine
from .losses import TFCLIPLoss
from .models.config import option_fields
from .models.factory import DEFAULT_ARCH, create_model, list_archs, model_config
from .models.weights import OPENAI, Weights, load_model_weights, resolve_weights
from .optim import STEP_AT, WarmupMultiStepLR, build_tfclip_optimizer
from .testing import FORMATS as SYNTHETIC_FORMATS
from .testing import make_synthetic_dataset
from .utils import distributed as du
from .utils.checkpoint import save_json
from .utils.logger import console_logging
from .utils.run_lock import RunLock

logger = logging.getLogger(__name__)

__all__ = ["build_parser", "parse_args", "config_from_args", "command_line_keys",
           "check_config", "run_weights", "build_engine", "run_engine", "run_from_config",
           "main", "RESUME_HINT"]

#: what to do after an interrupted training (tools/train.py prints it after Ctrl-C)
RESUME_HINT = ("the last finished epoch is in <save_dir>/checkpoints/latest.pth: run the same "
               "command with --resume auto to continue from it")

#: the flags that take one or more dataset names
LIST_FLAGS = {"-s": "--sources", "--sources": "--sources", "-t": "--targets",
              "--targets": "--targets"}

#: command-line flag -> config key (flags win over the config file)
FLAG_KEYS = {
    "arch": "model.name", "sources": "data.sources", "targets": "data.targets",
    "root": "data.root", "save_dir": "data.save_dir", "weights": "model.load_weights",
    "resume": "train.resume", "evaluate_only": "test.evaluate", "all_splits": "data.all_splits",
    "synthetic": "data.synthetic",
}


def build_parser() -> argparse.ArgumentParser:
    """torchreid-style flags; ``KEY VALUE`` config options may come anywhere on the line."""
    options = ", ".join(f"model.{f['name']}" for f in option_fields(("switch",)))
    p = argparse.ArgumentParser(
        description="Train / evaluate TF-CLIP and CLIP-ReID with torchreid",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog=f"Any config key can be set as KEY VALUE, e.g. train.max_epoch 80. Model options "
               f"(see models/config.py): {options}.")
    p.add_argument("--config-file", type=str, default="", help="path to a yaml config")
    p.add_argument("--arch", type=str, default="", help="model name, e.g. tfclip_vitb16")
    p.add_argument("-s", "--sources", type=str, nargs="+", action="extend",
                   help="source datasets (up to the next flag or KEY)")
    p.add_argument("-t", "--targets", type=str, nargs="+", action="extend",
                   help="target datasets (up to the next flag or KEY)")
    p.add_argument("--root", type=str, default="", help="root path to data directory")
    p.add_argument("--save-dir", type=str, default="", help="where logs and checkpoints go")
    p.add_argument("--weights", type=str, default="",
                   help="model weights to load (ours, the authors' or zoo:NAME)")
    p.add_argument("--resume", type=str, default="", help="checkpoint to resume from, or 'auto'")
    p.add_argument("--evaluate-only", action="store_true", help="only evaluate (with --weights)")
    p.add_argument("--all-splits", action="store_true", help="iLIDS-VID/PRID: run every split")
    p.add_argument("--synthetic", action="store_true", help="generate synthetic data under --root")
    p.add_argument("opts", nargs="*", default=[], help="config options: KEY VALUE ...")
    return p


def split_list_flags(argv: Sequence[str]) -> list[str]:
    """``-s`` / ``-t`` take dataset names up to the next flag or config key, so that flags and
    ``KEY VALUE`` options come in any order: ``-s mars train.batch_size 8`` is ``-s mars`` and
    the option ``train.batch_size 8`` (argparse alone would take all three words as dataset
    names). Returns ``argv`` with each name as ``--sources=NAME`` / ``--targets=NAME``; raises
    ``ValueError`` for a flag without a name.

    Example:
        >>> split_list_flags(["-s", "mars", "lsvid", "train.lr", "1", "-t", "mars", "--root", "x"])
        ['--sources=mars', '--sources=lsvid', 'train.lr', '1', '--targets=mars', '--root', 'x']
    """
    out: list[str] = []
    flag, named = None, False
    for i, token in enumerate([*argv, None]):
        if token == "--":
            out.extend(argv[i:])
            break
        if flag and token is not None and not token.startswith("-") and not looks_like_key(token):
            out.append(f"{LIST_FLAGS[flag]}={token}")
            named = True
            continue
        if flag and not named:
            raise ValueError(f"argument {flag}: expected one or more dataset names, got "
                             f"{'nothing' if token is None else repr(token)}")
        flag, named = (token, False) if token in LIST_FLAGS else (None, False)
        if flag is None and token is not None:
            out.append(token)
    return out


def parse_args(argv: Sequence[str] | None = None,
               parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """``tools/train.py``'s command line (default ``sys.argv[1:]``): flags and ``KEY VALUE``
    options in any order (:func:`split_list_flags`); a usage error exits like argparse's.

    Example:
        >>> args = parse_args(["-s", "mars", "train.batch_size", "8", "--arch", "tfclip_tiny"])
        >>> args.sources, args.opts, args.arch
        (['mars'], ['train.batch_size', '8'], 'tfclip_tiny')
    """
    parser = parser or build_parser()
    try:
        argv = split_list_flags(sys.argv[1:] if argv is None else argv)
    except ValueError as err:
        parser.error(str(err))
    return parser.parse_intermixed_args(argv)


def config_from_args(args: argparse.Namespace) -> CfgNode:
    """The default config, merged with ``--config-file`` (and the files it extends with
    ``_BASE_``), the flags and ``KEY VALUE`` pairs."""
    cfg = get_default_config()
    if args.config_file:
        if not osp.isfile(args.config_file):
            raise FileNotFoundError(f"config file not found: {args.config_file}")
        merge_config_file(cfg, args.config_file)
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag)
        if value:
            section, name = key.split(".")
            setattr(getattr(cfg, section), name, value)
    return merge_options(cfg, list(args.opts or []))


def command_line_keys(args: argparse.Namespace) -> frozenset[str]:
    """The config keys the command line sets (its flags and ``KEY VALUE`` pairs): the options
    that win over those a checkpoint describes.

    Example:
        >>> args = build_parser().parse_args(["--config-file", "c.yaml", "model.test_feature",
        ...                                   "paper", "--weights", "w.pth"])
        >>> sorted(command_line_keys(args))
        ['model.load_weights', 'model.test_feature']
    """
    keys = {key for flag, key in FLAG_KEYS.items() if getattr(args, flag)}
    return frozenset(keys | set(list(args.opts or [])[0::2]))


# ---------------------------------------------------------------------------------- checks
def resume_path(cfg: CfgNode) -> str:
    """The checkpoint ``train.resume`` names (``auto``: ``<save_dir>/checkpoints/latest.pth``
    when it exists), or ``""``."""
    if cfg.train.resume == "auto":
        path = osp.join(cfg.data.save_dir, "checkpoints", "latest.pth")
        return path if osp.isfile(path) else ""
    return cfg.train.resume


def run_weights(cfg: CfgNode, explicit: frozenset[str] | None = None) -> Weights | None:
    """The run's weights (``model.load_weights``, else the checkpoint to resume), resolved once;
    None without either.

    ``model.name`` must be the architecture of weights that name theirs when the command line
    sets it (``--arch``; ``explicit`` None: whenever it is set); a config file's yields to the
    weights (logged). Weights that do not name their architecture are ``model.name``'s (default
    ``tfclip_vitb16``), read at the data's frame size.
    """
    spec = cfg.model.load_weights or resume_path(cfg)
    if not spec:
        return None
    name = cfg.model.name or None
    binding = explicit is None or "model.name" in explicit
    return resolve_weights(spec, name if binding else None, default_arch=name or DEFAULT_ARCH,
                           image_size=(cfg.data.height, cfg.data.width))


def model_overrides(cfg: CfgNode) -> dict[str, Any]:
    """The model options the config sets (None = the architecture's default)."""
    return {f["name"]: cfg.model[f["name"]] for f in option_fields()
            if cfg.model[f["name"]] is not None}


def _same(a: Any, b: Any) -> bool:
    return (list(a) if isinstance(a, (list, tuple)) else a) == (
        list(b) if isinstance(b, (list, tuple)) else b)


def model_options(cfg: CfgNode, weights: Weights | None,
                  explicit: frozenset[str] | None = None, log: bool = False) -> dict[str, Any]:
    """The model options ``cfg`` applies on top of the weights' description.

    An option the weights decide that the config sets to another value: with ``explicit`` (the
    keys the command line sets, :func:`command_line_keys`), the command line's value wins and a
    config file's is dropped (logged with ``log``); ``explicit=None`` (a config built in code)
    applies every option ``cfg`` sets. The weights log every change they see
    (:meth:`~tfclip_torchreid.models.weights.Weights.configure`).
    """
    options = model_overrides(cfg)
    if weights is None or explicit is None:
        return options
    kept = {}
    for name, value in options.items():
        theirs = getattr(weights.config, name)
        if name not in weights.described or f"model.{name}" in explicit or _same(value, theirs):
            kept[name] = value
        elif log:
            logger.info(f"=> model.{name}: {weights.source} says {theirs!r}, the config file "
                        f"{value!r}: the weights' {theirs!r} is used (set model.{name} on the "
                        f"command line to override it)")
    return kept


def _norm_value(mean: tuple, std: tuple) -> Any:
    """``data.norm`` for a mean / std: its name when it has one, else the pair."""
    for name in NORM_STATS:
        if all(abs(a - b) < 1e-6 for a, b in zip(norm_stats(name)[0] + norm_stats(name)[1],
                                                  tuple(mean) + tuple(std))):
            return name
    return [list(mean), list(std)]


def _fine_tuning(cfg: CfgNode) -> bool:
    return bool(cfg.model.load_weights) and not cfg.test.evaluate


def _data_changes(cfg: CfgNode, weights: Weights | None,
                  explicit: frozenset[str] | None) -> dict[str, Any]:
    """The ``data`` keys :func:`data_from_weights` changes, with their new values."""
    if weights is None or explicit is None or _fine_tuning(cfg):
        return {}
    wanted = {"height": weights.config.image_size[0], "width": weights.config.image_size[1]}
    if weights.preprocess.source in ("checkpoint", "zoo entry"):
        wanted["norm"] = _norm_value(*weights.preprocess.norm)

    def same(key: str, value: Any) -> bool:
        ours = cfg.data[key]
        return _same(norm_stats(ours), norm_stats(value)) if key == "norm" else ours == value

    return {k: v for k, v in wanted.items() if f"data.{k}" not in explicit and not same(k, v)}


def _with_data(cfg: CfgNode, changes: dict[str, Any]) -> CfgNode:
    """A copy of ``cfg`` with ``data`` keys changed (frozen if ``cfg`` is)."""
    cfg = cfg.clone()
    frozen = cfg.is_frozen()
    cfg.defrost()
    for key, value in changes.items():
        cfg.data[key] = value
    if frozen:
        cfg.freeze()
    return cfg


def data_from_weights(cfg: CfgNode, weights: Weights | None,
                      explicit: frozenset[str] | None = None) -> CfgNode:
    """Evaluating or resuming (not fine-tuning) the weights: ``cfg`` with the frame size of
    their model and the normalisation they record (``preprocess``; old files and plain state
    dicts record none), unless the command line sets them; each change logged. A config built
    in code (``explicit=None``) is returned as it is."""
    changes = _data_changes(cfg, weights, explicit)
    for key, value in changes.items():
        logger.info(f"=> data.{key}: the config's {cfg.data[key]!r} -> {value!r}, the "
                    f"preprocessing of {weights.source} (set data.{key} on the command line to "
                    f"override it)")
    return _with_data(cfg, changes) if changes else cfg


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity; what torch's DataLoader checks)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def capped_workers(cfg: CfgNode) -> CfgNode:
    """``cfg`` with ``data.workers`` at most :func:`available_cpus` (a config written for a
    bigger machine, e.g. 8 workers on 2 CPUs, would only oversubscribe them); logged."""
    cpus = available_cpus()
    if cfg.data.workers <= cpus:
        return cfg
    if du.is_main_process():
        logger.info(f"=> data.workers {cfg.data.workers} -> {cpus}: this machine gives the run "
                    f"{cpus} CPUs")
    return _with_data(cfg, {"workers": cpus})


def _weights_flag(cfg: CfgNode) -> str:
    """The command-line words that named the run's weights."""
    if cfg.model.load_weights:
        return f"--weights {cfg.model.load_weights}"
    if cfg.train.resume == "auto":
        return f"--resume auto ({resume_path(cfg)})"
    return f"--resume {cfg.train.resume}"


def _arch_words(cfg: CfgNode, explicit: frozenset[str] | None) -> str:
    arch = cfg.model.name or DEFAULT_ARCH
    if explicit is not None and "model.name" in explicit:
        return f"--arch {arch}"
    return f"model.name {arch}" if cfg.model.name else f"the default architecture {arch}"


def _check_epochs(cfg: CfgNode) -> None:
    epochs = cfg.train.max_epoch
    if epochs < 0:
        raise ValueError(f"train.max_epoch {epochs}: the number of epochs cannot be negative")
    if epochs == 0 and not cfg.test.evaluate:
        raise ValueError("train.max_epoch 0: a training run needs 1 epoch or more; to evaluate "
                         "weights without training, use --evaluate-only --weights PATH")


def _check_pretrained(cfg: CfgNode, openai_model: str, explicit: frozenset[str] | None) -> None:
    """``model.pretrained`` for a model built from scratch: ``openai`` needs an architecture
    with OpenAI CLIP weights, a path an existing file."""
    spec = OPENAI if cfg.model.pretrained is True else cfg.model.pretrained
    if not isinstance(spec, str):
        return  # None / False (a config built in code): random weights
    if spec == OPENAI and not openai_model:
        with_clip = [a for a in list_archs() if model_config(a, 1, 0).openai_model]
        raise ValueError(
            f"{_arch_words(cfg, explicit)} has no OpenAI CLIP weights (it starts from random "
            f"weights), but model.pretrained is openai: add model.pretrained \"\" (or none) to "
            f"start from random weights, or use an architecture with CLIP weights "
            f"({', '.join(with_clip)})")
    if spec and spec != OPENAI and not osp.isfile(osp.expanduser(spec)):
        raise FileNotFoundError(
            f"model.pretrained {spec}: no such file; give openai (OpenAI's CLIP weights, "
            f"downloaded once), the path of CLIP weights (ViT-B-16.pt or an open_clip state "
            f"dict), or \"\" / none for random weights")


def _check_size(cfg: CfgNode, weights: Weights, explicit: frozenset[str] | None) -> None:
    """The weights' frame size against the one the data will have (see
    :func:`data_from_weights`)."""
    changes = _data_changes(cfg, weights, explicit)
    size = (changes.get("height", cfg.data.height), changes.get("width", cfg.data.width))
    (h, w) = tuple(weights.config.image_size)
    if (h, w) == tuple(size):
        return
    fix = (f"set data.height {h} data.width {w}" if _fine_tuning(cfg) or explicit is None
           else "drop data.height/data.width from the command line (the weights' size is used)")
    raise ValueError(f"{_weights_flag(cfg)} holds a model for {h}x{w} frames, but "
                     f"data.height/data.width are {size[0]}x{size[1]}: {fix}")


def check_config(cfg: CfgNode, weights: Weights | None = None,
                 explicit: frozenset[str] | None = None) -> Weights | None:
    """Everything that can be checked before data is read; raises with the fix in the message.

    Returns the run's weights (:func:`run_weights`, resolved here unless given), for
    :func:`build_engine`: the file is read once. ``explicit``: see :func:`build_engine`.
    """
    arch = cfg.model.name or DEFAULT_ARCH
    if arch not in list_archs():
        raise ValueError(f"unknown architecture {arch!r} (model.name / --arch); available: "
                         f"{list_archs()}")
    mcfg = model_config(arch, 1, 0, image_size=(cfg.data.height, cfg.data.width),
                        **model_overrides(cfg))  # validates every option and its choices
    for key, value, choices in (("train.amp", str(cfg.train.amp).lower(), AMP_MODES),
                                ("test.dist_metric", cfg.test.dist_metric, DIST_METRICS),
                                ("train.lr_step_at", cfg.train.lr_step_at, ("auto", *STEP_AT))):
        if value not in choices:
            raise ValueError(f"{key} must be one of {'|'.join(choices)}, got {value!r}")
    _check_epochs(cfg)
    if cfg.test.evaluate and not cfg.model.load_weights and not resume_path(cfg):
        where = (f" ({osp.join(cfg.data.save_dir, 'checkpoints', 'latest.pth')} does not exist)"
                 if cfg.train.resume == "auto" else "")
        raise ValueError(f"--evaluate-only needs weights: --weights PATH or --resume PATH{where}; "
                         f"evaluating a randomly initialised model would mean nothing")
    if weights is None:
        weights = run_weights(cfg, explicit)
    if weights is None:
        _check_pretrained(cfg, mcfg.openai_model, explicit)
    else:
        _check_size(cfg, weights, explicit)
    if du.is_main_process():
        check_writable(cfg.data.save_dir)
        check_writable(osp.join(cfg.data.save_dir, "checkpoints"))
    return weights


# ---------------------------------------------------------------------------------- building
def ensure_synthetic(cfg: CfgNode) -> None:
    """Generate the synthetic datasets named in sources/targets under ``root`` if absent."""
    for name in dict.fromkeys(list(cfg.data.sources) + list(cfg.data.targets)):
        if name not in SYNTHETIC_FORMATS:
            raise ValueError(f"no synthetic generator for dataset {name!r}; have "
                             f"{sorted(SYNTHETIC_FORMATS)}")
        if du.is_main_process():
            sizes = dict(cfg.data.synthetic_sizes.items())
            make_synthetic_dataset(name, cfg.data.root, seed=cfg.train.seed, **sizes)
    du.barrier()


def build_model_from_config(cfg: CfgNode, dm: Any, weights: Weights | None = None,
                            explicit: frozenset[str] | None = None) -> torch.nn.Module:
    """The model ``cfg`` asks for. With weights (``--weights`` or the checkpoint to resume), the
    model they describe, with the options of :func:`model_options` (each change logged);
    training from ``--weights`` (fine-tuning) sizes the heads, the memory and the camera table
    for the training data (weights of other sizes then need ``model.load_strict False``).
    ``weights`` are :func:`run_weights`' (resolved here unless given)."""
    if weights is None:
        weights = run_weights(cfg, explicit)
    image_size = (cfg.data.height, cfg.data.width)
    if weights is None:
        mcfg = model_config(cfg.model.name or DEFAULT_ARCH, dm.num_train_pids, dm.num_cameras,
                            image_size=image_size, **model_overrides(cfg))
        return create_model(mcfg, pretrained=cfg.model.pretrained or None)
    if cfg.model.name and weights.arch != cfg.model.name:  # only a config file's can differ
        logger.info(f"=> model.name: {weights.source} holds a {weights.arch} model, the config "
                    f"file says {cfg.model.name!r}: {weights.arch} is used (--arch to insist)")
    reason = "set in the config" if explicit is None else "set on the command line"
    mcfg = weights.configure(reason, **model_options(cfg, weights, explicit, log=True))
    if cfg.model.load_weights and not cfg.test.evaluate:  # fine-tuning: this data's heads
        sizes = {"num_classes": dm.num_train_pids, "camera_num": dm.num_cameras}
        for name, value in sizes.items():
            if getattr(mcfg, name) != value:
                logger.info(f"=> model.{name}: {weights.source} says {getattr(mcfg, name)} -> "
                            f"{value} is used (fine-tuning: the training data's)")
        mcfg = dataclasses.replace(mcfg, **sizes)
    if tuple(mcfg.image_size) != image_size:
        raise ValueError(f"{weights.source} was trained on {mcfg.image_size[0]}x"
                         f"{mcfg.image_size[1]} frames but data.height/width are "
                         f"{cfg.data.height}x{cfg.data.width}: set them to the checkpoint's size")
    return create_model(mcfg)


def check_data(cfg: CfgNode, dm: Any, model: torch.nn.Module) -> None:
    """Before any compute: test cameras the camera embedding never trained on, and every frame
    of train and test (a fast header check, cached by file list; rank 0, then the others)."""
    for name in dm.targets:
        check_test_cameras(name, dm.train_set.tracklets, dm.test_dataset[name],
                           use_sie=getattr(model, "cv_embed", None) is not None,
                           allow_unseen=cfg.data.allow_unseen_test_cameras)
    if cfg.data.check_frames and du.is_main_process():
        dm.check_frames()
    du.barrier()


def _describe_weights(weights: Weights) -> str:
    pre = weights.preprocess
    return (f"=> Weights: {weights.source} ({weights.layout} layout): {weights.arch}, "
            f"{weights.config.num_classes} identities, {weights.config.camera_num} cameras; "
            f"preprocessing {pre.describe()} ({pre.source})")


def build_engine(cfg: CfgNode, weights: Weights | None = None,
                 explicit: frozenset[str] | None = None) -> VideoV2MEngine:
    """Data manager, model, optimiser, schedule, loss and engine from ``cfg``.

    ``weights``: :func:`run_weights` (resolved here unless given, e.g. by :func:`check_config`);
    ``explicit``: the keys the command line sets (:func:`command_line_keys`; None: every option
    of ``cfg`` is deliberate), see :func:`model_options` and :func:`data_from_weights`.
    """
    use_gpu = bool(cfg.use_gpu) and torch.cuda.is_available()
    if weights is None:
        weights = run_weights(cfg, explicit)
    if weights is not None and du.is_main_process():
        logger.info(_describe_weights(weights))
    cfg = capped_workers(data_from_weights(cfg, weights, explicit))
    dm = build_datamanager(cfg, distributed=du.is_dist())
    model = build_model_from_config(cfg, dm, weights, explicit)
    check_data(cfg, dm, model)
    epochs_done = 0
    if cfg.model.load_weights:
        load_model_weights(model, weights, strict=cfg.model.load_strict)
        epoch = weights.checkpoint.get("epoch")
        epochs_done = epoch if isinstance(epoch, int) else 0
    t = cfg.train
    optimizer = build_tfclip_optimizer(
        model, lr=t.lr, weight_decay=t.weight_decay, bias_lr_factor=t.bias_lr_factor,
        weight_decay_bias=t.weight_decay_bias, large_fc_lr=t.large_fc_lr,
        fc_lr_factor=t.fc_lr_factor, temporal_lr_factor=t.temporal_lr_factor)
    scheduler = WarmupMultiStepLR(optimizer, milestones=tuple(t.milestones), gamma=t.gamma,
                                  warmup_factor=t.warmup_factor, warmup_epochs=t.warmup_epochs,
                                  step_at=lr_step_at(cfg, model))
    loss = cfg.loss
    criterion = TFCLIPLoss(
        num_classes=model.num_classes, id_weight=loss.id_weight,
        triplet_weight=loss.triplet_weight, v2m_weight=loss.v2m_weight,
        frame_weight=loss.frame_weight, margin=loss.margin, label_smooth=loss.label_smooth,
        v2m=model.cfg.v2m)
    cache = t.memory_cache_dir
    engine = VideoV2MEngine(
        dm, model, optimizer, scheduler, criterion=criterion, use_gpu=use_gpu, amp=t.amp,
        grad_clip=t.grad_clip,
        memory_cache_dir=None if cache == "" else ("" if cache.lower() == "none" else cache),
        max_clips_per_forward=cfg.test.max_clips_per_forward, keep_last=t.keep_last,
        compile_model=cfg.model.compile,
        prompt_stage=PromptStageConfig(seed=t.seed, **dict(cfg.stage1.items())),
        save_features=cfg.test.save_features)
    engine.epochs_done = epochs_done  # the weights' epochs (results.json says which model)
    return engine


def lr_step_at(cfg: CfgNode, model: torch.nn.Module) -> str:
    """Where the stage-2 schedule steps (:data:`~tfclip_torchreid.optim.STEP_AT`):
    ``train.lr_step_at``, whose ``auto`` follows the method's reference: CLIP-ReID's processors
    step at the top of each epoch (models with ``memory_source="text"``), TF-CLIP's after it."""
    if cfg.train.lr_step_at != "auto":
        return cfg.train.lr_step_at
    return "start" if model.cfg.memory_source == "text" else "end"


# ---------------------------------------------------------------------------------- running
def _test_kwargs(cfg: CfgNode) -> dict[str, Any]:
    return dict(dist_metric=cfg.test.dist_metric, normalize_feature=cfg.test.normalize_feature,
                visrank=cfg.test.visrank, visrank_topk=cfg.test.visrank_topk,
                ranks=list(cfg.test.ranks), rerank=cfg.test.rerank)


def _snapshot(engine: VideoV2MEngine) -> dict[str, dict]:
    return {k: dict(v) for k, v in engine.results.items()}


def run_engine(cfg: CfgNode, engine: VideoV2MEngine,
               weights: Weights | None = None) -> dict[str, Any]:
    """Resume if asked, evaluate before training if asked, train, test; return results.

    ``weights``: the run's resolved weights; when they are the checkpoint to resume, the file is
    not read again."""
    start_epoch = cfg.train.start_epoch
    resume = resume_path(cfg)
    if resume:
        same = (weights is not None and not cfg.model.load_weights and weights.checkpoint
                and osp.abspath(weights.path) == osp.abspath(osp.expanduser(resume)))
        start_epoch = engine.resume(weights if same else resume)
        if start_epoch >= cfg.train.max_epoch and not cfg.test.evaluate and du.is_main_process():
            logger.info(f"=> {resume} has finished training ({start_epoch}/{cfg.train.max_epoch} "
                        f"epochs): evaluating only, no checkpoint is written")
    elif cfg.train.resume == "auto" and du.is_main_process():
        logger.info(f"=> --resume auto: no {osp.join(cfg.data.save_dir, 'checkpoints', 'latest.pth')}"
                    f", starting from scratch")
    kwargs = _test_kwargs(cfg)
    out: dict[str, Any] = {"before": None, "after": None}
    if cfg.test.evaluate:
        engine.run(save_dir=cfg.data.save_dir, test_only=True, **kwargs)
    else:
        if cfg.test.eval_before_train:
            logger.info("=> Evaluating before training")
            engine.test(save_dir=cfg.data.save_dir, **kwargs)
            out["before"] = _snapshot(engine)
        fit = {k: v for k, v in kwargs.items() if k not in ("visrank", "visrank_topk", "rerank")}
        engine.run(save_dir=cfg.data.save_dir, max_epoch=cfg.train.max_epoch,
                   start_epoch=start_epoch, print_freq=cfg.train.print_freq,
                   eval_freq=cfg.test.eval_freq, start_eval=cfg.test.start_eval, **fit)
    out["after"] = _snapshot(engine)
    out["timings"] = dict(engine.timings)  # results.json: written by every evaluation
    return out


def run_from_config(cfg: CfgNode, weights: Weights | None = None,
                    explicit: frozenset[str] | None = None) -> dict[str, Any]:
    """Run one experiment (or every split with ``data.all_splits``); returns the results.

    ``weights``: already resolved by :func:`check_config` (else resolved here); ``explicit``:
    see :func:`build_engine`.
    """
    weights = check_config(cfg, weights, explicit)
    compat.set_random_seed(cfg.train.seed)
    if cfg.data.synthetic:
        ensure_synthetic(cfg)
    if not cfg.data.all_splits:
        return run_engine(cfg, build_engine(cfg, weights, explicit), weights)
    return run_all_splits(cfg, weights, explicit)


def run_all_splits(cfg: CfgNode, weights: Weights | None = None,
                   explicit: frozenset[str] | None = None) -> dict[str, Any]:
    """The iLIDS-VID / PRID-2011 protocol: train and test every split, report each and the mean."""
    names = list(cfg.data.sources)
    if len(names) != 1:
        raise ValueError("--all-splits runs one dataset at a time; got sources " + str(names))
    n = num_splits(names[0], cfg.data.root)
    if not cfg.model.load_weights:
        weights = None  # each split resumes from its own folder
    per_split = []
    base_dir = cfg.data.save_dir
    for split in range(n):
        c = cfg.clone()
        c.defrost()
        c.data.split_id, c.data.all_splits = split, False
        c.data.save_dir = osp.join(base_dir, f"split_{split}")
        logger.info(f"\n##### {names[0]} split {split + 1}/{n} #####")
        compat.set_random_seed(c.train.seed)
        per_split.append(next(iter(run_engine(c, build_engine(c, weights, explicit), weights)[
            "after"].values())))
    keys = [k for k in per_split[0] if k.startswith("R") or k in ("mAP", "mINP")]
    mean = {k: sum(r[k] for r in per_split) / n for k in keys}
    if du.is_main_process():
        logger.info(f"\n##### {names[0]}: {n} splits #####")
        logger.info("split | " + " | ".join(keys))
        for i, r in enumerate(per_split):
            logger.info(f"{i:5d} | " + " | ".join(f"{r[k]:.1%}" for k in keys))
        logger.info(" mean | " + " | ".join(f"{mean[k]:.1%}" for k in keys))
        os.makedirs(base_dir, exist_ok=True)
        with open(osp.join(base_dir, "splits.csv"), "w") as f:
            f.write("split," + ",".join(keys) + "\n")
            for i, r in enumerate(per_split):
                f.write(f"{i}," + ",".join(f"{r[k]:.6f}" for k in keys) + "\n")
            f.write("mean," + ",".join(f"{mean[k]:.6f}" for k in keys) + "\n")
    return {"splits": per_split, "mean": mean}


def summary_table(out: dict[str, Any]) -> str:
    """Before/after (or final) mAP and CMC per dataset, as printed at the end of a run.

    Example:
        >>> print(summary_table({"before": {"mars": {"mAP": 0.1, "R1": 0.0}},
        ...                      "after": {"mars": {"mAP": 0.5, "R1": 0.4}}}))
        dataset | metric | before | after
        mars    | mAP    |  10.0% | 50.0%
        mars    | R1     |   0.0% | 40.0%
    """
    before, after = out.get("before") or {}, out.get("after") or {}
    w = max([len("dataset")] + [len(name) for name in after])
    lines = [f"{'dataset':<{w}} | metric | before | after" if before
             else f"{'dataset':<{w}} | metric | result"]
    for name, res in after.items():
        for key in [k for k in res if k == "mAP" or (k.startswith("R") and k[1:].isdigit())]:
            if before:
                lines.append(f"{name:<{w}} | {key:<6} | {before[name][key]:>6.1%} | "
                             f"{res[key]:.1%}")
            else:
                lines.append(f"{name:<{w}} | {key:<6} | {res[key]:.1%}")
    return "\n".join(lines)


class ConsoleLogger(compat.utils.Logger):
    """torchreid's console + file ``Logger`` (a tee of ``sys.stdout``), flushed at every line so
    a redirected run shows its progress as it goes; closing it closes only its file (torchreid's
    closes ``sys.stdout``). The package's log records and Python warnings reach it through
    :func:`~tfclip_torchreid.utils.logger.console_logging`.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "train.log")
        >>> log = ConsoleLogger(path)
        >>> log.write("epoch 1 done\\n")
        epoch 1 done
        >>> log.close()
        >>> open(path).read()
        'epoch 1 done\\n'
    """

    def write(self, msg: str) -> None:
        super().write(msg)
        if "\n" in msg:
            self.flush()

    def close(self) -> None:
        if self.file is not None and not self.file.closed:
            self.file.flush()
            self.file.close()


def _paths(cfg: CfgNode, log_path: str, written: bool = False) -> str:
    """Where the run writes; ``written``: only what exists (the closing line)."""
    save = osp.abspath(cfg.data.save_dir)
    paths = {"log": log_path, "checkpoints": osp.join(save, "checkpoints"),
             "results": osp.join(save, "results.json"),
             "summary": osp.join(save, "summary.json"), "tensorboard": save}
    if written:
        paths = {k: v for k, v in paths.items() if osp.exists(v)
                 and (k != "checkpoints" or any(f.endswith(".pth") for f in os.listdir(v)))}
    return " | ".join(f"{k}: {v}" for k, v in paths.items())


def interrupted_note(cfg: CfgNode) -> str:
    """What to do after Ctrl-C stopped a run of ``cfg``."""
    if cfg.test.evaluate:
        return "nothing to resume (an evaluation): run the same command again"
    latest = osp.join(cfg.data.save_dir, "checkpoints", "latest.pth")
    if osp.isfile(latest):
        return (f"{latest} holds the last finished epoch: run the same command with "
                f"--resume auto to continue from it")
    return f"no epoch had finished ({latest} does not exist): run the same command to start over"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``tools/train.py``: parse, check, log, run; returns the results.

    The run holds ``<save_dir>/run.lock`` (rank 0: :class:`~tfclip_torchreid.utils.run_lock.
    RunLock`): a second run into the same folder is refused, naming this one. Ctrl-C raises
    ``KeyboardInterrupt`` with what to do next (:func:`interrupted_note`)."""
    args = parse_args(argv)
    cfg = config_from_args(args)
    explicit = command_line_keys(args)
    distributed = du.init_distributed()
    weights = check_config(cfg, explicit=explicit)
    lock = RunLock(cfg.data.save_dir) if du.is_main_process() else None
    if lock is not None:
        lock.acquire()
    stdout, log_path = sys.stdout, ""
    try:
        if distributed and not du.is_main_process():
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - only rank 0 shows torchreid's
        else:
            name = "test.log" if cfg.test.evaluate else "train.log"
            log_path = osp.abspath(osp.join(cfg.data.save_dir, time.strftime("%Y%m%d-%H%M%S-")
                                            + name))
            sys.stdout = ConsoleLogger(log_path)
        cfg.freeze()
        with console_logging(enabled=du.is_main_process()):
            logger.info(f"Show configuration\n{cfg}\n")
            logger.info(f"torchreid layout: {compat.LAYOUT} ({compat.ROOT}); world size "
                        f"{du.get_world_size()}")
            logger.info(f"=> Writing {_paths(cfg, log_path)}")
            out = run_from_config(cfg, weights, explicit)
            if "after" in out and du.is_main_process():
                logger.info("\n" + summary_table(out))
                save_json({k: out.get(k) for k in ("before", "after", "timings")},
                          osp.join(cfg.data.save_dir, "summary.json"))
            logger.info(f"=> Wrote {_paths(cfg, log_path, written=True)}")
            return out
    except KeyboardInterrupt:
        raise KeyboardInterrupt(interrupted_note(cfg)) from None
    finally:
        du.cleanup()
        tee, sys.stdout = sys.stdout, stdout
        if tee is not stdout:
            tee.close()
        if lock is not None:
            lock.release()
