"""The dense evaluator: every tracklet embedded under the all-clip protocol, ranked by our ranker.

:class:`DenseEvaluator` is the package's one evaluation pipeline, used by the engine (test sets,
the validation split, the CLIP-Memory pass) and by :mod:`tfclip_torchreid.embedding` (folders of
tracklets):

1. **extract** (:meth:`DenseEvaluator.extract`): every tracklet cut into all its clips, the clips
   of several tracklets batched, each tracklet's camera broadcast to its clips, the clip features
   averaged per tracklet (:func:`~.extraction.extract_features`, the authors' dense protocol,
   ``docs/released_vs_paper.md#test-protocol``); with several processes each rank embeds its
   shard and the rows are gathered in order;
2. **gallery**: query + gallery where the protocol says so (MARS: the query tracklets are gallery
   items too);
3. **distances** (:func:`distance_matrix`): optional L2 normalisation, torchreid's
   ``compute_distance_matrix`` (euclidean / cosine) and, if asked, its re-ranking;
4. **rank**: :func:`~tfclip_torchreid.metrics.rank_metrics` (CMC, mAP, mINP; queries without a
   true match counted and left out).

torchreid's ``Engine._evaluate`` runs step 1 image by image (``extract_features`` per batch) and
step 4 with its Python ranker (seconds per MARS test); it has no place for either change, hence
this module. :func:`report` logs an evaluation as torchreid does (plus the unmatched queries and
mINP), :func:`result_row` is its row of ``results.json``, :func:`write_results` writes that file
and :func:`write_features` the ranked features (``test.save_features``).

Example:
    >>> def batch(pids, cams):  # one 1-frame clip per tracklet; its "frame" a one-hot of its id
    ...     img = torch.nn.functional.one_hot(torch.tensor(pids), 4).float().view(-1, 1, 1, 1, 4)
    ...     return {"img": img, "pid": torch.tensor(pids), "camid": torch.tensor(cams)}
    >>> evaluator = DenseEvaluator(device=torch.device("cpu"))
    >>> ev = evaluator.evaluate([batch([0, 1], [0, 0])], [batch([1, 0, 2], [1, 1, 1])],
    ...                         forward=lambda clips, cams: clips.flatten(1))
    >>> ev.distmat.shape, ev.metrics.mAP, ev.metrics.cmc[:2].tolist()
    ((2, 3), 1.0, [1.0, 1.0])
"""

from __future__ import annotations

import contextlib
import logging
import os.path as osp
import time
import warnings
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import compat
from ..metrics.rank import RankMetrics, rank_metrics
from ..utils.checkpoint import save_json
from ..utils.distributed import all_gather_ordered, get_world_size
from ..utils.feature_files import dataset_index, save_embeddings
from .extraction import TrackletFeatures, extract_features

logger = logging.getLogger(__name__)

__all__ = ["DIST_METRICS", "Evaluation", "DenseEvaluator", "distance_matrix", "result_row",
           "report", "write_results", "write_features"]

#: distance metrics of torchreid's ``compute_distance_matrix`` (``test.dist_metric``)
DIST_METRICS = ("euclidean", "cosine")

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Evaluation(NamedTuple):
    """One evaluation: the features as ranked, the distances and the metrics."""

    query_features: torch.Tensor  # (Q, D), L2-normalised when asked
    gallery_features: torch.Tensor  # (G, D), the query rows first when the gallery includes them
    q_pids: np.ndarray
    g_pids: np.ndarray
    q_camids: np.ndarray
    g_camids: np.ndarray
    distmat: np.ndarray  # (Q, G)
    metrics: RankMetrics
    gallery_includes_query: bool
    frames: int  # frames embedded
    extract_s: float  # seconds spent embedding
    seconds: float  # seconds in all, ranking included


