"""Clip dataset over torchreid tracklet lists, with the TF-CLIP samplers.

torchreid's ``VideoDataset`` samples frames with one ``sample_method`` for every split
(``evenly``/``random``/``all``) and transforms each frame independently; TF-CLIP needs RRS clips
for training, dense multi-clip sampling for testing and CLIP-Memory extraction and
sequence-consistent augmentation (``docs/released_vs_paper.md#sampling``, ``#transforms``). :class:`ClipDataset` wraps the
tracklet tuples that torchreid's dataset classes produce, ``(img_paths, pid, camid[, dsetid])``,
so torchreid's parsers, registry and samplers are kept.

Differences from torchreid worth knowing:

* frames of every tracklet are **sorted by file name** (torchreid's iLIDS-VID and PRID2011
  loaders glob without sorting, which scrambles temporal order; the authors sort);
* an unreadable frame raises at once with the file and tracklet named (torchreid's
  ``read_image`` retries a corrupt file forever).

Example:
    >>> from tfclip_torchreid.data.dataset import ClipDataset, collate_clips
    >>> from tfclip_torchreid.data.transforms import build_sequence_transforms
    >>> tf = build_sequence_transforms(256, 128, is_train=False)
    >>> ds = ClipDataset(tracklets, seq_len=8, sample_method="dense", transform=tf)  # doctest: +SKIP
    >>> ds[0]["img"].shape  # doctest: +SKIP
    torch.Size([3, 8, 3, 256, 128])
"""

from __future__ import annotations

import os
import random
from typing import Any, Callable, Dict, List, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import Compose

from ..utils.rng import rng_scope
from .sampling import MULTI_CLIP_METHODS, RANDOM_METHODS, canonical_method, sample_clip_indices
from .transforms import SequenceToTensor, normalize

__all__ = ["ClipDataset", "SeededDataset", "collate_clips", "read_frame"]


def read_frame(path: str, tracklet_index: int = -1, pid: Any = None) -> Image.Image:
    """Open one frame as an RGB PIL image, with an error naming the file and tracklet.

    Raises:
        FileNotFoundError: the file does not exist.
        RuntimeError: the file exists but cannot be decoded (corrupt, truncated, not an image).
    """
    where = f"tracklet {tracklet_index} (pid {pid})"
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"frame {path} of {where} does not exist; check the dataset root and layout "
            "(and delete stale split caches that hold absolute paths)"
        )
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise RuntimeError(
            f"cannot read frame {path} of {where}: {type(err).__name__}: {err}. "
            "Re-extract or replace the file"
        ) from err


def _sorted_frames(img_paths: Sequence[str]) -> tuple:
    """The paths in file-name order (ties: the whole path). When they all lie in one folder, as
    a tracklet's frames do, that is their plain string order, found without splitting each path
    (MARS: 1.2M frames, several seconds saved at start-up).

    Example:
        >>> _sorted_frames(["b/0002.jpg", "a/0003.jpg", "c/0001.jpg"])
        ('c/0001.jpg', 'b/0002.jpg', 'a/0003.jpg')
    """
    plain = sorted(img_paths)
    folder = os.path.dirname(plain[0]) if plain else ""
    prefix = folder + os.sep if folder else ""
    # in string order every path between two of folder/ is in folder/ too; no deeper separator
    if (os.altsep is None and plain and plain[-1].startswith(prefix)
            and "".join(plain).count(os.sep) == len(plain) * prefix.count(os.sep)):
        return tuple(plain)
    return tuple(sorted(img_paths, key=lambda p: (os.path.basename(p), p)))


def _in_memory(frames: Sequence[Any]) -> bool:
    """Whether a tracklet's frames are images already in memory (e.g. crops of a video)."""
    return isinstance(frames[0], Image.Image)


