"""Write a small procedurally generated ReID dataset in the real on-disk layout of a benchmark.

The result is read by torchreid's own ``Mars`` / ``iLIDSVID`` / ``Market1501`` loaders and by this
package's ``LSVID`` loader, e.g. for a smoke run of the whole pipeline without the real data
(see ``tfclip_torchreid/testing/`` for what the images and identities look like).

Example:
    python tools/make_synthetic_dataset.py --format mars --root reid-data
    python tools/make_synthetic_dataset.py --format ilidsvid --root reid-data --num-ids 40
    python tools/make_synthetic_dataset.py --format lsvid --root reid-data --layout info \\
        --height 256 --width 128
    python tools/make_synthetic_dataset.py --format market1501 --root reid-data
"""

from __future__ import annotations

import argparse
import sys

from tfclip_torchreid import cli
from tfclip_torchreid.testing import FORMATS, make_synthetic_dataset
from tfclip_torchreid.utils.logger import console_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--format", required=True, choices=FORMATS, help="benchmark layout to write")
    p.add_argument("--root", required=True, help="data root (the dataset folder goes inside)")
    p.add_argument("--seed", type=int, default=0, help="generation seed")
    p.add_argument("--overwrite", action="store_true",
                   help="regenerate even if a complete synthetic dataset exists")
    p.add_argument("--quiet", action="store_true", help="no summary")
    g = p.add_argument_group("sizes (unset = the format's default)")
    g.add_argument("--height", type=int, help="image height (default 128)")
    g.add_argument("--width", type=int, help="image width (default 64)")
    g.add_argument("--min-len", type=int,
                   help="shortest tracklet (frames); market1501: fewest images per id and camera")
    g.add_argument("--max-len", type=int,
                   help="longest tracklet (frames); market1501: most images per id and camera")
    g.add_argument("--train-min-len", type=int, help="mars/lsvid: shortest training tracklet")
    g.add_argument("--train-max-len", type=int, help="mars/lsvid: longest training tracklet")
    g.add_argument("--num-ids", type=int, help="ilidsvid: identities (even; half train, half test)")
    g.add_argument("--num-splits", type=int, help="ilidsvid: train/test splits")
    g.add_argument("--num-train-ids", type=int, help="mars/lsvid/market1501: training identities")
    g.add_argument("--num-test-ids", type=int,
                   help="mars/lsvid/market1501: test identities (with queries)")
    g.add_argument("--num-gallery-ids", type=int, help="lsvid: gallery-only identities")
    g.add_argument("--num-cams", type=int, help="mars/market1501 (<= 6) / lsvid: cameras")
    g.add_argument("--num-distractors", type=int,
                   help="mars: distractor tracklets / market1501: images (pid 0)")
    g.add_argument("--num-junk", type=int,
                   help="mars/lsvid: junk tracklets / market1501: images (pid -1)")
    g.add_argument("--layout", choices=("flat", "info"),
                   help="lsvid: public archive layout (flat) or the authors' info/ layout")
    return p


_SIZE_KEYS = (
    "height", "width", "min_len", "max_len", "train_min_len", "train_max_len", "num_ids",
    "num_splits", "num_train_ids", "num_test_ids", "num_gallery_ids", "num_cams",
    "num_distractors", "num_junk", "layout",
)


def main(argv: list[str] | None = None) -> int:
    """Runs the tool with the package's log lines shown on stdout."""
    with console_logging():
        return _run(argv)


def _run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = {k: getattr(args, k) for k in _SIZE_KEYS if getattr(args, k) is not None}
    try:
        make_synthetic_dataset(args.format, args.root, seed=args.seed, overwrite=args.overwrite,
                               verbose=not args.quiet, **sizes)
    except (ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
