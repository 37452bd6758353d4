"""Whole sessions of a protocol-1 and a protocol-2 client against `serve`, as integrators drive the official module.

The clients send what FMU-API's `LocalModuleServiceV1`/`V2` send (V1: `GET /api/v1/cis/outCheck?cis=` with the
code percent-encoded; V2: `POST /api/v2/cis/outCheck {"cis_list": [{"cis", "pg"}]}`, reading `results[0]`),
poll status every "10 s" (here: in a loop) and call init again on `sync_error`, and decode every answer with the
strict typed models of `_lm_contract.py`. After fiscalising a receipt they report its sale; the next check of those
codes, from any till and either protocol, is answered `sold: true`, and the till refuses it.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from _lm_contract import ACK, ENVELOPE, ERROR, RESULTS, SALE_RESULTS, SOLD_PAGE, STATUS, decode
from _service_support import Client, ServerThread, make_db, make_identity, make_scan

from lmcz_fast.store import Blocklist

GS = "\x1d"


def refuse_offline(code: dict[str, Any]) -> str | None:
    """The till's offline decision from the notes' refusal table (sold first, then blocked)."""
    if code["sold"]:
        return "sold"
    if code["isBlocked"]:
        return "online only" if code["isGreyGtin"] else "blocked"
    return None


class TillV1:
    """Protocol 1, as FMU-API's LocalModuleServiceV1 and 1C drive it."""

    prefix = "/api/v1"

    def __init__(self, client: Client, fiscal_drive: str) -> None:
        self.client = client
        self.headers = {"X-ClientId": fiscal_drive}

    def status(self) -> dict[str, Any]:
        status, _, body = self.client.request("GET", f"{self.prefix}/status", headers=self.headers)
        assert status == 200
        return decode(body, STATUS)

    def init(self, **extra: Any) -> int:
        status, _, body = self.client.request("POST", f"{self.prefix}/init", json.dumps({"token": "tkn", **extra}),
                                              {"Content-Type": "application/json", **self.headers})
        decode(body, ACK if status == 200 else ERROR)
        return status

    def check(self, scan: str) -> tuple[int, dict[str, Any] | None]:
        status, _, body = self.client.request("GET", f"{self.prefix}/cis/outCheck?cis={quote(scan, safe='')}",
                                              headers=self.headers)
        if status != 200:
            decode(body, ERROR)
            return status, None
        return status, decode(body, ENVELOPE)["codes"][0]

    def check_receipt(self, scans: list[str]) -> list[dict[str, Any]]:
        status, _, body = self.client.request("POST", f"{self.prefix}/cis/outCheck",
                                              json.dumps({"cis_list": scans}),
                                              {"Content-Type": "application/json", **self.headers})
        assert status == 200, body
        return decode(body, ENVELOPE)["codes"]

    def sell(self, scans: list[Any]) -> list[dict[str, Any]]:
        status, _, body = self.client.request("POST", f"{self.prefix}/cis/sell", json.dumps({"cis_list": scans}),
                                              {"Content-Type": "application/json", **self.headers})
        assert status == 201, body
        return decode(body, SALE_RESULTS)["results"]

    def give_back(self, scans: list[str]) -> list[dict[str, Any]]:
        status, _, body = self.client.request("POST", f"{self.prefix}/cis/return", json.dumps({"cis_list": scans}),
                                              {"Content-Type": "application/json", **self.headers})
        assert status == 200, body
        return decode(body, SALE_RESULTS)["results"]


class TillV2(TillV1):
    """Protocol 2, as FMU-API's LocalModuleServiceV2 drives it (its default)."""

    prefix = "/api/v2"

    def check(self, scan: str, pg: int | None = None) -> tuple[int, dict[str, Any] | None]:
        item: dict[str, Any] = {"cis": scan} if pg is None else {"cis": scan, "pg": pg}
        status, _, body = self.client.request("POST", f"{self.prefix}/cis/outCheck",
                                              json.dumps({"cis_list": [item]}),
                                              {"Content-Type": "application/json", **self.headers})
        if status != 200:
            decode(body, ERROR)
            return status, None
        result = decode(body, RESULTS)["results"][0]
        assert result["code"] == 0
        return status, result["codes"][0]

    def check_receipt(self, scans: list[str]) -> list[dict[str, Any]]:
        status, _, body = self.client.request("POST", f"{self.prefix}/cis/outCheck",
                                              json.dumps({"cis_list": [{"cis": s, "pg": 8} for s in scans]}),
                                              {"Content-Type": "application/json", **self.headers})
        assert status == 200, body
        return [r["codes"][0] for r in decode(body, RESULTS)["results"]]

    def backup(self) -> tuple[int, list[str]]:
        out: list[str] = []
        skip = 0
        while True:
            status, _, body = self.client.request("GET", f"{self.prefix}/cis/sold?skip={skip}&limit=2",
                                                  headers=self.headers)
            assert status == 200
            page = decode(body, SOLD_PAGE)
            out += page["cis_list"]
            skip += len(page["cis_list"])
            if not page["cis_list"]:
                return page["total_count"], out


