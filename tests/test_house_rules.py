"""The house rules on the size of functions, checked from the source (an AST walk, like tests/test_import_graph.py):
no public function of `lmcz_fast/` takes more than 8 parameters (click commands excepted: their parameters are
their options), no function is longer than 120 lines, and no class is a mixin declaring its host's methods
(docs/ARCHITECTURE.md, "House rules").

A public function is a module-level function or a method of a module-level class whose name does not start with
`_` (a public class's `__init__` counts: its parameters are the class's constructor). `self`/`cls` are not counted.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

#: The source tree (the tests run against the installed package; like tests/test_import_graph.py, read the source).
ROOT = Path(__file__).resolve().parent.parent / "lmcz_fast"
MAX_PARAMETERS = 8
MAX_LINES = 120

#: Public functions allowed past MAX_PARAMETERS, each with why a grouping is not worth it. The test also fails when
#: one of them no longer needs its place here, so the list cannot go stale.
WIDE = {
    "lmcz_fast/service/api/module.py:LocalModule.handle":
        "the hot path: http/connection.py calls it once per request with the parsed request's fields positionally; a "
        "request object would cost an allocation per request for no reader's gain",
    "lmcz_fast/service/throttle.py:AuthThrottle.__init__":
        "keyword-only tunables, each with a default; tests set one or two by name",
    "lmcz_fast/feed/publishing.py:publish":
        "the library face of `feed publish`: the inputs (snapshot/delta/prices/grey) and the feed's settings, each "
        "keyword-only with a default, one per CLI option; grouping them only moves the same names into a class",
}

Function = ast.FunctionDef | ast.AsyncFunctionDef


def _files() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(ROOT.rglob("*.py")):
        yield path.relative_to(ROOT.parent).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _public(tree: ast.Module) -> Iterator[tuple[str, Function, bool]]:
    """(qualified name, function, whether it is a method) of every public function of a module."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            yield node.name, node, False
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                        not item.name.startswith("_") or item.name == "__init__"):
                    yield f"{node.name}.{item.name}", item, True


def _click_command(func: Function) -> bool:
    """Decorated as a click command or group (`@click.command`, `@group.command(...)`, `@click.option`...)."""
    for decorator in func.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr in ("command", "group", "option", "argument"):
            return True
    return False


def _parameters(func: Function, method: bool) -> int:
    args = func.args
    count = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs) + bool(args.vararg) + bool(args.kwarg)
    is_static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in func.decorator_list)
    return count - 1 if method and not is_static and count else count


def _wide() -> dict[str, int]:
    found = {}
    for name, tree in _files():
        for qualified, func, method in _public(tree):
            count = _parameters(func, method)
            if count > MAX_PARAMETERS and not _click_command(func):
                found[f"{name}:{qualified}"] = count
    return found


def test_no_public_function_takes_more_than_eight_parameters() -> None:
    wide = _wide()
    unexplained = sorted(f"{name} takes {count}" for name, count in wide.items() if name not in WIDE)
    assert not unexplained, (f"public functions with more than {MAX_PARAMETERS} parameters (group options into a "
                             f"small frozen dataclass, or say in WIDE why not): {unexplained}")
    stale = sorted(set(WIDE) - set(wide))
    assert not stale, f"no longer past {MAX_PARAMETERS} parameters (or gone): remove them from WIDE: {stale}"


def test_no_function_is_longer_than_120_lines() -> None:
    long = []
    for name, tree in _files():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, f"functions longer than {MAX_LINES} lines (split them by job): {long}"


def test_the_walk_sees_what_it_checks() -> None:
    """The checks above look where they claim: the walk finds click commands and public methods, and counts
    parameters as the rule means them."""
    trees = dict(_files())
    serve = {q: (f, m) for q, f, m in _public(trees["lmcz_fast/cli/serve.py"])}
    assert any(_click_command(f) and _parameters(f, m) > MAX_PARAMETERS for f, m in serve.values())
    api = {q: (f, m) for q, f, m in _public(trees["lmcz_fast/service/api/module.py"])}
    assert _parameters(*api["LocalModule.handle"]) == 9
    assert not _click_command(api["LocalModule.handle"][0])
    assert "lmcz_fast/service/api/module.py:LocalModule.handle" in _wide()


def test_parts_not_mixins() -> None:
    """A class that declares stubs of its host's methods (`if TYPE_CHECKING:` in its body) is a mixin reaching into
    its host: parts are handed what they need instead (docs/ARCHITECTURE.md, "Service parts"). And `LocalModule`
    is built of parts, not bases."""
    from lmcz_fast.service import LocalModule

    stubs = []
    for name, tree in _files():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.If) and ast.unparse(item.test).endswith("TYPE_CHECKING"):
                        stubs.append(f"{name}:{node.lineno} {node.name}")
    assert not stubs, f"classes declaring their host's methods (mixins): {stubs}"
    assert LocalModule.__bases__ == (object,)
