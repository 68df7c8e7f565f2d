"""Speed of the video pipeline per backend, and the F1 of a trained model against an untrained one.

``speed``: frames/s of the test forward on a batch of clips (random weights, random frames) in
PyTorch eager float32, ONNX Runtime float32 and ONNX Runtime int8 (dynamic quantisation), with the
largest difference of ONNX Runtime's features to PyTorch's and the cosine similarity of the int8
features to the float32 ones; with --pipeline also the whole pipeline (decode, crop, embed, link)
on a small synthetic video set per backend. The machine's load average is printed with it.

``f1``: on a synthetic camera set (made with tools/make_synthetic_videos.py's generator unless
--videos-dir is given), the whole pipeline with --weights and with an untrained --baseline-arch on
the same videos, in one run, per backend (--backends; all three by default): the pairwise F1 of
each, the video frames/s of the streaming step (decode, crop, embed; model loading and ONNX
export left out) and the embedding's crops/s, and for ONNX Runtime and int8 the cosine similarity
of each track's feature to PyTorch's float32 one. With PyTorch, also, with the ground truth in
hindsight, the best F1 any threshold would give and the median distances of one person in two
cameras and of two people of one camera, with and without the cameras' bias removed.

The last line printed is a JSON object with every number.

Examples:
    python tools/bench_video.py speed --arch tfclip_vitb16 --clips 4 --frames 8
    python tools/bench_video.py speed --arch tfclip_tiny --pipeline
    python tools/bench_video.py f1 --weights log/demo/checkpoints/latest.pth --out log/video_f1
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import os.path as osp
import statistics
import sys
import time
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from tfclip_torchreid import cli
from tfclip_torchreid.data.mot import read_ground_truth
from tfclip_torchreid.export import load_inference_model
from tfclip_torchreid.models import list_archs
from tfclip_torchreid.testing import make_synthetic_videos
from tfclip_torchreid.testing.videos import VIDEO_MARKER
from tfclip_torchreid.utils.logger import console_logging
from tfclip_torchreid.utils.rng import rng_scope
from tfclip_torchreid.video import BACKENDS, pairwise_scores, run_video_reid
from tfclip_torchreid.video.backends import onnx_forward, onnx_model
from tfclip_torchreid.video.linking import (
    Span,
    cannot_link,
    cosine_distances,
    link_tracks,
    remove_camera_bias,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("speed", help="frames/s per backend",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--arch", choices=list_archs(), default="tfclip_vitb16")
    s.add_argument("--clips", type=int, default=4, help="clips per forward pass")
    s.add_argument("--frames", type=int, default=8, help="frames per clip")
    s.add_argument("--repeats", type=int, default=3, help="timed passes (the median is shown)")
    s.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    s.add_argument("--threads", type=int, default=None, help="torch / ONNX Runtime threads")
    s.add_argument("--pipeline", action="store_true",
                   help="also time the whole pipeline on a small synthetic video set")
    s.add_argument("--out", default=osp.join("log", "bench_video"), help="pipeline outputs")
    s.add_argument("--cache-dir", default=None, help="ONNX export cache")
    f = sub.add_parser("f1", help="pairwise F1: trained vs untrained",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    f.add_argument("--weights", required=True, help="the trained model")
    f.add_argument("--baseline-arch", choices=list_archs(), default="tfclip_tiny",
                   help="the untrained model (random weights)")
    f.add_argument("--out", default=osp.join("log", "video_f1"))
    f.add_argument("--videos-dir", default=None,
                   help="a set written by make_synthetic_videos (default: made in OUT/videos)")
    f.add_argument("--cameras", type=int, default=3)
    f.add_argument("--people", type=int, default=12)
    f.add_argument("--seconds", type=float, default=20.0)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--seq-len", type=int, default=8)
    f.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS),
                   help="the backends to run both models with (PyTorch first: the reference)")
    f.add_argument("--cache-dir", default=None, help="ONNX export cache (default: OUT/onnx)")
    return p


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _forward_speed(args: argparse.Namespace) -> Dict[str, Any]:
    with rng_scope(0):
        model = load_inference_model(args.arch, camera_num=0)
    h, w = model.cfg.image_size
    clips = torch.randn(args.clips, args.frames, 3, h, w, generator=torch.Generator().manual_seed(0))
    frames = args.clips * args.frames
    rows: Dict[str, Any] = {}
    with torch.inference_mode():
        reference = model(clips, None).float()
    for backend in args.backends:
        if backend == "pytorch":
            def run():
                with torch.inference_mode():
                    return model(clips, None).float()
        else:
            path = onnx_model(model, args.frames, args.cache_dir, int8=backend.endswith("int8"))
            forward = onnx_forward(path, args.threads)

            def run(forward=forward):
                return forward(clips, None).float()
        seconds = _median_seconds(run, args.repeats)
        feats = run()
        cosine = F.cosine_similarity(feats, reference, dim=1)
        rows[backend] = {"frames_per_s": frames / seconds, "seconds": seconds,
                         "max_abs_diff_to_pytorch": float((feats - reference).abs().max()),
                         "cosine_to_pytorch_min": float(cosine.min()),
                         "cosine_to_pytorch_mean": float(cosine.mean())}
        print(f"{args.arch} {backend:18s} {frames / seconds:8.2f} frames/s "
              f"(max |diff| to PyTorch {rows[backend]['max_abs_diff_to_pytorch']:.1e}, cosine "
              f"min {rows[backend]['cosine_to_pytorch_min']:.5f})", flush=True)
    return rows


def _pipeline_speed(args: argparse.Namespace) -> Dict[str, Any]:
    videos = _videos(osp.join(args.out, "videos"), cameras=2, people=4, seconds=6, seed=0)
    rows: Dict[str, Any] = {}
    feats = {}
    for backend in args.backends:
        result = run_video_reid(videos["videos"], videos["tracks"],
                                osp.join(args.out, backend), arch=args.arch,
                                gt=videos["gt"], backend=backend, seq_len=args.frames,
                                cache_dir=args.cache_dir, progress=False)
        feats[backend] = torch.from_numpy(np.stack([t.feature for t in result.tracks]))
        s = result.summary
        rows[backend] = {"video_frames_per_s": s["frames_per_s"],
                         "crops_per_s": s["embedding"]["crops_per_s"],
                         "crops": s["embedding"]["crops"], "seconds": s["seconds"],
                         "pairwise_f1": result.metrics["pairwise_f1"]}
        if "pytorch" in feats and backend != "pytorch":
            ref = feats["pytorch"]
            rows[backend]["max_abs_diff_to_pytorch"] = float((feats[backend] - ref).abs().max())
            rows[backend]["cosine_to_pytorch_min"] = float(
                F.cosine_similarity(feats[backend], ref, dim=1).min())
        print(f"pipeline {backend:18s} {s['frames_per_s']:8.2f} video frames/s, "
              f"{rows[backend]['crops_per_s']:8.2f} crops/s embedded", flush=True)
    return rows


def _videos(folder: str, **kw: Any) -> Dict[str, Any]:
    if not osp.isfile(osp.join(folder, VIDEO_MARKER)):
        made = make_synthetic_videos(folder, **kw)
        return {"videos": made.videos, "tracks": made.tracks, "gt": made.ground_truth}
    return _existing(folder)


def _existing(folder: str) -> Dict[str, Any]:
    videos = sorted(glob.glob(osp.join(folder, "*.mp4")))
    if not videos:
        raise FileNotFoundError(f"no .mp4 videos in {folder}")
    return {"videos": videos, "tracks": [osp.splitext(v)[0] + ".txt" for v in videos],
            "gt": osp.join(folder, "gt.csv")}


def _hindsight(result: Any, truth: Dict[Any, str], remove_bias: bool) -> Dict[str, Any]:
    """With the ground truth: the median distance of one person in two cameras and of two
    people of one camera that overlap in time, and the best pairwise F1 of any threshold."""
    tracks = result.tracks
    feats = np.stack([t.feature for t in tracks])
    if remove_bias:
        feats = remove_camera_bias(feats, [t.camera for t in tracks])
    dist = cosine_distances(feats)
    cannot = cannot_link([Span(t.camera, t.first, t.last) for t in tracks])
    person = np.array([truth.get(t.key, f"?{i}") for i, t in enumerate(tracks)])
    cams = np.array([t.camera for t in tracks])
    upper = np.triu(np.ones_like(cannot), k=1)
    same = (person[:, None] == person[None]) & (cams[:, None] != cams[None]) & upper
    best = (0.0, 0.0)
    for cut in np.quantile(dist[upper], np.linspace(0.0, 1.0, 201)):
        labels = link_tracks(dist, cannot, float(cut))
        f1 = pairwise_scores({t.key: int(g) for t, g in zip(tracks, labels)}, truth)
        best = max(best, (f1["pairwise_f1"], float(cut)))
    return {"median_same_person_two_cameras": float(np.median(dist[same])) if same.any() else None,
            "median_two_people_one_camera": float(np.median(dist[cannot & upper]))
            if (cannot & upper).any() else None,
            "best_f1_in_hindsight": best[0], "best_threshold_in_hindsight": best[1]}


def _streaming(result: Any) -> Dict[str, float]:
    """Speed of the streaming step (decode, crop, embed) of a run: model loading, the ONNX export
    and linking left out."""
    per = result.summary["videos"].values()
    frames = sum(v["frames_read"] for v in per)
    seconds = sum(v["seconds"] for v in per)
    return {"video_frames_per_s": frames / max(seconds, 1e-9), "streaming_s": seconds,
            "crops_per_s": result.summary["embedding"]["crops_per_s"]}


def _f1_run(args: argparse.Namespace, videos: Dict[str, Any], name: str, backend: str,
            truth: Dict[Any, str]) -> Tuple[Any, Dict[str, Any]]:
    kw = {"weights": args.weights} if name == "trained" else {"arch": args.baseline_arch}
    result = run_video_reid(videos["videos"], videos["tracks"],
                            osp.join(args.out, backend, name), gt=videos["gt"],
                            seq_len=args.seq_len, backend=backend, progress=False,
                            cache_dir=args.cache_dir or osp.join(args.out, "onnx"), **kw)
    row = {"model": args.weights if name == "trained" else
           f"{args.baseline_arch} (random weights)", **result.metrics, **_streaming(result),
           "threshold": result.threshold.value, "threshold_rule": result.threshold.rule,
           "identities": len(set(result.global_ids)), "tracks": len(result.tracks)}
    if backend == "pytorch":
        row.update(camera_bias_removed=_hindsight(result, truth, True),
                   camera_bias_kept=_hindsight(result, truth, False))
    return result, row


def _print_f1(backend: str, name: str, r: Dict[str, Any]) -> None:
    cosine = (f"; cosine to PyTorch float32 min {r['cosine_to_pytorch_min']:.4f} mean "
              f"{r['cosine_to_pytorch_mean']:.4f}" if "cosine_to_pytorch_min" in r else "")
    print(f"{backend:16s} {name:9s} pairwise F1 {r['pairwise_f1']:.3f} (precision "
          f"{r['pairwise_precision']:.3f}, recall {r['pairwise_recall']:.3f}; "
          f"{r['identities']} identities from {r['tracks']} tracks); "
          f"{r['video_frames_per_s']:.1f} video frames/s, {r['crops_per_s']:.1f} crops/s"
          f"{cosine}", flush=True)
    for how in ("camera_bias_removed", "camera_bias_kept"):
        if how in r:
            h = r[how]
            print(f"  {how.replace('_', ' ')}: best F1 in hindsight {h['best_f1_in_hindsight']:.3f}"
                  f" (threshold {h['best_threshold_in_hindsight']:.3f}); median distance of one "
                  f"person in two cameras {h['median_same_person_two_cameras']:.3f}, of two "
                  f"people overlapping in one camera {h['median_two_people_one_camera']:.3f}")


def _f1(args: argparse.Namespace) -> Dict[str, Any]:
    if args.videos_dir:
        videos = _existing(args.videos_dir)
    else:
        videos = _videos(osp.join(args.out, "videos"), cameras=args.cameras, people=args.people,
                         seconds=args.seconds, seed=args.seed)
    truth = read_ground_truth(videos["gt"])
    backends = [b for b in BACKENDS if b in args.backends]  # PyTorch first: the reference
    runs: Dict[str, Dict[str, Any]] = {b: {} for b in backends}
    reference: Dict[str, torch.Tensor] = {}
    for backend in backends:
        for name in ("trained", "untrained"):
            result, row = _f1_run(args, videos, name, backend, truth)
            feats = torch.from_numpy(np.stack([t.feature for t in result.tracks])).float()
            if backend == "pytorch":
                reference[name] = feats
            elif name in reference:
                cosine = F.cosine_similarity(feats, reference[name], dim=1)
                row.update(cosine_to_pytorch_min=float(cosine.min()),
                           cosine_to_pytorch_mean=float(cosine.mean()),
                           max_abs_diff_to_pytorch=float((feats - reference[name]).abs().max()))
            runs[backend][name] = row
            _print_f1(backend, name, row)
    gains = {b: r["trained"]["pairwise_f1"] - r["untrained"]["pairwise_f1"]
             for b, r in runs.items()}
    for backend, gain in gains.items():
        print(f"F1 gain of the trained model ({backend}): {gain:+.3f}")
    return {"videos": videos["videos"], "runs": runs, "f1_gain": gains}


def main(argv: List[str] | None = None) -> int:
    """Runs the benchmark; the last line printed is its JSON."""
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with console_logging():
        if args.mode == "speed":
            out = {"forward": _forward_speed(args)}
            if args.pipeline:
                out["pipeline"] = _pipeline_speed(args)
            out.update(arch=args.arch, clips=args.clips, frames=args.frames)
        else:
            out = _f1(args)
    out.update(threads=torch.get_num_threads(), cpus=os.cpu_count(),
               load_average_before=[round(v, 2) for v in load_before],
               load_average_after=[round(v, 2) for v in os.getloadavg()])
    print(f"load average before {out['load_average_before']}, after "
          f"{out['load_average_after']} ({out['cpus']} CPUs, {out['threads']} threads)")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
