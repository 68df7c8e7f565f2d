"""Embed folders of tracklets with a trained model, save the features, rank query vs gallery.

Input layout (:func:`discover_tracklets`): under a folder DIR, every folder that directly holds
image files is one tracklet, its frames in file-name order (as the test loaders read them);
image files directly in DIR are one-frame tracklets. Identity and camera are parsed from the
first frame's file name when it follows a benchmark's naming, else ``pid = -1, camid = 0``:

* MARS: ``0001C1T0001F001.jpg`` -> pid 1, camid 0 (``00-1...`` junk -> pid -1);
* Market-1501 / DukeMTMC: ``0001_c1s1_000151_01.jpg``, ``0005_c2_f0046985.jpg`` -> pid 1 / 5,
  camid 0 / 1.

Cameras are 0-based, as torchreid's parsers give them; they are the SIE camera ids of models
that use one.

Embedding (:func:`embed_tracklets`) is the engine's evaluation with the package's own pieces:
:class:`~.data.dataset.ClipDataset` through :func:`~.data.datamanager.build_test_loader`
(every tracklet cut into ``seq_len``-frame clips, the last one cycled), the test transform at the
model's image size (:func:`~.data.transforms.build_sequence_transforms`, ImageNet statistics by
default) and the dense evaluator's extraction (:meth:`~.engine.evaluation.DenseEvaluator.extract`:
clip features averaged per tracklet, each tracklet's camera broadcast to its clips).

Files (:func:`save_embeddings`, :func:`load_embeddings`, :func:`feature_index`): the feature-file
format of :mod:`~.utils.feature_files`, which :func:`~.visualize.read_feature_set` (and
``tools/visualize.py``) reads and the engine's ``test.save_features`` writes too.

Ranking (:func:`rank_table`, :func:`ranking_metrics`): the evaluator's distances
(:func:`~.engine.evaluation.distance_matrix`: torchreid's Euclidean distance between
L2-normalised features, through :func:`~.visualize.feature_distances`) and its ranker
(:func:`~.metrics.rank.rank_metrics`); a labelled query skips gallery tracklets of its own
identity and camera (the evaluation protocol), so the table agrees with CMC / mAP.

Example:
    >>> from tfclip_torchreid.export import load_inference_model
    >>> model = load_inference_model(weights="log/mars/checkpoints/latest.pth")  # doctest: +SKIP
    >>> feats, index = embed_folder(model, "my_tracklets")  # doctest: +SKIP
    >>> save_embeddings("out/feats.npy", feats, index)  # doctest: +SKIP
    ['out/feats.npy', 'out/feats.json']
"""

from __future__ import annotations

import csv
import os
import os.path as osp
import re
from typing import Any, Callable, Dict, Iterable, Iterator, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Subset
from torchvision.datasets.folder import IMG_EXTENSIONS

from .data.datamanager import build_test_loader
from .data.distributed import shard_indices
from .data.transforms import build_sequence_transforms
from .engine.evaluation import DenseEvaluator
from .export import uses_cameras
from .metrics.rank import RankMetrics, rank_metrics
from .utils.distributed import get_rank, get_world_size, is_dist
from .utils.feature_files import (
    H5_EXTENSIONS,
    Tracklet,
    feature_index,
    load_embeddings,
    save_embeddings,
)
from .visualize import rank_gallery

__all__ = ["IMAGE_EXTENSIONS", "Tracklet", "parse_ids", "discover_tracklets", "embed_tracklets",
           "embed_folder", "feature_index", "save_embeddings", "load_embeddings", "rank_table",
           "write_rank_table", "ranking_metrics", "RANK_TABLE_COLUMNS", "H5_EXTENSIONS",
           "shard_batches"]

#: image files recognised as frames (torchvision's list)
IMAGE_EXTENSIONS = tuple(IMG_EXTENSIONS)
RANK_TABLE_COLUMNS = ("query", "rank", "gallery", "distance", "match")

_MARS_NAME = re.compile(r"^(\d{4}|00-1)C(\d+)T\d+F\d+")
_MARKET_NAME = re.compile(r"^(-1|\d+)_c(\d+)")


def parse_ids(filename: str) -> Tuple[int, int]:
    """``(pid, camid)`` from a MARS or Market/Duke-style frame name, else ``(-1, 0)``.

    Example:
        >>> parse_ids("0001C1T0001F001.jpg"), parse_ids("00-1C6T0002F010.jpg")
        ((1, 0), (-1, 5))
        >>> parse_ids("0002_c3s1_000451_03.jpg"), parse_ids("frame_0001.png")
        ((2, 2), (-1, 0))
    """
    name = osp.basename(filename)
    for pattern in (_MARS_NAME, _MARKET_NAME):
        match = pattern.match(name)
        if match:
            pid = -1 if match.group(1) in ("00-1", "-1") else int(match.group(1))
            return pid, max(int(match.group(2)) - 1, 0)
    return -1, 0


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _frame_key(path: str) -> Tuple[str, str]:
    return osp.basename(path), path  # the order ClipDataset reads frames in


