"""The ablation tables of the TF-CLIP paper and its supplement as runnable experiments.

Every row of paper Table 2 (= supplement Table 4) and of supplement Tables 2, 3, 5, 6 and 7 is

* one config file, ``configs/paper/<row>.yaml``, holding only what differs from its base (named
  by ``_BASE_``: the MARS config or another row), and
* one :class:`PaperRow` in :data:`TABLES`, which names that file and holds the numbers the paper
  reports for the row (parameters, FLOPs, mAP and CMC, in the paper's units).

:func:`row_config` builds the full yacs configuration of a row (on real data, or the tiny
synthetic ``--quick`` variant), :func:`row_counts` the parameter and MAC counts of its full-size
model under the paper's counting convention (:mod:`tfclip_torchreid.models.complexity`),
:func:`run_row` trains and tests it through :mod:`tfclip_torchreid.engine.runner`, and
:func:`report_rows` / :func:`format_table` put our numbers beside the paper's in the paper's
layout. ``tools/paper_tables.py`` is the command line.

yacs has no config inheritance; :func:`merge_config_file` adds the ``_BASE_`` key (a path
relative to the file, as in detectron2 / fvcore): the base is merged first, then the file.

Rows whose model has SSP use ``ssp_form="paper"`` (cross-attention + MLP per layer, 3.15 M
parameters each), the SSP the paper's parameter counts describe; the released code's SSP
(``model.ssp_form released`` on the command line) is 2.10 M larger at N = 2.

Example:
    >>> table = get_table("2")
    >>> [row.name for row in table.rows]
    ['B1', 'B2', 'B3', 'B4', 'B5', 'B6']
    >>> cfg = row_config(table.rows[0])
    >>> cfg.model.name, cfg.model.memory_source, cfg.model.temporal
    ('clipreid_vitb16', 'text', 'tap')
    >>> counts = row_counts(table, table.rows[1])
    >>> counts["params"]["paper_convention"], round(counts["macs"]["paper_convention"] / 1e9, 2)
    (86942976, 11.26)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import os.path as osp
import sys
import time
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from yacs.config import CfgNode

from .config import BASE_KEY, get_default_config, merge_config_file

__all__ = ["PaperRow", "PaperTable", "TABLES", "get_table", "list_tables", "CONFIG_DIR",
           "BASE_KEY", "merge_config_file", "row_config", "quick_overrides", "row_counts",
           "run_row", "report_rows", "format_table", "QUICK_ARCHS", "QUICK_SIZES"]

#: ``configs/paper`` of the repository this package lives in
CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "configs", "paper")

DATASET_NAMES = {"mars": "MARS", "lsvid": "LS-VID", "market1501": "Market1501",
                 "msmt17": "MSMT17"}
METRIC_NAMES = {"mAP": "mAP", "R1": "Rank-1", "R5": "Rank-5"}


@dataclasses.dataclass(frozen=True)
class PaperRow:
    """One row of a paper table: its config file and the numbers the paper reports.

    Attributes:
        name: the row's id (``--rows``), the paper's model name where it has one.
        config: file name under ``configs/paper``.
        marks: the table's component columns (True = ✓), in :attr:`PaperTable.marks` order.
        params_m, flops_g: reported Params (M) and FLOPs (G); None where the table has none.
        results: dataset -> reported metrics (%) in :attr:`PaperTable.metrics` order.
        label: how the paper prints the row (default: ``name``).
    """

    name: str
    config: str
    marks: Tuple[bool, ...] = ()
    params_m: float | None = None
    flops_g: float | None = None
    results: Mapping[str, Tuple[float, ...]] = dataclasses.field(default_factory=dict)
    label: str = ""

    @property
    def title(self) -> str:
        return self.label or self.name


@dataclasses.dataclass(frozen=True)
class PaperTable:
    """A table of the paper or the supplement.

    Attributes:
        key: ``"2"`` (paper Table 2) or ``"S2"``, ``"S3"``, ... (supplement tables).
        source, caption: where it is printed and its caption.
        row_header: the first column's header.
        marks: component columns (✓/×), e.g. ``("CLIP-M", "SSP", "TMD")``.
        datasets: torchreid dataset names of the metric column groups.
        metrics: metric keys (``mAP``, ``R1``, ``R5``) of each dataset group.
        layout: column groups after the row name: ``marks``, ``counts`` (Params, FLOPs) and
            ``metrics``, in the paper's order; a table without ``counts`` prints none.
        num_classes, camera_num: the training set the counts are for (MARS: 625, 6).
        rows: the rows.
    """

    key: str
    source: str
    caption: str
    row_header: str
    marks: Tuple[str, ...]
    datasets: Tuple[str, ...]
    metrics: Tuple[str, ...]
    layout: Tuple[str, ...]
    rows: Tuple[PaperRow, ...]
    num_classes: int = 625
    camera_num: int = 6

    def row(self, name: str) -> PaperRow:
        for r in self.rows:
            if r.name.lower() == name.lower():
                return r
        raise KeyError(f"table {self.key} has no row {name!r}; rows: "
                       f"{[r.name for r in self.rows]}")


Y, N = True, False


def _mars_lsvid(mars: Tuple[float, ...], lsvid: Tuple[float, ...]) -> Dict[str, Tuple[float, ...]]:
    return {"mars": mars, "lsvid": lsvid}


TABLES: Dict[str, PaperTable] = {t.key: t for t in (
    PaperTable(
        key="2", source="paper Table 2 (= supplement Table 4)",
        caption="Comparison of different components and the computational cost on MARS and "
                "LS-VID",
        row_header="Model", marks=("CLIP-M", "SSP", "TMD"), datasets=("mars", "lsvid"),
        metrics=("mAP", "R1", "R5"), layout=("marks", "counts", "metrics"),
        rows=(
            PaperRow("B1", "t2_b1.yaml", (N, N, N), 126.78, 14.24,
                     _mars_lsvid((88.1, 91.7, 97.4), (80.6, 88.8, 96.3))),
            PaperRow("B2", "t2_b2.yaml", (Y, N, N), 86.94, 11.26,
                     _mars_lsvid((88.4, 91.6, 97.9), (80.3, 87.7, 95.7))),
            PaperRow("B3", "t2_b3.yaml", (Y, Y, N), 94.21, 12.11,
                     _mars_lsvid((88.8, 92.1, 97.6), (81.3, 89.9, 96.2))),
            PaperRow("B4", "t2_b4.yaml", (Y, N, Y), 97.02, 11.72,
                     _mars_lsvid((89.2, 92.3, 97.7), (81.6, 88.9, 96.4))),
            PaperRow("B5", "t2_b5.yaml", (N, N, Y), 136.86, 14.70,
                     _mars_lsvid((89.3, 92.7, 97.8), (82.3, 90.3, 96.7))),
            PaperRow("B6", "t2_b6.yaml", (Y, Y, Y), 104.26, 12.53,
                     _mars_lsvid((89.4, 93.0, 97.9), (83.8, 90.4, 97.1))),
        )),
    PaperTable(
        key="S2", source="supplement Table 2 (our rows: CLIP-ReID and the CLIP-Memory variants)",
        caption="CLIP-Memory on image-based person ReID (Market1501 and MSMT17)",
        row_header="Methods", marks=(), datasets=("market1501", "msmt17"),
        metrics=("mAP", "R1"), layout=("metrics",), num_classes=751, camera_num=6,
        rows=(
            PaperRow("CLIP-ReID", "s2_clipreid.yaml",
                     results={"market1501": (90.4, 95.5), "msmt17": (73.2, 88.0)},
                     label="CLIP-ReID*"),
            PaperRow("CLIP-M", "s2_clipm.yaml",
                     results={"market1501": (89.6, 95.0), "msmt17": (72.0, 87.4)},
                     label="+CLIP-M"),
            PaperRow("SSP", "s2_ssp.yaml",
                     results={"market1501": (90.4, 95.7), "msmt17": (73.9, 88.5)},
                     label="+SSP"),
        )),
    PaperTable(
        key="S3", source="supplement Table 3",
        caption="Comparison of different components in TMD on MARS",
        row_header="Model", marks=("TMC", "MD", "SSP"), datasets=("mars",),
        metrics=("mAP", "R1"), layout=("marks", "metrics", "counts"),
        rows=(
            PaperRow("A1", "s3_a1.yaml", (N, N, N), 86.94, 11.26, {"mars": (88.4, 91.6)}),
            PaperRow("A2", "s3_a2.yaml", (Y, N, N), 89.93, 11.26, {"mars": (88.8, 91.9)}),
            PaperRow("A3", "s3_a3.yaml", (Y, Y, N), 97.02, 11.72, {"mars": (89.2, 92.3)}),
            PaperRow("A4", "s3_a4.yaml", (N, N, Y), 94.21, 12.11, {"mars": (88.8, 92.1)}),
            PaperRow("A5", "s3_a5.yaml", (Y, N, Y), 97.17, 12.11, {"mars": (89.0, 92.5)}),
            PaperRow("A6", "s3_a6.yaml", (Y, Y, Y), 104.26, 12.53, {"mars": (89.4, 93.0)}),
        )),
    PaperTable(
        key="S5", source="supplement Table 5",
        caption="Comparison of different temporal fusion methods (on model B2)",
        row_header="Methods", marks=(), datasets=("mars",), metrics=("mAP", "R1"),
        layout=("metrics", "counts"),
        rows=(
            PaperRow("TAP", "s5_tap.yaml", (), 86.94, 11.26, {"mars": (88.4, 91.6)}),
            PaperRow("Conv1D", "s5_conv1d.yaml", (), 87.31, 11.26, {"mars": (88.1, 91.8)}),
            PaperRow("Transf_cls", "s5_transf_cls.yaml", (), 106.23, 11.41,
                     {"mars": (87.5, 91.5)}),
            PaperRow("Transf", "s5_transf.yaml", (), 106.22, 11.39, {"mars": (88.2, 91.4)}),
            PaperRow("TMD", "s5_tmd.yaml", (), 97.02, 11.72, {"mars": (89.2, 92.3)}),
        )),
    PaperTable(
        key="S6", source="supplement Table 6",
        caption="Effect of different layers in SSP (on model B2)",
        row_header="N", marks=(), datasets=("mars",), metrics=("mAP", "R1"),
        layout=("metrics", "counts"),
        rows=(
            PaperRow("N1", "s6_n1.yaml", (), 91.06, 11.68, {"mars": (88.5, 91.9)}, label="1"),
            PaperRow("N2", "s6_n2.yaml", (), 94.21, 12.11, {"mars": (88.8, 92.1)}, label="2"),
            PaperRow("N3", "s6_n3.yaml", (), 97.36, 12.53, {"mars": (87.4, 92.1)}, label="3"),
            PaperRow("N4", "s6_n4.yaml", (), 100.51, 12.95, {"mars": (88.4, 92.3)}, label="4"),
        )),
    PaperTable(
        key="S7", source="supplement Table 7",
        caption="Comparison w/wo CLIP-Memory", row_header="Methods", marks=(),
        datasets=("mars",), metrics=("mAP", "R1"), layout=("metrics",),
        rows=(
            PaperRow("B2", "s7_b2.yaml", results={"mars": (88.4, 91.6)}, label="Model B2"),
            PaperRow("B2-woCLIPM", "s7_b2_wo_clipm.yaml", results={"mars": (84.9, 90.2)},
                     label="-wo CLIP-M"),
            PaperRow("B4", "s7_b4.yaml", results={"mars": (89.2, 92.3)}, label="Model B4"),
            PaperRow("B4-woCLIPM", "s7_b4_wo_clipm.yaml", results={"mars": (87.3, 91.0)},
                     label="-wo CLIP-M"),
        )),
)}

#: other names of a table: the supplement's Table 4 is the paper's Table 2
TABLE_ALIASES = {"S4": "2", "T2": "2"}


def list_tables() -> List[str]:
    """Keys of :data:`TABLES` (``"2"``, ``"S2"``, ``"S3"``, ``"S5"``, ``"S6"``, ``"S7"``)."""
    return list(TABLES)


def get_table(key: str) -> PaperTable:
    """A table by the paper's numbering: ``"2"`` (= ``"S4"``), ``"S2"``, ``"S3"``, ``"S5"``...

    Example:
        >>> get_table("s4").key, get_table("S3").rows[1].name
        ('2', 'A2')
    """
    k = str(key).strip().upper()
    k = TABLE_ALIASES.get(k, k)
    if k not in TABLES:
        raise KeyError(f"no paper table {key!r}; available: {list_tables()} (2 = the paper's "
                       f"Table 2 = the supplement's Table 4; S<n> = the supplement's Table n)")
    return TABLES[k]


# ---------------------------------------------------------------------------------- configs
#: the tiny architecture ``--quick`` trains instead of each full-size one
QUICK_ARCHS = {"tfclip_vitb16": "tfclip_tiny", "clipreid_vitb16": "clipreid_tiny",
               "tfclip_rn50": "tfclip_rn50_tiny"}
#: synthetic dataset sizes of ``--quick`` (``data.synthetic_sizes``), per dataset
QUICK_SIZES = {
    "mars": dict(height=64, width=32, num_train_ids=8, num_test_ids=8, num_distractors=40,
                 num_junk=2, min_len=3, max_len=14),
    "lsvid": dict(height=64, width=32, num_train_ids=8, num_test_ids=8, num_gallery_ids=8),
    "market1501": dict(height=64, width=32, num_train_ids=8, num_test_ids=8),
}


def quick_overrides(cfg: CfgNode, out_dir: str) -> List[Any]:
    """``KEY VALUE`` pairs that turn a row's config into ``--quick``'s smoke run: the tiny
    architecture of the same family with random weights, a small synthetic dataset under
    ``<out_dir>/synthetic-data``, 64x32 frames, 4-frame clips, 3 epochs (3 for CLIP-ReID's
    stage 1), 8 clips per batch. Every switch of the row is kept."""
    arch = cfg.model.name
    if arch not in QUICK_ARCHS:
        raise ValueError(f"--quick has no tiny counterpart of {arch!r}; known: "
                         f"{sorted(QUICK_ARCHS)}")
    image = cfg.data.seq_len == 1
    return [
        "model.name", QUICK_ARCHS[arch], "model.pretrained", "",
        "data.root", osp.join(out_dir, "synthetic-data"), "data.synthetic", True,
        "data.height", 64, "data.width", 32, "data.seq_len", 1 if image else 4,
        "data.workers", 0,
        "train.batch_size", 8, "train.max_epoch", 3, "train.lr", 1e-3,
        "train.warmup_epochs", 1, "train.milestones", [100], "train.print_freq", 1000,
        "train.memory_cache_dir", "none",
        "stage1.max_epoch", 3, "stage1.batch_size", 16, "stage1.warmup_epochs", 1,
        "test.batch_size", 16, "test.eval_freq", -1,
    ]


def _set(cfg: CfgNode, pairs: Sequence[Any]) -> None:
    """Set ``KEY VALUE`` pairs with Python values (yacs' merge_from_list parses strings)."""
    for key, value in zip(pairs[::2], pairs[1::2]):
        node = cfg
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value


def row_config(row: PaperRow, dataset: str | None = None, root: str | None = None,
               quick: bool = False, out_dir: str | None = None, opts: Sequence[str] = (),
               config_dir: str = CONFIG_DIR, table: PaperTable | None = None) -> CfgNode:
    """The full yacs configuration of a row.

    Args:
        row: the row (its ``configs/paper`` file is merged over the default config).
        dataset: train and test on this dataset instead of the file's (e.g. ``"lsvid"``).
        root: the data root (real data).
        quick: the tiny synthetic variant (:func:`quick_overrides`); ``root`` is ignored.
        out_dir: outputs go to ``<out_dir>/table<key>/<row>/<dataset>`` (needs ``table``).
        opts: ``KEY VALUE`` strings merged last (as on ``tools/train.py``'s command line).
        config_dir: where the row files are.
        table: the row's table (for the output folder).

    Example:
        >>> cfg = row_config(get_table("2").row("B5"), dataset="lsvid", root="/data")
        >>> cfg.model.name, cfg.model.temporal, cfg.data.sources, cfg.data.root
        ('clipreid_vitb16', 'tmd', ['lsvid'], '/data')
    """
    cfg = get_default_config()
    merge_config_file(cfg, osp.join(config_dir, row.config))
    if dataset:
        cfg.data.sources, cfg.data.targets = [dataset], [dataset]
    name = cfg.data.sources[0]
    if quick:
        _set(cfg, quick_overrides(cfg, out_dir or "log/paper_tables"))
        cfg.data.synthetic_sizes = CfgNode(dict(QUICK_SIZES.get(name, {})), new_allowed=True)
    elif root:
        cfg.data.root = root
    if out_dir and table is not None:
        cfg.data.save_dir = osp.join(out_dir, f"table{table.key}", row.name, name)
    opts = list(opts)
    if len(opts) % 2:
        raise ValueError(f"options must be KEY VALUE pairs, got {opts}")
    try:
        cfg.merge_from_list(opts)
    except (KeyError, AssertionError, ValueError) as err:
        raise ValueError(f"bad config option in {opts}: {err}") from err
    return cfg


# ---------------------------------------------------------------------------------- counts
def row_counts(table: PaperTable, row: PaperRow, opts: Sequence[str] = (),
               config_dir: str = CONFIG_DIR) -> Dict[str, Any]:
    """Parameters and MACs of the row's full-size model (``model_complexity``, meta device) for
    the table's training set (MARS: 625 identities, 6 cameras) and the config's frame size and
    clip length; ``opts`` (``KEY VALUE``) change the config first (e.g. ``model.ssp_form
    released``).

    Example:
        >>> t = get_table("2")
        >>> row_counts(t, t.row("B6"), ["model.ssp_form", "released"])["params"]["ssp"]
        9195520
    """
    from .engine.runner import model_overrides
    from .models.complexity import model_complexity

    cfg = row_config(row, opts=opts, config_dir=config_dir)
    switches = model_overrides(cfg)
    switches["image_size"] = (cfg.data.height, cfg.data.width)
    return model_complexity(cfg.model.name, table.num_classes, table.camera_num,
                            num_frames=cfg.data.seq_len, **switches)


# ---------------------------------------------------------------------------------- runs
def _status(stream: Any, line: str) -> None:
    stream.write(line + "\n")
    stream.flush()


def run_row(cfg: CfgNode, log: Any = None) -> Dict[str, Any]:
    """Train and test one configuration with :func:`~.engine.runner.run_from_config`.

    Its console output goes to ``<save_dir>/paper_tables.log``; one line per run goes to ``log``
    (default: standard error). Returns ``{"dataset", "arch", "save_dir", "log", "seconds",
    "metrics"}`` with metrics in %.
    """
    from .engine.runner import run_from_config

    log = log or sys.stderr
    os.makedirs(cfg.data.save_dir, exist_ok=True)
    log_path = osp.join(cfg.data.save_dir, "paper_tables.log")
    dataset = cfg.data.targets[0] if cfg.data.targets else cfg.data.sources[0]
    _status(log, f"=> {cfg.model.name} on {dataset}: {cfg.data.save_dir}")
    t0 = time.time()
    with open(log_path, "w") as f:
        try:
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                out = run_from_config(cfg)
        except BaseException:
            f.flush()
            _status(log, f"   failed; its output is in {log_path}")
            raise
    seconds = time.time() - t0
    after = out.get("after") or {}
    result = after.get(dataset) or next(iter(after.values()), None)
    if result is None:
        raise RuntimeError(f"the run in {cfg.data.save_dir} gave no test result (log: {log_path})")
    metrics = {k: 100.0 * float(v) for k, v in result.items()
               if k in ("mAP", "mINP") or (k.startswith("R") and k[1:].isdigit())}
    _status(log, f"   {seconds:.1f} s: " + ", ".join(f"{k} {v:.1f}" for k, v in metrics.items()
                                                    if k in METRIC_NAMES))
    return {"dataset": dataset, "arch": cfg.model.name, "save_dir": cfg.data.save_dir,
            "log": log_path, "seconds": seconds, "metrics": metrics}


# ---------------------------------------------------------------------------------- report
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
