#!/usr/bin/env python
"""Clips/s and peak memory of one TF-CLIP training step (forward + all losses + backward + Adam).

Random frames and PK-structured labels; the CLIP-Memory is filled with random rows so SSP/V2M run.
Prints one row per configuration and, with several, ratios to the first.

Examples:
    python tools/bench_train_step.py --arch tfclip_vitb16 --batch 16 --frames 8 --device cuda \
        --precision bf16 --stride 16 12 --checkpointing off on
    python tools/bench_train_step.py --arch tfclip_vitb16 --batch 2 --frames 8 --device cpu \
        --checkpointing off on --steps 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import os.path as osp
import resource
import statistics
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402

from tfclip_torchreid import cli  # noqa: E402
from tfclip_torchreid.losses import TFCLIPLoss  # noqa: E402
from tfclip_torchreid.models.factory import build_tfclip  # noqa: E402
from tfclip_torchreid.optim import build_tfclip_optimizer  # noqa: E402


def bench_one(args: argparse.Namespace, stride: int, precision: str, checkpointing: bool) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_tfclip(
        args.arch, num_classes=args.num_classes, camera_num=6, pretrained=None, stride=stride,
        grad_checkpointing=checkpointing,
    ).to(device)
    model.memory.set(torch.randn(args.num_classes, model.memory.bank.shape[1], device=device))
    model.train()
    optimizer = build_tfclip_optimizer(model)
    criterion = TFCLIPLoss(num_classes=args.num_classes)
    train_model = torch.compile(model) if args.compile else model
    h, w = model.cfg.image_size
    k = 4 if args.batch >= 8 and args.batch % 4 == 0 else (2 if args.batch % 2 == 0 else 1)
    pids = torch.arange(args.batch // k, device=device).repeat_interleave(k)
    cams = torch.randint(0, 6, (args.batch,), device=device)
    x = torch.randn(args.batch, args.frames, 3, h, w, device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    def step() -> None:
        ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else torch.autocast(
            device.type, enabled=False
        )
        with ctx:
            out = train_model(x, cam_label=cams)
        loss, _ = criterion(out, pids)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
        peak_kind = "GPU max allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        peak_kind = "process peak RSS"
    return {
        "arch": args.arch, "device": str(device), "batch": args.batch, "frames": args.frames,
        "stride": stride, "tokens": model.backbone.num_tokens if hasattr(model.backbone, "num_tokens") else None,
        "precision": precision, "checkpointing": checkpointing, "compile": args.compile,
        "step_s": med, "clips_per_s": args.batch / med, "frames_per_s": args.batch * args.frames / med,
        "peak_GiB": peak, "peak_kind": peak_kind,
    }


def _run_isolated(argv: list[str], stride: int, prec: str, ck: str) -> dict:
    """Run one configuration in a fresh process so that its peak RSS is its own."""
    import subprocess

    drop = {"--stride", "--precision", "--checkpointing"}
    keep, skip = [], False
    for a in argv:
        if a in drop:
            skip = True
            continue
        if skip and not a.startswith("--"):
            continue
        skip = False
        keep.append(a)
    cmd = [sys.executable, osp.abspath(__file__), *keep, "--single", "--stride", str(stride),
           "--precision", prec, "--checkpointing", ck]
    out = subprocess.run(cmd, capture_output=True, text=True)
    rows = [line[4:] for line in out.stdout.splitlines() if line.startswith("ROW ")]
    if out.returncode != 0 or not rows:
        raise RuntimeError(f"benchmark subprocess failed:\n{out.stderr[-2000:]}")
    return json.loads(rows[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="tfclip_vitb16")
    p.add_argument("--batch", type=int, default=16, help="clips per step (P x K)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--num-classes", type=int, default=625)
    p.add_argument("--stride", type=int, nargs="+", default=[16])
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"])
    p.add_argument("--checkpointing", nargs="+", default=["off"], choices=["off", "on"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--json", action="store_true", help="print the rows as JSON too")
    p.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.single:  # one configuration in this process (CPU peak RSS is per process)
        print("ROW " + json.dumps(bench_one(args, args.stride[0], args.precision[0], args.checkpointing[0] == "on")))
        return []
    rows = []
    print(f"{'stride':>6} {'prec':>5} {'ckpt':>5} {'step s':>8} {'clips/s':>8} {'frames/s':>9} {'peak GiB':>9}")
    for stride, prec, ck in itertools.product(args.stride, args.precision, args.checkpointing):
        try:
            if args.device == "cpu":
                r = _run_isolated(argv if argv is not None else sys.argv[1:], stride, prec, ck)
            else:
                r = bench_one(args, stride, prec, ck == "on")
        except torch.OutOfMemoryError as err:
            print(f"{stride:>6} {prec:>5} {ck:>5}  out of memory: {str(err).splitlines()[0]}")
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
            continue
        rows.append(r)
        print(
            f"{stride:>6} {prec:>5} {ck:>5} {r['step_s']:>8.3f} {r['clips_per_s']:>8.2f} "
            f"{r['frames_per_s']:>9.1f} {r['peak_GiB']:>9.2f}"
        )
    if rows:
        print(f"(device {rows[0]['device']}, batch {args.batch} x {args.frames} frames, peak = {rows[0]['peak_kind']})")
    if len(rows) > 1:
        base = rows[0]
        for r in rows[1:]:
            print(
                f"vs first: stride {r['stride']} {r['precision']} ckpt={r['checkpointing']}: "
                f"speed x{r['clips_per_s'] / base['clips_per_s']:.2f}, memory x{r['peak_GiB'] / base['peak_GiB']:.2f}"
            )
    if args.json:
        print(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    sys.exit(cli.run(main))
