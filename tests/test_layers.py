"""The package's layers point one way, and nothing hides an import inside a function.

The contract lives in ``pyproject.toml`` (``[tool.importlinter]``): compat/utils -> models, data,
metrics -> losses, optim -> engine -> config, testing -> the applications (runner, embedding,
export, visualize) -> the paper tables. import-linter checks every import of the package against
it; a second check walks the syntax tree of every module for imports of the package's own
modules below the module level (a function-level import is how cycles and upward arrows hide).
"""

from __future__ import annotations

import ast
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = osp.join(REPO, "tfclip_torchreid")


def _lint(config: str) -> int:
    """import-linter's exit status for ``config`` (in a subprocess: it reconfigures logging)."""
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={config!r}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return proc.returncode


def test_layers_contract_is_kept():
    assert _lint(osp.join(REPO, "pyproject.toml")) == 0


def test_contract_catches_an_upward_import(tmp_path):
    """The same contract with two layers swapped must break: the check is not vacuous."""
    text = open(osp.join(REPO, "pyproject.toml")).read()
    swapped = text.replace('    "tfclip_torchreid.engine",\n    "tfclip_torchreid.losses | '
                           'tfclip_torchreid.optim",\n',
                           '    "tfclip_torchreid.losses | tfclip_torchreid.optim",\n'
                           '    "tfclip_torchreid.engine",\n')
    assert swapped != text, "the layers in pyproject.toml changed: update this test"
    path = tmp_path / "pyproject.toml"
    path.write_text(swapped)
    assert _lint(str(path)) == 1


def _own_import(node: ast.AST) -> str | None:
    if isinstance(node, ast.ImportFrom):
        if node.level > 0 or (node.module or "").split(".")[0] == "tfclip_torchreid":
            return "." * node.level + (node.module or "")
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == "tfclip_torchreid":
                return alias.name
    return None


def _nested_own_imports(path: str) -> list[str]:
    tree = ast.parse(open(path).read(), path)
    found = []
    for outer in ast.walk(tree):
        if isinstance(outer, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for node in ast.walk(outer):
                name = _own_import(node)
                if name is not None:
                    found.append(f"{osp.relpath(path, REPO)}:{node.lineno} imports {name}")
    return found


def _modules() -> list[str]:
    return sorted(osp.join(d, f) for d, _, files in os.walk(PACKAGE) for f in files
                  if f.endswith(".py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: osp.relpath(p, PACKAGE))
def test_no_function_level_imports_of_the_package(path):
    assert _nested_own_imports(path) == []


def test_the_nested_import_check_finds_one(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from .models import zoo\n    return zoo\n")
    assert _nested_own_imports(str(module)) and "imports .models" in _nested_own_imports(
        str(module))[0]
