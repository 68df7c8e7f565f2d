"""Parameter counts and MACs against the module arithmetic and the paper's tables."""

from __future__ import annotations

import json
import os
import runpy

import pytest

from tfclip_torchreid.models.complexity import (
    fusion_macs,
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
    assert p["text"] == p["prompts"] == 0
    assert p["total"] == 107_148_544  # MARS


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


def test_clipreid_b1_b5_text_tower_without_token_table_plus_prompts():
    b1 = model_complexity("clipreid_vitb16", 625, 6)
    p = b1["params"]
    assert p["text"] == 38_131_200  # 12 blocks + 77x512 positions + ln_final + projection
    assert p["prompts"] == 625 * 4 * 512
    assert p["sie"] == p["ssp"] == p["temporal"] == 0
    assert p["paper_convention"] == p["total"] == 86_942_976 + 38_131_200 + 1_280_000
    assert abs(p["paper_convention"] / 126.78e6 - 1) < 0.005  # paper Table 2, B1
    b5 = model_complexity("clipreid_vitb16", 625, 6, temporal="tmd")["params"]
    assert b5["paper_convention"] == p["paper_convention"] + 10_042_368  # TMD heads not counted
    assert abs(b5["paper_convention"] / 136.86e6 - 1) < 0.005  # paper Table 2, B5
    m = b1["macs"]
    assert round(m["text_per_prompt"] / 1e9, 2) == 2.98
    assert round(m["paper_convention"] / 1e9, 2) == 14.24  # 11.26 + 2.98, as reported


def test_tmc_only_and_paper_convention_macs():
    a2 = model_complexity("tfclip_vitb16", 625, 6, use_ssp=False, tmd_diffusion=False)
    assert a2["params"]["temporal"] == 2_954_496  # TMC alone
    assert a2["params"]["paper_convention"] == 86_942_976 + 2_954_496
    assert a2["macs"]["tmd_per_frame"] == tmd_macs(129, 768, 8, diffusion=False) < 4e6
    b6 = model_complexity("tfclip_vitb16", 625, 6, ssp_form="paper")["macs"]
    assert b6["paper_convention"] == (b6["backbone_blocks"] + b6["tmd_per_frame"]
                                      + b6["ssp_per_sequence"] // 8)
    transf = model_complexity("tfclip_vitb16", 625, 6, temporal="transf", use_ssp=False)["macs"]
    assert transf["fusion_per_clip"] == fusion_macs("transf", 512, 8) == vit_block_macs(8, 512, 6)


def test_rn50_counts_use_the_resnet_cost():
    r = model_complexity("tfclip_rn50", 625, 6)
    m = r["macs"]
    assert m["tokens"] == 129 and m["backbone_proj_all_tokens"] == 0
    assert 6e9 < m["backbone_total"] < 7e9  # RN50 at 256x128, last stride 1
    assert m["tmd_per_frame"] == tmd_macs(129, 1024, 8)  # TMD on the 1024-d pool tokens
    assert r["params"]["backbone"] == 38_478_688


def test_cli_text_bank_and_tmc_only(capsys):
    tool = runpy.run_path(os.path.join(ROOT, "tools", "model_complexity.py"), run_name="tool")
    tool["main"](["--arch", "tfclip_vitb16", "--memory-source", "text", "--temporal", "tap",
                  "--no-ssp", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["params"]["text"] == 38_131_200 and report["params"]["prompts"] == 1_280_000
    assert report["switches"]["memory_source"] == "text"
    tool["main"](["--arch", "tfclip_vitb16", "--no-ssp", "--no-tmd-diffusion"])
    text = capsys.readouterr().out
    assert "2,954,496" in text and "paper_convention" in text and "text_per_prompt" in text