def distance_matrix(query_features: torch.Tensor, gallery_features: torch.Tensor,
                    metric: str = "euclidean", normalize: bool = False,
                    rerank: bool = False) -> np.ndarray:
    """torchreid's ``compute_distance_matrix`` (``metric``: :data:`DIST_METRICS`) between the
    rows, L2-normalised first when ``normalize``; with ``rerank``, torchreid's k-reciprocal
    re-ranking (Zhong et al. 2017) of it.

    Example:
        >>> q, g = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 3.0]])
        >>> distance_matrix(q, g, normalize=True).round(4).tolist()
        [[0.0, 2.0]]
    """
    qf, gf = query_features, gallery_features
    if normalize:
        qf, gf = F.normalize(qf, p=2, dim=1), F.normalize(gf, p=2, dim=1)
    distmat = compat.compute_distance_matrix(qf, gf, metric)
    if rerank:
        distmat_qq = compat.compute_distance_matrix(qf, qf, metric)
        distmat_gg = compat.compute_distance_matrix(gf, gf, metric)
        distmat = torch.as_tensor(compat.re_ranking(distmat.numpy(), distmat_qq.numpy(),
                                                    distmat_gg.numpy()))
    return distmat.numpy()


class DenseEvaluator:
    """Dense tracklet features and their ranking (see the module notes).

    Args:
        model: gives the default ``forward``: its test features ``model(clips, cam_label=cams)``
            (the caller puts it in eval mode).
        device: where the clips go.
        max_clips: clips per forward pass (bounded memory on long tracklets).
        autocast: a context factory for mixed precision.
        progress: ``progress(loader, desc)`` wraps a loader (e.g. in a progress bar).
        shard: ``shard(loader)``, this rank's shard of a loader; given when several processes
            evaluate together (their rows are then gathered in order).
    """

    def __init__(self, model: nn.Module | None = None, device: torch.device | str = "cpu",
                 max_clips: int = 64,
                 autocast: Callable[[], Any] = contextlib.nullcontext,
                 progress: Callable[[Iterable[dict], str], Iterable[dict]] | None = None,
                 shard: Callable[[Any], Any] | None = None) -> None:
        self.model = model
        self.device = torch.device(device)
        self.max_clips = int(max_clips)
        self.autocast = autocast
        self.progress = progress
        self.shard = shard

    def _test_forward(self, clips: torch.Tensor, cams: torch.Tensor) -> torch.Tensor:
        if self.model is None:
            raise ValueError("DenseEvaluator: give a model or a forward function")
        return self.model(clips, cam_label=cams)

    @torch.inference_mode()
    def extract(self, loader: Iterable[dict], forward: Forward | None = None,
                desc: str = "features") -> TrackletFeatures:
        """The mean clip feature of every tracklet of ``loader``, in loader order (all of the
        loader's tracklets, also when sharded)."""
        if self.shard is not None:
            loader = self.shard(loader)
        wrap = None
        if self.progress is not None:
            def wrap(it: Iterable[dict]) -> Iterable[dict]:
                return self.progress(it, desc)
        if self.shard is not None and len(loader) == 0:  # fewer batches than processes
            feats, index, pids, camids = all_gather_ordered(None, None, None, None)
            return TrackletFeatures(feats, index, pids, camids, 0)
        out = extract_features(loader, forward or self._test_forward, self.device,
                               self.max_clips, self.autocast, wrap, desc)
        if self.shard is None:
            return out
        feats, index, pids, camids = all_gather_ordered(out.features, out.index, out.pids,
                                                        out.camids)
        return TrackletFeatures(feats, index, pids, camids, out.frames * get_world_size())

    @torch.no_grad()
    def evaluate(self, query_loader: Iterable[dict], gallery_loader: Iterable[dict],
                 gallery_includes_query: bool = False, normalize: bool = False,
                 dist_metric: str = "euclidean", rerank: bool = False,
                 use_metric_cuhk03: bool = False, forward: Forward | None = None) -> Evaluation:
        """Extract query and gallery, rank them; see the module notes."""
        start = time.time()
        q = self.extract(query_loader, forward)
        g = self.extract(gallery_loader, forward)
        extract_s = time.time() - start
        qf, q_pids, q_camids = q.features, q.pids.numpy(), q.camids.numpy()
        gf, g_pids, g_camids = g.features, g.pids.numpy(), g.camids.numpy()
        if gallery_includes_query:  # the query features are reused as gallery rows
            gf = torch.cat([qf, gf])
            g_pids, g_camids = np.concatenate([q_pids, g_pids]), np.concatenate([q_camids, g_camids])
        if normalize:
            qf, gf = F.normalize(qf, p=2, dim=1), F.normalize(gf, p=2, dim=1)
        distmat = distance_matrix(qf, gf, dist_metric, rerank=rerank)
        metrics = rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids,
                               use_metric_cuhk03=use_metric_cuhk03)
        return Evaluation(qf, gf, q_pids, g_pids, q_camids, g_camids, distmat, metrics,
                          bool(gallery_includes_query), q.frames + g.frames, extract_s,
                          time.time() - start)


