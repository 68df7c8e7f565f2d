"""TF-CLIP data pipeline on torchreid: clip samplers, sequence transforms, datasets, loaders.

Importing this package registers the extra video datasets (``lsvid``, ...) with torchreid
(:mod:`.datasets`).

Example:
    >>> from tfclip_torchreid.data import TFCLIPVideoDataManager, sample_clip_indices
    >>> sample_clip_indices(3, 8, "dense").tolist()
    [[0, 1, 2, 0, 1, 2, 0, 1]]
"""

from . import datasets  # noqa: F401  (registers the datasets with torchreid)
from .datamanager import TFCLIPImageDataManager, TFCLIPVideoDataManager, build_datamanager
from .dataset import ClipDataset, SeededDataset, collate_clips, read_frame
from .distributed import DistributedRandomIdentitySampler, shard_indices
from .samplers import SeededSampler
from .sampling import SAMPLE_METHODS, sample_clip_indices
from .transforms import build_sequence_transforms

__all__ = [
    "TFCLIPVideoDataManager",
    "TFCLIPImageDataManager",
    "build_datamanager",
    "ClipDataset",
    "SeededDataset",
    "SeededSampler",
    "collate_clips",
    "read_frame",
    "DistributedRandomIdentitySampler",
    "shard_indices",
    "SAMPLE_METHODS",
    "sample_clip_indices",
    "build_sequence_transforms",
]
