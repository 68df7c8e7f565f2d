"""TF-CLIP video data manager on top of torchreid's ``VideoDataManager``.

torchreid parses the datasets (its registry, ``split_id``, ``combineall``, multi-source sums) and
its samplers are reused; the loaders are then rebuilt on :class:`~.dataset.ClipDataset` so that
training, testing and CLIP-Memory extraction follow the released TF-CLIP pipeline
(TFCLIP_SPEC.md Sec. 2, 8, 10; paper, Implementation Details):

* train: RRS 8-frame clips (``"rrs"``), sequence-consistent flip + the authors' per-frame erasing,
  ImageNet normalisation, P x K = 4 x 4 identity sampling (torchreid's ``RandomIdentitySampler``),
  ``drop_last=True``;
* test: every tracklet cut into dense 8-frame clips (``"dense"``, the final-evaluation protocol)
  or one ``"rrs_test"`` clip (the authors' during-training evaluation); batches concatenate the
  clips of ``batch_size_test`` tracklets (:func:`~.dataset.collate_clips`);
* ``memory_loader``: the training tracklets, dense, no augmentation, ``pid`` = train label, for
  the CLIP-Memory pass (spec Sec. 2; the authors use batch 1 and shuffle, which does not change
  the per-identity means);
* gallery = query + gallery for MARS and LS-VID by default: the authors' evaluator (spec 10) and
  the official MARS protocol (11,310 gallery tracklets) include the query set in the gallery.
  torchreid's MARS gallery alone (9,330) gives different numbers.

Example:
    >>> from tfclip_torchreid.data.datamanager import TFCLIPVideoDataManager
    >>> dm = TFCLIPVideoDataManager(root="reid-data", sources="mars")  # doctest: +SKIP
    >>> batch = next(iter(dm.train_loader))  # doctest: +SKIP
    >>> batch["img"].shape  # doctest: +SKIP
    torch.Size([16, 8, 3, 256, 128])
"""

from __future__ import annotations

import warnings
from typing import Dict, Iterable, Union

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from tfclip_torchreid import compat

from .dataset import ClipDataset, collate_clips
from .distributed import DistributedRandomIdentitySampler, dist_rank_world, shard_indices
from .sampling import canonical_method
from .transforms import _erasing_mode, _norm_stats, build_sequence_transforms

__all__ = ["TFCLIPVideoDataManager", "GALLERY_INCLUDES_QUERY_DEFAULT", "check_layouts"]

#: Datasets whose evaluation protocol puts the query set into the gallery by default.
GALLERY_INCLUDES_QUERY_DEFAULT = frozenset({"mars", "lsvid"})
_TRAIN_METHODS = ("rrs", "rrs_test", "evenly", "random")


def check_layouts(names: Iterable[str], root: str) -> None:
    """Run ``data.datasets.layouts.check_dataset_layout(name, root)`` for every dataset name.

    It raises ``FileNotFoundError`` showing the expected tree; skipped if that module is absent.
    """
    try:
        from .datasets.layouts import check_dataset_layout
    except ModuleNotFoundError as err:
        if err.name != f"{__package__}.datasets.layouts":
            raise
        return
    for name in dict.fromkeys(names):
        check_dataset_layout(name, root)


