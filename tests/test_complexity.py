"""Parameter counts and MACs against the spec's module arithmetic and the paper's tables."""

from __future__ import annotations

import json
import os
import runpy

import pytest

from tfclip_torchreid.models.complexity import (
    model_complexity,
    ssp_macs,
    tmd_macs,
    vit_block_macs,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def released():
    return model_complexity("tfclip_vitb16", num_classes=625, camera_num=6)


def test_released_model_components(released):
    p = released["params"]
    assert p["backbone"] == 86_140_416
    assert p["temporal"] == 10_042_368  # TMD = TMC 2,954,496 + MD 7,087,872
    assert p["ssp"] == 9_195_520
    assert p["sie"] == 6 * 768
    assert p["heads_cls"] == 480_000 + 320_000 + 1_536 + 1_024
    assert p["heads_temporal"] == 2 * 480_000 + 2 * 1_536  # 2 BNs, shared + unused classifier
    assert p["total"] == 107_148_544  # spec 5.4, MARS


def test_paper_model2_backbone_plus_cls_heads():
    p = model_complexity("tfclip_vitb16", 625, 6, temporal="tap", use_memory=False)["params"]
    assert p["ssp"] == p["temporal"] == p["heads_temporal"] == 0
    assert p["paper_convention"] == 86_942_976  # 86.94 M, SIE excluded
    assert round(p["paper_convention"] / 1e6, 2) == 86.94
    assert p["total"] - p["sie"] == 86_942_976


def test_paper_form_ssp_matches_table6():
    totals = []
    for n in (1, 2, 3, 4):
        p = model_complexity("tfclip_vitb16", 625, 6, temporal="tap", ssp_form="paper",
                             ssp_layers=n)["params"]
        totals.append(p["paper_convention"])
    assert abs(totals[1] / 94.21e6 - 1) < 0.005  # paper Model 3 / A4
    assert [b - a for a, b in zip(totals, totals[1:])] == [3_150_848] * 3  # 3.15 M per layer


def test_table5_fusions_within_rounding():
    reported = {"conv1d": 87.31, "transf": 106.22, "transf_cls": 106.23}
    for name, value in reported.items():
        p = model_complexity("tfclip_vitb16", 625, 6, temporal=name, use_memory=False)["params"]
        assert abs(p["paper_convention"] / 1e6 - value) < 0.015, name


def test_macs(released):
    m = released["macs"]
    assert m["tokens"] == 129
    assert round(m["backbone_blocks"] / 1e9, 2) == 11.26  # the paper's "11.26 GFLOPs"
    assert m["backbone_blocks"] == vit_block_macs(129, 768, 12)
    assert round(m["backbone_total"] / 1e9, 2) == 11.39  # + patch conv + all-token projection
    assert round(tmd_macs(129, 768, 8) / 1e9, 3) == 0.949
    assert round(ssp_macs(625, 129, 512, 2) / 1e9, 2) == 6.05
    s12 = model_complexity("tfclip_vitb16_s12", 625, 6)["macs"]
    assert s12["tokens"] == 21 * 10 + 1 and s12["backbone_blocks"] > 1.6 * m["backbone_blocks"]


def test_cli_json(capsys):
    tool = runpy.run_path(os.path.join(ROOT, "tools", "model_complexity.py"), run_name="tool")
    tool["main"](["--arch", "tfclip_vitb16", "--temporal", "tap", "--no-memory",
                  "--num-classes", "625", "--camera-num", "6", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["params"]["paper_convention"] == 86_942_976
    assert round(report["macs"]["backbone_blocks"] / 1e9, 2) == 11.26
    tool["main"](["--arch", "tfclip_vitb16", "--stride", "12"])
    text = capsys.readouterr().out
    assert "86,140,416" not in text and "211 tokens" in text  # bigger positional table
