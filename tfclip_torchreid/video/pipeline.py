"""From camera videos and their track files to global identities: :func:`run_video_reid`.

1. **check** (before any compute): every track file is read (:func:`~..data.mot.read_tracks`)
   and every video opened and its first frame decoded (:func:`.decoding.probe_video`); a track
   file none of whose boxes fits its video (all past its last frame or outside its frame) stops
   the run, naming both files; boxes of a track file that only partly fit are counted and skipped
   later;
2. **stream** each video (:func:`.decoding.iter_frames`, one frame in memory, up to the last frame
   a box needs) and crop its tracks' boxes (:mod:`.cropping`) into tracklets that are embedded
   part by part as they come (:class:`.tracklets.TrackletStream`) with the dense protocol and the
   weights' own preprocessing, by the chosen backend (:class:`.backends.Embedder`); progress
   (frames/s) is shown per video. A video that cannot be decoded from some frame on (a damaged
   or cut recording) keeps the frames before, with a warning naming the file and the frame;
   the boxes of later frames are counted as past its end;
3. **link** the tracks of all cameras into global identities (:mod:`.linking`: each camera's
   bias removed from the features, then constrained average-linkage clustering on cosine
   distance; two tracks of one camera that overlap in time are never one person; the threshold
   from the data unless given);
4. **write** ``OUT/identities.csv`` and ``OUT/report.html`` (:mod:`.report`),
   ``OUT/summary.json`` (per video: frames, boxes used and skipped per reason, tracks without a
   usable box, frames/s; the threshold and how it was chosen; the backend's speed) and, with a
   ground truth, ``OUT/metrics.json`` (:func:`.metrics.pairwise_scores`).

Cameras are named after their video files without the extension (``cam1.mp4`` -> ``cam1``, as
in ``gt.csv``), and numbered in the order given (the SIE camera ids of a model that uses them).
Each camera keeps its own frame rate and size.

Example:
    >>> result = run_video_reid(["cam1.mp4", "cam2.mp4"], ["cam1.txt", "cam2.txt"], "out",
    ...                         weights="log/demo/checkpoints/latest.pth")  # doctest: +SKIP
    >>> result.files["report"]  # doctest: +SKIP
    'out/report.html'
"""

from __future__ import annotations

import logging
import os
import os.path as osp
import time
from typing import Any, Dict, List, Mapping, NamedTuple, Sequence, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.mot import Box, read_ground_truth, read_tracks
from ..embedding import resolve_norm
from ..export import load_inference_model, uses_cameras
from ..models.weights import Weights, resolve_weights
from ..utils.checkpoint import save_json
from ..utils.feature_files import Tracklet
from ..utils.rng import rng_scope
from .backends import BACKENDS, Embedder
from .cropping import OUTSIDE, SkipCounts, clip_box
from .decoding import VideoError, VideoInfo, iter_frames, probe_video
from .linking import (
    NEGATIVE_QUANTILE,
    Span,
    Threshold,
    auto_threshold,
    boxes_touch,
    cannot_link,
    cosine_distances,
    link_tracks,
    remove_camera_bias,
)
from .metrics import pairwise_scores
from .report import write_identities, write_report
from .tracklets import TrackletStream, TrackResult

logger = logging.getLogger(__name__)

__all__ = ["VideoReIDResult", "run_video_reid", "camera_names", "check_inputs"]


class VideoReIDResult(NamedTuple):
    """What :func:`run_video_reid` found: the embedded tracks, their global ids (1-based, in
    the order of ``tracks``), the threshold, the scores (None without a ground truth), the
    summary and the files written."""

    tracks: List[TrackResult]
    global_ids: List[int]
    threshold: Threshold
    metrics: Dict[str, Any] | None
    summary: Dict[str, Any]
    files: Dict[str, str]


def camera_names(videos: Sequence[str], tracks: Sequence[str]) -> List[str]:
    """The cameras' names (video file names without the extension), checked: one track file per
    video, no name twice; a track file named otherwise than its video is warned about (they are
    paired in the order given).

    Example:
        >>> camera_names(["a/cam1.mp4", "a/cam2.avi"], ["a/cam1.txt", "a/cam2.txt"])
        ['cam1', 'cam2']
    """
    if not videos:
        raise ValueError("give at least one video (--videos)")
    if len(videos) != len(tracks):
        raise ValueError(f"{len(videos)} video(s) but {len(tracks)} track file(s): give one "
                         "track file per video, in the same order (--videos V1 V2 --tracks T1 T2)")
    names = [osp.splitext(osp.basename(v))[0] for v in videos]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"two videos are named {twice[0]}: cameras are named after their video "
                         "files, which must differ")
    for video, track, name in zip(videos, tracks, names):
        if osp.splitext(osp.basename(track))[0] != name:
            logger.warning(f"=> {track} is paired with {video} (the order given), though it is "
                           "not named like it")
    return names


