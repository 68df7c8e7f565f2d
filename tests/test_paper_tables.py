"""configs/paper + tools/paper_tables.py: every paper table as runnable rows, counts vs the paper;
the tables and configs shipped as package data (a non-editable install, run elsewhere)."""

from __future__ import annotations

import glob
import json
import os
import os.path as osp
import runpy
import shutil
import subprocess
import sys

import pytest
import torch

from tfclip_torchreid.config import get_default_config
from tfclip_torchreid.models.factory import build_tfclip
from tfclip_torchreid.models.tmd import TemporalMemoryDiffusion
from tfclip_torchreid.paper_tables import (
    CONFIG_DIR,
    TABLES,
    get_table,
    load_tables,
    merge_config_file,
    row_config,
)
from tfclip_torchreid.runner import model_overrides

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

#: the numbers as printed in the paper (Table 2) and its supplement (Tables 2-7), one row per
#: line: name, Params (M), FLOPs (G) ("-" where the table has none), then the metrics of each
#: dataset in the table's column order
PAPER = {
    "2": """B1 126.78 14.24 88.1 91.7 97.4 80.6 88.8 96.3
            B2 86.94 11.26 88.4 91.6 97.9 80.3 87.7 95.7
            B3 94.21 12.11 88.8 92.1 97.6 81.3 89.9 96.2
            B4 97.02 11.72 89.2 92.3 97.7 81.6 88.9 96.4
            B5 136.86 14.70 89.3 92.7 97.8 82.3 90.3 96.7
            B6 104.26 12.53 89.4 93.0 97.9 83.8 90.4 97.1""",
    "S2": """CLIP-ReID - - 90.4 95.5 73.2 88.0
             CLIP-M - - 89.6 95.0 72.0 87.4
             SSP - - 90.4 95.7 73.9 88.5""",
    "S3": """A1 86.94 11.26 88.4 91.6
             A2 89.93 11.26 88.8 91.9
             A3 97.02 11.72 89.2 92.3
             A4 94.21 12.11 88.8 92.1
             A5 97.17 12.11 89.0 92.5
             A6 104.26 12.53 89.4 93.0""",
    "S5": """TAP 86.94 11.26 88.4 91.6
             Conv1D 87.31 11.26 88.1 91.8
             Transf_cls 106.23 11.41 87.5 91.5
             Transf 106.22 11.39 88.2 91.4
             TMD 97.02 11.72 89.2 92.3""",
    "S6": """N1 91.06 11.68 88.5 91.9
             N2 94.21 12.11 88.8 92.1
             N3 97.36 12.53 87.4 92.1
             N4 100.51 12.95 88.4 92.3""",
    "S7": """B2 - - 88.4 91.6
             B2-woCLIPM - - 84.9 90.2
             B4 - - 89.2 92.3
             B4-woCLIPM - - 87.3 91.0""",
}


def _paper(table: str) -> dict:
    rows = {}
    for line in PAPER[table].splitlines():
        name, params, flops, *metrics = line.split()
        rows[name] = (None if params == "-" else float(params),
                      None if flops == "-" else float(flops), [float(m) for m in metrics])
    return rows

B2 = dict(arch="tfclip_vitb16", use_memory=True, memory_source="clip", use_ssp=False,
          temporal="tap")
B3 = dict(B2, use_ssp=True, ssp_form="paper", ssp_layers=2)
B4 = dict(B2, temporal="tmd", tmd_diffusion=True)
B6 = dict(B3, temporal="tmd", tmd_diffusion=True)
B1 = dict(arch="clipreid_vitb16", use_memory=True, memory_source="text", use_ssp=False,
          temporal="tap", penultimate_triplet=True, use_sie=False)
