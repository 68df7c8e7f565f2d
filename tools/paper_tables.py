#!/usr/bin/env python
"""Run the rows of a paper table and print it in the paper's layout, ours beside the paper's.

Tables in the paper's numbering: ``2`` (paper Table 2 = supplement Table 4, B1-B6), ``S2``
(supplement Table 2, image ReID rows), ``S3`` (TMD components, A1-A6), ``S5`` (temporal
fusions), ``S6`` (SSP layers N), ``S7`` (with / without CLIP-Memory). Each row is a config under
``configs/paper/`` (``configs/paper/tables.json`` holds the paper's numbers; the code is
``tfclip_torchreid/paper_tables/``).

Params(M) / FLOPs(G) are always ours for the full-size model (built on the meta device, no data,
no weights) under the paper's counting convention (docs/complexity.md). mAP / Rank-k come from
training and testing every row: on real data (``--root``, the paper's settings) or, with
``--quick``, tiny random models on small synthetic data (a smoke run of every row; its numbers
are not comparable with the paper's).

Examples:
    python tools/paper_tables.py --table 2 --counts-only
    python tools/paper_tables.py --table S3 --counts-only --json
    python tools/paper_tables.py --table S7 --quick
    python tools/paper_tables.py --table 2 --counts-only model.ssp_form released
    python tools/paper_tables.py --table 2 --root /data/reid-data \\
        model.pretrained /weights/ViT-B-16.pt --datasets mars

KEY VALUE options come before --rows / --datasets (which take several values) or after "--".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from tfclip_torchreid import cli  # noqa: E402
from tfclip_torchreid.paper_tables import (  # noqa: E402
    QUICK_SIZES,
    format_table,
    get_table,
    list_tables,
    report_rows,
    row_config,
    row_counts,
    run_row,
)
from tfclip_torchreid.utils.logger import console_logging  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", required=True,
                   help=f"the paper's numbering: {', '.join(list_tables())} (S4 = 2)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--root", default="", help="train and test every row on the real data here")
    mode.add_argument("--quick", action="store_true",
                      help="tiny random models on small synthetic data (CPU, minutes)")
    p.add_argument("--counts-only", action="store_true",
                   help="only parameters and FLOPs (no data, no training)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per row")
    p.add_argument("--rows", nargs="+", default=None, help="only these rows (e.g. B1 B6)")
    p.add_argument("--datasets", nargs="+", default=None,
                   help="only these datasets of the table (default: all; --quick: those with a "
                        "synthetic generator)")
    p.add_argument("--out", default="log/paper_tables", help="where runs write (one folder each)")
    p.add_argument("opts", nargs="*", default=[],
                   help="config options for every row (counts and runs), KEY VALUE (e.g. "
                        "train.max_epoch 80)")
    return p


def _datasets(table, args) -> list:
    names = list(args.datasets or table.datasets)
    unknown = sorted(set(names) - set(table.datasets))
    if unknown:
        raise SystemExit(f"table {table.key} reports {list(table.datasets)}, not {unknown}")
    if args.quick:
        names = [d for d in names if d in QUICK_SIZES]
        if not names:
            raise SystemExit(f"--quick: no synthetic generator for {list(table.datasets)}")
    return names


def main(argv: list[str] | None = None) -> list:
    """Runs the tool with the package's log lines shown on stdout."""
    with console_logging():
        return _run(argv)


def _run(argv: list[str] | None = None) -> list:
    args = build_parser().parse_intermixed_args(argv)
    try:
        table = get_table(args.table)
        wanted = {table.row(name).name for name in args.rows or ()}  # KeyError names the rows
        rows = [row for row in table.rows if not wanted or row.name in wanted]  # table order
    except KeyError as err:
        raise SystemExit(err.args[0]) from None
    if not args.counts_only and not (args.root or args.quick):
        raise SystemExit("give --root DIR (train on real data), --quick (synthetic smoke run) or "
                         "--counts-only (parameters and FLOPs only)")
    t0 = time.time()
    counts = {row.name: row_counts(table, row, args.opts) for row in rows}
    runs: dict = {}
    mode = "counts-only"
    if not args.counts_only:
        mode = "quick" if args.quick else "root"
        datasets = _datasets(table, args)
        configs = {(row.name, d): row_config(row, d, root=args.root, quick=args.quick,
                                             out_dir=args.out, opts=args.opts, table=table)
                   for row in rows for d in datasets}  # every config is checked before any run
        for (name, d), cfg in configs.items():
            runs.setdefault(name, {})[d] = run_row(cfg)
    selected = dataclasses.replace(table, rows=tuple(rows))
    report = report_rows(selected, counts, runs, mode)
    if args.json:
        print(json.dumps(report, indent=1))
        return report
    note = {"counts-only": "Metrics: not run (--counts-only).",
            "quick": "Metrics: --quick, tiny random models on synthetic data, not comparable.",
            "root": f"Metrics: our runs on {args.root}."}[mode]
    print(format_table(selected, report, note))
    print(f"\nParams: visual encoder + heads (+ text tower without its token table + prompts), "
          f"no SIE, no TMD heads; FLOPs: MACs per 256x128 frame (docs/complexity.md). "
          f"{time.time() - t0:.0f} s.")
    return report


if __name__ == "__main__":
    sys.exit(cli.run(main))