def _fit(path: str, tracks: Mapping[int, Sequence[Box]], info: VideoInfo) -> Dict[str, int]:
    """Boxes of a track file that cannot fit its video: past its frame count (when the container
    gives one) and entirely outside its frame; an error when no box fits."""
    boxes = [b for bs in tracks.values() for b in bs]
    beyond = sum(b.frame > info.frames for b in boxes) if info.frames else 0
    outside = sum(clip_box(b, info.height, info.width) == OUTSIDE for b in boxes)
    fitting = sum(not (info.frames and b.frame > info.frames)
                  and clip_box(b, info.height, info.width) != OUTSIDE for b in boxes)
    if boxes and not fitting:
        raise ValueError(
            f"none of the {len(boxes)} boxes of {path} fits {info.path} ({info.frames or '?'} "
            f"frames of {info.width}x{info.height}): {beyond} are past its last frame and "
            f"{outside} outside its frame. Is {path} the track file of this video?")
    if beyond or outside:
        logger.warning(f"=> {path}: {beyond} box(es) past the last frame ({info.frames}) and "
                       f"{outside} entirely outside the {info.width}x{info.height} frame of "
                       f"{info.path}; they are skipped and counted")
    return {"boxes": len(boxes), "past_last_frame": beyond, "outside_frame": outside}


def check_inputs(videos: Sequence[str], tracks: Sequence[str]
                 ) -> Tuple[List[str], List[Dict[int, List[Box]]], List[VideoInfo]]:
    """Step 1 of the module notes: ``(camera names, tracks per camera, video infos)``."""
    names = camera_names(videos, tracks)
    read = [read_tracks(t) for t in tracks]
    infos = [probe_video(v) for v in videos]
    for path, t, info in zip(tracks, read, infos):
        if not t:
            logger.warning(f"=> {path} holds no track: camera {osp.basename(info.path)} adds "
                           "nothing")
        _fit(path, t, info)
    return names, read, infos


def _model(weights: str | Weights | None, arch: str | None, cameras: int, device: str,
           options: Mapping[str, Any], seed: int) -> Tuple[torch.nn.Module, Any]:
    if weights is None:
        with rng_scope(seed):
            model = load_inference_model(arch, camera_num=cameras, device=device, **options)
        return model, None
    resolved = resolve_weights(weights, arch)
    model = load_inference_model(weights=resolved, device=device, **options)
    return model, resolved.preprocess.norm


class _Timed:
    """An embedder that counts its crops and seconds."""

    def __init__(self, embed: Embedder) -> None:
        self.embed, self.crops, self.seconds = embed, 0, 0.0

    def __call__(self, parts: Sequence[Tracklet]) -> np.ndarray:
        start = time.perf_counter()
        out = self.embed(parts)
        self.seconds += time.perf_counter() - start
        self.crops += sum(len(p.paths) for p in parts)
        return out


def _stream_video(name: str, index: int, video: str, tracks: Mapping[int, Sequence[Box]],
                  embed: _Timed, stream_kw: Mapping[str, Any], progress: bool, declared: int
                  ) -> Tuple[List[TrackResult], Dict[str, Any]]:
    """Crop and embed the tracks of one video; a video damaged part-way keeps the frames read
    before (a warning names the file and frame)."""
    stream = TrackletStream(name, index, tracks, embed, **stream_kw)
    start = time.perf_counter()
    decoded = 0
    bar = None
    if progress and stream.last_frame:
        bar = tqdm(total=stream.last_frame, desc=name, unit="frame")
    error = None
    try:
        try:
            for number, frame in iter_frames(video, last=stream.last_frame):
                decoded = number
                if stream.wants(number):
                    stream.add_frame(number, frame.to_ndarray(format="rgb24"))
                if bar is not None:
                    bar.update(1)
        except VideoError as err:  # damaged part-way: what was read is kept
            error = str(err)
            logger.warning(f"=> {err}. The {decoded} frames before are used; the boxes of "
                           "later frames are skipped (counted as past the video's end)")
        results = stream.finish(decoded)
    finally:
        if bar is not None:
            bar.close()
    if error is None and declared and decoded < min(declared, stream.last_frame):
        logger.warning(f"=> {video} ended after {decoded} frames, though its container says "
                       f"{declared}; the boxes of later frames are skipped")
    seconds = time.perf_counter() - start
    skipped = SkipCounts(stream.skipped)
    info = {"video": video, "frames_read": decoded, "tracks": len(tracks),
            "tracks_embedded": len(results), "tracks_without_a_usable_box": stream.dropped,
            "boxes_used": stream.crops, "boxes_skipped": dict(skipped),
            "decoding_error": error, "seconds": seconds,
            "frames_per_s": decoded / max(seconds, 1e-9)}
    logger.info(f"=> {name}: {decoded} frames, {stream.crops} boxes cropped into "
                f"{len(results)} tracklets in {seconds:.1f} s ({info['frames_per_s']:.1f} "
                f"frames/s); skipped boxes: {skipped.describe()}"
                + (f"; tracks without a usable box: {stream.dropped}" if stream.dropped else ""))
    return results, info


