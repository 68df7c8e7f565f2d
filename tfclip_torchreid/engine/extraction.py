"""Per-tracklet features from a clip loader: the pass behind CLIP-Memory and the dense test.

The first step of :class:`~tfclip_torchreid.engine.evaluation.DenseEvaluator` (which adds the
sharding across processes, the progress bar and the ranking).

A loader from :mod:`tfclip_torchreid.data.datamanager` yields batches whose ``img`` holds the
clips of several tracklets, ``(sum n_i, T, 3, H, W)``, with ``num_clips`` (n_i) per tracklet.
:func:`extract_features` runs a model on bounded chunks of clips, broadcasts each tracklet's
camera to every one of its clips (the authors' dense test crashes here with SIE) and averages the
clip features of each tracklet -- the authors' dense protocol (``docs/released_vs_paper.md#
test-protocol``), batched across tracklets instead of one tracklet per forward.

Example:
    >>> import torch
    >>> batch = {"img": torch.randn(3, 2, 3, 8, 4), "num_clips": torch.tensor([2, 1]),
    ...          "pid": torch.tensor([5, 6]), "camid": torch.tensor([0, 1]),
    ...          "index": torch.tensor([0, 1])}
    >>> fn = lambda clips, cams: clips.flatten(1)[:, :4]
    >>> out = extract_features([batch], fn, torch.device("cpu"))
    >>> out.features.shape, out.pids.tolist(), out.frames
    (torch.Size([2, 4]), [5, 6], 6)
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, NamedTuple

import torch

__all__ = ["TrackletFeatures", "extract_features", "clips_per_tracklet"]


class TrackletFeatures(NamedTuple):
    features: torch.Tensor  # (N, D) float32 on the CPU
    index: torch.Tensor  # (N,) dataset index of each tracklet (-1 when the loader has none)
    pids: torch.Tensor  # (N,)
    camids: torch.Tensor  # (N,)
    frames: int  # frames embedded (clips x T)


def clips_per_tracklet(batch: dict, desc: str = "features") -> torch.Tensor:
    """``num_clips`` of a clip batch (one clip per tracklet when the loader gives none)."""
    imgs = batch["img"]
    if imgs.dim() != 5:
        raise ValueError(f"{desc}: expected clips (N, T, 3, H, W), got {tuple(imgs.shape)}")
    if "num_clips" in batch:
        return torch.as_tensor(batch["num_clips"], dtype=torch.long)
    return torch.ones(imgs.shape[0], dtype=torch.long)


def extract_features(
    loader: Iterable[dict],
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device,
    max_clips: int = 64,
    autocast: Callable[[], Any] = contextlib.nullcontext,
    progress: Callable[[Iterable], Iterable] | None = None,
    desc: str = "features",
) -> TrackletFeatures:
    """Mean clip feature of every tracklet of ``loader``, in loader order.

    Args:
        loader: batches with ``img``, ``num_clips``, ``pid``, ``camid`` (and ``index``).
        forward: ``forward(clips (n, T, 3, H, W), cams (n,)) -> (n, D)`` on ``device``.
        device: where the clips go.
        max_clips: clips per forward pass (bounded memory on long tracklets).
        autocast: a context factory for mixed precision.
        progress: wraps the loader (e.g. a tqdm bar).
        desc: name used in error messages.
    """
    feats, index, pids, camids, frames = [], [], [], [], 0
    for batch in (progress(loader) if progress is not None else loader):
        imgs = batch["img"]
        num_clips = clips_per_tracklet(batch, desc)
        cams = torch.as_tensor(batch["camid"]).repeat_interleave(num_clips)
        outs = []
        for chunk, cam in zip(imgs.split(max_clips), cams.split(max_clips)):
            with autocast():
                outs.append(forward(chunk.to(device, non_blocking=True), cam.to(device)).float())
        clip_feats = torch.cat(outs)
        seg = torch.repeat_interleave(torch.arange(len(num_clips), device=clip_feats.device),
                                      num_clips.to(clip_feats.device))
        summed = torch.zeros(len(num_clips), clip_feats.shape[1], device=clip_feats.device)
        summed.index_add_(0, seg, clip_feats)
        feats.append((summed / num_clips.to(summed).unsqueeze(1)).cpu())
        index.append(torch.as_tensor(batch.get("index", torch.full((len(num_clips),), -1))))
        pids.append(torch.as_tensor(batch["pid"]))
        camids.append(torch.as_tensor(batch["camid"]))
        frames += int(imgs.shape[0] * imgs.shape[1])
    if not feats:
        raise RuntimeError(f"{desc}: the loader yielded no tracklets")
    return TrackletFeatures(torch.cat(feats), torch.cat(index).long(), torch.cat(pids).long(),
                            torch.cat(camids).long(), frames)
