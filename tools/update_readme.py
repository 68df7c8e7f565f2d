#!/usr/bin/env python
"""Regenerate the figures of README.md from the commands that produce them.

Every generated block of the README sits between ``<!-- BEGIN:name -->`` and ``<!-- END:name -->``
and is rewritten here from code or from a run, never by hand, so it cannot go stale:

* ``switches``, ``models``, ``paper-table-2``: from the code (the model options' dataclass, the
  architecture files, the complexity counts); a test checks that the README holds them;
* ``demo``, ``demo-clipreid``, ``demo-clipreid-market``, ``demo-rn50``: each demo config run as
  README's command runs it on a fresh machine (``python tools/train.py --config-file
  configs/<demo>.yaml`` in an empty folder under ``log/readme/``, empty caches); wall time, test
  set and the before/after mAP and CMC. The demos are deterministic: tests/test_readme_demos.py
  (slow) reruns each and fails when any figure but the wall time differs, so after a change that
  moves them, rerun these sections;
* ``pictures``: the ``tools/visualize.py`` pictures of the ``demo`` run's test features, copied to
  docs/images/, with the ranked picture's content in words (checked with the ``demo`` block; the
  t-SNE picture is not checked: its pixels depend on the scikit-learn and matplotlib releases);
* ``rank``: ``tools/bench_rank.py``; ``train-step``: ``tools/bench_train_step.py`` (ViT-B/16 on
  the CPU); ``peft``: ``tools/bench_peft.py`` (parameter-efficient modes beside full fine-tuning,
  ViT-B/16 on the CPU); ``extract``: ``tools/bench_extract.py``; ``export``: ``tools/export.py`` on
  the ``demo`` run's checkpoint and on a full-size ``tfclip_vitb16``; ``search``:
  ``tools/bench_search.py`` at 1M tracklets (compressed index) and exact at a small size;
  ``video``: ``tools/bench_video.py f1`` on the ``demo`` run's checkpoint (both pairwise F1s,
  frames/s and cosine to float32 per backend, in one run) and ``tools/bench_video.py speed`` on
  ViT-B/16; ``scale``: the fraction-1 MARS run of ``tools/bench_scale.py``, read from
  ``benchmarks/scale_mars.json`` (written by the command it records, ``--json-out``). Timings:
  not checked.

Examples:
    python tools/update_readme.py                           # everything (about an hour)
    python tools/update_readme.py --sections switches models paper-table-2
    python tools/update_readme.py --sections demo pictures export demo-clipreid \\
        demo-clipreid-market demo-rn50                      # the demos (about 15 minutes)
    python tools/update_readme.py --sections video          # after demo (about 5 minutes)
    python tools/update_readme.py --check                   # exit 1 if a code block is stale
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Tuple

import yaml

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
from tfclip_torchreid.visualize import (  # noqa: E402
    feature_distances,
    rank_gallery,
    read_feature_set,
)

README = osp.join(REPO, "README.md")
PY = sys.executable


# ---------------------------------------------------------------------------------- from code
def switches() -> str:
    from tfclip_torchreid.models.config import markdown_table

    return markdown_table(("switch",))


def models() -> str:
    import torch

    from tfclip_torchreid.models.factory import build_tfclip, get_model_config, list_archs

    lines = ["| name | parameters (MARS: 625 ids, 6 cameras) | what |", "|---|---|---|"]
    for arch in list_archs():
        with torch.device("meta"):
            model = build_tfclip(arch, num_classes=625, camera_num=6)
        params = sum(p.numel() for p in model.parameters())
        lines.append(f"| `{arch}` | {params / 1e6:.2f} M | {get_model_config(arch)['description']} |")
    return "\n".join(lines)


def paper_table_2() -> str:
    from tfclip_torchreid.paper_tables import get_table, report_rows, row_counts

    table = get_table("2")
    rows = report_rows(table, {r.name: row_counts(table, r) for r in table.rows})
    lines = ["| row | " + " | ".join(table.marks) + " | params (M): ours / paper | "
             "MACs per frame (G): ours / paper | config |",
             "|---" * (len(table.marks) + 4) + "|"]
    for r in rows:
        marks = " | ".join("✓" if r["marks"][m] else "–" for m in table.marks)
        lines.append(f"| {r['label']} | {marks} | {r['params_m']:.2f} / {r['paper_params_m']:.2f} "
                     f"({r['params_diff_pct']:+.2f} %) | {r['flops_g']:.2f} / "
                     f"{r['paper_flops_g']:.2f} | `{r['config']}` |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- from runs
def _run(cmd: List[str], cwd: str, env: Dict[str, str] | None = None) -> float:
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, HF_HUB_OFFLINE="1", **(env or {})))
    return time.time() - t0


RUNS = osp.join(REPO, "log", "readme")  # run folders of the demos (git-ignored)

#: README block -> (demo config, options added to README's command). ``demo`` saves its test
#: features for the ``pictures`` and ``export`` blocks (which changes no metric).
DEMOS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "demo": ("demo.yaml", ("test.save_features", "True")),
    "demo-clipreid": ("demo_clipreid.yaml", ()),
    "demo-clipreid-market": ("demo_clipreid_market.yaml", ()),
    "demo-rn50": ("demo_rn50.yaml", ()),
}
#: CPU threads of a demo run (what README's command gets on a 2-core machine): the thread count
#: changes the order of floating-point sums, so another count gives other figures, and a test
#: harness that pins OMP_NUM_THREADS=1 must not leak into the run that it checks
DEMO_THREADS = 2
#: the wall time in a demo block: the one figure a fresh run does not reproduce
WALL_TIME = re.compile(r"took \d+ s here")


def run_demo(name: str, folder: str) -> Tuple[float, dict, str]:
    """Run demo ``name`` as README's command runs it on a fresh 2-core machine: in the empty
    ``folder`` (the config's relative data root and save dir land there) with empty caches
    (``TFCLIP_CACHE=<folder>/cache``) and :data:`DEMO_THREADS` CPU threads. Returns (seconds,
    summary.json, save dir)."""
    config, opts = DEMOS[name]
    if osp.isdir(folder) and os.listdir(folder):
        raise FileExistsError(f"{folder} is not empty: a demo runs on freshly generated data")
    os.makedirs(folder, exist_ok=True)
    cfg = osp.join(REPO, "configs", config)
    seconds = _run([PY, osp.join(REPO, "tools", "train.py"), "--config-file", cfg, *opts],
                   cwd=folder, env={"TFCLIP_CACHE": osp.join(folder, "cache"),
                                    "OMP_NUM_THREADS": str(DEMO_THREADS)})
    with open(cfg) as f:
        save = osp.join(folder, yaml.safe_load(f)["data"]["save_dir"])
    with open(osp.join(save, "summary.json")) as f:
        return seconds, json.load(f), save


def demo_block(name: str, seconds: float, summary: dict) -> str:
    """README's block of demo ``name``: its command, wall time, test set and metrics table."""
    (dataset, after), = summary["after"].items()
    before = summary["before"][dataset]
    keys = ["mAP", "R1", "R5", "R10", "R20"]
    return "\n".join([
        f"`python tools/train.py --config-file configs/{DEMOS[name][0]}` took {seconds:.0f} s "
        f"here (data generation included); {dataset} test: {after['num_query']} queries, "
        f"{after['num_gallery']} gallery items.",
        "", "| | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|",
        "| before training | " + " | ".join(f"{100 * before[k]:.1f}" for k in keys) + " |",
        "| after training | " + " | ".join(f"{100 * after[k]:.1f}" for k in keys) + " |",
    ])


def without_wall_time(text: str) -> str:
    """A demo block without its wall time: what a fresh run must reproduce exactly."""
    return WALL_TIME.sub("took ... s here", text)


def _demo(name: str) -> Callable[[], str]:
    def run() -> str:
        folder = osp.join(RUNS, osp.splitext(DEMOS[name][0])[0])
        if osp.isdir(folder):
            shutil.rmtree(folder)
        seconds, summary, _ = run_demo(name, folder)
        return demo_block(name, seconds, summary)
    return run


def _demo_save_dir() -> str:
    save = osp.join(RUNS, "demo", "log", "demo")
    if not osp.isdir(save):
        raise FileNotFoundError(f"{save} does not exist: run the demo section first "
                                "(python tools/update_readme.py --sections demo pictures export)")
    return save


PICTURES = ("![a query tracklet and its top-5 gallery tracklets](docs/images/demo_ranked.png)\n"
            "![t-SNE of the demo's test features](docs/images/demo_tsne.png)")


def ranked_caption(features: str, query: int, topk: int = 5) -> str:
    """What the ranked picture of query ``query`` shows, in words, from the demo's saved test
    features (``<save_dir>/features``): the query's identity and the identities of its ``topk``
    gallery tracklets as the evaluation ranks them."""
    qf, qi = read_feature_set(osp.join(features, "mars_query.npy"),
                              osp.join(features, "mars_query.json"))
    gf, gi = read_feature_set(osp.join(features, "mars_gallery.npy"),
                              osp.join(features, "mars_gallery.json"))
    _, q_pid, q_cam = qi[query]
    ranked = rank_gallery(feature_distances(qf, gf)[query], q_pid, q_cam,
                          [g[1] for g in gi], [g[2] for g in gi], topk)
    notes = {q_pid: " (match)", 0: " (distractor)"}  # MARS: identity 0 = distractors
    shown = ", ".join(f"{gi[k][1]}{notes.get(gi[k][1], '')}" for k in ranked)
    return (f"The ranked picture: query {query + 1} of {len(qi)} (identity {q_pid}); its top "
            f"{len(ranked)} gallery tracklets are identities {shown}.")


def pictures() -> str:
    """Pictures of the ``demo`` run's test features (run the ``demo`` section first), and what
    the ranked one shows in words (checked against a fresh run by tests/test_readme_demos.py)."""
    sys.path.insert(0, osp.join(REPO, "tools"))
    import visualize

    feats = osp.join(_demo_save_dir(), "features")
    out = osp.join(RUNS, "demo", "pictures")
    visualize.main(["--query-features", osp.join(feats, "mars_query.npy"),
                    "--query-index", osp.join(feats, "mars_query.json"),
                    "--gallery-features", osp.join(feats, "mars_gallery.npy"),
                    "--gallery-index", osp.join(feats, "mars_gallery.json"),
                    "--out", out, "--topk", "5", "--max-queries", "4", "--tsne",
                    "--tsne-ignore-pids", "-1", "0"])
    images = osp.join(REPO, "docs", "images")
    os.makedirs(images, exist_ok=True)
    ranked = sorted(os.listdir(osp.join(out, "ranked")))[0]  # <query index, 5 digits>_<frame>.png
    shutil.copy(osp.join(out, "ranked", ranked), osp.join(images, "demo_ranked.png"))
    shutil.copy(osp.join(out, "tsne.png"), osp.join(images, "demo_tsne.png"))
    return PICTURES + "\n\n" + ranked_caption(feats, int(ranked.split("_")[0]))


def rank() -> str:
    sys.path.insert(0, osp.join(REPO, "tools"))
    import bench_rank

    rows = bench_rank.main(["--sizes", "mars", "lsvid", "--repeats", "5"])
    lines = ["| problem | torchreid's Python ranker | ours | speed-up |", "|---|---|---|---|"]
    for r in rows:
        sec = r["seconds"]
        ref = next(v for k, v in sec.items() if "torchreid" in k)
        ours = sec["ours, numpy distmat"]
        lines.append(f"| {r['size']} {r['num_query']:,} x {r['num_gallery']:,} | {ref:.2f} s | "
                     f"{ours:.3f} s | {ref / ours:.0f}x |")
    return "\n".join(lines)


#: the fraction-1 MARS run of tools/bench_scale.py (about 15 minutes on 2 cores, so it is read from
#: its results file; the command that wrote the file is recorded in it)
SCALE_RESULTS = osp.join(REPO, "benchmarks", "scale_mars.json")


def scale() -> str:
    """The ``scale`` block from :data:`SCALE_RESULTS` (rerun its ``command`` to refresh it)."""
    with open(SCALE_RESULTS) as f:
        r = json.load(f)
    goals = {"<= 5 min": r["start_to_first_step_s"] <= 300,
             "<= 30 s": r["start_to_first_step_cached_s"] <= 30,
             "<= 10 s": r["eval_s"] <= 10, "<= 4 GB": r["peak_rss_gb"] <= 4}
    rows = [
        ("tree", f"{r['frames']:,} frames, {r['tracklets']:,} tracklets (fraction "
                 f"{r['fraction']:g} of {r['dataset'].upper()})", ""),
        ("parse (pre-check + torchreid)", f"{r['parse_s']:.1f} s", ""),
        ("data manager, model, engine", f"{r['build_s']:.1f} s", ""),
        ("frame check, cold / cached", f"{r['frame_check_s']:.1f} s / "
                                       f"{r['frame_check_cached_s']:.1f} s", ""),
        ("CLIP-Memory pass", f"{r['memory_init_frames_per_s']:.0f} frames/s "
                             f"({r['memory_init_s'] / 60:.0f} min projected)", ""),
        ("dense test", f"{r['dense_test_frames_per_s']:.0f} frames/s", ""),
        ("first training step", f"{r['first_step_s']:.1f} s", ""),
        ("start to first step, cold", f"{r['start_to_first_step_s'] / 60:.1f} min", "<= 5 min"),
        ("start to first step, cached", f"{r['start_to_first_step_cached_s']:.0f} s", "<= 30 s"),
        ("evaluation {:,} x {:,} ({}-d)".format(*r["eval_size"]), f"{r['eval_s']:.2f} s",
         "<= 10 s"),
        ("peak memory of the process tree", f"{r['peak_rss_gb']:.2f} GB", "<= 4 GB"),
    ]
    lines = [f"`{r['command']}` ({r['cpus']} cores, load average "
             f"{r['load_average'][0]:.1f} while measured):", "",
             "| step | measured | goal |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c + (' (met)' if goals[c] else ' (not met)') if c else ''} |"
              for a, b, c in rows]
    return "\n".join(lines)


def train_step() -> str:
    out = subprocess.run(
        [PY, osp.join(REPO, "tools", "bench_train_step.py"), "--arch", "tfclip_vitb16",
         "--batch", "4", "--frames", "4", "--device", "cpu", "--stride", "16", "12",
         "--checkpointing", "off", "on", "--steps", "2", "--json"],
        check=True, capture_output=True, text=True).stdout
    rows = json.loads(out[out.index("["):])
    lines = ["| stride | checkpointing | step | clips/s | peak RSS |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['stride']} | {'on' if r['checkpointing'] else 'off'} | "
                     f"{r['step_s']:.2f} s | {r['clips_per_s']:.2f} | {r['peak_GiB']:.2f} GiB |")
    return "\n".join(lines)


#: tools/bench_peft.py's arguments for the ``peft`` section: ViT-B/16 at both strides, every mode
#: one warm-up and one timed step per process, glibc's allocator as it is (a small batch:
#: CPU steps of the full-size ViT take tens of seconds)
PEFT_BENCH = ["--arch", "tfclip_vitb16", "--batch", "4", "--frames", "2", "--stride", "16", "12",
              "--modes", "none", "lora", "prompt", "adapter", "--steps", "1", "--no-live"]


def peft() -> str:
    """tools/bench_peft.py: each mode beside full fine-tuning (``none``), ratios to it."""
    sys.path.insert(0, osp.join(REPO, "tools"))
    import bench_peft

    out = subprocess.run([PY, osp.join(REPO, "tools", "bench_peft.py"), *PEFT_BENCH, "--json"],
                         check=True, capture_output=True, text=True).stdout
    rows = json.loads(out[out.index("\n[") + 1:])
    head = (f"`python tools/bench_peft.py {' '.join(PEFT_BENCH)}` (random weights, "
            f"{rows[0]['threads']} CPU thread(s); load: the machine's load average during the "
            f"row, so step times are pessimistic when it exceeds the cores):")
    return head + "\n\n" + bench_peft.table(rows)


def extract() -> str:
    sys.path.insert(0, osp.join(REPO, "tools"))
    import bench_extract

    with tempfile.TemporaryDirectory() as tmp:
        rows = bench_extract.main(["--config-file", osp.join(REPO, "configs", "demo.yaml"),
                                   "--root", osp.join(tmp, "data"), "--save-dir",
                                   osp.join(tmp, "log")])
    lines = ["| pass | batched | one tracklet per forward |", "|---|---|---|"]
    for name in dict.fromkeys(r["pass"] for r in rows):
        fps = {r["mode"]: r["fps"] for r in rows if r["pass"] == name}
        lines.append(f"| {name} | {fps['batched']:,.0f} frames/s | "
                     f"{fps['one at a time']:,.0f} frames/s |")
    return "\n".join(lines)


#: (what is exported, the arguments of tools/export.py that export it; "{demo}": the demo's save dir)
EXPORTS = (
    ("the demo's checkpoint (`tfclip_tiny`)",
     ("--weights", "{demo}/checkpoints/latest.pth", "--format", "onnx", "torchscript")),
    ("`tfclip_vitb16`, random weights, 6 SIE cameras",
     ("--arch", "tfclip_vitb16", "--format", "onnx", "torchscript")),
)


def export() -> str:
    """``tools/export.py`` on the demo's checkpoint (run the ``demo`` section first) and on the
    full-size ``tfclip_vitb16``: the steps the tool takes (its defaults: 8 frames, the
    torch.export-based ONNX exporter, verification on 3 random clips), timed here."""
    import torch

    from tfclip_torchreid.export import (
        default_export_path,
        export_model,
        exported_files,
        load_inference_model,
        verify_export,
    )

    demo = osp.relpath(_demo_save_dir(), osp.join(RUNS, "demo"))
    lines = ["| model | format | file | export | max difference to PyTorch |",
             "|---|---|---|---|---|"]
    commands = []
    for what, args in EXPORTS:
        args = [a.format(demo=demo) for a in args]
        commands.append(f"`python tools/export.py {' '.join(args)}`")
        weights = args[args.index("--weights") + 1] if "--weights" in args else None
        arch = args[args.index("--arch") + 1] if "--arch" in args else None
        torch.manual_seed(0)  # as the tool does
        model = load_inference_model(arch, weights and osp.join(RUNS, "demo", weights))
        with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
            for fmt in args[args.index("--format") + 1:]:
                path = osp.join(tmp, default_export_path(model.cfg.arch, fmt))
                t0 = time.time()
                export_model(model, path, fmt, frames=8)
                seconds = time.time() - t0
                diff = verify_export(model, path, fmt, frames=8, batch=3)
                size = sum(osp.getsize(f) for f in exported_files(path)) / 2**20
                lines.append(f"| {what} | {fmt} | {size:.1f} MiB | {seconds:.0f} s | "
                             f"{diff:.1e} |")
    return "\n".join([" and ".join(commands) + " (8 frames per clip), on the machine of the "
                      "demo timings:", ""] + lines)


#: tools/bench_search.py runs of the ``search`` block (2048-d): the compressed index at 1M
#: tracklets, the exact one at 100k (it holds a queries x gallery distance matrix to compare)
SEARCH_RUNS = (["--gallery", "1000000"], ["--gallery", "100000", "--queries", "100", "--exact"])


def search_table(rows: List[dict]) -> str:
    """The ``search`` block from ``tools/bench_search.py --json`` results.

    Example:
        >>> row = {"index": "Flat", "params": "", "gallery": 10, "queries": 5, "build_s": 1.0,
        ...        "index_gb": 0.5, "store_gb": 0.0, "peak_rss_gb": 1.0, "queries_per_s": 20.0,
        ...        "queries_per_cpu_s": 25.0, "recall_at_10": 1.0, "exact_equal": True,
        ...        "load_avg": [2.0, 2.0, 2.0]}
        >>> search_table([row]).splitlines()[-1]
        '| Flat | 10 | 5 | 1 s | 0.50 GB | - | 1.00 GB | 20 | 25 | 1.000 | yes | 2.0 |'
    """
    lines = ["| index | gallery | queries | build | in memory | on disk | peak RSS | queries/s "
             "| queries/CPU s | recall@10 | = ranker | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = f"{r['index']} ({r['params']})" if r["params"] else r["index"]
        disk = f"{r['store_gb']:.2f} GB" if r["store_gb"] else "-"
        equal = {True: "yes", False: "no"}.get(r.get("exact_equal"), "-")
        lines.append(f"| {name} | {r['gallery']:,} | {r['queries']:,} | {r['build_s']:.0f} s | "
                     f"{r['index_gb']:.2f} GB | {disk} | {r['peak_rss_gb']:.2f} GB | "
                     f"{r['queries_per_s']:,.0f} | {r['queries_per_cpu_s']:,.0f} | "
                     f"{r['recall_at_10']:.3f} | {equal} | "
                     f"{r['load_avg'][0]:.1f} |")
    return "\n".join(lines)


def search() -> str:
    """``tools/bench_search.py --json`` for each of :data:`SEARCH_RUNS`, one table row each."""
    rows = []
    for args in SEARCH_RUNS:
        out = subprocess.run([PY, osp.join(REPO, "tools", "bench_search.py"), *args, "--json"],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"   bench_search.py {' '.join(args)}: {json.dumps(rows[-1])}", flush=True)
    return search_table(rows)


def _bench_video(args: List[str], cwd: str) -> dict:
    """Run tools/bench_video.py; its last line printed is its JSON."""
    cmd = [PY, osp.join(REPO, "tools", "bench_video.py"), *args]
    print("$ " + " ".join(cmd), flush=True)
    out = subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True,
                         env=dict(os.environ, HF_HUB_OFFLINE="1")).stdout
    return json.loads(out.strip().splitlines()[-1])


#: the arguments of README's video commands, run in the demo's folder (its checkpoint as README names it)
VIDEO_F1 = ("f1", "--weights", "log/demo/checkpoints/latest.pth", "--out", "log/video_f1")
VIDEO_SPEED = ("speed", "--arch", "tfclip_vitb16", "--clips", "4", "--frames", "8")


def _load(r: dict) -> str:
    return (f"load average {r['load_average_before'][0]:.1f} before, "
            f"{r['load_average_after'][0]:.1f} after, {r['cpus']} CPUs, {r['threads']} threads")


def video() -> str:
    """``tools/bench_video.py f1`` on the demo's checkpoint (run the ``demo`` section first) on the
    default synthetic 3-camera set, every backend; then ``speed`` on ``tfclip_vitb16``."""
    demo = osp.join(RUNS, "demo")
    _demo_save_dir()  # the demo's checkpoint must be there
    with tempfile.TemporaryDirectory() as tmp:
        f1 = _bench_video([*VIDEO_F1[:-1], osp.join(tmp, "video_f1")], cwd=demo)
        speed = _bench_video([*VIDEO_SPEED, "--out", osp.join(tmp, "speed"), "--cache-dir",
                              osp.join(tmp, "onnx")], cwd=demo)
    runs = f1["runs"]
    first = runs["pytorch"]["trained"]
    lines = [f"`python tools/bench_video.py {' '.join(VIDEO_F1)}` (the demo's checkpoint and an "
             f"untrained `tfclip_tiny` on the same {len(f1['videos'])}-camera synthetic set: "
             f"{first['tracks']} tracks, {first['true_pairs']} true cross-camera pairs; one run, "
             f"{_load(f1)}):", "",
             "| backend | pairwise F1, demo model | pairwise F1, untrained | gain | "
             "video frames/s (demo model) | crops embedded/s | cosine to PyTorch float32 (min) |",
             "|---|---|---|---|---|---|---|"]
    for backend, r in runs.items():
        t, u = r["trained"], r["untrained"]
        cosine = f"{t['cosine_to_pytorch_min']:.4f}" if "cosine_to_pytorch_min" in t else "-"
        lines.append(f"| {backend} | **{t['pairwise_f1']:.3f}** (P {t['pairwise_precision']:.2f}, "
                     f"R {t['pairwise_recall']:.2f}) | **{u['pairwise_f1']:.3f}** "
                     f"(P {u['pairwise_precision']:.2f}, R {u['pairwise_recall']:.2f}) | "
                     f"{t['pairwise_f1'] - u['pairwise_f1']:+.3f} | {t['video_frames_per_s']:.0f} | "
                     f"{t['crops_per_s']:.0f} | {cosine} |")
    lines += ["", "With the ground truth in hindsight (PyTorch): median cosine distance of one "
              "person in two cameras / of two people overlapping in one camera, and the best "
              "pairwise F1 of any threshold:", "",
              "| model | camera bias | one person, two cameras | two people, one camera | "
              "best F1 (threshold) |", "|---|---|---|---|---|"]
    for name, what in (("trained", "demo model"), ("untrained", "untrained `tfclip_tiny`")):
        for how, label in (("camera_bias_kept", "kept"), ("camera_bias_removed", "removed")):
            h = runs["pytorch"][name][how]
            lines.append(f"| {what} | {label} | {h['median_same_person_two_cameras']:.2f} | "
                         f"{h['median_two_people_one_camera']:.2f} | "
                         f"{h['best_f1_in_hindsight']:.3f} ({h['best_threshold_in_hindsight']:.2f}) |")
    lines += ["", f"`python tools/bench_video.py {' '.join(VIDEO_SPEED)}` (the test forward of "
              f"ViT-B/16, random weights, 4 clips x 8 frames at 256x128; {_load(speed)}):", "",
              "| backend | frames/s | max difference to PyTorch | cosine to PyTorch float32 (min) |",
              "|---|---|---|---|"]
    for backend, r in speed["forward"].items():
        lines.append(f"| {backend} | {r['frames_per_s']:.1f} | {r['max_abs_diff_to_pytorch']:.1e} | "
                     f"{r['cosine_to_pytorch_min']:.4f} |")
    return "\n".join(lines)


SECTIONS: Dict[str, Callable[[], str]] = {
    "switches": switches,
    "models": models,
    "paper-table-2": paper_table_2,
    **{name: _demo(name) for name in DEMOS},
    "pictures": pictures,
    "rank": rank,
    "train-step": train_step,
    "peft": peft,
    "extract": extract,
    "export": export,
    "search": search,
    "video": video,
    "scale": scale,
}
CODE_SECTIONS = ("switches", "models", "paper-table-2")


def block(text: str, name: str) -> str | None:
    """The content of block ``name`` in ``text`` (None if absent)."""
    m = re.search(rf"<!-- BEGIN:{name} -->\n(.*?)<!-- END:{name} -->", text, re.S)
    return None if m is None else m.group(1).rstrip("\n")


def replace_block(text: str, name: str, content: str) -> str:
    if block(text, name) is None:
        raise KeyError(f"README.md has no block {name!r} (<!-- BEGIN:{name} --> ... END)")
    return re.sub(rf"(<!-- BEGIN:{name} -->\n).*?(<!-- END:{name} -->)",
                  lambda m: m.group(1) + content + "\n" + m.group(2), text, flags=re.S)


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    p.add_argument("--check", action="store_true",
                   help="only compare the blocks generated from code; exit 1 if one is stale")
    args = p.parse_args(argv)
    with open(README) as f:
        text = f.read()
    if args.check:
        stale = [n for n in CODE_SECTIONS if block(text, n) != SECTIONS[n]()]
        print("stale: " + ", ".join(stale) if stale else "README blocks are up to date")
        return 1 if stale else 0
    missing = [n for n in args.sections if block(text, n) is None]
    if missing:  # before a long run, not after it
        raise SystemExit(f"README.md has no block {missing} (<!-- BEGIN:name --> ... END)")
    for name in [n for n in SECTIONS if n in args.sections]:  # a demo before its pictures
        print(f"== {name}", flush=True)
        content = SECTIONS[name]()
        with open(README) as f:  # as it is now: edits made while a section ran are kept
            text = f.read()
        text = replace_block(text, name, content)
        with open(README + ".tmp", "w") as f:  # after every block: a long run keeps its work
            f.write(text)
        os.replace(README + ".tmp", README)
    return 0


if __name__ == "__main__":
    from tfclip_torchreid import cli

    sys.exit(cli.run(main))
