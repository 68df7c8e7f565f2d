"""PK identity sampling and tracklet sharding for multi-process (torchrun / DDP) runs.

TF-CLIP trains with P=4 identities x K=4 tracklets per batch (paper, Implementation Details),
the algorithm of torchreid's ``RandomIdentitySampler``. The released code is
single-GPU. :class:`DistributedRandomIdentitySampler` keeps torchreid's sampler unchanged: every
rank runs it with the same seed for the epoch (``seed + epoch``), obtaining the same global list
of PK batches, and rank ``r`` takes batches ``r, r + W, r + 2W, ...``. The ranks therefore see
disjoint identity groups, each rank's batch is a complete PK batch (P x K tracklets, so the
per-GPU triplet loss and SSP batch are as in single-GPU training), and every rank gets the same
number of batches (the last ``len % W`` global batches are dropped).

Example:
    >>> from tfclip_torchreid.data.distributed import shard_indices
    >>> [list(shard_indices(10, r, 3)) for r in range(3)]
    [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
"""

from __future__ import annotations

import random
from typing import Iterator, List, Sequence, Tuple

import numpy as np
from torch.utils.data import Sampler

from tfclip_torchreid import compat

from ..utils.distributed import get_rank, get_world_size, is_dist

__all__ = ["DistributedRandomIdentitySampler", "shard_indices", "dist_rank_world"]


def dist_rank_world(rank: int | None = None, world_size: int | None = None) -> Tuple[int, int]:
    """``(rank, world_size)`` from the arguments, else from ``torch.distributed`` when initialised.

    Raises:
        ValueError: neither given nor available, or inconsistent.
    """
    if rank is None or world_size is None:
        if not is_dist():
            raise ValueError(
                "distributed sampling needs rank and world_size: initialise torch.distributed "
                "(e.g. launch with torchrun and call init_process_group) or pass them explicitly"
            )
        rank = get_rank() if rank is None else rank
        world_size = get_world_size() if world_size is None else world_size
    rank, world_size = int(rank), int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return rank, world_size


def shard_indices(n: int, rank: int, world: int) -> range:
    """Contiguous shard of ``range(n)`` for ``rank`` out of ``world`` (sizes differ by <= 1).

    Concatenating the shards of ranks ``0..world-1`` gives ``range(n)`` in order, so features
    extracted per shard and gathered in rank order line up with the full query/gallery lists.

    Example:
        >>> shard_indices(5, 1, 2)
        range(3, 5)
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world, got rank={rank}, world={world}")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


class DistributedRandomIdentitySampler(Sampler):
    """torchreid's ``RandomIdentitySampler`` split across ranks by whole PK batches.

    Args:
        data_source: torchreid tracklet list, items ``(img_paths, pid, camid[, dsetid])``.
        batch_size: tracklets per batch *on each rank* (P x K; 16 for TF-CLIP).
        num_instances: K, tracklets per identity (4).
        rank, world_size: this process and the number of processes; taken from
            ``torch.distributed`` when None.
        seed: shared seed; the epoch's batch list is drawn with ``seed + epoch``.

    Call :meth:`set_epoch` at the start of every epoch (as with ``DistributedSampler``),
    otherwise every epoch repeats the same order. Use with ``DataLoader(batch_size=batch_size,
    drop_last=True)``; ``len(sampler)`` is exact for the current epoch.

    Example:
        >>> data = [((f"{i}.jpg",), i // 4, 0) for i in range(64)]
        >>> s0 = DistributedRandomIdentitySampler(data, 8, 4, rank=0, world_size=2)
        >>> s1 = DistributedRandomIdentitySampler(data, 8, 4, rank=1, world_size=2)
        >>> len(s0) == len(s1), set(s0).isdisjoint(set(s1))
        (True, True)
    """

    def __init__(
        self,
        data_source: Sequence[tuple],
        batch_size: int,
        num_instances: int,
        rank: int | None = None,
        world_size: int | None = None,
        seed: int = 0,
    ):
        if num_instances < 1 or batch_size % num_instances != 0:
            raise ValueError(
                f"batch_size={batch_size} must be a positive multiple of "
                f"num_instances={num_instances} (P identities x K tracklets)"
            )
        num_pids = len({item[1] for item in data_source})
        if num_pids < batch_size // num_instances:
            raise ValueError(
                f"the training set has {num_pids} identities, fewer than the "
                f"{batch_size // num_instances} identities per batch (batch_size/num_instances)"
            )
        self.rank, self.world_size = dist_rank_world(rank, world_size)
        self.batch_size = int(batch_size)
        self.num_instances = int(num_instances)
        self.seed = int(seed)
        self.epoch = 0
        self.base = compat.RandomIdentitySampler(data_source, batch_size, num_instances)
        self._cache: Tuple[int, List[List[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch (changes the batch list identically on every rank)."""
        self.epoch = int(epoch)

    def global_batches(self, epoch: int | None = None) -> List[List[int]]:
        """All PK batches of ``epoch`` (default: current), identical on every rank.

        torchreid's sampler draws from the global ``random`` and ``numpy.random`` states; they are
        seeded with ``seed + epoch`` for the draw and restored afterwards.
        """
        epoch = self.epoch if epoch is None else int(epoch)
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            seed = (self.seed + epoch) % (2**32)
            random.seed(seed)
            np.random.seed(seed)
            flat = [int(i) for i in iter(self.base)]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
        n = len(flat) // self.batch_size
        batches = [flat[k * self.batch_size:(k + 1) * self.batch_size] for k in range(n)]
        self._cache = (epoch, batches)
        return batches

    def rank_batches(self, epoch: int | None = None) -> List[List[int]]:
        """This rank's batches: global batches ``rank, rank + W, ...`` (equal count per rank)."""
        batches = self.global_batches(epoch)
        per_rank = len(batches) // self.world_size
        return batches[self.rank::self.world_size][:per_rank]

    def __iter__(self) -> Iterator[int]:
        for batch in self.rank_batches():
            yield from batch

    def __len__(self) -> int:
        return len(self.rank_batches()) * self.batch_size