def result_row(ev: Evaluation, ranks: Sequence[int]) -> Dict[str, Any]:
    """The evaluation's row of ``results.json``: mAP, mINP, ``R<k>`` for each of ``ranks``, the
    query / gallery counts and the seconds it took."""
    r = ev.metrics
    return {"mAP": float(r.mAP), "mINP": float(r.mINP),
            **{f"R{k}": float(r.cmc[k - 1]) for k in ranks if k <= len(r.cmc)},
            "num_query": int(r.num_query), "num_valid_query": int(r.num_valid),
            "num_gallery": int(len(ev.g_pids)),
            "gallery_includes_query": bool(ev.gallery_includes_query), "test_s": ev.seconds}


def report(name: str, ev: Evaluation, ranks: Sequence[int]) -> None:
    """Log the evaluation of ``name`` in torchreid's words (``** Results **``, ``mAP``, the CMC
    curve), with the sizes, the speed, mINP, and a warning naming the queries that have no true
    match."""
    r = ev.metrics
    fps = ev.frames / max(ev.extract_s, 1e-9)
    num_q, dim = ev.query_features.shape
    logger.info(f"=> {name}: {num_q} query x {len(ev.g_pids)} gallery tracklets"
                f"{' (gallery includes query)' if ev.gallery_includes_query else ''}, "
                f"{dim}-d features, {ev.frames} frames at {fps:.1f} frames/s")
    unmatched = r.num_query - r.num_valid
    if unmatched:
        warnings.warn(
            f"{name}: {unmatched} of {r.num_query} queries have no true "
            f"match in the gallery (same id, other camera) and are left out of CMC/mAP",
            stacklevel=2)
    logger.info("** Results **")
    logger.info(f"queries: {r.num_valid} evaluated of {r.num_query}" + (
        f" ({unmatched} without a true match in the gallery, left out)" if unmatched else ""))
    logger.info(f"mAP: {r.mAP:.1%}")
    logger.info(f"mINP: {r.mINP:.1%}")
    logger.info("CMC curve")
    for k in ranks:
        if k <= len(r.cmc):
            logger.info(f"Rank-{k:<3}: {r.cmc[k - 1]:.1%}")


def write_results(path: str, results: Mapping[str, Dict[str, Any]], model: str, epoch: int,
                  train_s: float, evaluate_only: bool) -> str:
    """``results.json``: one row per test dataset (a single row: an object) with the model, the
    epochs trained, the training time and whether the run only evaluated (read by
    ``tools/benchmark_table.py``). Written atomically.

    Example:
        >>> import json, tempfile
        >>> path = write_results(osp.join(tempfile.mkdtemp(), "results.json"),
        ...                      {"mars": {"mAP": 0.5}}, "tfclip_tiny", 2, 10.0, False)
        >>> json.load(open(path))["dataset"]
        'mars'
    """
    rows: List[Dict[str, Any]] = [
        {"model": model, "dataset": name, **res, "epoch": epoch, "train_s": train_s,
         "evaluate_only": evaluate_only} for name, res in results.items()]
    return save_json(rows[0] if len(rows) == 1 else rows, path)


def write_features(folder: str, name: str, splits: Mapping[str, Sequence], ev: Evaluation,
                   meta: Dict[str, Any] | None = None) -> List[str]:
    """``<folder>/<name>_{query,gallery}.{npy,json}``: the features as ranked (the gallery with
    the query rows first when it includes them) with the index of ``splits``' items
    (:mod:`~tfclip_torchreid.utils.feature_files`, read by ``tools/visualize.py``)."""
    files = []
    for split, feats in (("query", ev.query_features), ("gallery", ev.gallery_features)):
        files += save_embeddings(osp.join(folder, f"{name}_{split}.npy"), feats.numpy(),
                                 dataset_index(splits[split], meta))
    return files
