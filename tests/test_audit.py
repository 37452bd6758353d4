"""The audit log: what is written, rotation, retention, export, and how much a crash can lose."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import random
import signal
import time
from pathlib import Path

import pytest
from _service_support import Client, ServeProcess, ServerThread, make_db, make_identity, make_scan
from click.testing import CliRunner

from lmcz_fast.audit import AuditError, AuditLog, ReadStats, export, iter_records, parse_when, segments
from lmcz_fast.cli.serve import audit as audit_group

DAY_MS = 86_400_000


def _ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


def test_records_are_written_compactly_and_read_back(tmp_path: Path) -> None:
    with AuditLog(tmp_path, flush_interval=0.05) as log:
        now = int(time.time() * 1000)
        log.record("id-1", now, "FN1", 7, "ok", [("cisA", True), ("cisB", False)])
        log.record("id-2", now + 1, None, None, "sync_error", [("cisC", None)])
        time.sleep(0.3)
        files = segments(tmp_path)
        assert len(files) == 1 and files[0].name.endswith(".jsonl")
        lines = files[0].read_bytes().splitlines()
        assert len(lines) == 2
        assert json.loads(lines[0]) == {"t": now, "id": "id-1", "c": "FN1", "v": 7, "o": "ok",
                                        "k": [["cisA", 1], ["cisB", 0]]}
        assert b" " not in lines[0]
    assert [r["id"] for r in iter_records(tmp_path)] == ["id-1", "id-2"]


def test_daily_rotation_compresses_finished_days(tmp_path: Path) -> None:
    day1, day2 = _ms("2026-11-20T23:59:59.500"), _ms("2026-11-21T00:00:00.100")
    with AuditLog(tmp_path, retention_days=0) as log:
        log.record("a", day1, None, 1, "ok", [("x", False)])
        log.flush()
        log.record("b", day2, None, 1, "ok", [("y", True)])
        log.flush()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["audit-2026-11-20.jsonl.gz", "audit-2026-11-21.jsonl"]
    with gzip.open(tmp_path / "audit-2026-11-20.jsonl.gz") as fh:
        assert json.loads(fh.read())["id"] == "a"
    assert [r["id"] for r in iter_records(tmp_path)] == ["a", "b"]


def test_retention_deletes_old_segments_at_start(tmp_path: Path) -> None:
    today = dt.datetime.now(dt.timezone.utc).date()
    for age in (150, 101, 99, 1):
        day = today - dt.timedelta(days=age)
        with gzip.open(tmp_path / f"audit-{day.isoformat()}.jsonl.gz", "wb") as fh:
            fh.write(b'{"t": 0, "id": "x", "k": []}\n')
    (tmp_path / "unrelated.txt").write_text("keep me")
    AuditLog(tmp_path, retention_days=100).close()
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted([f"audit-{(today - dt.timedelta(days=a)).isoformat()}.jsonl.gz" for a in (99, 1)]
                          + ["unrelated.txt"])


def test_leftover_plain_segment_of_an_earlier_day_is_compressed_at_start(tmp_path: Path) -> None:
    (tmp_path / "audit-2020-01-01.jsonl").write_bytes(b'{"t": 1577836800000, "id": "old", "k": []}\n')
    AuditLog(tmp_path, retention_days=0).close()
    assert [p.name for p in tmp_path.iterdir()] == ["audit-2020-01-01.jsonl.gz"]


def test_damaged_last_line_is_skipped_and_counted(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    with AuditLog(tmp_path) as log:
        log.record("whole", now, None, 1, "ok", [("x", False)])
    segment = segments(tmp_path)[0]
    with open(segment, "ab") as fh:
        fh.write(b'{"t": 17, "id": "cut-sh')
    stats = ReadStats()
    assert [r["id"] for r in iter_records(tmp_path, stats=stats)] == ["whole"]
    assert stats.damaged == 1


def _fill(tmp_path: Path) -> None:
    with AuditLog(tmp_path, retention_days=0) as log:
        for i, day in enumerate(("2026-11-01", "2026-11-02", "2026-11-03")):
            log.record(f"r{i}", _ms(f"{day}T12:00:00"), f"FN{i}", 10 + i, "ok",
                       [(f"cis{i}a", True), (f"cis{i}b", False)])
        log.record("bad", _ms("2026-11-03T13:00:00"), None, 12, "invalid_code", [("junk", None)])


def test_export_json_and_csv_with_bounds(tmp_path: Path) -> None:
    _fill(tmp_path)
    out = io.StringIO()
    export(tmp_path, out, since_ms=_ms("2026-11-02T00:00:00"), until_ms=_ms("2026-11-03T12:00:00"))
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["reqId"] for r in rows] == ["r1"]
    assert rows[0] == {"reqId": "r1", "time": "2026-11-02T12:00:00.000+00:00", "reqTimestamp": _ms("2026-11-02T12:00"),
                       "clientId": "FN1", "dbVersion": 11, "outcome": "ok",
                       "codes": [{"cis": "cis1a", "isBlocked": True}, {"cis": "cis1b", "isBlocked": False}]}
    out = io.StringIO()
    export(tmp_path, out, since_ms=_ms("2026-11-03T00:00:00"), fmt="csv")
    table = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["reqId"], r["cis"], r["isBlocked"]) for r in table] == [
        ("r2", "cis2a", "true"), ("r2", "cis2b", "false"), ("bad", "junk", "")]
    with pytest.raises(AuditError):
        export(tmp_path, io.StringIO(), since_ms=10, until_ms=5)


def test_csv_export_names_each_rows_organisation(tmp_path: Path) -> None:
    """With `serve --organisations` each record holds `"i"` (the organisation's INN); the CSV carries it in its last
    column `inn` (after the columns it always had, so readers by position keep working), empty for a record
    without one, and `--inn` keeps only that organisation's rows."""
    from types import SimpleNamespace
    with AuditLog(tmp_path, retention_days=0) as log:
        log.record("a1", _ms("2026-11-01T12:00:00"), "FN1", 3, "ok", [("cisA", True), ("cisB", False)],
                   SimpleNamespace(label=None, inn="7701234567"))
        log.record("b1", _ms("2026-11-01T12:00:01"), None, 3, "ok", [("cisC", False)],
                   SimpleNamespace(label="token:till 7", inn="770987654321"))
        log.record("n1", _ms("2026-11-01T12:00:02"), "FN2", 3, "ok", [("cisD", True)])
    out = io.StringIO()
    export(tmp_path, out, fmt="csv")
    lines = out.getvalue().splitlines()
    assert lines[0] == "reqId,time,reqTimestamp,clientId,dbVersion,outcome,cis,isBlocked,inn"
    table = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["reqId"], r["cis"], r["isBlocked"], r["inn"]) for r in table] == [
        ("a1", "cisA", "true", "7701234567"), ("a1", "cisB", "false", "7701234567"),
        ("b1", "cisC", "false", "770987654321"), ("n1", "cisD", "true", "")]
    result = CliRunner().invoke(audit_group, ["export", "--audit-dir", str(tmp_path), "--csv",
                                              "--inn", "770987654321"])
    assert result.exit_code == 0, result.output
    assert list(csv.reader(io.StringIO(result.stdout))) == [
        ["reqId", "time", "reqTimestamp", "clientId", "dbVersion", "outcome", "cis", "isBlocked", "inn"],
        ["b1", "2026-11-01T12:00:01.000+00:00", str(_ms("2026-11-01T12:00:01")), "", "3", "ok", "cisC", "false",
         "770987654321"]]


