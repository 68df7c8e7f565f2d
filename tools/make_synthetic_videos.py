"""Write synthetic camera videos of walking pedestrians, their MOTChallenge track files and gt.csv.

K cameras see P people (the synthetic ReID datasets' pedestrians, new identities) walking through
their views: most people through several cameras, some twice through one; people cross and
occlude each other. Output: camK.mp4 (H.264 via PyAV: pip install "tfclip-torchreid[video]"),
camK.txt (MOTChallenge tracks, 1-based frames) and gt.csv (camera,track_id,person); the same seed
gives the same files. Frame rates and sizes may differ per camera (one value per camera).

Example:
    python tools/make_synthetic_videos.py --out data/videos --cameras 3 --people 12
    python tools/make_synthetic_videos.py --out v --cameras 2 --people 4 --seconds 5 \\
        --fps 10 6 --size 270x480 240x320
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Tuple

from tfclip_torchreid import cli
from tfclip_torchreid.testing import make_synthetic_videos
from tfclip_torchreid.utils.logger import console_logging


def _size(text: str) -> Tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size {text!r} is not HEIGHTxWIDTH (e.g. 270x480)") from None
    return h, w


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (new or empty)")
    p.add_argument("--cameras", type=int, default=3, help="cameras (videos)")
    p.add_argument("--people", type=int, default=12, help="people walking through them")
    p.add_argument("--seconds", type=float, default=20.0, help="length of every video")
    p.add_argument("--seed", type=int, default=0, help="generation seed")
    p.add_argument("--fps", type=float, nargs="+", default=[10.0],
                   help="frame rate: one for all cameras or one per camera")
    p.add_argument("--size", type=_size, nargs="+", default=[(270, 480)],
                   help="frame size HEIGHTxWIDTH (even numbers): one for all or one per camera")
    p.add_argument("--overwrite", action="store_true",
                   help="write again into a folder this tool wrote before")
    return p


def main(argv: List[str] | None = None) -> int:
    """Runs the tool with the package's log lines shown on stdout."""
    args = build_parser().parse_args(argv)
    with console_logging():
        make_synthetic_videos(args.out, args.cameras, args.people, args.seconds, args.seed,
                              fps=args.fps, size=args.size, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