#: the switches each config file must give its model
EXPECTED = {
    "t2_b1": B1, "t2_b2": B2, "t2_b3": B3, "t2_b4": B4, "t2_b5": dict(B1, temporal="tmd", tmd_diffusion=True),
    "t2_b6": B6,
    "s3_a1": B2, "s3_a2": dict(B4, tmd_diffusion=False), "s3_a3": B4, "s3_a4": B3,
    "s3_a5": dict(B6, tmd_diffusion=False), "s3_a6": B6,
    "s5_tap": B2, "s5_conv1d": dict(B2, temporal="conv1d"),
    "s5_transf_cls": dict(B2, temporal="transf_cls", temporal_layers=6),
    "s5_transf": dict(B2, temporal="transf", temporal_layers=6), "s5_tmd": B4,
    "s6_n1": dict(B3, ssp_layers=1), "s6_n2": B3, "s6_n3": dict(B3, ssp_layers=3),
    "s6_n4": dict(B3, ssp_layers=4),
    "s7_b2": B2, "s7_b2_wo_clipm": dict(B2, use_memory=False), "s7_b4": B4,
    "s7_b4_wo_clipm": dict(B4, use_memory=False),
    "s2_clipreid": B1, "s2_clipm": dict(B1, memory_source="clip"),
    "s2_ssp": dict(B1, memory_source="clip", use_ssp=True, ssp_form="paper", ssp_layers=2),
}


@pytest.fixture(scope="module")
def tool():
    return runpy.run_path(osp.join(ROOT, "tools", "paper_tables.py"), run_name="tool")["main"]


def run_json(tool, capsys, *args) -> list:
    tool(list(args) + ["--json"])
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("table,names", [
    ("2", ["B1", "B2", "B3", "B4", "B5", "B6"]),
    ("S3", ["A1", "A2", "A3", "A4", "A5", "A6"]),
    ("S5", ["TAP", "Conv1D", "Transf_cls", "Transf", "TMD"]),
    ("S6", ["N1", "N2", "N3", "N4"]),
])
def test_counts_within_half_a_percent_of_the_paper(tool, capsys, table, names):
    rows = run_json(tool, capsys, "--table", table, "--counts-only")
    assert [r["row"] for r in rows] == names
    paper = _paper(table)
    for r in rows:
        params_m, flops_g, _ = paper[r["row"]]
        assert (r["paper_params_m"], r["paper_flops_g"]) == (params_m, flops_g), r["row"]
        assert abs(r["params"] / 1e6 / params_m - 1) < 0.005, r["row"]
        # the printed difference is ours against the paper's number, in %
        assert abs(r["params_diff_pct"] - 100 * (r["params"] / 1e6 / params_m - 1)) < 1e-9
        assert r["results"] == {} and r["mode"] == "counts-only"
        assert osp.isfile(osp.join(ROOT, r["config"]))


def test_tables_file_holds_the_papers_numbers():
    """configs/paper/tables.json against the paper's text: every row, count and metric."""
    assert list(TABLES) == list(PAPER)
    for key, table in TABLES.items():
        paper = _paper(key)
        assert [r.name for r in table.rows] == list(paper), key
        for row in table.rows:
            params_m, flops_g, metrics = paper[row.name]
            assert (row.params_m, row.flops_g) == (params_m, flops_g), (key, row.name)
            assert [v for d in table.datasets for v in row.results[d]] == metrics, (key, row.name)


def test_tables_file_errors(tmp_path):
    bad = json.load(open(osp.join(CONFIG_DIR, "tables.json")))
    bad["S3"]["rows"][0]["results"]["mars"] = [88.4]  # one metric of two
    path = tmp_path / "tables.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="row 'A1' of table S3 does not fit"):
        load_tables(str(path))


def test_table2_json_values(tool, capsys):
    rows = {r["row"]: r for r in run_json(tool, capsys, "--table", "2", "--counts-only")}
    b1, b2, b5 = rows["B1"], rows["B2"], rows["B5"]
    assert b2["params"] == 86_942_976 and round(b2["flops_g"], 2) == 11.26
    assert b1["params_components"]["text"] == 38_131_200
    assert b1["params_components"]["prompts"] == 1_280_000
    assert b1["params"] == 126_354_176 and round(b1["flops_g"], 2) == 14.24  # + text tower
    assert b5["params"] == b1["params"] + 10_042_368
    assert b1["marks"] == {"CLIP-M": False, "SSP": False, "TMD": False}
    assert rows["B6"]["marks"] == {"CLIP-M": True, "SSP": True, "TMD": True}
    assert b1["paper_results"]["lsvid"] == {"mAP": 80.6, "R1": 88.8, "R5": 96.3}
    assert b1["arch"] == "clipreid_vitb16" and b1["config"] == "configs/paper/t2_b1.yaml"
    # the supplement's Table 4 is the paper's Table 2
    assert [r["row"] for r in run_json(tool, capsys, "--table", "S4", "--counts-only")] == list(rows)


