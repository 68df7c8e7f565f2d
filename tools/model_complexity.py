#!/usr/bin/env python
"""Parameters per component and analytic MACs of a TF-CLIP / CLIP-ReID model (no weights needed).

The model is built on the meta device, so ViT-B/16 costs nothing. ``paper_convention`` is how the
paper counted (``docs/complexity.md``): parameters without the SIE table and without TMD's
BN/classifier heads, the text tower without its token table plus the per-identity prompts for
CLIP-ReID's text bank; MACs per 256x128 frame of the ViT blocks (+ the text transformer on one
prompt, + TMD per frame, + SSP and the fusions per clip / T). The stem (patch conv) and the
all-token projection are reported separately.

Examples:
    python tools/model_complexity.py --arch tfclip_vitb16 --num-classes 625 --camera-num 6
    python tools/model_complexity.py --arch clipreid_vitb16 --json          # paper Table 2, B1
    python tools/model_complexity.py --arch tfclip_vitb16 --temporal tap --no-memory --json
    python tools/model_complexity.py --arch tfclip_vitb16 --ssp-form paper --no-tmd-diffusion
"""

from __future__ import annotations

import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from tfclip_torchreid import cli  # noqa: E402
from tfclip_torchreid.models.complexity import PARAM_KEYS, model_complexity  # noqa: E402
from tfclip_torchreid.models.factory import list_archs  # noqa: E402
from tfclip_torchreid.models.temporal import TEMPORAL_CHOICES  # noqa: E402

MAC_KEYS = ("backbone_blocks", "backbone_stem", "backbone_proj_all_tokens", "backbone_total",
            "text_per_prompt", "tmd_per_frame")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="tfclip_vitb16", choices=list_archs())
    p.add_argument("--num-classes", type=int, default=625, help="training identities (MARS 625)")
    p.add_argument("--camera-num", type=int, default=6, help="training cameras (MARS 6)")
    p.add_argument("--frames", type=int, default=8, help="T, for the per-frame share of clips")
    p.add_argument("--temporal", choices=TEMPORAL_CHOICES, default=None)
    p.add_argument("--memory-source", choices=("clip", "text"), default=None,
                   help="identity bank: CLIP-Memory (TF-CLIP) or learned text prompts (CLIP-ReID)")
    p.add_argument("--ssp-form", choices=("released", "paper"), default=None)
    p.add_argument("--ssp-layers", type=int, default=None)
    p.add_argument("--no-memory", action="store_true", help="no identity bank / SSP / V2M")
    p.add_argument("--no-ssp", action="store_true", help="identity bank without SSP")
    p.add_argument("--no-tmd-diffusion", action="store_true", help="TMD without MD (TMC only)")
    p.add_argument("--no-sie", action="store_true", help="no camera embedding")
    p.add_argument("--stride", type=int, default=None, help="patch stride (12: overlapping)")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    switches = {
        "temporal": args.temporal,
        "memory_source": args.memory_source,
        "ssp_form": args.ssp_form,
        "ssp_layers": args.ssp_layers,
        "stride": args.stride,
        "use_memory": False if args.no_memory else None,
        "use_ssp": False if args.no_ssp else None,
        "tmd_diffusion": False if args.no_tmd_diffusion else None,
        "use_sie": False if args.no_sie else None,
    }
    if (args.height is None) != (args.width is None):
        raise SystemExit("--height and --width go together")
    if args.height is not None:
        switches["image_size"] = (args.height, args.width)
    report = model_complexity(args.arch, num_classes=args.num_classes, camera_num=args.camera_num,
                              num_frames=args.frames, **switches)
    if args.json:
        print(json.dumps(report, indent=2))
        return report
    p, m = report["params"], report["macs"]
    print(f"{args.arch}  {report['switches']}")
    print("Parameters")
    for key in PARAM_KEYS:
        print(f"  {key:<17} {p[key]:>13,}  ({p[key] / 1e6:.2f} M)")
    h, w = report["switches"]["image_size"]
    print(f"MACs per {h}x{w} frame ({m['tokens']} tokens)")
    for key in MAC_KEYS:
        print(f"  {key:<25} {m[key] / 1e9:8.3f} G")
    print(f"  {'fusion_per_clip':<25} {m['fusion_per_clip'] / 1e9:8.3f} G  (T={args.frames})")
    print(f"  {'ssp_per_sequence':<25} {m['ssp_per_sequence'] / 1e9:8.3f} G"
          f"  (authors' unshared computation, Y={args.num_classes})")
    print(f"  {'paper_convention':<25} {m['paper_convention'] / 1e9:8.3f} G  (per frame: blocks "
          f"+ text + TMD + (SSP + fusion) / T)")
    return report


if __name__ == "__main__":
    sys.exit(cli.run(main))
