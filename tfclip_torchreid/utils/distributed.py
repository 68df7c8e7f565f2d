"""Multi-process helpers for the engine, on PyTorch's own machinery (torchrun + DDP).

torchreid has no distributed training (torchreid #521). With ``torchrun --nproc_per_node=N
tools/train.py ...`` each process trains on its own identity groups (see
:class:`~tfclip_torchreid.data.distributed.DistributedRandomIdentitySampler`), gradients are
all-reduced by DistributedDataParallel, and the two extraction passes (CLIP-Memory, test features)
are sharded: each rank embeds a contiguous slice of the tracklets and the slices are all-gathered
back in the original order, so every rank ends with the same features as one process would.

Example:
    >>> init_distributed()  # reads torchrun's RANK/WORLD_SIZE/LOCAL_RANK; no-op otherwise
    False
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist


def is_dist() -> bool:
    """True inside an initialised ``torch.distributed`` process group."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_dist() else 1


def is_main_process() -> bool:
    """True on rank 0 (the process that logs and writes files)."""
    return get_rank() == 0


def init_distributed(backend: str | None = None, timeout_s: int = 1800) -> bool:
    """Initialise the default process group from torchrun's environment variables.

    Returns True when running distributed. ``backend`` defaults to nccl with CUDA, gloo otherwise.
    """
    if is_dist():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
        return False
    use_cuda = torch.cuda.is_available() and os.environ.get("CUDA_VISIBLE_DEVICES", None) != ""
    backend = backend or ("nccl" if use_cuda else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return True


def all_gather_ordered(*tensors: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """Concatenate each rank's rows in rank order (tensors may differ in length across ranks;
    a rank without rows passes ``None`` for each, at least one rank must have rows)."""
    if get_world_size() == 1:
        return tensors
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, [None if t is None else t.cpu() for t in tensors])
    return tuple(torch.cat([g[i] for g in gathered if g[i] is not None])
                 for i in range(len(tensors)))


def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if is_dist():
        dist.barrier()


def cleanup() -> None:
    """Destroy the process group (no-op when not distributed)."""
    if is_dist():
        dist.destroy_process_group()
