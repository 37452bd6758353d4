"""Finding the examples tests/test_examples.py runs: the command lines of every `--help` text and the docs' code
blocks (`EXAMPLES`), and the examples that cannot run inside a test with their reasons (`ALLOWED`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import click
from click.testing import CliRunner

from lmcz_fast.cli import main

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

#: The code the examples check: blocked in every list the test makes, as the docs' sample answers show it.
EXAMPLE_CIS = "0104650000000010215abcdef"

#: Examples that cannot run inside a test, each with its reason: a regular expression searched in a command's text
#: (in a python block, in any of its lines).
ALLOWED: dict[str, str] = {
    r"^LMCZ_TRUE_API_KEY=\.\.\. lmcz-fast check --lm":
        "needs a True API key and CRPT's True API hosts on the internet (the offline side is run by the other "
        "`check` examples)",
    r"^python3 -m venv \.venv && \.venv/bin/pip install \. && \.venv/bin/lmcz-fast demo$":
        "installs the package into a new virtualenv: what `.ci/run` does before this suite (and `lmcz-fast demo` "
        "itself runs here from `lmcz-fast --help`)",
    r"^python3 -m venv \.venv && \.venv/bin/pip install '\.\[test\]' && \.venv/bin/pytest$":
        "the test command itself: `.ci/run` runs it, this suite is what it runs",
    r"pytest( -p no:randomly)? benches/":
        "a benchmark command: benches/ runs as part of this suite, running it from a test would run it twice",
    r"^python benches/bench_service\.py --port":
        "the load generator of benches/bench_service.py, which that bench runs against a real `serve`",
    r"^online = TrueApiClient\(api_key":
        "needs a True API key and CRPT's hosts; tests/test_checker.py runs the same calls against a local fake",
    r"^async with Checker\(TrueApiClient\(api_key\)":
        "needs a True API key and CRPT's hosts; tests/test_checker.py runs the same calls against a local fake",
    r"^(PATH=\S+ )?(build-env|/opt/lmcz-fast)/bin/|^python3 -m venv (build-env|/opt/lmcz-fast)|^systemd-sysusers |"
    r"^systemctl ":
        "a store server's installation (a wheel built and installed without a compiler, systemd units enabled): "
        "tests/test_wheel.py and tests/test_systemd.py run these steps",
    r"^runuser -u lmcz-fast |^install -[do] ":
        "a store server's installation as root (the service user made by systemd-sysusers, files under /etc): "
        "tests/test_systemd.py checks the layout the units need, tests/test_operations.py runs each command "
        "the service runs",
    r"--proxy http://proxy\.shop\.local":
        "goes through the store's HTTP proxy: tests/test_proxy.py runs these commands through a real tinyproxy",
    r"^Blocklist\.create\(path, \*, instance_id=None\) -> Blocklist":
        "an API synopsis (signatures), not code",
    r"^bl\.status\(now: float \| None = None\) -> Status$":
        "an API synopsis (a signature), not code",
    r"^parse_code\(raw: str \| bytes, \*, cis: bool = False\) -> MarkingCode":
        "an API synopsis (signatures), not code",
}

COMMANDS = ("lmcz-fast", "curl", "printf", "mkdir", "python", "python3", "pytest", "cd", "pip", "auditwheel",
            "systemd-sysusers", "systemctl", "runuser", "install")
_COMMAND = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:\S*/)?(?:" + "|".join(map(re.escape, COMMANDS)) + r")(?:\s|$)")


# ------------------------------------------------------------------------------------------------ finding examples


@dataclass(frozen=True)
class Example:
    where: str  # "lmcz-fast serve --help" or "docs/service.md:17"
    kind: str  # "sh", "unit" or "python"
    commands: tuple[str, ...]
    credentials: tuple[tuple[str, str], ...] = ()  # a unit's LoadCredential= (id, path)


def _joined(lines: list[str]) -> list[str]:
    out: list[str] = []
    carry = ""
    for line in lines:
        stripped = line.strip()
        if stripped.endswith("\\"):
            carry += stripped[:-1].rstrip() + " "
            continue
        out.append((carry + stripped).strip())
        carry = ""
    if carry:
        out.append(carry.strip())
    return out


def _commands_in_help(text: str) -> list[str]:
    body = text.split("\nOptions:", 1)[0]
    return [line for line in _joined(body.splitlines()) if _COMMAND.match(line)]


def _walk(group: click.Group, path: tuple[str, ...] = ()):
    yield path, group
    for name in sorted(group.commands):
        command = group.commands[name]
        if isinstance(command, click.Group):
            yield from _walk(command, (*path, name))
        else:
            yield (*path, name), command


def help_examples() -> list[Example]:
    runner = CliRunner()
    examples = []
    for path, _ in _walk(main):
        result = runner.invoke(main, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, (path, result.output)
        commands = _commands_in_help(result.output)
        if commands:
            examples.append(Example(" ".join(("lmcz-fast", *path, "--help")), "sh", tuple(commands)))
    return examples


def _blocks(path: Path):
    lines = path.read_text(encoding="utf-8").splitlines()
    start = None
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            if start is None:
                start, tag, body = number, line.strip()[3:].strip(), []
            else:
                yield start, tag, body
                start = None
        elif start is not None:
            body.append(line)


def doc_examples() -> list[Example]:
    examples = []
    for path in DOCS:
        name = path.relative_to(REPO).as_posix()
        for number, tag, body in _blocks(path):
            where = f"{name}:{number}"
            if tag == "python":
                examples.append(Example(where, "python", ("\n".join(body),)))
            elif tag == "ini":
                starts = [line.split("=", 1)[1].strip() for line in body if line.startswith("ExecStart=")]
                creds = tuple(tuple(line.split("=", 1)[1].strip().split(":", 1)) for line in body
                              if line.startswith("LoadCredential="))
                examples.extend(Example(where, "unit", (command,), creds) for command in starts)
            elif tag in ("", "sh", "bash", "console", "shell"):
                lines = [line for line in _joined(body) if line and not line.startswith("#")]
                commands = [line for line in lines if _COMMAND.match(line)]
                if not commands and not any(re.search(r"\blmcz-fast\s+[a-z-]", line) for line in lines):
                    continue  # a file's content or a tree of the sources, not commands
                stray = [line for line in lines if not _COMMAND.match(line)]
                assert not stray, f"{where}: a command block with lines that are not commands: {stray}"
                examples.append(Example(where, "sh", tuple(commands)))
    return examples


def _allowance(text: str) -> str | None:
    for pattern, reason in ALLOWED.items():
        if re.search(pattern, text, re.M):
            return reason
    return None


EXAMPLES = help_examples() + doc_examples()
