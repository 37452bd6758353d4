"""A clock behind the store's own records, and one that jumps (issue 18, item 4), against the real parts: `serve` and
the CLI run under faketime (a dead CMOS battery sets the clock back; NTP corrects it later), the store is a real
LMDB file read back by the real clock."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _raw_http import _connect, _read_response
from _service_support import PASSWORD, ServeProcess, auth_header, make_db, make_identity

import lmcz_fast
from lmcz_fast.store import Blocklist
from lmcz_fast.store.freshness import CLOCK_TOLERANCE

DAY = 86400.0
FAKETIME = shutil.which("faketime")
needs_faketime = pytest.mark.skipif(FAKETIME is None, reason="faketime is not installed (Debian package faketime)")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(lmcz_fast.__file__)))
    env["PYTHONPATH"] = package_root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(*args: str, offset: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = [FAKETIME, "-f", offset] if offset else []
    return subprocess.run([*prefix, sys.executable, "-c", "import sys; from lmcz_fast.cli import main; sys.exit(main())",
                           *args], capture_output=True, text=True,
                          env=_env(), timeout=120)


def _http(port: int, method: str, path: str, body: object | None = None) -> tuple[int, bytes]:
    data = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: lm\r\nAuthorization: {auth_header()}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    with _connect(port) as sock:
        sock.sendall(head.encode() + b"\r\n" + data)
        return _read_response(sock, bytearray())


@pytest.fixture
def codes() -> list[str]:
    rng = random.Random(4)
    return [make_identity(rng) for _ in range(20)]


@needs_faketime
def test_sales_made_while_the_clock_is_400_days_behind_survive_its_correction(tmp_path: Path,
                                                                                codes: list[str]) -> None:
    """Before: 5 sales reported to a `serve` whose clock read 400 days back were stamped then, and the moment the
    clock was right they were 400 days old, expired: the register went 5 -> 0 and a double sale passed. Now they are
    stamped no earlier than the newest time the store holds (its last sync), and kept; `serve` says on every surface
    that its clock is behind, and refuses checks (it cannot show the store is within its offline limit)."""
    db = make_db(tmp_path / "store.db", codes[:10])
    sold = codes[10:15]
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    os.chmod(password, 0o600)
    before = time.time()
    with ServeProcess(db, password_file=password, prefix=(FAKETIME, "-f", "-400d")) as serve:
        status, body = _http(serve.port, "POST", "/api/v2/cis/sell", {"cis_list": sold})
        assert status == 201, body
        stamps = [item["soldAt"] for item in json.loads(body)["results"]]
        # stamped at the store's last sync (a real time), not 400 days back
        assert all(stamp >= (before - 60) * 1000 for stamp in stamps), stamps
        status, body = _http(serve.port, "GET", "/api/v1/status")
        payload = json.loads(body)
        assert status == 200 and payload["status"] == "sync_error", payload
        assert any("clock" in warning for warning in payload["warnings"]), payload["warnings"]
        status, body = _http(serve.port, "POST", "/api/v1/cis/check", {"cis_list": [codes[0]]})
        refusal = json.loads(body)
        assert status == 400 and refusal["code"] == 4050 and refusal["clockBehind"] > 399 * DAY, refusal
        status, body = _http(serve.port, "GET", "/metrics")
        behind = [line for line in body.decode().splitlines() if line.startswith("lmcz_clock_behind_seconds ")]
        assert behind and float(behind[0].split()[1]) > 399 * DAY, behind
        assert 'lmcz_db_state{state="expired"} 1' in body.decode()
        status, body = _http(serve.port, "GET", "/")
        assert status == 200 and "clock" in body.decode()
        deadline = time.monotonic() + 10
        while not any("clock" in line and "behind" in line for line in serve.log):
            assert time.monotonic() < deadline, "".join(serve.log)
            time.sleep(0.05)
    # NTP corrects the clock: the sales are still in the register, the purge keeps them, checks answer them sold
    with Blocklist.open(db, readonly=False) as bl:
        assert bl.status().state == "ready" and bl.status().clock_behind is None
        assert bl.sold.purge() == 0
        assert bl.sold.count() == 5
        assert all(bl.is_sold(code) for code in sold)


@needs_faketime
def test_a_clock_a_year_behind_does_not_push_the_expiry_back(tmp_path: Path, codes: list[str]) -> None:
    """Before: with the clock 365 days behind the last sync, the age was clamped to 0 and the store said READY
    (and stayed so for a year). Now `status`, `status --json` and `info` say EXPIRED and by how much the clock is
    behind; the same store read by the right clock (same run) is READY, and a clock a few minutes off is tolerated."""
    db = make_db(tmp_path / "store.db", codes[:10])
    right = _cli("status", str(db), "--json")
    assert right.returncode == 0 and json.loads(right.stdout)["state"] == "ready", right.stderr
    behind = _cli("status", str(db), "--json", "--check", offset="-365d")
    report = json.loads(behind.stdout)
    assert report["state"] == "expired", report
    assert 364 * DAY < report["clock_behind"] < 366 * DAY
    assert behind.returncode != 0
    text = _cli("status", str(db), offset="-365d")
    assert "EXPIRED" in text.stdout and "clock is behind" in text.stderr, (text.stdout, text.stderr)
    info = _cli("info", str(db), "--json", offset="-365d")
    assert json.loads(info.stdout)["state"] == "expired" and json.loads(info.stdout)["clock_behind"] > 364 * DAY
    minutes = _cli("status", str(db), "--json", offset=f"-{int(CLOCK_TOLERANCE // 2)}s")
    assert json.loads(minutes.stdout)["state"] == "ready", minutes.stdout


def test_the_purge_never_deletes_by_a_clock_that_jumped_ahead(tmp_path: Path, codes: list[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The purge is the one step that deletes sales. A clock set 400 days ahead by mistake while the process runs
    (and a sale recorded by it) must not delete the sales of the last 30 days: in a process the purge counts only
    the time that really elapsed (monotonic), and never past a day after the database's newest time."""
    db = make_db(tmp_path / "store.db", codes[:5])
    with Blocklist.open(db, readonly=False) as bl:
        bl.record_sold(codes[5:10])
        assert bl.sold.purge() == 0           # the purge's clock agrees with the wall clock here
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 400 * DAY)
        bl.record_sold(codes[10:11])           # stamped by the jumped clock
        assert bl.sold.purge() == 0
        monkeypatch.setattr(time, "time", real)
        assert bl.sold.count() == 6
        assert all(bl.is_sold(code) for code in codes[5:10])
    # A process started with the clock already ahead has nothing to compare it with but the database: its purge
    # never counts past a day after the newest time the database holds.
    db2 = make_db(tmp_path / "other.db", codes[:5])
    with Blocklist.open(db2, readonly=False) as bl:
        bl.record_sold(codes[5:10])
    with Blocklist.open(db2, readonly=False) as bl:
        monkeypatch.setattr(time, "time", lambda: real() + 400 * DAY)
        try:
            assert bl.sold.purge() == 0
        finally:
            monkeypatch.setattr(time, "time", real)
        assert bl.sold.count() == 5


def test_the_checker_refuses_offline_by_a_clock_behind_and_says_why(tmp_path: Path, codes: list[str]) -> None:
    """The till-side checker with an in-process store: a store synced "in the future" of this clock (the clock is
    behind) is refused offline with its own reason, not answered as fresh."""
    from lmcz_fast.checker import Checker, Decision

    db = make_db(tmp_path / "store.db", codes[:10])
    with Blocklist.open(db, readonly=False) as bl:
        bl.mark_synced(at=time.time() + 365 * DAY)      # recorded by the right clock; this one is a year behind
    with Blocklist.open(db) as bl, Checker(None, bl) as checker:
        verdict = checker.check(codes[15])
    assert verdict.decision is Decision.CANNOT_CHECK and verdict.reasons[0].key == "offline_clock_behind"
    assert "часы" in verdict.message("ru") and "clock" in verdict.message("en")
