"""Processes of the examples tests/test_examples.py runs: free ports, the daemons an example starts (waited for until
they answer or log that they are ready), the files served where the docs name hosts, and each command's outcome
judged."""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import click

from lmcz_fast.cli import main


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class _FlatFiles(http.server.SimpleHTTPRequestHandler):
    """Serves a feed directory's files under any path prefix (`/`, `/lmcz/`, `/feed/`), as a CDN path would."""

    def translate_path(self, path: str) -> str:
        name = path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        return os.path.join(self.directory, name)

    def log_message(self, format: str, *args) -> None:
        pass


def _program() -> str:
    beside = Path(sys.executable).with_name("lmcz-fast")
    found = str(beside) if beside.exists() else shutil.which("lmcz-fast")
    assert found, "the lmcz-fast command is not installed next to this Python (pip install '.[test]')"
    return found


@dataclass
class Daemon:
    command: str
    name: str  # the lmcz-fast subcommand
    process: subprocess.Popen
    out: Path
    err: Path


#: Commands that need nothing from the world and change nothing in it, slow enough to run only once per session
#: when several examples print them (`lmcz-fast --help` and `lmcz-fast demo --help` both show the demo).


def _parse(argv: list[str]) -> tuple[str, dict]:
    """The subcommand and its options and arguments as written (no conversion, no check that files exist)."""
    command: click.Command = main
    names: list[str] = []
    args = list(argv)
    while isinstance(command, click.Group):
        ctx = click.Context(command, info_name=names[-1] if names else "lmcz-fast")
        _, rest, _ = command.make_parser(ctx).parse_args(args)
        if not rest:
            return " ".join(names) or "--help", {}
        names.append(rest[0])
        command, args = command.commands[rest[0]], rest[1:]
    ctx = click.Context(command, info_name=names[-1])
    opts, _, _ = command.make_parser(ctx).parse_args(args)
    given = {k: v for k, v in opts.items() if isinstance(v, (str, int, float, list, tuple))}  # not click's UNSET
    return " ".join(names), given


def _http(url: str, auth: tuple[str, str] | None, body: bytes | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _wait_http(url: str, auth, process: subprocess.Popen, err: Path | None = None) -> tuple[int, dict]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            detail = err.read_text(errors="replace") if err else ""
            raise AssertionError(f"exited with {process.returncode} before answering {url}\n{detail[-3000:]}")
        try:
            return _http(url, auth)
        except (OSError, ValueError):
            time.sleep(0.1)
    raise AssertionError(f"no answer at {url} within 30 s")


def _wait_log(err: Path, words: str, process: subprocess.Popen, command: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = err.read_text(errors="replace")
        if "FAILED" in text or "Traceback" in text:
            raise AssertionError(f"{command}:\n{text[-3000:]}")
        if words in text:
            return
        if process.poll() is not None:
            raise AssertionError(f"{command}: exited with {process.returncode}\n{text[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"{command}: no {words!r} within 60 s")


def _judge(command: str, argv: list[str] | None, rc: int, out: str, err: str) -> None:
    """Did the command do what its example says? Exit 0, or 1 for a check that found a blocked code (documented);
    no traceback, no error; curl got a JSON answer with code 0."""
    shown = f"{command}\n  rc {rc}\n  stdout: {out[-2000:]}\n  stderr: {err[-2000:]}"
    assert "Traceback" not in err and "Traceback" not in out, shown
    name = _parse(argv)[0] if argv is not None else command.split()[0]
    if name in ("lookup", "check") and rc == 1:
        assert re.search(r"BLOCKED|REFUSE|\"blocked\": true", out), shown
    else:
        assert rc == 0, shown
    assert "error:" not in err.lower(), shown
    if name in ("lookup", "check"):
        assert "INVALID" not in out and "cannot_check" not in out.lower(), shown
    if name == "curl":
        payload = json.loads(out)
        assert payload.get("code") == 0, shown
        if "/cis/" in command:
            assert [c["isBlocked"] for c in payload["codes"]] == [True], shown


def _python_inputs(code: str) -> list[str]:
    return re.findall(r"""["']([\w./-]+\.(?:csv|txt)(?:\.gz)?)["']""", code)
