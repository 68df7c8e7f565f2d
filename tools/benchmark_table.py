#!/usr/bin/env python
"""Collect ``results.json`` files into one markdown and one CSV table (dataset x model).

Example:
    python tools/benchmark_table.py log/benchmark --out log/benchmark/table
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from tfclip_torchreid import cli  # noqa: E402

COLUMNS = ["dataset", "model", "mAP", "R1", "R5", "R10", "R20", "train_s", "test_s", "gallery_includes_query"]


def collect(folder: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(osp.join(folder, "**", "results.json"), recursive=True)):
        with open(path) as f:
            data = json.load(f)
        rows.extend(data if isinstance(data, list) else [data])
    rows.sort(key=lambda r: (r.get("dataset", ""), r.get("model", "")))
    return rows


def to_markdown(rows: list[dict]) -> str:
    head = "| dataset | model | mAP | R1 | R5 | R10 | R20 | train time (s) | test time (s) | gallery ∪ query |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        pct = [f"{100 * r[k]:.1f}" if isinstance(r.get(k), (int, float)) else "-" for k in COLUMNS[2:7]]
        lines.append(
            f"| {r.get('dataset')} | {r.get('model')} | " + " | ".join(pct)
            + f" | {r.get('train_s', 0):.1f} | {r.get('test_s', 0):.1f} | "
            + ("yes" if r.get("gallery_includes_query") else "no") + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="folder searched recursively for results.json")
    p.add_argument("--out", default="", help="output path without extension (default: <folder>/benchmark)")
    args = p.parse_args(argv)
    rows = collect(args.folder)
    if not rows:
        raise SystemExit(f"no results.json under {args.folder}")
    out = args.out or osp.join(args.folder, "benchmark")
    with open(out + ".md", "w") as f:
        f.write(to_markdown(rows))
    with open(out + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    print(to_markdown(rows))
    print(f"written {out}.md and {out}.csv")
    return rows


if __name__ == "__main__":
    sys.exit(cli.run(main))
