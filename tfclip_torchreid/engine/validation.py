"""Validation on held-out training identities, and ``best.pth`` selected on it (never the test set).

With a validation split (``data.val_ids``: identities held out of training by
:func:`~tfclip_torchreid.data.holdout.hold_out_identities`), the run's ``eval_freq`` /
``start_eval`` schedule :class:`ValidationHook` instead of test-set evaluations: after each due
epoch (the last one always is) it evaluates the split with the engine's dense evaluator
(RNG-neutral, so a validated run trains exactly as an unvalidated one), appends the row to the
history, logs ``Val/mAP`` and ``Val/R1`` to tensorboard, rewrites ``<save_dir>/validation.json``
and writes ``best.pth`` when the validation mAP improves. The history and the best metric travel
in every checkpoint, so a resumed run continues both exactly. The test set is evaluated once, at
the end.

Example:
    >>> hook = ValidationHook()
    >>> hook.schedule(eval_freq=2, start_eval=0)
    >>> [hook.due(epoch, max_epoch=5) for epoch in range(5)]
    [False, True, False, True, True]
"""

from __future__ import annotations

import logging
import os.path as osp
from typing import Any, Dict

from ..utils.checkpoint import save_json
from ..utils.distributed import is_main_process
from ..utils.rng import rng_preserved
from .hooks import HookBase

logger = logging.getLogger(__name__)

__all__ = ["VALIDATION", "ValidationHook"]

#: name of the held-out validation split in logs, tensorboard and ``validation.json``
VALIDATION = "validation"


class ValidationHook(HookBase):
    """Evaluates the validation split after the due epochs; keeps the history; writes
    ``validation.json`` and ``best.pth``. Idle until :meth:`schedule` is called (the engine
    calls it for data managers with a validation split).

    Attributes:
        history: one row per validation (``epoch``, ``mAP``, ``mINP``, ``R1``..., the query and
            gallery counts), restored from checkpoints.
    """

    def __init__(self) -> None:
        self.history: list[dict] = []
        self.eval_freq, self.start_eval = -1, 0
        self.eval_kwargs: Dict[str, Any] = {}

    def schedule(self, eval_freq: int = -1, start_eval: int = 0, **eval_kwargs: Any) -> None:
        """Validate every ``eval_freq`` epochs from epoch ``start_eval`` on, and after the last
        one; ``eval_kwargs`` (``dist_metric``, ``normalize_feature``, ``ranks``) go to the
        evaluation."""
        self.eval_freq, self.start_eval = int(eval_freq), int(start_eval)
        self.eval_kwargs = dict(eval_kwargs)

    def due(self, epoch: int, max_epoch: int) -> bool:
        """Whether the 0-based ``epoch`` just trained is on the schedule."""
        done = epoch + 1
        return self.eval_freq > 0 and done >= self.start_eval and (
            done % self.eval_freq == 0 or done == max_epoch)

    def after_epoch(self) -> None:
        t = self.trainer
        if not self.due(t.epoch, t.max_epoch):
            return
        row = self.validate()
        if t.checkpointer.save_best(t.checkpoint_state(t.epoch), row["mAP"]) and is_main_process():
            logger.info(f"=> best validation mAP so far: wrote {t.checkpointer.best_path}")

    def validate(self) -> dict:
        """Evaluate the validation split now (RNG-neutral); append the row to :attr:`history`,
        log it to tensorboard (``Val/``) and write ``<save_dir>/validation.json``. Returns the
        row."""
        t = self.trainer
        loaders = t.datamanager.val_loader
        with rng_preserved():
            t.evaluate(VALIDATION, loaders["query"], loaders["gallery"], **self.eval_kwargs)
        row = {"epoch": t.epoch + 1, **t.results.pop(VALIDATION)}
        row.pop("test_s")  # no wall time in checkpoints: a resumed run's are identical
        self.history.append(row)
        if is_main_process():
            for key in ("mAP", "R1"):
                if key in row and t.writer is not None:
                    t.writer.add_scalar(f"Val/{key}", row[key], row["epoch"])
            save_json(self.history, osp.join(t.save_dir, "validation.json"))
        return row
