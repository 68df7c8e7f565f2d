"""torchrun with 2 processes (gloo, CPU): same CLIP-Memory as 1 process, rank-0 checkpoint that a
1-process evaluation loads."""

from __future__ import annotations

import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch

from tfclip_torchreid import compat
from tfclip_torchreid.data.synthetic import make_synthetic_dataset
from tfclip_torchreid.engine.runner import build_engine, build_parser, config_from_args, main

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SIZES = dict(height=64, width=32, num_train_ids=8, num_test_ids=8, num_distractors=40, num_junk=2,
             min_len=3, max_len=14)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(root: str, save: str) -> list[str]:
    return [
        "--arch", "tfclip_tiny", "--sources", "mars", "--root", root, "--save-dir", save,
        "model.pretrained", "", "data.height", "64", "data.width", "32", "data.seq_len", "4",
        "data.workers", "0", "train.batch_size", "8", "train.max_epoch", "1", "train.seed", "3",
        "train.memory_cache_dir", "none", "test.batch_size", "4",
    ]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_process_gloo_training_matches_one_process_memory(tmp_path):
    root = str(tmp_path / "data")
    make_synthetic_dataset("mars", root, seed=0, verbose=False, **SIZES)
    save = str(tmp_path / "ddp")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               MASTER_ADDR="127.0.0.1", PYTHONPATH=REPO)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", osp.join(REPO, "tools", "train.py"), *_args(root, save)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "world size 2" in proc.stdout

    ckpt = torch.load(osp.join(save, "checkpoints", "latest.pth"), map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1
    # only rank 0 wrote logs and checkpoints
    assert len([f for f in os.listdir(save) if f.endswith("train.log")]) == 1

    # 1 process, same config and seed: identical encoder and tracklets -> same memory
    cfg = config_from_args(build_parser().parse_args(_args(root, str(tmp_path / "single"))))
    compat.set_random_seed(cfg.train.seed)
    engine = build_engine(cfg)
    engine.init_memory()
    assert engine.memory_cache_key == ckpt["memory_cache_key"]
    torch.testing.assert_close(ckpt["state_dict"]["memory.bank"], engine.raw_model.memory.bank,
                               atol=1e-6, rtol=1e-6)

    # resume with 2 processes: continues at epoch 2 from rank 0's checkpoint
    args2 = _args(root, save)
    args2[args2.index("train.max_epoch") + 1] = "2"
    cmd2 = [*cmd[:5], f"--master_port={_free_port()}", cmd[6], "--resume", "auto", *args2]
    proc2 = subprocess.run(cmd2, env=env, capture_output=True, text=True, timeout=300)
    assert proc2.returncode == 0, proc2.stdout[-3000:] + proc2.stderr[-3000:]
    assert "continuing at epoch 2" in proc2.stdout
    ckpt2 = torch.load(osp.join(save, "checkpoints", "latest.pth"), map_location="cpu", weights_only=True)
    assert ckpt2["epoch"] == 2

    # the 2-process checkpoint loads into a 1-process evaluation
    out = main(["--evaluate-only", "--weights", osp.join(save, "checkpoints", "latest.pth"),
                *_args(root, str(tmp_path / "eval"))])
    assert 0.0 <= out["after"]["mars"]["mAP"] <= 1.0
