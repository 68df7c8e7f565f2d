#!/usr/bin/env python
"""Frames/s of the two extraction passes: CLIP-Memory init and the dense test.

Each pass runs twice: batched across tracklets (ours: ``test.batch_size`` tracklets per batch,
at most ``test.max_clips_per_forward`` clips per forward pass) and one tracklet at a time (the
authors' way, batch 1). Prints frames/s and the speed-up.

Examples:
    python tools/bench_extract.py --config-file configs/demo.yaml
    python tools/bench_extract.py --config-file configs/tfclip_vitb16_mars.yaml --root /data \
        model.pretrained "" test.batch_size 64 --limit 200
"""

from __future__ import annotations

import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402

from tfclip_torchreid import cli  # noqa: E402
from tfclip_torchreid.engine.extraction import extract_features  # noqa: E402
from tfclip_torchreid.runner import (  # noqa: E402
    build_engine,
    build_parser,
    config_from_args,
    ensure_synthetic,
    parse_args,
)
from tfclip_torchreid.utils.logger import console_logging  # noqa: E402


def rebatch(loader: DataLoader, batch_size: int, limit: int) -> DataLoader:
    ds = loader.dataset
    if limit:
        ds = Subset(ds, list(range(min(limit, len(ds)))))
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory)


def timed(fn, *a):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn(*a)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> list[dict]:
    """Runs the tool with the package's log lines shown on stdout."""
    with console_logging():
        return _run(argv)


def _run(argv: list[str] | None = None) -> list[dict]:
    p = build_parser()
    p.description = __doc__
    p.add_argument("--limit", type=int, default=0, help="use only the first N tracklets of each set")
    args = parse_args(argv, p)
    limit = args.limit
    cfg = config_from_args(args)
    if cfg.data.synthetic:
        ensure_synthetic(cfg)
    engine = build_engine(cfg)
    model = engine.raw_model.eval()
    dm = engine.datamanager
    name = next(iter(dm.test_loader))
    passes = {
        "CLIP-Memory": (dm.memory_loader, lambda clips, cams: model.encode_memory(clips)),
        "dense test (gallery)": (dm.test_loader[name]["gallery"], lambda clips, cams: model(clips, cam_label=cams)),
    }
    rows = []
    print(f"device {engine.device}, precision {engine.amp}, T={cfg.data.seq_len}, "
          f"{cfg.data.height}x{cfg.data.width}, model {cfg.model.name}")
    print(f"{'pass':<22} {'mode':<16} {'frames':>8} {'seconds':>8} {'frames/s':>9}")
    for label, (loader, fwd) in passes.items():
        res = {}
        for mode, bs in (("batched", cfg.test.batch_size), ("one at a time", 1)):
            ld = rebatch(loader, bs, limit)
            with torch.inference_mode():
                out, secs = timed(extract_features, ld, fwd, engine.device,
                                  engine.max_clips_per_forward, engine.autocast)
            feats, frames = out.features, out.frames
            res[mode] = (feats, frames / secs)
            rows.append({"pass": label, "mode": mode, "frames": frames, "s": secs, "fps": frames / secs})
            print(f"{label:<22} {mode:<16} {frames:>8} {secs:>8.2f} {frames / secs:>9.1f}")
        diff = (res["batched"][0] - res["one at a time"][0]).abs().max().item()
        print(f"{label:<22} speed-up x{res['batched'][1] / res['one at a time'][1]:.2f} "
              f"(max |feature diff| {diff:.2e})")
    return rows


if __name__ == "__main__":
    sys.exit(cli.run(main))
