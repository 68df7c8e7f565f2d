"""Data managers for TF-CLIP and CLIP-ReID: torchreid parses, small builders make the loaders.

Two steps, in the shape of fast-reid's ``build_reid_train_loader`` / ``build_reid_test_loader``:

1. :func:`parse_datasets`: every dataset name goes once through torchreid's registry
   (``init_video_dataset`` / ``init_image_dataset``: split files, ``split_id``, ``combineall``);
   several sources are combined with torchreid's own dataset sum (pid/camera offsets).
2. :func:`build_train_loader`, :func:`build_test_loader`, :func:`build_memory_loader` turn
   tracklet lists into loaders over :class:`~.dataset.ClipDataset`:

   * train: RRS clips (``"rrs"``), sequence-consistent flip + the authors' per-frame erasing,
     P x K identity batches from torchreid's ``RandomIdentitySampler``, ``drop_last``; every sample
     seeded from ``(seed, epoch, position)`` (:mod:`.samplers`), so resuming is exact with any
     number of workers;
   * test: each tracklet cut into dense clips (``"dense"``, the final-evaluation protocol) or one
     ``"rrs_test"`` clip; a batch concatenates the clips of ``batch_size_test`` tracklets;
   * memory: the training tracklets, dense, no augmentation, for the identity bank (CLIP-Memory or
     CLIP-ReID's stage-1 features).

Image datasets (Market-1501, MSMT17, ...) are one-frame tracklets: the same loaders, CLIP-ReID's
image augmentation (:func:`~.transforms.build_image_transforms`). :class:`TFCLIPVideoDataManager`
and :class:`TFCLIPImageDataManager` are built this way and offer what torchreid's engines read
from a data manager (``train_loader``, ``test_loader``, ``test_dataset``, ``sources``,
``targets``, ``data_type``, ``height``, ``width``, ``num_train_pids``, ``num_train_cams``,
``fetch_test_loaders``). They do not subclass torchreid's managers: those constructors parse the
datasets into torchreid's own per-image datasets, transforms and samplers, all of which this
pipeline replaces, and a subclass that skipped its parent's constructor would only pretend;
:func:`build_datamanager` picks one from a config. Gallery = query + gallery for MARS and LS-VID
by default (the official MARS protocol, 11,310 gallery tracklets; see
``docs/datasets.md#why-the-gallery-includes-the-queries``).

Example:
    >>> dm = TFCLIPVideoDataManager(root="reid-data", sources="mars")  # doctest: +SKIP
    >>> batch = next(iter(dm.train_loader))  # doctest: +SKIP
    >>> batch["img"].shape  # doctest: +SKIP
    torch.Size([16, 8, 3, 256, 128])
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, List, Sequence, Tuple

import torch
from torch.utils.data import DataLoader, Subset

from tfclip_torchreid import compat

from .dataset import ClipDataset, SeededDataset, collate_clips
from .datasets import diagnose_dataset, precheck_dataset
from .distributed import dist_rank_world, shard_indices
from .frame_checks import check_frames, frame_paths
from .holdout import hold_out_identities
from .samplers import build_train_sampler
from .sampling import canonical_method
from .tracklet_checks import check_tracklets
from .transforms import build_image_transforms, build_sequence_transforms, erasing_mode, norm_stats

logger = logging.getLogger(__name__)

__all__ = [
    "TFCLIPVideoDataManager", "TFCLIPImageDataManager", "build_datamanager", "parse_datasets",
    "dataset_kind", "build_train_loader", "build_test_loader", "build_memory_loader",
    "GALLERY_INCLUDES_QUERY_DEFAULT",
]

#: Datasets whose evaluation protocol puts the query set into the gallery by default.
GALLERY_INCLUDES_QUERY_DEFAULT = frozenset({"mars", "lsvid"})
_TRAIN_METHODS = ("rrs", "rrs_test", "evenly", "random")


# ---------------------------------------------------------------------------------- parsing
def dataset_kind(names: Iterable[str]) -> str:
    """``"video"`` or ``"image"``: which torchreid registry knows every name in ``names``.

    Example:
        >>> dataset_kind(["mars", "lsvid"]), dataset_kind(["market1501"])
        ('video', 'image')
    """
    names = list(dict.fromkeys(names))
    video, image = compat.video_dataset_registry(), compat.image_dataset_registry()
    kinds = set()
    for name in names:
        if name in video:
            kinds.add("video")
        elif name in image:
            kinds.add("image")
        else:
            raise ValueError(f"unknown dataset {name!r}; video datasets: {sorted(video)}; "
                             f"image datasets: {sorted(image)}")
    if len(kinds) != 1:
        raise ValueError(f"sources and targets mix video and image datasets: {names}")
    return kinds.pop()


def parse_datasets(names: Iterable[str], root: str, kind: str = "video", split_id: int = 0,
                   combineall: bool = False, transform: Any = None) -> Dict[str, Any]:
    """One torchreid dataset object per name (``.train``, ``.query``, ``.gallery``), parsed once.

    Every known benchmark is checked before any is parsed (:func:`~.datasets.precheck_dataset`):
    a missing dataset shows the expected tree instead of torchreid's download attempt, and what
    torchreid would read wrongly without a word is named. If torchreid's parser then stops (a bare
    ``AssertionError`` naming no file, ...), :func:`~.datasets.diagnose_dataset` names the file,
    row or folder. ``transform`` is stored by torchreid's dataset (its video class insists on
    one); the loaders here use their own datasets.
    """
    names = list(dict.fromkeys(names))
    for name in names:
        precheck_dataset(name, root)
    init = compat.init_video_dataset if kind == "video" else compat.init_image_dataset
    parsed = {}
    for name in names:
        try:
            parsed[name] = init(name, root=root, split_id=split_id, combineall=combineall,
                                mode="train", transform=transform)
        except Exception as err:
            diagnose_dataset(name, root, err)  # raises what it finds, chained to err
            raise
    return parsed


def _as_tracklets(items: Sequence[tuple]) -> List[tuple]:
    """torchreid items -> tracklets: an image path becomes a one-frame tracklet."""
    return [((it[0],) if isinstance(it[0], str) else it[0], *it[1:]) for it in items]


# ---------------------------------------------------------------------------------- builders
def build_train_loader(train_set: ClipDataset, batch_size: int, num_instances: int = 4,
                       sampler: str = "RandomIdentitySampler", workers: int = 0, seed: int = 0,
                       rank: int = 0, world_size: int = 1, pin_memory: bool = False
                       ) -> DataLoader:
    """Seeded P x K loader over ``train_set`` (``loader.sampler.sampler`` is torchreid's sampler).

    Every sample is drawn under a seed of ``(seed, epoch, rank, position)``; call
    ``loader.sampler.set_epoch(epoch)`` each epoch. The loader has its own generator, so creating
    its iterator never consumes the main process's random stream.
    """
    seeded = build_train_sampler(train_set.tracklets, sampler, batch_size, num_instances, seed,
                                 rank, world_size)
    return DataLoader(SeededDataset(train_set), sampler=seeded, batch_size=batch_size,
                      shuffle=False, drop_last=True, num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(seed))


def build_test_loader(tracklets: Sequence[tuple], seq_len: int, sample_method: str,
                      transform: Any, batch_size: int, workers: int = 0,
                      pin_memory: bool = False, sort_frames: bool = True) -> DataLoader:
    """Loader over tracklets in order; batches from :func:`~.dataset.collate_clips`."""
    dataset = ClipDataset(tracklets, seq_len, sample_method, transform, sort_frames=sort_frames)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=False,
                      collate_fn=collate_clips, num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=workers > 0)


def build_memory_loader(train_set: ClipDataset, transform: Any, batch_size: int,
                        multi_clip: bool = True, workers: int = 0, pin_memory: bool = False
                        ) -> DataLoader:
    """The training tracklets (already sorted and relabelled), no augmentation: dense clips for
    video, the single frame for images. One pass, so no persistent workers."""
    dataset = ClipDataset(train_set.tracklets, train_set.seq_len,
                          "dense" if multi_clip else "all", transform, sort_frames=False)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=False,
                      collate_fn=collate_clips, num_workers=workers, pin_memory=pin_memory)


# ---------------------------------------------------------------------------------- managers
class _ClipDataManager:
    """The shared logic of the TF-CLIP data managers (see the module docstring).

    Args:
        root: root of the datasets (as for torchreid).
        sources, targets: dataset name(s) registered with torchreid. ``targets`` defaults to
            ``sources``.
        height, width: frame size (256 x 128).
        seq_len: frames per clip (8; 1 for image datasets).
        train_sample_method: ``"rrs"`` (default), ``"rrs_test"``, ``"evenly"`` or ``"random"``.
        test_sample_method: ``"dense"`` (default; all clips of a tracklet), ``"rrs_test"``,
            ``"evenly"``, ``"random"`` or ``"all"`` (needs ``batch_size_test=1``).
        batch_size_train: tracklets per training batch, P x K (16); per process when distributed.
        num_instances: K, tracklets per identity in a batch (4).
        batch_size_test: tracklets per test batch (each contributes all its clips when dense).
        workers: DataLoader workers.
        norm: ``"imagenet"`` (the authors'), ``"clip"``, ``"inception"`` or a (mean, std) pair.
        erasing: random erasing (see :func:`~.transforms.build_sequence_transforms`).
        flip: horizontal flip in training.
        split_id: torchreid split (iLIDS-VID / PRID).
        use_gpu: pin memory when CUDA is available.
        gallery_includes_query: gallery := query + gallery. None = per dataset (True for
            ``mars`` and ``lsvid``); a bool applies to every target.
        distributed: split the PK batches across processes (rank/world from torch.distributed
            unless ``rank``/``world_size`` are given).
        seed: the run's seed (batch order and every sample's augmentation derive from it).
        train_sampler: torchreid sampler name (``RandomIdentitySampler`` for TF-CLIP).
        combineall: torchreid's ``combineall``.
        memory_batch_size: tracklets per memory-loader batch (default ``batch_size_test``).
        pad: padding before the random crop (image datasets only; CLIP-ReID's 10).
        val_ids: training identities held out as a validation split (:mod:`.holdout`), for
            checkpoint selection; 0 (default) trains on all of them.
    """

    def __init__(self, root: str = "", sources: Any = None, targets: Any = None,
                 height: int = 256, width: int = 128, seq_len: int = 8,
                 train_sample_method: str = "rrs", test_sample_method: str = "dense",
                 batch_size_train: int = 16, num_instances: int = 4, batch_size_test: int = 32,
                 workers: int = 4, norm: Any = "imagenet", erasing: str | None = "authors",
                 flip: bool = True, split_id: int = 0, use_gpu: bool = True,
                 gallery_includes_query: bool | None = None, distributed: bool = False,
                 seed: int = 0, rank: int | None = None, world_size: int | None = None,
                 train_sampler: str = "RandomIdentitySampler", combineall: bool = False,
                 memory_batch_size: int | None = None, pad: int = 10, val_ids: int = 0) -> None:
        self._set_names(sources, targets)
        self.height, self.width, self.seq_len = int(height), int(width), int(seq_len)
        self.train_sample_method = canonical_method(train_sample_method)
        self.test_sample_method = canonical_method(test_sample_method)
        self._check_sizes(seq_len, batch_size_train, batch_size_test, num_instances, workers)
        self.use_gpu = bool(use_gpu) and torch.cuda.is_available()
        self.norm = norm
        self.erasing = erasing_mode(erasing)
        self.seed = int(seed)
        self.rank, self.world_size = dist_rank_world(rank, world_size) if distributed else (0, 1)
        self.distributed = bool(distributed)
        self.transform_tr, self.transform_te = self._transforms(norm, erasing, flip, pad)

        datasets = parse_datasets(self.sources + self.targets, root, self.data_type, split_id,
                                  combineall, self.transform_te)
        trainset = sum(datasets[name] for name in self.sources)
        train, val_query, val_gallery = hold_out_identities(trainset.train, val_ids, self.seed)
        self._num_train_pids = len({item[1] for item in train})
        self._num_train_cams = trainset.num_train_cams
        self.train_set = ClipDataset(_as_tracklets(train), self.seq_len,
                                     self.train_sample_method, self.transform_tr, relabel=True)
        self.train_loader = build_train_loader(
            self.train_set, batch_size_train, num_instances, train_sampler, workers, self.seed,
            self.rank, self.world_size, self.use_gpu)
        self.train_sampler = self.train_loader.sampler.sampler
        self._build_test(datasets, gallery_includes_query, batch_size_test, workers)
        self._build_validation(val_query, val_gallery, batch_size_test, workers)
        self._check_tracklets()
        self.memory_loader = build_memory_loader(
            self.train_set, self.transform_te, memory_batch_size or batch_size_test,
            self.data_type == "video", workers, self.use_gpu)
        self.print_summary()

    # -------------------------------------------------------------------- construction
    def _set_names(self, sources: Any, targets: Any) -> None:
        if sources is None:
            raise ValueError("sources must name at least one dataset, e.g. sources='mars'")
        self.sources = [sources] if isinstance(sources, str) else list(sources)
        targets = self.sources if targets is None else targets
        self.targets = [targets] if isinstance(targets, str) else list(targets)

    def _check_sizes(self, seq_len: int, batch_train: int, batch_test: int, k: int,
                     workers: int) -> None:
        if self.train_sample_method not in self.train_methods:
            raise ValueError(
                f"train_sample_method must give one fixed-length clip per tracklet, one of "
                f"{self.train_methods}; got {self.train_sample_method!r}")
        for name, value in (("seq_len", seq_len), ("batch_size_train", batch_train),
                            ("batch_size_test", batch_test), ("num_instances", k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be an int >= 0, got {workers!r}")
        if self.test_sample_method == "all" and batch_test != 1 and self.data_type == "video":
            raise ValueError("test_sample_method='all' gives clips of varying length: "
                             "set batch_size_test=1 (or use 'dense')")

    def _transforms(self, norm: Any, erasing: Any, flip: bool, pad: int) -> Tuple[Any, Any]:
        norm_stats(norm)  # validates
        tr = build_sequence_transforms(self.height, self.width, True, flip, erasing, norm)
        te = build_sequence_transforms(self.height, self.width, False, norm=norm)
        return tr, te

    def _build_test(self, datasets: Dict[str, Any], include: bool | None, batch_size: int,
                    workers: int) -> None:
        """Test loaders per target. The gallery loader holds the gallery proper; with
        gallery = query + gallery the engine reuses the query features as extra gallery rows (no
        tracklet is embedded twice), and ``test_dataset`` lists the full ranked gallery."""
        self.test_loader: Dict[str, Dict[str, DataLoader]] = {}
        self.test_dataset: Dict[str, Dict[str, list]] = {}
        self.gallery_includes_query: Dict[str, bool] = {}
        for name in self.targets:
            with_query = (name.lower() in GALLERY_INCLUDES_QUERY_DEFAULT if include is None
                          else bool(include))
            self.gallery_includes_query[name] = with_query
            query, gallery = list(datasets[name].query), list(datasets[name].gallery)
            self.test_loader[name] = {
                split: build_test_loader(_as_tracklets(items), self.seq_len,
                                         self.test_sample_method, self.transform_te, batch_size,
                                         workers, self.use_gpu)
                for split, items in (("query", query), ("gallery", gallery))}
            self.test_dataset[name] = {"query": query,
                                       "gallery": query + gallery if with_query else gallery}

    def _build_validation(self, query: list, gallery: list, batch_size: int,
                          workers: int) -> None:
        """``val_loader`` / ``val_dataset`` (query, gallery) of the held-out identities, tested
        like a target; empty dicts without a validation split."""
        self.val_dataset: Dict[str, list] = {}
        self.val_loader: Dict[str, DataLoader] = {}
        if not query:
            return
        self.val_dataset = {"query": query, "gallery": gallery}
        self.val_loader = {
            split: build_test_loader(_as_tracklets(items), self.seq_len, self.test_sample_method,
                                     self.transform_te, batch_size, workers, self.use_gpu)
            for split, items in self.val_dataset.items()}

    @property
    def has_validation(self) -> bool:
        """Whether training identities were held out as a validation split."""
        return bool(self.val_dataset)

    def _check_tracklets(self) -> None:
        """Labels 0..Y-1, camera ids inside the table, no empty tracklet (named if wrong)."""
        names = "+".join(self.sources)
        check_tracklets(names, "train", self.train_set.tracklets,
                        num_classes=self.num_train_pids, relabelled=True)
        for name in self.targets:
            for split in ("query", "gallery"):
                check_tracklets(name, split, self.test_dataset[name][split])
        for split, items in self.val_dataset.items():
            check_tracklets(names, "validation " + split, items)

    def check_frames(self, cache_dir: str | None = None) -> None:
        """Check every frame of train and test once (fast header check, cached by file list):
        a corrupt test frame is found now, not after the whole training."""
        splits = [self.test_dataset[n][s] for n in self.targets for s in ("query", "gallery")]
        splits += list(self.val_dataset.values())
        check_frames(frame_paths(self.train_set.tracklets, *splits), cache_dir=cache_dir,
                     verbose=self.rank == 0)

    # -------------------------------------------------------------------- queries
    @property
    def num_train_pids(self) -> int:
        """Number of training identities."""
        return self._num_train_pids

    @property
    def num_train_cams(self) -> int:
        """Number of distinct training cameras (torchreid's count)."""
        return self._num_train_cams

    def fetch_test_loaders(self, name: str) -> Tuple[list, list]:
        """torchreid's API: (query, gallery) item lists of test dataset ``name``."""
        return self.test_dataset[name]["query"], self.test_dataset[name]["gallery"]

    def includes_query(self, name: str) -> bool:
        """Whether the gallery of test dataset ``name`` is query + gallery."""
        return bool(self.gallery_includes_query.get(name, False))

    @property
    def num_cameras(self) -> int:
        """Size of a camera-embedding table that covers every camera id seen in training *and*
        testing (max id + 1; torchreid's ``num_train_cams`` counts distinct training cameras
        only, which is too small when ids are sparse or a test camera never appears in
        training)."""
        cams = [item[2] for item in self.train_set.tracklets]
        for name in self.targets:
            for split in ("query", "gallery"):
                cams += [item[2] for item in self.test_dataset[name][split]]
        return max(cams) + 1 if cams else 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the train loader's order and per-sample seeds."""
        self.train_loader.sampler.set_epoch(epoch)

    def shard_loader(self, loader: DataLoader, rank: int | None = None,
                     world_size: int | None = None) -> DataLoader:
        """The same loader restricted to this rank's contiguous shard of tracklets.

        Features gathered from ranks ``0..W-1`` in order line up with the full loader's order
        (:func:`~.distributed.shard_indices`); ``index`` in the batches stays the global index.
        """
        if rank is None and world_size is None and self.distributed:
            rank, world_size = self.rank, self.world_size
        rank, world_size = dist_rank_world(rank, world_size)
        if isinstance(loader.dataset, Subset):
            raise ValueError("shard_loader expects a full loader, not an already sharded one")
        subset = Subset(loader.dataset, shard_indices(len(loader.dataset), rank, world_size))
        return DataLoader(subset, batch_size=loader.batch_size, shuffle=False, drop_last=False,
                          collate_fn=loader.collate_fn, num_workers=loader.num_workers,
                          pin_memory=loader.pin_memory)

    def print_summary(self) -> None:
        """The loaders' settings (rank 0 only)."""
        if self.rank != 0:
            return
        logger.info("  **************** TF-CLIP data ****************")
        logger.info(f"  {self.data_type} | source {self.sources} | {self.num_train_pids} ids, "
                    f"{len(self.train_set)} train tracklets, {self.num_train_cams} cameras")
        logger.info(f"  seq_len {self.seq_len} | train sampling {self.train_sample_method} "
                    f"({type(self.train_sampler).__name__}) | test sampling {self.test_sample_method}")
        logger.info(f"  train transforms   : {self.transform_tr}")
        for name, inc in self.gallery_includes_query.items():
            q, g = (len(self.test_dataset[name][k]) for k in ("query", "gallery"))
            logger.info(f"  {name:<18} : query {q}, gallery {g}{' (includes query)' if inc else ''}")
        if self.has_validation:
            q, g = (len(self.val_dataset[k]) for k in ("query", "gallery"))
            logger.info(f"  {'validation':<18} : query {q}, gallery {g} (held-out training ids)")
        logger.info("  ***********************************************")

    # -------------------------------------------------------------------- config
    @classmethod
    def config_kwargs(cls, cfg: Any, distributed: bool = False) -> Dict[str, Any]:
        """Constructor arguments from a yacs config (``cfg.data``, ``cfg.train``, ``cfg.test``)."""
        d = cfg.data
        include = str(d.gallery_includes_query).lower()
        if include not in ("auto", "yes", "no", "true", "false"):
            raise ValueError(f"data.gallery_includes_query must be auto|yes|no, got "
                             f"{d.gallery_includes_query!r}")
        return dict(
            root=d.root, sources=list(d.sources), targets=list(d.targets) or None,
            height=d.height, width=d.width, seq_len=d.seq_len,
            train_sample_method=d.train_sample_method, test_sample_method=d.test_sample_method,
            batch_size_train=cfg.train.batch_size, num_instances=cfg.sampler.num_instances,
            batch_size_test=cfg.test.batch_size, workers=d.workers, norm=d.norm,
            erasing=d.erasing, flip=d.flip, split_id=d.split_id,
            use_gpu=bool(cfg.use_gpu), distributed=distributed, seed=cfg.train.seed,
            gallery_includes_query=None if include == "auto" else include in ("yes", "true"),
            pad=d.pad, val_ids=d.val_ids,
        )


class TFCLIPVideoDataManager(_ClipDataManager):
    """Video data manager producing TF-CLIP clips (torchreid's data-manager interface).

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
    train_methods = _TRAIN_METHODS


class TFCLIPImageDataManager(_ClipDataManager):
    """Image data manager (Market-1501, MSMT17, ...): one-frame tracklets, CLIP-ReID's image
    augmentation, P x K batches (torchreid's data-manager interface).

    Batches hold ``img`` (B, 1, 3, H, W): the models treat an image as a one-frame clip.

    Example:
        >>> dm = TFCLIPImageDataManager("reid-data", "market1501")  # doctest: +SKIP
    """

    data_type = "image"
    train_methods = ("all",)

    def __init__(self, root: str = "", sources: Any = None, targets: Any = None,
                 norm: Any = "inception", erasing: str | None = "pixel", **kwargs: Any) -> None:
        kwargs.update(seq_len=1, train_sample_method="all", test_sample_method="all")
        super().__init__(root, sources, targets, norm=norm, erasing=erasing, **kwargs)

    def _transforms(self, norm: Any, erasing: Any, flip: bool, pad: int) -> Tuple[Any, Any]:
        tr = build_image_transforms(self.height, self.width, True, flip, erasing, norm, pad)
        te = build_image_transforms(self.height, self.width, False, norm=norm)
        return tr, te


def build_datamanager(cfg: Any, distributed: bool = False) -> _ClipDataManager:
    """The video or image data manager for the datasets of ``cfg`` (yacs config).

    Example:
        >>> from tfclip_torchreid.config import get_default_config
        >>> dm = build_datamanager(get_default_config())  # doctest: +SKIP
    """
    kwargs = _ClipDataManager.config_kwargs(cfg, distributed)
    kind = dataset_kind(kwargs["sources"] + (kwargs["targets"] or []))
    if kind == "image":
        for key in ("seq_len", "train_sample_method", "test_sample_method"):
            kwargs.pop(key)
        return TFCLIPImageDataManager(**kwargs)
    kwargs.pop("pad")
    return TFCLIPVideoDataManager(**kwargs)
