"""tools/generate_codes.py: its scan files read back exactly, and it makes a blocklist with scans that hit it.

The files go through the real `lmcz-fast load` and `lmcz-fast lookup` (processes, stdin as a file), as a user
trying a list would run them; the examples in the tool's --help run as printed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lmcz_fast._codes import parse_code

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "generate_codes.py"
LMCZ = shutil.which("lmcz-fast", path=os.path.dirname(sys.executable)) or shutil.which("lmcz-fast")


def tool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def cli(*args: str, cwd: Path, stdin: Path | None = None) -> subprocess.CompletedProcess[str]:
    if LMCZ is None:
        pytest.skip("the lmcz-fast command is not installed next to this Python")
    with open(stdin, "rb") if stdin else open(os.devnull, "rb") as source:
        return subprocess.run([LMCZ, *args], cwd=cwd, stdin=source, capture_output=True, text=True, timeout=300)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("gs", ["raw", "symbol"])
def test_every_scan_line_reads_back_as_its_code(tmp_path: Path, gs: str):
    args = ("--damage-rate", "0.6", "--seed", "11")
    spelling = () if gs == "raw" else ("--gs", gs)      # raw is the default
    assert tool("scans", "3000", "scans.txt", *spelling, *args, cwd=tmp_path).returncode == 0
    assert tool("scans", "3000", "truth.jsonl", "--format", "jsonl", *args, cwd=tmp_path).returncode == 0
    truth = jsonl(tmp_path / "truth.jsonl")
    assert sum(bool(t["damage"]) for t in truth) > 1500 and {d for t in truth for d in t["damage"]} >= {
        "lost_gs", "symbology_prefix", "leading_fnc1", "trailing_newline", "escaped_gs", "cyrillic_layout", "base64"}
    # Lines as any reader that splits at LF sees them, parsed by the library ...
    lines = (tmp_path / "scans.txt").read_bytes().decode("utf-8").split("\n")
    assert lines[-1] == "" and len(lines) - 1 == len(truth)
    assert [parse_code(line.rstrip("\r")).identity for line in lines[:-1]] == [t["identity"] for t in truth]
    # ... and by `lmcz-fast lookup` reading the file on stdin, one scan per line.
    (tmp_path / "one.txt").write_text(truth[0]["cis"] + "\n")
    assert cli("load", "store.db", "one.txt", cwd=tmp_path).returncode == 0
    looked = cli("lookup", "store.db", "--json", cwd=tmp_path, stdin=tmp_path / "scans.txt")
    answers = [json.loads(line) for line in looked.stdout.splitlines()]
    assert [a.get("error") for a in answers if "error" in a] == []
    assert [a["cis"] for a in answers] == [t["cis"] for t in truth]
    assert [a["blocked"] for a in answers] == [t["cis"] == truth[0]["cis"] for t in truth]


def test_a_blocklist_and_scans_that_hit_it(tmp_path: Path):
    args = ("scans", "3000", "scans.txt", "--blocklist", "blocked.txt", "--list-size", "20000", "--blocked-share",
            "0.1", "--damage-rate", "0.4", "--seed", "7")
    made = tool(*args, "--truth", "truth.txt", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "300 of listed codes" in made.stderr
    assert tool(*[a if a != "scans.txt" else "scans.jsonl" for a in args], "--format", "jsonl", "--force",
                cwd=tmp_path).returncode == 0
    truth = [line.split("\t") for line in (tmp_path / "truth.txt").read_text().splitlines()]
    records = jsonl(tmp_path / "scans.jsonl")
    listed = (tmp_path / "blocked.txt").read_text().splitlines()
    assert len(listed) == 20000 and len(set(listed)) == 20000 and len(truth) == len(records) == 3000
    assert [t[0] == "blocked" for t in truth] == [r["blocked"] for r in records]
    assert [t[1] for t in truth] == [r["identity"] for r in records]
    assert sum(r["blocked"] for r in records) == 300
    assert sum(bool(r["damage"]) for r in records if r["blocked"]) > 60          # blocked codes come damaged too
    assert {r["cis"] for r in records if r["blocked"]} <= set(listed)
    assert not {r["cis"] for r in records if not r["blocked"]} & set(listed)

    loaded = cli("load", "store.db", "blocked.txt", "--strict", cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    looked = cli("lookup", "store.db", "--json", cwd=tmp_path, stdin=tmp_path / "scans.txt")
    assert looked.returncode == 1, looked.stderr
    answers = [json.loads(line) for line in looked.stdout.splitlines()]
    assert [a["blocked"] for a in answers] == [r["blocked"] for r in records]     # exactly the listed ones


def test_help_examples_work_as_printed(tmp_path: Path):
    """Every command line in the tool's --help, run as printed in a checkout's root (here: a folder with `tools`)."""
    if LMCZ is None:
        pytest.skip("the lmcz-fast command is not installed next to this Python")
    shown = tool("--help", cwd=tmp_path)
    assert shown.returncode == 0
    commands, pending = [], ""
    for line in shown.stdout.splitlines():
        text = line.strip()
        if pending or text.startswith(("python tools/generate_codes.py", "lmcz-fast ")):
            pending += text.split("  #")[0].rstrip()
            if pending.endswith("\\"):
                pending = pending[:-1]
                continue
            commands.append(pending)
            pending = ""
    assert len(commands) >= 5 and any("--blocklist" in c for c in commands)
    (tmp_path / "tools").symlink_to(ROOT / "tools")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "python"            # `python` as printed: this Python (a script, so its venv stays in force)
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.path.dirname(LMCZ)}{os.pathsep}{os.environ.get('PATH', '')}")
    for command in commands:
        ran = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
        # lookup's exit status 1 says something was blocked, which is what the example is for.
        assert ran.returncode in ((0, 1) if "lookup" in command else (0,)), (command, ran.stderr[-2000:])
        assert "Traceback" not in ran.stderr, (command, ran.stderr[-2000:])


def test_an_existing_output_is_not_overwritten_without_force(tmp_path: Path):
    (tmp_path / "blocked.txt").write_text("mine\n")
    refused = tool("blocklist", "10", "blocked.txt", cwd=tmp_path)
    assert refused.returncode == 2 and "exists already; give --force" in refused.stderr
    assert (tmp_path / "blocked.txt").read_text() == "mine\n"
    (tmp_path / "truth.txt").write_text("mine\n")
    refused = tool("scans", "10", "scans.txt", "--blocklist", "list.txt", "--truth", "truth.txt", cwd=tmp_path)
    assert refused.returncode == 2 and not (tmp_path / "scans.txt").exists()
    forced = tool("blocklist", "10", "blocked.txt", "--force", cwd=tmp_path)
    assert forced.returncode == 0 and len((tmp_path / "blocked.txt").read_text().splitlines()) == 10
