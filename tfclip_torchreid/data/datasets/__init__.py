"""Video datasets added to torchreid, layout checks and split helpers.

Importing this package registers with torchreid's video-dataset registry (so that
``VideoDataManager(sources=...)`` and ``init_video_dataset`` know them):

* ``lsvid``: :class:`~.lsvid.LSVID`, with the authors' 48-frame training chunks (docs/datasets.md#ls-vid);
* ``lsvid_unchunked``: the same with whole training tracklets;
* ``ilidsvid_first_half_train``: torchreid's iLIDS-VID with the halves of each split swapped, i.e.
  training on the first half of each ``ls_set`` row as the TF-CLIP authors' code does
  (docs/datasets.md#ilids-vid); torchreid's ``ilidsvid`` trains on the second half (Wang et al. ECCV'14).

:func:`check_dataset_layout` turns a missing dataset into a FileNotFoundError that shows the
expected tree (see :mod:`.layouts`); :func:`num_splits` gives the number of train/test splits of a
benchmark (10 for iLIDS-VID and PRID2011) for a driver that runs every split.

Example:
    >>> import tfclip_torchreid.data.datasets as ds
    >>> from tfclip_torchreid import compat
    >>> "lsvid" in compat.video_dataset_registry()
    True
    >>> ds.num_splits("mars", "/anywhere")
    1
"""

from __future__ import annotations

import json
import os.path as osp

from ... import compat
from .layouts import ALIASES, check_dataset_layout, resolve_layout
from .lsvid import LSVID, LSVIDUnchunked, chunk_tracklets

__all__ = [
    "LSVID",
    "LSVIDUnchunked",
    "ILIDSVIDFirstHalfTrain",
    "chunk_tracklets",
    "check_dataset_layout",
    "num_splits",
    "ilidsvid_num_splits",
    "register_datasets",
]

_iLIDSVID = compat.video_dataset_registry()["ilidsvid"]


class ILIDSVIDFirstHalfTrain(_iLIDSVID):
    """torchreid's iLIDS-VID with train and test identities swapped in every split.

    torchreid (after Wang et al. ECCV'14) tests on the first 150 identities of each ``ls_set``
    row and trains on the last 150; the TF-CLIP authors' loader trains on the first half
    (docs/datasets.md#ilids-vid). Query = cam1 and gallery = cam2 as in torchreid.

    Example:
        >>> from tfclip_torchreid import compat
        >>> dm = compat.VideoDataManager(root="reid-data", sources="ilidsvid_first_half_train")
        ... # doctest: +SKIP
    """

    def __init__(self, root: str = "", split_id: int = 0, **kwargs):
        self._split_id = split_id
        super().__init__(root=root, split_id=split_id, **kwargs)

    def process_data(self, dirnames, cam1=True, cam2=True):
        # torchreid calls this with (train dirs, both cameras), then (test dirs, cam1 only) and
        # (test dirs, cam2 only); the split file exists by then (torchreid writes it first).
        with open(self.split_path) as fh:
            split = json.load(fh)[self._split_id]
        dirnames = split["test"] if (cam1 and cam2) else split["train"]
        return super().process_data(dirnames, cam1=cam1, cam2=cam2)


def _register(name: str, cls: type) -> None:
    registry = compat.video_dataset_registry()
    old = registry.get(name)
    if old is not None and old is not cls and (old.__module__, old.__qualname__) == (
            cls.__module__, cls.__qualname__):
        registry[name] = cls  # the same class from a reloaded module
        return
    compat.register_video_dataset(name, cls)


def register_datasets() -> None:
    """Register this package's datasets with torchreid (idempotent; done at import)."""
    _register("lsvid", LSVID)
    _register("lsvid_unchunked", LSVIDUnchunked)
    _register("ilidsvid_first_half_train", ILIDSVIDFirstHalfTrain)


register_datasets()


def ilidsvid_num_splits(root: str) -> int:
    """Number of train/test splits of the iLIDS-VID copy under ``root``.

    Read from ``splits.json`` if present (torchreid's file, or the synthetic generator's), else
    from the rows of ``ls_set`` in ``train_test_splits_ilidsvid.mat``.

    Example:
        >>> ilidsvid_num_splits("reid-data")  # doctest: +SKIP
        10
    """
    ddir, _ = resolve_layout("ilidsvid", root)
    path = osp.join(ddir, "splits.json")
    if osp.isfile(path):
        with open(path) as fh:
            return len(json.load(fh))
    from scipy.io import loadmat

    mat = osp.join(ddir, "train-test people splits", "train_test_splits_ilidsvid.mat")
    return int(loadmat(mat)["ls_set"].shape[0])


def num_splits(name: str, root: str) -> int:
    """Number of train/test splits of dataset ``name`` (``split_id`` ranges over them).

    iLIDS-VID and PRID2011 have 10 (read from their split files); MARS, LS-VID, DukeMTMC-VideoReID
    and unknown names have 1.

    Example:
        >>> num_splits("lsvid", "reid-data")
        1
    """
    base = ALIASES.get(name, name)
    if base == "ilidsvid":
        return ilidsvid_num_splits(root)
    if base == "prid2011":
        ddir, _ = resolve_layout("prid2011", root)
        with open(osp.join(ddir, "splits_prid2011.json")) as fh:
            return len(json.load(fh))
    return 1
