"""tools/embed.py under torchrun: 2 gloo processes on the CPU write the files one process writes."""

from __future__ import annotations

import importlib.util
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tfclip_torchreid.embedding import shard_batches
from tfclip_torchreid.models import build_tfclip
from tfclip_torchreid.utils.checkpoint import checkpoint_header, save_checkpoint

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# parts of 3 tracklets in batches of 2: every part is sharded, the last one (1 tracklet) leaves
# rank 1 without a batch
FAST = ["--seq-len", "4", "--workers", "0", "--batch-size", "2", "--part-size", "3", "--quiet",
        "--device", "cpu"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _embed_cli():
    spec = importlib.util.spec_from_file_location("embed_cli", osp.join(REPO, "tools", "embed.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tracklets(tmp_path_factory):
    """7 tracklet folders of 3..9 random 64x32 frames (MARS names: pid, camera) and a tiny
    checkpoint."""
    base = tmp_path_factory.mktemp("sharded")
    rng = np.random.default_rng(0)
    for t in range(7):
        pid, cam = 1 + t // 2, 1 + t % 3
        folder = base / "tracks" / f"{pid:04d}C{cam}T{t:04d}"
        folder.mkdir(parents=True)
        for f in range(int(rng.integers(3, 10))):
            pixels = rng.integers(0, 256, size=(64, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{pid:04d}C{cam}T{t:04d}F{f:03d}.png")
    torch.manual_seed(0)
    model = build_tfclip("tfclip_tiny", num_classes=2, camera_num=6, layers=1,
                         image_size=(64, 32)).eval()
    weights = save_checkpoint({**checkpoint_header(model), "state_dict": model.state_dict()},
                              str(base / "tiny.pth"))
    return str(base / "tracks"), weights


def test_shard_batches_cover_the_loader_in_whole_batches():
    loader = torch.utils.data.DataLoader(list(range(11)), batch_size=3)
    shards = [[b.tolist() for b in shard_batches(loader, r, 3)] for r in range(3)]
    assert shards == [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8]], [[9, 10]]]
    assert [list(shard_batches(loader, r, 5)) for r in (4,)] == [[]]  # more ranks than batches


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_processes_write_the_single_process_files(tracklets, tmp_path):
    folder, weights = tracklets
    single = str(tmp_path / "one.npy")
    assert _embed_cli().main(["--weights", weights, "--input", folder, "--out", single]
                             + FAST) == 0
    sharded = str(tmp_path / "two.npy")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
           osp.join(REPO, "tools", "embed.py"), "--weights", weights, "--input", folder,
           "--out", sharded, *FAST]
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("=> embedding: 7 tracklets") == 1  # only rank 0 reports
    one, two = np.load(single), np.load(sharded)
    assert one.shape[0] == 7 and one.dtype == np.float32
    assert np.array_equal(one, two)  # bit for bit
    with open(osp.join(tmp_path, "one.json")) as a, open(osp.join(tmp_path, "two.json")) as b:
        assert json.load(a) == json.load(b)
