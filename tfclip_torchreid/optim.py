"""Optimiser and learning-rate schedule of TF-CLIP (docs/released_vs_paper.md#optimiser, #schedule; paper "Experiment Settings").

:func:`build_tfclip_optimizer` reproduces the authors' ``make_optimizer_2stage``: Adam with coupled
L2 weight decay (not AdamW), betas (0.9, 0.999), eps 1e-8; parameters with
``requires_grad=False`` (the frozen BN biases) are left out; for a parameter whose name contains

* ``"bias"`` (incl. ``in_proj_bias``): lr x ``bias_lr_factor`` (2) and ``weight_decay_bias``;
* one of ``fc_name_patterns`` and ``large_fc_lr``: lr x ``fc_lr_factor`` (10) -- the TMD
  classifier; the other classifiers stay at the base lr;
* one of ``temporal_name_patterns``: lr x ``temporal_lr_factor``. The released code meant a 10x
  group for the temporal module ("SAT") but its names never match, so it is dead: the default
  factor 1.0 is the released behaviour, 10.0 the apparent intention (docs/released_vs_paper.md#optimiser).

The factors multiply, as in the authors' code. A name pattern matches a parameter when its full
name (``model.named_parameters()``, case-sensitive) has the pattern at the start of one of its
dotted components: ``"temporal."`` matches ``temporal.attn.in_proj_bias`` and
``module.temporal.x`` (DDP) but not ``classifier_temporal.weight``; ``"classifier_proj_temp"``
matches ``classifier_proj_temp.weight`` (and the authors' dead ``classifier_proj_temp2``), as the
authors' substring test does. Defaults follow :class:`~tfclip_torchreid.models.tfclip.TFCLIP`'s
names: TMD classifier ``classifier_proj_temp`` (the authors' name; ``classifier_temporal``, the
classifier of the conv1d/transformer fusion ablations, is treated the same), temporal module
``temporal``. The ``"bias"`` test is a plain substring test, like the authors'. The authors build one
param group per tensor; here tensors with the same (lr, weight decay) share one group (the same
update, fewer groups, so the foreach/fused Adam kernels batch over more tensors). Each group has a
``name`` (``"base"``, ``"bias"``, ``"fc"``, ``"temporal"``, ``"temporal+bias"``...) and carries the
parameter names (``param_names``).

torchreid's ``build_optimizer`` is not reused: its ``staged_lr`` only scales whole top-level
children by one factor, it cannot give biases their own lr and weight decay, and it keeps frozen
parameters.

:class:`WarmupMultiStepLR` (a ``LambdaLR``), stepped **once per epoch**: at step s the lr factor is
``w(s) * gamma ** #{m in milestones : m <= s}`` with ``w(s) = warmup_factor * (1 - s/W) + s/W``
for ``s < W = warmup_epochs`` (linear) and 1 afterwards. Which step an epoch runs at is where the
reference steps its scheduler (``step_at``, :data:`STEP_AT`): TF-CLIP's processor steps after
each epoch, so 0-based epoch k runs at step k (``"end"``): with base lr 5e-6, milestones (30, 50),
epoch 1 runs at 5e-7, epoch 10 at 4.55e-6, epochs 11-30 at 5e-6, 31-50 at 5e-7, 51+ at 5e-8.
CLIP-ReID's stage 2 steps at the top of each epoch, after the step its constructor takes, so
1-based epoch e runs at step e (``"start"``): epoch 1 at 9.5e-7, epoch 9 at 4.55e-6, epochs 10-29
at 5e-6, 30-49 at 5e-7, 50+ at 5e-8.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(4, 2)
    >>> opt = build_tfclip_optimizer(model)
    >>> [(g["name"], g["lr"]) for g in opt.param_groups]
    [('base', 5e-06), ('bias', 1e-05)]
    >>> sched = WarmupMultiStepLR(opt, milestones=(30, 50))  # epoch 1 at 0.1 x lr
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections import OrderedDict
from typing import Any, Sequence

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LambdaLR

__all__ = [
    "DEFAULT_FC_NAME_PATTERNS",
    "DEFAULT_TEMPORAL_NAME_PATTERNS",
    "build_tfclip_optimizer",
    "STEP_AT",
    "WarmupMultiStepLR",
    "WarmupCosineLR",
]

#: where in an epoch a reference steps its per-epoch scheduler: ``"end"`` (after the epoch,
#: TF-CLIP's processor: epoch k runs at step k, 0-based) or ``"start"`` (at the top of the epoch,
#: CLIP-ReID's stage 2: 1-based epoch e runs at step e)
STEP_AT: tuple[str, ...] = ("end", "start")

# The temporal head's classifier (x fc_lr_factor when large_fc_lr): TMD's (the authors' name,
# kept by TFCLIP) and the one of the other temporal fusions.
DEFAULT_FC_NAME_PATTERNS: tuple[str, ...] = ("classifier_proj_temp", "classifier_temporal")
# The temporal module (x temporal_lr_factor): TFCLIP.temporal (TMD or another fusion).
DEFAULT_TEMPORAL_NAME_PATTERNS: tuple[str, ...] = ("temporal.",)


def _matches(name: str, patterns: Sequence[str]) -> bool:
    """True when a pattern starts one of the dotted components of ``name``."""
    return any(name.startswith(p) or f".{p}" in name for p in patterns)


def build_tfclip_optimizer(
    model: nn.Module,
    lr: float = 5e-6,
    weight_decay: float = 1e-4,
    bias_lr_factor: float = 2.0,
    weight_decay_bias: float = 1e-4,
    large_fc_lr: bool = True,
    fc_lr_factor: float = 10.0,
    temporal_lr_factor: float = 1.0,
    fc_name_patterns: Sequence[str] = DEFAULT_FC_NAME_PATTERNS,
    temporal_name_patterns: Sequence[str] = DEFAULT_TEMPORAL_NAME_PATTERNS,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    fused: bool | None = None,
) -> torch.optim.Adam:
    """Adam with the TF-CLIP per-parameter learning rates and weight decays (docs/released_vs_paper.md#optimiser).

    Args:
        model: the model (a DDP / DataParallel / compiled wrapper works too: the
            ``module.`` / ``_orig_mod.`` prefixes do not affect the pattern matching).
        lr: base learning rate (5e-6).
        weight_decay: L2 weight decay of non-bias parameters (1e-4).
        bias_lr_factor: lr factor of parameters whose name contains ``"bias"`` (2).
        weight_decay_bias: weight decay of those parameters (1e-4).
        large_fc_lr: give the TMD classifier ``fc_lr_factor`` x lr (released: True).
        fc_lr_factor: that factor (10).
        temporal_lr_factor: lr factor of the temporal module (1 = released behaviour).
        fc_name_patterns: name patterns of the temporal (TMD) classifier (see module docs).
        temporal_name_patterns: name patterns of the temporal module.
        betas, eps: Adam's (authors: torch defaults).
        fused: passed to ``torch.optim.Adam`` (None = torch's choice).

    Returns:
        ``torch.optim.Adam`` whose groups carry ``name`` and ``param_names``.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential()
        >>> net.add_module("backbone", torch.nn.Linear(8, 4))
        >>> net.add_module("classifier_proj_temp", torch.nn.Linear(4, 3, bias=False))
        >>> opt = build_tfclip_optimizer(net)
        >>> {g["name"]: g["lr"] for g in opt.param_groups}
        {'base': 5e-06, 'bias': 1e-05, 'fc': 5e-05}
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"build_tfclip_optimizer needs an nn.Module, got {type(model).__name__}")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if isinstance(fc_name_patterns, str) or isinstance(temporal_name_patterns, str):
        raise ValueError("fc_name_patterns / temporal_name_patterns must be sequences of strings")

    groups: OrderedDict[str, dict[str, Any]] = OrderedDict()
    n_temporal = 0
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        tags, factor, decay = [], 1.0, weight_decay
        if large_fc_lr and _matches(name, fc_name_patterns):
            tags.append("fc")
            factor *= fc_lr_factor
        if _matches(name, temporal_name_patterns):
            n_temporal += 1
            if temporal_lr_factor != 1.0:
                tags.append("temporal")
                factor *= temporal_lr_factor
        if "bias" in name:
            tags.append("bias")
            factor *= bias_lr_factor
            decay = weight_decay_bias
        key = "+".join(tags) or "base"
        if key not in groups:
            groups[key] = {"params": [], "lr": lr * factor, "weight_decay": decay, "name": key}
        groups[key]["params"].append((name, param))
    if not groups:
        raise ValueError("the model has no trainable parameter (all have requires_grad=False)")
    if temporal_lr_factor != 1.0 and n_temporal == 0:
        warnings.warn(
            f"temporal_lr_factor={temporal_lr_factor} but no parameter name contains any of "
            f"{tuple(temporal_name_patterns)}: pass temporal_name_patterns matching the model",
            stacklevel=2,
        )
    return torch.optim.Adam(list(groups.values()), lr=lr, betas=betas, eps=eps, fused=fused)


class _ClosedFormLR(LambdaLR):
    """A ``LambdaLR`` whose factor is the method :meth:`factor` of the 0-based epoch; loading a
    state also sets the optimiser's lrs for the loaded epoch (so resuming is exact even when the
    optimiser state is not restored). The state holds only numbers, lists and strings, so
    ``torch.load(..., weights_only=True)`` reads it back."""

    def __init__(self, optimizer: torch.optim.Optimizer, last_epoch: int = -1) -> None:
        super().__init__(optimizer, lambda epoch: self.factor(epoch), last_epoch)

    def factor(self, epoch: int) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        f = self.factor(self.last_epoch)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * f
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]


