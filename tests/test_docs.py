"""README.md and docs/ say what the code does: paths, modules, links, choices, environment.

Each check reads the documents and the code independently, so a moved module, a renamed choice or
a new environment variable fails here until the documents follow.
"""

from __future__ import annotations

import ast
import glob
import importlib
import os.path as osp
import re
import runpy

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DOCS = ["README.md"] + sorted(osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, "docs", "*.md")))
PACKAGE = "tfclip_torchreid"
#: top-level folders of the repository whose files the documents name by path
TOP = ("tfclip_torchreid/", "tools/", "configs/", "docs/", "tests/", "requirements/", ".ci/")


def read(doc: str) -> str:
    with open(osp.join(REPO, doc), encoding="utf-8") as f:
        return f.read()


def code_spans(text: str) -> list[tuple[int, str]]:
    """``(line number, content)`` of every inline code span (fenced blocks left out)."""
    spans, fenced = [], False
    for no, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            spans += [(no, s) for s in re.findall(r"`([^`\n]+)`", line)]
    return spans


# ------------------------------------------------------------------------------ paths, modules
def _path_problems(doc: str) -> list[str]:
    """Repository paths named in ``doc`` that do not exist. A bare ``name.py`` (or ``dir/``)
    after a full path in the same paragraph or table row is taken relative to that path's folder
    (README's layout table: ``tfclip_torchreid/engine/v2m_engine.py``, ``hooks.py``), or to the
    package; one with a package folder but no top-level prefix (``models/model_configs/``) relative
    to the package. Other bare names (a dataset's files, the authors' code) are not ours."""
    problems, base, lines = [], None, read(doc).splitlines()
    paragraph = {}  # line number -> first line of its paragraph (a table row is one)
    start = 1
    for no, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("|") or not lines[no - 2].strip() or \
                lines[no - 2].startswith("|"):
            start = no
        paragraph[no] = start
    last = None
    for no, span in code_spans("\n".join(lines)):
        if paragraph[no] != last:
            base, last = None, paragraph[no]
        token = span.strip()
        if not re.fullmatch(r"[\w./-]+(\.py|\.yaml|\.json|\.md|/)", token) or token.startswith("<"):
            continue
        if token.startswith(TOP):
            path = token
            base = token.rstrip("/") if token.endswith("/") else osp.dirname(token)
        elif base is not None and base.startswith(PACKAGE):
            path = osp.join(base, token)
            if not osp.exists(osp.join(REPO, path)):  # models/x.py after a package path
                path = osp.join(PACKAGE, token)
        elif "/" in token.rstrip("/") and token.split("/")[0] in _package_dirs():
            path = osp.join(PACKAGE, token)
        else:
            continue  # a dataset's own file (bbox_train/, info/, splits.json): not ours
        if not osp.exists(osp.join(REPO, path)):
            problems.append(f"{doc}:{no}: `{token}` ({path} does not exist)")
    return problems


def _package_dirs() -> set[str]:
    return {osp.basename(p) for p in glob.glob(osp.join(REPO, PACKAGE, "*")) if osp.isdir(p)}


@pytest.mark.parametrize("doc", DOCS)
def test_every_repository_path_named_exists(doc):
    problems = _path_problems(doc)
    assert not problems, "paths that moved or never existed:\n" + "\n".join(problems)


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return False
        return True
    return False


#: module names that torchreid, torchvision or the config share with ours: not taken as ours
SHARED_NAMES = {"data", "config", "models", "engine", "utils", "metrics", "losses", "transforms",
                "dataset", "distributed", "optim", "__init__"}


def _short_references(text: str) -> list[str]:
    """``module.name`` spans whose module is one of ours by a name nothing else uses
    (``compat.register_model``, ``complexity.text_macs``), as full dotted names."""
    modules: dict[str, set] = {}
    for p in glob.glob(osp.join(REPO, PACKAGE, "**", "*.py"), recursive=True):
        rel = osp.splitext(osp.relpath(p, REPO))[0].replace(osp.sep, ".")
        rel = rel[: -len(".__init__")] if rel.endswith(".__init__") else rel
        modules.setdefault(rel.rsplit(".", 1)[-1], set()).add(rel)
    out = []
    for _, span in code_spans(text):
        m = re.match(r"(\w+)((?:\.\w+)+)", span)
        if m and m.group(1) not in SHARED_NAMES and len(modules.get(m.group(1), ())) == 1 and \
                not re.fullmatch(r"\.(py|json|yaml|log|md|pth|pt|npy|onnx|h5)", m.group(2)):
            out.append(next(iter(modules[m.group(1)])) + m.group(2))
    return out


