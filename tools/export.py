"""Export a TF-CLIP model's test forward to ONNX or TorchScript and check it against PyTorch.

The exported model takes clips ``(B, T, 3, H, W)`` (normalised frames; B dynamic, T fixed at
``--frames`` unless ``--dynamic-frames``) plus camera ids ``(B,)`` int64 when the model uses
the SIE camera embedding, and returns the test feature. After exporting, the file is run
(onnxruntime on the CPU for ONNX, ``torch.jit.load`` for TorchScript) next to PyTorch on random
clips of another batch size; the largest absolute difference and the file size are printed, and
the exit status is 1 when the difference exceeds ``--atol``.

Without ``--out`` the files go beside the weights file (``latest.pth`` -> ``tfclip_vitb16.onnx``
in the same folder), or into ``log/export/`` for random or zoo weights; the folder is checked
for writing before anything is loaded. Errors end in one line (``--debug``: the traceback).

Examples:
    python tools/export.py --weights log/mars/checkpoints/latest.pth --format onnx
    python tools/export.py --arch tfclip_vitb16 --format onnx torchscript --frames 8
    python tools/export.py --arch tfclip_tiny --format onnx --dynamic-frames --out tiny.onnx
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys
import time

import torch

from tfclip_torchreid import cli
from tfclip_torchreid.export import (
    FORMATS,
    check_export_folder,
    default_export_dir,
    default_export_path,
    export_model,
    exported_files,
    load_inference_model,
    uses_cameras,
    verify_export,
)
from tfclip_torchreid.models import list_archs
from tfclip_torchreid.utils.logger import console_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--arch", choices=list_archs(), default=None,
                   help="architecture (required without --weights; checked against them)")
    p.add_argument("--weights", default=None,
                   help="checkpoint (ours: self-describing), zoo:NAME, or other weights with "
                        "--arch (cameras and identities read from their tensors); none = random")
    p.add_argument("--format", nargs="+", choices=FORMATS, default=["onnx"],
                   help="one or more output formats")
    p.add_argument("--out", default=None,
                   help="output file (one format) or folder; default <arch>.onnx / <arch>.pt "
                        "beside the weights file, or in log/export/ (random or zoo weights)")
    p.add_argument("--frames", type=int, default=8, help="frames per clip (T)")
    p.add_argument("--dynamic-frames", action="store_true",
                   help="make the frame axis dynamic too (ONNX: torch.export exporter only)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: torch's)")
    p.add_argument("--onnx-exporter", choices=("dynamo", "legacy"), default="dynamo",
                   help="torch.export-based exporter, or the deprecated TorchScript-based one "
                        "(faster, fixed frames only)")
    p.add_argument("--camera-num", type=int, default=None,
                   help="SIE cameras of a random model (no --weights; default 6, 0 = no SIE); "
                        "weights say their own")
    p.add_argument("--batch", type=int, default=3, help="clips in the verification batch")
    p.add_argument("--atol", type=float, default=1e-4, help="largest accepted difference")
    p.add_argument("--no-verify", action="store_true", help="skip the check against PyTorch")
    return p


def _output_file(args: argparse.Namespace) -> str | None:
    """``--out`` when it names the one output file, else None."""
    out = args.out
    if out is not None and len(args.format) == 1 and not out.endswith(("/", osp.sep)) \
            and not osp.isdir(out):
        return out
    return None


def _output_folder(args: argparse.Namespace) -> str:
    """The folder the exports go to (known before the model is loaded)."""
    out = _output_file(args)
    if out is not None:
        return osp.dirname(out) or "."
    return args.out if args.out is not None else default_export_dir(args.weights)


def _output_path(args: argparse.Namespace, arch: str, fmt: str) -> str:
    return _output_file(args) or osp.join(_output_folder(args), default_export_path(arch, fmt))


def _megabytes(path: str) -> float:
    return sum(osp.getsize(f) for f in exported_files(path)) / 2**20


def main(argv: list[str] | None = None) -> int:
    """Runs the tool with the package's log lines shown on stdout."""
    with console_logging():
        return _run(argv)


def _run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.arch is None and args.weights is None:
        print("error: give --arch (random weights) or --weights (a checkpoint)", file=sys.stderr)
        return 2
    check_export_folder(_output_folder(args))
    torch.manual_seed(0)
    model = load_inference_model(args.arch, args.weights, camera_num=args.camera_num)
    if args.weights is not None and args.camera_num not in (None, model.cfg.camera_num):
        print(f"note: --camera-num {args.camera_num} is not used: the weights hold "
              f"{model.cfg.camera_num} SIE cameras", file=sys.stderr)
    arch = model.cfg.arch
    inputs = "clips (B, T, 3, H, W)" + (" + cam_ids (B,) int64" if uses_cameras(model) else "")
    print(f"=> {arch} ({'random weights' if args.weights is None else args.weights}): "
          f"{inputs} -> feature (B, {model.feature_dim}); H x W = "
          f"{model.cfg.image_size[0]} x {model.cfg.image_size[1]}")
    status = 0
    for fmt in args.format:
        path = _output_path(args, arch, fmt)
        dynamo = args.onnx_exporter == "dynamo"
        start = time.time()
        export_model(model, path, fmt, frames=args.frames, dynamic_frames=args.dynamic_frames,
                     opset=args.opset, dynamo=dynamo)
        took = time.time() - start
        how = ("torch.jit.trace" if fmt == "torchscript"
               else f"{'torch.export' if dynamo else 'TorchScript-based'} ONNX exporter")
        frames = "dynamic" if args.dynamic_frames else f"{args.frames} (fixed)"
        print(f"=> {fmt}: {path} ({_megabytes(path):.1f} MiB) via {how} in {took:.1f} s; "
              f"batch dynamic, frames {frames}")
        if args.no_verify:
            continue
        start = time.time()
        diff = verify_export(model, path, fmt, frames=args.frames, batch=args.batch,
                             dynamic_frames=args.dynamic_frames)
        ok = diff <= args.atol
        print(f"   max |{fmt} - PyTorch| = {diff:.3g} on {args.batch} random clips "
              f"({time.time() - start:.1f} s): {'OK' if ok else 'FAILED'} (atol {args.atol:g})")
        status = status or (0 if ok else 1)
    return status


if __name__ == "__main__":
    sys.exit(cli.run(main))
