"""The ablation tables of the TF-CLIP paper and its supplement as runnable experiments.

Every row of paper Table 2 (= supplement Table 4) and of supplement Tables 2, 3, 5, 6 and 7 is

* one config file, ``configs/paper/<row>.yaml``, holding only what differs from its base (named
  by ``_BASE_``: the MARS config or another row), and
* one entry of ``configs/paper/tables.json``, which names that file and holds the numbers the
  paper reports for the row (parameters, FLOPs, mAP and CMC, in the paper's units).

Both are shipped with the package (:func:`~tfclip_torchreid.config.configs_path`), so the tables
work from a plain ``pip install .`` too. The modules:

* :mod:`.tables`: the tables as read from ``tables.json`` (:func:`get_table`);
* :mod:`.experiments`: a row's config (:func:`row_config`, on real data or the tiny synthetic
  ``--quick`` variant), its parameter and MAC counts (:func:`row_counts`) and its run
  (:func:`run_row`);
* :mod:`.report`: ours beside the paper's (:func:`report_rows`, :func:`format_table`).

``tools/paper_tables.py`` is the command line. yacs has no config inheritance;
:func:`~tfclip_torchreid.config.merge_config_file` adds the ``_BASE_`` key (a path relative to the
file, as in detectron2 / fvcore): the base is merged first, then the file.

Example:
    >>> table = get_table("2")
    >>> [row.name for row in table.rows]
    ['B1', 'B2', 'B3', 'B4', 'B5', 'B6']
    >>> row_config(table.row("B6")).model.temporal
    'tmd'
"""

from ..config import BASE_KEY, merge_config_file
from .experiments import QUICK_ARCHS, QUICK_SIZES, quick_overrides, row_config, row_counts, run_row
from .report import format_table, report_rows
from .tables import (
    CONFIG_DIR,
    TABLES,
    TABLES_FILE,
    PaperRow,
    PaperTable,
    get_table,
    list_tables,
    load_tables,
)

__all__ = ["PaperRow", "PaperTable", "TABLES", "TABLES_FILE", "CONFIG_DIR", "get_table",
           "list_tables", "load_tables", "BASE_KEY", "merge_config_file", "row_config",
           "quick_overrides", "row_counts", "run_row", "report_rows", "format_table",
           "QUICK_ARCHS", "QUICK_SIZES"]
