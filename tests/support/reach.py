"""Which third-party distributions a piece of our code imports, found statically (for test_locks).

From an entry file (a function's main.py) the walk follows only the code that can run: importing a
module runs its top-level statements (and its packages'); a top-level def or class (a "unit", with
its methods) runs when something reached names it: `decode.to_ogg_opus(...)`, `_pydub()`,
`from common.ai.openai_client import base_url`. Lazy imports inside a unit count where the unit is reached,
so the transcriber's openai path is told apart from its SpeechRecognition backends, which live in
the same modules. Imports are mapped to distributions with the venv's own metadata.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
DEV_PACKAGES = frozenset({"common", "local", "tests", "bench", "scripts"})  # ours, not on PyPI
_DEFS = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
Unit = tuple[str, str | None]  # (module, top-level def/class name, or None for its top-level code)


@dataclass(frozen=True)
class Module:
    name: str
    body: list[ast.stmt]  # top-level statements, defs and classes left out
    defs: dict[str, ast.stmt]
    aliases: dict[str, Unit]  # a local name bound to one of our modules, or to a name in one


def module_path(name: str) -> Path | None:
    """The repo file of one of our modules (a.b -> a/b.py or a/b/__init__.py), if it is one."""
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def parse(name: str, path: Path) -> Module:
    tree = ast.parse(path.read_text(), str(path))
    aliases: dict[str, Unit] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and module_path(node.module):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                aliases[alias.asname or alias.name] = (
                    (full, None) if module_path(full) else (node.module, alias.name)
                )
        elif isinstance(node, ast.Import):
            aliases.update({a.asname: (a.name, None) for a in node.names if a.asname and module_path(a.name)})
    return Module(
        name,
        [s for s in tree.body if not isinstance(s, _DEFS)],
        {s.name: s for s in tree.body if isinstance(s, _DEFS)},
        aliases,
    )


def imported_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    """`import a.b` -> a.b; `from a import b, c` -> a.b and a.c (each a module, or a name in a)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert node.level == 0, "relative imports are not used in this repo"
    return [f"{node.module}.{alias.name}" for alias in node.names]


def is_third_party(name: str) -> bool:
    top = name.split(".")[0]
    return top not in DEV_PACKAGES and top != "__future__" and top not in sys.stdlib_module_names


def reachable_imports(entry: Path, staged: set[str], excluded: frozenset[str]) -> dict[str, set[str]]:
    """{third-party module: {unit importing it}} for what `entry` can run; `excluded` units never run.

    `staged` are our packages deployed beside the entry file; importing another of ours (local/,
    tests/) is reported as `<not staged: name>`. Excluded units are given as "module:name".
    """
    return _reach(entry, staged, excluded)[0]


def reachable_modules(entry: Path, staged: set[str], excluded: frozenset[str] = frozenset()) -> set[str]:
    """Our modules (dotted names) that what `entry` can run uses: a unit of theirs is reached."""
    return {module for module, _ in _reach(entry, staged, excluded)[1] if module != "__entry__"}


