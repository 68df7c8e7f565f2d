"""The tables of the TF-CLIP paper and its supplement, read from ``configs/paper/tables.json``.

The numbers the paper reports are data, not code: ``configs/paper/tables.json`` holds each table
(caption, columns, the training set its counts are for) and each row (its config file under
``configs/paper``, the component marks, Params (M), FLOPs (G) and the metrics in %), shipped with
the package like the row configs (:func:`~tfclip_torchreid.config.configs_path`).

Example:
    >>> table = get_table("S4")  # the supplement's Table 4 is the paper's Table 2
    >>> table.key, [row.name for row in table.rows]
    ('2', ['B1', 'B2', 'B3', 'B4', 'B5', 'B6'])
    >>> table.row("b2").params_m, table.row("B2").results["lsvid"]
    (86.94, (80.3, 87.7, 95.7))
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List, Mapping, Tuple

from ..config import configs_path

__all__ = ["PaperRow", "PaperTable", "TABLES", "TABLES_FILE", "CONFIG_DIR", "DATASET_NAMES",
           "METRIC_NAMES", "load_tables", "get_table", "list_tables"]

#: ``configs/paper``: one config file per row, and the paper's numbers
CONFIG_DIR = configs_path("paper")
#: the paper's numbers
TABLES_FILE = configs_path("paper", "tables.json")

#: how the tables write torchreid's dataset names and our metric keys
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
        rows: the rows.
        num_classes, camera_num: the training set the counts are for (MARS: 625, 6).
        aliases: other names of the table (the supplement's Table 4 is the paper's Table 2).
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
    aliases: Tuple[str, ...] = ()

    def row(self, name: str) -> PaperRow:
        """The row called ``name`` (case-insensitive); KeyError listing the rows otherwise."""
        for r in self.rows:
            if r.name.lower() == name.lower():
                return r
        raise KeyError(f"table {self.key} has no row {name!r}; rows: "
                       f"{[r.name for r in self.rows]}")


def _row(entry: Mapping[str, Any]) -> PaperRow:
    return PaperRow(
        name=entry["name"], config=entry["config"], marks=tuple(entry.get("marks", ())),
        params_m=entry.get("params_m"), flops_g=entry.get("flops_g"),
        results={d: tuple(v) for d, v in entry.get("results", {}).items()},
        label=entry.get("label", ""))


def load_tables(path: str = TABLES_FILE) -> Dict[str, PaperTable]:
    """The tables of ``path`` (``configs/paper/tables.json``) by key, checked for consistency
    (one mark per component column, one value per metric, the table's datasets only).

    Example:
        >>> list(load_tables())
        ['2', 'S2', 'S3', 'S5', 'S6', 'S7']
    """
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    tables: Dict[str, PaperTable] = {}
    for key, t in data.items():
        if key.startswith("_"):
            continue  # comments
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in t.items() if k != "rows"}
        table = PaperTable(key=key, rows=tuple(_row(r) for r in t["rows"]), **fields)
        for r in table.rows:
            bad = (len(r.marks) not in (0, len(table.marks))
                   or set(r.results) - set(table.datasets)
                   or any(len(v) != len(table.metrics) for v in r.results.values()))
            if bad:
                raise ValueError(f"{path}: row {r.name!r} of table {key} does not fit the table's "
                                 f"marks {table.marks}, datasets {table.datasets} and metrics "
                                 f"{table.metrics}")
        tables[key] = table
    return tables


#: the tables by key (``"2"``, ``"S2"``, ``"S3"``, ``"S5"``, ``"S6"``, ``"S7"``)
TABLES: Dict[str, PaperTable] = load_tables()


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
    for table in TABLES.values():
        if k == table.key or k in table.aliases:
            return table
    raise KeyError(f"no paper table {key!r}; available: {list_tables()} (2 = the paper's "
                   f"Table 2 = the supplement's Table 4; S<n> = the supplement's Table n)")