@pytest.mark.parametrize("doc", DOCS)
def test_every_module_and_object_named_exists(doc):
    text = read(doc)
    named = sorted(set(re.findall(rf"\b{PACKAGE}(?:\.\w+)+", text)) | set(_short_references(text)))
    assert named or doc != "README.md"
    missing = [d for d in named if not _resolves(d)]
    assert not missing, f"{doc} names what does not exist: {missing}"


def _anchors(text: str) -> set[str]:
    """GitHub's anchors of the markdown headings of ``text``."""
    out = set()
    for line in text.splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower().replace("`", ""))
            out.add(slug.replace(" ", "-"))
    return out


@pytest.mark.parametrize("doc", DOCS)
def test_every_local_link_resolves(doc):
    text, broken = read(doc), []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"\w+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = osp.normpath(osp.join(osp.dirname(doc), path)) if path else doc
        if not osp.exists(osp.join(REPO, file)):
            broken.append(f"{target} ({file} does not exist)")
        elif anchor and file.endswith(".md") and anchor not in _anchors(read(file)):
            broken.append(f"{target} (no heading #{anchor} in {file})")
    assert not broken, f"{doc}: broken links: {broken}"


def test_docs_named_in_code_and_configs_exist():
    """``docs/<page>.md#<heading>`` in docstrings, comments and configs points at a heading."""
    files = [p for pattern in ("tfclip_torchreid/**/*.py", "tools/*.py", "configs/**/*.yaml",
                               "tests/*.py") for p in glob.glob(osp.join(REPO, pattern),
                                                               recursive=True)]
    broken, seen = [], 0
    for file in files:
        with open(file, encoding="utf-8") as f:
            text = f.read()
        for page, anchor in re.findall(r"\b(docs/[\w-]+\.md)(?:#([\w-]+))?", text):
            seen += 1
            where = osp.relpath(file, REPO)
            if not osp.isfile(osp.join(REPO, page)):
                broken.append(f"{where}: {page}")
            elif anchor and anchor not in _anchors(read(page)):
                broken.append(f"{where}: {page}#{anchor}")
    assert seen > 20 and not broken, f"references to pages or headings that do not exist: {broken}"


# ------------------------------------------------------------------------- choices and models
def test_synthetic_formats_in_the_docs_are_the_tools_choices():
    tool = runpy.run_path(osp.join(REPO, "tools", "make_synthetic_dataset.py"), run_name="tool")
    action = next(a for a in tool["build_parser"]()._actions if a.dest == "format")
    choices = set(action.choices)
    seen = 0
    for doc in DOCS:
        for listed in re.findall(r"--format \{([^}]*)\}", read(doc)):
            seen += 1
            assert set(listed.split(",")) == choices, (
                f"{doc} lists --format {{{listed}}}; tools/make_synthetic_dataset.py offers "
                f"{sorted(choices)}")
    assert seen >= 2  # README and docs/datasets.md


NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
           "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}


def test_counts_and_lists_of_registered_models_match_the_registry():
    from tfclip_torchreid.models import list_archs, zoo

    archs = set(list_archs())
    for doc in DOCS:
        text = read(doc)
        for count in re.findall(r"\b(\w+) (?:models|architectures) (?:are |were )?registered",
                                text) + re.findall(r"registers (\w+) (?:models|architectures)",
                                                   text):
            n = NUMBERS.get(count.lower(), int(count) if count.isdigit() else None)
            assert n is None or n == len(archs), f"{doc}: '{count}' registered models, " \
                                                 f"list_archs() has {len(archs)}"
        # a backticked model-like name is an architecture, a zoo entry or a config
        configs = {osp.splitext(osp.basename(p))[0]
                   for p in glob.glob(osp.join(REPO, "configs", "**", "*.yaml"), recursive=True)}
        for no, span in code_spans(text):
            if re.fullmatch(r"(tfclip|clipreid)_(vitb16|rn50|tiny)\w*", span):
                assert span in archs | set(zoo.list_zoo()) | configs, \
                    f"{doc}:{no}: `{span}` is no architecture, zoo entry or config"
    import tfclip_torchreid.models as models

    listed = set(re.findall(r"``((?:tfclip|clipreid)_\w+)``", models.__doc__))
    assert listed == archs, "tfclip_torchreid.models' docstring lists other registered names"


def test_engine_overrides_listed_in_docs_are_the_engines():
    """docs/torchreid.md's table of the torchreid methods our engine overrides is complete."""
    from tfclip_torchreid import compat
    from tfclip_torchreid.engine.v2m_engine import VideoV2MEngine

    page = read(osp.join("docs", "torchreid.md"))
    table = page.split("| torchreid method | why it is overridden |", 1)[1].split("\n\n", 1)[0]
    listed = set(re.findall(r"^\| `(\w+)` \|", table, re.M))
    overridden = {n for n in vars(VideoV2MEngine)
                  if not n.startswith("__") and callable(getattr(compat.Engine, n, None))}
    assert listed == overridden, (f"docs/torchreid.md lists {sorted(listed)}; VideoV2MEngine "
                                  f"overrides {sorted(overridden)}")


