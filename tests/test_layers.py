"""Imports in common/ run one way: a module imports only its own package or a lower layer.

The layers are the ones common/__init__.py lists. Lazy imports inside functions count too: they
run as surely as top-level ones, only later. A module of a new package fails until the package
is given its layer here (and in common/__init__.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COMMON = REPO / "common"
# Lowest first; packages on one layer may not import each other.
LAYERS: list[set[str]] = [
    {"config", "log", "startup"},
    {"meta"},
    {"bus"},
    {"store", "ai"},
    {"guard", "knowledge"},
    {"actions"},
    {"webhook", "transcriber", "responder"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def part_of(module: str) -> str:
    """The layer unit of a dotted module inside common: `common.store.claims` -> `store`."""
    parts = module.split(".")
    assert parts[0] == "common" and len(parts) > 1, module
    return parts[1]


def imports_of(path: Path, repo: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of ours in one file, relative ones resolved."""
    package = ".".join(path.relative_to(repo).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] + ".__init__"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("common")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: -node.level] + ([base] if base else []))
            if base == "common":  # `from common import log, config`: each name is a module
                found += [(node.lineno, f"common.{a.name}") for a in node.names]
            elif base.startswith("common."):
                found.append((node.lineno, base))
    return found


def violations(root: Path) -> list[str]:
    """Each import in the `common` folder `root` that runs up or sideways, with where it is."""
    repo, wrong = root.parent, []
    for path in sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(repo).with_suffix("").parts)
        if module in ("common", "common.__init__"):
            continue
        own = part_of(module)
        if own not in RANK:
            wrong.append(f"{module}: package '{own}' has no layer (tests/test_layers.py, LAYERS)")
            continue
        for line, target in imports_of(path, repo):
            theirs = part_of(target)
            if theirs == own:
                continue
            if theirs not in RANK or RANK[theirs] >= RANK[own]:
                wrong.append(f"{path.relative_to(repo)}:{line} ({own}) imports {target} ({theirs})")
    return wrong


def test_imports_point_down_the_layers() -> None:
    assert violations(COMMON) == []


def test_every_package_says_what_it_is_for() -> None:
    for package in sorted(p.parent for p in COMMON.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc, f"{package.relative_to(REPO)}/__init__.py has no docstring"


@pytest.mark.parametrize(
    ("source", "where"),
    [
        ("from common.responder import texts\n", "meta/graph.py"),  # up
        ("from common.ai import llm\n", "store/claims.py"),  # sideways
        ("def lazy():\n    from common.webhook import handler\n", "transcriber/handler.py"),
    ],
)
def test_the_check_catches_an_import_that_runs_the_wrong_way(tmp_path: Path, source: str, where: str) -> None:
    fake = tmp_path / "common"
    target = fake / where
    target.parent.mkdir(parents=True)
    target.write_text(source)
    assert len(violations(fake)) == 1
