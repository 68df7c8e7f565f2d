#!/usr/bin/env python
"""How a run's start-up, memory and evaluation grow with the data: a MARS- or LS-VID-size tree.

``--fraction F`` makes (once; reused while its marker ``SCALE.json`` matches) a tree under
``--root`` with F x the real dataset's identities, tracklets and frames, in the real layout (the
dataset module's ``write``) with a long-tailed tracklet-length distribution of the real mean, and
tiny identical-size JPEG frames (16 x 8, a few colours) to bound disk and time. Then one child
process makes a real ``tfclip_tiny`` run's parts, timed one by one, while this process samples the
memory of the child's whole process tree (PSS summed over the tree):

* ``parse_s``: our pre-check + torchreid's parser; ``build_s``: the data manager (parse again,
  loaders, identity sampler), model, optimiser and engine (``runner.build_engine``);
* ``frame_check_s`` (empty ``$TFCLIP_CACHE``, the tree's files first dropped from the OS page
  cache, ``page_cache_evicted_s``: a cold start reads the disk), ``frame_check_cached_s`` (the
  same call again);
* ``memory_init_frames_per_s``, ``dense_test_frames_per_s``: the first ``--rate-batches``
  batches of the memory loader / the query loader (a bounded portion, named in the output);
  ``memory_init_s`` projects the full CLIP-Memory pass from that rate;
* ``first_step_s``: the first training batch (loader start-up and sampler) and one
  forward / backward / optimiser step (the memory bank from the timed portion);
* ``start_to_first_step_s`` = start-up (imports) + ``build_s`` + ``frame_check_s`` +
  ``memory_init_s`` + ``first_step_s``; ``..._cached_s`` the same with the cached frame check
  and the cached CLIP-Memory (loaded, not computed);
* ``eval_s``: the full-size ranking (query x query+gallery, the MARS protocol) of random
  features of the model's test dimension: distance matrix, CMC and mAP;
* ``peak_rss_gb``: the peak resident memory of the child's process tree (loader and frame-check
  workers included), as the sum of the processes' PSS, which counts the pages forked workers
  share with their parent once; ``peak_rss_sum_gb`` sums their RSS (shared pages counted once per
  process: an upper bound); ``max_single_process_rss_gb``: the largest single process.

The last line printed is one JSON object; ``--json-out FILE`` also writes it, with the command.

Example:
    python tools/bench_scale.py --dataset mars --fraction 0.1 --root /tmp/scale --json
    python tools/bench_scale.py --dataset mars --fraction 1 --root /tmp/scale --json \
        --json-out benchmarks/scale_mars.json
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import os.path as osp
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from tfclip_torchreid import cli  # noqa: E402
from tfclip_torchreid.data.datasets import lsvid, mars  # noqa: E402
from tfclip_torchreid.data.datasets.writing import PlannedTracklet  # noqa: E402

#: the real datasets' sizes (MARS: the info files; LS-VID: the list files and info_test.mat)
REAL: Dict[str, Dict[str, Any]] = {
    "mars": dict(train_ids=625, test_ids=634, cams=6, train_tracklets=8298, query=1980,
                 gallery=9330, junk=870, distractors=2750, train_frames=509_914,
                 test_frames=681_089, max_len=920),
    "lsvid": dict(train_ids=842, test_ids=2730, gallery_ids=200, cams=15, train_tracklets=3610,
                  query=3504, gallery=7829, junk=0, distractors=0, train_frames=720_000,
                  test_frames=2_260_000, max_len=9999),
}
_VERSION = 1
MARKER = "SCALE.json"


# ---------------------------------------------------------------------------------- the plan
def _lengths(rng: np.random.Generator, n: int, total: int, max_len: int) -> np.ndarray:
    """``n`` lengths >= 2 summing to ``total``: log-normal (sigma 0.9, the long tail of real
    tracklets), capped at ``max_len``."""
    raw = rng.lognormal(0.0, 0.9, n)
    lens = np.clip(np.round(raw / raw.sum() * total), 2, max_len).astype(np.int64)
    diff = int(total - lens.sum())
    order = rng.permutation(n)
    i = 0
    while diff != 0 and i < 50 * n:
        j = order[i % n]
        step = 1 if diff > 0 else -1
        if 2 <= lens[j] + step <= max_len:
            lens[j] += step
            diff -= step
        i += 1
    return lens


def plan(dataset: str, fraction: float, seed: int = 0) -> List[PlannedTracklet]:
    """F x the real counts: train identities over 2-4 cameras; each query identity has one query
    per camera but its last, whose gallery holds at least one tracklet on another camera;
    distractors (pid 0) and junk (pid -1) as MARS has them."""
    r = REAL[dataset]
    rng = np.random.default_rng(seed)
    s = {k: max(2, round(v * fraction)) if isinstance(v, int) and v else v for k, v in r.items()}
    C = r["cams"]
    tracks: List[PlannedTracklet] = []
    n_tr, n_te = s["train_ids"], s["test_ids"]
    # MARS numbers train and test persons apart; LS-VID likewise
    train_pids = [2 * i + 1 for i in range(n_tr)]
    test_pids = [2 * i + 2 for i in range(n_te)]
    owners = np.concatenate([np.arange(n_tr), rng.integers(0, n_tr, s["train_tracklets"] - n_tr)])
    cams_of = [rng.permutation(C)[:int(rng.integers(2, min(4, C) + 1))] + 1 for _ in range(n_tr)]
    for k, i in enumerate(owners):
        cam = int(cams_of[i][k % len(cams_of[i])] if k < n_tr else rng.choice(cams_of[i]))
        tracks.append(PlannedTracklet("train", train_pids[i], cam, 0, train_pids[i]))
    # queries: spread over the test identities, at most C - 1 each
    q_per = np.full(n_te, s["query"] // n_te)
    q_per[rng.permutation(n_te)[:s["query"] - q_per.sum()]] += 1
    q_per = np.clip(q_per, 1, C - 1)
    gallery = []
    for i, pid in enumerate(test_pids):
        cams = rng.permutation(C)[:q_per[i] + 1] + 1
        for cam in cams[:-1]:
            tracks.append(PlannedTracklet("test", pid, int(cam), 0, pid, query=True))
        gallery.append(PlannedTracklet("test", pid, int(cams[-1]), 0, pid))
        gallery[-1].cams = cams  # type: ignore[attr-defined]
    extra = s["gallery"] - s["distractors"] - len(gallery)
    for i in rng.integers(0, n_te, max(extra, 0)):
        g = gallery[i]
        gallery.append(PlannedTracklet("test", g.pid, int(rng.choice(g.cams)), 0, g.pid))
    tracks += gallery
    key = 10_000_000
    for pid, count in ((0, s["distractors"] if r["distractors"] else 0),
                       (-1, s["junk"] if r["junk"] else 0)):
        for _ in range(count):
            tracks.append(PlannedTracklet("test", pid, int(rng.integers(1, C + 1)), 0, key))
            key += 1
    for split, total in (("train", s["train_frames"]), ("test", s["test_frames"])):
        items = [t for t in tracks if t.split == split]
        for t, n in zip(items, _lengths(rng, len(items), total, r["max_len"])):
            t.num_frames = int(n)
    return tracks


def _frame_bytes(count: int = 8) -> List[bytes]:
    from PIL import Image

    out = []
    for k in range(count):
        buf = io.BytesIO()
        colour = tuple(int(v) for v in np.random.default_rng(k).integers(0, 256, 3))
        Image.new("RGB", (8, 16), colour).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def generate(root: str, dataset: str, fraction: float, seed: int = 0) -> Dict[str, Any]:
    """The tree under ``root`` (made once: reused when its marker matches); returns the marker."""
    ddir = osp.join(root, dataset)
    want = {"dataset": dataset, "fraction": fraction, "seed": seed, "version": _VERSION}
    marker = osp.join(ddir, MARKER)
    if osp.isfile(marker):
        with open(marker) as fh:
            info = json.load(fh)
        if all(info.get(k) == v for k, v in want.items()):
            return {**info, "generate_s": 0.0, "reused": True}
    if osp.isdir(ddir) and not osp.isfile(marker):
        raise SystemExit(f"{ddir} exists and was not written by bench_scale (no {MARKER}); use "
                         "another --root")
    t0 = time.perf_counter()
    tracks = plan(dataset, fraction, seed)
    tmp = osp.join(root, f".{dataset}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    if dataset == "mars":
        mars.write(tmp, tracks)
    else:
        lsvid.write(tmp, tracks, "flat")
    frames = _frame_bytes()
    made = set()
    num = 0
    for t in tracks:
        data = frames[t.key % len(frames)]
        for rel in t.paths:
            folder = osp.dirname(rel)
            if folder not in made:
                os.makedirs(osp.join(tmp, folder), exist_ok=True)
                made.add(folder)
            with open(osp.join(tmp, rel), "wb") as fh:
                fh.write(data)
        num += len(t.paths)
    info = {**want, "frames": num, "tracklets": len(tracks),
            "train_tracklets": sum(t.split == "train" for t in tracks),
            "query": sum(t.query for t in tracks), "seconds": round(time.perf_counter() - t0, 1)}
    with open(osp.join(tmp, MARKER), "w") as fh:
        json.dump(info, fh)
    if osp.isdir(ddir):
        shutil.rmtree(ddir)
    os.replace(tmp, ddir)
    return {**info, "generate_s": info["seconds"], "reused": False}


def evict_page_cache(folder: str) -> float:
    """Drop ``folder``'s files from the OS page cache, so the cold frame check reads the disk
    as on a fresh boot rather than the pages :func:`generate` just wrote (``sync`` first: dirty
    pages cannot be dropped; ``posix_fadvise(DONTNEED)`` needs no privileges). Seconds taken."""
    t0 = time.perf_counter()
    os.sync()
    for dirpath, _, files in os.walk(folder):
        for name in files:
            fd = os.open(osp.join(dirpath, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------- the run
def _child(args: argparse.Namespace) -> Dict[str, Any]:
    """The run's parts, timed (runs in the measured child process)."""
    import psutil
    import torch

    from tfclip_torchreid.data.datamanager import parse_datasets
    from tfclip_torchreid.engine.evaluation import distance_matrix
    from tfclip_torchreid.engine.extraction import extract_features
    from tfclip_torchreid.metrics import rank_metrics
    from tfclip_torchreid.runner import build_engine, config_from_args, parse_args

    torch.set_num_threads(args.threads)
    # from the process's start: the interpreter and the imports
    out: Dict[str, Any] = {"import_s": time.time() - psutil.Process().create_time()}
    argv = ["--arch", "tfclip_tiny", "-s", args.dataset, "--root", args.root,
            "--save-dir", osp.join(args.cache, "log"), "model.pretrained", "",
            "model.use_sie", "False", "data.height", "128", "data.width", "64",
            "data.seq_len", "4", "data.workers", str(args.workers), "train.batch_size", "16",
            "test.batch_size", "16", "data.check_frames", "False", "use_gpu", "False"]
    cfg = config_from_args(parse_args(argv))
    t = time.perf_counter()
    parse_datasets([args.dataset], args.root, transform=torch.nn.Identity())
    out["parse_s"] = time.perf_counter() - t
    t = time.perf_counter()
    engine = build_engine(cfg)
    out["build_s"] = time.perf_counter() - t
    dm, model = engine.datamanager, engine.raw_model
    for key in ("frame_check_s", "frame_check_cached_s"):
        t = time.perf_counter()
        dm.check_frames()
        out[key] = time.perf_counter() - t
    out["tracklets_train"] = len(dm.train_set.tracklets)
    out["frames_train"] = sum(len(tr[0]) for tr in dm.train_set.tracklets)

    def rate(loader, forward, n):
        it = iter(loader)
        next(it)  # loader start-up is not counted in the rate
        t = time.perf_counter()
        feats = extract_features(itertools.islice(it, n), forward, torch.device("cpu"))
        return feats, feats.frames / (time.perf_counter() - t)

    model.eval()
    with torch.inference_mode():
        mem, out["memory_init_frames_per_s"] = rate(
            dm.memory_loader, lambda c, _: model.encode_memory(c), args.rate_batches)
        query = dm.test_loader[args.dataset]["query"]
        q, out["dense_test_frames_per_s"] = rate(
            query, lambda c, cams: model(c, cam_label=cams), args.rate_batches)
    out["rate_portion"] = (f"first {args.rate_batches} batches of {dm.memory_loader.batch_size} "
                           "tracklets after the first (loader start-up not counted)")
    out["memory_init_s"] = out["frames_train"] / out["memory_init_frames_per_s"]
    # the timed portion's identity means (identities not in it: zero rows; timing only)
    bank = torch.zeros(model.num_classes, mem.features.shape[1])
    bank.index_add_(0, mem.pids, mem.features.float())
    bank /= torch.bincount(mem.pids, minlength=model.num_classes).clamp(min=1).unsqueeze(1)
    model.memory.set(bank)
    model.train()
    t = time.perf_counter()
    batch = next(iter(dm.train_loader))
    engine.forward_backward(batch)
    out["first_step_s"] = time.perf_counter() - t
    # evaluation at full size: random features of the model's test dimension
    ds = dm.test_dataset[args.dataset]
    dim = q.features.shape[1]
    gen = torch.Generator().manual_seed(0)
    qf = torch.randn(len(ds["query"]), dim, generator=gen)
    gf = torch.randn(len(ds["gallery"]), dim, generator=gen)
    q_pids = np.asarray([it[1] for it in ds["query"]])
    q_cams = np.asarray([it[2] for it in ds["query"]])
    g_pids = np.asarray([it[1] for it in ds["gallery"]])
    g_cams = np.asarray([it[2] for it in ds["gallery"]])
    t = time.perf_counter()
    distmat = distance_matrix(qf, gf)
    rank_metrics(distmat, q_pids, g_pids, q_cams, g_cams)
    out["eval_s"] = time.perf_counter() - t
    out["eval_size"] = [len(q_pids), len(g_pids), dim]
    startup = out["import_s"] + out["build_s"]
    out["start_to_first_step_s"] = (startup + out["frame_check_s"] + out["memory_init_s"]
                                    + out["first_step_s"])
    out["start_to_first_step_cached_s"] = startup + out["frame_check_cached_s"] + out["first_step_s"]
    return out


