"""From a config to results: what ``tools/train.py`` runs (torchreid's ``scripts/main.py`` style).

Example:
    >>> from tfclip_torchreid.config import get_default_config
    >>> cfg = get_default_config()
    >>> cfg.merge_from_file("configs/demo.yaml")  # doctest: +SKIP
    >>> results = run_from_config(cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import Any

import torch
from yacs.config import CfgNode

from .. import compat
from ..config import get_default_config
from ..data.datamanager import TFCLIPVideoDataManager
from ..losses import TFCLIPLoss
from ..models.factory import build_tfclip, load_model_weights
from ..optim import WarmupMultiStepLR, build_tfclip_optimizer
from . import distributed as du
from .checkpoint import load_checkpoint
from .v2m_engine import VideoV2MEngine

SYNTHETIC_FORMATS = {"mars": "mars", "ilidsvid": "ilidsvid", "lsvid": "lsvid"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train / evaluate TF-CLIP with torchreid",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config-file", type=str, default="", help="path to a yaml config")
    p.add_argument("--arch", type=str, default="", help="model name, e.g. tfclip_vitb16")
    p.add_argument("-s", "--sources", type=str, nargs="+", help="source datasets (delimited by space)")
    p.add_argument("-t", "--targets", type=str, nargs="+", help="target datasets (delimited by space)")
    p.add_argument("--root", type=str, default="", help="root path to data directory")
    p.add_argument("--save-dir", type=str, default="", help="where logs and checkpoints go")
    p.add_argument("--weights", type=str, default="", help="model weights to load (ours or the authors')")
    p.add_argument("--resume", type=str, default="", help="checkpoint to resume from, or 'auto'")
    p.add_argument("--evaluate-only", action="store_true", help="only evaluate (with --weights)")
    p.add_argument("--all-splits", action="store_true", help="iLIDS-VID/PRID: run every split")
    p.add_argument("--synthetic", action="store_true", help="generate synthetic data under --root")
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="modify config options (KEY VALUE)")
    return p


def config_from_args(args: argparse.Namespace) -> CfgNode:
    cfg = get_default_config()
    if args.config_file:
        if not osp.isfile(args.config_file):
            raise FileNotFoundError(f"config file not found: {args.config_file}")
        cfg.merge_from_file(args.config_file)
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
    if opts and opts[0] == "--":
        opts = opts[1:]
    if len(opts) % 2:
        raise ValueError(f"opts must be KEY VALUE pairs, got {opts}")
    cfg.merge_from_list(opts)
    if cfg.test.evaluate and not cfg.model.load_weights and not cfg.train.resume:
        raise ValueError("--evaluate-only needs --weights PATH (a checkpoint to evaluate)")
    return cfg


def _gallery_option(value: str) -> bool | None:
    v = str(value).lower()
    if v in ("auto", "none", ""):
        return None
    if v in ("yes", "true", "1"):
        return True
    if v in ("no", "false", "0"):
        return False
    raise ValueError(f"data.gallery_includes_query must be auto|yes|no, got {value!r}")


def ensure_synthetic(cfg: CfgNode) -> None:
    """Generate the synthetic datasets named in sources/targets under ``root`` if absent."""
    from ..data.synthetic import make_synthetic_dataset

    for name in dict.fromkeys(list(cfg.data.sources) + list(cfg.data.targets)):
        if name not in SYNTHETIC_FORMATS:
            raise ValueError(f"no synthetic generator for dataset {name!r}; have {sorted(SYNTHETIC_FORMATS)}")
        if du.is_main_process():
            sizes = {k: v for k, v in cfg.data.synthetic_sizes.items()}
            make_synthetic_dataset(SYNTHETIC_FORMATS[name], cfg.data.root, seed=cfg.train.seed, **sizes)
    du.barrier()


def build_datamanager(cfg: CfgNode, use_gpu: bool) -> TFCLIPVideoDataManager:
    return TFCLIPVideoDataManager(
        root=cfg.data.root,
        sources=list(cfg.data.sources),
        targets=list(cfg.data.targets) or None,
        height=cfg.data.height,
        width=cfg.data.width,
        seq_len=cfg.data.seq_len,
        train_sample_method=cfg.data.train_sample_method,
        test_sample_method=cfg.data.test_sample_method,
        batch_size_train=cfg.train.batch_size,
        num_instances=cfg.sampler.num_instances,
        batch_size_test=cfg.test.batch_size,
        workers=cfg.data.workers,
        norm=cfg.data.norm,
        erasing=cfg.data.erasing,
        flip=cfg.data.flip,
        split_id=cfg.data.split_id,
        use_gpu=use_gpu,
        gallery_includes_query=_gallery_option(cfg.data.gallery_includes_query),
        distributed=du.is_dist(),
        seed=cfg.train.seed,
    )


def build_model_from_config(cfg: CfgNode, num_classes: int, camera_num: int) -> torch.nn.Module:
    pretrained = cfg.model.pretrained or None
    if cfg.test.evaluate or cfg.model.load_weights or cfg.train.resume:
        pretrained = None  # the loaded weights replace the CLIP initialisation anyway
    return build_tfclip(
        cfg.model.name,
        num_classes=num_classes,
        camera_num=camera_num,
        pretrained=pretrained,
        image_size=(cfg.data.height, cfg.data.width),
        sie_coe=cfg.model.sie_coe,
        use_sie=cfg.model.use_sie,
        use_memory=cfg.model.use_memory,
        use_ssp=cfg.model.use_ssp,
        ssp_form=cfg.model.ssp_form,
        ssp_layers=cfg.model.ssp_layers,
        temporal=cfg.model.temporal,
        tmd_detach=cfg.model.tmd_detach,
        test_feature=cfg.model.test_feature,
        v2m=cfg.model.v2m,
        stride=cfg.model.stride,
        grad_checkpointing=cfg.model.grad_checkpointing,
    )


def build_engine(cfg: CfgNode) -> VideoV2MEngine:
    """Data manager, model, optimiser, schedule, loss and engine from ``cfg``."""
    use_gpu = bool(cfg.use_gpu) and torch.cuda.is_available()
    dm = build_datamanager(cfg, use_gpu)
    model = build_model_from_config(cfg, dm.num_train_pids, dm.num_cameras)
    if cfg.model.load_weights:
        load_model_weights(model, load_checkpoint(cfg.model.load_weights), source=cfg.model.load_weights)
    optimizer = build_tfclip_optimizer(
        model,
        lr=cfg.train.lr,
        weight_decay=cfg.train.weight_decay,
        bias_lr_factor=cfg.train.bias_lr_factor,
        weight_decay_bias=cfg.train.weight_decay_bias,
        large_fc_lr=cfg.train.large_fc_lr,
        fc_lr_factor=cfg.train.fc_lr_factor,
        temporal_lr_factor=cfg.train.temporal_lr_factor,
    )
    scheduler = WarmupMultiStepLR(
        optimizer,
        milestones=tuple(cfg.train.milestones),
        gamma=cfg.train.gamma,
        warmup_factor=cfg.train.warmup_factor,
        warmup_epochs=cfg.train.warmup_epochs,
    )
    criterion = TFCLIPLoss(
        num_classes=dm.num_train_pids,
        id_weight=cfg.loss.id_weight,
        triplet_weight=cfg.loss.triplet_weight,
        v2m_weight=cfg.loss.v2m_weight,
        frame_weight=cfg.loss.frame_weight,
        margin=cfg.loss.margin,
        label_smooth=cfg.loss.label_smooth,
        v2m=cfg.model.v2m,
    )
    cache = cfg.train.memory_cache_dir
    engine = VideoV2MEngine(
        dm,
        model,
        optimizer,
        scheduler,
        criterion=criterion,
        use_gpu=use_gpu,
        amp=cfg.train.amp,
        grad_clip=cfg.train.grad_clip,
        memory_cache_dir=None if cache == "" else ("" if cache.lower() == "none" else cache),
        max_clips_per_forward=cfg.test.max_clips_per_forward,
        checkpoint_every=cfg.train.checkpoint_every,
        compile_model=cfg.model.compile,
    )
    return engine


def run_engine(cfg: CfgNode, engine: VideoV2MEngine) -> dict[str, Any]:
    """Resume if asked, evaluate before training if asked, train, test; return results."""
    start_epoch = cfg.train.start_epoch
    resume = cfg.train.resume
    if resume == "auto":
        resume = osp.join(cfg.data.save_dir, "checkpoints", "latest.pth")
        resume = resume if osp.isfile(resume) else ""
    if resume:
        start_epoch = engine.resume(resume)
    kwargs = dict(
        dist_metric=cfg.test.dist_metric,
        normalize_feature=cfg.test.normalize_feature,
        visrank=cfg.test.visrank,
        visrank_topk=cfg.test.visrank_topk,
        ranks=list(cfg.test.ranks),
        rerank=cfg.test.rerank,
    )
    out: dict[str, Any] = {"before": None, "after": None}
    if cfg.test.evaluate:
        engine.run(save_dir=cfg.data.save_dir, test_only=True, **kwargs)
        out["after"] = {k: dict(v) for k, v in engine.results.items()}
        return out
    if cfg.test.eval_before_train:
        print("=> Evaluating before training")
        engine.test(save_dir=cfg.data.save_dir, **{k: v for k, v in kwargs.items()})
        out["before"] = {k: dict(v) for k, v in engine.results.items()}
    engine.run(
        save_dir=cfg.data.save_dir,
        max_epoch=cfg.train.max_epoch,
        start_epoch=start_epoch,
        print_freq=cfg.train.print_freq,
        eval_freq=cfg.test.eval_freq,
        start_eval=cfg.test.start_eval,
        **{k: v for k, v in kwargs.items() if k not in ("visrank", "visrank_topk", "rerank")},
    )
    out["after"] = {k: dict(v) for k, v in engine.results.items()}
    out["timings"] = dict(engine.timings)
    write_results(cfg, out, engine)
    return out


def write_results(cfg: CfgNode, out: dict[str, Any], engine: VideoV2MEngine) -> None:
    """``<save_dir>/results.json``: one row per test dataset (read by tools/benchmark_table.py)."""
    if not du.is_main_process():
        return
    timings = out.get("timings", {})
    rows = []
    for name, res in (out.get("after") or {}).items():
        rows.append({
            "model": cfg.model.name,
            "dataset": name,
            **{k: v for k, v in res.items() if k.startswith("R") or k in ("mAP", "mINP")},
            "train_s": timings.get("train_s", 0.0) + timings.get("memory_s", 0.0),
            "test_s": res.get("test_s", 0.0),
            "gallery_includes_query": engine._includes_query(name),
        })
    os.makedirs(cfg.data.save_dir, exist_ok=True)
    with open(osp.join(cfg.data.save_dir, "results.json"), "w") as f:
        json.dump(rows[0] if len(rows) == 1 else rows, f, indent=2)


def run_from_config(cfg: CfgNode) -> dict[str, Any]:
    """Run one experiment (or every split with ``data.all_splits``); returns the results."""
    compat.set_random_seed(cfg.train.seed)
    if cfg.data.synthetic:
        ensure_synthetic(cfg)
    if not cfg.data.all_splits:
        engine = build_engine(cfg)
        return run_engine(cfg, engine)
    return run_all_splits(cfg)


def run_all_splits(cfg: CfgNode) -> dict[str, Any]:
    """The iLIDS-VID / PRID-2011 protocol: train and test every split, report each and the mean."""
    from ..data.datasets import num_splits

    names = list(cfg.data.sources)
    if len(names) != 1:
        raise ValueError("--all-splits runs one dataset at a time; got sources " + str(names))
    n = num_splits(names[0], cfg.data.root)
    per_split = []
    base_dir = cfg.data.save_dir
    for split in range(n):
        c = cfg.clone()
        c.defrost()
        c.data.split_id = split
        c.data.all_splits = False
        c.data.save_dir = osp.join(base_dir, f"split_{split}")
        print(f"\n##### {names[0]} split {split + 1}/{n} #####")
        compat.set_random_seed(c.train.seed)
        res = run_engine(c, build_engine(c))["after"]
        per_split.append(next(iter(res.values())))
    keys = [k for k in per_split[0] if k.startswith("R") or k in ("mAP", "mINP")]
    mean = {k: sum(r[k] for r in per_split) / n for k in keys}
    if du.is_main_process():
        print(f"\n##### {names[0]}: {n} splits #####")
        print("split | " + " | ".join(keys))
        for i, r in enumerate(per_split):
            print(f"{i:5d} | " + " | ".join(f"{r[k]:.1%}" for k in keys))
        print(" mean | " + " | ".join(f"{mean[k]:.1%}" for k in keys))
        os.makedirs(base_dir, exist_ok=True)
        with open(osp.join(base_dir, "splits.csv"), "w") as f:
            f.write("split," + ",".join(keys) + "\n")
            for i, r in enumerate(per_split):
                f.write(f"{i}," + ",".join(f"{r[k]:.6f}" for k in keys) + "\n")
            f.write("mean," + ",".join(f"{mean[k]:.6f}" for k in keys) + "\n")
    return {"splits": per_split, "mean": mean}


class ConsoleLogger(compat.utils.Logger):
    """torchreid's console + file ``Logger``, except that closing it (also at garbage collection)
    closes only its file, not the console it writes through (torchreid's closes ``sys.stdout``)."""

    def close(self) -> None:
        if self.file is not None and not self.file.closed:
            self.file.flush()
            self.file.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    distributed = du.init_distributed()
    stdout = sys.stdout
    if distributed and not du.is_main_process():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - only rank 0 logs
    else:
        os.makedirs(cfg.data.save_dir, exist_ok=True)
        name = "test.log" if cfg.test.evaluate else "train.log"
        sys.stdout = ConsoleLogger(osp.join(cfg.data.save_dir, time.strftime("%Y%m%d-%H%M%S-") + name))
    cfg.freeze()
    print(f"Show configuration\n{cfg}\n")
    print(f"torchreid layout: {compat.LAYOUT} ({compat.ROOT}); world size {du.get_world_size()}")
    try:
        return run_from_config(cfg)
    finally:
        du.cleanup()
        logger, sys.stdout = sys.stdout, stdout
        if logger is not stdout:
            logger.close()
