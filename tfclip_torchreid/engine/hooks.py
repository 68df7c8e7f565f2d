"""The engine's hooks: one small object per concern, called at fixed points of training.

The shape is fast-reid's and detectron2's ``HookBase``. :class:`~.v2m_engine.VideoV2MEngine`
keeps torchreid's loop and calls every registered hook, in registration order, at

* ``before_train()``: in ``run``, before torchreid's loop (training runs only, not
  ``test_only``);
* ``before_epoch()`` / ``after_epoch()``: in ``train``, around torchreid's epoch (after it,
  ``engine.epochs_done`` counts the epoch);
* ``before_step()`` / ``after_step()``: in ``forward_backward``, around one optimisation step
  (``engine.loss_terms`` holds the step's loss terms);
* ``after_train()``: in ``run``, after torchreid's loop, also when training fails.

A hook reaches the engine through ``self.trainer`` (a weak proxy set by
``engine.register_hooks``). The engine registers, in this order:

==========================  =====================  ==============================================
hook                        module                 concern
==========================  =====================  ==============================================
``IdentityBankHook``        ``identity_bank.py``   CLIP-Memory / CLIP-ReID stage 1 before the
                                                   first epoch, cached on disk
``ProgressBar``             ``hooks.py``           a tqdm bar per epoch and per extraction
``EpochTimer``              ``hooks.py``           epoch time, the "=> epoch done" line
``ValidationHook``          ``validation.py``      held-out validation, ``validation.json``,
                                                   ``best.pth``
``PeriodicCheckpointer``    ``checkpoint.py``      ``latest.pth`` + ``epoch_NNN.pth`` per epoch
==========================  =====================  ==============================================

Example:
    >>> class CountSteps(HookBase):
    ...     def before_train(self):
    ...         self.steps = 0
    ...     def after_step(self):
    ...         self.steps += 1
    >>> hook = CountSteps()
    >>> hook.before_train(); hook.after_step(); hook.steps
    1
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Iterable

from ..utils.distributed import is_main_process

logger = logging.getLogger(__name__)

try:  # tqdm ships with torchreid's and open_clip's dependencies
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

__all__ = ["HookBase", "ProgressBar", "EpochTimer"]


class HookBase:
    """Base class of the engine's hooks: every method is a no-op until overridden."""

    #: the engine (a weak proxy), set when the hook is registered
    trainer: Any = None

    def before_train(self) -> None:
        """Before torchreid's loop starts (training runs only)."""

    def after_train(self) -> None:
        """After torchreid's loop, also when it raised."""

    def before_epoch(self) -> None:
        """Before each epoch."""

    def after_epoch(self) -> None:
        """After each epoch (``trainer.epochs_done`` includes it)."""

    def before_step(self) -> None:
        """Before each optimisation step."""

    def after_step(self) -> None:
        """After each optimisation step (``trainer.loss_terms`` holds its loss terms)."""


class ProgressBar(HookBase):
    """A tqdm bar per training epoch (it replaces torchreid's per-batch lines, whose
    ``print_freq`` it raises past the epoch's length) and one per feature extraction
    (:meth:`wrap`).

    Args:
        enabled: show the bars (None: when stderr is a terminal). Never on ranks other than 0,
            nor without tqdm.
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = (sys.stderr.isatty() if enabled is None else bool(enabled)) and (
            tqdm is not None and is_main_process())
        self._bar = None

    def before_epoch(self) -> None:
        if not self.enabled:
            return
        t = self.trainer
        batches = len(t.train_loader)
        self._bar = tqdm(total=batches, desc=f"epoch {t.epoch + 1}/{t.max_epoch}", leave=False,
                         dynamic_ncols=True)
        t.print_freq = max(t.print_freq, batches + 1)

    def after_step(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.3g}" for k, v in self.trainer.loss_terms.items()},
                                  refresh=False)
            self._bar.update(1)

    def after_epoch(self) -> None:
        self.close()

    def after_train(self) -> None:
        self.close()

    def close(self) -> None:
        """Close the epoch's bar, if one is open."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def wrap(self, iterable: Iterable, desc: str) -> Iterable:
        """``iterable`` with a bar named ``desc`` when enabled (feature extraction)."""
        if not self.enabled:
            return iterable
        return tqdm(iterable, desc=desc, leave=False, mininterval=1.0)


class EpochTimer(HookBase):
    """Times every epoch (``trainer.timings["train_s"]``, summed over the run) and logs
    ``=> epoch E/M done in S s at lr X`` on rank 0, X the base learning rate the epoch ran at
    (read before it: torchreid steps the schedule at the end of its ``train``)."""

    def __init__(self) -> None:
        self._start = 0.0
        self._lr = 0.0

    def before_epoch(self) -> None:
        self._start = time.time()
        self._lr = self.trainer.get_current_lr()

    def after_epoch(self) -> None:
        t = self.trainer
        seconds = time.time() - self._start
        t.timings["train_s"] = t.timings.get("train_s", 0.0) + seconds
        if is_main_process():
            logger.info(f"=> epoch {t.epoch + 1}/{t.max_epoch} done in {seconds:.1f} s at "
                        f"lr {self._lr:.2e}")
