"""The one door from tfclip_torchreid to torchreid.

torchreid is published under one distribution name in two layouts:

* the PyPI package (``pip install torchreid``, version 0.2.5) ships the toolkit under
  ``torchreid.reid.*`` and its subpackages are *not* importable as ``torchreid.<sub>``;
* an upstream source install (KaiyangZhou/deep-person-reid, 1.4.x) has them at ``torchreid.*``.

Every module of this package reaches torchreid through this file, never through
``from torchreid.<sub> import ...``. The registries of torchreid are module-private dicts
(``__model_factory``, ``__video_datasets``); :func:`register_model` and
:func:`register_video_dataset` mutate them in place and are idempotent. The one other change to
torchreid is :func:`set_feature_extractor` (``torchreid.utils.FeatureExtractor`` becomes a
subclass that builds our models from their weights); no torchreid function is replaced.

Example:
    >>> from tfclip_torchreid import compat
    >>> compat.ROOT in ("torchreid.reid", "torchreid")
    True
    >>> Engine = compat.tr_module("engine").Engine
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Any, Callable


def _find_root() -> str:
    try:
        importlib.import_module("torchreid.reid")
        return "torchreid.reid"
    except ModuleNotFoundError as err:
        if err.name not in ("torchreid.reid", "torchreid"):
            raise
    try:
        importlib.import_module("torchreid")
    except ModuleNotFoundError as err:  # pragma: no cover - install error
        raise ImportError(
            "tfclip_torchreid needs torchreid: `pip install torchreid` (PyPI) or an upstream "
            "source install of KaiyangZhou/deep-person-reid"
        ) from err
    return "torchreid"


with warnings.catch_warnings():
    # Both layouts warn at import that the Cython ranker is missing; we ship our own ranker.
    warnings.filterwarnings("ignore", message=".*Cython evaluation.*")
    ROOT: str = _find_root()
    LAYOUT: str = "pypi" if ROOT == "torchreid.reid" else "upstream"


def tr_module(sub: str) -> ModuleType:
    """Import ``<torchreid root>.<sub>``, e.g. ``tr_module("data.sampler")``."""
    return importlib.import_module(f"{ROOT}.{sub}")


models = tr_module("models")
data = tr_module("data")
engine = tr_module("engine")
metrics = tr_module("metrics")
losses = tr_module("losses")
optim = tr_module("optim")
utils = tr_module("utils")

Engine = engine.Engine
VideoSoftmaxEngine = engine.VideoSoftmaxEngine
VideoTripletEngine = engine.VideoTripletEngine
VideoDataManager = data.VideoDataManager
ImageDataManager = data.ImageDataManager
VideoDataset = tr_module("data.datasets.dataset").VideoDataset
build_train_sampler = tr_module("data.sampler").build_train_sampler
RandomIdentitySampler = tr_module("data.sampler").RandomIdentitySampler
build_transforms = tr_module("data.transforms").build_transforms
init_video_dataset = tr_module("data.datasets").init_video_dataset
init_image_dataset = tr_module("data.datasets").init_image_dataset
CrossEntropyLoss = losses.CrossEntropyLoss
TripletLoss = losses.TripletLoss
build_optimizer = optim.build_optimizer
build_lr_scheduler = optim.build_lr_scheduler
evaluate_rank_torchreid = metrics.evaluate_rank
compute_distance_matrix = metrics.compute_distance_matrix
read_image = utils.read_image
re_ranking = utils.re_ranking
visualize_ranked_results = utils.visualize_ranked_results
set_random_seed = utils.set_random_seed
MetricMeter = utils.MetricMeter
AverageMeter = utils.AverageMeter
compute_model_complexity = utils.compute_model_complexity
#: torchreid's own extractor class (``torchreid.utils.FeatureExtractor`` is our subclass once
#: tfclip_torchreid is imported: :func:`set_feature_extractor`)
FeatureExtractor = tr_module("utils.feature_extractor").FeatureExtractor
IS_CYTHON_AVAI: bool = bool(getattr(tr_module("metrics.rank"), "IS_CYTHON_AVAI", False))


def build_model(name: str, num_classes: int, **kwargs: Any):
    """torchreid's ``models.build_model`` (resolved at call time)."""
    return models.build_model(name, num_classes, **kwargs)


def model_factory() -> dict:
    """torchreid's private model registry (the live dict, not a copy)."""
    return vars(models)["__model_factory"]


def video_dataset_registry() -> dict:
    """torchreid's private video dataset registry (the live dict, not a copy)."""
    return vars(tr_module("data.datasets"))["__video_datasets"]


def image_dataset_registry() -> dict:
    """torchreid's private image dataset registry (the live dict, not a copy)."""
    return vars(tr_module("data.datasets"))["__image_datasets"]


def register_model(name: str, factory: Callable[..., Any]) -> None:
    """Add ``factory`` to torchreid's model factory under ``name`` (idempotent)."""
    model_factory()[name] = factory


def register_video_dataset(name: str, dataset: type) -> None:
    """Register a video dataset class with torchreid (idempotent, unlike torchreid's own)."""
    registry = video_dataset_registry()
    if registry.get(name) is dataset:
        return
    if name in registry:
        raise ValueError(f"video dataset name {name!r} is already taken by {registry[name]!r}")
    registry[name] = dataset


def set_feature_extractor(cls: type) -> None:
    """Make ``torchreid.utils.FeatureExtractor`` (both layouts: ``torchreid[.reid].utils``)
    ``cls``, a subclass of torchreid's own :data:`FeatureExtractor` that keeps its behaviour for
    torchreid's models (idempotent). Besides the registries, the only change the plugin makes to
    torchreid; ``torchreid[.reid].utils.feature_extractor.FeatureExtractor``, ``check_isfile``
    and ``load_pretrained_weights`` stay torchreid's.
    """
    if not (isinstance(cls, type) and issubclass(cls, FeatureExtractor)):
        raise TypeError(f"{cls!r} is not a subclass of torchreid's FeatureExtractor")
    utils.FeatureExtractor = cls