def _reach(entry: Path, staged: set[str], excluded: frozenset[str]) -> tuple[dict[str, set[str]], set[Unit]]:
    for unit in excluded:
        module, name = unit.split(":")
        path = module_path(module)
        assert path and name in parse(module, path).defs, f"{unit} no longer exists: update the exclusions"

    def load(name: str) -> Module:
        return parse(name, entry if name == "__entry__" else module_path(name))  # type: ignore[arg-type]

    def reach_module(name: str) -> None:
        parts = name.split(".")  # importing a.b.c runs a/__init__ and a/b/__init__ first
        todo.extend((".".join(parts[:depth]), None) for depth in range(1, len(parts) + 1))

    def reach_name(module: Module, name: str) -> None:
        if name in module.defs:
            todo.append((module.name, name))
        elif name in module.aliases:
            target, inner = module.aliases[name]
            todo.append((target, inner if inner in load(target).defs else None))

    found: dict[str, set[str]] = defaultdict(set)
    seen: set[Unit] = set()
    todo: list[Unit] = [("__entry__", None)]
    while todo:
        unit = todo.pop()
        if unit in seen or f"{unit[0]}:{unit[1]}" in excluded:
            continue
        seen.add(unit)
        module = load(unit[0])
        where = f"{unit[0]}:{unit[1] or '<module>'}"
        for node in (
            ast.walk(module.defs[unit[1]]) if unit[1] else (n for s in module.body for n in ast.walk(s))
        ):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name in imported_names(node):
                    top = name.split(".")[0]
                    if top in staged and module_path(name):
                        reach_module(name)
                        if isinstance(node, ast.Import):  # `import common.x`: anything in it may be used
                            todo.extend((name, d) for d in load(name).defs)
                    elif top in staged and isinstance(node, ast.ImportFrom) and node.module:
                        reach_module(node.module)
                        reach_name(load(node.module), name.rsplit(".", 1)[1])
                    elif top in DEV_PACKAGES:
                        found[f"<not staged: {name}>"].add(where)
                    elif is_third_party(name):
                        found[name].add(where)
            elif isinstance(node, ast.Name):
                reach_name(module, node.id)
            elif isinstance(node, ast.Attribute):
                if (
                    isinstance(node.value, ast.Name)
                    and module.aliases.get(node.value.id, ("", ""))[1] is None
                ):
                    reach_name(load(module.aliases[node.value.id][0]), node.attr)  # `decode.to_ogg_opus`
                if node.attr in module.defs:  # `self._helper` and the like: over-approximate
                    todo.append((module.name, node.attr))
    return dict(found), seen


def all_imports(files: list[Path]) -> dict[str, set[str]]:
    """{third-party module: {file}} over whole files, top-level and lazy imports alike."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import) or (
                isinstance(node, ast.ImportFrom) and node.module and not node.level
            ):
                for name in imported_names(node):
                    if is_third_party(name) and name.split(".")[0] != "main":
                        found[name].add(path.relative_to(REPO).as_posix())
    return dict(found)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def _module_owners() -> dict[str, frozenset[str]]:
    """{dotted module or package: {distribution}} from every installed distribution's file list."""
    owners: dict[str, set[str]] = defaultdict(set)
    for dist in importlib.metadata.distributions():
        name = normalize(dist.metadata["Name"])
        for file in dist.files or []:
            if file.suffix not in (".py", ".so", ".pyd"):
                continue
            parts = [*file.parts[:-1], file.name.split(".")[0]]
            if parts[-1] == "__init__":
                parts.pop()
            for depth in range(1, len(parts) + 1):
                owners[".".join(parts[:depth])].add(name)
    return {module: frozenset(dists) for module, dists in owners.items()}


@functools.cache
def distribution_of(module: str) -> str | None:
    """The distribution shipping `module` (for `from a import b`: a.b, or else a); None if none does.

    A namespace package (google) is shared: the longest prefix that one distribution owns decides.
    """
    parts, owners = module.split("."), _module_owners()
    for depth in range(len(parts), 0, -1):
        dists = owners.get(".".join(parts[:depth]), frozenset())
        if len(dists) == 1:
            return next(iter(dists))
        if dists:
            return None  # shared and nothing deeper is unique: cannot tell
    return None


def distributions(imports: dict[str, set[str]]) -> dict[str, set[str]]:
    """{distribution: {where}}; an import that no installed distribution ships raises AssertionError."""
    unknown = {m: sorted(w) for m, w in imports.items() if m.startswith("<") or distribution_of(m) is None}
    assert not unknown, f"imported, but in no installed distribution (or not deployed): {unknown}"
    result: dict[str, set[str]] = defaultdict(set)
    for module, places in imports.items():
        result[distribution_of(module)].update(places)  # type: ignore[index]
    return dict(result)