# ------------------------------------------------------------------------------- environment
def _environ_reads(tree: ast.AST) -> list[ast.expr]:
    """The name argument of every ``os.environ.get(x)``, ``os.environ[x]``, ``os.getenv(x)``
    and ``x in os.environ`` in ``tree``."""

    def is_environ(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "environ"
                and isinstance(node.value, ast.Name) and node.value.id == "os")

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            f = node.func
            if (f.attr in ("get", "pop", "setdefault") and is_environ(f.value)) or (
                    f.attr == "getenv" and isinstance(f.value, ast.Name) and f.value.id == "os"):
                found.append(node.args[0])
        elif isinstance(node, ast.Subscript) and is_environ(node.value) and \
                isinstance(node.ctx, ast.Load):
            found.append(node.slice)
        elif isinstance(node, ast.Compare) and any(isinstance(o, (ast.In, ast.NotIn))
                                                   for o in node.ops) and \
                any(is_environ(c) for c in node.comparators):
            found.append(node.left)
    return found


def environment_variables() -> dict[str, list[str]]:
    """Every environment variable the package and tools read: ``{name: [file:line, ...]}``.

    A name passed through a parameter (``def _env_true(name): os.environ.get(name)``) is
    followed to the calls of that function in the same module with a literal argument."""
    out: dict[str, list[str]] = {}
    files = glob.glob(osp.join(REPO, PACKAGE, "**", "*.py"), recursive=True) + \
        glob.glob(osp.join(REPO, "tools", "*.py"))
    for file in sorted(files):
        rel = osp.relpath(file, REPO)
        with open(file, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for arg in _environ_reads(tree):
            names = []
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names = [arg.value]
            elif isinstance(arg, ast.Name):
                func = arg
                while func is not None and not isinstance(func, ast.FunctionDef):
                    func = parents.get(func)
                params = [a.arg for a in func.args.args] if func is not None else []
                assert arg.id in params, f"{rel}:{arg.lineno}: environment variable of unknown name"
                i = params.index(arg.id)
                names = [c.args[i].value for c in ast.walk(tree)
                         if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
                         and c.func.id == func.name and len(c.args) > i
                         and isinstance(c.args[i], ast.Constant)]
                assert names, f"{rel}:{arg.lineno}: {func.name}() is never called with a name"
            else:
                raise AssertionError(f"{rel}:{arg.lineno}: read the environment with a literal name")
            for name in names:
                out.setdefault(name, []).append(f"{rel}:{arg.lineno}")
    return out


def test_environment_reads_are_found():
    found = environment_variables()
    # known reads, two of them indirect (through a helper taking the name)
    assert {"TFCLIP_CACHE", "TFCLIP_HOME", "HF_HUB_OFFLINE", "RANK"} <= set(found)


def test_every_environment_variable_is_documented():
    page = read(osp.join("docs", "environment.md"))
    table = page.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    found = environment_variables()
    missing = {name: where for name, where in found.items() if name not in documented}
    assert not missing, f"read by the code, not in docs/environment.md's table: {missing}"
    ours = {n for doc in DOCS for n in re.findall(r"\bTFCLIP_[A-Z0-9_]+", read(doc))}
    assert ours <= set(found), f"documented, read nowhere: {sorted(ours - set(found))}"
    assert "docs/environment.md" in read("README.md")
    assert "environment.md" in read(osp.join("docs", "README.md"))


# ---------------------------------------------------------------------------------- install
CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"


def test_cpu_wheels_are_offered_with_the_pins_ci_installs():
    """A CPU-only machine need not pull CUDA's libraries: README's install section and
    docs/install.md give PyTorch's CPU index, for the torch / torchvision CI installs."""
    readme = read("README.md")
    ci_pins = re.findall(r"pip install (torch==\S+ torchvision==\S+)(?=\s)(?! --index-url)", readme)
    assert ci_pins and len(set(ci_pins)) == 1, "README's commands pin one torch / torchvision"
    install = readme.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    for doc, text in (("README.md's Install section", install),
                      ("docs/install.md", read(osp.join("docs", "install.md")))):
        assert f"pip install {ci_pins[0]} {CPU_INDEX}" in text, \
            f"{doc} does not offer `pip install {ci_pins[0]} {CPU_INDEX}`"
    first = readme.split("\n## Install\n", 1)[0]  # before the newcomer runs the two commands
    assert CPU_INDEX in first and "](#install)" in first
