"""The feed's CLI: keygen, publish, sync and status as printed, a missing file named by its public error, and the
sync daemon's log and SIGTERM (moved from test_feed.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _feed_support import db_state, fast_identities, publish_set, write_list
from _store_support import gtin_with_check
from click.testing import CliRunner

from lmcz_fast import feed
from lmcz_fast.store import Blocklist

GTIN = gtin_with_check("4600000000001")
CODES = fast_identities(3000, seed=11)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return feed.write_keypair(tmp_path / "feed.key")


# -- CLI -----------------------------------------------------------------------------------------------------

def _cli():
    import click

    from lmcz_fast.cli.feed import register

    group = click.Group()
    register(group)
    return group


def test_cli_keygen_publish_sync_status(tmp_path: Path) -> None:
    runner = CliRunner()
    cli = _cli()
    key, pub, fd, db = (tmp_path / n for n in ("feed.key", "feed.pub", "feed", "db"))
    assert runner.invoke(cli, ["keygen", str(key)]).exit_code == 0
    source = write_list(tmp_path / "list.txt", CODES[:200], [GTIN])
    result = runner.invoke(cli, ["publish", str(fd), "--key", str(key), "--snapshot", source, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["codes"] == 200
    # in this process: --nice 0, or the rest of the test run would be reniced (the daemon test checks --nice)
    result = runner.invoke(cli, ["sync", str(db), "--feed", str(fd), "--public-key", str(pub), "--nice", "0"])
    assert result.exit_code == 0 and "by snapshot" in result.output, result.output
    result = runner.invoke(cli, ["sync", str(db), "--nice", "0"])
    assert result.exit_code == 0 and "up to date" in result.output, result.output

    result = runner.invoke(cli, ["status", str(db), "--json", "--check"])
    status = json.loads(result.output)
    assert result.exit_code == 0 and status["state"] == "ready" and status["codes"] == 200
    assert status["feed_url"].startswith("file://") and status["feed_key_id"]
    with Blocklist.open(db, readonly=False) as bl:
        bl.mark_synced(at=time.time() - 3 * 3600)
    result = runner.invoke(cli, ["status", str(db), "--check"])
    assert result.exit_code == 1 and "STALE" in result.output
    with Blocklist.open(db, readonly=False) as bl:
        bl.mark_synced(at=time.time() - 80 * 3600)
    assert runner.invoke(cli, ["status", str(db), "--check"]).exit_code == 2

    (fd / "manifest.json").write_text("{}")
    result = runner.invoke(cli, ["sync", str(db), "--nice", "0"])
    assert result.exit_code == 5 and "not changed" in result.output


def test_a_failed_first_sync_from_the_cli_leaves_no_database(tmp_path: Path, keys) -> None:
    key, pub = keys
    other_key, other_pub = feed.write_keypair(tmp_path / "other.key")
    fd, db = tmp_path / "feed", tmp_path / "store.db"
    publish_set(fd, key, CODES[:100])
    runner = CliRunner()
    result = runner.invoke(_cli(), ["sync", str(db), "--feed", str(fd), "--public-key", str(other_pub),
                                    "--nice", "0", "--attempts", "1"])
    assert result.exit_code == 5, result.output
    assert "no database was created" in result.stderr
    assert not db.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".store.db")]
    result = runner.invoke(_cli(), ["sync", str(db), "--feed", str(fd), "--public-key", str(pub), "--nice", "0"])
    assert result.exit_code == 0, result.output
    with Blocklist.open(db) as bl:
        assert bl.status().state == "ready" and bl.is_blocked(CODES[0])
    # a later failure never removes the store that is there
    (fd / "manifest.json").write_text("{}")
    result = runner.invoke(_cli(), ["sync", str(db), "--nice", "0", "--attempts", "1"])
    assert result.exit_code == 5 and "not changed" in result.stderr
    assert db_state(db)[0] == 1


def test_cli_names_a_missing_feed_file_by_its_public_error(tmp_path: Path, keys) -> None:
    """A 404 (or a missing file) is a FeedUnavailable to the user, never a private class name."""
    _, pub = keys
    runner = CliRunner()
    empty = tmp_path / "no-feed-here"
    empty.mkdir()
    for args in (["sync", str(tmp_path / "db"), "--feed", str(empty), "--public-key", str(pub)],
                 ["mirror", str(tmp_path / "mirror"), "--feed", str(empty), "--public-key", str(pub)]):
        result = runner.invoke(_cli(), [*args, "--nice", "0", "--attempts", "1"])
        assert result.exit_code == 5, result.output
        assert "FeedUnavailable: " in result.output and "manifest.json" in result.output
        assert "_NotFound" not in result.output and "Traceback" not in result.output


def test_cli_keygen_refusing_to_overwrite_names_force(tmp_path: Path) -> None:
    runner = CliRunner()
    key = tmp_path / "feed.key"
    assert runner.invoke(_cli(), ["keygen", str(key)]).exit_code == 0
    before = key.read_bytes()
    result = runner.invoke(_cli(), ["keygen", str(key)])
    assert result.exit_code == 5 and "--force" in result.output and str(key) in result.output
    assert key.read_bytes() == before
    assert runner.invoke(_cli(), ["keygen", str(key), "--force"]).exit_code == 0
    assert key.read_bytes() != before


CLI_SCRIPT = "import click, sys\nfrom lmcz_fast.cli.feed import register\ng = click.Group()\nregister(g)\ng()\n"


def test_sync_daemon_logs_and_stops_on_sigterm(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    publish_set(fd, key, CODES[:100])
    proc = subprocess.Popen([sys.executable, "-c", CLI_SCRIPT, "sync", str(db), "--feed", str(fd),
                             "--public-key", str(pub), "--every", "0.3s"],
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while sum("sync ok" in line for line in lines) < 2 and time.monotonic() < deadline:
            lines.append(proc.stderr.readline())
        # the daemon runs below the readers it shares the cores with (--nice 10 by default)
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == min(19, os.nice(0) + 10)
        proc.send_signal(signal.SIGTERM)
        # a deadline, not a speed: at nice 10 on a loaded machine (or under emulation) the daemon may wait its turn
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = "".join(lines) + rest
    assert proc.returncode == 0, log
    assert "sync ok: version 0 -> 1 by snapshot" in log and "sync ok: up to date" in log
    assert "received SIGTERM" in log and log.rstrip().endswith("stopped")