class ClipDataset(Dataset):
    """Tracklets -> clips of ``seq_len`` frames, sampled by ``sample_method``.

    Args:
        tracklets: list of ``(img_paths, pid, camid)`` or ``(img_paths, pid, camid, dsetid)``;
            the frames may also be RGB PIL images already in memory (crops of a video,
            :mod:`tfclip_torchreid.video`), taken in the order given.
        seq_len: frames per clip (8 in TF-CLIP).
        sample_method: ``"rrs"`` (training), ``"rrs_test"``, ``"dense"`` (test / memory),
            ``"evenly"``, ``"random"`` or ``"all"``; see :mod:`tfclip_torchreid.data.sampling`.
        transform: sequence transform, list of PIL frames -> ``(T, 3, H, W)``
            (:func:`~tfclip_torchreid.data.transforms.build_sequence_transforms`). When None,
            frames (which must share one size) are only converted and ImageNet-normalised.
        relabel: map pids to ``0..Y-1`` in ascending pid order (``pid2label``).
        sort_frames: sort each tracklet's frame paths by file name (default True).

    ``__getitem__`` returns a dict with ``img`` -- ``(T, 3, H, W)`` for single-clip methods,
    ``(n, T, 3, H, W)`` for ``"dense"`` -- and ``pid``, ``camid``, ``dsetid``, ``index`` (ints).
    Random methods draw from a numpy generator seeded from Python's ``random`` (which torch's
    DataLoader seeds per worker), so results follow ``random.seed`` / ``torch.manual_seed``.

    Example:
        >>> ds = ClipDataset([(("a/0002.jpg", "a/0001.jpg"), 7, 0)], seq_len=4,
        ...                  sample_method="rrs_test", relabel=True)
        >>> ds.tracklets[0][0], ds.tracklets[0][1]
        (('a/0001.jpg', 'a/0002.jpg'), 0)
    """

    def __init__(
        self,
        tracklets: Sequence[tuple],
        seq_len: int = 8,
        sample_method: str = "rrs",
        transform: Callable | None = None,
        relabel: bool = False,
        sort_frames: bool = True,
    ):
        if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
            raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")
        self.seq_len = int(seq_len)
        self.sample_method = canonical_method(sample_method)
        self.multi_clip = self.sample_method in MULTI_CLIP_METHODS
        self.transform = transform
        self._default_tf = None
        if transform is None:
            self._default_tf = Compose([SequenceToTensor(), normalize()])

        items = []
        for i, item in enumerate(tracklets):
            if not isinstance(item, (tuple, list)) or len(item) not in (3, 4):
                raise ValueError(
                    f"tracklet {i} must be (img_paths, pid, camid[, dsetid]), got {item!r:.200}"
                )
            paths, pid, camid = item[0], item[1], item[2]
            dsetid = item[3] if len(item) == 4 else 0
            if isinstance(paths, (str, bytes)) or len(paths) == 0:
                raise ValueError(
                    f"tracklet {i} (pid {pid}) has no frame list (got {paths!r:.200}); "
                    "img_paths must be a non-empty sequence of file paths (or of PIL images)"
                )
            paths = _sorted_frames(paths) if sort_frames and not _in_memory(paths) else tuple(paths)
            items.append((paths, int(pid), int(camid), int(dsetid)))

        self.pid2label: Dict[int, int] | None = None
        if relabel:
            self.pid2label = {p: k for k, p in enumerate(sorted({it[1] for it in items}))}
            items = [(p, self.pid2label[pid], c, d) for p, pid, c, d in items]
        self.tracklets: List[tuple] = items

    def __len__(self) -> int:
        return len(self.tracklets)

    @property
    def pids(self) -> List[int]:
        """pid (label if relabelled) of every tracklet, in dataset order."""
        return [it[1] for it in self.tracklets]

    @property
    def camids(self) -> List[int]:
        return [it[2] for it in self.tracklets]

    @property
    def num_pids(self) -> int:
        return len({it[1] for it in self.tracklets})

    def indices(self, index: int) -> np.ndarray:
        """Frame indices ``(n_clips, T)`` for tracklet ``index`` (draws fresh randomness)."""
        num = len(self.tracklets[index][0])
        rng = None
        if self.sample_method in RANDOM_METHODS:
            rng = np.random.default_rng(random.getrandbits(64))
        return sample_clip_indices(num, self.seq_len, self.sample_method, rng=rng)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        paths, pid, camid, dsetid = self.tracklets[index]
        idx = self.indices(index)
        flat = idx.reshape(-1).tolist()
        if _in_memory(paths):
            loaded = {i: paths[i] for i in set(flat)}
        else:
            loaded = {i: read_frame(paths[i], index, pid) for i in sorted(set(flat))}
        frames = [loaded[i] for i in flat]  # repeated indices share one PIL object
        tf = self.transform if self.transform is not None else self._default_tf
        img = tf(frames)
        if not isinstance(img, torch.Tensor) or img.dim() != 4 or img.shape[0] != len(flat):
            raise RuntimeError(
                "the sequence transform must return a (T, C, H, W) tensor with one slice per "
                f"frame; got {type(img).__name__} {tuple(getattr(img, 'shape', ()))}"
            )
        if self.multi_clip:
            img = img.view(idx.shape[0], idx.shape[1], *img.shape[1:])
        return {"img": img, "pid": pid, "camid": camid, "dsetid": dsetid, "index": index}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(tracklets={len(self)}, pids={self.num_pids}, "
            f"seq_len={self.seq_len}, sample_method={self.sample_method!r})"
        )


