"""VideoV2MEngine: torchreid's Engine, taught what TF-CLIP and CLIP-ReID need.

torchreid's ``Engine`` keeps the training loop (``run``/``train``/``test``), the meters, the
tensorboard writer and the console lines. This subclass fills its hooks:

* :meth:`train` fills the identity bank before the first epoch (paper Sec. "CLIP-Memory": the
  identity-level mean of sequence features of the *pretrained* encoder,
  ``docs/released_vs_paper.md#clip-memory``; cached on disk), seeds the epoch's batches, shows a
  progress bar and writes one atomic checkpoint at the end of the epoch;
* :meth:`forward_backward` runs the whole clip (B, T, 3, H, W) through the model once and applies
  :class:`~tfclip_torchreid.losses.TFCLIPLoss` (ID x3, triplet x3, V2M, frame ID / T), with
  bf16/fp16 autocast on GPU and fp32 on CPU;
* :meth:`_evaluate` embeds every tracklet with the dense all-clip protocol (each tracklet's clips
  batched together, its camera broadcast to every clip, mean over clips), L2-normalises, ranks
  with our vectorised :func:`~tfclip_torchreid.metrics.rank_metrics` (gallery = query + gallery
  where the protocol says so), reports the queries that have no true match, and offers torchreid's
  re-ranking and ranked-list pictures.

Image datasets run through the same engine: an image is a one-frame clip.

Deviations from the authors' code, on purpose: the memory pass is batched (the authors run one
tracklet at a time), cached and sharded across processes; the dense test does not crash with SIE;
no checkpoint is ever selected on the test set.

Example:
    >>> engine = VideoV2MEngine(datamanager, model, optimizer, scheduler)  # doctest: +SKIP
    >>> engine.run(save_dir="log/tfclip", max_epoch=60, normalize_feature=True)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os.path as osp
import sys
import time
import warnings
from collections import OrderedDict
from typing import Any, Iterable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .. import compat
from ..data.transforms import norm_stats
from ..losses import TFCLIPLoss
from ..metrics import rank_metrics
from ..models.clip_memory import aggregate_identity_means
from ..utils.checkpoint import save_json
from ..utils.distributed import all_gather_ordered, get_world_size, is_main_process
from ..utils.rng import rng_preserved, rng_state, set_rng_state
from . import identity_bank
from .checkpoint import Checkpointer, checkpoint_header, load_checkpoint
from .extraction import TrackletFeatures, extract_features
from .prompt_learning import PromptLearningStage, PromptStageConfig

logger = logging.getLogger(__name__)

try:  # tqdm ships with torchreid's and open_clip's dependencies
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

__all__ = ["VideoV2MEngine", "AMP_MODES", "DIST_METRICS"]

#: ``amp`` settings of :class:`VideoV2MEngine` (``train.amp``)
AMP_MODES = ("auto", "bf16", "fp16", "off")
#: distance metrics of torchreid's ``compute_distance_matrix`` (``test.dist_metric``)
DIST_METRICS = ("euclidean", "cosine")
#: name of the held-out validation split in logs, tensorboard and ``validation.json``
VALIDATION = "validation"


class _NullWriter:
    """Stands in for tensorboard's SummaryWriter on ranks other than 0."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