def poll_until(till: TillV1, wanted: str, seconds: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        state = till.status()
        if state["status"] == wanted or time.monotonic() > deadline:
            return state
        if state["status"] == "sync_error":
            till.init()
        time.sleep(0.05)


def test_protocol_1_and_protocol_2_sessions(tmp_path: Path) -> None:
    rng = random.Random(20261203)
    blocked = [make_identity(rng) for _ in range(5)]
    free = [make_identity(rng) for _ in range(12)]
    source = tmp_path / "blocked.txt"
    source.write_text("\n".join(blocked) + "\n")
    db = make_db(tmp_path / "store.db", [], load=False)      # a new module: nothing downloaded yet
    with ServerThread(db) as srv:
        one = TillV1(srv.client(), "9999078900001111")
        two = TillV2(srv.client(), "9999078900002222")

        # -- setup: status, init, the database arrives, polling until ready --
        for till in (one, two):
            state = till.status()
            assert (state["status"], state["lastSync"], state["requiresDownload"]) == ("not_configured", 0, True)
        assert one.init() == 200
        assert two.init(enableGreyList=True) == 200
        assert one.status()["status"] == "initialization" and two.status()["isGreyGtin"] is True
        assert one.check(free[0]) == (400, None) and two.check(free[0]) == (400, None)      # 4045 until ready
        with Blocklist.open(db, readonly=False) as writer:            # `lmcz-fast sync` does this beside serve
            writer.load([str(source)])
            writer.mark_synced(feed_url="https://feed.example/lm")
        for till in (one, two):
            state = poll_until(till, "ready")
            assert state["status"] == "ready" and state["lastSync"] > 0 and state["dbVersion"] == "1"
            assert state["dbState"]["blocked_cis"]["docCount"] == 5

        # -- a receipt at till 1 (protocol 1): one blocked code is refused, the rest sold --
        receipt = [make_scan(blocked[0], rng), make_scan(free[0], rng), make_scan(free[1], rng)]
        codes = one.check_receipt(receipt)
        assert [refuse_offline(c) for c in codes] == ["blocked", None, None]
        assert one.check(receipt[1])[1] == one.check_receipt([receipt[1]])[0]   # GET ?cis= and POST agree
        sold = one.sell(receipt[1:])
        assert [r["cis"] for r in sold] == free[:2] and all(r["success"] for r in sold)

        # -- the same codes at till 2 (protocol 2), from the next request on: sold, refused --
        for scan in receipt[1:]:
            status, code = two.check(scan, pg=8)
            assert status == 200 and code is not None and refuse_offline(code) == "sold"
        status, code = one.check(free[1])
        assert code is not None and code["sold"] is True and refuse_offline(code) == "sold"

        # -- a receipt at till 2: objects with pg, then its sale with the same objects --
        receipt2 = [make_scan(code, rng) for code in free[2:6]]
        assert [refuse_offline(c) for c in two.check_receipt(receipt2)] == [None] * 4
        assert [r["cis"] for r in two.sell([{"cis": s, "pg": 8} for s in receipt2])] == free[2:6]
        assert [refuse_offline(c) for c in one.check_receipt(receipt2)] == ["sold"] * 4

        # -- a return at till 1 makes one code sellable again everywhere --
        back = one.give_back([receipt2[0]])
        assert back[0]["cis"] == free[2] and back[0]["success"] is True
        assert refuse_offline(two.check(receipt2[0])[1] or {}) is None

        # -- status polling keeps decoding; the backup pages through the register --
        for till in (one, two):
            assert till.status()["status"] == "ready"
        total, listed = two.backup()
        assert total == 5 and sorted(listed) == sorted(free[:2] + free[3:6])

        # -- the database goes stale past 72 h: 4050, the client re-inits, a sync brings it back --
        with Blocklist.open(db, readonly=False) as writer:
            writer.mark_synced(at=time.time() - 73 * 3600)
        time.sleep(0.1)
        assert one.check(free[7])[0] == 400 and two.check(free[7])[0] == 400
        assert poll_until(one, "sync_error", 1.0)["status"] == "sync_error"
        with Blocklist.open(db, readonly=False) as writer:
            writer.mark_synced()
        assert poll_until(two, "ready")["status"] == "ready"
        status, code = two.check(free[3])
        assert code is not None and code["sold"] is True          # the register outlived the outage

        # -- init with clearSold (protocol 2) wipes the register for both --
        assert two.init(clearSold=True) == 200
        assert one.check(free[3])[1]["sold"] is False  # type: ignore[index]
        assert two.backup() == (0, [])