def test_export_command(tmp_path: Path) -> None:
    _fill(tmp_path)
    runner = CliRunner()
    result = runner.invoke(audit_group, ["export", "--audit-dir", str(tmp_path), "--since", "2026-11-02",
                                         "--until", "2026-11-03T00:00:00Z"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["reqId"] for line in result.stdout.splitlines()] == ["r1"]
    result = runner.invoke(audit_group, ["export", "--audit-dir", str(tmp_path), "--csv"])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "reqId,time,reqTimestamp,clientId,dbVersion,outcome,cis,isBlocked,inn"
    assert len(result.stdout.splitlines()) == 1 + 7
    result = runner.invoke(audit_group, ["export", "--audit-dir", str(tmp_path), "--since", "yesterday-ish"])
    assert result.exit_code == 2 and "cannot read" in result.stderr


def test_export_command_finds_the_audit_log_next_to_the_database(tmp_path: Path, monkeypatch) -> None:
    """`serve store.db` keeps its audit log in store.db.audit; `audit export store.db` reads it from there."""
    monkeypatch.delenv("LMCZ_FAST_AUDIT_DIR", raising=False)
    _fill(tmp_path / "store.db.audit")
    runner = CliRunner()
    result = runner.invoke(audit_group, ["export", str(tmp_path / "store.db"), "--since", "2026-11-02",
                                         "--until", "2026-11-03T00:00:00Z"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["reqId"] for line in result.stdout.splitlines()] == ["r1"]
    result = runner.invoke(audit_group, ["export", str(tmp_path / "store.db") + "/", "--csv"])
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 1 + 7
    result = runner.invoke(audit_group, ["export", str(tmp_path / "other.db")])
    assert result.exit_code == 2 and "no audit log at" in result.stderr and "other.db.audit" in result.stderr
    result = runner.invoke(audit_group, ["export"])
    assert result.exit_code == 2 and "--audit-dir" in result.output


def test_parse_when() -> None:
    now = 1_800_000_000.0
    assert parse_when("24h", now) == int((now - 86400) * 1000)
    assert parse_when("7d", now) == int((now - 7 * 86400) * 1000)
    assert parse_when("2026-11-01", now) == _ms("2026-11-01T00:00:00")
    assert parse_when("2026-11-01T03:00:00+03:00", now) == _ms("2026-11-01T00:00:00")
    assert parse_when("1800000000", now) == 1_800_000_000_000


def test_every_check_request_is_recorded(tmp_path: Path) -> None:
    rng = random.Random(5)
    blocked = [make_identity(rng) for _ in range(3)]
    free = make_identity(rng)
    db = make_db(tmp_path / "store.db", blocked)
    audit_dir = tmp_path / "audit"
    with ServerThread(db, audit_dir=audit_dir) as srv:
        client = srv.client()
        ok = client.check([make_scan(blocked[0], rng), free], headers={"X-ClientId": "0000111122223333"})[2]
        bad = client.check([free, "junk"])[2]
        client.request("GET", "/api/v1/status")
    records = list(iter_records(audit_dir))
    assert [r["o"] for r in records] == ["ok", "partial"]
    first = records[0]
    assert first["id"] == ok["reqId"] and first["t"] == ok["reqTimestamp"] and first["c"] == "0000111122223333"
    assert str(first["v"]) == ok["dbVersion"] and first["k"] == [[blocked[0], 1], [free, 0]]
    assert records[1]["id"] == bad["reqId"] and records[1]["k"][1] == ["junk", None]


def test_refused_checks_are_recorded(tmp_path: Path) -> None:
    db = make_db(tmp_path / "old.db", [make_identity(random.Random(1))], synced_ago=80 * 3600)
    audit_dir = tmp_path / "audit"
    with ServerThread(db, audit_dir=audit_dir) as srv:
        answer = srv.client().check([make_identity(random.Random(2))])[2]
    assert answer["errorCode"] == 4050
    (record,) = iter_records(audit_dir)
    assert record["o"] == "sync_error" and record["id"] == answer["reqId"]


def test_kill_9_loses_at_most_the_last_second(tmp_path: Path) -> None:
    rng = random.Random(9)
    codes = [make_identity(rng) for _ in range(20)]
    db = make_db(tmp_path / "crash.db", codes[:10])
    audit_dir = tmp_path / "audit"
    answered: list[tuple[str, float]] = []
    with ServeProcess(db, "--audit-dir", str(audit_dir), "--audit-flush", "0.5", "--password-file",
                      str(_password_file(tmp_path))) as proc:
        client = Client(proc.port)
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            body = client.check([codes[len(answered) % 20]])[2]
            answered.append((body["reqId"], time.monotonic()))
        killed_at = time.monotonic()
        proc.signal(signal.SIGKILL)
    stored = {r["id"] for r in iter_records(audit_dir)}
    lost = [(req_id, killed_at - at) for req_id, at in answered if req_id not in stored]
    assert len(answered) > 100
    assert all(age <= 1.0 for _, age in lost), f"lost records older than 1 s: {lost[:5]}"
    assert len(stored) >= len([a for a in answered if killed_at - a[1] > 1.0])


def _password_file(tmp_path: Path) -> Path:
    from _service_support import PASSWORD

    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    return path
