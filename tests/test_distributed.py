"""torchrun with 2 processes (gloo, CPU): same CLIP-Memory as 1 process, exact resume after a
SIGKILL mid-epoch, rank-0 checkpoint that a 1-process evaluation loads."""

from __future__ import annotations

import os
import os.path as osp
import re
import socket
import sys

import pytest
import torch
from train_helpers import REPO, TINY_MARS, TrainProcess, assert_identical

from tfclip_torchreid import compat
from tfclip_torchreid.runner import build_engine, build_parser, config_from_args, main
from tfclip_torchreid.testing import make_synthetic_dataset


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(root: str, save: str, max_epoch: int = 1, *extra: str) -> list[str]:
    return [
        "--arch", "tfclip_tiny", "--sources", "mars", "--root", root, "--save-dir", save,
        "model.pretrained", "", "data.height", "64", "data.width", "32", "data.seq_len", "4",
        "data.workers", "0", "train.batch_size", "8", "train.max_epoch", str(max_epoch),
        "train.seed", "3", "train.memory_cache_dir", "none", "test.batch_size", "4", *extra,
    ]


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
            "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
            osp.join(REPO, "tools", "train.py"), *args]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_process_gloo_training_sigkill_and_exact_resume(tmp_path):
    """2 ranks: same CLIP-Memory as 1 process; SIGKILL of the whole job in epoch 2, then the same
    command with ``--resume auto`` continues at epoch 2 and ends with the uninterrupted run's
    checkpoint in every tensor; rank 0's checkpoint loads into a 1-process evaluation."""
    root = str(tmp_path / "data")
    make_synthetic_dataset("mars", root, seed=0, verbose=False, **TINY_MARS)
    # 4 batches per rank and epoch (P=2 identities x K=2), a line for each; 2 training ids held
    # out as a validation split, evaluated (sharded over the ranks) after every epoch
    val = ("data.val_ids", "2", "test.eval_freq", "1")
    extra = ("train.batch_size", "4", "sampler.num_instances", "2", "train.print_freq", "1", *val)
    save, killed_save = str(tmp_path / "ddp"), str(tmp_path / "ddp_killed")
    reference = TrainProcess(_torchrun(*_args(root, save, 2, *extra)))
    killed = TrainProcess(_torchrun(*_args(root, killed_save, 2, *extra), "--resume", "auto"),
                          kill_on=r"^epoch: \[2/2\]\[1/")
    killed.finish()
    latest_killed = osp.join(killed_save, "checkpoints", "latest.pth")
    assert torch.load(latest_killed, weights_only=True)["epoch"] == 1, "killed after epoch 2"
    resumed = TrainProcess(_torchrun(*_args(root, killed_save, 2, *extra), "--resume", "auto"))
    out = reference.finish()
    assert "world size 2" in out
    # only rank 0 wrote logs and checkpoints
    assert len([f for f in os.listdir(save) if f.endswith("train.log")]) == 1
    out = resumed.finish()
    assert "world size 2" in out and "continuing at epoch 2" in out
    assert not re.search(r"^epoch: \[1/2\]", out, re.M)
    latest = osp.join(save, "checkpoints", "latest.pth")
    ckpt = torch.load(latest, map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 2
    assert_identical(torch.load(latest_killed, weights_only=True), ckpt, "2-rank resume")
    assert [row["epoch"] for row in ckpt["validation"]] == [1, 2]
    assert osp.isfile(osp.join(save, "checkpoints", "best.pth"))

    # 1 process, same config and seed: identical encoder and tracklets -> same memory
    cfg = config_from_args(build_parser().parse_args(_args(root, str(tmp_path / "single"), 1,
                                                           *val)))
    compat.set_random_seed(cfg.train.seed)
    engine = build_engine(cfg)
    engine.identity_bank.fill()
    assert engine.identity_bank.cache_key == ckpt["memory_cache_key"]
    torch.testing.assert_close(ckpt["state_dict"]["memory.bank"], engine.raw_model.memory.bank,
                               atol=1e-6, rtol=1e-6)

    # the 2-process checkpoint loads into a 1-process evaluation
    out = main(["--evaluate-only", "--weights", latest, *_args(root, str(tmp_path / "eval"))])
    assert 0.0 <= out["after"]["mars"]["mAP"] <= 1.0
