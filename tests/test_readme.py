"""README.md's figures come from code: its generated blocks match what the code says now."""

from __future__ import annotations

import os.path as osp
import runpy

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
update = runpy.run_path(osp.join(REPO, "tools", "update_readme.py"), run_name="update_readme")


@pytest.mark.parametrize("name", update["CODE_SECTIONS"])
def test_generated_blocks_are_current(name):
    with open(osp.join(REPO, "README.md")) as f:
        text = f.read()
    assert update["block"](text, name) == update["SECTIONS"][name](), (
        f"README block {name!r} is stale: run python tools/update_readme.py --sections {name}")


def test_every_model_option_is_in_the_switch_table_and_settable(tmp_path):
    from tfclip_torchreid.config import get_default_config
    from tfclip_torchreid.models.config import DATA_FIELDS, field_info, option_fields
    from tfclip_torchreid.runner import build_parser, config_from_args, model_overrides

    with open(osp.join(REPO, "README.md")) as f:
        table = update["block"](f.read(), "switches")
    cfg = get_default_config()
    for info in option_fields(("switch",)):
        assert f"`model.{info['name']}`" in table
    yaml = tmp_path / "c.yaml"
    opts, lines = [], ["model:"]
    for info in option_fields():  # every option, switch or architecture, from yaml and CLI
        name, value = info["name"], info["default"]
        assert name in cfg.model and name not in DATA_FIELDS
        if isinstance(value, tuple):
            value = list(value)
        lines.append(f"  {name}: {value!r}".replace("True", "true").replace("False", "false")
                     .replace("None", "null"))
        opts += [f"model.{name}", repr(value)]
    assert field_info("temporal")["choices"]
    yaml.write_text("\n".join(lines) + "\n")
    from_yaml = config_from_args(build_parser().parse_args(["--config-file", str(yaml)]))
    from_cli = config_from_args(build_parser().parse_intermixed_args(opts))
    for c in (from_yaml, from_cli):
        got = model_overrides(c)
        for info in option_fields():
            want = info["default"]
            assert tuple(got[info["name"]]) == tuple(want) if isinstance(want, tuple) else \
                got[info["name"]] == want, info["name"]
