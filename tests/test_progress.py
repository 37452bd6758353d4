"""Long work shows progress on a terminal and stays quiet elsewhere: `load`, `publish` and a snapshot `sync` run as
the installed `lmcz-fast` under a pseudo-terminal (the pty module) show a bar with rate and ETA; with stderr in a
pipe (a log) or with --json, nothing of it appears. The bar's own arithmetic is checked with a fake clock."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import termios
import time

import pytest
from _feed_support import FeedServer, fast_identities, write_list

from lmcz_fast import feed, synth
from lmcz_fast.cli.progress import ProgressBar, progress_for
from lmcz_fast.progress import estimate_lines, line_counter

COUNT = 300_000  # three of the store's 100k-line reading chunks: the bar is redrawn part-way, with a rate and an ETA
LMCZ = shutil.which("lmcz-fast", path=os.path.dirname(sys.executable)) or shutil.which("lmcz-fast")


def run_in_pty(args: list[str], timeout: float = 120.0) -> tuple[int, str]:
    """Run the installed CLI with stdin, stdout and stderr on a pseudo-terminal; its exit status and output."""
    assert LMCZ is not None, "the lmcz-fast script is not installed next to this Python"
    pid, fd = pty.fork()
    if pid == 0:  # the child: its terminal is the pty, 160 columns wide
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
            env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}  # pytest sets them
            os.execve(LMCZ, [LMCZ, *args], env)
        finally:
            os._exit(127)
    chunks = []
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", "replace")


def bar_lines(output: str) -> list[str]:
    """Every state the bar was drawn in (carriage-return separated redraws)."""
    return [part.replace("\x1b[K", "").strip() for line in output.splitlines() for part in line.split("\r")
            if part.strip()]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    source = write_list(root / "blocked.txt", fast_identities(COUNT, seed=5))
    key, pub = feed.write_keypair(root / "feed.key")
    return root, source, key, pub


@pytest.fixture(scope="module")
def published(inputs):
    """A feed published by `lmcz-fast publish` under a pty (the publish test reads its output)."""
    root, source, key, _pub = inputs
    status, output = run_in_pty(["publish", str(root / "feed"), "--key", str(key), "--snapshot", source])
    return status, output


def test_load_on_a_terminal_shows_a_bar_with_rate_and_eta(inputs, tmp_path):
    _root, source, _key, _pub = inputs
    status, output = run_in_pty(["load", str(tmp_path / "db"), source])
    assert status == 0, output
    states = bar_lines(output)
    reading = [s for s in states if s.startswith("reading")]
    assert any("ETA" in s and "lines/s" in s and "%" in s and "[#" in s for s in reading), states
    assert any(s.startswith("reading") and "100%" in s and "300k/300k lines" in s for s in states), states
    assert any(s.startswith("writing the database") for s in states)
    assert f"{COUNT} codes" in output  # the summary still follows


def test_load_in_a_log_prints_no_bar(inputs, tmp_path):
    _root, source, _key, _pub = inputs
    result = subprocess.run([LMCZ, "load", str(tmp_path / "db"), source], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    for text in (result.stdout, result.stderr):
        assert "\r" not in text and "ETA" not in text and "lines/s" not in text and "\x1b[" not in text
    assert f"{COUNT} codes" in result.stdout


def test_publish_on_a_terminal_shows_each_step(published):
    status, output = published
    assert status == 0, output
    states = bar_lines(output)
    assert any(s.startswith("reading input") and "ETA" in s and "lines/s" in s for s in states), states
    for step in ("checking and sorting", "collecting the new list", "compressing the snapshot",
                 "writing and signing"):
        assert any(s.startswith(step) for s in states), (step, states)
    assert "version 1 (created)" in output


def test_snapshot_sync_on_a_terminal_and_quiet_with_json(inputs, published, tmp_path):
    root, _source, _key, pub = inputs
    assert published[0] == 0
    with FeedServer(root / "feed") as server:
        status, output = run_in_pty(["sync", str(tmp_path / "a"), "--feed", server.url, "--public-key", str(pub),
                                     "--nice", "0"])
        quiet_status, quiet = run_in_pty(["sync", str(tmp_path / "b"), "--feed", server.url, "--public-key",
                                          str(pub), "--nice", "0", "--json"])
    assert status == 0, output
    states = bar_lines(output)
    assert any(s.startswith("downloading snapshot-00000001.txt.gz") and "100%" in s and "/s" in s
               for s in states), states
    assert any(s.startswith("loading into the store") and "ETA" in s and "lines/s" in s for s in states), states
    assert any(s.startswith("writing the database") for s in states)
    assert quiet_status == 0, quiet
    assert "\r" not in quiet.replace("\r\n", "\n") and "ETA" not in quiet and "downloading" not in quiet
    assert json.loads(quiet)["action"] == "snapshot"


def test_bar_arithmetic_with_a_fake_clock():
    now = [100.0]
    out = io.StringIO()
    bar = ProgressBar(out, clock=lambda: now[0], tick=None)
    bar("downloading x", 0, 4 << 20, "bytes")
    now[0] += 2.0
    bar("downloading x", 1 << 20, 4 << 20, "bytes")  # 1 MiB in 2 s: 512 KiB/s, 3 MiB left: 6 s
    assert bar.line() == "downloading x  [#####---------------]  25%  1.0 MiB/4.0 MiB  512.0 KiB/s  ETA 0:06  2.0 s"
    now[0] += 0.01
    bar("downloading x", (1 << 20) + 1000, 4 << 20, "bytes")  # within 0.1 s, same bar: not redrawn
    assert out.getvalue().count("\r") == 2
    bar("downloading x", 2 << 20, 4 << 20, "bytes")  # within 0.1 s, but the bar grew: redrawn
    assert out.getvalue().count("\r") == 3
    now[0] += 0.5
    bar("downloading x", 3 << 20, 4 << 20, "bytes")
    assert "75%" in bar.line() and "ETA 0:01" in bar.line()
    now[0] += 0.01
    bar("downloading x", 4 << 20, 4 << 20, "bytes")  # the last state is always drawn
    bar("applying", 0, None, "")
    now[0] += 3.0
    bar.close()
    drawn = bar_lines(out.getvalue())
    assert drawn[-1] == "applying  3.0 s"
    assert drawn[-3] == "downloading x  [####################] 100%  4.0 MiB/4.0 MiB  1.6 MiB/s  2.5 s"


def test_estimates_and_counting(tmp_path):
    import gzip

    lines = [f"01046000000000{i:02d}21serial{i:07d}" for i in range(50)] * 2000  # 100k lines, 3.4 MB
    plain = tmp_path / "a.txt"
    plain.write_text("\n".join(lines) + "\n")
    packed = tmp_path / "a.txt.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert estimate_lines([plain]) == 100_000
    assert abs(estimate_lines([packed, plain]) - 200_000) <= 200
    assert estimate_lines([["in", "memory"]]) is None
    seen = []
    count = line_counter(lambda *args: seen.append(args), "reading", 300)
    for value in (100, 200, 50, 100):  # two sources: 200 lines, then 100
        count(value)
    assert [s[1] for s in seen] == [0, 100, 200, 250, 300]
    assert progress_for(stream=io.StringIO()) is None  # not a terminal


def test_replicate_on_a_terminal_shows_a_bar_and_is_quiet_with_json(tmp_path):
    from _couch_support import POUCHDB, Couch

    if POUCHDB is None:
        pytest.skip("pouchdb-server is not installed (.ci/run installs it with npm)")
    with Couch(tmp_path / "couch") as couch:
        couch.create("blocked_cis", "blocked_gtin")
        couch.put_docs("blocked_cis", [{"_id": code} for code in synth.cis_list(3000, seed=5)])
        args = ["replicate", "--source", couch.url, "--databases", "codes=blocked_cis,gtins=blocked_gtin",
                "--batch", "500", "--nice", "0"]
        status, output = run_in_pty([args[0], str(tmp_path / "a"), *args[1:]])
        assert status == 0, output
        states = bar_lines(output)
        assert any(s.startswith("replicating blocked_cis") and "changes/s" in s and "%" in s for s in states), \
            states
        status, quiet = run_in_pty([args[0], str(tmp_path / "b"), *args[1:], "--json"])
        assert status == 0 and "replicating" not in quiet and json.loads(quiet[quiet.index("{"):])["full"]
