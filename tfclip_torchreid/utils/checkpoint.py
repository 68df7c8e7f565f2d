"""Reading and writing checkpoint files: atomic, weights-only, self-describing.

* :func:`save_checkpoint` writes to a temporary file in the target folder, fsyncs it and renames
  it over the destination (atomic on POSIX), and keeps only tensors and plain Python values;
* :func:`load_checkpoint` loads with ``weights_only=True``; for old torchreid checkpoints (numpy
  ``rank1``) it allow-lists the numpy globals they need (``docs/torchreid.md``);
* :func:`checkpoint_header` is what makes a file self-describing (architecture, model
  configuration, package version and the preprocessing of its training data: input size, mean,
  std); :func:`read_header` gives it back (None for other files);
* :func:`unwrap_state_dict` is the one place that finds the state dict inside a checkpoint
  (a ``state_dict`` / ``model`` / ``model_state_dict`` entry or the dict itself, without the
  ``module.`` and ``_orig_mod.`` prefixes of DataParallel/DDP and ``torch.compile``).

Every reader of weights goes through :func:`tfclip_torchreid.models.weights.resolve_weights`,
which reads a file once with :func:`load_checkpoint`.

Example:
    >>> import torch, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> _ = save_checkpoint({"state_dict": {"w": torch.ones(2)}, "epoch": 1}, os.path.join(d, "a.pth"))
    >>> load_checkpoint(os.path.join(d, "a.pth"))["epoch"]
    1
"""

from __future__ import annotations

import json
import os
import os.path as osp
import tempfile
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
import torch
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from ..version import __version__

__all__ = ["save_checkpoint", "load_checkpoint", "save_json", "checkpoint_header", "read_header",
           "preprocess_entry", "unwrap_state_dict", "FORMAT", "HEADER_KEYS", "STATE_DICT_KEYS"]

#: ``format`` entry of every checkpoint this package writes
FORMAT = "tfclip_torchreid.checkpoint/1"
#: the entries :func:`checkpoint_header` writes (``preprocess``: older files lack it)
HEADER_KEYS = ("format", "version", "arch", "model_cfg", "preprocess")
#: entries that hold the state dict of a checkpoint, in the order they are looked for
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")
#: wrapper prefixes: DataParallel / DDP and ``torch.compile``
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


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
    fpath = osp.abspath(fpath)
    folder = osp.dirname(fpath)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pth", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(_plain(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, fpath)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    return fpath


def save_json(obj: Any, fpath: str, indent: int | None = 2) -> str:
    """Atomically write ``obj`` as JSON to ``fpath`` (temp file in the same folder + rename), so
    a reader never sees half a file; returns ``fpath``.

    Example:
        >>> import tempfile, json
        >>> path = save_json({"mAP": 0.5}, os.path.join(tempfile.mkdtemp(), "results.json"))
        >>> json.load(open(path))
        {'mAP': 0.5}
    """
    folder = osp.dirname(osp.abspath(fpath))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=indent)
        os.replace(tmp, fpath)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    return fpath


def load_checkpoint(fpath: str, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``.

    Accepts our checkpoints, plain state dicts, and checkpoints written by torchreid's
    ``Engine.save_model`` (numpy ``rank1``), for which the needed numpy globals are allow-listed.
    """
    if not osp.isfile(fpath):
        raise FileNotFoundError(f"checkpoint not found: {fpath}")
    try:
        return torch.load(fpath, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised below with context
        first = err
    safe: List[Any] = [np.dtype]
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


def preprocess_entry(image_size: Sequence[int], mean: Sequence[float],
                     std: Sequence[float]) -> Dict[str, List]:
    """The ``preprocess`` entry of a checkpoint: ``{"image_size": [H, W], "mean": [3],
    "std": [3]}`` (plain lists), checked.

    Example:
        >>> preprocess_entry((256, 128), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))["image_size"]
        [256, 128]
    """
    entry = {"image_size": [int(v) for v in image_size], "mean": [float(v) for v in mean],
             "std": [float(v) for v in std]}
    if len(entry["image_size"]) != 2 or min(entry["image_size"]) < 1:
        raise ValueError(f"preprocess image_size must be (H, W) > 0, got {image_size}")
    if len(entry["mean"]) != 3 or len(entry["std"]) != 3 or min(entry["std"]) <= 0:
        raise ValueError(f"preprocess needs 3 means and 3 positive stds, got mean={mean}, "
                         f"std={std}")
    return entry


def checkpoint_header(model: torch.nn.Module,
                      preprocess: Mapping[str, Sequence] | None = None) -> Dict[str, Any]:
    """What makes a file self-describing: format, package version, architecture, model config
    and, when given, the ``preprocess`` entry (:func:`preprocess_entry`: input size, mean and
    std of the frames the model was trained on)."""
    cfg = getattr(model, "cfg", None)
    header = {
        "format": FORMAT,
        "version": __version__,
        "arch": getattr(cfg, "arch", type(model).__name__),
        "model_cfg": cfg.to_dict() if hasattr(cfg, "to_dict") else {},
    }
    if preprocess is not None:
        header["preprocess"] = preprocess_entry(preprocess["image_size"], preprocess["mean"],
                                                preprocess["std"])
    return header


def read_header(checkpoint: Mapping[str, Any]) -> Dict[str, Any] | None:
    """``{"arch", "model_cfg", "version", "preprocess"}`` of a self-describing checkpoint (
    ``preprocess`` is None in files written before it was recorded), else None."""
    if not isinstance(checkpoint, Mapping) or checkpoint.get("format") != FORMAT:
        return None
    return {k: checkpoint.get(k) for k in ("arch", "model_cfg", "version", "preprocess")}


def unwrap_state_dict(checkpoint: Mapping[str, Any]) -> Dict[str, Any]:
    """The state dict of a checkpoint: its ``state_dict`` / ``model`` / ``model_state_dict``
    entry (the first that is a dict) or the checkpoint itself, without the ``module.`` and
    ``_orig_mod.`` prefixes (a new dict; the tensors are shared).

    Example:
        >>> list(unwrap_state_dict({"state_dict": {"module.fc.weight": 0}, "epoch": 3}))
        ['fc.weight']
    """
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"a checkpoint must be a dict, got {type(checkpoint).__name__}")
    state = checkpoint
    for key in STATE_DICT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            state = checkpoint[key]
            break
    state = dict(state)
    for prefix in _WRAPPER_PREFIXES:
        consume_prefix_in_state_dict_if_present(state, prefix)
    return state