class TFCLIPVideoDataManager(compat.VideoDataManager):
    """Video data manager producing TF-CLIP clips (a torchreid ``VideoDataManager``).

    Args:
        root: root of the datasets (as for torchreid).
        sources, targets: dataset name(s) registered with torchreid (``mars``, ``ilidsvid``,
            ``lsvid``, ...). ``targets`` defaults to ``sources``.
        height, width: frame size (256 x 128).
        seq_len: frames per clip (8).
        train_sample_method: ``"rrs"`` (default), ``"rrs_test"``, ``"evenly"`` or ``"random"``.
        test_sample_method: ``"dense"`` (default; all clips of a tracklet), ``"rrs_test"`` (one
            clip), ``"evenly"``, ``"random"`` or ``"all"`` (needs ``batch_size_test=1``).
        batch_size_train: tracklets per training batch, P x K (16); per process when distributed.
        num_instances: K, tracklets per identity in a batch (4).
        batch_size_test: tracklets per test batch (each contributes all its clips when dense).
        workers: DataLoader workers (persistent when > 0, except the one-shot memory loader).
        norm: ``"imagenet"`` (the authors'), ``"clip"`` or a ``(mean, std)`` pair.
        erasing: ``"authors"``, ``"authors_fixed"``, ``"torchreid"`` or None
            (see :mod:`~tfclip_torchreid.data.transforms`).
        flip: sequence-level horizontal flip in training.
        split_id: torchreid split (iLIDS-VID / PRID).
        use_gpu: pin memory when CUDA is available.
        gallery_includes_query: gallery := query + gallery. None = per dataset (True for
            ``mars`` and ``lsvid``, False otherwise); a bool applies to every target.
        distributed: split PK batches across processes (:class:`DistributedRandomIdentitySampler`);
            rank/world from ``torch.distributed`` unless ``rank``/``world_size`` are given.
            Call ``datamanager.set_epoch(epoch)`` every epoch.
        seed: shared seed of the distributed sampler (also seeds the worker RNG per rank).
        train_sampler: torchreid sampler name (``RandomIdentitySampler`` for TF-CLIP).
        combineall: torchreid's ``combineall``.
        memory_batch_size: tracklets per memory-loader batch (default ``batch_size_test``).

    Attributes:
        train_loader: batches ``img`` (B, T, 3, H, W), ``pid``, ``camid``, ``dsetid``, ``index``.
        test_loader: ``{name: {"query": DataLoader, "gallery": DataLoader}}``; batches ``img``
            (sum n_i, T, 3, H, W), ``num_clips``, ``pid``, ``camid``, ``index`` (see
            :func:`~.dataset.collate_clips`).
        memory_loader: like a test loader over the training tracklets (dense, train labels).
        test_dataset: torchreid-style tracklet lists (gallery includes query when set).

    Example:
        >>> dm = TFCLIPVideoDataManager("reid-data", "mars", workers=2)  # doctest: +SKIP
        >>> dm.num_train_pids, dm.num_train_cams  # doctest: +SKIP
        (625, 6)
    """

    data_type = "video"

    def __init__(
        self,
        root: str = "",
        sources: Union[str, list, None] = None,
        targets: Union[str, list, None] = None,
        height: int = 256,
        width: int = 128,
        seq_len: int = 8,
        train_sample_method: str = "rrs",
        test_sample_method: str = "dense",
        batch_size_train: int = 16,
        num_instances: int = 4,
        batch_size_test: int = 32,
        workers: int = 4,
        norm="imagenet",
        erasing: str | None = "authors",
        flip: bool = True,
        split_id: int = 0,
        use_gpu: bool = True,
        gallery_includes_query: bool | None = None,
        distributed: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        train_sampler: str = "RandomIdentitySampler",
        combineall: bool = False,
        memory_batch_size: int | None = None,
    ):
        # ---- validate cheap arguments before torchreid parses anything -------------------
        if sources is None:
            raise ValueError("sources must name at least one dataset, e.g. sources='mars'")
        self.train_sample_method = canonical_method(train_sample_method)
        self.test_sample_method = canonical_method(test_sample_method)
        if self.train_sample_method not in _TRAIN_METHODS:
            raise ValueError(
                f"train_sample_method must give one fixed-length clip per tracklet, one of "
                f"{_TRAIN_METHODS}; got {train_sample_method!r}"
            )
        for name, value in (
            ("seq_len", seq_len),
            ("batch_size_train", batch_size_train),
            ("batch_size_test", batch_size_test),
            ("num_instances", num_instances),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.test_sample_method == "all" and batch_size_test != 1:
            raise ValueError("test_sample_method='all' gives clips of varying length: "
                             "set batch_size_test=1 (or use 'dense')")
        avai_samplers = compat.tr_module("data.sampler").AVAI_SAMPLERS
        if train_sampler not in avai_samplers:
            raise ValueError(f"unknown train_sampler {train_sampler!r}; choose one of {avai_samplers}")
        if train_sampler == "RandomIdentitySampler" and batch_size_train % num_instances:
            raise ValueError(
                f"batch_size_train={batch_size_train} must be a multiple of "
                f"num_instances={num_instances} (P identities x K tracklets)"
            )
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be an int >= 0, got {workers!r}")
        mean, std = _norm_stats(norm)
        self.erasing = _erasing_mode(erasing)
        self.distributed = bool(distributed)
        if self.distributed:
            self.rank, self.world_size = dist_rank_world(rank, world_size)
        else:
            self.rank, self.world_size = 0, 1
        self.seq_len = seq_len
        self.seed = int(seed)

        src = [sources] if isinstance(sources, str) else list(sources)
        tgt = src if targets is None else ([targets] if isinstance(targets, str) else list(targets))
        check_layouts(src + tgt, root)

        # ---- torchreid: dataset registry, parsing, split, multi-source sum ---------------
        super().__init__(
            root=root,
            sources=sources,
            targets=targets,
            height=height,
            width=width,
            transforms=None,
            norm_mean=list(mean),
            norm_std=list(std),
            use_gpu=use_gpu,
            split_id=split_id,
            combineall=combineall,
            batch_size_train=batch_size_train,
            batch_size_test=batch_size_test,
            workers=workers,
            num_instances=num_instances,
            train_sampler="RandomSampler",  # replaced below, after validation
            seq_len=seq_len,
            sample_method="evenly",
        )
        train_list = list(self.train_loader.dataset.train)

        self.seq_transform_tr = build_sequence_transforms(
            height, width, is_train=True, flip=flip, erasing=self.erasing, norm=(mean, std)
        )
        self.seq_transform_te = build_sequence_transforms(
            height, width, is_train=False, norm=(mean, std)
        )
        self._loader_kwargs = {
            "num_workers": workers,
            "pin_memory": self.use_gpu,
            "persistent_workers": workers > 0,
        }

        # ---- train ------------------------------------------------------------------------
        self.train_set = ClipDataset(
            train_list, seq_len, self.train_sample_method, self.seq_transform_tr, relabel=True
        )
        if any(p != label for p, label in self.train_set.pid2label.items()):
            warnings.warn(
                "training pids are not 0..Y-1; relabelled in ascending order "
                "(train_loader and memory_loader use the same labels)",
                stacklevel=2,
            )
        self.train_sampler = self._build_train_sampler(
            train_list, train_sampler, batch_size_train, num_instances
        )
        generator = None
        if self.distributed:
            generator = torch.Generator().manual_seed(self.seed * 1000003 + self.rank)
        self.train_loader = DataLoader(
            self.train_set,
            sampler=self.train_sampler,
            batch_size=batch_size_train,
            shuffle=False,
            drop_last=True,
            generator=generator,
            **self._loader_kwargs,
        )

        # ---- test -------------------------------------------------------------------------
        self.gallery_includes_query: Dict[str, bool] = {}
        for name in self.targets:
            if gallery_includes_query is None:
                include = name.lower() in GALLERY_INCLUDES_QUERY_DEFAULT
            else:
                include = bool(gallery_includes_query)
            self.gallery_includes_query[name] = include
            query = list(self.test_dataset[name]["query"])
            gallery = list(self.test_dataset[name]["gallery"])
            # The gallery loader holds the gallery proper; with `include`, the engine reuses the
            # query features as extra gallery rows (no tracklet is embedded twice). The dataset
            # lists (used by visrank) describe the full ranked gallery: query + gallery.
            self.test_loader[name]["query"] = self._test_loader(query, batch_size_test)
            self.test_loader[name]["gallery"] = self._test_loader(gallery, batch_size_test)
            if include:
                self.test_dataset[name]["gallery"] = query + gallery

        # ---- CLIP-Memory ------------------------------------------------------------------
        # the train set's tracklets: already frame-sorted and relabelled 0..Y-1
        memory_set = ClipDataset(self.train_set.tracklets, seq_len, "dense", self.seq_transform_te,
                                 sort_frames=False)
        mem_kwargs = dict(self._loader_kwargs, persistent_workers=False)
        self.memory_loader = DataLoader(
            memory_set,
            batch_size=memory_batch_size or batch_size_test,
            shuffle=False,
            drop_last=False,
            collate_fn=collate_clips,
            **mem_kwargs,
        )
        self._print_pipeline()

    # ------------------------------------------------------------------------------------------
    def _build_train_sampler(self, train_list, name, batch_size, num_instances):
        if name == "RandomIdentitySampler":
            num_pids = len({item[1] for item in train_list})
            if num_pids < batch_size // num_instances:
                raise ValueError(
                    f"the training set has {num_pids} identities, fewer than the "
                    f"{batch_size // num_instances} per batch (batch_size_train/num_instances)"
                )
        if not self.distributed:
            return compat.build_train_sampler(
                train_list, name, batch_size=batch_size, num_instances=num_instances
            )
        if name == "RandomIdentitySampler":
            return DistributedRandomIdentitySampler(
                train_list, batch_size, num_instances, self.rank, self.world_size, self.seed
            )
        if name == "RandomSampler":
            return DistributedSampler(
                self.train_set, self.world_size, self.rank, shuffle=True, seed=self.seed,
                drop_last=True,
            )
        raise ValueError(
            f"distributed training supports train_sampler 'RandomIdentitySampler' or "
            f"'RandomSampler', got {name!r}"
        )

    def _test_loader(self, tracklets, batch_size: int) -> DataLoader:
        dataset = ClipDataset(tracklets, self.seq_len, self.test_sample_method,
                              self.seq_transform_te)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            drop_last=False,
            collate_fn=collate_clips,
            **self._loader_kwargs,
        )

    @property
    def num_cameras(self) -> int:
        """Size of a camera-embedding table that covers every camera id seen in training *and*
        testing (max id + 1; torchreid's ``num_train_cams`` counts distinct training cameras only,
        which is too small when ids are sparse or a test camera never appears in training)."""
        cams = [item[2] for item in self.train_set.tracklets]
        for name in self.targets:
            for split in ("query", "gallery"):
                cams += [item[2] for item in self.test_dataset[name][split]]
        return max(cams) + 1 if cams else 0

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to a distributed train sampler (no-op otherwise)."""
        if hasattr(self.train_sampler, "set_epoch"):
            self.train_sampler.set_epoch(epoch)

    def shard_loader(
        self, loader: DataLoader, rank: int | None = None, world_size: int | None = None
    ) -> DataLoader:
        """The same loader restricted to this rank's contiguous shard of tracklets.

        Features gathered from ranks ``0..W-1`` in order line up with the full loader's order
        (:func:`~.distributed.shard_indices`); ``index`` in the batches stays the global index.
        """
        if rank is None and world_size is None and self.distributed:
            rank, world_size = self.rank, self.world_size
        rank, world_size = dist_rank_world(rank, world_size)
        dataset = loader.dataset
        if isinstance(dataset, Subset):
            raise ValueError("shard_loader expects a full loader, not an already sharded one")
        subset = Subset(dataset, shard_indices(len(dataset), rank, world_size))
        return DataLoader(
            subset,
            batch_size=loader.batch_size,
            shuffle=False,
            drop_last=False,
            collate_fn=loader.collate_fn,
            num_workers=loader.num_workers,
            pin_memory=loader.pin_memory,
            persistent_workers=False,
        )

    def _print_pipeline(self) -> None:
        if self.rank != 0:
            return
        print("  **************** TF-CLIP clips ****************")
        print(f"  seq_len            : {self.seq_len}")
        print(f"  train sampling     : {self.train_sample_method} "
              f"({type(self.train_sampler).__name__})")
        print(f"  test sampling      : {self.test_sample_method}")
        print(f"  train transforms   : {self.seq_transform_tr}")
        for name, inc in self.gallery_includes_query.items():
            q, g = (len(self.test_dataset[name][k]) for k in ("query", "gallery"))
            print(f"  {name:<18} : query {q}, gallery {g}"
                  f"{' (includes query)' if inc else ''}")
        print("  ***********************************************")
