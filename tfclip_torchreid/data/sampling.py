"""Frame-index samplers for video re-ID tracklets.

TF-CLIP (Yu et al., AAAI 2024, Sec. "Implementation Details") trains on 8-frame clips drawn with
Restricted Random Sampling (RRS) and, in the released code, tests with *all* frames of a tracklet
cut into consecutive 8-frame clips. The released code's samplers differ from the textbook RRS of
Li et al. (CVPR 2018, "S equal segments"); this module reproduces the released rules exactly
(docs/released_vs_paper.md#sampling) and also offers torchreid's own ``evenly`` / ``random`` / ``all``
(whose logic lives inline in torchreid's ``VideoDataset.__getitem__`` and is therefore
re-expressed here, with the same semantics, on a seedable generator).

Methods (``S`` = ``seq_len``, ``num`` = frames in the tracklet):

* ``"rrs"`` (authors' ``rrs_train``): if ``num < S`` all frames then the last one repeated; else
  chunk length ``c = ceil(num / S)``, the index list ``0..num-1`` is padded with its last index to
  ``c * S`` and cut into ``S`` chunks of ``c``; one index is drawn uniformly from each chunk.
  Because of the padding the tail chunks may hold only the last frame (``num=9`` gives chunks
  ``[0,1][2,3][4,5][6,7][8,8][8,8][8,8][8,8]``).
* ``"rrs_test"``: same chunks, the first index of each (``num=20`` -> 0,3,...,18,19).
* ``"dense"``: consecutive non-overlapping clips while more than ``S`` frames remain; the
  remainder (1..S frames) is cycled to fill the last clip (``19`` -> ``[16,17,18,16,17,18,16,17]``).
  Returns ``ceil(num / S)`` clips.
* ``"evenly"`` (torchreid): every ``num // S``-th frame of the first ``num - num % S`` frames;
  short tracklets are padded with their last frame.
* ``"random"`` (torchreid): ``S`` frames drawn without replacement (with replacement when
  ``num < S``), sorted to keep temporal order.
* ``"all"`` (torchreid): every frame, one clip of length ``num`` (``seq_len`` is ignored).

Example:
    >>> from tfclip_torchreid.data.sampling import sample_clip_indices
    >>> sample_clip_indices(20, 8, "rrs_test").tolist()
    [[0, 3, 6, 9, 12, 15, 18, 19]]
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SAMPLE_METHODS", "sample_clip_indices", "num_clips"]

#: Sample methods understood by :func:`sample_clip_indices`.
SAMPLE_METHODS = ("rrs", "rrs_test", "dense", "evenly", "random", "all")
#: Methods that return several clips per tracklet (batch with :func:`collate_clips`).
MULTI_CLIP_METHODS = ("dense",)
#: Methods that draw random numbers.
RANDOM_METHODS = ("rrs", "random")
_ALIASES = {"rrs_train": "rrs"}


def canonical_method(method: str) -> str:
    """Validate a sample method name and resolve aliases (``"rrs_train"`` -> ``"rrs"``)."""
    if not isinstance(method, str):
        raise ValueError(f"sample method must be a string, got {type(method).__name__}")
    name = _ALIASES.get(method.lower(), method.lower())
    if name not in SAMPLE_METHODS:
        raise ValueError(
            f"unknown sample method {method!r}; choose one of {', '.join(SAMPLE_METHODS)} "
            "(the authors' 'rrs_train' is accepted as an alias of 'rrs')"
        )
    return name


def _check_args(num_frames: int, seq_len: int) -> tuple[int, int]:
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)):
        raise ValueError(f"num_frames must be an int, got {num_frames!r}")
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)):
        raise ValueError(f"seq_len must be an int, got {seq_len!r}")
    if num_frames < 1:
        raise ValueError(f"a tracklet needs at least one frame, got num_frames={num_frames}")
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    return int(num_frames), int(seq_len)


def num_clips(num_frames: int, seq_len: int, method: str) -> int:
    """Number of clips :func:`sample_clip_indices` returns (``ceil(num/S)`` for dense, else 1)."""
    num_frames, seq_len = _check_args(num_frames, seq_len)
    if canonical_method(method) == "dense":
        return math.ceil(num_frames / seq_len)
    return 1


def sample_clip_indices(
    num_frames: int,
    seq_len: int,
    method: str,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Frame indices of the clip(s) taken from a tracklet of ``num_frames`` frames.

    Args:
        num_frames: number of frames in the tracklet (>= 1).
        seq_len: clip length ``S`` (the authors use 8).
        method: one of :data:`SAMPLE_METHODS` (see the module docstring).
        rng: numpy ``Generator`` for the random methods (``"rrs"``, ``"random"``); a fresh
            unseeded one when None. Deterministic methods ignore it.

    Returns:
        int64 array of shape ``(n_clips, seq_len)`` (``(1, num_frames)`` for ``"all"``), each row
        in temporal order.

    Example:
        >>> import numpy as np
        >>> sample_clip_indices(19, 8, "dense").tolist()[-1]
        [16, 17, 18, 16, 17, 18, 16, 17]
        >>> idx = sample_clip_indices(64, 8, "rrs", rng=np.random.default_rng(0))
        >>> bool(((idx[0] // 8) == np.arange(8)).all())  # one pick per 8-frame chunk
        True
    """
    num_frames, seq_len = _check_args(num_frames, seq_len)
    method = canonical_method(method)
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng)}"
        )
    last = num_frames - 1

    if method in ("rrs", "rrs_test"):
        # c = ceil(num/S) (c = 1 when num < S, which gives "all frames then the last repeated").
        chunk = -(-num_frames // seq_len)
        starts = np.arange(seq_len, dtype=np.int64) * chunk
        if method == "rrs":
            if rng is None:
                rng = np.random.default_rng()
            starts = starts + rng.integers(0, chunk, size=seq_len, dtype=np.int64)
        # Positions past the end are the padding, i.e. the last index.
        return np.minimum(starts, last)[None]

    if method == "dense":
        n = -(-num_frames // seq_len)
        idx = np.arange(n * seq_len, dtype=np.int64)
        tail_start = (n - 1) * seq_len
        remainder = num_frames - tail_start  # 1..S frames in the last clip
        idx[tail_start:] = tail_start + np.arange(seq_len, dtype=np.int64) % remainder
        return idx.reshape(n, seq_len)

    if method == "evenly":
        if num_frames >= seq_len:
            usable = num_frames - num_frames % seq_len
            idx = np.arange(0, usable, usable // seq_len, dtype=np.int64)
        else:
            idx = np.minimum(np.arange(seq_len, dtype=np.int64), last)
        return idx[None]

    if method == "random":
        if rng is None:
            rng = np.random.default_rng()
        idx = rng.choice(num_frames, size=seq_len, replace=num_frames < seq_len)
        return np.sort(idx).astype(np.int64)[None]

    # "all"
    return np.arange(num_frames, dtype=np.int64)[None]
