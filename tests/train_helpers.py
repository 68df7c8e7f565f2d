"""Helpers shared by the tests that run ``tools/train.py`` in subprocesses and compare checkpoints.

Example:
    >>> assert_identical({"w": torch.ones(2)}, {"w": torch.ones(2)})
"""

from __future__ import annotations

import glob
import hashlib
import os
import os.path as osp
import re
import signal
import subprocess
import threading

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

# the synthetic MARS the training tests share: 8 train / 8 test ids, 3-14 frame tracklets
TINY_MARS = dict(height=64, width=32, num_train_ids=8, num_test_ids=8, num_distractors=40,
                 num_junk=2, min_len=3, max_len=14)


def tiny_config(root: str, save_dir: str, arch: str = "tfclip_tiny", **overrides):
    """The training tests' config: ``arch`` on the synthetic MARS under ``root``, 64x32 frames,
    4-frame clips, batch 8 (4 instances), 2 epochs, no memory cache, seed 7; ``overrides`` by
    dotted key (``**{"train.max_epoch": 1}``)."""
    from tfclip_torchreid.config import get_default_config

    cfg = get_default_config()
    cfg.model.name, cfg.model.pretrained = arch, ""
    cfg.data.root, cfg.data.sources, cfg.data.targets = root, ["mars"], ["mars"]
    cfg.data.height, cfg.data.width, cfg.data.seq_len, cfg.data.workers = 64, 32, 4, 0
    cfg.data.save_dir = save_dir
    cfg.train.batch_size, cfg.sampler.num_instances = 8, 4
    cfg.train.lr, cfg.train.warmup_epochs, cfg.train.max_epoch = 1e-4, 1, 2
    cfg.train.print_freq, cfg.train.memory_cache_dir, cfg.train.seed = 1000, "none", 7
    cfg.test.batch_size = 8
    for key, value in overrides.items():
        node = cfg
        *path, last = key.split(".")
        for name in path:
            node = getattr(node, name)
        setattr(node, last, value)
    return cfg


def subprocess_env() -> dict:
    """CPU, offline, one thread per process, the worktree first on the path; no
    ``PYTHONUNBUFFERED``: the console has to flush by itself."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               MASTER_ADDR="127.0.0.1", PYTHONPATH=REPO)
    env.pop("PYTHONUNBUFFERED", None)
    return env


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class TrainProcess:
    """A process (and its children: loader workers, torchrun's ranks) whose output lines are read
    as they arrive; with ``kill_on``, it and every process below it get SIGKILL the moment a line
    matches that pattern (no chance to clean up: a crash, the OOM killer, a lost node)."""

    def __init__(self, cmd: list[str], kill_on: str | None = None) -> None:
        self.kill_on = kill_on
        self.killed_at: str | None = None
        self.lines: list[str] = []
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=subprocess_env(), cwd=REPO,
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if self.kill_on and self.killed_at is None and re.search(self.kill_on, line):
                self._kill()
                self.killed_at = line

    def _kill(self) -> None:
        """SIGKILL the process and all its descendants (torchrun starts each rank in a session of
        its own, so killing torchrun's process group alone leaves the ranks training)."""
        for pid in [*descendants(self.proc.pid), self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def finish(self, timeout: float = 300) -> str:
        """Wait for the end and return the output; checks the exit status (0, or SIGKILL on the
        ``kill_on`` line)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            self.proc.wait(timeout=60)
            raise AssertionError(f"timed out after {timeout} s:\n"
                                 + "".join(self.lines[-60:])) from None
        finally:
            self._kill()  # leftovers of the group (loader workers, torchrun's ranks)
        self._reader.join(timeout=60)
        out = "".join(self.lines)
        if self.kill_on:
            assert self.killed_at is not None, f"no line matched {self.kill_on!r}:\n{out[-4000:]}"
            assert self.proc.returncode == -signal.SIGKILL, out[-4000:]
        else:
            assert self.proc.returncode == 0, out[-4000:]
        return out


def assert_identical(a, b, where: str = "checkpoint") -> None:
    """Every tensor equal (atol=0, same dtype and shape), every other value equal, recursively."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for key in a:
            assert_identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def file_hashes(folder: str) -> dict:
    """sha256 of every file in ``folder`` (hidden ones too)."""
    out = {}
    for path in sorted(glob.glob(osp.join(folder, "*")) + glob.glob(osp.join(folder, ".*"))):
        with open(path, "rb") as f:
            out[osp.basename(path)] = hashlib.sha256(f.read()).hexdigest()
    return out


def count_loads(monkeypatch, path: str) -> list:
    """Every ``torch.load`` of ``path`` from now on (a list that grows)."""
    calls, real = [], torch.load

    def counting(f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and osp.abspath(f) == osp.abspath(path):
            calls.append(f)
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    return calls
