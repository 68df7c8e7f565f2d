"""Training samplers whose randomness is a function of ``(seed, epoch, position)`` only.

torchreid's samplers (``RandomIdentitySampler``: P identities x K tracklets per batch, the
authors' algorithm; ``RandomSampler``) draw from the process-global generators, and a data
loader's workers keep their own random streams across epochs, so a run that is killed and
resumed does not see the same batches or the same augmentations. :class:`SeededSampler` wraps a
torchreid sampler (or :class:`~.distributed.DistributedRandomIdentitySampler`): each epoch it
draws the index order under a seed derived from ``(seed, epoch)`` and yields
``(index, sample_seed)`` pairs with ``sample_seed = derive_seed(seed, epoch, rank, position)``;
:class:`~.dataset.SeededDataset` runs each sample under its seed. Call :meth:`set_epoch` at the
start of every epoch (the engine does, through the data manager).

Example:
    >>> from tfclip_torchreid import compat
    >>> data = [((f"{i}.jpg",), i // 4, 0, 0) for i in range(32)]
    >>> s = SeededSampler(compat.RandomIdentitySampler(data, 8, 4), seed=1)
    >>> s.set_epoch(3)
    >>> first = list(s)
    >>> first == list(s) and len(first) == len(s)
    True
"""

from __future__ import annotations

from typing import Iterator, Sequence, Tuple

from torch.utils.data import Sampler

from .. import compat
from ..utils.rng import derive_seed, rng_scope
from .distributed import DistributedRandomIdentitySampler

__all__ = ["SeededSampler", "build_train_sampler"]


class SeededSampler(Sampler):
    """Yields ``(index, sample_seed)``: the wrapped sampler's order drawn under ``(seed, epoch)``.

    Args:
        sampler: any index sampler (torchreid's ``RandomIdentitySampler``, ``RandomSampler``,
            :class:`~.distributed.DistributedRandomIdentitySampler`, ...); its ``set_epoch`` is
            called too when it has one.
        seed: the run's seed.
        rank: this process (sample seeds differ across ranks).
    """

    def __init__(self, sampler: Sampler, seed: int = 0, rank: int = 0) -> None:
        self.sampler = sampler
        self.seed = int(seed)
        self.rank = int(rank)
        self.epoch = 0
        self._order: tuple[int, list[int]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and sample seeds are drawn next."""
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def order(self) -> list[int]:
        """This epoch's index order (drawn once per epoch, then reused)."""
        if self._order is None or self._order[0] != self.epoch:
            with rng_scope(derive_seed(self.seed, self.epoch)):
                self._order = (self.epoch, [int(i) for i in self.sampler])
        return self._order[1]

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        for position, index in enumerate(self.order()):
            yield index, derive_seed(self.seed, self.epoch, self.rank, position)

    def __len__(self) -> int:
        """The exact length of this epoch (torchreid's ``RandomIdentitySampler`` only estimates
        it, so a progress bar's total would be off by a few batches)."""
        return len(self.order())


def build_train_sampler(
    data_source: Sequence[tuple],
    name: str = "RandomIdentitySampler",
    batch_size: int = 16,
    num_instances: int = 4,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> SeededSampler:
    """torchreid's sampler ``name`` (split across ranks when ``world_size > 1``), seeded.

    ``name``: ``RandomIdentitySampler`` (P x K, TF-CLIP's) or any torchreid sampler name; with
    several processes only ``RandomIdentitySampler`` and ``RandomSampler`` are supported.

    Example:
        >>> data = [((f"{i}.jpg",), i // 4, 0, 0) for i in range(32)]
        >>> type(build_train_sampler(data, batch_size=8).sampler).__name__
        'RandomIdentitySampler'
    """
    available = compat.tr_module("data.sampler").AVAI_SAMPLERS
    if name not in available:
        raise ValueError(f"unknown train_sampler {name!r}; choose one of {available}")
    if name == "RandomIdentitySampler":
        if batch_size % num_instances:
            raise ValueError(
                f"batch_size_train={batch_size} must be a multiple of num_instances="
                f"{num_instances} (P identities x K tracklets)")
        num_pids = len({item[1] for item in data_source})
        if num_pids < batch_size // num_instances:
            raise ValueError(
                f"the training set has {num_pids} identities, fewer than the "
                f"{batch_size // num_instances} per batch (batch_size_train/num_instances)")
    if world_size == 1:
        base = compat.build_train_sampler(data_source, name, batch_size=batch_size,
                                          num_instances=num_instances)
    elif name == "RandomIdentitySampler":
        base = DistributedRandomIdentitySampler(data_source, batch_size, num_instances, rank,
                                                world_size, seed)
    elif name == "RandomSampler":
        from torch.utils.data import DistributedSampler

        base = DistributedSampler(range(len(data_source)), world_size, rank, shuffle=True,
                                  seed=seed, drop_last=True)
    else:
        raise ValueError(f"distributed training supports train_sampler 'RandomIdentitySampler' "
                         f"or 'RandomSampler', got {name!r}")
    return SeededSampler(base, seed=seed, rank=rank)
