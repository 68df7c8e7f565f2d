"""The rows of the paper tables as experiments: their configs, parameter / MAC counts and runs.

:func:`row_config` builds the full yacs configuration of a row (on real data, or the tiny
synthetic ``--quick`` variant), :func:`row_counts` the parameter and MAC counts of its full-size
model under the paper's counting convention (:mod:`tfclip_torchreid.models.complexity`), and
:func:`run_row` trains and tests it through :mod:`tfclip_torchreid.runner`.

Rows whose model has SSP use ``ssp_form="paper"`` (cross-attention + MLP per layer, 3.15 M
parameters each), the SSP the paper's parameter counts describe; the released code's SSP
(``model.ssp_form released`` on the command line) is 2.10 M larger at N = 2.

Example:
    >>> from tfclip_torchreid.paper_tables.tables import get_table
    >>> table = get_table("2")
    >>> cfg = row_config(table.rows[0])
    >>> cfg.model.name, cfg.model.memory_source, cfg.model.temporal
    ('clipreid_vitb16', 'text', 'tap')
    >>> counts = row_counts(table, table.rows[1])
    >>> counts["params"]["paper_convention"], round(counts["macs"]["paper_convention"] / 1e9, 2)
    (86942976, 11.26)
"""

from __future__ import annotations

import contextlib
import os
import os.path as osp
import sys
import time
from typing import Any, Dict, List, Sequence

from yacs.config import CfgNode

from ..config import get_default_config, merge_config_file
from ..models.complexity import model_complexity
from ..runner import model_overrides, run_from_config
from .tables import CONFIG_DIR, METRIC_NAMES, PaperRow, PaperTable

__all__ = ["QUICK_ARCHS", "QUICK_SIZES", "quick_overrides", "row_config", "row_counts", "run_row"]

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
        >>> from tfclip_torchreid.paper_tables.tables import get_table
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
        >>> from tfclip_torchreid.paper_tables.tables import get_table
        >>> t = get_table("2")
        >>> row_counts(t, t.row("B6"), ["model.ssp_form", "released"])["params"]["ssp"]
        9195520
    """
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
    """Train and test one configuration with :func:`~tfclip_torchreid.runner.run_from_config`.

    Its console output goes to ``<save_dir>/paper_tables.log``; one line per run goes to ``log``
    (default: standard error). Returns ``{"dataset", "arch", "save_dir", "log", "seconds",
    "metrics"}`` with metrics in %.
    """
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