def _touching(results: Sequence[TrackResult], cannot: np.ndarray,
              boxes: Sequence[Mapping[int, Sequence[Box]]]) -> np.ndarray:
    """For the cannot-link pairs: whether their boxes intersect in a frame (crops that share
    pixels)."""
    out = np.zeros_like(cannot)
    for i, j in zip(*np.nonzero(np.triu(cannot, k=1))):
        a, b = results[i], results[j]
        out[i, j] = out[j, i] = boxes_touch(boxes[a.cam_index][a.track_id],
                                            boxes[b.cam_index][b.track_id])
    return out


def _link(results: Sequence[TrackResult], boxes: Sequence[Mapping[int, Sequence[Box]]],
          threshold: float | None, quantile: float, keep_camera_bias: bool
          ) -> Tuple[List[int], Threshold]:
    feats = np.stack([t.feature for t in results])
    if not keep_camera_bias:
        feats = remove_camera_bias(feats, [t.camera for t in results])
    dist = cosine_distances(feats)
    cannot = cannot_link([Span(t.camera, t.first, t.last) for t in results])
    if threshold is None:
        chosen = auto_threshold(dist, cannot, _touching(results, cannot, boxes), quantile)
    else:
        chosen = Threshold(float(threshold), "given", 0)
    labels = link_tracks(dist, cannot, chosen.value)
    return [int(g) + 1 for g in labels], chosen


