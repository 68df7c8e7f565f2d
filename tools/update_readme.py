#!/usr/bin/env python
"""Regenerate the figures of README.md from the commands that produce them.

Every generated block of the README sits between ``<!-- BEGIN:name -->`` and ``<!-- END:name -->``
and is rewritten here from code or from a run, never by hand, so it cannot go stale:

* ``switches``, ``models``, ``paper-table-2``: from the code (the model options' dataclass, the
  architecture files, the complexity counts); a test checks that the README holds them;
* ``demo``, ``demo-clipreid``, ``demo-clipreid-market``, ``demo-rn50``: each demo config is run on
  freshly generated synthetic data (``python tools/train.py --config-file configs/<demo>.yaml``,
  under ``log/readme/``); wall time and the before/after mAP and CMC; ``pictures``: the
  ``tools/visualize.py`` pictures of the ``demo`` run's test features, copied to docs/images/;
* ``rank``: ``tools/bench_rank.py``; ``train-step``: ``tools/bench_train_step.py`` (ViT-B/16 on
  the CPU); ``extract``: ``tools/bench_extract.py``; ``export``: ``tools/export.py`` for
  ``tfclip_vitb16``; ``search``: ``tools/bench_search.py`` at 1M tracklets (compressed, and exact
  with 100 queries: ~10 GB of memory).

Examples:
    python tools/update_readme.py                           # everything (about half an hour)
    python tools/update_readme.py --sections switches models paper-table-2
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
from typing import Callable, Dict, List

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
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
def _run(cmd: List[str], cwd: str) -> float:
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, HF_HUB_OFFLINE="1"))
    return time.time() - t0


RUNS = osp.join(REPO, "log", "readme")  # run folders of the demos (git-ignored)


def _demo(config: str, *opts: str) -> Callable[[], str]:
    def run() -> str:
        folder = osp.join(RUNS, osp.splitext(config)[0])
        if osp.isdir(folder):
            shutil.rmtree(folder)
        os.makedirs(folder)
        save = osp.join(folder, "log")
        seconds = _run([PY, osp.join(REPO, "tools", "train.py"), "--config-file",
                        osp.join(REPO, "configs", config), "--root", osp.join(folder, "data"),
                        "--save-dir", save, "train.memory_cache_dir", "none", *opts], cwd=folder)
        with open(osp.join(save, "summary.json")) as f:
            summary = json.load(f)
        (name, after), = summary["after"].items()
        before = summary["before"][name]
        keys = ["mAP", "R1", "R5", "R10", "R20"]
        return "\n".join([
            f"`python tools/train.py --config-file configs/{config}` took {seconds:.0f} s here "
            f"(data generation included); {name} test: {after['num_query']} queries, "
            f"{after['num_gallery']} gallery items.",
            "", "| | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|",
            "| before training | " + " | ".join(f"{100 * before[k]:.1f}" for k in keys) + " |",
            "| after training | " + " | ".join(f"{100 * after[k]:.1f}" for k in keys) + " |",
        ])
    return run


def pictures() -> str:
    """Pictures of the ``demo`` run's test features (run the ``demo`` section first)."""
    sys.path.insert(0, osp.join(REPO, "tools"))
    import visualize

    feats = osp.join(RUNS, "demo", "log", "features")
    out = osp.join(RUNS, "demo", "pictures")
    visualize.main(["--query-features", osp.join(feats, "mars_query.npy"),
                    "--query-index", osp.join(feats, "mars_query.json"),
                    "--gallery-features", osp.join(feats, "mars_gallery.npy"),
                    "--gallery-index", osp.join(feats, "mars_gallery.json"),
                    "--out", out, "--topk", "5", "--max-queries", "4", "--tsne",
                    "--tsne-ignore-pids", "-1", "0"])
    images = osp.join(REPO, "docs", "images")
    os.makedirs(images, exist_ok=True)
    ranked = sorted(os.listdir(osp.join(out, "ranked")))[0]
    shutil.copy(osp.join(out, "ranked", ranked), osp.join(images, "demo_ranked.png"))
    shutil.copy(osp.join(out, "tsne.png"), osp.join(images, "demo_tsne.png"))
    return ("![a query tracklet and its top-5 gallery tracklets](docs/images/demo_ranked.png)\n"
            "![t-SNE of the demo's test features](docs/images/demo_tsne.png)")


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


