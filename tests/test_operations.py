"""Running lmcz-fast as an operator does: `serve` before the first list (answers 4045, then the list without a
restart), `serve` on a busy port (names the holder and --port), the commands' refusals of credentials in URLs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _daemon_support import start_on_free_port, stop_process
from _http_support import basic_auth, call

LMCZ = shutil.which("lmcz-fast", path=os.path.dirname(sys.executable)) or shutil.which("lmcz-fast")
AUTH = basic_auth("admin", "admin")


def _get(port: int, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    return call(port, path, AUTH, body)


def _serve(db: Path, log: Path):
    def launch(port: int) -> subprocess.Popen:
        return subprocess.Popen([LMCZ, "serve", str(db), "--port", str(port), "--no-audit"],
                                stdout=subprocess.DEVNULL, stderr=log.open("ab"))
    started = start_on_free_port(launch, timeout=30)
    if started is None:
        pytest.fail("serve did not start: " + log.read_text(errors="replace"))
    return started


def test_serve_before_the_first_list_answers_4045_then_the_list_without_a_restart(tmp_path):
    db = tmp_path / "var" / "store.db"
    db.parent.mkdir()
    log = tmp_path / "serve.log"
    port, proc = _serve(db, log)
    try:
        code = "0104650000000010215abcdef\x1d93ab12"
        status, body = _get(port, "/api/v1/cis/outCheck", json.dumps({"cis_list": [code]}).encode())
        assert status == 400 and json.loads(body)["errorCode"] == 4045, body
        status, body = _get(port, "/api/v1/status")
        assert json.loads(body)["status"] == "not_configured"
        status, page = _get(port, "/?lang=en")
        assert status == 200 and b"Waiting for the first list" in page
        assert "made an empty one" in log.read_text() and proc.poll() is None
        # the first list arrives (a load here; a sync or a replication writes the same store)
        listed = tmp_path / "blocked.txt"
        listed.write_text("0104650000000010215abcdef\n")
        loaded = subprocess.run([LMCZ, "load", str(db), str(listed)], capture_output=True, text=True, timeout=120)
        assert loaded.returncode == 0, loaded.stderr
        deadline = time.monotonic() + 20
        while True:
            status, body = _get(port, "/api/v1/cis/outCheck", json.dumps({"cis_list": [code]}).encode())
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == 200, body
        assert json.loads(body)["codes"][0]["isBlocked"] is True
        assert proc.poll() is None          # the same process: no restart
    finally:
        stop_process(proc)
    assert proc.returncode == 0


def test_serve_on_a_busy_port_names_the_holder_and_port_option(tmp_path):
    db = tmp_path / "store.db"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run([LMCZ, "serve", str(db), "--port", str(port), "--no-audit"], capture_output=True,
                                text=True, timeout=60)
    assert result.returncode == 4
    assert "Address already in use" in result.stderr and "--port" in result.stderr, result.stderr
    assert f"pid {os.getpid()}" in result.stderr, result.stderr   # this test process holds it


def test_busy_default_port_mentions_the_official_module():
    from lmcz_fast.cli.serve import port_holder_advice
    assert "official Local Module" in port_holder_advice(5995) and "--port" in port_holder_advice(5995)


def test_check_lm_takes_the_password_from_a_file_and_refuses_it_in_the_url(tmp_path):
    from _service_support import make_db
    db = make_db(tmp_path / "store.db", ["0104650000000010215abcdef"])
    password = tmp_path / "password"
    password.write_text("a-long-secret\n")
    log = tmp_path / "serve.log"

    def launch(port: int) -> subprocess.Popen:
        return subprocess.Popen([LMCZ, "serve", str(db), "--port", str(port), "--no-audit", "--password-file",
                                 str(password)], stdout=subprocess.DEVNULL, stderr=log.open("ab"))
    started = start_on_free_port(launch, timeout=30)
    assert started is not None, log.read_text()
    port, proc = started
    try:
        url = f"http://127.0.0.1:{port}"
        refused = subprocess.run([LMCZ, "check", "--lm", f"http://admin:a-long-secret@127.0.0.1:{port}",
                                  "0104650000000010215abcdef"], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 4 and "--lm-auth-file" in refused.stderr and "ps" in refused.stderr
        auth = tmp_path / "lm.auth"
        auth.write_text("admin:a-long-secret\n")
        auth.chmod(0o600)
        blocked = subprocess.run([LMCZ, "check", "--lm", url, "--lm-auth-file", str(auth), "--json",
                                  "0104650000000010215abcdef"], capture_output=True, text=True, timeout=60)
        assert blocked.returncode == 1, blocked.stdout + blocked.stderr     # refused: the code is blocked
        assert json.loads(blocked.stdout)["decision"] == "refuse"
        auth.write_text("admin:wrong\n")
        wrong = subprocess.run([LMCZ, "check", "--lm", url, "--lm-auth-file", str(auth), "--json",
                                "0104650000000010215abcdef"], capture_output=True, text=True, timeout=60)
        assert wrong.returncode == 3, wrong.stdout + wrong.stderr           # cannot check: 401
    finally:
        stop_process(proc)


@pytest.mark.parametrize("table,line", [("prices", "gtin,price\n04650000000010,10000"), ("grey", "04650000000010")])
def test_a_store_made_by_a_side_table_load_is_empty_not_expired(tmp_path, table, line):
    from lmcz_fast import Blocklist
    source = tmp_path / "rows.csv"
    source.write_text(line + "\n")
    db = tmp_path / "store.db"
    result = subprocess.run([LMCZ, table, "load", str(db), str(source)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    with Blocklist.open(db) as bl:
        status = bl.status()
    assert status.state == "empty" and status.expires_at is None, status
    info = subprocess.run([LMCZ, "info", str(db)], capture_output=True, text=True, timeout=60)
    assert "EXPIRED" not in info.stdout.upper(), info.stdout


def _file(db: Path) -> int:
    return (db / "data.mdb").stat().st_size


def test_compact_gives_back_the_room_of_repeated_loads_and_keeps_everything(tmp_path):
    from lmcz_fast import Blocklist
    from lmcz_fast.synth import cis_list
    codes = cis_list(60_000, seed=3)
    listing = tmp_path / "blocked.txt"
    listing.write_text("\n".join(codes[:50_000]) + "\n")
    db = tmp_path / "store.db"
    with Blocklist.create(db) as bl:
        bl.load(listing, replace=True)
        bl.mark_synced(feed_url="https://feed.example/")
        bl.sold.record(codes[50_000:50_010])
    for _ in range(4):
        with Blocklist.open(db, readonly=False) as bl:
            bl.load(listing, replace=True)
    with Blocklist.open(db) as bl:
        before = (bl.info()["set_digest"], bl.get_meta("version"), bl.sold.count(), bl.get_meta("last_sync_at"))
    grown = _file(db)
    checked = subprocess.run([LMCZ, "compact", str(db), "--check", "--json"], capture_output=True, text=True,
                             timeout=60)
    figures = json.loads(checked.stdout)
    assert figures["file_bytes"] == grown and figures["file_bytes"] > 2 * figures["live_bytes"], figures
    result = subprocess.run([LMCZ, "compact", str(db)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "compacted" in result.stdout, result.stderr
    assert _file(db) <= figures["live_bytes"] * 1.05 < grown / 2
    with Blocklist.open(db) as bl:
        after = (bl.info()["set_digest"], bl.get_meta("version"), bl.sold.count(), bl.get_meta("last_sync_at"))
        assert bl.is_blocked(codes[7]) and not bl.is_blocked(codes[55_000]) and bl.sold.is_sold(codes[50_003])
    assert after == before
    # the store is written again after compacting (a new lock file, the same data)
    with Blocklist.open(db, readonly=False) as bl:
        bl.apply_delta([codes[55_000]], [], to_version=bl.get_meta("version") + 1)
        assert bl.is_blocked(codes[55_000])


def test_compact_refuses_a_store_another_process_has_open(tmp_path):
    from _service_support import make_db
    db = make_db(tmp_path / "store.db", ["0104650000000010215abcdef"])
    log = tmp_path / "serve.log"
    port, proc = _serve(db, log)
    try:
        size = _file(db)
        result = subprocess.run([LMCZ, "compact", str(db)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 6 and "open in another process" in result.stderr, result.stderr
        assert _file(db) == size
        status, body = _get(port, "/api/v1/status")
        assert status == 200
    finally:
        stop_process(proc)


def test_load_compacts_by_itself_when_it_has_the_store_alone(tmp_path):
    from lmcz_fast.synth import cis_list
    listing = tmp_path / "blocked.txt"
    listing.write_text("\n".join(cis_list(150_000, seed=4)) + "\n")
    db = tmp_path / "store.db"
    sizes = []
    for _ in range(4):
        result = subprocess.run([LMCZ, "load", str(db), str(listing)], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        sizes.append(_file(db))
    assert "compacted" in result.stdout or sizes[-1] <= 1.6 * sizes[0], (sizes, result.stdout)
    assert max(sizes) <= 1.6 * sizes[0], sizes


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([LMCZ, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_a_store_loaded_from_files_adopts_a_feed_keeping_its_sold_register(tmp_path):
    from lmcz_fast import Blocklist
    from lmcz_fast.synth import cis_list
    codes = cis_list(300, seed=9)
    mine, theirs = tmp_path / "mine.txt", tmp_path / "theirs.txt"
    mine.write_text("\n".join(codes[:100]) + "\n")
    theirs.write_text("\n".join(codes[50:200]) + "\n")
    db = tmp_path / "store.db"
    for _ in range(3):                                   # version 3 from files
        assert _run("load", db, mine).returncode == 0
    with Blocklist.open(db, readonly=False) as bl:
        bl.sold.record([codes[250]])
        instance = bl.get_meta("instance_id")
    assert _run("keygen", tmp_path / "feed.key").returncode == 0
    published = _run("publish", tmp_path / "feed", "--key", tmp_path / "feed.key", "--snapshot", theirs)
    assert published.returncode == 0, published.stderr
    refused = _run("sync", db, "--feed", tmp_path / "feed", "--public-key", tmp_path / "feed.pub")
    assert refused.returncode == 5 and "already holds 3" in refused.stderr, refused.stderr
    # serve holds the store: adopting waits for the services to be stopped
    port, proc = _serve(db, tmp_path / "serve.log")
    try:
        busy = _run("adopt", db, "--feed", tmp_path / "feed", "--public-key", tmp_path / "feed.pub")
    finally:
        stop_process(proc)
    assert busy.returncode == 6 and "another process" in busy.stderr, busy.stderr
    adopted = _run("adopt", db, "--feed", tmp_path / "feed", "--public-key", tmp_path / "feed.pub")
    assert adopted.returncode == 0, adopted.stderr
    assert "1 sold-register entries carried over" in adopted.stdout and "before-adopt" in adopted.stdout
    with Blocklist.open(db) as bl:
        assert bl.get_meta("instance_id") == instance and bl.get_meta("version") == 1
        assert bl.is_blocked(codes[150]) and not bl.is_blocked(codes[10])   # the feed's list, not the files'
        assert bl.sold.is_sold(codes[250])
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("store.db.before-adopt-")]
    assert len(kept) == 1 and (kept[0] / "data.mdb").exists()
    again = _run("sync", db)                            # now it follows the feed
    assert again.returncode == 0, again.stderr


def test_sync_every_records_a_failed_round_for_status_and_the_page(tmp_path):
    """A sync daemon whose feed is down keeps the error in the store: `status` and the page say why it is stale."""
    from _service_support import make_db
    db = make_db(tmp_path / "store.db", ["0104650000000010215abcdef"])
    assert _run("keygen", tmp_path / "feed.key").returncode == 0
    log = tmp_path / "sync.log"
    proc = subprocess.Popen([LMCZ, "sync", str(db), "--feed", "http://127.0.0.1:9/feed/", "--public-key",
                             str(tmp_path / "feed.pub"), "--every", "2h", "--attempts", "1", "--timeout", "2"],
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    try:
        deadline = time.monotonic() + 60
        while "FAILED" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
    finally:
        stop_process(proc)
    assert "FAILED" in log.read_text(), log.read_text()
    status = _run("status", db)
    assert "last failure" in status.stdout and "127.0.0.1:9" in status.stdout, status.stdout
