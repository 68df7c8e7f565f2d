"""Link the tracks of several camera videos into global identities with a TF-CLIP model.

Each video comes with the MOTChallenge track file of a tracker (frame,id,x,y,w,h,conf,-1,-1,-1;
1-based frames), paired in the order given; cameras are named after the video files (cam1.mp4 ->
cam1). Frames are streamed (PyAV: pip install "tfclip-torchreid[video]"), each track's boxes
cropped (clipped to the frame; empty boxes, boxes outside the frame or past the video's end are
counted and skipped) and embedded as a tracklet with the dense test protocol and the weights' own
preprocessing, in PyTorch or ONNX Runtime (--backend; the export is checked against PyTorch and
cached). Tracks are linked across cameras by average-linkage clustering on cosine distance (each
camera's mean feature removed first), where two tracks of one camera that overlap in time are
never one person, cut at a threshold chosen from the data (the 10 % quantile of the distances
between those overlapping tracks -- known to be different people -- whose boxes never touch)
unless --threshold is given.

Writes OUT/identities.csv (camera,track_id,global_id,frames), OUT/report.html (one row per
identity with crops from each camera; self-contained, opens from disk), OUT/summary.json and, with
--gt gt.csv (camera,track_id,person), OUT/metrics.json: pairwise precision / recall / F1 over the
cross-camera track pairs. --screenshot PNG draws the report with headless Chromium.

Examples:
    python tools/make_synthetic_videos.py --out data/videos --cameras 3 --people 12
    python tools/video_reid.py --videos data/videos/cam*.mp4 --tracks data/videos/cam*.txt \\
        --weights log/demo/checkpoints/latest.pth --out log/video --gt data/videos/gt.csv
    python tools/video_reid.py --videos a.mp4 b.mp4 --tracks a.txt b.txt --arch tfclip_tiny \\
        --out log/video_random --backend onnxruntime
"""

from __future__ import annotations

import argparse
import sys
from typing import List

import torch

from tfclip_torchreid import cli
from tfclip_torchreid.models import list_archs
from tfclip_torchreid.utils.logger import console_logging
from tfclip_torchreid.video import BACKENDS, run_video_reid, screenshot
from tfclip_torchreid.video.linking import NEGATIVE_QUANTILE


def _size(text: str) -> tuple:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"window size {text!r} is not WIDTHxHEIGHT") from None
    return w, h


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--videos", nargs="+", required=True, help="the camera videos")
    p.add_argument("--tracks", nargs="+", required=True,
                   help="one MOTChallenge track file per video, in the same order")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="checkpoint written by this package or zoo:NAME")
    src.add_argument("--arch", choices=list_archs(), help="random weights of this architecture")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--gt", help="gt.csv (camera,track_id,person): writes metrics.json")
    p.add_argument("--backend", choices=BACKENDS, default="pytorch",
                   help="where features are computed (onnxruntime: exported once and cached)")
    p.add_argument("--threshold", type=float, default=None,
                   help="linking threshold on cosine distance (default: chosen from the data)")
    p.add_argument("--quantile", type=float, default=NEGATIVE_QUANTILE,
                   help="quantile of the overlapping tracks' distances used as the threshold")
    p.add_argument("--keep-camera-bias", action="store_true",
                   help="link the features as they are (default: each camera's mean removed)")
    p.add_argument("--seq-len", type=int, default=8, help="frames per clip")
    p.add_argument("--batch-size", type=int, default=8, help="tracklets per loader batch")
    p.add_argument("--max-clips", type=int, default=32, help="clips per forward pass")
    p.add_argument("--part-frames", type=int, default=64,
                   help="crops held per track before they are embedded (bounded memory)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="device of the pytorch backend")
    p.add_argument("--cache-dir", default=None,
                   help="where ONNX exports are cached (default $TFCLIP_CACHE/onnx, "
                        "~/.cache/tfclip_torchreid/onnx)")
    p.add_argument("--screenshot", default=None, help="also draw report.html into this PNG")
    p.add_argument("--window-size", type=_size, default=(1280, 900),
                   help="browser window of --screenshot, WIDTHxHEIGHT")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: List[str] | None = None) -> int:
    """Runs the tool with the package's log lines shown on stdout."""
    args = build_parser().parse_args(argv)
    with console_logging():
        result = run_video_reid(
            args.videos, args.tracks, args.out, weights=args.weights, arch=args.arch,
            gt=args.gt, backend=args.backend, seq_len=args.seq_len, threshold=args.threshold,
            quantile=args.quantile, device=args.device, batch_size=args.batch_size,
            max_clips=args.max_clips, part_frames=args.part_frames, cache_dir=args.cache_dir,
            progress=not args.quiet, keep_camera_bias=args.keep_camera_bias)
    if args.screenshot:
        print(f"=> {screenshot(result.files['report'], args.screenshot, args.window_size)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