def discover_tracklets(root: str, parse_names: bool = True) -> List[Tracklet]:
    """Every tracklet under ``root`` (see the module notes), sorted by name.

    Args:
        root: the input folder.
        parse_names: parse pid / camid from frame names (else -1 / 0 for all).

    Example:
        >>> tracklets = discover_tracklets("bbox_test")  # doctest: +SKIP
        >>> tracklets[0].name, len(tracklets[0].paths), tracklets[0].pid  # doctest: +SKIP
        ('0002/0002C1T0001', 22, 2)
    """
    if not osp.isdir(root):
        raise FileNotFoundError(f"input folder {root} does not exist")
    found: List[Tracklet] = []

    def add(name: str, paths: Sequence[str]) -> None:
        pid, camid = parse_ids(paths[0]) if parse_names else (-1, 0)
        found.append(Tracklet(name, tuple(paths), pid, camid))

    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        images = sorted((osp.join(folder, f) for f in files if _is_image(f)), key=_frame_key)
        if not images:
            continue
        rel = osp.relpath(folder, root)
        if rel == ".":
            for path in images:
                add(osp.basename(path), [path])
        else:
            add(rel, images)
    if not found:
        raise FileNotFoundError(
            f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {root}: put each tracklet's "
            "frames in its own folder, or single images directly in the folder")
    return sorted(found, key=lambda t: t.name)


def _check_cameras(tracklets: Sequence[Tracklet], camera_num: int) -> None:
    for t in tracklets:
        if not 0 <= t.camid < camera_num:
            raise ValueError(
                f"tracklet {t.name}: camera id {t.camid} (from {osp.basename(t.paths[0])}) is "
                f"outside the model's SIE cameras 0..{camera_num - 1}; embed without parsed ids "
                "(parse_names=False / --no-parse-ids: camera 0 for every tracklet) or use a "
                "model trained with these cameras")


def _progress_bar(total: int) -> Callable[[Iterable[dict], str], Iterator[dict]]:
    from tqdm.auto import tqdm

    def wrap(loader: Iterable[dict], desc: str) -> Iterator[dict]:
        with tqdm(total=total, desc=desc, unit="tracklet") as bar:
            for batch in loader:
                yield batch
                bar.update(len(batch["num_clips"]))

    return wrap


