"""The training model's wrappers: DistributedDataParallel across processes, ``torch.compile``.

Only the training forward goes through the wrapped model; the engine keeps the plain model
(``raw_model``) for everything else: state dicts, the identity bank, evaluation (which each rank
runs on its own shard of the tracklets).

Example:
    >>> layer = nn.Linear(2, 2)
    >>> wrap_model(layer, torch.device("cpu"), distributed=False) is layer
    True
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["wrap_model"]


def wrap_model(model: nn.Module, device: torch.device, distributed: bool,
               compile_model: bool = False, find_unused_parameters: bool = False) -> nn.Module:
    """``model`` in DistributedDataParallel when ``distributed`` (on ``device``'s GPU, or on
    the CPU with gloo), then compiled when ``compile_model``.

    ``find_unused_parameters`` goes to DistributedDataParallel; False is right for every switch
    combination of TF-CLIP and CLIP-ReID (the parameters a forward never uses are frozen).
    """
    if distributed:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=find_unused_parameters)
    return torch.compile(model) if compile_model else model
