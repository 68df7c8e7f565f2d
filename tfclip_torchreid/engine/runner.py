"""From a config to results: what ``tools/train.py`` runs (torchreid's ``scripts/main.py`` style).

Everything that can be wrong with the command line is found before any data is read: unknown
flags or options, an unknown architecture, a bad model option, an unwritable output folder,
``--evaluate-only`` without weights. The run prints where its log, checkpoints and results go,
at the start and at the end, and writes ``results.json`` after every evaluation.

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
from typing import Any

import torch
from yacs.config import CfgNode

from .. import compat
from ..config import get_default_config, merge_config_file
from ..data.datamanager import build_datamanager
from ..data.datasets import num_splits
from ..data.tracklet_checks import check_test_cameras
from ..losses import TFCLIPLoss
from ..models import zoo
from ..models.config import option_fields
from ..models.factory import (
    create_model,
    list_archs,
    load_model_weights,
    model_config,
    model_config_from_checkpoint,
)
from ..optim import WarmupMultiStepLR, build_tfclip_optimizer
from ..testing import make_synthetic_dataset
from ..utils import distributed as du
from ..utils.checkpoint import load_checkpoint, read_header, save_json
from ..utils.logger import console_logging
from .checkpoint import check_writable
from .evaluation import DIST_METRICS
from .precision import AMP_MODES
from .prompt_learning import PromptStageConfig
from .v2m_engine import VideoV2MEngine

logger = logging.getLogger(__name__)

__all__ = ["build_parser", "config_from_args", "check_config", "build_engine", "run_engine",
           "run_from_config", "main"]

SYNTHETIC_FORMATS = {"mars": "mars", "ilidsvid": "ilidsvid", "lsvid": "lsvid",
                     "market1501": "market1501"}
DEFAULT_ARCH = "tfclip_vitb16"


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
    p.add_argument("-s", "--sources", type=str, nargs="+", help="source datasets")
    p.add_argument("-t", "--targets", type=str, nargs="+", help="target datasets")
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


def config_from_args(args: argparse.Namespace) -> CfgNode:
    """The default config, merged with ``--config-file`` (and the files it extends with
    ``_BASE_``), the flags and ``KEY VALUE`` pairs."""
    cfg = get_default_config()
    if args.config_file:
        if not osp.isfile(args.config_file):
            raise FileNotFoundError(f"config file not found: {args.config_file}")
        merge_config_file(cfg, args.config_file)
    flags = {  # command-line flag -> config key (flags win over the config file)
        "arch": "model.name", "sources": "data.sources", "targets": "data.targets",
        "root": "data.root", "save_dir": "data.save_dir", "weights": "model.load_weights",
        "resume": "train.resume", "evaluate_only": "test.evaluate", "all_splits": "data.all_splits",
        "synthetic": "data.synthetic",
    }
    for flag, key in flags.items():
        value = getattr(args, flag)
        if value:
            section, name = key.split(".")
            setattr(getattr(cfg, section), name, value)
    opts = list(args.opts or [])
    if len(opts) % 2:
        raise ValueError(f"config options must be KEY VALUE pairs, got {opts}")
    try:
        cfg.merge_from_list(opts)
    except (KeyError, AssertionError) as err:
        raise ValueError(f"bad config option in {opts}: {err}") from err
    return cfg


# ---------------------------------------------------------------------------------- checks
def resume_path(cfg: CfgNode) -> str:
    """The checkpoint ``train.resume`` names (``auto``: ``<save_dir>/checkpoints/latest.pth``
    when it exists), or ``""``."""
    if cfg.train.resume == "auto":
        path = osp.join(cfg.data.save_dir, "checkpoints", "latest.pth")
        return path if osp.isfile(path) else ""
    return cfg.train.resume


def _weights_header(path: str) -> dict | None:
    """What a weights file (or ``zoo:NAME``) says about its model: arch and model config."""
    if not path:
        return None
    if zoo.is_zoo(path):
        spec = zoo.zoo_model_kwargs(path)
        return {"arch": spec.arch, "zoo": spec}
    if not osp.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    return read_header(load_checkpoint(path))


def model_overrides(cfg: CfgNode) -> dict[str, Any]:
    """The model options the config sets (None = the architecture's default)."""
    return {f["name"]: cfg.model[f["name"]] for f in option_fields()
            if cfg.model[f["name"]] is not None}


def check_config(cfg: CfgNode) -> None:
    """Everything that can be checked before data is read; raises with the fix in the message."""
    arch = cfg.model.name or DEFAULT_ARCH
    if arch not in list_archs():
        raise ValueError(f"unknown architecture {arch!r} (model.name / --arch); available: "
                         f"{list_archs()}")
    model_config(arch, 1, 0, image_size=(cfg.data.height, cfg.data.width),
                 **model_overrides(cfg))  # validates every option and its choices
    for key, value, choices in (("train.amp", str(cfg.train.amp).lower(), AMP_MODES),
                                ("test.dist_metric", cfg.test.dist_metric, DIST_METRICS)):
        if value not in choices:
            raise ValueError(f"{key} must be one of {'|'.join(choices)}, got {value!r}")
    if cfg.test.evaluate and not cfg.model.load_weights and not resume_path(cfg):
        where = (f" ({osp.join(cfg.data.save_dir, 'checkpoints', 'latest.pth')} does not exist)"
                 if cfg.train.resume == "auto" else "")
        raise ValueError(f"--evaluate-only needs weights: --weights PATH or --resume PATH{where}; "
                         f"evaluating a randomly initialised model would mean nothing")
    header = _weights_header(cfg.model.load_weights) or _weights_header(resume_path(cfg))
    if header is not None and cfg.model.name and header["arch"] != cfg.model.name:
        raise ValueError(f"the weights hold a {header['arch']} model but model.name is "
                         f"{cfg.model.name!r}: pass --arch {header['arch']} (or omit it)")
    if du.is_main_process():
        check_writable(cfg.data.save_dir)
        check_writable(osp.join(cfg.data.save_dir, "checkpoints"))


# ---------------------------------------------------------------------------------- building
def ensure_synthetic(cfg: CfgNode) -> None:
    """Generate the synthetic datasets named in sources/targets under ``root`` if absent."""
    for name in dict.fromkeys(list(cfg.data.sources) + list(cfg.data.targets)):
        if name not in SYNTHETIC_FORMATS:
            raise ValueError(f"no synthetic generator for dataset {name!r}; have "
                             f"{sorted(SYNTHETIC_FORMATS)}")
        if du.is_main_process():
            sizes = dict(cfg.data.synthetic_sizes.items())
            make_synthetic_dataset(SYNTHETIC_FORMATS[name], cfg.data.root, seed=cfg.train.seed,
                                   **sizes)
    du.barrier()


def build_model_from_config(cfg: CfgNode, dm: Any) -> torch.nn.Module:
    """The model ``cfg`` asks for. With ``--weights`` (or a checkpoint to resume) that describes
    its model, that description is the base and the config's options override it; training
    from ``--weights`` (fine-tuning) sizes the heads, the memory and the camera table for the
    training data (weights of other sizes then need ``model.load_strict False``)."""
    weights = cfg.model.load_weights or resume_path(cfg)
    header = _weights_header(weights)
    overrides = model_overrides(cfg)
    image_size = (cfg.data.height, cfg.data.width)
    if header is not None and "zoo" in header:  # the zoo entry describes the model
        spec = header["zoo"]
        mcfg = model_config(spec.arch, spec.num_classes, spec.camera_num,
                            **{**spec.switches, "image_size": image_size, **overrides})
    elif header is not None:
        mcfg = model_config_from_checkpoint(load_checkpoint(weights), **overrides)
    if header is not None:
        if cfg.model.load_weights and not cfg.test.evaluate:  # fine-tuning: this data's heads
            mcfg = dataclasses.replace(mcfg, num_classes=dm.num_train_pids,
                                       camera_num=dm.num_cameras)
        if tuple(mcfg.image_size) != (cfg.data.height, cfg.data.width):
            raise ValueError(f"{weights} was trained on {mcfg.image_size[0]}x{mcfg.image_size[1]}"
                             f" frames but data.height/width are {cfg.data.height}x"
                             f"{cfg.data.width}: set them to the checkpoint's size")
        return create_model(mcfg)
    pretrained = None if weights else (cfg.model.pretrained or None)
    mcfg = model_config(cfg.model.name or DEFAULT_ARCH, dm.num_train_pids, dm.num_cameras,
                        image_size=image_size, **overrides)
    return create_model(mcfg, pretrained=pretrained)


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


def build_engine(cfg: CfgNode) -> VideoV2MEngine:
    """Data manager, model, optimiser, schedule, loss and engine from ``cfg``."""
    use_gpu = bool(cfg.use_gpu) and torch.cuda.is_available()
    dm = build_datamanager(cfg, distributed=du.is_dist())
    model = build_model_from_config(cfg, dm)
    check_data(cfg, dm, model)
    epochs_done = 0
    if cfg.model.load_weights:
        path = zoo.resolve_weights(cfg.model.load_weights)
        weights = load_checkpoint(path)
        load_model_weights(model, weights, source=path, strict=cfg.model.load_strict)
        epoch = weights.get("epoch")
        epochs_done = epoch if isinstance(epoch, int) else 0
    t = cfg.train
    optimizer = build_tfclip_optimizer(
        model, lr=t.lr, weight_decay=t.weight_decay, bias_lr_factor=t.bias_lr_factor,
        weight_decay_bias=t.weight_decay_bias, large_fc_lr=t.large_fc_lr,
        fc_lr_factor=t.fc_lr_factor, temporal_lr_factor=t.temporal_lr_factor)
    scheduler = WarmupMultiStepLR(optimizer, milestones=tuple(t.milestones), gamma=t.gamma,
                                  warmup_factor=t.warmup_factor, warmup_epochs=t.warmup_epochs)
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


# ---------------------------------------------------------------------------------- running
def _test_kwargs(cfg: CfgNode) -> dict[str, Any]:
    return dict(dist_metric=cfg.test.dist_metric, normalize_feature=cfg.test.normalize_feature,
                visrank=cfg.test.visrank, visrank_topk=cfg.test.visrank_topk,
                ranks=list(cfg.test.ranks), rerank=cfg.test.rerank)


def _snapshot(engine: VideoV2MEngine) -> dict[str, dict]:
    return {k: dict(v) for k, v in engine.results.items()}


def run_engine(cfg: CfgNode, engine: VideoV2MEngine) -> dict[str, Any]:
    """Resume if asked, evaluate before training if asked, train, test; return results."""
    start_epoch = cfg.train.start_epoch
    resume = resume_path(cfg)
    if resume:
        start_epoch = engine.resume(resume)
        if start_epoch >= cfg.train.max_epoch and not cfg.test.evaluate and du.is_main_process():
            logger.info(f"=> {resume} has finished training ({start_epoch}/{cfg.train.max_epoch} "
                        f"epochs): evaluating only, no checkpoint is written")
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


def run_from_config(cfg: CfgNode) -> dict[str, Any]:
    """Run one experiment (or every split with ``data.all_splits``); returns the results."""
    check_config(cfg)
    compat.set_random_seed(cfg.train.seed)
    if cfg.data.synthetic:
        ensure_synthetic(cfg)
    if not cfg.data.all_splits:
        return run_engine(cfg, build_engine(cfg))
    return run_all_splits(cfg)


def run_all_splits(cfg: CfgNode) -> dict[str, Any]:
    """The iLIDS-VID / PRID-2011 protocol: train and test every split, report each and the mean."""
    names = list(cfg.data.sources)
    if len(names) != 1:
        raise ValueError("--all-splits runs one dataset at a time; got sources " + str(names))
    n = num_splits(names[0], cfg.data.root)
    per_split = []
    base_dir = cfg.data.save_dir
    for split in range(n):
        c = cfg.clone()
        c.defrost()
        c.data.split_id, c.data.all_splits = split, False
        c.data.save_dir = osp.join(base_dir, f"split_{split}")
        logger.info(f"\n##### {names[0]} split {split + 1}/{n} #####")
        compat.set_random_seed(c.train.seed)
        per_split.append(next(iter(run_engine(c, build_engine(c))["after"].values())))
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


def _paths(cfg: CfgNode, log_path: str) -> str:
    save = osp.abspath(cfg.data.save_dir)
    return (f"log: {log_path} | checkpoints: {osp.join(save, 'checkpoints')} | results: "
            f"{osp.join(save, 'results.json')} | summary: {osp.join(save, 'summary.json')} | "
            f"tensorboard: {save}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``tools/train.py``: parse, check, log, run; returns the results."""
    args = build_parser().parse_intermixed_args(argv)
    cfg = config_from_args(args)
    distributed = du.init_distributed()
    check_config(cfg)
    stdout, log_path = sys.stdout, ""
    if distributed and not du.is_main_process():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - only rank 0 shows torchreid's lines
    else:
        name = "test.log" if cfg.test.evaluate else "train.log"
        log_path = osp.abspath(osp.join(cfg.data.save_dir, time.strftime("%Y%m%d-%H%M%S-")
                                        + name))
        sys.stdout = ConsoleLogger(log_path)
    cfg.freeze()
    try:
        with console_logging(enabled=du.is_main_process()):
            logger.info(f"Show configuration\n{cfg}\n")
            logger.info(f"torchreid layout: {compat.LAYOUT} ({compat.ROOT}); world size "
                        f"{du.get_world_size()}")
            logger.info(f"=> Writing {_paths(cfg, log_path)}")
            out = run_from_config(cfg)
            if "after" in out and du.is_main_process():
                logger.info("\n" + summary_table(out))
                save_json({k: out.get(k) for k in ("before", "after", "timings")},
                          osp.join(cfg.data.save_dir, "summary.json"))
            logger.info(f"=> Wrote {_paths(cfg, log_path)}")
            return out
    finally:
        du.cleanup()
        tee, sys.stdout = sys.stdout, stdout
        if tee is not stdout:
            tee.close()