def run_video_reid(videos: Sequence[str], tracks: Sequence[str], out: str,
                   weights: str | Weights | None = None, arch: str | None = None,
                   gt: str | None = None, backend: str = "pytorch", seq_len: int = 8,
                   threshold: float | None = None, quantile: float = NEGATIVE_QUANTILE,
                   device: str = "cpu", batch_size: int = 8, max_clips: int = 32,
                   part_frames: int = 64, batch_frames: int = 256, thumbnails: int = 4,
                   cache_dir: str | None = None, progress: bool = True,
                   model_options: Mapping[str, Any] | None = None,
                   seed: int = 0, keep_camera_bias: bool = False) -> VideoReIDResult:
    """Run the pipeline of the module notes.

    Args:
        videos, tracks: the videos and their MOTChallenge track files, paired in order.
        out: output folder.
        weights: a checkpoint, ``zoo:NAME`` or resolved weights; or None with ``arch`` for
            random weights (one SIE camera per video when the arch uses SIE).
        arch: the architecture (needed for weights that do not name it).
        gt: a ``gt.csv`` (``camera,track_id,person``): adds ``metrics.json`` and the people to
            the report.
        backend: one of :data:`~.backends.BACKENDS`.
        seq_len: frames per clip of the dense protocol.
        threshold: the linking threshold (cosine distance); None: chosen from the data
            (:func:`~.linking.auto_threshold` with ``quantile``).
        device: where the PyTorch backend runs.
        batch_size, max_clips: tracklets per loader batch, clips per forward pass.
        part_frames, batch_frames: crops held per track, crops embedded together
            (:class:`~.tracklets.TrackletStream`).
        thumbnails: crops per track in the report.
        cache_dir: where ONNX exports are cached.
        progress: a progress bar per video (frames/s).
        model_options: model options (e.g. ``layers=1`` for a random model).
        seed: the seed random weights are drawn from (the same random model every run).
        keep_camera_bias: keep each camera's bias in the features (default: removed before
            linking, :func:`~.linking.remove_camera_bias`).

    Returns:
        :class:`VideoReIDResult`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if weights is None and arch is None:
        raise ValueError("give weights (--weights) or an architecture for random weights (--arch)")
    start = time.perf_counter()
    names, per_camera, infos = check_inputs(videos, tracks)
    truth = read_ground_truth(gt) if gt else None
    if truth is not None:
        unknown = sorted({c for c, _ in truth} - set(names))
        if unknown:
            logger.warning(f"=> {gt} names cameras without a video here: {unknown}")
    os.makedirs(out, exist_ok=True)
    model, norm = _model(weights, arch, len(videos), device, dict(model_options or {}),
                         seed)
    if uses_cameras(model) and len(videos) > int(model.cfg.camera_num):
        raise ValueError(f"the model embeds {model.cfg.camera_num} SIE cameras but "
                         f"{len(videos)} videos were given: use weights trained with as many "
                         "cameras, or fewer videos per run")
    embed = _Timed(Embedder(model, backend, seq_len, norm, batch_size, max_clips, device,
                            cache_dir))
    stream_kw = dict(seq_len=seq_len, part_frames=part_frames, batch_frames=batch_frames,
                     thumbnails=thumbnails)
    results: List[TrackResult] = []
    per_video: Dict[str, Any] = {}
    for i, (name, video, t, info) in enumerate(zip(names, videos, per_camera, infos)):
        got, stats = _stream_video(name, i, video, t, embed, stream_kw, progress, info.frames)
        stats.update(fps=info.fps, height=info.height, width=info.width, track_file=tracks[i])
        results += got
        per_video[name] = stats
    if not results:
        raise ValueError("no track of any video has a box that could be cropped: nothing to link")
    global_ids, chosen = _link(results, per_camera, threshold, quantile, keep_camera_bias)
    logger.info(f"=> {len(results)} tracks of {len(videos)} camera(s) linked into "
                f"{len(set(global_ids))} identities (threshold {chosen.value:.4f}: {chosen.rule})")
    mean, std = resolve_norm(model, norm)
    frames = sum(v["frames_read"] for v in per_video.values())
    seconds = time.perf_counter() - start
    if weights is None:
        source = f"random weights (seed {seed})"
    else:
        source = str(weights.source if isinstance(weights, Weights) else weights)
    summary = {
        "weights": source,
        "arch": model.cfg.arch, "backend": backend, "seq_len": int(seq_len),
        "image_size": list(model.cfg.image_size), "norm": {"mean": mean, "std": std},
        "threshold": chosen.value, "threshold_rule": chosen.rule,
        "camera_bias_removed": not keep_camera_bias,
        "tracks": len(results), "identities": len(set(global_ids)),
        "videos": per_video, "seconds": seconds,
        "frames_per_s": frames / max(seconds, 1e-9),
        "embedding": {"crops": embed.crops, "seconds": embed.seconds,
                      "crops_per_s": embed.crops / max(embed.seconds, 1e-9)},
    }
    files = {"identities": osp.join(out, "identities.csv"), "report": osp.join(out, "report.html"),
             "summary": osp.join(out, "summary.json")}
    write_identities(files["identities"], results, global_ids)
    metrics = None
    if truth is not None:
        metrics = pairwise_scores({t.key: g for t, g in zip(results, global_ids)}, truth)
        files["metrics"] = save_json(metrics, osp.join(out, "metrics.json"))
        logger.info(f"=> pairwise precision {metrics['pairwise_precision']:.3f}, recall "
                    f"{metrics['pairwise_recall']:.3f}, F1 {metrics['pairwise_f1']:.3f} over "
                    f"{metrics['cross_camera_pairs']} cross-camera track pairs "
                    f"({metrics['true_pairs']} of one person)")
    facts = {"weights": summary["weights"], "model": f"{model.cfg.arch}, {backend}",
             "tracks": f"{len(results)} tracks in {len(videos)} cameras -> "
                       f"{summary['identities']} identities",
             "threshold": f"{chosen.value:.4f} ({chosen.rule})"}
    if metrics is not None:
        facts["pairwise F1"] = (f"{metrics['pairwise_f1']:.3f} (precision "
                                f"{metrics['pairwise_precision']:.3f}, recall "
                                f"{metrics['pairwise_recall']:.3f})")
    write_report(files["report"], results, global_ids, names, truth, facts,
                 title="Identities across cameras")
    save_json(summary, files["summary"])
    logger.info(f"=> wrote {', '.join(files.values())} ({seconds:.1f} s, "
                f"{summary['frames_per_s']:.1f} video frames/s; embedding "
                f"{summary['embedding']['crops_per_s']:.1f} crops/s with {backend})")
    return VideoReIDResult(results, global_ids, chosen, metrics, summary, files)