class WarmupMultiStepLR(_ClosedFormLR):
    """Linear (or constant) warm-up, then x ``gamma`` at each milestone; stepped once per epoch.

    Factor at step s: ``w(s) * gamma ** bisect_right(milestones, s)``,
    ``w(s) = warmup_factor * (1 - s / warmup_epochs) + s / warmup_epochs`` (``"linear"``) or
    ``warmup_factor`` (``"constant"``) for ``s < warmup_epochs``, else 1: the authors' (and
    CLIP-ReID's stage-2) ``WarmupMultiStepLR``, as a torch ``LambdaLR``. 0-based epoch k
    (``last_epoch``) runs at step ``s = k`` when the reference steps after each epoch
    (``step_at="end"``, TF-CLIP) and ``s = k + 1`` when it steps at the top of each epoch
    (``"start"``, CLIP-ReID's stage 2; its constructor took step 0 already).

    Args:
        optimizer: the optimiser (each group's lr at construction is its base lr).
        milestones: increasing epochs (0-based ``last_epoch`` values) at which lr is x ``gamma``.
        gamma: decay factor (0.1).
        warmup_factor: factor of the first epoch (0.1).
        warmup_epochs: length of the warm-up in epochs (10; 0 disables it).
        warmup_method: ``"linear"`` or ``"constant"``.
        step_at: ``"end"`` (TF-CLIP) or ``"start"`` (CLIP-ReID), see :data:`STEP_AT`.
        last_epoch: index of the last finished epoch when resuming without a state dict (-1).

    Example:
        >>> import torch
        >>> opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=5e-6)
        >>> sched = WarmupMultiStepLR(opt, milestones=(30, 50))
        >>> lrs = []
        >>> for epoch in range(60):
        ...     lrs.append(opt.param_groups[0]["lr"])
        ...     opt.step()  # ... one epoch of training at this lr
        ...     sched.step()
        >>> [round(lrs[i], 12) for i in (0, 9, 10, 30, 50)]
        [5e-07, 4.55e-06, 5e-06, 5e-07, 5e-08]
        >>> sched = WarmupMultiStepLR(opt, milestones=(30, 50), step_at="start")
        >>> [round(sched.factor(k) * 5e-6, 12) for k in (0, 8, 9, 29, 49)]
        [9.5e-07, 4.55e-06, 5e-06, 5e-07, 5e-08]
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        milestones: Sequence[int] = (30, 50),
        gamma: float = 0.1,
        warmup_factor: float = 0.1,
        warmup_epochs: int = 10,
        warmup_method: str = "linear",
        step_at: str = "end",
        last_epoch: int = -1,
    ) -> None:
        milestones = [int(m) for m in milestones]
        if milestones != sorted(milestones):
            raise ValueError(f"milestones must be increasing integers, got {milestones}")
        if warmup_method not in ("linear", "constant"):
            raise ValueError(f"warmup_method must be 'linear' or 'constant', got {warmup_method!r}")
        if int(warmup_epochs) < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        if step_at not in STEP_AT:
            raise ValueError(f"step_at must be one of {'|'.join(STEP_AT)}, got {step_at!r}")
        self.milestones = milestones
        self.gamma = float(gamma)
        self.warmup_factor = float(warmup_factor)
        self.warmup_epochs = int(warmup_epochs)
        self.warmup_method = warmup_method
        self.step_at = step_at
        super().__init__(optimizer, last_epoch)

    def factor(self, epoch: int) -> float:
        """The lr multiplier at 0-based epoch ``epoch`` (at step ``epoch``, or ``epoch + 1``
        with ``step_at="start"``)."""
        step = epoch + (1 if self.step_at == "start" else 0)
        warm = 1.0
        if step < self.warmup_epochs:
            if self.warmup_method == "constant":
                warm = self.warmup_factor
            else:
                alpha = step / self.warmup_epochs
                warm = self.warmup_factor * (1.0 - alpha) + alpha
        return warm * self.gamma ** bisect.bisect_right(self.milestones, step)


class WarmupCosineLR(_ClosedFormLR):
    """CLIP-ReID's stage-1 schedule: linear warm-up from ``warmup_lr``, then cosine to ``min_lr``.

    With ``e = last_epoch + 1`` (1-based epoch; the reference steps timm's ``CosineLRScheduler``
    with the epoch number at the start of each epoch): ``lr(e) = warmup_lr + e (lr - warmup_lr) /
    warmup_epochs`` for ``e < warmup_epochs``, else ``min_lr + (lr - min_lr)(1 + cos(pi e / E)) /
    2`` (the cosine counts from epoch 0, not from the end of the warm-up), and ``min_lr`` from
    ``e = E``. The base lr is each group's lr at construction.

    Example:
        >>> import torch
        >>> opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=3.5e-4)
        >>> sched = WarmupCosineLR(opt, max_epochs=120, warmup_epochs=5)
        >>> lrs = []
        >>> for _ in range(120):
        ...     lrs.append(opt.param_groups[0]["lr"])
        ...     opt.step()
        ...     sched.step()
        >>> round(lrs[0], 8), round(lrs[4], 8), round(lrs[119], 8)
        (7.8e-05, 0.00034851, 1e-06)
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_epochs: int = 120,
                 warmup_epochs: int = 5, warmup_lr: float = 1e-5, min_lr: float = 1e-6,
                 last_epoch: int = -1) -> None:
        if int(max_epochs) < 1 or int(warmup_epochs) < 0:
            raise ValueError(f"need max_epochs >= 1 and warmup_epochs >= 0, got {max_epochs}, "
                             f"{warmup_epochs}")
        self.max_epochs, self.warmup_epochs = int(max_epochs), int(warmup_epochs)
        self.warmup_lr, self.min_lr = float(warmup_lr), float(min_lr)
        self.lr = float(optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"]))
        super().__init__(optimizer, last_epoch)

    def factor(self, epoch: int) -> float:
        """The lr multiplier (lr(e) / base lr) at 0-based epoch ``epoch``."""
        e = epoch + 1
        if e < self.warmup_epochs:
            lr = self.warmup_lr + e * (self.lr - self.warmup_lr) / self.warmup_epochs
        elif e >= self.max_epochs:
            lr = self.min_lr
        else:
            lr = self.min_lr + 0.5 * (self.lr - self.min_lr) * (
                1 + math.cos(math.pi * e / self.max_epochs))
        return lr / self.lr