def shard_batches(loader: DataLoader, rank: int, world_size: int) -> DataLoader:
    """``loader`` restricted to rank ``rank``'s contiguous run of whole batches.

    Every batch is the one a single process would form (same tracklets, same clips per forward
    pass), so the features gathered from ranks ``0..world_size-1`` in order equal one process's
    (``index`` in the batches stays the tracklet's position in the full list).

    Example:
        >>> loader = DataLoader(list(range(10)), batch_size=3)
        >>> [b.tolist() for b in shard_batches(loader, 1, 2)]
        [[6, 7, 8], [9]]
    """
    size = int(loader.batch_size)
    batches = shard_indices(-(-len(loader.dataset) // size), rank, world_size)
    rows = range(batches.start * size, min(batches.stop * size, len(loader.dataset)))
    return DataLoader(Subset(loader.dataset, rows), batch_size=size, shuffle=False,
                      drop_last=False, collate_fn=loader.collate_fn,
                      num_workers=loader.num_workers, pin_memory=loader.pin_memory)


def _this_rank(loader: DataLoader) -> DataLoader:
    return shard_batches(loader, get_rank(), get_world_size())


def embed_tracklets(model: nn.Module, tracklets: Sequence[Tracklet], seq_len: int = 8,
                    batch_size: int = 8, norm: Any = "imagenet",
                    device: str | torch.device | None = None, workers: int = 0,
                    max_clips: int = 64, progress: bool = True,
                    desc: str = "embedding") -> np.ndarray:
    """Dense-protocol test features ``(N, feature_dim)`` float32 of ``tracklets``, in order.

    Args:
        model: a TF-CLIP model (set to eval mode); its ``cfg.image_size`` sets the frame size.
        tracklets: from :func:`discover_tracklets`.
        seq_len: frames per clip (8 in TF-CLIP; 1 for image models).
        batch_size: tracklets per loader batch (each brings all of its clips).
        norm: ``"imagenet"`` (TF-CLIP's), ``"clip"``, ``"inception"`` or a (mean, std) pair.
        device: where the model runs (default: where its parameters are).
        workers: DataLoader workers.
        max_clips: clips per forward pass.
        progress: show a progress bar (tqdm, on stderr).
        desc: label of the progress bar and of errors.

    Inside an initialised ``torch.distributed`` process group (``torchrun``), every process
    calls this with the same arguments: each embeds its share of whole batches
    (:func:`shard_batches`) and every process returns all the features, in order, equal to
    what one process computes.
    """
    if not tracklets:
        raise ValueError("no tracklets to embed")
    model.eval()
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    model.to(device)
    cameras = uses_cameras(model)
    if cameras:
        _check_cameras(tracklets, int(model.cfg.camera_num))
    h, w = model.cfg.image_size
    transform = build_sequence_transforms(h, w, is_train=False, norm=norm)
    loader = build_test_loader([(t.paths, t.pid, t.camid) for t in tracklets], seq_len, "dense",
                               transform, batch_size, workers, pin_memory=device.type == "cuda")

    def forward(clips: torch.Tensor, cams: torch.Tensor) -> torch.Tensor:
        return model(clips, cams if cameras else None)

    evaluator = DenseEvaluator(device=device, max_clips=max_clips,
                               progress=_progress_bar(len(tracklets)) if progress else None,
                               shard=_this_rank if is_dist() else None)
    out = evaluator.extract(loader, forward, desc)
    if out.index.tolist() != list(range(len(tracklets))):
        raise RuntimeError(f"{desc}: the loader returned tracklets out of order")
    return out.features.numpy().astype(np.float32, copy=False)


def embed_folder(model: nn.Module, root: str, parse_names: bool = True,
                 meta: Dict[str, Any] | None = None, **kwargs: Any
                 ) -> Tuple[np.ndarray, Dict[str, Any]]:
    """:func:`discover_tracklets` + :func:`embed_tracklets`: ``(features, index)``.

    ``kwargs`` go to :func:`embed_tracklets`; the index's ``meta`` records the settings.
    """
    tracklets = discover_tracklets(root, parse_names)
    feats = embed_tracklets(model, tracklets, **kwargs)
    info = {"arch": model.cfg.arch, "feature_dim": int(feats.shape[1]),
            "seq_len": int(kwargs.get("seq_len", 8)), "norm": kwargs.get("norm", "imagenet"),
            "protocol": "dense"}
    info.update(meta or {})
    return feats, feature_index(tracklets, root, info)


def _labelled(items: Sequence[Dict[str, Any]]) -> bool:
    return any(int(it["pid"]) >= 0 for it in items)


def rank_table(distmat: np.ndarray, query: Sequence[Dict[str, Any]],
               gallery: Sequence[Dict[str, Any]], topk: int = 10) -> List[Dict[str, Any]]:
    """The ``topk`` nearest gallery tracklets of every query, as rows of
    :data:`RANK_TABLE_COLUMNS` (names from the index items; ``match`` is 1/0 when both pids are
    known, else empty). Labelled queries skip same-identity same-camera gallery items.

    Example:
        >>> q = [{"name": "q", "pid": 1, "camid": 0}]
        >>> g = [{"name": "a", "pid": 2, "camid": 1}, {"name": "b", "pid": 1, "camid": 1}]
        >>> [(r["gallery"], r["match"]) for r in rank_table(np.array([[0.5, 0.2]]), q, g)]
        [('b', 1), ('a', 0)]
    """
    d = np.asarray(distmat, dtype=np.float64)
    if d.shape != (len(query), len(gallery)):
        raise ValueError(f"distmat has shape {d.shape}, expected ({len(query)}, {len(gallery)})")
    g_pids = np.array([int(it["pid"]) for it in gallery])
    g_camids = np.array([int(it["camid"]) for it in gallery])
    rows = []
    for qi, q in enumerate(query):
        q_pid, q_camid = int(q["pid"]), int(q["camid"])
        if q_pid >= 0:
            ranked = rank_gallery(d[qi], q_pid, q_camid, g_pids, g_camids, topk)
        else:
            ranked = np.argsort(d[qi], kind="stable")[:topk].tolist()
        for rank, gi in enumerate(ranked, start=1):
            known = q_pid >= 0 and g_pids[gi] >= 0
            rows.append({"query": q["name"], "rank": rank, "gallery": gallery[gi]["name"],
                         "distance": float(d[qi, gi]),
                         "match": int(g_pids[gi] == q_pid) if known else ""})
    return rows


def write_rank_table(path: str, rows: Sequence[Dict[str, Any]]) -> str:
    """Write :func:`rank_table` rows as CSV (header :data:`RANK_TABLE_COLUMNS`)."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RANK_TABLE_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "distance": f"{row['distance']:.6f}"})
    return path


def ranking_metrics(distmat: np.ndarray, query: Sequence[Dict[str, Any]],
                    gallery: Sequence[Dict[str, Any]], max_rank: int = 50
                    ) -> RankMetrics | None:
    """CMC / mAP / mINP (:func:`~.metrics.rank.rank_metrics`) when pids are known, else None
    (also None when no query has a true match in the gallery)."""
    if not (_labelled(query) and _labelled(gallery)):
        return None
    arrays = [np.array([int(it[k]) for it in items]) for k in ("pid", "camid")
              for items in (query, gallery)]
    try:
        return rank_metrics(distmat, arrays[0], arrays[1], arrays[2], arrays[3],
                            max_rank=max_rank)
    except ValueError as err:
        if "true match" in str(err):
            return None
        raise

