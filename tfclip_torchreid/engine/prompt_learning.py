"""CLIP-ReID's first stage: learn the identity prompts with both CLIP encoders frozen.

CLIP-ReID (Li, Sun, Li, AAAI 2023, Sec. 3.2) describes each identity by "A photo of a X X X X
person." whose four X are learned vectors. Stage 1 trains only those vectors: the image features
of every training image (here: every tracklet, its frame-averaged projected CLS, exactly the
CLIP-Memory pass) are computed once by the frozen pretrained encoder, then for ``max_epoch``
epochs random batches of (feature, label) pairs are contrasted with the text features of their
labels by the image-to-text and text-to-image supervised contrastive losses
(:class:`~tfclip_torchreid.losses.supcon.PromptLearningLoss`). The reference schedule: Adam, lr
3.5e-4, weight decay 1e-4, warm-up over 5 epochs from 1e-5, cosine to 1e-6, batch 64, 120 epochs
(60 for RN50). Afterwards the text features of all identities fill the identity bank, which the
second stage uses exactly as TF-CLIP uses its CLIP-Memory.

Deviations from the reference, on purpose: a batch order seeded by ``(seed, epoch)`` (resumable
exactly), an empty last batch is skipped (the reference runs it when the number of images is a
multiple of the batch size), and the stage can be checkpointed after every epoch.

Example:
    >>> stage = PromptLearningStage(model, feats, labels, PromptStageConfig(max_epoch=2))
    ... # doctest: +SKIP
    >>> bank = stage.run()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import OrderedDict
from typing import Any, Callable, Dict

import torch

from ..losses.supcon import PromptLearningLoss
from ..optim import WarmupCosineLR
from ..utils.rng import derive_seed

__all__ = ["PromptStageConfig", "PromptLearningStage", "text_bank"]


@dataclasses.dataclass
class PromptStageConfig:
    """Stage-1 settings (the yacs ``stage1`` section)."""

    max_epoch: int = 120
    batch_size: int = 64
    lr: float = 3.5e-4
    weight_decay: float = 1e-4
    warmup_epochs: int = 5
    warmup_lr: float = 1e-5
    min_lr: float = 1e-6
    print_freq: int = 50
    seed: int = 0


@torch.no_grad()
def text_bank(model: torch.nn.Module, batch_size: int = 64,
              autocast: Callable[[], Any] = contextlib.nullcontext) -> torch.Tensor:
    """Text features of every identity (Y, d), computed in batches with the current prompts."""
    labels = torch.arange(model.num_classes, device=model.prompt_learner.cls_ctx.device)
    out = []
    for chunk in labels.split(batch_size):
        with autocast():
            out.append(model.text_features(chunk).float())
    return torch.cat(out)


class PromptLearningStage:
    """Trains ``model.prompt_learner`` on fixed image features (CLIP-ReID stage 1).

    Args:
        model: a :class:`~tfclip_torchreid.models.tfclip.TFCLIP` with ``memory_source="text"``.
        features: (N, d) image features of the training tracklets (frozen encoder, no SIE).
        labels: (N,) their training labels.
        cfg: :class:`PromptStageConfig`.
        autocast: mixed-precision context factory.
        log: called with (epoch, iteration, terms, lr) every ``print_freq`` iterations and at the
            end of each epoch (iteration = -1).

    Only ``cls_ctx`` requires a gradient while :meth:`run_epoch` runs; the text encoder stays
    frozen, as do all other parameters.
    """

    def __init__(self, model: torch.nn.Module, features: torch.Tensor, labels: torch.Tensor,
                 cfg: PromptStageConfig,
                 autocast: Callable[[], Any] = contextlib.nullcontext,
                 log: Callable[[int, int, Dict[str, float], float], None] | None = None) -> None:
        if not getattr(model, "uses_text", False):
            raise ValueError("the prompt stage needs a model with memory_source='text'")
        if features.shape[0] != labels.shape[0] or features.shape[0] == 0:
            raise ValueError(f"need one label per feature, got {tuple(features.shape)} features "
                             f"and {tuple(labels.shape)} labels")
        self.model, self.cfg, self.autocast, self.log = model, cfg, autocast, log
        device = model.prompt_learner.cls_ctx.device
        self.features = features.to(device, torch.float32)
        self.labels = labels.to(device).long()
        self.criterion = PromptLearningLoss()
        self.optimizer = torch.optim.Adam([model.prompt_learner.cls_ctx], lr=cfg.lr,
                                          weight_decay=cfg.weight_decay)
        self.scheduler = WarmupCosineLR(self.optimizer, cfg.max_epoch, cfg.warmup_epochs,
                                        cfg.warmup_lr, cfg.min_lr)
        self.epoch = 0  # epochs done

    def state_dict(self) -> dict:
        """Everything to continue the stage exactly (the prompts are in the model's state)."""
        return {"epoch": self.epoch, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    @property
    def done(self) -> bool:
        return self.epoch >= self.cfg.max_epoch

    def run_epoch(self) -> Dict[str, float]:
        """One epoch over a permutation seeded by ``(seed, epoch)``; returns mean loss terms."""
        cls_ctx = self.model.prompt_learner.cls_ctx
        g = torch.Generator().manual_seed(derive_seed(self.cfg.seed, 1, self.epoch))
        order = torch.randperm(len(self.labels), generator=g).to(self.labels.device)
        totals: Dict[str, float] = OrderedDict()
        steps = 0
        cls_ctx.requires_grad_(True)
        try:
            for it, batch in enumerate(order.split(self.cfg.batch_size)):
                terms = self._step(self.features[batch], self.labels[batch])
                for k, v in terms.items():
                    totals[k] = totals.get(k, 0.0) + v
                steps += 1
                if self.log and self.cfg.print_freq > 0 and (it + 1) % self.cfg.print_freq == 0:
                    self.log(self.epoch + 1, it + 1, terms, self.optimizer.param_groups[0]["lr"])
        finally:
            cls_ctx.requires_grad_(False)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        self.epoch += 1
        means = {k: v / max(steps, 1) for k, v in totals.items()}
        if self.log:
            self.log(self.epoch, -1, means, lr)
        return means

    def _step(self, feats: torch.Tensor, labels: torch.Tensor) -> Dict[str, float]:
        with self.autocast():
            text = self.model.text_features(labels)
        loss, terms = self.criterion(feats, text, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return dict(terms)

    def run(self, after_epoch: Callable[[PromptLearningStage], None] | None = None
            ) -> torch.Tensor:
        """Remaining epochs (``after_epoch`` e.g. writes a checkpoint); returns the text bank."""
        self.model.eval()  # no dropout in CLIP's text tower; BatchNorm statistics untouched
        while not self.done:
            self.run_epoch()
            if after_epoch is not None:
                after_epoch(self)
        return text_bank(self.model, self.cfg.batch_size, self.autocast)
