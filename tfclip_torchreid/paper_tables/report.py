"""The paper tables with our numbers beside the paper's: one JSON-able dict per row, and the
table in the paper's layout (markdown).

Example:
    >>> from tfclip_torchreid.paper_tables import get_table, row_counts
    >>> table = get_table("S7")
    >>> rows = report_rows(table, {r.name: row_counts(table, r) for r in table.rows})
    ... # doctest: +SKIP
    >>> print(format_table(table, rows))  # doctest: +SKIP
"""

from __future__ import annotations

import os.path as osp
from typing import Any, Dict, List, Mapping, Sequence

from .tables import CONFIG_DIR, DATASET_NAMES, METRIC_NAMES, PaperTable

__all__ = ["report_rows", "format_table"]


def _pct_diff(ours: float, paper: float | None) -> float | None:
    return None if not paper else 100.0 * (ours / paper - 1.0)


def report_rows(table: PaperTable, counts: Mapping[str, Mapping[str, Any]],
                runs: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
                mode: str = "counts-only", config_dir: str = CONFIG_DIR) -> List[Dict[str, Any]]:
    """One JSON-able dict per row: ours beside the paper's.

    Args:
        counts: row name -> :func:`row_counts`.
        runs: row name -> dataset -> :func:`run_row` (absent: not run).
        mode: ``counts-only``, ``quick`` or ``root``.

    Keys: ``table``, ``row``, ``label``, ``config``, ``arch``, ``marks``, ``params`` (paper
    convention, exact), ``params_m``, ``paper_params_m``, ``params_diff_pct``, ``flops_g``
    (MACs per frame, paper convention), ``paper_flops_g``, ``params_components``, ``macs``,
    ``results`` (dataset -> metrics in %, runs only), ``paper_results``, ``runs``, ``mode``.
    """
    runs = runs or {}
    out = []
    for row in table.rows:
        c = counts[row.name]
        params = int(c["params"]["paper_convention"])
        flops = c["macs"]["paper_convention"] / 1e9
        row_runs = runs.get(row.name, {})
        out.append({
            "table": table.key,
            "row": row.name,
            "label": row.title,
            "config": osp.relpath(osp.join(config_dir, row.config),
                                  osp.dirname(osp.dirname(config_dir))),
            "arch": c["arch"],
            "marks": dict(zip(table.marks, row.marks)),
            "params": params,
            "params_m": params / 1e6,
            "paper_params_m": row.params_m,
            "params_diff_pct": _pct_diff(params / 1e6, row.params_m),
            "flops_g": flops,
            "paper_flops_g": row.flops_g,
            "flops_diff_pct": _pct_diff(flops, row.flops_g),
            "params_components": dict(c["params"]),
            "macs": dict(c["macs"]),
            "results": {d: {k: r["metrics"][k] for k in table.metrics if k in r["metrics"]}
                        for d, r in row_runs.items()},
            "paper_results": {d: dict(zip(table.metrics, v)) for d, v in row.results.items()},
            "runs": {d: {k: r[k] for k in ("arch", "save_dir", "log", "seconds")}
                     for d, r in row_runs.items()},
            "mode": mode,
        })
    return out


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(table: PaperTable, rows: Sequence[Mapping[str, Any]], note: str = "") -> str:
    """The table in the paper's layout (markdown): each cell "ours / paper".

    Params (M) and FLOPs (G) cells add our difference from the paper in %; a metric we did not
    run is "-".
    """
    header = [table.row_header]
    for group in table.layout:
        if group == "marks":
            header += list(table.marks)
        elif group == "counts":
            header += ["Params(M)", "FLOPs(G)"]
        else:
            header += [f"{DATASET_NAMES.get(d, d)} {METRIC_NAMES.get(m, m)}"
                       for d in table.datasets for m in table.metrics]
    lines = [f"{table.source}: {table.caption}.",
             "Each cell: ours / paper." + (f" {note}" if note else ""), "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["label"]]
        for group in table.layout:
            if group == "marks":
                cells += ["✓" if r["marks"][m] else "×" for m in table.marks]
            elif group == "counts":
                diff = r["params_diff_pct"]
                cells.append(f"{r['params_m']:.2f} / {_num(r['paper_params_m'], 2)}"
                             + ("" if diff is None else f" ({diff:+.2f}%)"))
                cells.append(f"{r['flops_g']:.2f} / {_num(r['paper_flops_g'], 2)}")
            else:
                for d in table.datasets:
                    ours, paper = r["results"].get(d, {}), r["paper_results"].get(d, {})
                    cells += [f"{_num(ours.get(m), 1)} / {_num(paper.get(m), 1)}"
                              for m in table.metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
