"""VideoV2MEngine: torchreid's Engine plus hooks, for TF-CLIP and CLIP-ReID.

torchreid's ``Engine`` keeps the loop (``run`` -> ``train`` per epoch -> ``forward_backward`` per
batch, ``test`` -> ``_evaluate`` per dataset), its meters, console lines and tensorboard writer.
This subclass fills ``forward_backward``, the one step torchreid leaves to subclasses, and
overrides only what torchreid has no other place for; each override says why. Everything else is
a small object with one concern:

* hooks (:mod:`.hooks`: when each is called and in which order): the identity bank before the
  first epoch (:mod:`.identity_bank`, CLIP-ReID's stage 1 in :mod:`.prompt_learning`), a
  progress bar and the epoch timer (:mod:`.hooks`), validation and ``best.pth``
  (:mod:`.validation`), the checkpoint after every epoch (:mod:`.checkpoint`);
* the dense evaluator (:mod:`.evaluation`), shared with :mod:`tfclip_torchreid.embedding`;
* the precision policy, bf16/fp16 autocast and the loss scaler (:mod:`.precision`);
* DistributedDataParallel and ``torch.compile`` (:mod:`.parallel`).

The engine itself holds what ties them together: the state of a checkpoint
(:meth:`VideoV2MEngine.checkpoint_state`, the one place it is built) and exact resumption
(:meth:`VideoV2MEngine.resume`). Image datasets run through the same engine: an image is a
one-frame clip. No checkpoint is ever selected on the test set.

Example:
    >>> engine = VideoV2MEngine(datamanager, model, optimizer, scheduler)  # doctest: +SKIP
    >>> engine.run(save_dir="log/tfclip", max_epoch=60, normalize_feature=True)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import math
import os.path as osp
import time
import weakref
from collections import OrderedDict
from typing import Any, Iterable, Mapping

import torch
import torch.distributed as dist
from torch import nn

from .. import compat
from ..data.transforms import norm_stats
from ..losses import TFCLIPLoss
from ..models.weights import Weights, load_model_weights
from ..utils.checkpoint import checkpoint_header, load_checkpoint
from ..utils.distributed import is_main_process
from ..utils.rng import rng_preserved, rng_state, set_rng_state
from .checkpoint import Checkpointer, PeriodicCheckpointer
from .evaluation import (
    DenseEvaluator,
    Evaluation,
    report,
    result_row,
    write_features,
    write_results,
)
from .hooks import EpochTimer, HookBase, ProgressBar
from .identity_bank import IdentityBankHook
from .parallel import wrap_model
from .precision import Precision
from .prompt_learning import PromptStageConfig
from .validation import ValidationHook

logger = logging.getLogger(__name__)

__all__ = ["VideoV2MEngine"]


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
            ``"off"`` (:mod:`.precision`).
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

    Attributes:
        raw_model: the model itself (``model`` is its training wrapper).
        precision, evaluator, checkpointer: the policy objects above.
        identity_bank, progress, validation: hooks the engine consults directly.
        results: the last evaluation's row per dataset; ``timings``: seconds per phase.
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
        self.model = wrap_model(self.raw_model, self.device, self.distributed, compile_model,
                                find_unused_parameters)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.criterion = criterion if criterion is not None else TFCLIPLoss(
            num_classes=self.raw_model.num_classes)
        self.register_model("model", self.model, optimizer, scheduler)
        self.precision = Precision(amp, self.device)
        self.grad_clip = float(grad_clip)
        self.max_clips_per_forward = int(max_clips_per_forward)
        self.save_features = bool(save_features)
        self.save_dir = "log"
        self.test_only = False
        self.print_freq = 10
        self.epochs_done = 0  # epochs trained (or restored) so far, as in the checkpoints
        self.loss_terms: OrderedDict = OrderedDict()
        self.results: dict[str, dict] = {}
        self.timings: dict[str, float] = {}
        self.checkpointer = Checkpointer("log", keep_last, enabled=is_main_process())
        self.progress = ProgressBar(progress)
        self.evaluator = DenseEvaluator(
            self.raw_model, self.device, self.max_clips_per_forward, self.precision.autocast,
            self.progress.wrap, datamanager.shard_loader if self.distributed else None)
        self.identity_bank = IdentityBankHook(memory_cache_dir, prompt_stage)
        self.validation = ValidationHook()
        self.hooks: list[HookBase] = []
        self.register_hooks([self.identity_bank, self.progress, EpochTimer(), self.validation,
                             PeriodicCheckpointer(self.checkpointer)])

    # ------------------------------------------------------------------ hooks
    def register_hooks(self, hooks: Iterable[HookBase]) -> None:
        """Append ``hooks`` (called in order; each reaches the engine as ``hook.trainer``)."""
        for hook in hooks:
            hook.trainer = weakref.proxy(self)
            self.hooks.append(hook)

    def _call_hooks(self, event: str) -> None:
        for hook in self.hooks:
            getattr(hook, event)()

    @property
    def amp(self) -> str:
        """The resolved precision mode (``bf16``, ``fp16`` or ``off``)."""
        return self.precision.mode

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast for the configured precision (a no-op for fp32)."""
        return self.precision.autocast()

    # ------------------------------------------------------------------ torchreid's loop
    def run(self, save_dir: str = "log", max_epoch: int = 0, start_epoch: int = 0,
            **kwargs: Any) -> None:
        """torchreid's ``Engine.run`` between the hooks' ``before_train`` and ``after_train``
        (torchreid has neither); rank 0 alone writes logs and checkpoints.

        With a validation split (``data.val_ids``), ``eval_freq``/``start_eval`` schedule the
        validation evaluations (and ``best.pth``) instead: the test set is evaluated once, at the
        end."""
        self.save_dir = save_dir
        self.test_only = bool(kwargs.get("test_only"))
        if not is_main_process():
            self.writer = _NullWriter()
        start = time.time()
        if self.test_only:
            out = super().run(save_dir=save_dir, max_epoch=max_epoch, start_epoch=start_epoch,
                              **kwargs)
        else:
            if getattr(self.datamanager, "has_validation", False):
                self.validation.schedule(
                    kwargs.pop("eval_freq", -1), kwargs.pop("start_eval", 0),
                    **{k: kwargs[k] for k in ("dist_metric", "normalize_feature", "ranks")
                       if k in kwargs})
            self._call_hooks("before_train")
            try:
                out = super().run(save_dir=save_dir, max_epoch=max_epoch,
                                  start_epoch=start_epoch, **kwargs)
            finally:
                self._call_hooks("after_train")
        self.timings["run_s"] = time.time() - start
        return out

    def train(self, print_freq: int = 10, fixbase_epoch: int = 0, open_layers: Any = None) -> None:
        """torchreid's epoch between the hooks' ``before_epoch`` and ``after_epoch`` (torchreid
        has neither), with the epoch's batches seeded (exact resumption mid-run)."""
        self.print_freq = print_freq
        self._call_hooks("before_epoch")
        self.datamanager.set_epoch(self.epoch)
        super().train(print_freq=self.print_freq, fixbase_epoch=fixbase_epoch,
                      open_layers=open_layers)
        self.epochs_done = self.epoch + 1
        self._call_hooks("after_epoch")

    def forward_backward(self, data: dict) -> OrderedDict:
        """torchreid's extension point: one optimisation step on a batch of whole clips
        (B, T, 3, H, W) through the model once, :class:`~tfclip_torchreid.losses.TFCLIPLoss`
        (ID x3, triplet x3, V2M, frame ID / T); returns the logged loss terms."""
        self._call_hooks("before_step")
        imgs = data["img"].to(self.device, non_blocking=True)
        pids = data["pid"].to(self.device, non_blocking=True)
        camids = data["camid"].to(self.device, non_blocking=True)
        if imgs.dim() != 5:
            raise ValueError(
                f"VideoV2MEngine trains on clips (B, T, 3, H, W); got a batch of shape "
                f"{tuple(imgs.shape)}. Use a TF-CLIP data manager (build_datamanager).")
        with self.precision.autocast():
            output = self.model(imgs, cam_label=camids, full_output=True)
        loss, terms = self.criterion(output, pids)
        # the logged terms are host floats already (one sync in the loss): no second sync here
        if not all(math.isfinite(v) for v in terms.values()):
            raise FloatingPointError(
                f"non-finite loss at epoch {self.epoch + 1} batch {self.batch_idx + 1}: "
                f"terms {dict(terms)}; lower the learning rate or use amp='bf16' instead of 'fp16'")
        self.precision.step(loss, self.optimizer, self.raw_model, self.grad_clip)
        self.loss_terms = terms
        self._call_hooks("after_step")
        return terms

    def two_stepped_transfer_learning(self, epoch, fixbase_epoch, open_layers, model=None):
        """TF-CLIP fine-tunes everything from epoch 1; torchreid's ``open_all_layers`` would also
        unfreeze the frozen BN-neck biases, so it only runs when fixbase training is asked for."""
        if fixbase_epoch > 0 and open_layers is not None:
            super().two_stepped_transfer_learning(epoch, fixbase_epoch, open_layers, self.raw_model)
            for name, p in self.raw_model.named_parameters():
                if "bottleneck" in name and name.endswith("bias"):
                    p.requires_grad_(False)

    def get_current_lr(self, names: Any = None) -> float:
        """The base learning rate now: that of the optimiser's ``base`` group (torchreid shows
        the last group's, which carries the classifier's factor), for torchreid's console and
        tensorboard lines."""
        groups = self.optimizer.param_groups
        return next((g["lr"] for g in groups if g.get("name") == "base"), groups[0]["lr"])

    # ------------------------------------------------------------------ evaluation
    def test(self, dist_metric: str = "euclidean", normalize_feature: bool = False,
             visrank: bool = False, visrank_topk: int = 10, save_dir: str = "",
             use_metric_cuhk03: bool = False, ranks: Iterable[int] = (1, 5, 10, 20),
             rerank: bool = False) -> float:
        """torchreid's ``Engine.test``, made RNG-neutral (evaluating during training or not
        leaves the training trajectory unchanged, and resumed runs stay exact); with a
        ``save_dir``, every evaluation writes ``<save_dir>/results.json`` at once. torchreid
        has no hook around its ``test`` for either."""
        with rng_preserved():
            rank1 = super().test(dist_metric, normalize_feature, visrank, visrank_topk, save_dir,
                                 use_metric_cuhk03, list(ranks), rerank)
        if save_dir and is_main_process():
            train_s = sum(self.timings.get(k, 0.0) for k in ("train_s", "memory_s", "stage1_s"))
            write_results(osp.join(save_dir, "results.json"), self.results,
                          self.raw_model.cfg.arch, self.epochs_done, train_s, self.test_only)
        return rank1

    def _evaluate(self, dataset_name: str = "", query_loader: Any = None,
                  gallery_loader: Any = None, **kwargs: Any) -> tuple[float, float]:
        """torchreid's ``test`` calls this per dataset; torchreid's own extracts per-image
        features batch by batch and ranks with its slow Python loop, and has no hook for either:
        :meth:`evaluate` (the dense evaluator) instead. Returns (rank-1, mAP) like torchreid's."""
        ev = self.evaluate(dataset_name, query_loader, gallery_loader, **kwargs)
        return float(ev.metrics.cmc[0]), float(ev.metrics.mAP)

    @torch.no_grad()
    def evaluate(self, name: str, query_loader: Any, gallery_loader: Any,
                 dist_metric: str = "euclidean", normalize_feature: bool = False,
                 visrank: bool = False, visrank_topk: int = 10, save_dir: str = "",
                 use_metric_cuhk03: bool = False, ranks: Iterable[int] = (1, 5, 10, 20),
                 rerank: bool = False) -> Evaluation:
        """Dense evaluation of one dataset (or of the validation split): the row goes to
        ``results[name]``, the report to the log (rank 0); with ``save_dir``, the features
        (``save_features``) and torchreid's ranked-list pictures (``visrank``) are written."""
        self.raw_model.eval()
        ev = self.evaluator.evaluate(query_loader, gallery_loader,
                                     self.datamanager.includes_query(name), normalize_feature,
                                     dist_metric, rerank, use_metric_cuhk03)
        self.timings.update(extract_s=ev.extract_s, extract_frames=ev.frames, test_s=ev.seconds)
        ranks = list(ranks)
        self.results[name] = result_row(ev, ranks)
        if is_main_process():
            report(name, ev, ranks)
            if self.save_features and save_dir:
                write_features(osp.join(save_dir, "features"), name,
                               self.datamanager.test_dataset[name], ev,
                               {"arch": self.raw_model.cfg.arch})
            if visrank:
                compat.visualize_ranked_results(
                    ev.distmat, self.datamanager.fetch_test_loaders(name),
                    self.datamanager.data_type, width=self.datamanager.width,
                    height=self.datamanager.height,
                    save_dir=osp.join(save_dir, "visrank_" + name), topk=visrank_topk)
        return ev

    def save_model(self, epoch: int, rank1: float, save_dir: str, is_best: bool = False) -> None:
        """torchreid's ``run`` calls this after each test-set evaluation to write its own
        checkpoint (not atomic, not weights-only-loadable, selected on the test set): nothing is
        written here; the :class:`~.checkpoint.PeriodicCheckpointer` hook writes one per epoch."""

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
            "scaler": self.precision.state_dict(),
            "memory_cache_key": self.identity_bank.cache_key,
            "rng": rng_state(),
            "best_metric": self.checkpointer.best_metric,
            "validation": list(self.validation.history),
        }
        if prompt_stage is not None:
            state["prompt_stage"] = prompt_stage
        return state

    def resume(self, checkpoint: str | Mapping[str, Any] | Weights,
               source: str | None = None) -> int:
        """Restore model, optimiser, scheduler, scaler, RNGs, the identity bank's key (and an
        interrupted CLIP-ReID stage 1), the validation history and best metric from a
        checkpoint file, an already loaded checkpoint or the run's resolved :class:`Weights`
        (the runner passes those: the file is read once; ``source`` names it in messages).
        Returns the epoch to start from."""
        if isinstance(checkpoint, str):
            source = source or checkpoint
            checkpoint = load_checkpoint(checkpoint)
        weights = checkpoint
        if isinstance(checkpoint, Weights):
            source = source or checkpoint.source
            weights, checkpoint = checkpoint, checkpoint.checkpoint
        source = source or "the checkpoint"
        missing = [k for k in ("optimizer", "epoch") if k not in checkpoint]
        if not (weights.state_dict if isinstance(weights, Weights) else "state_dict" in weights):
            missing.insert(0, "state_dict")
        if missing:
            raise ValueError(f"{source} is not a VideoV2MEngine checkpoint (missing {missing})")
        load_model_weights(self.raw_model, weights, source=source)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None and checkpoint.get("scheduler") is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.precision.load_state_dict(checkpoint.get("scaler"))
        self.identity_bank.load_state(checkpoint)
        self.epochs_done = int(checkpoint["epoch"])
        if checkpoint.get("rng") is not None:
            set_rng_state(checkpoint["rng"])
        self.checkpointer.best_metric = checkpoint.get("best_metric")
        self.validation.history = list(checkpoint.get("validation") or [])
        if is_main_process():
            stage1 = self.identity_bank.stage1_resume
            where = (f"CLIP-ReID stage 1 at epoch {stage1['epoch'] + 1}" if stage1
                     else f"epoch {checkpoint['epoch'] + 1}")
            logger.info(f"=> Resumed from {source}: continuing at {where}")
        return int(checkpoint["epoch"])
