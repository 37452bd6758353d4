"""When offline answers stop, told the same by every surface (issue 11): `Blocklist.status()`, `info()`,
`lmcz-fast status`/`info` (text and JSON), the service's /status, its 4050 refusal and /metrics, and the checker's
cashier messages, which name the limit that is configured (not always "72 hours")."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lmcz_fast import Blocklist
from lmcz_fast.checker import Checker, Decision
from lmcz_fast.cli import main
from lmcz_fast.store import freshness

from _service_support import PASSWORD, USER, ServerThread, make_identity

HOUR = 3600.0


@pytest.fixture()
def loaded(tmp_path: Path) -> tuple[Path, float, list[str]]:
    """A store loaded from a file, never synced (as `lmcz-fast load` makes it), and when it was loaded."""
    rng = random.Random(11)
    codes = [make_identity(rng) for _ in range(20)]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(codes[:10]) + "\n")
    db = tmp_path / "db"
    assert CliRunner().invoke(main, ["load", str(db), str(listing)]).exit_code == 0
    with Blocklist.open(db) as bl:
        loaded_at = bl.get_meta("loaded_at")
        assert bl.get_meta("last_sync_at") is None and loaded_at is not None
    return db, loaded_at, codes


def test_a_store_loaded_from_a_file_expires_and_every_surface_says_when(loaded) -> None:
    db, loaded_at, _ = loaded
    runner = CliRunner()
    with Blocklist.open(db) as bl:
        status = bl.status()
        assert status.expires_at == loaded_at + 72 * HOUR and status.loaded_at == loaded_at
        assert status.state == "ready"
        assert bl.status(now=loaded_at + 72 * HOUR - 1).state == "stale"
        assert bl.status(now=loaded_at + 72 * HOUR + 1).state == "expired"
        assert bl.info()["expires_at"] == status.expires_at and bl.info()["state"] == "ready"
    text = runner.invoke(main, ["status", str(db)]).output
    assert "never" not in text.split("expires:")[1].splitlines()[0]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(loaded_at + 72 * HOUR))
    assert stamp in text and "offline limit 3d 0h" in text
    assert json.loads(runner.invoke(main, ["status", str(db), "--json"]).output)["expires_at"] == status.expires_at
    assert json.loads(runner.invoke(main, ["info", str(db), "--json"]).output)["expires_at"] == status.expires_at
    assert "expires_at" in runner.invoke(main, ["info", str(db)]).output


def test_the_configured_limit_is_what_every_surface_reports(loaded) -> None:
    db, loaded_at, codes = loaded
    with Blocklist.open(db, readonly=False) as bl:
        bl.set_meta(expire_after=48 * HOUR)
        assert bl.status().expires_at == loaded_at + 48 * HOUR
    with ServerThread(db) as service:
        client = service.client()
        _, _, body = client.request("GET", "/api/v1/status")
        assert body["expiresAt"] == int((loaded_at + 48 * HOUR) * 1000) and body["offlineLimit"] == 48 * HOUR
        _, _, metrics = client.request("GET", "/metrics")
        assert f"lmcz_db_expires_at_seconds {round(loaded_at + 48 * HOUR, 3)}" in metrics
        assert "lmcz_db_offline_limit_seconds 172800" in metrics

    with Blocklist.open(db, readonly=False) as bl:   # now the list is older than its offline limit
        bl.set_meta(expire_after=5.0)
    time.sleep(0.05 + max(0.0, loaded_at + 5.0 - time.time()))
    with ServerThread(db) as service:
        client = service.client()
        status, _, body = client.check(codes[:1])
        assert status == 400 and body["errorCode"] == 4050
        assert "offline limit (5 s)" in body["description"] and body["offlineLimit"] == 5.0
        assert body["expiresAt"] == int((loaded_at + 5.0) * 1000)
        _, _, state = client.request("GET", "/api/v1/status")
        assert state["status"] == "sync_error" and state["expiresAt"] == body["expiresAt"]
        with Checker(None, f"http://{USER}:{PASSWORD}@127.0.0.1:{service.port}", deadline=0.5) as checker:
            through_lm = checker.check(codes[0])
    assert through_lm.decision is Decision.CANNOT_CHECK
    assert through_lm.reasons[0].key == "offline_sync_error"
    assert "больше 5 секунд" in through_lm.message("ru") and "for over 5 seconds" in through_lm.message("en")
    assert "72" not in through_lm.message("ru") + through_lm.message("en")

    with Blocklist.open(db, readonly=False) as bl:   # synced two hours ago, with a limit of 90 minutes
        bl.mark_synced(at=time.time() - 2 * HOUR, expire_after=1.5 * HOUR)
    with Blocklist.open(db) as bl:
        assert bl.status().state == "expired"
        assert freshness(bl.info(), time.time()).expires_at == bl.status().expires_at
        with Checker(None, bl) as checker:
            in_process = checker.check(codes[0])
            receipt = checker.check_receipt([codes[0], codes[15]])
    assert in_process.decision is Decision.CANNOT_CHECK and in_process.reasons[0].key == "offline_expired"
    assert in_process.message("ru") == "Проверка не удалась: офлайн-база не обновлялась больше 90 минут"
    assert in_process.message("en") == "Could not check: the offline database has not been updated for over 90 minutes"
    assert all(c.reasons[0].key == "offline_expired" for c in receipt.codes)


def test_the_default_limit_reads_as_before() -> None:
    from lmcz_fast.checker import REASONS, offline_expired_reason, offline_sync_error_reason

    assert REASONS["offline_expired"].ru == "Проверка не удалась: офлайн-база не обновлялась больше 72 часов"
    assert offline_expired_reason(21 * HOUR).ru.endswith("больше 21 часа")
    assert offline_expired_reason(HOUR).en.endswith("for over 1 hour")
    assert offline_sync_error_reason(None).en.endswith("for over 72 hours")    # the official module's limit


def test_a_store_without_a_list_has_no_expiry_and_serves_nothing(tmp_path: Path) -> None:
    db = tmp_path / "db"
    Blocklist.create(db).close()
    with Blocklist.open(db) as bl:
        status = bl.status()
        assert (status.state, status.expires_at, status.age) == ("empty", None, None)
    with ServerThread(db) as service:
        client = service.client()
        status_code, _, body = client.check([make_identity(random.Random(1))])
        assert status_code == 400 and body["errorCode"] == 4045
        _, _, state = client.request("GET", "/api/v1/status")
        assert state["expiresAt"] is None and state["requiresDownload"] is True
        _, _, metrics = client.request("GET", "/metrics")
        assert "lmcz_db_expires_at_seconds -1" in metrics
    with Blocklist.open(db) as bl, Checker(None, bl) as checker:
        verdict = checker.check(make_identity(random.Random(2)))
    assert verdict.decision is Decision.CANNOT_CHECK and verdict.reasons[0].key == "offline_empty"
