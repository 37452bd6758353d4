"""docs/ARCHITECTURE.md is the map of the tree: every module of `lmcz_fast/` is named in the layer tree, under the
entry of its package, and the CLI layout names every command module."""

from __future__ import annotations

import re
from pathlib import Path

#: The source tree (the tests run against the installed package, whose folder holds no .pyx files and no docs).
ROOT = Path(__file__).resolve().parent.parent / "lmcz_fast"
DOC = ROOT.parent / "docs" / "ARCHITECTURE.md"


def _layer_tree(text: str) -> dict[str, str]:
    """The first code block of the document: each entry (a path at the start of a line, with its continuation
    lines) by the paths it names at its start (`lmcz_fast/a.py, b/` would name both)."""
    block = text.split("```", 2)[1]
    entries: dict[str, str] = {}
    current: list[str] = []
    for line in block.splitlines():
        if line.startswith("lmcz_fast/"):
            head = line[:37].strip()
            current = []
            for name in (part.strip() for part in head.split(",")):
                path = name if name.startswith("lmcz_fast/") else "lmcz_fast/" + name
                path = re.sub(r" \(.*", "", path)
                current.append(path)
                entries[path] = ""
            for path in current:
                entries[path] += line + "\n"
        elif current:
            for path in current:
                entries[path] += line + "\n"
    return entries


def _modules() -> list[Path]:
    found = [p for p in ROOT.rglob("*.py") if p.name != "__init__.py" or p.parent == ROOT]
    found += list(ROOT.glob("*.pyx"))
    return sorted(p for p in found if p.name != "__init__.py")


def _missing(text: str) -> list[str]:
    entries = _layer_tree(text)
    missing = []
    for path in _modules():
        relative = path.relative_to(ROOT.parent).as_posix()
        if path.parent == ROOT:
            text = entries.get(relative, "")
        else:
            text = entries.get(path.parent.relative_to(ROOT.parent).as_posix() + "/", "")
        if not re.search(rf"(?<![\w.]){re.escape(path.name)}", text):
            missing.append(relative)
    return missing


def test_every_module_is_on_the_map() -> None:
    missing = _missing(DOC.read_text(encoding="utf-8"))
    assert not missing, ("modules missing from the layer tree of docs/ARCHITECTURE.md (name each under its "
                         "package's entry):\n" + "\n".join(missing))


def test_the_map_check_sees_a_missing_module() -> None:
    """The check can fail: a document that leaves out a store module, or names it under another package, is
    caught."""
    text = DOC.read_text(encoding="utf-8")
    assert "lmcz_fast/store/compaction.py" in _missing(text.replace("compaction.py", "c0mpaction.py"))
    assert "lmcz_fast/store/appliers/codes.py" in _missing(text.replace("codes.py (`Codes`", "c0des.py (`Codes`"))
    assert "lmcz_fast/synth.py" in _missing(text.replace("lmcz_fast/synth.py", "lmcz_fast/synth.pyz"))


def test_the_cli_layout_names_every_command_module() -> None:
    text = DOC.read_text(encoding="utf-8")
    layout = text[text.index("## CLI layout"):]
    missing = [p.name for p in sorted((ROOT / "cli").glob("*.py"))
               if p.name != "__init__.py" and f"lmcz_fast/cli/{p.name}" not in layout]
    assert not missing, f"the CLI layout of docs/ARCHITECTURE.md does not name: {missing}"
