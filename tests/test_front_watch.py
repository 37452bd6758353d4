"""The watching half of the front (issue 21): the cross-check, the sold register on both sides (a durable outbox)
and the watchdog, against real parts: LMDB stores, the official module's stand-in (tests/_official_standin.py) in
process or in a subprocess killed with -9, `serve` in a subprocess killed with -9, pouchdb-server as the module's
database."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from _couch_support import Couch, needs_pouchdb
from _official_standin import StandIn, StandInProcess
from _service_support import PASSWORD, USER, Client, ServerThread, auth_header, gtin_with_check, make_db

import lmcz_fast
from lmcz_fast.front.calls import OfficialCalls, authorization_of
from lmcz_fast.front.crosscheck import CrossCheck
from lmcz_fast.front.outbox import SaleQueue
from lmcz_fast.front.watch import FrontWatch
from lmcz_fast.front.watchdog import Watchdog
from lmcz_fast.store import Blocklist

GTIN = gtin_with_check("0460000000001")
BLOCKED = f"01{GTIN}215abcdefghijkl"
MISSED = f"01{GTIN}215mnopqrstuvwx"       # blocked at the official module, missed by our "mapping"
FREE = [f"01{GTIN}21free{n:08d}" for n in range(8)]
CRYPTO = "\x1d93dGVz"


def _wait(condition: Any, what: str, seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        time.sleep(0.05)


# -- the outbox in the store: one transaction with the sale ----------------------------------------------------------


def test_a_sale_and_its_outbox_entry_are_one_transaction(tmp_path: Path) -> None:
    db = make_db(tmp_path / "db", [BLOCKED])
    with Blocklist.open(db, readonly=False) as bl:
        queue = SaleQueue(bl, lambda *a: (201, b""))
        codes = [lmcz_fast.parse_code(FREE[0])]
        sale = bl.sold.op_record(codes, int(time.time() * 1000))

        def then_fail(txn: Any) -> None:
            queue.joined(sale, "sell", [FREE[0]])(txn)
            raise RuntimeError("the disk went away")

        with pytest.raises(RuntimeError):
            bl.commit(then_fail)
        assert bl.outbox.count() == 0 and not bl.sold.is_sold(FREE[0])      # neither
        bl.commit(queue.joined(sale, "sell", [FREE[0] + CRYPTO]))
        assert bl.outbox.count() == 1 and bl.sold.is_sold(FREE[0])          # both
        [(seq, raw)] = bl.outbox.head(5)
        assert json.loads(raw)["cis_list"] == [FREE[0] + CRYPTO]            # the till's own scan goes on


def test_a_refused_sale_is_taken_off_and_said_a_down_module_holds_the_queue(tmp_path: Path, caplog: Any) -> None:
    db = make_db(tmp_path / "db", [BLOCKED])
    answers = [(503, b"busy"), (400, b'{"description": "bad code"}'), (201, b"{}")]
    sent: list[bytes] = []

    def send(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        sent.append(body)
        return answers.pop(0)

    with Blocklist.open(db, readonly=False) as bl:
        queue = SaleQueue(bl, send)
        for code in FREE[:2]:
            bl.commit(queue.joined(bl.sold.op_record([lmcz_fast.parse_code(code)], int(time.time() * 1000)), "sell", [code + CRYPTO]))
        assert queue.deliver_some() is True                  # 503: held, nothing taken off, the order kept
        assert bl.outbox.count() == 2 and "503" in (queue.last_error or "")
        assert queue.deliver_some() is False                 # 400 for the first: off the queue; the second: 201
        assert bl.outbox.count() == 0 and queue.refused == 1 and queue.delivered == 1
        assert [json.loads(b)["cis_list"][0][:len(FREE[0])] for b in sent] == [FREE[0], FREE[0], FREE[1]]
        assert bl.sold.is_sold(FREE[0])                      # ours keeps the sale the official module refused
        refusal = queue.status()["refusals"][0]
        assert refusal["identities"] == [FREE[0]] and refusal["status"] == 400
        assert any("refused a sell of " + FREE[0] in r.getMessage() and CRYPTO not in r.getMessage()
                   for r in caplog.records)


# -- the cross-check ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [1, 2])
def test_the_cross_check_counts_per_field_and_names_a_disagreement(tmp_path: Path, protocol: int,
                                                                   caplog: Any) -> None:
    db = make_db(tmp_path / "db", [BLOCKED])             # our replica lacks MISSED: a wrong mapping
    scans = [BLOCKED + CRYPTO, MISSED + CRYPTO, FREE[0] + CRYPTO]
    with StandIn([BLOCKED, MISSED]) as lm, Blocklist.open(db) as bl:
        calls = OfficialCalls(lm.url, authorization_of("admin:admin"))
        status, answer, _ = calls.request("POST", f"/api/v{protocol}/cis/outCheck",
                                          json.dumps({"cis_list": scans}).encode())
        calls.close()
        assert status == 200
        cross = CrossCheck(bl)
        cross.observe(protocol, answer)
        assert cross.pending == 1
        cross.drain()
    assert cross.codes == 3 and cross.pending == 0
    assert cross.disagree["isBlocked"] == 1 and cross.agree["isBlocked"] == 2
    assert cross.agree["sold"] == 3 and cross.disagree["sold"] == 0
    found = cross.recent[-1]
    assert (found.field, found.identity, found.official, found.ours) == ("isBlocked", MISSED, True, False)
    lines = [r.getMessage() for r in caplog.records if "cross-check" in r.getMessage()]
    assert len(lines) == 1 and MISSED in lines[0] and CRYPTO not in lines[0] and found.official_version in lines[0]
    assert 'lmcz_front_disagree_total{field="isBlocked"} 1' in cross.prometheus_lines()
    assert "isBlocked" in (cross.warning() or "")


def test_the_cross_check_drops_and_counts_when_full(tmp_path: Path) -> None:
    db = make_db(tmp_path / "db", [BLOCKED])
    with Blocklist.open(db) as bl:
        cross = CrossCheck(bl, queue_codes=4)
        answer = json.dumps({"codes": [{"cis": FREE[0], "isBlocked": False}]}).encode()
        for _ in range(6):
            cross.observe(1, answer)
        assert cross.pending == 4 and cross.dropped == 2
        cross.drain()
        assert cross.agree["isBlocked"] == 4 and cross.pending == 0


# -- the watchdog ---------------------------------------------------------------------------------------------------


@needs_pouchdb
def test_the_watchdog_polls_and_calls_init_again_on_sync_error_at_most_every_interval(tmp_path: Path) -> None:
    tokens = ["participant-token-1"]
    with StandIn([BLOCKED], faults={"state": "sync_error"}) as lm:
        calls = OfficialCalls(lm.url, authorization_of("admin:admin"))
        with Couch(tmp_path / "couch") as couch:
            dog = Watchdog(calls, OfficialCalls(couch.url), lambda: tokens[0], every=0.1, reinit_every=3600)
            seen = dog.poll()
            assert seen.reachable and seen.database_alive is True and seen.answer_seconds is not None
            assert seen.reinits == 1 and lm.received()["inits"] == ["participant-token-1"]
            seen = dog.poll()                                   # the stand-in is ready after its init
            assert seen.state == "ready" and seen.last_sync > 0 and seen.reinits == 1
            assert dog.warning() is None
            lm.set(state="sync_error")
            assert dog.poll().reinits == 1                      # not again within reinit_every
            assert lm.received()["inits"] == ["participant-token-1"]
            status = dog.status()
            assert status["reinit"]["tokenKept"] is True and "participant-token-1" not in json.dumps(status)
            lm.set(state="ready")
        seen = dog.poll()                                       # its database died, its API still answers
        assert seen.reachable and seen.state == "ready" and seen.database_alive is False
        assert "database" in (dog.warning() or "") and "lmcz_front_official_database_up 0" in dog.prometheus_lines()
    seen = dog.poll()                                           # both gone now
    assert not seen.reachable and seen.state == "unreachable" and seen.database_alive is False
    assert "lmcz_front_official_up 0" in dog.prometheus_lines()
    assert "does not answer" in (dog.warning() or "")
    calls.close()


# -- the surfaces: status `front`, the page, /metrics ---------------------------------------------------------------


def test_status_page_and_metrics_show_the_front(tmp_path: Path) -> None:
    from _lm_contract import STATUS_FIELD, decode

    db = make_db(tmp_path / "db", [BLOCKED])
    with StandIn([BLOCKED, MISSED]) as lm, ServerThread(db) as srv:
        calls = OfficialCalls(lm.url, authorization_of("admin:admin"))
        cross = CrossCheck(srv.blocklist)
        dog = Watchdog(calls, None, lambda: None, every=60)
        dog.poll()
        srv.app.attach_front_watch(FrontWatch(lm.url, crosscheck=cross, watchdog=dog))
        status, answer, _ = calls.request("POST", "/api/v2/cis/outCheck", json.dumps({"cis_list": [MISSED]}).encode())
        cross.observe(2, answer)
        cross.drain()
        client = srv.client()
        code, _, body = client.request("GET", "/api/v1/status")
        decode(body, STATUS_FIELD)         # the strict decoders still decode it
        front = body["front"]
        assert front["url"] == lm.url and front["official"]["state"] == "ready"
        assert front["crossCheck"]["disagree"]["isBlocked"] == 1
        assert any("isBlocked" in w for w in body["warnings"])
        code, _, page = client.request("GET", "/?lang=en")
        text = page if isinstance(page, str) else page.decode() if isinstance(page, bytes) else json.dumps(page)
        assert 'id="front"' in text and MISSED in text and "disagree on isBlocked" in text
        code, _, metrics = client.request("GET", "/metrics")
        text = metrics if isinstance(metrics, str) else metrics.decode()
        assert 'lmcz_front_disagree_total{field="isBlocked"} 1' in text
        assert 'lmcz_front_official_state{state="ready"} 1' in text
        calls.close()


# -- through `serve --front` in a process of its own ------------------------------------------------------------------


def _serve(tmp_path: Path, db: Path, url: str, *extra: str) -> Any:
    from _service_support import ServeProcess

    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    return ServeProcess(db, "--front", url, "--front-state-dir", str(tmp_path / "front-state"), "--no-audit",
                        "--front-retry-max", "0.3", *extra, password_file=password)


def _metric(client: Client, line: str) -> bool:
    status, _, text = client.request("GET", "/metrics")
    return status == 200 and line in text


def test_the_cross_check_catches_a_wrong_mapping_within_one_request(tmp_path: Path) -> None:
    db = make_db(tmp_path / "db", [BLOCKED])             # the replica's mapping missed MISSED
    with StandIn([BLOCKED, MISSED]) as lm, _serve(tmp_path, db, lm.url, "--front-poll", "0.2",
                                                   "--front-database", "none") as serve:
        client = Client(serve.port)
        status, headers, body = client.request("POST", "/api/v2/cis/outCheck",
                                               json.dumps({"cis_list": [MISSED + CRYPTO]}),
                                               {"Content-Type": "application/json"})
        assert status == 200 and headers["x-lmcz-answered-by"] == "front"
        assert body["results"][0]["codes"][0]["isBlocked"] is True      # the official answer, as it came
        _wait(lambda: _metric(client, 'lmcz_front_disagree_total{field="isBlocked"} 1'), "the disagreement counted")
        line = serve.wait_for_log("cross-check: isBlocked disagrees for " + MISSED)
        assert "official true" in line and "ours false" in line and "93dGVz" not in line
        status, _, page = client.request("GET", "/?lang=en")
        assert "disagree on isBlocked" in page and MISSED in page
        status, _, state = client.request("GET", "/api/v1/status")
        front = state["front"]
        assert front["crossCheck"]["disagree"]["isBlocked"] == 1 and front["crossCheck"]["agree"]["sold"] == 1
        _wait(lambda: client.request("GET", "/api/v1/status")[2]["front"]["official"]["state"] == "ready",
              "the watchdog's first poll")


def _sale(client: Client, kind: str, code: str) -> None:
    status, _, _ = client.request("POST", f"/api/v2/cis/{kind}", json.dumps({"cis_list": [code + CRYPTO]}),
                                  {"Content-Type": "application/json"})
    assert status == (201 if kind == "sell" else 200)


def test_queued_sales_arrive_once_each_in_order_across_kill_9_of_serve(tmp_path: Path) -> None:
    db = make_db(tmp_path / "db", [BLOCKED])
    with StandInProcess(tmp_path / "standin", "--blocked", BLOCKED) as lm:
        serve = _serve(tmp_path, db, lm.url, "--front-poll", "0").__enter__()
        try:
            client = Client(serve.port)
            _sale(client, "sell", FREE[0])
            _wait(lambda: lm.received()["sold"] == [{"kind": "sell", "cis_list": [FREE[0]]}], "the first sale")
            lm.kill()                                                   # the official module is down
            expected = [("sell", FREE[1]), ("sell", FREE[2]), ("return", FREE[1]), ("sell", FREE[3])]
            for kind, code in expected:
                _sale(client, kind, code)                               # answered by ours, durable
            _wait(lambda: _metric(client, "lmcz_front_outbox_pending 4"), "four waiting")
            serve.proc.send_signal(signal.SIGKILL)                      # and serve dies with them queued
            serve.proc.wait(10)
        finally:
            serve.__exit__(None, None, None)
        with _serve(tmp_path, db, lm.url, "--front-poll", "0") as again:
            client = Client(again.port)
            status, _, sold = client.request("GET", "/api/v2/cis/sold")
            assert sorted(sold["cis_list"]) == sorted([FREE[0], FREE[2], FREE[3]])      # `sold` from ours
            assert client.request("GET", "/api/v1/status")[2]["front"]["outbox"]["pending"] == 4
            lm.restart()                                                # back, on the same port, its memory empty
            _wait(lambda: len(lm.received()["sold"]) >= 4 and _metric(client, "lmcz_front_outbox_pending 0"),
                  "the queue delivered")
            time.sleep(1.0)                                             # nothing more comes after
            assert lm.received()["sold"] == [{"kind": k, "cis_list": [c]} for k, c in expected]
            assert _metric(client, "lmcz_front_outbox_delivered_total 4")


def test_the_watch_options_need_front(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lmcz_fast.cli import main

    result = CliRunner().invoke(main, ["serve", str(tmp_path / "db"), "--no-front-crosscheck"])
    assert result.exit_code == 2 and "--no-front-crosscheck is given without --front URL" in result.output
