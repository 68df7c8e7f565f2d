"""README's measured demo blocks are what the demos give now.

The demos are deterministic (seeded data, weights and batches), so every figure a demo block
shows except its wall time must come back from a fresh run exactly, at the printed precision: the
test set's size and the before/after mAP and CMC. A change that moves them (a schedule, a loss, an
epoch's length) fails here until ``python tools/update_readme.py --sections <the demo's block>``
rewrites the block. Each demo takes minutes on 2 CPU cores, hence ``slow`` (README's test command
and CI run them).
"""

from __future__ import annotations

import glob
import os.path as osp
import re
import runpy

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
update = runpy.run_path(osp.join(REPO, "tools", "update_readme.py"), run_name="update_readme")


def readme_block(name: str) -> str:
    with open(osp.join(REPO, "README.md")) as f:
        content = update["block"](f.read(), name)
    assert content is not None, f"README.md has no block {name!r}"
    return content


def regenerate(*names: str) -> str:
    return f"python tools/update_readme.py --sections {' '.join(names)}"


def test_every_demo_config_has_a_checked_readme_block():
    configs = {osp.basename(p) for p in glob.glob(osp.join(REPO, "configs", "demo*.yaml"))}
    assert {config for config, _ in update["DEMOS"].values()} == configs
    for name in update["DEMOS"]:
        assert update["WALL_TIME"].search(readme_block(name)), name


def test_wall_time_is_the_only_figure_left_out():
    block = readme_block("demo")
    changed = block.replace("| after training | ", "| after training | 9")
    assert update["without_wall_time"](changed) != update["without_wall_time"](block)
    timed = update["WALL_TIME"].sub("took 1 s here", block)
    assert update["without_wall_time"](timed) == update["without_wall_time"](block)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(update["DEMOS"]))
def test_readme_demo_block_matches_a_fresh_run(name, tmp_path):
    seconds, summary, save_dir = update["run_demo"](name, str(tmp_path / "run"))
    fresh = update["demo_block"](name, seconds, summary)
    shown = readme_block(name)
    sections = [name]
    if name == "demo":  # the pictures are drawn from this run's test features
        caption = readme_block("pictures").split("\n\n", 1)[-1]
        query = int(re.search(r"query (\d+) of", caption).group(1)) - 1
        sections += ["pictures", "export"]
        assert caption == update["ranked_caption"](osp.join(save_dir, "features"), query), (
            f"README's ranked picture is not what a fresh demo run ranks: run {regenerate(*sections)}")
    assert update["without_wall_time"](shown) == update["without_wall_time"](fresh), (
        f"README's {name!r} block differs from a fresh run of configs/{update['DEMOS'][name][0]} "
        f"(took {seconds:.0f} s here):\nREADME:\n{shown}\nfresh run:\n{fresh}\n"
        f"run {regenerate(*sections)}")
