"""Checkpoints that survive crashes and load under ``torch.load(weights_only=True)``.

torchreid's own ``save_checkpoint`` stores ``rank1`` as a numpy scalar, so its checkpoints do not
reload under torch >= 2.6, and it writes in place, so a crash mid-write loses the file. Here:

* :func:`save_checkpoint` writes to a temporary file in the target folder, fsyncs it and renames it
  over the destination (atomic on POSIX), and keeps only tensors and plain Python values;
* :func:`load_checkpoint` loads with ``weights_only=True``; for old torchreid checkpoints it
  allow-lists the three numpy globals they need (see TOOLKIT_NOTES 1.3 d);
* :func:`rng_state` / :func:`set_rng_state` capture every random generator a training epoch uses
  (python, numpy, torch, CUDA) as weights-only-safe values, so a resumed run continues exactly.

Example:
    >>> import torch, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> save_checkpoint({"state_dict": {"w": torch.ones(2)}, "epoch": 1}, os.path.join(d, "a.pth"))
    >>> load_checkpoint(os.path.join(d, "a.pth"))["epoch"]
    1
"""

from __future__ import annotations

import os
import random
import tempfile
from typing import Any

import numpy as np
import torch


def _plain(obj: Any) -> Any:
    """Convert numpy scalars/arrays nested in ``obj`` into weights-only-loadable values."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def save_checkpoint(state: dict, fpath: str) -> str:
    """Atomically write ``state`` to ``fpath`` (temp file + fsync + rename); returns ``fpath``."""
    fpath = os.path.abspath(fpath)
    folder = os.path.dirname(fpath)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pth", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(_plain(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, fpath)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return fpath


def load_checkpoint(fpath: str, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``.

    Accepts our checkpoints, plain state dicts, and checkpoints written by torchreid's
    ``Engine.save_model`` (numpy ``rank1``), for which the needed numpy globals are allow-listed.
    """
    if not os.path.isfile(fpath):
        raise FileNotFoundError(f"checkpoint not found: {fpath}")
    try:
        return torch.load(fpath, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised below with context
        first = err
    safe = [np.dtype]
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    scalar = getattr(getattr(core, "multiarray", None), "scalar", None)
    if scalar is not None:
        safe.append(scalar)
    safe += [getattr(np.dtypes, n) for n in ("Float32DType", "Float64DType") if hasattr(np, "dtypes")]
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(fpath, map_location=map_location, weights_only=True)
    except Exception:  # noqa: BLE001
        raise RuntimeError(
            f"cannot load checkpoint {fpath} with weights_only=True: {first}. "
            "If it is a TorchScript CLIP file, pass it as the CLIP `pretrained` path instead; "
            "if it is a trusted pickle, re-save its state_dict with torch.save(model.state_dict())."
        ) from first


def rng_state() -> dict:
    """Every RNG a training epoch draws from, as weights-only-safe values."""
    np_state = np.random.get_state()
    state = {
        "python": _plain(random.getstate()),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
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
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
