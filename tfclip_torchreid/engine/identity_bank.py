"""The identity bank: filled once before the first epoch (:class:`IdentityBankHook`), cached by content.

TF-CLIP's CLIP-Memory (paper Sec. "CLIP-Memory", Alg. 1) holds, per training identity, the mean
sequence feature of the *pretrained* encoder (``docs/released_vs_paper.md#clip-memory``):
every training tracklet embedded densely, no SIE, the projected CLS averaged over each clip's
frames and over the tracklet's clips, then averaged per identity. CLIP-ReID's bank holds the text
features of the identity prompts learned by its first stage
(:mod:`~tfclip_torchreid.engine.prompt_learning`) on those same tracklet features.

Filling the bank costs one pass of the pretrained encoder over every training frame (about 510k
frames on MARS). The result depends only on the encoder weights, the training tracklets and the
extraction settings, so it is cached under the sha256 of exactly those (:func:`cache_key`) and a
rerun of the same configuration loads it in a second. A cache file that cannot be read (a write
killed mid-way by another tool, a disk error) is reported and recomputed, never fatal. With
several processes every rank takes the same branch (the pass itself is collective and sharded).
Filling is RNG-neutral: a cache hit and a fresh pass leave the training trajectory identical.
CLIP-ReID's stage 1 writes a checkpoint after each of its epochs, so a run killed during it
resumes inside it.

Deviations from the authors' code, on purpose: the memory pass is batched (the authors run one
tracklet at a time), cached and sharded across processes.

Example:
    >>> import tempfile, torch
    >>> d = tempfile.mkdtemp()
    >>> entry = load_or_compute(d, "k1", lambda: {"bank": torch.ones(2, 3)}, verbose=False)
    >>> load_or_compute(d, "k1", lambda: {"bank": torch.zeros(2, 3)}, verbose=False)["bank"].sum()
    tensor(6.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import os.path as osp
import time
import warnings
from typing import Any, Callable, Dict, Iterable

import torch
import torch.distributed as dist

from ..models.clip_memory import aggregate_identity_means
from ..models.peft import is_peft_key
from ..utils.checkpoint import load_checkpoint, save_checkpoint
from ..utils.distributed import is_main_process
from ..utils.rng import rng_preserved
from .extraction import TrackletFeatures
from .hooks import HookBase
from .prompt_learning import PromptLearningStage, PromptStageConfig

logger = logging.getLogger(__name__)

__all__ = ["IdentityBankHook", "default_cache_dir", "cache_key", "load_or_compute"]


def default_cache_dir() -> str:
    """Where identity banks are cached (``$TFCLIP_CACHE`` or ``~/.cache/tfclip_torchreid``)."""
    root = os.environ.get("TFCLIP_CACHE", osp.join(osp.expanduser("~"), ".cache",
                                                   "tfclip_torchreid"))
    return osp.join(root, "clip_memory")


def cache_key(modules: torch.nn.Module | Iterable[torch.nn.Module], tracklets: Iterable[tuple],
              settings: Dict[str, Any]) -> str:
    """sha256 (32 hex digits) of the weights of ``modules`` (the encoder; for CLIP-ReID also the
    text tower and the initial prompts), the tracklets and labels, and the settings. What a
    parameter-efficient method adds to the encoder is left out (:func:`~..models.peft.
    is_peft_key`): the bank is the base's (:func:`~..models.peft.base_only`)."""
    h = hashlib.sha256()
    modules = [modules] if isinstance(modules, torch.nn.Module) else list(modules)
    for module in modules:
        state = {k: v for k, v in module.state_dict().items() if not is_peft_key(k)}
        for name, t in sorted(state.items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    for paths, pid, camid, *_ in tracklets:
        h.update(f"{pid}|{camid}|{len(paths)}|{paths[0]}|{paths[-1]}\n".encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:32]


def _read(path: str) -> Dict[str, torch.Tensor] | None:
    try:
        entry = load_checkpoint(path)
        if not torch.is_tensor(entry.get("bank")):
            raise ValueError("no 'bank' tensor")
        return {k: v for k, v in entry.items() if torch.is_tensor(v)}
    except Exception as err:  # noqa: BLE001 - a bad cache is recomputed, not fatal
        warnings.warn(f"ignoring the unreadable identity-bank cache {path} ({err}); "
                      f"recomputing it", stacklevel=3)
        return None


def _agree(found: bool, device: torch.device) -> bool:
    """True only if every rank found a usable cache file."""
    if not (dist.is_available() and dist.is_initialized()):
        return found
    flag = torch.tensor([int(found)], device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def load_or_compute(cache_dir: str, key: str,
                    compute: Callable[[], Dict[str, torch.Tensor]],
                    settings: Dict[str, Any] | None = None,
                    device: torch.device | None = None, distributed: bool = False,
                    verbose: bool = True) -> Dict[str, torch.Tensor]:
    """The cached entry ``<cache_dir>/<key>.pth`` or ``compute()`` (then cached by rank 0): a
    dict of tensors holding at least ``"bank"`` (and e.g. CLIP-ReID's trained prompts).

    ``cache_dir=""`` disables the cache.
    """
    path = osp.join(cache_dir, f"{key}.pth") if cache_dir else ""
    bank = _read(path) if path and osp.isfile(path) else None
    if distributed and not _agree(bank is not None, device or torch.device("cpu")):
        bank = None
    if bank is not None:
        if verbose:
            logger.info(f"=> identity bank loaded from cache {path}")
        return bank
    bank = compute()
    if path and is_main_process():
        save_checkpoint({**{k: v.cpu() for k, v in bank.items()}, "key": key,
                         "settings": settings or {}}, path)
        if verbose:
            logger.info(f"=> identity bank cached at {path}")
    return bank


class IdentityBankHook(HookBase):
    """Fills the model's identity bank before the first epoch (a no-op once it is filled, and
    for models without a bank): the CLIP-Memory, or CLIP-ReID's text features after its stage 1.

    Args:
        cache_dir: folder of cached banks (None: :func:`default_cache_dir`; ``""``: no cache).
        prompt_stage: CLIP-ReID's stage-1 settings (models with ``memory_source="text"``).

    Attributes:
        cache_key: the bank's :func:`cache_key` (kept in checkpoints: a resumed stage 1 keeps
            its original key).
        stage1_resume: the state of an interrupted stage 1, from the checkpoint being resumed.
    """

    def __init__(self, cache_dir: str | None = None,
                 prompt_stage: PromptStageConfig | None = None) -> None:
        self.cache_dir = default_cache_dir() if cache_dir is None else cache_dir
        self.prompt_stage = prompt_stage or PromptStageConfig()
        self.cache_key = ""
        self.stage1_resume: dict | None = None

    def before_epoch(self) -> None:
        self.fill()

    def load_state(self, checkpoint: Dict[str, Any]) -> None:
        """The cache key and any interrupted stage 1 of a checkpoint being resumed."""
        self.cache_key = checkpoint.get("memory_cache_key", "")
        self.stage1_resume = checkpoint.get("prompt_stage")

    def settings(self) -> dict:
        """What, besides the weights and the tracklets, determines the bank."""
        t = self.trainer
        dm = t.datamanager
        settings = {"seq_len": dm.seq_len, "height": dm.height, "width": dm.width,
                    "norm": str(dm.norm), "amp": t.precision.mode, "source": "clip",
                    "memory_dim": int(t.raw_model.memory.bank.shape[1]), "version": 1}
        if t.raw_model.uses_text:
            settings.update(source="text", stage1=dataclasses.asdict(self.prompt_stage))
        return settings

    def compute_cache_key(self) -> str:
        """sha256 of (encoder weights, training tracklets and labels, extraction settings; for
        CLIP-ReID's text bank also the text tower, the initial prompts and stage 1's settings)."""
        model = self.trainer.raw_model
        modules = [model.backbone]
        if model.uses_text:
            modules += [model.text_encoder, model.prompt_learner]
        return cache_key(modules, self.trainer.datamanager.memory_loader.dataset.tracklets,
                         self.settings())

    def fill(self) -> None:
        """Fill the bank from the cache or by computing it (RNG-neutral)."""
        t = self.trainer
        memory = getattr(t.raw_model, "memory", None)
        if memory is None or memory.initialized:
            return
        with rng_preserved():
            if not self.cache_key:  # a resumed stage 1 keeps its original key
                self.cache_key = self.compute_cache_key()
            compute = self.compute_text_bank if t.raw_model.uses_text else self.compute_memory
            entry = load_or_compute(self.cache_dir, self.cache_key, compute,
                                    settings=self.settings(), device=t.device,
                                    distributed=t.distributed, verbose=is_main_process())
            if "cls_ctx" in entry:
                with torch.no_grad():
                    t.raw_model.prompt_learner.cls_ctx.copy_(entry["cls_ctx"])
            memory.set(entry["bank"].to(memory.bank.device))

    def train_features(self) -> TrackletFeatures:
        """Every training tracklet embedded densely with the current (pretrained) encoder, no
        SIE: the projected CLS averaged over each clip's frames, then over the tracklet's clips
        (the cycled padding frames of the last clip counted, as in the authors' code). Batched
        across tracklets, sharded across processes and gathered in order."""
        t = self.trainer
        model = t.raw_model
        was_training = model.training
        model.eval()
        start = time.time()
        try:
            out = t.evaluator.extract(t.datamanager.memory_loader,
                                      lambda clips, cams: model.encode_memory(clips),
                                      "CLIP-Memory")
        finally:
            model.train(was_training)
        elapsed = time.time() - start
        t.timings["memory_s"] = elapsed
        t.timings["memory_fps"] = out.frames / max(elapsed, 1e-9)
        return out

    def compute_memory(self) -> dict[str, torch.Tensor]:
        """The CLIP-Memory: per-identity mean of :meth:`train_features` (paper Alg. 1)."""
        t = self.trainer
        feats = self.train_features()
        num_classes = t.raw_model.num_classes
        bank = aggregate_identity_means(feats.features.float(), feats.pids, num_classes)
        if is_main_process():
            logger.info(f"=> CLIP-Memory: {num_classes} identities from {len(feats.pids)} "
                        f"tracklets, {feats.frames} frames in {t.timings['memory_s']:.1f} s "
                        f"({t.timings['memory_fps']:.1f} frames/s)")
        return {"bank": bank}

    def compute_text_bank(self) -> dict[str, torch.Tensor]:
        """CLIP-ReID's stage 1 on :meth:`train_features` (resumed from a checkpoint if one was
        loaded), a checkpoint after each of its epochs, then every identity's text feature."""
        t = self.trainer
        feats = self.train_features()
        cfg = self.prompt_stage
        stage = PromptLearningStage(t.raw_model, feats.features, feats.pids, cfg,
                                    t.precision.autocast, self._log_stage1)
        if self.stage1_resume is not None:
            stage.load_state_dict(self.stage1_resume)
            self.stage1_resume = None
        if is_main_process():
            logger.info(f"=> CLIP-ReID stage 1: prompts of {t.raw_model.num_classes} identities "
                        f"on {len(feats.pids)} tracklet features, epochs {stage.epoch + 1}.."
                        f"{cfg.max_epoch}")
        start = time.time()
        bank = stage.run(lambda st: t.checkpointer.save(
            t.checkpoint_state(-1, prompt_stage=st.state_dict())))
        t.timings["stage1_s"] = time.time() - start
        return {"bank": bank, "cls_ctx": t.raw_model.prompt_learner.cls_ctx.detach().clone()}

    def _log_stage1(self, epoch: int, it: int, terms: dict, lr: float) -> None:
        if not is_main_process():
            return
        text = "  ".join(f"{k} {v:.4f}" for k, v in terms.items())
        where = "done" if it < 0 else f"iter {it}"
        logger.info(f"stage 1: epoch [{epoch}/{self.prompt_stage.max_epoch}] {where}  {text}  "
                    f"lr {lr:.2e}")
        writer = self.trainer.writer
        if it < 0 and writer is not None:
            for k, v in terms.items():
                writer.add_scalar(f"Stage1/{k}", v, epoch)