class SeededDataset(Dataset):
    """Runs ``dataset[index]`` under its own seed: items are ``(index, seed)`` pairs.

    Used with :class:`~tfclip_torchreid.data.samplers.SeededSampler`, which hands every sample of
    an epoch a seed derived from ``(seed, epoch, position)``; all random choices of the sample
    (frame picks, flip, erasing, torchvision's random transforms) then depend on that seed only,
    not on the worker process that loads it. Other attributes are those of the wrapped dataset.

    Example:
        >>> ds = SeededDataset(ClipDataset([(("a.jpg",), 0, 0)], 4, "rrs"))
        >>> len(ds), ds.tracklets[0][1]
        (1, 0)
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: Any) -> Any:
        index, seed = item
        with rng_scope(seed):
            return self.dataset[index]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (unpickling in a worker)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return f"SeededDataset({self.dataset!r})"


def collate_clips(batch: Sequence[Dict[str, Any]]) -> Dict[str, torch.Tensor]:
    """Concatenate the clips of several tracklets into one batch.

    Items with ``img`` of shape ``(n_i, T, 3, H, W)`` (dense) or ``(T, 3, H, W)`` (one clip)
    give ``img`` ``(sum n_i, T, 3, H, W)`` and ``num_clips`` ``(b,)``, plus ``pid``, ``camid``,
    ``dsetid``, ``index`` as ``(b,)`` LongTensors. Tracklet ``j``'s clips are rows
    ``sum(num_clips[:j]) .. sum(num_clips[:j+1]) - 1``.

    Example:
        >>> import torch
        >>> b = [{"img": torch.zeros(3, 8, 3, 4, 2), "pid": 1, "camid": 0, "index": 0},
        ...      {"img": torch.zeros(8, 3, 4, 2), "pid": 2, "camid": 1, "index": 1}]
        >>> out = collate_clips(b)
        >>> out["img"].shape, out["num_clips"].tolist()
        (torch.Size([4, 8, 3, 4, 2]), [3, 1])
    """
    if len(batch) == 0:
        raise ValueError("collate_clips got an empty batch")
    clips = []
    for item in batch:
        img = item["img"]
        if img.dim() == 4:
            img = img.unsqueeze(0)
        elif img.dim() != 5:
            raise ValueError(f"expected img (n, T, C, H, W) or (T, C, H, W), got {tuple(img.shape)}")
        clips.append(img)
    out = {
        "img": torch.cat(clips, 0),
        "num_clips": torch.tensor([c.shape[0] for c in clips], dtype=torch.long),
    }
    for key in ("pid", "camid", "dsetid", "index"):
        if key in batch[0]:
            out[key] = torch.tensor([int(item[key]) for item in batch], dtype=torch.long)
    return out
