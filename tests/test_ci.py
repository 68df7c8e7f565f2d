"""``.ci/run`` runs README's install and test commands, and that test command runs every test."""

from __future__ import annotations

import os.path as osp
import re
import shlex

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def readme_commands() -> list[list[str]]:
    """The ``&&``-joined commands of README's test block, as argument lists."""
    with open(osp.join(REPO, "README.md")) as f:
        text = f.read()
    m = re.search(r"The tests \(.*?```bash\n(.*?)\n```", text, re.S)
    assert m, "README.md has no test command block after 'The tests ('"
    return [shlex.split(part) for part in m.group(1).split(" && ")]


def ci_commands() -> list[list[str]]:
    """The commands of ``.ci/run`` from the virtualenv on (comments and blank lines dropped)."""
    with open(osp.join(REPO, ".ci", "run")) as f:
        lines = [line.split("#")[0].strip() for line in f]
    lines = [line for line in lines if line]
    start = next(i for i, line in enumerate(lines) if line.startswith("python3 -m venv"))
    return [shlex.split(line) for line in lines[start:]]


def normalised(commands: list[list[str]]) -> list[list[str]]:
    """``source`` as ``.``, pip's ``-q`` dropped, ``VAR=x cmd`` as ``export VAR=x`` + ``cmd``."""
    out = []
    for argv in commands:
        argv = ["." if a == "source" and i == 0 else a for i, a in enumerate(argv)]
        if argv[0] == "pip":
            argv = [a for a in argv if a != "-q"]
        while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):
            out.append(["export", argv.pop(0)])
        out.append(argv)
    return out


def test_ci_runs_readme_install_and_test_commands():
    assert normalised(ci_commands()) == normalised(readme_commands())


def test_readme_test_command_selects_slow_and_quick_tests():
    argv = next(argv for argv in normalised(readme_commands()) if "pytest" in argv)
    pytest_argv = argv[argv.index("pytest") + 1:]
    assert pytest_argv[-1] == "tests"
    expr = pytest_argv[pytest_argv.index("-m") + 1] if "-m" in pytest_argv else ""
    if expr:  # a marker expression over the one marker there is
        assert set(re.findall(r"\w+", expr)) <= {"slow", "not", "and", "or"}
        assert eval(expr, {}, {"slow": True}) and eval(expr, {}, {"slow": False})
    else:  # no -m: pyproject's default (-m 'not slow') would apply
        raise AssertionError("README's test command must override the default -m 'not slow'")
