"""tools/benchmark_all.sh --quick: TF-CLIP, CLIP-ReID and torchreid baselines on synthetic data ->
one table (15 training runs, minutes on 2 CPU cores: marked slow)."""

from __future__ import annotations

import csv
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.mark.slow
def test_quick_benchmark_writes_table(tmp_path):
    out = str(tmp_path / "bench")
    env = dict(os.environ, PYTHON=sys.executable, HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="",
               TFCLIP_CACHE=str(tmp_path / "cache"), PYTHONPATH=REPO)
    proc = subprocess.run(
        ["bash", osp.join(REPO, "tools", "benchmark_all.sh"), "--quick", "--out", out],
        env=env, capture_output=True, text=True, timeout=1800, cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(osp.join(out, "benchmark.csv")) as f:
        rows = list(csv.DictReader(f))
    got = {(r["dataset"], r["model"]) for r in rows}
    for d in ("mars", "ilidsvid", "lsvid"):
        for m in ("tfclip_tiny", "clipreid_tiny", "tfclip_rn50_tiny", "resnet50", "osnet_x1_0"):
            assert (d, m) in got, got
    for r in rows:
        assert 0.0 <= float(r["mAP"]) <= 1.0 and float(r["train_s"]) > 0 and float(r["test_s"]) > 0
    md = open(osp.join(out, "benchmark.md")).read()
    assert md.startswith("| dataset | model | mAP |") and md.count("\n") == len(rows) + 2
