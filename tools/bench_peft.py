#!/usr/bin/env python
"""Parameter-efficient TF-CLIP side by side with full fine-tuning, in one run (issue 19).

For each ``model.peft`` mode and stride, in a fresh process each (peak memory is per process):
trainable parameters, the optimiser state's bytes after a step (Adam: two moments per trainable
tensor), the size of the epoch checkpoint the engine writes (header, state dict, optimiser,
scheduler; a PEFT model's without its frozen base, which it names: the base is taken to be
OpenAI's CLIP, as in a real run), the median time of a training step (forward, every loss,
backward, Adam) and the process's peak resident memory. The model is the full-size one with
random weights (no download); frames are random, labels P x K, the identity bank random rows.

Peak memory is measured twice per configuration: with glibc's default allocator (``peak RSS``,
what ``tools/bench_train_step.py`` reports) and with ``MALLOC_MMAP_THRESHOLD_`` fixed (``peak
live``): by default glibc raises its mmap threshold as large tensors are freed and then keeps
freed memory of up to 32 MiB tensors in its heap, so the peak RSS also depends on the order of
allocations; with the threshold fixed every large tensor is returned when freed, and the peak
follows the memory actually in use. The load average of the machine is recorded with each row.

Examples:
    python tools/bench_peft.py --arch tfclip_vitb16 --batch 4 --frames 4 --stride 16 12 \
        --modes none lora prompt adapter lora:qkv --steps 2 --json
    python tools/bench_peft.py --arch tfclip_tiny --batch 4 --frames 2 --stride 16 --steps 1
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402

from tfclip_torchreid import cli  # noqa: E402
from tfclip_torchreid.losses import TFCLIPLoss  # noqa: E402
from tfclip_torchreid.models.factory import build_tfclip  # noqa: E402
from tfclip_torchreid.models.peft import checkpoint_entries, set_base  # noqa: E402
from tfclip_torchreid.optim import WarmupMultiStepLR, build_tfclip_optimizer  # noqa: E402
from tfclip_torchreid.utils.checkpoint import checkpoint_header, save_checkpoint  # noqa: E402

#: glibc's mmap threshold for the "peak live" runs (bytes; a fixed value turns off its dynamic
#: threshold, so freed large tensors go back to the system)
LIVE_MMAP_THRESHOLD = 131072


def parse_mode(spec: str) -> dict:
    """``none``, ``lora``, ``prompt``, ``adapter``, or ``lora:qkv`` (LoRA on those modules).

    Example:
        >>> parse_mode("lora:qkv,mlp")
        {'peft': 'lora', 'lora_modules': ('qkv', 'mlp')}
    """
    mode, _, modules = spec.partition(":")
    options = {"peft": mode}
    if modules:
        options["lora_modules"] = tuple(modules.split(","))
    return options


def _tensor_bytes(obj) -> int:
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def bench_one(args: argparse.Namespace, spec: str, stride: int) -> dict:
    """One configuration in this process."""
    load_before = os.getloadavg()[0]
    torch.manual_seed(0)
    options = parse_mode(spec)
    model = build_tfclip(args.arch, num_classes=args.num_classes, camera_num=6,
                         pretrained=None, stride=stride, **options)
    if model.cfg.peft != "none" and model.cfg.openai_model:
        # as built from OpenAI's weights: the checkpoint names its base instead of holding it
        set_base(model, "clip", "openai", openai_model=model.cfg.openai_model)
    model.memory.set(torch.randn(args.num_classes, model.memory.bank.shape[1]))
    model.train()
    optimizer = build_tfclip_optimizer(model)
    scheduler = WarmupMultiStepLR(optimizer)
    criterion = TFCLIPLoss(num_classes=args.num_classes)
    h, w = model.cfg.image_size
    pids = torch.arange(args.batch // 2).repeat_interleave(2)  # P x 2 (main checks the batch)
    cams = torch.randint(0, 6, (args.batch,))
    x = torch.randn(args.batch, args.frames, 3, h, w)

    def step() -> None:
        out = model(x, cam_label=cams, full_output=True)
        loss, _ = criterion(out, pids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, "latest.pth")
        save_checkpoint({**checkpoint_header(model), **checkpoint_entries(model), "epoch": 1,
                         "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict()}, path)
        ckpt = osp.getsize(path)
    return {
        "arch": args.arch, "mode": spec, "stride": stride, "batch": args.batch,
        "frames": args.frames, "tokens": model.backbone.num_tokens,
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total": sum(p.numel() for p in model.parameters()),
        "optimizer_bytes": _tensor_bytes(optimizer.state_dict()["state"]),
        "checkpoint_bytes": ckpt, "step_s": statistics.median(times) if times else None,
        "peak_bytes": peak, "load": [load_before, os.getloadavg()[0]],
        "threads": torch.get_num_threads(),
        "allocator": "fixed mmap threshold" if os.environ.get("MALLOC_MMAP_THRESHOLD_")
        else "glibc default",
    }


def run_isolated(args: argparse.Namespace, spec: str, stride: int, live: bool) -> dict:
    """:func:`bench_one` in a fresh process (``live``: with the fixed mmap threshold)."""
    cmd = [sys.executable, osp.abspath(__file__), "--single", "--arch", args.arch,
           "--batch", str(args.batch), "--frames", str(args.frames),
           "--num-classes", str(args.num_classes), "--warmup", str(args.warmup),
           "--steps", str(1 if live else args.steps), "--stride", str(stride),
           "--modes", spec]
    env = dict(os.environ)
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if live:
        env["MALLOC_MMAP_THRESHOLD_"] = str(LIVE_MMAP_THRESHOLD)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    rows = [line[4:] for line in out.stdout.splitlines() if line.startswith("ROW ")]
    if out.returncode != 0 or not rows:
        raise RuntimeError(f"benchmark of {spec} at stride {stride} failed:\n"
                           f"{out.stderr[-3000:]}")
    return json.loads(rows[-1])


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def table(rows: list) -> str:
    """Markdown rows, with ratios to full fine-tuning (``none``) at the same stride."""
    lines = ["| stride | mode | trainable | optimiser state | checkpoint | step | peak RSS | "
             "peak live | load |", "|---|---|---|---|---|---|---|---|---|"]
    full = {r["stride"]: r for r in rows if r["mode"] == "none"}
    for r in rows:
        ref = full.get(r["stride"])

        def ratio(key: str, row: dict = r, ref: dict | None = ref) -> str:
            if ref is None or row["mode"] == "none" or not ref.get(key):
                return ""
            return f" ({row[key] / ref[key]:.2f}x)"

        lines.append(
            f"| {r['stride']} | {r['mode']} | {r['trainable'] / 1e6:.2f} M{ratio('trainable')} | "
            f"{_mib(r['optimizer_bytes'])}{ratio('optimizer_bytes')} | "
            f"{_mib(r['checkpoint_bytes'])}{ratio('checkpoint_bytes')} | "
            f"{r['step_s']:.1f} s{ratio('step_s')} | {_gib(r['peak_bytes'])}{ratio('peak_bytes')} | "
            + (f"{_gib(r['live_bytes'])}{ratio('live_bytes')}" if r.get("live_bytes") else "-")
            + f" | {max(r['load']):.1f} |")
    return "\n".join(lines)


def main(argv: list | None = None) -> list:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="tfclip_vitb16")
    p.add_argument("--batch", type=int, default=4, help="clips per step (P x 2, even, >= 4)")
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--num-classes", type=int, default=625)
    p.add_argument("--stride", type=int, nargs="+", default=[16, 12])
    p.add_argument("--modes", nargs="+", default=["none", "lora", "prompt", "adapter"],
                   help="peft modes; lora:qkv = LoRA on those modules only")
    p.add_argument("--steps", type=int, default=2, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-live", action="store_true", help="skip the fixed-threshold runs")
    p.add_argument("--json", action="store_true", help="print the rows as JSON too")
    p.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.batch < 4 or args.batch % 2:
        p.error(f"--batch must be even and >= 4 (P x 2 clips: the triplet loss needs 2 "
                f"identities with 2 clips each), got {args.batch}")
    for spec in args.modes:
        parse_mode(spec)  # a bad mode fails before any run
    if args.single:
        print("ROW " + json.dumps(bench_one(args, args.modes[0], args.stride[0])), flush=True)
        return []
    rows = []
    for stride in args.stride:
        for spec in args.modes:
            row = run_isolated(args, spec, stride, live=False)
            if not args.no_live:
                live = run_isolated(args, spec, stride, live=True)
                row["live_bytes"] = live["peak_bytes"]
                row["load"] = row["load"] + live["load"]
            rows.append(row)
            print(f"stride {stride} {spec}: trainable {row['trainable'] / 1e6:.2f} M, step "
                  f"{row['step_s']:.1f} s, peak RSS {_gib(row['peak_bytes'])}"
                  + (f", peak live {_gib(row['live_bytes'])}" if "live_bytes" in row else "")
                  + f", load {max(row['load']):.1f}", flush=True)
    print(f"({args.arch}, batch {args.batch} x {args.frames} frames, CPU, "
          f"{torch.get_num_threads()} threads)")
    print(table(rows))
    if args.json:
        print(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    sys.exit(cli.run(main))
