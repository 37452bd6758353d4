"""The project speaks of its own files only: no absolute path of a developer's machine in anything it ships.

Code, docs, tests and benches refer to the project's files by their path in the repository; the domain facts they
rely on are in docs/protocol.md, with their public sources, and nothing refers to notes outside the repository
(a folder beside it). A path such as the location of one machine's notes or a private virtualenv
means nothing on a user's machine (and tells them about ours).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Spelled in pieces so that this file does not match itself.
MACHINE_PATHS = re.compile(
    "|".join(re.escape(p) for p in ("/" + "work/", "/" + "root/", "/" + "home/", "/" + "tmp/pip-", "/" + "Users/",
                                    "C:" + "\\Users\\"))
)
SKIP_SUFFIXES = (".so", ".pyd", ".png", ".gz", ".mdb")


def _tracked_files() -> list[Path]:
    """The repository's tracked files (git), or, outside a checkout (an unpacked sdist), every file under the root
    except build products and virtualenvs."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True, timeout=30)
        names = [n for n in out.stdout.decode().split("\0") if n]
        if names:
            return [ROOT / n for n in names]
    except (OSError, subprocess.CalledProcessError):
        pass
    files = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("build", "dist", "__pycache__")
                   and not d.endswith(".egg-info")]
        files.extend(Path(folder) / n for n in names)
    return files


def test_the_file_list_is_the_projects() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in _tracked_files()}
    assert {"README.md", "pyproject.toml", "lmcz_fast/checker/__init__.py", "docs/service.md"} <= names


def _lines_matching(pattern: re.Pattern[str]) -> list[str]:
    """`path:line: text` of every line of a tracked text file that `pattern` finds something in."""
    found = []
    for path in _tracked_files():
        if path.suffix in SKIP_SUFFIXES or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    return found


def test_no_absolute_paths_of_a_developers_machine() -> None:
    found = _lines_matching(MACHINE_PATHS)
    assert not found, "absolute paths of a developer's machine (refer to the project's own files):\n" + "\n".join(found)


@pytest.mark.parametrize("line", [
    "see " + "/" + "work/shared/domain.md",
    "cd /" + "work/main && /" + "root/dev/bin/python -m pytest",
    "/" + "home/someone/.venv/bin/lmcz-fast",
    "pip wheel built in /" + "tmp/pip-req-build-x",
])
def test_the_pattern_catches_what_it_must(line: str) -> None:
    assert MACHINE_PATHS.search(line)


@pytest.mark.parametrize("line", ["docs/protocol.md", "/var/lib/lmcz/store.db", "/etc/lmcz/feed.key",
                                  ".venv/bin/pytest", "/srv/feed"])
def test_the_pattern_leaves_deployment_paths_alone(line: str) -> None:
    assert not MACHINE_PATHS.search(line)


#: A reference to notes kept beside the repository (spelled in pieces so that this file does not match itself).
OUTSIDE_NOTES = re.compile(re.escape(".." + "/shared/"))


def test_nothing_refers_to_notes_outside_the_repository() -> None:
    """The repository stands alone: the domain facts it relies on are written into docs/protocol.md with their public
    sources, so no file sends a reader to a folder beside the repository."""
    found = _lines_matching(OUTSIDE_NOTES)
    assert not found, "files referring to notes outside the repository (cite docs/protocol.md):\n" + "\n".join(found)
    assert OUTSIDE_NOTES.search("see " + ".." + "/shared/domain.md")