class TreeMemory:
    """Peak RSS and PSS summed over a process and its descendants, sampled every ``every`` s."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.every = every
        self.peak_rss = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        rss = pss = 0
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return
        for p in procs:
            try:
                info = p.memory_full_info()
            except psutil.Error:
                continue
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def measure(args: argparse.Namespace) -> Dict[str, Any]:
    """Run :func:`_child` in a subprocess with an empty ``$TFCLIP_CACHE``; its figures and the
    tree's peak memory."""
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as cache:
        env = dict(os.environ, TFCLIP_CACHE=cache, HF_HUB_OFFLINE="1")
        cmd = [sys.executable, osp.abspath(__file__), "--child", "--dataset", args.dataset,
               "--root", args.root, "--cache", cache, "--workers", str(args.workers),
               "--threads", str(args.threads), "--rate-batches", str(args.rate_batches)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
        mem = TreeMemory(proc.pid)
        stdout, _ = proc.communicate()
        mem.stop()
        if proc.returncode:
            raise SystemExit(f"the measured run failed (exit {proc.returncode})")
        out = json.loads(stdout.strip().splitlines()[-1])
    import resource

    out["peak_rss_gb"] = mem.peak_pss / 2**30  # the tree's memory: shared pages counted once
    out["peak_rss_sum_gb"] = mem.peak_rss / 2**30  # upper bound: shared pages once per process
    out["max_single_process_rss_gb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return out


def main(argv: List[str] | None = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=sorted(REAL), default="mars")
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--root", required=True, help="where the tree goes (outside the repository)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="data.workers of the run")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the run")
    p.add_argument("--rate-batches", type=int, default=20,
                   help="batches timed for the memory-init and dense-test rates")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    p.add_argument("--json-out", default="", help="also write the JSON (with the command) here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--cache", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.root = osp.abspath(args.root)
    if args.child:
        print(json.dumps(_child(args)))
        return {}
    if not 0 < args.fraction <= 1:
        raise SystemExit(f"--fraction must be in (0, 1], got {args.fraction}")
    made = generate(args.root, args.dataset, args.fraction, args.seed)
    evicted_s = evict_page_cache(osp.join(args.root, args.dataset))
    run = measure(args)
    out = {"dataset": args.dataset, "fraction": args.fraction,
           "frames": made["frames"], "tracklets": made["tracklets"],
           "generate_s": made["generate_s"], "tree_reused": made["reused"],
           "page_cache_evicted_s": evicted_s, **run,
           "workers": args.workers, "threads": args.threads, "cpus": len(os.sched_getaffinity(0)),
           "load_average": [round(x, 2) for x in os.getloadavg()],
           "command": "python tools/bench_scale.py " + " ".join(
               shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
               if a != "--json")}
    out = {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}
    if not args.json:
        for k, v in out.items():
            print(f"{k:32s} {v}")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(out, fh, indent=1)
            fh.write("\n")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    sys.exit(cli.run(main))
