"""The house plan, checked from the source: no import circle between the files of `lmcz_fast/`, and no import of
a private name (a module or a name starting with `_`) across packages.

An AST walk over every module (imports under `TYPE_CHECKING` and inside functions count too: a circle the type
checker needs is still a circle in the plan). Layers are in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

#: The source tree (the tests run against the installed package, whose folder holds no .pyx files and no docs).
ROOT = Path(__file__).resolve().parent.parent / "lmcz_fast"
#: The compiled modules: their names are private by convention, and every layer above builds on them.
COMPILED = {"lmcz_fast._codes", "lmcz_fast._probe", "lmcz_fast._bulk", "lmcz_fast._answer"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    for name in COMPILED:
        found.setdefault(name, ROOT / (name.rsplit(".", 1)[1] + ".pyx"))
    return found


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rsplit(".", 1)[0]


def _imports(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) of every import in `path` that names a module of ours."""
    out: list[tuple[str, str | None, int]] = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _package_of(module, path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, None, node.lineno) for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target not in modules:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    out.append((sub, None, node.lineno))
                else:
                    out.append((target, alias.name, node.lineno))
    return out


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    private: list[str] = []
    for module, path in modules.items():
        if path.suffix != ".py":
            continue
        home = _package_of(module, path)
        for target, name, line in _imports(module, path, modules):
            graph[module].add(target)
            if target in COMPILED:
                continue
            target_home = _package_of(target, modules[target])
            hidden = name is not None and name.startswith("_") and not name.startswith("__")
            hidden_module = any(part.startswith("_") and part != "__init__" for part in target.split(".")[1:])
            if target_home != home and (hidden or hidden_module):
                private.append(f"{path.relative_to(ROOT.parent)}:{line}: {target}{'.' + name if name else ''}")
    return graph, private


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt == node:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_circle_between_files() -> None:
    graph, _ = _graph()
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_no_private_name_is_imported_across_packages() -> None:
    _, private = _graph()
    assert not private, "\n".join(private)


def test_the_walk_sees_the_imports_it_judges() -> None:
    """The checks above are only as good as the graph: it must hold the edges every reader can see."""
    graph, _ = _graph()
    assert "lmcz_fast.store.blocklist" in graph["lmcz_fast.store"]
    assert "lmcz_fast._probe" in graph["lmcz_fast.store.blocklist.public"]
    assert "lmcz_fast.store" in graph["lmcz_fast.service.api"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_front_sits_between_the_store_and_the_service() -> None:
    """lmcz_fast/front/ (in front of the official module) builds on the store and below; the service builds on it
    (service/fronting.py), so the front never imports the service, the CLI or the other upper layers."""
    graph, _ = _graph()
    front = [name for name in graph if name == "lmcz_fast.front" or name.startswith("lmcz_fast.front.")]
    assert front, "lmcz_fast/front/ is missing"
    above = ("lmcz_fast.service", "lmcz_fast.cli", "lmcz_fast.feed", "lmcz_fast.replicate", "lmcz_fast.checker")
    wrong = sorted(f"{name} -> {target}" for name in front for target in graph[name]
                   if target.startswith(above))
    assert not wrong, "\n".join(wrong)
    assert "lmcz_fast.front" in graph["lmcz_fast.service.fronting"]


def test_every_package_is_shipped() -> None:
    """pyproject.toml lists the packages a wheel holds: a package of `lmcz_fast/` missing there installs nowhere but
    an editable checkout (the service imports lmcz_fast.front, so a wheel without it could not serve)."""
    import pytest

    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    listed = set(tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.relative_to(ROOT.parent).parent.parts) for p in ROOT.rglob("__init__.py")}
    assert found - listed == set(), "packages missing from pyproject.toml [tool.setuptools] packages"
