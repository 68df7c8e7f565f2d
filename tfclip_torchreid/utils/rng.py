"""Random-number state: capture, restore, and derive per-sample seeds.

Training randomness (the PK batch order, RRS frame picks, flips, erasing) is a function of
``(seed, epoch, position in the epoch)`` only, never of which process or data-loader worker draws
it: :class:`~tfclip_torchreid.data.samplers.SeededSampler` hands every sample its own seed from
:func:`derive_seed`, and the dataset runs the sample's transforms inside :func:`rng_scope`. A run
killed mid-epoch and resumed from the last checkpoint therefore replays the epoch exactly, with
any number of loader workers. :func:`rng_state` / :func:`set_rng_state` capture the generators of
the main process (python, numpy, torch, CUDA) as values ``torch.load(weights_only=True)`` reads.

Example:
    >>> import random
    >>> with rng_scope(derive_seed(7, 0, 3)):
    ...     a = random.random()
    >>> with rng_scope(derive_seed(7, 0, 3)):
    ...     b = random.random()
    >>> a == b
    True
"""

from __future__ import annotations

import contextlib
import random
from typing import Any, Iterator

import numpy as np
import torch

__all__ = ["rng_state", "set_rng_state", "rng_scope", "rng_preserved", "derive_seed"]


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (numpy ``SeedSequence``: well mixed, process-independent).

    Example:
        >>> derive_seed(1, 2) == derive_seed(1, 2) != derive_seed(2, 1)
        True
    """
    words = np.random.SeedSequence([int(k) % 2**63 for k in keys]).generate_state(2, np.uint32)
    return (int(words[0]) << 31 | int(words[1]) >> 1) & (2**63 - 1)


@contextlib.contextmanager
def rng_scope(seed: int) -> Iterator[None]:
    """Seed python's, numpy's and torch's CPU generators with ``seed`` inside the block and put
    back the states they had before (so the caller's own random stream is untouched)."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _plain(obj: Any) -> Any:
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def rng_state() -> dict:
    """Every generator of this process, as weights-only-safe values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": _plain(random.getstate()),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the generators captured by :func:`rng_state`."""

    def _tuple(x: Any) -> Any:
        return tuple(_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x

    random.setstate(_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def rng_preserved() -> Iterator[None]:
    """Run the block, then put every generator back (:func:`rng_state`, CUDA included): what
    the block draws leaves the caller's random streams where they were.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> with rng_preserved():
        ...     _ = torch.rand(3)
        >>> x = torch.rand(1)
        >>> _ = torch.manual_seed(0)
        >>> torch.equal(x, torch.rand(1))
        True
    """
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)
