"""The official module's stand-in (tests/_official_standin.py) does what the front's tests rely on: both protocols'
shapes as the strict typed clients decode them (tests/_lm_contract.py), Basic auth, each fault switch, the records of
sell/return in order, a subprocess that dies on kill -9, and pouchdb-server as its database."""

from __future__ import annotations

import base64
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from _couch_support import Couch, needs_pouchdb
from _official_standin import StandIn, StandInProcess

BLOCKED = "0104600000000017215abcde"
FREE = "0104600000000024215zzzzz"
AUTH = "Basic " + base64.b64encode(b"admin:admin").decode()


def call(url: str, path: str, body: Any = None, auth: str | None = AUTH, timeout: float = 5) -> tuple[Any, bytes]:
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    request = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                     headers=headers, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_both_protocols_answer_the_documented_shapes() -> None:
    with StandIn([BLOCKED]) as lm:
        status, body = call(lm.url, "/api/v1/status", auth=None)
        assert status == 200 and json.loads(body)["status"] == "ready"
        assert call(lm.url, "/api/v1/cis/check?cis=" + BLOCKED, auth=None)[0] == 401
        assert call(lm.url, "/api/v1/cis/check?cis=" + BLOCKED, auth="Basic " + base64.b64encode(b"a:b").decode()
                    )[0] == 401
        status, body = call(lm.url, "/api/v1/cis/outCheck", {"cis_list": [BLOCKED, FREE]})
        one = json.loads(body)
        assert status == 200 and [c["isBlocked"] for c in one["codes"]] == [True, False]
        assert one["inst"] == lm.inst and isinstance(one["reqTimestamp"], int)
        status, body = call(lm.url, "/api/v2/cis/outCheck", {"cis_list": [{"cis": BLOCKED, "pg": 8}, FREE]})
        results = json.loads(body)["results"]
        assert [r["codes"][0]["isBlocked"] for r in results] == [True, False]
        assert results[0]["codes"][0]["groupIds"] == [8]
        assert call(lm.url, "/api/v2/cis/sell", {"cis_list": [FREE]})[0] == 201
        assert json.loads(call(lm.url, "/api/v1/cis/check?cis=" + FREE)[1])["codes"][0]["sold"] is True
        assert call(lm.url, "/api/v2/cis/return", {"cis_list": [FREE]})[0] == 200
        assert call(lm.url, "/api/v1/init", {"token": "participant"}) == (200, b"1")
        got = lm.received()
        assert [s["kind"] for s in got["sold"]] == ["sell", "return"] and got["inits"] == ["participant"]


@pytest.mark.parametrize("fault,expect", [("5xx", 500), ("malformed", 200), ("4045", 400), ("4050", 400)])
def test_fault_switches_answer_wrongly(fault: str, expect: int) -> None:
    with StandIn([BLOCKED], faults={"fault": fault}) as lm:
        status, body = call(lm.url, "/api/v1/cis/check?cis=" + BLOCKED)
        assert status == expect
        if fault == "malformed":
            with pytest.raises(ValueError):
                json.loads(body)
        if fault.startswith("40"):
            assert json.loads(body)["errorCode"] == int(fault)
        lm.set(fault="")
        assert call(lm.url, "/api/v1/cis/check?cis=" + BLOCKED)[0] == 200


def test_hang_reset_slow_flip_and_state() -> None:
    with StandIn([BLOCKED]) as lm:
        lm.set(fault="hang")
        with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
            call(lm.url, "/api/v1/cis/check?cis=" + BLOCKED, timeout=0.5)
        lm.set(fault="reset")
        with pytest.raises((ConnectionError, urllib.error.URLError, OSError)):
            call(lm.url, "/api/v1/cis/check?cis=" + BLOCKED)
        lm.set(fault="", delay_ms=200)
        started = time.monotonic()
        assert call(lm.url, "/api/v1/cis/check?cis=" + BLOCKED)[0] == 200
        assert time.monotonic() - started >= 0.19
        lm.set(delay_ms=0, flip=[BLOCKED])
        assert json.loads(call(lm.url, "/api/v1/cis/check?cis=" + BLOCKED)[1])["codes"][0]["isBlocked"] is False
        lm.set(flip=[], state="sync_error")
        status, body = call(lm.url, "/api/v1/cis/check?cis=" + BLOCKED)
        assert status == 400 and json.loads(body)["errorCode"] == 4050
        assert json.loads(call(lm.url, "/api/v1/status")[1])["status"] == "sync_error"


def test_a_subprocess_stand_in_takes_switches_and_dies_on_kill_9(tmp_path: Path) -> None:
    with StandInProcess(tmp_path, "--blocked", BLOCKED) as lm:
        assert json.loads(call(lm.url, "/api/v1/cis/check?cis=" + BLOCKED)[1])["codes"][0]["isBlocked"] is True
        lm.set(fault="5xx")
        assert call(lm.url, "/api/v1/cis/check?cis=" + BLOCKED)[0] == 500
        lm.kill()
        with pytest.raises(urllib.error.URLError):
            call(lm.url, "/api/v1/status")
        lm.restart()
        assert call(lm.url, "/api/v1/cis/check?cis=" + BLOCKED)[0] == 200      # switches start over


@needs_pouchdb
def test_pouchdb_server_as_its_database(tmp_path: Path) -> None:
    with Couch(tmp_path / "couch") as couch:
        couch.create("blocked_cis", "blocked_gtin")
        couch.request("PUT", "/blocked_cis/" + BLOCKED, {"reason": "test"})
        with StandIn(couch=couch.url) as lm:
            assert json.loads(call(lm.url, "/api/v1/cis/check?cis=" + BLOCKED)[1])["codes"][0]["isBlocked"] is True
            assert json.loads(call(lm.url, "/api/v1/cis/check?cis=" + FREE)[1])["codes"][0]["isBlocked"] is False
            couch.request("PUT", "/blocked_gtin/04600000000024", {"reason": "gtin"})
            lm.set(reload=True)
            assert json.loads(call(lm.url, "/api/v1/cis/check?cis=" + FREE)[1])["codes"][0]["isBlocked"] is True
