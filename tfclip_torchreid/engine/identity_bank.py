"""The identity bank's content-addressed cache (CLIP-Memory rows; CLIP-ReID's trained prompts).

Filling the bank costs one pass of the pretrained encoder over every training frame (about 510k
frames on MARS). The result depends only on the encoder weights, the training tracklets and the
extraction settings, so it is cached under the sha256 of exactly those (:func:`cache_key`) and a
rerun of the same configuration loads it in a second. A cache file that cannot be read (a write
killed mid-way by another tool, a disk error) is reported and recomputed, never fatal. With
several processes every rank takes the same branch (the pass itself is collective).

Example:
    >>> import tempfile, torch
    >>> d = tempfile.mkdtemp()
    >>> entry = load_or_compute(d, "k1", lambda: {"bank": torch.ones(2, 3)}, verbose=False)
    >>> load_or_compute(d, "k1", lambda: {"bank": torch.zeros(2, 3)}, verbose=False)["bank"].sum()
    tensor(6.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import os.path as osp
import warnings
from typing import Any, Callable, Dict, Iterable

import torch
import torch.distributed as dist

from .checkpoint import load_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)

__all__ = ["default_cache_dir", "cache_key", "load_or_compute"]


def default_cache_dir() -> str:
    """Where identity banks are cached (``$TFCLIP_CACHE`` or ``~/.cache/tfclip_torchreid``)."""
    root = os.environ.get("TFCLIP_CACHE", osp.join(osp.expanduser("~"), ".cache",
                                                   "tfclip_torchreid"))
    return osp.join(root, "clip_memory")


def cache_key(modules: torch.nn.Module | Iterable[torch.nn.Module], tracklets: Iterable[tuple],
              settings: Dict[str, Any]) -> str:
    """sha256 (32 hex digits) of the weights of ``modules`` (the encoder; for CLIP-ReID also the
    text tower and the initial prompts), the tracklets and labels, and the settings."""
    h = hashlib.sha256()
    modules = [modules] if isinstance(modules, torch.nn.Module) else list(modules)
    for module in modules:
        for name, t in sorted(module.state_dict().items()):
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
    is_main = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
    if path and is_main:
        save_checkpoint({**{k: v.cpu() for k, v in bank.items()}, "key": key,
                         "settings": settings or {}}, path)
        if verbose:
            logger.info(f"=> identity bank cached at {path}")
    return bank
