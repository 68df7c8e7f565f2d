#!/usr/bin/env python
"""Train and test a torchreid built-in baseline with torchreid's own video engines.

Used by ``tools/benchmark_all.sh`` to compare TF-CLIP with torchreid's models on the same data.
Nothing of tfclip_torchreid is used here except the compatibility module (to find torchreid in
either layout), the dataset registrations (``lsvid``) and the results file format.

Example:
    python tools/train_baseline.py --arch resnet50 --sources mars --root reid-data \
        --max-epoch 2 --no-pretrained --save-dir log/baseline_resnet50_mars
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import tfclip_torchreid  # noqa: E402,F401  (registers lsvid)
from tfclip_torchreid import cli, compat  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet50", help="torchreid model name (resnet50, osnet_x1_0, ...)")
    p.add_argument("--sources", nargs="+", default=["mars"])
    p.add_argument("--root", default="reid-data")
    p.add_argument("--save-dir", default="log/baseline")
    p.add_argument("--loss", choices=["softmax", "triplet"], default="triplet",
                   help="triplet: torchreid's VideoTripletEngine (softmax + triplet, PK sampler)")
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--test-batch-size", type=int, default=16)
    p.add_argument("--num-instances", type=int, default=4)
    p.add_argument("--max-epoch", type=int, default=60)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--stepsize", type=int, nargs="+", default=[20, 40])
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--split-id", type=int, default=0)
    p.add_argument("--no-pretrained", action="store_true", help="random init (offline / CI)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    compat.set_random_seed(args.seed)
    use_gpu = torch.cuda.is_available()
    dm = compat.VideoDataManager(
        root=args.root,
        sources=args.sources,
        height=args.height,
        width=args.width,
        batch_size_train=args.batch_size,
        batch_size_test=args.test_batch_size,
        seq_len=args.seq_len,
        sample_method="evenly",
        workers=args.workers,
        use_gpu=use_gpu,
        split_id=args.split_id,
        num_instances=args.num_instances,
        train_sampler="RandomIdentitySampler" if args.loss == "triplet" else "RandomSampler",
    )
    model = compat.build_model(
        args.arch, num_classes=dm.num_train_pids, loss=args.loss, pretrained=not args.no_pretrained,
        use_gpu=use_gpu,
    )
    if use_gpu:
        model = model.cuda()
    optimizer = compat.build_optimizer(model, optim="adam", lr=args.lr)
    scheduler = compat.build_lr_scheduler(optimizer, lr_scheduler="multi_step", stepsize=args.stepsize)
    engine_cls = compat.VideoTripletEngine if args.loss == "triplet" else compat.VideoSoftmaxEngine
    engine = engine_cls(dm, model, optimizer=optimizer, scheduler=scheduler, use_gpu=use_gpu)

    # torchreid's test() returns only rank-1: record the full CMC and mAP its ranker computes.
    captured: dict = {}
    original = compat.metrics.evaluate_rank

    def capturing_evaluate_rank(*a, **kw):
        cmc, mAP = original(*a, **kw)
        captured.update({"mAP": float(mAP), **{f"R{r}": float(cmc[r - 1]) for r in (1, 5, 10, 20) if r <= len(cmc)}})
        return cmc, mAP

    compat.metrics.evaluate_rank = capturing_evaluate_rank
    test_time = {"s": 0.0}
    original_test = engine.test

    def timed_test(*a, **kw):
        t0 = time.time()
        out = original_test(*a, **kw)
        test_time["s"] += time.time() - t0
        return out

    engine.test = timed_test
    t0 = time.time()
    try:
        # torchreid prints CMC at every rank asked for and crashes past the gallery size
        num_g = min(len(dm.test_loader[n]["gallery"].dataset) for n in dm.test_loader)
        ranks = [r for r in (1, 5, 10, 20) if r <= num_g]
        engine.run(save_dir=args.save_dir, max_epoch=args.max_epoch, eval_freq=-1, print_freq=10, ranks=ranks)
    finally:
        compat.metrics.evaluate_rank = original
    total = time.time() - t0
    results = {
        "model": args.arch,
        "dataset": "+".join(args.sources),
        **captured,
        "train_s": total - test_time["s"],
        "test_s": test_time["s"],
        "gallery_includes_query": False,
    }
    os.makedirs(args.save_dir, exist_ok=True)
    with open(osp.join(args.save_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    sys.exit(cli.run(main))