def export() -> str:
    import torch

    from tfclip_torchreid.export import export_model, load_inference_model, verify_export

    model = load_inference_model("tfclip_vitb16")
    lines = ["| format | file | export | max difference to PyTorch |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        for fmt, ext in (("onnx", "onnx"), ("torchscript", "pt")):
            t0 = time.time()
            path = export_model(model, osp.join(tmp, f"tfclip_vitb16.{ext}"), fmt, frames=8)
            seconds = time.time() - t0
            diff = verify_export(model, path, fmt, frames=8)
            size = sum(osp.getsize(osp.join(tmp, f)) for f in os.listdir(tmp)
                       if f.startswith(f"tfclip_vitb16.{ext}"))
            lines.append(f"| {fmt} | {size / 2**20:.0f} MiB | {seconds:.0f} s | {diff:.1e} |")
    return "\n".join(lines)


#: tools/bench_search.py runs of the ``search`` block: 1M tracklets at 2048-d
SEARCH_RUNS = (["--gallery", "1000000"], ["--gallery", "1000000", "--queries", "100", "--exact"])


def search_table(rows: List[dict]) -> str:
    """The ``search`` block from ``tools/bench_search.py --json`` results.

    Example:
        >>> row = {"index": "Flat", "params": "", "gallery": 10, "queries": 5, "build_s": 1.0,
        ...        "index_gb": 0.5, "store_gb": 0.0, "peak_rss_gb": 1.0, "queries_per_s": 20.0,
        ...        "recall_at_10": 1.0, "exact_equal": True, "load_avg": [2.0, 2.0, 2.0]}
        >>> search_table([row]).splitlines()[-1]
        '| Flat | 10 | 5 | 1 s | 0.50 GB | - | 1.00 GB | 20 | 1.000 | yes | 2.0 |'
    """
    lines = ["| index | gallery | queries | build | in memory | on disk | peak RSS | queries/s "
             "| recall@10 | = ranker | load |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = f"{r['index']} ({r['params']})" if r["params"] else r["index"]
        disk = f"{r['store_gb']:.2f} GB" if r["store_gb"] else "-"
        equal = {True: "yes", False: "no"}.get(r.get("exact_equal"), "-")
        lines.append(f"| {name} | {r['gallery']:,} | {r['queries']:,} | {r['build_s']:.0f} s | "
                     f"{r['index_gb']:.2f} GB | {disk} | {r['peak_rss_gb']:.2f} GB | "
                     f"{r['queries_per_s']:,.0f} | {r['recall_at_10']:.3f} | {equal} | "
                     f"{r['load_avg'][0]:.1f} |")
    return "\n".join(lines)


def search() -> str:
    rows = []
    for args in SEARCH_RUNS:
        out = subprocess.run([PY, osp.join(REPO, "tools", "bench_search.py"), *args, "--json"],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    return search_table(rows)


SECTIONS: Dict[str, Callable[[], str]] = {
    "switches": switches,
    "models": models,
    "paper-table-2": paper_table_2,
    "demo": _demo("demo.yaml", "test.save_features", "True"),
    "pictures": pictures,
    "demo-clipreid": _demo("demo_clipreid.yaml"),
    "demo-clipreid-market": _demo("demo_clipreid_market.yaml"),
    "demo-rn50": _demo("demo_rn50.yaml"),
    "rank": rank,
    "train-step": train_step,
    "extract": extract,
    "export": export,
    "search": search,
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
    for name in args.sections:
        print(f"== {name}", flush=True)
        text = replace_block(text, name, SECTIONS[name]())
        with open(README, "w") as f:  # after every block: a long run keeps what it finished
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