class VideoV2MEngine(compat.Engine):
    """Trains and evaluates TF-CLIP (and CLIP-ReID) inside torchreid.

    Args:
        datamanager: a :class:`~tfclip_torchreid.data.datamanager.TFCLIPVideoDataManager` (or the
            image one).
        model: a :class:`~tfclip_torchreid.models.tfclip.TFCLIP` (wrapped by the engine in
            DistributedDataParallel when ``torch.distributed`` is initialised).
        optimizer, scheduler: from :func:`~tfclip_torchreid.optim.build_tfclip_optimizer` and
            :class:`~tfclip_torchreid.optim.WarmupMultiStepLR` (stepped once per epoch).
        criterion: a :class:`~tfclip_torchreid.losses.TFCLIPLoss` (built from the model if None).
        use_gpu: use CUDA when available.
        amp: ``"auto"`` (bf16 on GPU, fp32 on CPU), ``"bf16"``, ``"fp16"`` (with GradScaler) or
            ``"off"``.
        grad_clip: max global gradient norm; 0 disables clipping (the default, like the authors).
        memory_cache_dir: folder of cached identity banks (None: the default cache; ``""``: no
            cache).
        max_clips_per_forward: bound on clips per forward pass in extraction (bounded memory).
        keep_last: epoch checkpoints kept besides ``latest.pth``.
        compile_model: wrap the training model with ``torch.compile``.
        find_unused_parameters: passed to DistributedDataParallel (False is right for every switch
            combination: the never-used parameters are frozen).
        progress: a tqdm bar per epoch (None: when stderr is a terminal).
        prompt_stage: CLIP-ReID's stage-1 settings (models with ``memory_source="text"``).
        save_features: write each evaluation's test features to ``<save_dir>/features``.
    """

    def __init__(
        self,
        datamanager: Any,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any = None,
        criterion: nn.Module | None = None,
        use_gpu: bool = True,
        amp: str = "auto",
        grad_clip: float = 0.0,
        memory_cache_dir: str | None = None,
        max_clips_per_forward: int = 64,
        keep_last: int = 2,
        compile_model: bool = False,
        find_unused_parameters: bool = False,
        progress: bool | None = None,
        prompt_stage: PromptStageConfig | None = None,
        save_features: bool = False,
    ) -> None:
        super().__init__(datamanager, use_gpu=use_gpu)
        self.device = (torch.device("cuda", torch.cuda.current_device()) if self.use_gpu
                       else torch.device("cpu"))
        self.raw_model = model.to(self.device)
        self.distributed = dist.is_available() and dist.is_initialized()
        self.model = self._wrap(self.raw_model, compile_model, find_unused_parameters)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.criterion = criterion if criterion is not None else TFCLIPLoss(
            num_classes=self.raw_model.num_classes)
        self.register_model("model", self.model, optimizer, scheduler)
        self._set_precision(amp)
        self.grad_clip = float(grad_clip)
        self.memory_cache_dir = (identity_bank.default_cache_dir() if memory_cache_dir is None
                                 else memory_cache_dir)
        self.memory_cache_key = ""
        self.max_clips_per_forward = int(max_clips_per_forward)
        self.keep_last = int(keep_last)
        self.checkpointer = Checkpointer("log", keep_last, enabled=is_main_process())
        self.show_progress = (sys.stderr.isatty() if progress is None else bool(progress)) and (
            tqdm is not None and is_main_process())
        self.save_dir = "log"
        self.epochs_done = 0  # epochs trained (or restored) so far, as in the checkpoints
        self.test_only = False
        self.results: dict[str, dict] = {}
        self.timings: dict[str, float] = {}
        self._bar = None
        self.prompt_stage = prompt_stage or PromptStageConfig()
        self.save_features = bool(save_features)
        self._prompt_resume: dict | None = None
        self.validation_history: list[dict] = []
        self._val_schedule: tuple[int, int] = (-1, 0)  # (eval_freq, start_eval)
        self._val_kwargs: dict[str, Any] = {}

    def _wrap(self, model: nn.Module, compile_model: bool, find_unused: bool) -> nn.Module:
        if self.distributed:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=find_unused)
        return torch.compile(model) if compile_model else model

    def _set_precision(self, amp: str) -> None:
        amp = amp.lower()
        if amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {'|'.join(AMP_MODES)}, got {amp!r}")
        if amp == "auto":
            amp = "bf16" if self.device.type == "cuda" else "off"
        self.amp = amp
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = (torch.amp.GradScaler("cuda")
                       if amp == "fp16" and self.device.type == "cuda" else None)

    # ------------------------------------------------------------------ helpers
    @property
    def is_main(self) -> bool:
        return is_main_process()

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast for the configured precision (a no-op for fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def two_stepped_transfer_learning(self, epoch, fixbase_epoch, open_layers, model=None):
        """TF-CLIP fine-tunes everything from epoch 1; torchreid's ``open_all_layers`` would also
        unfreeze the frozen BN-neck biases, so it only runs when fixbase training is asked for."""
        if fixbase_epoch > 0 and open_layers is not None:
            super().two_stepped_transfer_learning(epoch, fixbase_epoch, open_layers, self.raw_model)
            for name, p in self.raw_model.named_parameters():
                if "bottleneck" in name and name.endswith("bias"):
                    p.requires_grad_(False)

    def get_current_lr(self, names: Any = None) -> float:
        """The base learning rate now: that of the optimiser's ``base`` group (no bias or
        classifier factor), for torchreid's console and tensorboard lines."""
        groups = self.optimizer.param_groups
        return next((g["lr"] for g in groups if g.get("name") == "base"), groups[0]["lr"])

    # ------------------------------------------------------------------ run / train
    def run(self, save_dir: str = "log", max_epoch: int = 0, start_epoch: int = 0, **kwargs: Any):
        """torchreid's ``Engine.run``; rank 0 alone writes logs and checkpoints. The checkpoint
        folder is checked (writable, stale temp files removed) before anything is computed.

        With a validation split (``data.val_ids``), ``eval_freq``/``start_eval`` schedule the
        validation evaluations (and ``best.pth``) instead: the test set is evaluated once, at the
        end."""
        self.save_dir = save_dir
        self.test_only = bool(kwargs.get("test_only"))
        best = self.checkpointer.best_metric  # restored by resume()
        self.checkpointer = Checkpointer(save_dir, self.keep_last, enabled=self.is_main)
        self.checkpointer.best_metric = best
        if not kwargs.get("test_only"):
            self.checkpointer.prepare()
        if getattr(self.datamanager, "has_validation", False) and not self.test_only:
            self._val_schedule = (kwargs.pop("eval_freq", -1), kwargs.pop("start_eval", 0))
            self._val_kwargs = {k: kwargs[k] for k in ("dist_metric", "normalize_feature",
                                                       "ranks") if k in kwargs}
        if not self.is_main:
            self.writer = _NullWriter()
        t0 = time.time()
        out = super().run(save_dir=save_dir, max_epoch=max_epoch, start_epoch=start_epoch,
                          **kwargs)
        self.timings["run_s"] = time.time() - t0
        return out

    def train(self, print_freq: int = 10, fixbase_epoch: int = 0, open_layers: Any = None) -> None:
        """One epoch: identity bank (first time only), torchreid's loop, then one checkpoint."""
        self.init_memory()
        self.datamanager.set_epoch(self.epoch)
        t0 = time.time()
        loader = self.train_loader
        if self.show_progress:
            self._bar = tqdm(total=len(loader), desc=f"epoch {self.epoch + 1}/{self.max_epoch}",
                             leave=False, dynamic_ncols=True)
            print_freq = max(print_freq, len(loader) + 1)  # the bar replaces the lines
        try:
            super().train(print_freq=print_freq, fixbase_epoch=fixbase_epoch,
                          open_layers=open_layers)
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
        seconds = time.time() - t0
        self.timings["train_s"] = self.timings.get("train_s", 0.0) + seconds
        if self.is_main:
            logger.info(f"=> epoch {self.epoch + 1}/{self.max_epoch} done in {seconds:.1f} s, "
                        f"lr {self.get_current_lr():.2e}")
        self.epochs_done = self.epoch + 1
        state = self.checkpoint_state(self.epoch)
        if self.validation_due():
            row = self.validate()
            state["validation"] = list(self.validation_history)
            if self.checkpointer.save_best(state, row["mAP"]) and self.is_main:
                logger.info(f"=> best validation mAP so far: wrote {self.checkpointer.best_path}")
            state["best_metric"] = self.checkpointer.best_metric
        self.checkpointer.save(state, self.epochs_done)

    # ------------------------------------------------------------------ validation
    def validation_due(self) -> bool:
        """A validation split exists and this epoch is on the ``eval_freq`` schedule (the last
        epoch always is, so ``best.pth`` sees it)."""
        freq, start = self._val_schedule  # set by run() only when a validation split exists
        done = self.epoch + 1
        return freq > 0 and done >= start and (done % freq == 0 or done == self.max_epoch)

    def validate(self) -> dict:
        """Evaluate on the held-out validation identities (RNG-neutral, like :meth:`test`);
        append the row to ``validation_history``, log it to tensorboard (``Val/``) and write
        ``<save_dir>/validation.json``. Returns the row."""
        dm = self.datamanager
        with rng_preserved():
            self._evaluate(VALIDATION, dm.val_loader["query"], dm.val_loader["gallery"],
                           **self._val_kwargs)
        row = {"epoch": self.epoch + 1, **self.results.pop(VALIDATION)}
        row.pop("test_s")  # no wall time in checkpoints: a resumed run's are identical
        self.validation_history.append(row)
        if self.is_main:
            for key in ("mAP", "R1"):
                if key in row and self.writer is not None:
                    self.writer.add_scalar(f"Val/{key}", row[key], row["epoch"])
            save_json(self.validation_history, osp.join(self.save_dir, "validation.json"))
        return row

    def save_model(self, epoch: int, rank1: float, save_dir: str, is_best: bool = False) -> None:
        """torchreid calls this after each evaluation. Checkpoints are written once per epoch by
        :meth:`train` (never selected on the test set), so there is nothing to write here."""

    def test(self, dist_metric: str = "euclidean", normalize_feature: bool = False,
             visrank: bool = False, visrank_topk: int = 10, save_dir: str = "",
             use_metric_cuhk03: bool = False, ranks: Iterable[int] = (1, 5, 10, 20),
             rerank: bool = False) -> float:
        """torchreid's ``Engine.test``, made RNG-neutral (evaluating during training or not
        leaves the training trajectory unchanged, and resumed runs stay exact); with a
        ``save_dir``, every evaluation writes ``<save_dir>/results.json`` at once."""
        with rng_preserved():
            rank1 = super().test(dist_metric, normalize_feature, visrank, visrank_topk, save_dir,
                                 use_metric_cuhk03, list(ranks), rerank)
        if save_dir and self.is_main:
            self.write_results(osp.join(save_dir, "results.json"))
        return rank1

    def write_results(self, path: str) -> None:
        """The last evaluation as JSON: one row per test dataset (a single row: an object), with
        the epochs trained, the training time (identity bank and CLIP-ReID's stage 1 included)
        and whether the run only evaluated (read by
        ``tools/benchmark_table.py``). Written atomically."""
        train_s = sum(self.timings.get(k, 0.0) for k in ("train_s", "memory_s", "stage1_s"))
        rows = [{"model": self.raw_model.cfg.arch, "dataset": name, **res,
                 "epoch": self.epochs_done, "train_s": train_s, "evaluate_only": self.test_only}
                for name, res in self.results.items()]
        save_json(rows[0] if len(rows) == 1 else rows, path)

    def forward_backward(self, data: dict) -> OrderedDict:
        """One optimisation step on a batch of clips; returns the logged loss terms."""
        imgs = data["img"].to(self.device, non_blocking=True)
        pids = data["pid"].to(self.device, non_blocking=True)
        camids = data["camid"].to(self.device, non_blocking=True)
        if imgs.dim() != 5:
            raise ValueError(
                f"VideoV2MEngine trains on clips (B, T, 3, H, W); got a batch of shape "
                f"{tuple(imgs.shape)}. Use a TF-CLIP data manager (build_datamanager).")
        with self.autocast():
            output = self.model(imgs, cam_label=camids, full_output=True)
        loss, terms = self.criterion(output, pids)
        # the logged terms are host floats already (one sync in the loss): no second sync here
        if not all(math.isfinite(v) for v in terms.values()):
            raise FloatingPointError(
                f"non-finite loss at epoch {self.epoch + 1} batch {self.batch_idx + 1}: "
                f"terms {dict(terms)}; lower the learning rate or use amp='bf16' instead of 'fp16'")
        self._step(loss)
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.3g}" for k, v in terms.items()}, refresh=False)
            self._bar.update(1)
        return terms

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if self.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            return
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.grad_clip)
        self.optimizer.step()

    # ------------------------------------------------------------------ identity bank
    def memory_settings(self) -> dict:
        """What, besides the weights and the tracklets, determines the identity bank."""
        dm = self.datamanager
        settings = {"seq_len": dm.seq_len, "height": dm.height, "width": dm.width,
                    "norm": str(dm.norm), "amp": self.amp, "source": "clip",
                    "memory_dim": int(self.raw_model.memory.bank.shape[1]), "version": 1}
        if self.raw_model.uses_text:
            settings.update(source="text", stage1=dataclasses.asdict(self.prompt_stage))
        return settings

    def compute_memory_cache_key(self) -> str:
        """sha256 of (encoder weights, training tracklets and labels, extraction settings; for
        CLIP-ReID's text bank also the text tower, the initial prompts and stage 1's settings)."""
        model = self.raw_model
        modules = [model.backbone]
        if model.uses_text:
            modules += [model.text_encoder, model.prompt_learner]
        return identity_bank.cache_key(modules, self.datamanager.memory_loader.dataset.tracklets,
                                       self.memory_settings())

    def init_memory(self) -> None:
        """Fill the identity bank once, before the first epoch (cached on disk, reused on rerun):
        the CLIP-Memory, or CLIP-ReID's text features after its prompt-learning stage.

        RNG-neutral: a cache hit and a fresh pass leave the training trajectory identical.
        """
        memory = getattr(self.raw_model, "memory", None)
        if memory is None or memory.initialized:
            return
        with rng_preserved():
            if not self.memory_cache_key:  # a resumed stage 1 keeps its original key
                self.memory_cache_key = self.compute_memory_cache_key()
            compute = self.compute_text_bank if self.raw_model.uses_text else self.compute_memory
            entry = identity_bank.load_or_compute(
                self.memory_cache_dir, self.memory_cache_key, compute,
                settings=self.memory_settings(), device=self.device,
                distributed=self.distributed, verbose=self.is_main)
            if "cls_ctx" in entry:
                with torch.no_grad():
                    self.raw_model.prompt_learner.cls_ctx.copy_(entry["cls_ctx"])
            memory.set(entry["bank"].to(memory.bank.device))

    @torch.inference_mode()
    def train_features(self) -> TrackletFeatures:
        """Every training tracklet embedded densely with the current (pretrained) encoder, no SIE:
        the projected CLS averaged over each clip's frames, then over the tracklet's clips (the
        cycled padding frames of the last clip counted, as in the authors' code). Batched across
        tracklets, sharded across processes and gathered in order."""
        was_training = self.raw_model.training
        self.raw_model.eval()
        t0 = time.time()
        try:
            out = self._extract(self.datamanager.memory_loader,
                                lambda clips, cams: self.raw_model.encode_memory(clips),
                                "CLIP-Memory")
        finally:
            self.raw_model.train(was_training)
        elapsed = time.time() - t0
        self.timings["memory_s"] = elapsed
        self.timings["memory_fps"] = out.frames / max(elapsed, 1e-9)
        return out

    def compute_memory(self) -> dict[str, torch.Tensor]:
        """The CLIP-Memory: per-identity mean of :meth:`train_features` (paper Alg. 1)."""
        feats = self.train_features()
        num_classes = self.raw_model.num_classes
        bank = aggregate_identity_means(feats.features.float(), feats.pids, num_classes)
        if self.is_main:
            logger.info(f"=> CLIP-Memory: {num_classes} identities from {len(feats.pids)} tracklets, "
                        f"{feats.frames} frames in {self.timings['memory_s']:.1f} s "
                        f"({self.timings['memory_fps']:.1f} frames/s)")
        return {"bank": bank}

    def compute_text_bank(self) -> dict[str, torch.Tensor]:
        """CLIP-ReID's stage 1 on :meth:`train_features` (resumed from a checkpoint if one was
        loaded), a checkpoint after each of its epochs, then every identity's text feature."""
        feats = self.train_features()
        cfg = self.prompt_stage
        stage = PromptLearningStage(self.raw_model, feats.features, feats.pids, cfg,
                                    self.autocast, self._log_prompt_stage)
        if self._prompt_resume is not None:
            stage.load_state_dict(self._prompt_resume)
            self._prompt_resume = None
        if self.is_main:
            logger.info(f"=> CLIP-ReID stage 1: prompts of {self.raw_model.num_classes} identities on "
                        f"{len(feats.pids)} tracklet features, epochs {stage.epoch + 1}..{cfg.max_epoch}")
        t0 = time.time()
        bank = stage.run(lambda st: self.checkpointer.save(
            self.checkpoint_state(-1, prompt_stage=st.state_dict())))
        self.timings["stage1_s"] = time.time() - t0
        return {"bank": bank, "cls_ctx": self.raw_model.prompt_learner.cls_ctx.detach().clone()}

    def _log_prompt_stage(self, epoch: int, it: int, terms: dict, lr: float) -> None:
        if not self.is_main:
            return
        text = "  ".join(f"{k} {v:.4f}" for k, v in terms.items())
        where = "done" if it < 0 else f"iter {it}"
        logger.info(f"stage 1: epoch [{epoch}/{self.prompt_stage.max_epoch}] {where}  {text}  "
                    f"lr {lr:.2e}")
        if it < 0 and self.writer is not None:
            for k, v in terms.items():
                self.writer.add_scalar(f"Stage1/{k}", v, epoch)

    # ------------------------------------------------------------------ evaluation
    def _extract(self, loader: Any, forward: Any, desc: str) -> TrackletFeatures:
        """:func:`~.extraction.extract_features` on this rank's shard, gathered in order."""
        if self.distributed:
            loader = self.datamanager.shard_loader(loader)
        bar = None
        if self.show_progress:
            def bar(it: Iterable) -> Iterable:
                return tqdm(it, desc=desc, leave=False, mininterval=1.0)
        out = extract_features(loader, forward, self.device, self.max_clips_per_forward,
                               self.autocast, bar, desc)
        if not self.distributed:
            return out
        feats, index, pids, camids = all_gather_ordered(out.features, out.index, out.pids,
                                                        out.camids)
        return TrackletFeatures(feats, index, pids, camids, out.frames * get_world_size())

    @torch.inference_mode()
    def extract_tracklet_features(self, loader: Iterable) -> tuple[torch.Tensor, np.ndarray,
                                                                    np.ndarray]:
        """Test features of every tracklet of ``loader`` (dense: mean over all its clips)."""
        self.raw_model.eval()
        t0 = time.time()
        out = self._extract(loader, lambda clips, cams: self.raw_model(clips, cam_label=cams),
                            "features")
        self.timings["extract_frames"] = self.timings.get("extract_frames", 0) + out.frames
        self.timings["extract_s"] = self.timings.get("extract_s", 0.0) + time.time() - t0
        return out.features, out.pids.numpy(), out.camids.numpy()

    @torch.no_grad()
    def _evaluate(
        self,
        dataset_name: str = "",
        query_loader: Any = None,
        gallery_loader: Any = None,
        dist_metric: str = "euclidean",
        normalize_feature: bool = False,
        visrank: bool = False,
        visrank_topk: int = 10,
        save_dir: str = "",
        use_metric_cuhk03: bool = False,
        ranks: Iterable[int] = (1, 5, 10, 20),
        rerank: bool = False,
    ) -> tuple[float, float]:
        """Dense tracklet-level evaluation; returns (rank-1, mAP) like torchreid's."""
        self.timings["extract_s"], self.timings["extract_frames"] = 0.0, 0
        t0 = time.time()
        qf, q_pids, q_camids = self.extract_tracklet_features(query_loader)
        gf, g_pids, g_camids = self.extract_tracklet_features(gallery_loader)
        with_query = self.datamanager.includes_query(dataset_name)
        if with_query:  # the query features are reused as gallery rows
            gf = torch.cat([qf, gf])
            g_pids, g_camids = np.concatenate([q_pids, g_pids]), np.concatenate([q_camids, g_camids])
        if normalize_feature:
            qf, gf = F.normalize(qf, p=2, dim=1), F.normalize(gf, p=2, dim=1)
        distmat = compat.compute_distance_matrix(qf, gf, dist_metric)
        if rerank:
            distmat_qq = compat.compute_distance_matrix(qf, qf, dist_metric)
            distmat_gg = compat.compute_distance_matrix(gf, gf, dist_metric)
            distmat = torch.as_tensor(compat.re_ranking(distmat.numpy(), distmat_qq.numpy(),
                                                        distmat_gg.numpy()))
        distmat = distmat.numpy()
        r = rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids,
                         use_metric_cuhk03=use_metric_cuhk03)
        self.timings["test_s"] = time.time() - t0
        self.results[dataset_name] = self._result_row(r, list(ranks), len(g_pids), with_query)
        if self.is_main:
            self._report(dataset_name, r, list(ranks), qf.shape, len(g_pids), with_query)
            if self.save_features and save_dir:
                self.write_features(osp.join(save_dir, "features"), dataset_name, qf, gf)
            if visrank:
                compat.visualize_ranked_results(
                    distmat, self.datamanager.fetch_test_loaders(dataset_name),
                    self.datamanager.data_type, width=self.datamanager.width,
                    height=self.datamanager.height,
                    save_dir=osp.join(save_dir, "visrank_" + dataset_name), topk=visrank_topk)
        return float(r.cmc[0]), float(r.mAP)

    def write_features(self, folder: str, name: str, qf: torch.Tensor, gf: torch.Tensor) -> None:
        """``<folder>/<name>_{query,gallery}.{npy,json}``: the test features in the order of
        ``datamanager.test_dataset`` with their tracklets (read by ``tools/visualize.py``)."""
        from ..embedding import Tracklet, feature_index, save_embeddings

        for split, feats in (("query", qf), ("gallery", gf)):
            items = self.datamanager.test_dataset[name][split]
            paths = [(it[0],) if isinstance(it[0], str) else tuple(it[0]) for it in items]
            root = osp.commonpath([p[0] for p in paths])
            tracklets = [Tracklet(osp.relpath(p[0], root), p, int(it[1]), int(it[2]))
                         for p, it in zip(paths, items)]
            save_embeddings(osp.join(folder, f"{name}_{split}.npy"), feats.numpy(),
                            feature_index(tracklets, root, {"arch": self.raw_model.cfg.arch}))

    def _result_row(self, r: Any, ranks: list, num_gallery: int, with_query: bool) -> dict:
        return {"mAP": float(r.mAP), "mINP": float(r.mINP),
                **{f"R{k}": float(r.cmc[k - 1]) for k in ranks if k <= len(r.cmc)},
                "num_query": int(r.num_query), "num_valid_query": int(r.num_valid),
                "num_gallery": int(num_gallery), "gallery_includes_query": bool(with_query),
                "test_s": self.timings["test_s"]}

    def _report(self, name: str, r: Any, ranks: list, qshape: Any, num_gallery: int,
                with_query: bool) -> None:
        fps = self.timings["extract_frames"] / max(self.timings["extract_s"], 1e-9)
        logger.info(f"=> {name}: {qshape[0]} query x {num_gallery} gallery tracklets"
                    f"{' (gallery includes query)' if with_query else ''}, {qshape[1]}-d features, "
                    f"{self.timings['extract_frames']} frames at {fps:.1f} frames/s")
        unmatched = r.num_query - r.num_valid
        if unmatched:
            warnings.warn(
                f"{name}: {unmatched} of {r.num_query} queries have no true "
                f"match in the gallery (same id, other camera) and are left out of CMC/mAP",
                stacklevel=2)
        logger.info("** Results **")
        logger.info(f"queries: {r.num_valid} evaluated of {r.num_query}" + (
                  f" ({unmatched} without a true match in the gallery, left out)" if unmatched else ""))
        logger.info(f"mAP: {r.mAP:.1%}")
        logger.info(f"mINP: {r.mINP:.1%}")
        logger.info("CMC curve")
        for k in ranks:
            if k <= len(r.cmc):
                logger.info(f"Rank-{k:<3}: {r.cmc[k - 1]:.1%}")

    def extract_features(self, input: torch.Tensor) -> torch.Tensor:
        return self.raw_model(input)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self, epoch: int, prompt_stage: dict | None = None) -> dict:
        """Everything needed to continue training exactly (weights-only-loadable), and what
        rebuilds the model from the file alone (:func:`checkpoint_header`). During CLIP-ReID's
        stage 1, ``epoch`` is -1 and ``prompt_stage`` holds that stage's state."""
        dm = self.datamanager  # the preprocessing travels with the weights
        mean, std = norm_stats(dm.norm)
        state = {
            **checkpoint_header(self.raw_model, {"image_size": (dm.height, dm.width),
                                                 "mean": mean, "std": std}),
            "state_dict": self.raw_model.state_dict(),
            "epoch": int(epoch) + 1,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "memory_cache_key": self.memory_cache_key,
            "rng": rng_state(),
            "best_metric": self.checkpointer.best_metric,
            "validation": list(self.validation_history),
        }
        if prompt_stage is not None:
            state["prompt_stage"] = prompt_stage
        return state

    def resume(self, fpath: str) -> int:
        """Restore model, optimiser, scheduler, scaler and RNGs; returns the epoch to start from."""
        from ..models.factory import load_model_weights

        state = load_checkpoint(fpath)
        missing = [k for k in ("state_dict", "optimizer", "epoch") if k not in state]
        if missing:
            raise ValueError(f"{fpath} is not a VideoV2MEngine checkpoint (missing {missing})")
        load_model_weights(self.raw_model, state, source=fpath)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.memory_cache_key = state.get("memory_cache_key", "")
        self.epochs_done = int(state["epoch"])
        if state.get("rng") is not None:
            set_rng_state(state["rng"])
        self._prompt_resume = state.get("prompt_stage")
        self.checkpointer.best_metric = state.get("best_metric")
        self.validation_history = list(state.get("validation") or [])
        if self.is_main:
            where = (f"CLIP-ReID stage 1 at epoch {self._prompt_resume['epoch'] + 1}"
                     if self._prompt_resume else f"epoch {state['epoch'] + 1}")
            logger.info(f"=> Resumed from {fpath}: continuing at {where}")
        return int(state["epoch"])