def test_options_change_the_counted_model_and_rows_keep_table_order(tool, capsys):
    rows = run_json(tool, capsys, "--table", "2", "--counts-only", "--rows", "B6", "b3", "--",
                    "model.ssp_form", "released")
    assert [r["row"] for r in rows] == ["B3", "B6"]
    assert rows[1]["params"] == 107_148_544 - 963_072 - 4_608  # the released model
    assert rows[1]["params_components"]["ssp"] == 9_195_520


def test_s7_and_s2_have_no_reported_counts(tool, capsys):
    for table in ("S7", "S2"):
        for r in run_json(tool, capsys, "--table", table, "--counts-only"):
            assert r["paper_params_m"] is None and r["params_diff_pct"] is None
            assert r["params_m"] > 80
    s7 = {r["row"]: r for r in run_json(tool, capsys, "--table", "S7", "--counts-only")}
    assert s7["B2-woCLIPM"]["params"] == s7["B2"]["params"]  # the memory is a buffer


def test_text_layout_of_table2(tool, capsys):
    tool(["--table", "2", "--counts-only", "--rows", "B1", "B2"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("paper Table 2 (= supplement Table 4): Comparison")
    header = out[3].split(" | ")
    assert header[:6] == ["| Model", "CLIP-M", "SSP", "TMD", "Params(M)", "FLOPs(G)"]
    assert out[3].endswith("LS-VID mAP | LS-VID Rank-1 | LS-VID Rank-5 |")
    assert out[4] == "|" + "---|" * 12
    assert out[5] == ("| B1 | × | × | × | 126.35 / 126.78 (-0.34%) | 14.24 / 14.24 | - / 88.1 | "
                      "- / 91.7 | - / 97.4 | - / 80.6 | - / 88.8 | - / 96.3 |")
    assert out[6].startswith("| B2 | ✓ | × | × | 86.94 / 86.94 (+0.00%) | 11.26 / 11.26 |")


def test_supplement_layout_puts_metrics_before_counts(tool, capsys):
    tool(["--table", "S3", "--counts-only", "--rows", "A2"])
    out = capsys.readouterr().out.splitlines()
    assert out[3] == "| Model | TMC | MD | SSP | MARS mAP | MARS Rank-1 | Params(M) | FLOPs(G) |"
    assert out[5].startswith("| A2 | ✓ | × | × | - / 88.8 | - / 91.9 | 89.90 / 89.93 (-0.04%)")


def test_every_config_merges_and_builds_its_model(tmp_path):
    files = sorted(glob.glob(osp.join(CONFIG_DIR, "*.yaml")))
    stems = [osp.splitext(osp.basename(f))[0] for f in files]
    assert stems == sorted(EXPECTED)
    used = {row.config for t in TABLES.values() for row in t.rows}
    assert used == {osp.basename(f) for f in files}  # one row per file, every file a row
    for path, stem in zip(files, stems):
        cfg = merge_config_file(get_default_config(), path)
        assert cfg.data.save_dir == f"log/paper/{stem}"
        assert (cfg.data.height, cfg.data.width) == (256, 128)
        want = dict(EXPECTED[stem])
        arch = want.pop("arch")
        assert cfg.model.name == arch, stem
        with torch.device("meta"):
            model = build_tfclip(arch, 625, 6, **model_overrides(cfg),
                                 image_size=(cfg.data.height, cfg.data.width))
        for key, value in want.items():
            assert getattr(model.cfg, key) == value, (stem, key)
        assert (model.memory is None) == (not want["use_memory"])
        assert (model.ssp is None) == (not want["use_ssp"])
        assert model.uses_text == (want["use_memory"] and want["memory_source"] == "text")
        if want["temporal"] == "tmd":
            assert isinstance(model.temporal, TemporalMemoryDiffusion)
            assert (model.temporal.diffusion is None) == (not want["tmd_diffusion"])
        if stem.startswith("s2_"):
            assert cfg.data.sources == ["market1501"] and cfg.data.norm == "inception"
        else:
            assert cfg.data.sources == ["mars"] and cfg.model.pretrained == "openai"


def test_base_chain_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("_BASE_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_BASE_: a.yaml\n")
    with pytest.raises(ValueError, match="include each other"):
        merge_config_file(get_default_config(), str(tmp_path / "a.yaml"))
    (tmp_path / "c.yaml").write_text("_BASE_: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match=r"missing.yaml \(the _BASE_ of .*c.yaml\)"):
        merge_config_file(get_default_config(), str(tmp_path / "c.yaml"))
    (tmp_path / "d.yaml").write_text("_BASE_: b2.yaml\nmodel:\n  no_such_key: 1\n")
    (tmp_path / "b2.yaml").write_text("train:\n  max_epoch: 7\n")
    with pytest.raises(ValueError, match="d.yaml.*no_such_key"):
        merge_config_file(get_default_config(), str(tmp_path / "d.yaml"))


def test_real_data_configs(tmp_path):
    table = get_table("2")
    out = str(tmp_path / "runs")
    cfg = row_config(table.row("B5"), "lsvid", root="/data/reid", out_dir=out,
                     opts=["train.max_epoch", "80"], table=table)
    assert cfg.data.root == "/data/reid" and not cfg.data.synthetic
    assert cfg.data.sources == cfg.data.targets == ["lsvid"]
    assert cfg.data.save_dir == osp.join(out, "table2", "B5", "lsvid")
    assert (cfg.model.name, cfg.model.memory_source, cfg.model.temporal) == (
        "clipreid_vitb16", "text", "tmd")
    assert cfg.model.pretrained == "openai" and cfg.train.max_epoch == 80
    assert (cfg.data.seq_len, cfg.train.batch_size, cfg.train.lr) == (8, 16, 5e-6)
    assert cfg.stage1.max_epoch == 120  # CLIP-ReID's stage 1
    with pytest.raises(ValueError, match="bad config option"):
        row_config(table.row("B1"), opts=["model.nope", "1"])


def test_quick_configs_keep_the_switches(tmp_path):
    table = get_table("S3")
    cfg = row_config(table.row("A5"), "mars", quick=True, out_dir=str(tmp_path), table=table)
    assert cfg.model.name == "tfclip_tiny" and cfg.model.pretrained == ""
    assert (cfg.model.tmd_diffusion, cfg.model.ssp_form, cfg.model.temporal) == (
        False, "paper", "tmd")
    assert cfg.data.synthetic and cfg.data.root == osp.join(str(tmp_path), "synthetic-data")
    assert dict(cfg.data.synthetic_sizes)["num_train_ids"] == 8
    b1 = row_config(get_table("2").row("B1"), "lsvid", quick=True, out_dir=str(tmp_path))
    assert b1.model.name == "clipreid_tiny" and b1.stage1.max_epoch == 3
    assert "num_gallery_ids" in dict(b1.data.synthetic_sizes)
    image = row_config(get_table("S2").row("SSP"), quick=True, out_dir=str(tmp_path))
    assert image.data.seq_len == 1 and image.model.use_ssp


def test_tool_errors(tool):
    with pytest.raises(SystemExit, match="--root DIR"):
        tool(["--table", "2"])
    with pytest.raises(SystemExit, match="no paper table 'S9'"):
        tool(["--table", "S9", "--counts-only"])
    with pytest.raises(SystemExit, match="no row 'B7'"):
        tool(["--table", "2", "--counts-only", "--rows", "B7"])
    with pytest.raises(SystemExit, match="not \\['market1501'\\]"):
        tool(["--table", "2", "--quick", "--datasets", "market1501"])


def test_quick_one_row(tool, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TFCLIP_CACHE", str(tmp_path / "cache"))
    rows = run_json(tool, capsys, "--table", "S7", "--quick", "--rows", "B2-woCLIPM",
                    "--out", str(tmp_path), "train.max_epoch", "1")
    (row,) = rows
    assert row["mode"] == "quick" and set(row["results"]) == {"mars"}
    assert 0 <= row["results"]["mars"]["mAP"] <= 100 and "R1" in row["results"]["mars"]
    run = row["runs"]["mars"]
    assert run["arch"] == "tfclip_tiny" and osp.isfile(run["log"])
    assert osp.isfile(osp.join(run["save_dir"], "results.json"))
    assert run["save_dir"] == osp.join(str(tmp_path), "tableS7", "B2-woCLIPM", "mars")


@pytest.mark.slow
def test_quick_table_s7(tool, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TFCLIP_CACHE", str(tmp_path / "cache"))
    tool(["--table", "S7", "--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert out[3] == "| Methods | MARS mAP | MARS Rank-1 |"
    lines = out[5:9]
    assert [line.split(" | ")[0] for line in lines] == ["| Model B2", "| -wo CLIP-M", "| Model B4",
                                                          "| -wo CLIP-M"]
    for line in lines:
        ours = line.split(" | ")[1].split(" / ")[0]
        assert 0.0 <= float(ours) <= 100.0
    assert os.path.isdir(tmp_path / "tableS7" / "B4-woCLIPM" / "mars")


def test_non_editable_install_run_elsewhere(tmp_path):
    """`pip install .` (no editable checkout): the configs and the paper's numbers are package
    data; tools/paper_tables.py, run from another folder, prints Table 2's counts and every paper
    config builds its model. Uses this interpreter's dependencies, offline."""
    src = tmp_path / "src"  # a copy: the build writes build/ and *.egg-info/ into the source
    src.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(osp.join(ROOT, name), src / name)
    for name in ("requirements", "configs", "tfclip_torchreid"):
        shutil.copytree(osp.join(ROOT, name), src / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                          "--no-build-isolation", "--quiet", "--target", str(site), str(src)],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert not osp.exists(site / "configs")  # inside the package, not a top-level "configs"
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "tools").mkdir(parents=True)  # the script alone: no checkout beside it
    shutil.copy(osp.join(ROOT, "tools", "paper_tables.py"), elsewhere / "tools")
    env = dict(os.environ, PYTHONPATH=str(site), HF_HUB_OFFLINE="1")

    def run(*args: str) -> str:
        out = subprocess.run([sys.executable, *args], cwd=elsewhere, env=env,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    lines = run("tools/paper_tables.py", "--table", "2", "--counts-only").splitlines()
    assert lines[0].startswith("paper Table 2 (= supplement Table 4)")
    assert lines[6].startswith("| B2 | ✓ | × | × | 86.94 / 86.94 (+0.00%) | 11.26 / 11.26 |")
    assert [line.split(" | ")[0] for line in lines[5:11]] == [f"| B{i}" for i in range(1, 7)]
    built = run("-c", """
import torch, tfclip_torchreid
from tfclip_torchreid.runner import model_overrides
from tfclip_torchreid.models.factory import build_tfclip
from tfclip_torchreid.paper_tables import CONFIG_DIR, TABLES, row_config
print(tfclip_torchreid.__file__)
print(CONFIG_DIR)
for table in TABLES.values():
    for row in table.rows:
        cfg = row_config(row)
        with torch.device("meta"):
            model = build_tfclip(cfg.model.name, table.num_classes, table.camera_num,
                                 **model_overrides(cfg), image_size=(cfg.data.height, cfg.data.width))
        print(row.config, type(model).__name__, model.cfg.temporal)
""").splitlines()
    assert built[0] == str(site / "tfclip_torchreid" / "__init__.py")
    assert built[1] == str(site / "tfclip_torchreid" / "configs" / "paper")
    rows = [line.split() for line in built[2:]]
    assert sorted(r[0] for r in rows) == sorted(osp.basename(f) for f in
                                                glob.glob(osp.join(CONFIG_DIR, "*.yaml")))
    assert {r[0]: r[2] for r in rows}["s5_conv1d.yaml"] == "conv1d"
