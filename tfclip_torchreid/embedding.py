"""Embed folders of tracklets with a trained model, save the features, rank query vs gallery.

Input layout (:func:`discover_tracklets`): under a folder DIR, the image files of every folder are
read with the benchmarks' frame namings, which live with their datasets
(:func:`~.data.datasets.folder_tracklets`):

* MARS (``0001/0001C1T0001F001.jpg``) and LS-VID (``0002/0002_003_07_0011.jpg``): a person folder
  holds several tracklets, told apart by the name (``0001C1T0001``); each is embedded on its own;
* iLIDS-VID (``cam1/person001/cam1_person001_00317.png``), PRID2011
  (``cam_a/person_0001/0001.png``) and DukeMTMC-VideoReID: a folder per tracklet;
* Market-1501 (``0002_c1s1_000451_03.jpg``), DukeMTMC-reID and MSMT17: every image is a tracklet;
* other names: every folder that directly holds image files is one tracklet; image files directly
  in DIR are one-frame tracklets.

A folder that holds one tracklet is named by its path under DIR; the tracklets of a folder that
holds several are named ``<folder>/<tracklet>`` (``0001/0001C1T0001``), and the log says how many
folders were split. Frames are in file-name order (as the test loaders read them). Identity and
camera come from the names (pid -1 for junk and unknown, camera 0 when unknown); cameras are
0-based, as torchreid's parsers give them, and are the SIE camera ids of models that use one.

Frames are checked before any compute (:func:`~.data.frame_checks.check_frames`, cached): a
missing, empty, unreadable or truncated frame stops :func:`embed_folder` with the list of bad files,
or, with ``skip_bad_frames``, is left out (a tracklet left without frames too); the index's
``meta`` lists what was skipped. A frame that passes the check but cannot be decoded is found when
it is read: skipped the same way (after a full decode of the frames of that part), or the run
stops with :class:`EmbeddingError`, which carries the features of the tracklets embedded so far
(``tools/embed.py`` writes them as ``OUT_partial.*``, marked ``partial`` in ``meta``).

Embedding (:func:`embed_tracklets`) is the engine's evaluation with the package's own pieces:
:class:`~.data.dataset.ClipDataset` through :func:`~.data.datamanager.build_test_loader`
(every tracklet cut into ``seq_len``-frame clips, the last one cycled), the test transform at the
model's image size (:func:`~.data.transforms.build_sequence_transforms`) with the weights'
normalisation (pass ``norm=weights.preprocess.norm`` of the resolved weights, as
``tools/embed.py`` does; the default is the arch's documented one,
:func:`~.models.weights.arch_preprocess`) and the dense evaluator's extraction
(:meth:`~.engine.evaluation.DenseEvaluator.extract`: clip features averaged per tracklet, each
tracklet's camera broadcast to its clips).

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
    >>> from tfclip_torchreid.models import resolve_weights
    >>> weights = resolve_weights("log/mars/checkpoints/latest.pth")  # doctest: +SKIP
    >>> model = load_inference_model(weights=weights)  # doctest: +SKIP
    >>> feats, index = embed_folder(model, "my_tracklets", norm=weights.preprocess.norm)  # doctest: +SKIP
    >>> save_embeddings("out/feats.npy", feats, index)  # doctest: +SKIP
    ['out/feats.npy', 'out/feats.json']
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import os.path as osp
from typing import Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Subset
from torchvision.datasets.folder import IMG_EXTENSIONS

from .data.datamanager import build_test_loader
from .data.datasets import folder_tracklets, parse_frame
from .data.distributed import shard_indices
from .data.frame_checks import FrameCheckError, check_frames, decode_problems
from .data.transforms import build_sequence_transforms, norm_stats
from .engine.evaluation import DenseEvaluator
from .export import uses_cameras
from .metrics.rank import RankMetrics, rank_metrics
from .models.weights import arch_preprocess
from .utils.distributed import get_rank, get_world_size, is_dist
from .utils.feature_files import (
    H5_EXTENSIONS,
    Tracklet,
    feature_index,
    load_embeddings,
    save_embeddings,
)
from .visualize import rank_gallery

logger = logging.getLogger(__name__)

#: the features of a batch of clips: ``forward(clips (n, T, 3, H, W), cam_ids (n,) or None)``
Forward = Callable[[torch.Tensor, Any], torch.Tensor]

__all__ = ["IMAGE_EXTENSIONS", "Tracklet", "parse_ids", "discover_tracklets", "embed_tracklets",
           "resolve_norm", "check_tracklet_frames", "weights_digest", "EmbeddingError",
           "EmbeddingInterrupted", "SKIP_FLAG",
           "embed_folder", "feature_index", "save_embeddings", "load_embeddings", "rank_table",
           "write_rank_table", "ranking_metrics", "RANK_TABLE_COLUMNS", "H5_EXTENSIONS",
           "shard_batches"]

#: image files recognised as frames (torchvision's list)
IMAGE_EXTENSIONS = tuple(IMG_EXTENSIONS)
RANK_TABLE_COLUMNS = ("query", "rank", "gallery", "distance", "match")
#: how the option that leaves bad frames out is spelled on the command line and in Python
SKIP_FLAG = "--skip-bad-frames (skip_bad_frames=True in Python)"
_LISTED = 10  # bad files / folders named in a log line


def parse_ids(filename: str) -> Tuple[int, int]:
    """``(pid, camid)`` of a frame path under the benchmarks' namings
    (:func:`~.data.datasets.parse_frame`), else ``(-1, 0)``.

    Example:
        >>> parse_ids("0001C1T0001F001.jpg"), parse_ids("00-1C6T0002F010.jpg")
        ((1, 0), (-1, 5))
        >>> parse_ids("0002_c3s1_000451_03.jpg"), parse_ids("frame_0001.png")
        ((2, 2), (-1, 0))
    """
    found = parse_frame(filename)
    return (found[1].pid, found[1].camid) if found else (-1, 0)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _frame_key(path: str) -> Tuple[str, str]:
    return osp.basename(path), path  # the order ClipDataset reads frames in


def _examples(items: Sequence[str], n: int = _LISTED) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items) - n} more)" if len(items) > n else "")


class _Found:
    """What :func:`discover_tracklets` found, for its log lines."""

    def __init__(self) -> None:
        self.by_naming: Dict[str, List[Any]] = {}  # title -> [naming, tracklets, folders, split]
        self.plain_folders = 0
        self.loose = 0

    def named(self, naming: Any, rel: str, count: int) -> None:
        entry = self.by_naming.setdefault(naming.title, [naming, 0, 0, []])
        entry[1] += count
        entry[2] += 1
        if count > 1:
            entry[3].append(f"{'the input folder' if rel == '.' else rel} ({count})")

    def log(self, root: str, total: int) -> None:
        parts = []
        for title, (naming, n, folders, _) in self.by_naming.items():
            what = "images, one tracklet each" if naming.images else "tracklets"
            parts.append(f"{n} {title} {what} ({naming.example}) in {folders} folder(s)")
        if self.plain_folders:
            parts.append(f"{self.plain_folders} folder(s) of other frames, one tracklet each")
        if self.loose:
            parts.append(f"{self.loose} image(s) directly in the folder, one tracklet each")
        logger.info(f"=> {root}: {total} tracklets: {'; '.join(parts)}")
        for title, (naming, _, _, split) in self.by_naming.items():
            if split and not naming.images:
                log = logger.warning if naming.tracklet_folders else logger.info
                log(f"=> {len(split)} folder(s) hold several {title} tracklets each, embedded "
                    f"apart (a tracklet is {naming.rule}): {_examples(split)}")


def discover_tracklets(root: str, parse_names: bool = True) -> List[Tracklet]:
    """Every tracklet under ``root`` (see the module notes), sorted by name.

    Args:
        root: the input folder.
        parse_names: take pid / camid from the frame names (else -1 / 0 for all; tracklets are
            still told apart by their names).

    Example:
        >>> tracklets = discover_tracklets("mars/bbox_test")  # doctest: +SKIP
        >>> tracklets[0].name, len(tracklets[0].paths), tracklets[0].pid  # doctest: +SKIP
        ('0000/0000C1T0001', 14, 0)
    """
    if not osp.isdir(root):
        raise FileNotFoundError(f"input folder {root} does not exist")
    found: List[Tracklet] = []
    seen = _Found()

    def add(name: str, t: Tracklet) -> None:
        pid, camid = (t.pid, t.camid) if parse_names else (-1, 0)
        found.append(Tracklet(name, t.paths, pid, camid))

    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        images = sorted((osp.join(folder, f) for f in files if _is_image(f)), key=_frame_key)
        if not images:
            continue
        rel = osp.relpath(folder, root)
        group = folder_tracklets(images)
        if group.naming is not None:
            seen.named(group.naming, rel, len(group.tracklets))
            single = len(group.tracklets) == 1 and rel != "."
            for t in group.tracklets:
                add(rel if single else osp.normpath(osp.join(rel, t.name)), t)
            continue
        if group.partly is not None:
            logger.warning(
                f"=> {folder}: {len(images) - len(group.unread)} of {len(images)} frames are "
                f"named as {group.partly.title} ({group.partly.example}) but "
                f"{_examples([osp.basename(p) for p in group.unread], 3)} are not, so their "
                f"tracklets cannot be told apart: {'each image' if rel == '.' else 'the folder'}"
                f" is taken as one tracklet. Rename or move the other files to embed the "
                f"{group.partly.title} tracklets apart")
        if rel == ".":
            seen.loose += len(images)
            for path in images:
                add(osp.basename(path), Tracklet("", (path,), -1, 0))
        else:
            seen.plain_folders += 1
            add(rel, group.tracklets[0])
    if not found:
        raise FileNotFoundError(
            f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {root}: put each tracklet's "
            "frames in its own folder, or single images directly in the folder")
    seen.log(root, len(found))
    return sorted(found, key=lambda t: t.name)


def _without(tracklets: Sequence[Tracklet], bad: Dict[str, str]
             ) -> Tuple[List[Tracklet], List[str]]:
    """``tracklets`` without the frames of ``bad``; the names of those left without frames."""
    kept, emptied = [], []
    for t in tracklets:
        paths = tuple(p for p in t.paths if p not in bad)
        if paths:
            kept.append(t._replace(paths=paths))
        else:
            emptied.append(t.name)
    return kept, emptied


def _log_skips(problems: Sequence[Tuple[str, str]], emptied: Sequence[str], when: str) -> None:
    logger.warning(f"=> {when}: left out {len(problems)} bad frame(s) "
                   f"({_examples([f'{p}: {r}' for p, r in problems])})"
                   + (f" and {len(emptied)} tracklet(s) left without frames "
                      f"({_examples(list(emptied))})" if emptied else "")
                   + "; the index's meta lists them all")


def check_tracklet_frames(tracklets: Sequence[Tracklet], skip_bad_frames: bool = False,
                          cache_dir: str | None = None
                          ) -> Tuple[List[Tracklet], List[Tuple[str, str]], List[str]]:
    """The frames of ``tracklets`` checked before any compute
    (:func:`~.data.frame_checks.check_frames`: exist, not empty, an image, not truncated; a
    good list is cached).

    Returns:
        ``(tracklets, skipped_frames, skipped_tracklets)``: with ``skip_bad_frames``, the
        tracklets without their bad frames (and without the tracklets left empty), the bad
        frames as ``(path, reason)`` and the names of the dropped tracklets.

    Raises:
        FrameCheckError: a bad frame without ``skip_bad_frames``; the message lists the files
            and names the option.
    """
    try:
        check_frames([p for t in tracklets for p in t.paths], cache_dir=cache_dir)
    except FrameCheckError as err:
        if not skip_bad_frames:
            raise FrameCheckError(
                f"{err}\nOr embed without them: {SKIP_FLAG} leaves these frames (and tracklets "
                "left without frames) out and lists them in the index's meta.",
                err.problems) from None
        kept, emptied = _without(tracklets, dict(err.problems))
        _log_skips(err.problems, emptied, "frame check")
        return kept, list(err.problems), emptied
    return list(tracklets), [], []


def weights_digest(model: nn.Module) -> str:
    """A digest of the model's state (names, shapes, dtypes, values): the same weights give the
    same digest whatever file or zoo name they came from. Feature indexes record it so that
    features of different weights are not compared by mistake.

    Example:
        >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> weights_digest(a) == weights_digest(a), weights_digest(a) == weights_digest(b)
        (True, False)
    """
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


def _check_cameras(tracklets: Sequence[Tracklet], camera_num: int) -> None:
    for t in tracklets:
        if not 0 <= t.camid < camera_num:
            raise ValueError(
                f"tracklet {t.name}: camera id {t.camid}"
                + (f" (from {osp.basename(t.paths[0])})" if isinstance(t.paths[0], str) else "")
                + " is "
                f"outside the model's SIE cameras 0..{camera_num - 1}; embed without parsed ids "
                "(parse_names=False / --no-parse-ids: camera 0 for every tracklet) or use a "
                "model trained with these cameras")


class _ProgressBar:
    """One tqdm bar (on stderr) over every part of an embedding, counting tracklets."""

    def __init__(self, total: int, desc: str) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="tracklet")

    def __call__(self, loader: Iterable[dict], desc: str) -> Iterator[dict]:
        for batch in loader:
            yield batch
            self.bar.update(len(batch["num_clips"]))

    def rewind(self, done: int, total: int) -> None:
        self.bar.n, self.bar.total = done, total
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def resolve_norm(model: nn.Module, norm: Any = None) -> Tuple[List[float], List[float]]:
    """``(mean, std)`` of ``norm`` (a name, a pair, or None: the arch's documented default).

    Example:
        >>> from tfclip_torchreid.models import build_tfclip
        >>> resolve_norm(build_tfclip("clipreid_tiny", num_classes=2))[0]
        [0.5, 0.5, 0.5]
    """
    mean, std = norm_stats(arch_preprocess(model.cfg.arch).norm if norm is None else norm)
    return [float(m) for m in mean], [float(s) for s in std]


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
                    batch_size: int = 8, norm: Any = None,
                    device: str | torch.device | None = None, workers: int = 0,
                    max_clips: int = 64,
                    progress: bool | Callable[[Iterable[dict], str], Iterator[dict]] = True,
                    desc: str = "embedding", forward: Forward | None = None) -> np.ndarray:
    """Dense-protocol test features ``(N, feature_dim)`` float32 of ``tracklets``, in order.

    Args:
        model: a TF-CLIP model (set to eval mode); its ``cfg.image_size`` sets the frame size.
        tracklets: from :func:`discover_tracklets`; or tracklets whose ``paths`` are RGB PIL
            images in temporal order (crops of a video, :mod:`tfclip_torchreid.video`).
        seq_len: frames per clip (8 in TF-CLIP; 1 for image models).
        batch_size: tracklets per loader batch (each brings all of its clips).
        norm: the frames' normalisation: the weights' ``(mean, std)``
            (``Weights.preprocess.norm``), a name (``"imagenet"``, ``"clip"``, ``"inception"``)
            or None (the arch's documented default, :func:`~.models.weights.arch_preprocess`).
        device: where the model runs (default: where its parameters are).
        workers: DataLoader workers.
        max_clips: clips per forward pass.
        progress: show a progress bar (tqdm, on stderr); or ``progress(loader, desc)``, a
            wrapper of the loader's batches.
        desc: label of the progress bar and of errors.
        forward: ``forward(clips, cam_ids or None) -> (n, D)``, run instead of the model's test
            forward (e.g. the model exported to ONNX, in ONNX Runtime); the model still gives
            the frame size, the cameras and the normalisation.

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
    transform = build_sequence_transforms(h, w, is_train=False, norm=resolve_norm(model, norm))
    loader = build_test_loader([(t.paths, t.pid, t.camid) for t in tracklets], seq_len, "dense",
                               transform, batch_size, workers, pin_memory=device.type == "cuda")

    run = forward if forward is not None else model

    def features(clips: torch.Tensor, cams: torch.Tensor) -> torch.Tensor:
        return run(clips, cams if cameras else None)

    bar = _ProgressBar(len(tracklets), desc) if progress is True else None
    try:
        evaluator = DenseEvaluator(device=device, max_clips=max_clips,
                                   progress=bar or (progress if callable(progress) else None),
                                   shard=_this_rank if is_dist() else None)
        out = evaluator.extract(loader, features, desc)
    finally:
        if bar is not None:
            bar.close()
    if out.index.tolist() != list(range(len(tracklets))):
        raise RuntimeError(f"{desc}: the loader returned tracklets out of order")
    return out.features.numpy().astype(np.float32, copy=False)


class EmbeddingError(RuntimeError):
    """An embedding stopped part-way; ``features`` and ``index`` hold the tracklets embedded
    before (the index's ``meta["partial"]`` says how many of how many, and why it stopped)."""

    def __init__(self, message: str, features: np.ndarray, index: Dict[str, Any]) -> None:
        super().__init__(message)
        self.features, self.index = features, index


class EmbeddingInterrupted(KeyboardInterrupt):
    """Ctrl-C during an embedding, with the ``features`` and ``index`` embedded before (as
    :class:`EmbeddingError`)."""

    def __init__(self, message: str, features: np.ndarray, index: Dict[str, Any]) -> None:
        super().__init__(message)
        self.features, self.index = features, index


def _reason(err: BaseException) -> str:
    """``Type: message`` of ``err``; of a DataLoader worker's error, its last line (the worker's
    own message, without the traceback torch puts before it)."""
    text = str(err).strip()
    if "Original Traceback" in text:
        return text.splitlines()[-1].strip()  # "Type: message" of the worker's error
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class _Parts(NamedTuple):
    features: np.ndarray
    tracklets: List[Tracklet]
    skipped: List[Tuple[str, str]]
    emptied: List[str]
    error: BaseException | None


def _embed_parts(model: nn.Module, tracklets: Sequence[Tracklet], part_size: int,
                 skip_bad_frames: bool, progress: bool, kwargs: Dict[str, Any]) -> _Parts:
    """:func:`embed_tracklets` on ``part_size`` tracklets at a time. A part that fails is, with
    ``skip_bad_frames``, decoded frame by frame and embedded again without the frames that
    cannot be decoded; otherwise (or when nothing is found) the error is returned with what was
    embedded before it."""
    feats: List[np.ndarray] = []
    kept: List[Tracklet] = []
    skipped: List[Tuple[str, str]] = []
    emptied: List[str] = []
    desc = kwargs.get("desc", "embedding")
    bar = _ProgressBar(len(tracklets), desc) if progress else None

    def stacked() -> np.ndarray:
        return np.concatenate(feats) if feats else np.zeros((0, model.feature_dim), np.float32)

    try:
        for start in range(0, len(tracklets), part_size):
            part = list(tracklets[start:start + part_size])
            for retry in (False, True):
                try:
                    if part:
                        feats.append(embed_tracklets(model, part, progress=bar or False, **kwargs))
                        kept.extend(part)
                    break
                except Exception as err:  # noqa: BLE001 - returned to the caller, with the part
                    bad = []
                    if skip_bad_frames and not retry:
                        logger.warning(f"=> {desc}: {_reason(err)}; decoding the frames of "
                                       f"this part of {len(part)} tracklets to find bad ones")
                        bad = decode_problems(p for t in part for p in t.paths)
                    if not bad:
                        return _Parts(stacked(), kept, skipped, emptied, err)
                    part, lost = _without(part, dict(bad))
                    skipped.extend(bad)
                    emptied.extend(lost)
                    _log_skips(bad, lost, f"{desc} (decoding)")
                    if bar is not None:
                        bar.rewind(len(kept), len(tracklets) - len(emptied))
    except KeyboardInterrupt as err:
        return _Parts(stacked(), kept, skipped, emptied, err)
    finally:
        if bar is not None:
            bar.close()
    return _Parts(stacked(), kept, skipped, emptied, None)


def embed_folder(model: nn.Module, root: str, parse_names: bool = True,
                 meta: Dict[str, Any] | None = None, skip_bad_frames: bool = False,
                 part_size: int = 512, **kwargs: Any) -> Tuple[np.ndarray, Dict[str, Any]]:
    """:func:`discover_tracklets`, :func:`check_tracklet_frames` (before any compute), then
    :func:`embed_tracklets` on ``part_size`` tracklets at a time: ``(features, index)``.

    Args:
        model, root, parse_names: the model, the input folder and whether pid / camera are read
            from the frame names.
        meta: entries added to the index's ``meta`` (which records the settings: ``norm``, the
            mean and std used; ``weights_digest``, :func:`weights_digest` of the model, unless
            given).
        skip_bad_frames: leave frames out that fail the check, or that cannot be decoded when
            read, and tracklets left without frames; ``meta`` lists them
            (``skipped_frames``: path under ``root`` and reason; ``skipped_tracklets``).
        part_size: tracklets per part: the most a failure can lose, and what is decoded again
            to find a bad frame that passed the check.
        **kwargs: :func:`embed_tracklets`'s settings (``seq_len``, ``norm``, ``progress``, ...).

    Raises:
        FrameCheckError: a bad frame, before any compute (without ``skip_bad_frames``).
        EmbeddingError, EmbeddingInterrupted: stopped part-way (an error, Ctrl-C); their
            ``features`` and ``index`` hold the tracklets embedded before.
    """
    if part_size < 1:
        raise ValueError(f"part_size must be >= 1, got {part_size}")
    desc = kwargs.get("desc", "embedding")
    tracklets, skipped, emptied = check_tracklet_frames(discover_tracklets(root, parse_names),
                                                        skip_bad_frames)
    if not tracklets:
        raise ValueError(f"{desc}: no tracklet of {root} has a good frame left")
    if uses_cameras(model):
        _check_cameras(tracklets, int(model.cfg.camera_num))
    mean, std = resolve_norm(model, kwargs.get("norm"))
    info = {"arch": model.cfg.arch, "feature_dim": int(model.feature_dim),
            "seq_len": int(kwargs.get("seq_len", 8)), "norm": {"mean": mean, "std": std},
            "image_size": list(model.cfg.image_size), "protocol": "dense"}
    info.update(meta or {})
    if info.get("weights_digest") is None:
        info["weights_digest"] = weights_digest(model)
    run = _embed_parts(model, tracklets, part_size, skip_bad_frames,
                       kwargs.pop("progress", True), kwargs)
    skipped, emptied = skipped + run.skipped, emptied + run.emptied
    if skip_bad_frames:
        info["skipped_frames"] = [{"path": osp.relpath(osp.abspath(p), osp.abspath(root)),
                                   "reason": r} for p, r in skipped]
        info["skipped_tracklets"] = emptied
    if run.error is None:
        return run.features, feature_index(run.tracklets, root, info)
    total = len(tracklets) - len(run.emptied)
    info["partial"] = {"embedded": len(run.tracklets), "of": total,
                       "stopped_by": _reason(run.error)}
    index = feature_index(run.tracklets, root, info)
    if isinstance(run.error, KeyboardInterrupt):
        raise EmbeddingInterrupted(
            f"{desc}: interrupted after {len(run.tracklets)} of {total} tracklets",
            run.features, index) from run.error
    hint = "" if skip_bad_frames else (
        f" A frame that cannot be decoded is left out with {SKIP_FLAG}.")
    raise EmbeddingError(
        f"{desc} of {root} stopped after {len(run.tracklets)} of {total} tracklets: "
        f"{_reason(run.error)}.{hint}", run.features, index) from run.error


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

