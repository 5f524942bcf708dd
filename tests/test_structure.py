"""The package's structure: modules grouped by what they do, no import circles, nothing imports "up".

Every module under pipeline/ is parsed with `ast` (nothing is imported), and each import of a
`pipeline.*` module, at module level or inside a function, is an edge. Groups have ranks: the CLI
on top, then the user-facing groups (labelling, evaluation, scoring), then the model, then the
encoder and the corpus, and the shared helpers at the bottom. An import goes down, or sideways
within its own group; the one sideways step between groups is evaluation -> scoring (the external
evaluation scores real pages as `stance score` does).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
MAX_LINES = 420
RANKS = {"cli": 4, "labelling": 3, "evaluation": 3, "scoring": 3, "model": 2, "encoder": 1, "corpus": 1, "base": 0}
BASE = {"pipeline", "pipeline.files", "pipeline.errors", "pipeline.numerics", "pipeline.project", "pipeline.terminal"}  # shared helpers (and LABELS)
SIDEWAYS = {("evaluation", "scoring")}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The `pipeline.*` modules `path` imports, anywhere in it (a `from package import name` counts
    as the submodule when `name` is one, else as the package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "pipeline":
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in known or node.module in known:
                    found.add(submodule if submodule in known else node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import (the package uses absolute imports)")
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    found = modules(root)
    return {name: imports(path, set(found)) - {name} for name, path in found.items()}


def group(module: str) -> str:
    """"corpus" for pipeline.corpus.prepare, "cli" for pipeline.cli, "base" for the shared helpers."""
    return "base" if module in BASE else module.split(".")[1]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One import circle per strongly connected part of the graph with more than one module."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            part = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                part.append(member)
                if member == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            a, b = group(source), group(target)
            if a not in RANKS or b not in RANKS:
                problems.append(f"{source} -> {target}: group {a if a not in RANKS else b!r} has no rank")
            elif RANKS[b] > RANKS[a] or (RANKS[b] == RANKS[a] and a != b and (a, b) not in SIDEWAYS):
                problems.append(f"{source} ({a}, rank {RANKS[a]}) imports {target} ({b}, rank {RANKS[b]})")
    return problems


def long_modules(root: Path = PACKAGE, limit: int = MAX_LINES) -> list[str]:
    return [f"{path.relative_to(root.parent)}: {n} lines" for path in sorted(root.rglob("*.py"))
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > limit]


def test_the_package_has_its_groups_and_every_module_sits_in_one():
    names = set(modules())
    assert {"pipeline.cli", "pipeline.corpus.prepare", "pipeline.encoder.embed", "pipeline.model.train",
            "pipeline.evaluation.evaluate", "pipeline.scoring.score", "pipeline.labelling.label_session"} <= names
    assert {group(name) for name in names} <= set(RANKS), sorted({group(name) for name in names} - set(RANKS))


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_imports_only_go_down_or_sideways_within_a_group():
    assert layering_violations(import_graph()) == []


def test_no_module_is_too_long():
    assert long_modules() == []


def test_group_packages_import_nothing_and_say_what_they_are_for():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{init}: no docstring"
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))], f"{init} imports"


def test_every_module_starts_with_a_docstring():
    missing = [str(path) for path in sorted(PACKAGE.rglob("*.py")) if not ast.get_docstring(ast.parse(path.read_text()))]
    assert missing == []


def test_dvc_stages_name_code_that_exists():
    import yaml

    stages = yaml.safe_load((PACKAGE.parent / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    missing = [f"{name}: {dep}" for name, stage in stages.items() for dep in stage.get("deps", [])
               if dep.startswith("pipeline/") and not (PACKAGE.parent / dep).is_file()]
    assert missing == []


def stale_code_deps(lock_text: str, root: Path) -> list[str]:
    """The code files a stage depends on whose md5 differs from the one dvc.lock recorded."""
    import hashlib

    import yaml

    stale = []
    for name, stage in (yaml.safe_load(lock_text).get("stages") or {}).items():
        for dep in stage.get("deps", []):
            path = root / dep["path"]
            if dep["path"].endswith(".py") and path.is_file() and hashlib.md5(path.read_bytes()).hexdigest() != dep["md5"]:
                stale.append(f"{name}: {dep['path']}")
    return stale


def test_dvc_lock_is_current_for_the_code_the_stages_run():
    # Code changed without `dvc repro` (or `dvc commit`) would re-run stages on a fresh clone and
    # leave its `git status` dirty: commit the lock file with the code.
    assert stale_code_deps((PACKAGE.parent / "dvc.lock").read_text(encoding="utf-8"), PACKAGE.parent) == []


def test_a_stale_lock_entry_is_found(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n", encoding="utf-8")
    lock = "stages:\n  s:\n    deps:\n    - path: a.py\n      md5: 00000000000000000000000000000000\n"
    assert stale_code_deps(lock, tmp_path) == ["s: a.py"]


# -- the checks themselves can fail --------------------------------------------------------------

def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pipeline"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
        (root / name).parent.joinpath("__init__.py").touch()
    return root


def test_a_cycle_through_a_lazy_import_is_found(tmp_path):
    root = _tree(tmp_path, {"encoder/__init__.py": "", "encoder/a.py": "from pipeline.encoder.b import x\n",
                            "encoder/b.py": "def f():\n    from pipeline.encoder import a\n"})
    assert cycles(import_graph(root)) == [["pipeline.encoder.a", "pipeline.encoder.b"]]


@pytest.mark.parametrize("source, text, bad", [
    ("corpus/labels.py", "def f():\n    from pipeline.labelling.agreement import g\n", True),  # up
    ("labelling/issues.py", "from pipeline.evaluation.evaluate import g\n", True),  # sideways, not allowed
    ("encoder/embed.py", "import pipeline.model.train\n", True),
    ("evaluation/external.py", "from pipeline.scoring.score import g\n", False),  # the allowed sideways step
    ("model/train.py", "from pipeline import LABELS\nfrom pipeline.corpus import labels\n", False),
])
def test_layering_violations_are_found(tmp_path, source, text, bad):
    targets = ("labelling/agreement.py", "evaluation/evaluate.py", "model/train.py", "scoring/score.py",
               "corpus/labels.py")
    root = _tree(tmp_path, {**{target: "" for target in targets}, source: text})
    assert bool(layering_violations(import_graph(root))) is bad


def test_a_long_module_is_found(tmp_path):
    root = _tree(tmp_path, {"model/train.py": '"""x"""\n' + "pass\n" * MAX_LINES})
    assert long_modules(root) == ["pipeline/model/train.py: 421 lines"]
