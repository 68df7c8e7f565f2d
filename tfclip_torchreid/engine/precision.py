"""Numeric precision: the autocast dtype, the loss scaler and the optimisation step they shape.

``train.amp`` (:data:`AMP_MODES`) picks one of

* ``auto``: bf16 autocast on a GPU, float32 on the CPU;
* ``bf16``: bf16 autocast (on the CPU too); no loss scaling, bf16 has float32's exponent range;
* ``fp16``: fp16 autocast; on a GPU with torch's ``GradScaler`` (dynamic loss scaling), whose
  state goes into the checkpoints;
* ``off``: float32 throughout.

:meth:`Precision.step` is the engine's one optimisation step: zero the gradients, backward
(scaled under fp16), clip the global gradient norm when asked (after unscaling), step the
optimiser, update the scale.

Example:
    >>> p = Precision("auto", torch.device("cpu"))
    >>> p.mode, p.dtype, p.scaler
    ('off', None, None)
    >>> with Precision("bf16", torch.device("cpu")).autocast():
    ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
    torch.bfloat16
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict

import torch
from torch import nn

__all__ = ["AMP_MODES", "Precision"]

#: ``amp`` settings (``train.amp``)
AMP_MODES = ("auto", "bf16", "fp16", "off")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """The precision policy of one engine.

    Args:
        amp: one of :data:`AMP_MODES`.
        device: where training runs (``auto`` and the scaler depend on it).

    Attributes:
        mode: the resolved mode (``bf16``, ``fp16`` or ``off``).
        dtype: the autocast dtype (None for float32).
        scaler: a ``GradScaler`` for fp16 on a GPU, else None.
    """

    def __init__(self, amp: str = "auto", device: torch.device | str = "cpu") -> None:
        mode = str(amp).lower()
        if mode not in AMP_MODES:
            raise ValueError(f"amp must be one of {'|'.join(AMP_MODES)}, got {mode!r}")
        self.device = torch.device(device)
        if mode == "auto":
            mode = "bf16" if self.device.type == "cuda" else "off"
        self.mode = mode
        self.dtype = _DTYPES.get(mode)
        self.scaler = (torch.amp.GradScaler("cuda")
                       if mode == "fp16" and self.device.type == "cuda" else None)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast for the configured precision (a no-op for float32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, model: nn.Module,
             max_norm: float = 0.0) -> None:
        """One optimisation step on ``loss``; ``max_norm > 0`` clips the global gradient norm
        of ``model``'s parameters first."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if max_norm > 0:
                self.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            self.scaler.step(optimizer)
            self.scaler.update()
            return
        loss.backward()
        if max_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()

    def state_dict(self) -> Dict[str, Any] | None:
        """The scaler's state (None without a scaler), for the checkpoints."""
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: Dict[str, Any] | None) -> None:
        """Restore the scaler (nothing to do without one, or for a checkpoint without it)."""
        if self.scaler is not None and state is not None:
            self.scaler.load_state_dict(state)
