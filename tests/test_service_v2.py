"""Protocol 2, the sold register over HTTP, and the typed contract of every answer on both protocols.

Every answer here is decoded with the strict typed models of `_lm_contract.py` (written from public clients' field
types); a number where a client declares a string, or a null where it declares an int64, fails the test.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from _lm_contract import ACK, ENVELOPE, ERROR, RESULTS, SALE_RESULTS, SOLD_PAGE, STATUS, ContractError, decode
from _service_support import (
    Client,
    ServerThread,
    auth_header,
    identity_sets,
    make_db,
    make_scan,
    parse_responses,
    raw_exchange,
)

from lmcz_fast.store import Blocklist

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def codes() -> dict[str, list[str]]:
    return identity_sets(random.Random(20261202), blocked=20, free=200)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, codes: dict[str, list[str]]) -> Path:
    return make_db(tmp_path_factory.mktemp("v2") / "store.db", codes["blocked"])


@pytest.fixture(scope="module")
def server(db: Path, tmp_path_factory: pytest.TempPathFactory):
    with ServerThread(db, audit_dir=tmp_path_factory.mktemp("audit"), max_codes=20) as srv:
        yield srv


@pytest.fixture()
def client(server: ServerThread):
    c = server.client()
    yield c
    c.close()


def post(client: Client, path: str, payload: Any, **headers: str) -> tuple[int, Any]:
    status, _, body = client.request("POST", path, json.dumps(payload), {**JSON, **headers})
    return status, body


def v2_codes(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [code for result in body["results"] for code in result["codes"]]


# -- the decoder itself fails on what strict clients fail on ------------------------------------------------------


def test_the_strict_decoder_refuses_what_typed_clients_refuse() -> None:
    good = {"version": "1", "status": "ready", "serviceUrl": "", "operationMode": "active", "name": "n",
            "lastUpdate": 1, "lastSync": 0, "inst": "i", "inn": "", "dbVersion": "7", "requiresDownload": False,
            "isGreyGtin": False, "dbState": {"blocked_cis": {"docCount": 1}, "blocked_gtin": {"docCount": 0},
                                             "min_price": {"docCount": 0}}}
    decode(good, STATUS)
    for broken in ({"dbVersion": 7}, {"lastSync": None}, {"requiresDownload": "false"}, {"lastUpdate": 1.5},
                   {"dbState": "ready"}, {"isGreyGtin": 0}):
        with pytest.raises(ContractError):
            decode({**good, **broken}, STATUS)
    # what /api/v1/status answered before this contract was written: dbVersion a number, lastSync null
    with pytest.raises(ContractError, match="lastSync|dbVersion"):
        decode({**good, "dbVersion": 1, "lastSync": None, "dbState": "ready"}, STATUS)
    with pytest.raises(ContractError, match="mrp"):
        decode({"code": 0, "description": "ok", "reqId": "r", "reqTimestamp": 1, "inst": "i", "version": "v",
                "codes": [{"cis": "c", "gtin": "g", "printView": "c", "isBlocked": False, "isGreyGtin": False,
                           "sold": False, "mrp": "100", "smp": None, "found": True, "valid": True,
                           "verified": True, "realizable": True, "utilised": True, "groupIds": []}]}, ENVELOPE)


# -- protocol 2's check -------------------------------------------------------------------------------------------


def test_v2_outcheck_takes_strings_and_objects_and_answers_one_envelope_per_code(
        client: Client, codes: dict[str, list[str]]) -> None:
    rng = random.Random(3)
    blocked, free = codes["blocked"][0], codes["free"][0]
    items = [{"cis": make_scan(blocked, rng), "pg": 8}, make_scan(free, rng), {"cis": codes["free"][1]}]
    before = int(time.time() * 1000)
    status, body = post(client, "/api/v2/cis/outCheck", {"cis_list": items})
    assert status == 200, body
    decode(body, RESULTS)
    assert len(body["results"]) == 3 and all(len(r["codes"]) == 1 for r in body["results"])
    req_ids = [r["reqId"] for r in body["results"]]
    assert len(set(req_ids)) == 3 and all(str(uuid.UUID(r)) == r for r in req_ids)
    first = body["results"][0]
    assert first["code"] == 0 and before - 1 <= first["reqTimestamp"] <= time.time() * 1000 + 1
    assert first["tag1265"] == f"UUID={first['reqId']}&Time={first['reqTimestamp']}&Inst={first['inst']}" \
                              f"&Ver={first['version']}"
    got = v2_codes(body)
    assert [c["cis"] for c in got] == [blocked, free, codes["free"][1]]
    assert [c["isBlocked"] for c in got] == [True, False, False]
    assert [c["groupIds"] for c in got] == [[8], [], []]
    for code in got:
        assert code["sold"] is False and code["isGreyGtin"] is False and code["gtin"] == code["cis"][2:16]
        assert "mrp" in code and "smp" in code


def test_v2_one_code_client_reads_results_0(client: Client, codes: dict[str, list[str]]) -> None:
    """FMU-API's LocalModuleServiceV2: one `{"cis"}` (or `{"cis", "pg"}`) item, reads results[0]."""
    for item in ({"cis": codes["blocked"][1]}, {"cis": codes["blocked"][1], "pg": 3}):
        status, body = post(client, "/api/v2/cis/outCheck", {"cis_list": [item]})
        assert status == 200
        result = decode(body, RESULTS)["results"][0]
        assert result["code"] == 0 and result["codes"][0]["isBlocked"] is True


def test_v2_audit_maps_each_req_id_to_its_code(server: ServerThread, client: Client,
                                                codes: dict[str, list[str]]) -> None:
    from lmcz_fast.audit import iter_records

    status, body = post(client, "/api/v2/cis/outCheck", {"cis_list": [codes["free"][5], codes["blocked"][5]]})
    assert status == 200
    assert server.audit is not None
    server.audit.flush()
    records = {r["id"]: r for r in iter_records(server.audit.directory)}
    for result in body["results"]:
        assert records[result["reqId"]]["k"] == [[result["codes"][0]["cis"], int(result["codes"][0]["isBlocked"])]]


@pytest.mark.parametrize(("item", "slug"), [
    ({"cis": "x", "pg": "8"}, "bad_item"), ({"cis": "x", "pg": 8.0}, "bad_item"), ({"cis": "x", "pg": True}, "bad_item"),
    ({"cis": "x", "pg": 99}, "unknown_pg"), ({"cis": "x", "pg": 0}, "unknown_pg"), ({"pg": 8}, "bad_item"),
    ({"cis": 42}, "bad_item"),
])
def test_v2_bad_items_are_refused_naming_the_item(client: Client, codes: dict[str, list[str]], item: Any,
                                                  slug: str) -> None:
    items = [codes["free"][2], item]
    if isinstance(item, dict) and item.get("cis") == "x":
        item["cis"] = codes["free"][3]
    status, body = post(client, "/api/v2/cis/outCheck", {"cis_list": items})
    assert status == 400 and body["error"] == slug and body["index"] == 1, body
    assert "cis_list[1]" in body["description"]
    decode(body, ERROR)


@pytest.mark.parametrize("item", [42, None, "junk"])
def test_v2_unreadable_item_gets_its_own_error_envelope(client: Client, codes: dict[str, list[str]],
                                                        item: Any) -> None:
    status, body = post(client, "/api/v2/cis/outCheck", {"cis_list": [codes["free"][2], item]})
    assert status == 200, body
    decode(body, RESULTS)
    good, bad = body["results"]
    assert good["code"] == 0 and good["codes"][0]["isBlocked"] is False
    assert bad["code"] == 400 and bad["error"] == "invalid_code" and "cis_list[1]" in bad["description"]
    assert bad["codes"][0]["isBlocked"] is True and bad["codes"][0]["valid"] is False
    assert bad["reqId"] != good["reqId"] and bad["version"] == good["version"]


def test_v2_not_ready_is_refused_with_the_same_error_codes(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    empty = make_db(tmp_path / "empty.db", [], load=False)
    with ServerThread(empty) as srv:
        client = srv.client()
        status, body = post(client, "/api/v2/cis/outCheck", {"cis_list": [{"cis": codes["free"][0]}]})
        assert (status, body["errorCode"], body["code"]) == (400, 4045, 4045)
        decode(body, ERROR)
    old = make_db(tmp_path / "old.db", codes["blocked"][:2], synced_ago=80 * 3600)
    with ServerThread(old) as srv:
        status, body = post(srv.client(), "/api/v2/cis/outCheck", {"cis_list": [codes["free"][0]]})
        assert (status, body["errorCode"]) == (400, 4050)
        decode(body, ERROR)


# -- the sold register over HTTP -------------------------------------------------------------------------------


def test_sold_at_one_till_is_sold_at_every_till_on_both_protocols(server: ServerThread,
                                                                  codes: dict[str, list[str]]) -> None:
    rng = random.Random(4)
    till_a, till_b = server.client(), server.client()
    code = codes["free"][10]
    status, body = post(till_a, "/api/v2/cis/sell", {"cis_list": [make_scan(code, rng)]}, **{"X-ClientId": "A"})
    assert status == 201, body
    decode(body, SALE_RESULTS)
    assert body["results"] == [{"success": True, "cis": code, "soldAt": body["results"][0]["soldAt"]}]
    # the very next request, at another till, on either protocol
    status, body = post(till_b, "/api/v1/cis/outCheck", {"cis_list": [make_scan(code, rng)]}, **{"X-ClientId": "B"})
    assert status == 200 and decode(body, ENVELOPE)["codes"][0]["sold"] is True
    status, body = post(till_b, "/api/v2/cis/outCheck", {"cis_list": [{"cis": code, "pg": 3}]})
    assert status == 200 and decode(body, RESULTS)["results"][0]["codes"][0]["sold"] is True
    status, _, body = till_b.request("GET", "/api/v1/cis/check?cis=" + quote(code, safe=""))
    assert status == 200 and body["codes"][0]["sold"] is True
    # a return takes it out again
    status, body = post(till_a, "/api/v1/cis/return", {"cis_list": [code, codes["free"][11]]})
    assert status == 200 and decode(body, SALE_RESULTS)["results"][0]["cis"] == code
    assert [r["wasSold"] for r in body["results"]] == [True, False]
    status, body = post(till_b, "/api/v2/cis/outCheck", {"cis_list": [code]})
    assert v2_codes(body)[0]["sold"] is False
    till_a.close()
    till_b.close()


def test_sell_of_an_invalid_code_records_nothing(server: ServerThread, client: Client,
                                                 codes: dict[str, list[str]]) -> None:
    before = server.blocklist.sold.count()
    for payload in ({"cis_list": [codes["free"][20], "not a code"]}, {"cis_list": [codes["free"][20], 7]},
                    {"cis_list": [{"cis": codes["free"][20], "pg": 99}]}, {"cis_list": []}, {"cis": "x"}):
        status, body = post(client, "/api/v2/cis/sell", payload)
        assert 400 <= status < 500, body
        decode(body, ERROR)
    status, body = post(client, "/api/v2/cis/sell", {"cis_list": [codes["free"][20]] * 21})
    assert (status, body["error"]) == (413, "too_many_codes")
    assert server.blocklist.sold.count() == before
    assert not server.blocklist.is_sold(codes["free"][20])


def test_sold_page_and_its_limits(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "page.db", codes["blocked"][:3])
    with ServerThread(db) as srv:
        client = srv.client()
        for code in codes["free"][30:35]:
            assert post(client, "/api/v2/cis/sell", {"cis_list": [code]})[0] == 201
        status, _, page = client.request("GET", "/api/v2/cis/sold?skip=1&limit=2")
        assert status == 200 and decode(page, SOLD_PAGE)["total_count"] == 5
        status, _, body = client.request("GET", "/api/v2/cis/sold")
        # every sale, once; a page is a slice of that one order (sales in the same clock tick are ordered by code)
        assert sorted(body["cis_list"]) == sorted(codes["free"][30:35])
        assert page["cis_list"] == body["cis_list"][1:3]
        for query in ("limit=1001", "limit=-1", "skip=abc", "limit=1e3"):
            status, _, body = client.request("GET", "/api/v2/cis/sold?" + query)
            assert status == 400 and body["error"] == "bad_request", query
            decode(body, ERROR)
        # init with clearSold wipes it; status says how many are left
        status, body = post(client, "/api/v2/init", {"token": "t", "clearSold": True})
        assert status == 200 and decode(body, ACK)["soldCleared"] == 5
        status, _, body = client.request("GET", "/api/v2/cis/sold")
        assert body == {"total_count": 0, "cis_list": [], "skip": 0, "limit": 1000}
        assert client.request("GET", "/api/v2/status")[2]["soldCount"] == 0


def test_grey_list_switch(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "grey.db", codes["blocked"][:3])
    with ServerThread(db) as srv:
        client = srv.client()
        assert decode(client.request("GET", "/api/v2/status")[2], STATUS)["isGreyGtin"] is False
        status, body = post(client, "/api/v2/init", {"token": "t", "enableGreyList": True})
        assert status == 200 and decode(body, ACK)["enableGreyList"] is True
        assert client.request("GET", "/api/v1/status")[2]["isGreyGtin"] is True
        status, body = post(client, "/api/v2/greyList", {"enableGreyList": False})
        assert status == 200 and decode(body, ACK)["enableGreyList"] is False
        assert client.request("GET", "/api/v2/status")[2]["isGreyGtin"] is False
        for bad in ({"enableGreyList": "yes"}, {}, [True]):
            status, body = post(client, "/api/v2/greyList", bad)
            assert status == 400 and decode(body, ERROR)["error"] == "bad_request"
        for bad in ({"token": "t", "clearSold": "yes"}, {"token": "t", "enableGreyList": 1}):
            assert post(client, "/api/v2/init", bad)[0] == 400
    with Blocklist.open(db) as bl:
        assert bl.get_meta("grey_list_enabled") is False       # durable, in the store


def test_v2_prices_come_from_the_checking_version_with_the_tills_pg(tmp_path: Path,
                                                                    codes: dict[str, list[str]]) -> None:
    """`smp` is the verdict's own: the GTIN's minimum price, else the price of the product group the till sent
    (`pg`), as the store answers it (`Blocklist.min_price`, the oracle); `dbState.min_price.docCount` counts
    both kinds of price."""
    free = codes["free"][:3]
    db = make_db(tmp_path / "prices.db", codes["blocked"][:3])
    gtin_priced = free[0][2:16]
    with Blocklist.open(db, readonly=False) as bl:
        bl.apply_delta(to_version=bl.get_meta("version") + 1, add_records=[
            f"min_price {gtin_priced} 15000", "group_min_price 8 12345"])
        expected = {(code, pg): bl.min_price(code[2:16], pg) for code in free for pg in (None, 8)}
    assert expected[(free[0], None)] == 15000 and expected[(free[1], 8)] == 12345 and expected[(free[1], None)] is None
    with ServerThread(db) as srv:
        client = srv.client()
        items = [code if pg is None else {"cis": code, "pg": pg} for code in free for pg in (None, 8)]
        status, body = post(client, "/api/v2/cis/outCheck", {"cis_list": items})
        assert status == 200
        got = [(code["cis"], (code["groupIds"] or [None])[0], code["smp"]) for code in v2_codes(decode(body, RESULTS))]
        assert got == [(code, pg, expected[(code, pg)]) for code in free for pg in (None, 8)]
        state = decode(client.request("GET", "/api/v2/status")[2], STATUS)
        assert state["dbState"]["min_price"] == {"docCount": 2}


def test_pipelined_sell_and_status_answer_in_order(server: ServerThread, codes: dict[str, list[str]]) -> None:
    def request(method: str, path: str, body: str = "") -> str:
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth_header()}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return head + "\r\n" + body

    sells = [json.dumps({"cis_list": [code]}) for code in codes["free"][40:43]]
    stream = (request("POST", "/api/v2/cis/sell", sells[0]) + request("GET", "/api/v1/status")
              + request("POST", "/api/v2/cis/sell", sells[1]) + request("POST", "/api/v2/cis/sell", sells[2])
              + request("POST", "/api/v2/cis/outCheck", json.dumps({"cis_list": [codes["free"][42]]})))
    answers = parse_responses(raw_exchange(server.port, stream.encode()))
    assert [status for status, _, _ in answers] == [201, 200, 201, 201, 200]
    assert json.loads(answers[0][2])["results"][0]["cis"] == codes["free"][40]
    assert json.loads(answers[3][2])["results"][0]["cis"] == codes["free"][42]
    assert json.loads(answers[4][2])["results"][0]["codes"][0]["sold"] is True  # pipelined after its sale


def test_sales_share_commits_under_concurrency(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    import threading

    db = make_db(tmp_path / "busy.db", codes["blocked"][:3])
    with ServerThread(db) as srv:
        done: list[int] = []

        def till(part: list[str]) -> None:
            c = srv.client()
            for code in part:
                done.append(post(c, "/api/v2/cis/sell", {"cis_list": [code]})[0])
            c.close()

        threads = [threading.Thread(target=till, args=(codes["free"][100 + i:200:20],)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        writer = srv.app.writer
        assert writer is not None
        assert done.count(201) == 100 and writer.jobs_done == 100
        assert writer.commits < 100
        assert all(srv.blocklist.is_sold(code) for code in codes["free"][100:200])
        metrics = srv.client().request("GET", "/metrics", auth=False)[2]
        assert "lmcz_sold_writes_total 100\n" in metrics and "lmcz_sold_entries 100\n" in metrics
        assert 'lmcz_requests_total{endpoint="sell",outcome="ok"} 100' in metrics


# -- every answer of every endpoint decodes with the typed models ------------------------------------------------


def test_every_answer_of_every_endpoint_decodes(client: Client, codes: dict[str, list[str]]) -> None:
    free, blocked = codes["free"][50], codes["blocked"][2]
    for prefix in ("/api/v1", "/api/v2"):
        v2 = prefix == "/api/v2"
        checked = RESULTS if v2 else ENVELOPE
        status, _, body = client.request("GET", prefix + "/status")
        assert status == 200
        decode(body, STATUS)
        assert body["lastSync"] > 0 and body["lastUpdate"] > 0 and int(body["dbVersion"]) >= 1
        status, body = post(client, prefix + "/init", {"token": "t"})
        assert status == 200
        decode(body, ACK)
        for path in ("/cis/outCheck", "/cis/check"):
            status, body = post(client, prefix + path, {"cis_list": [free, blocked]})
            assert status == 200
            decode(body, checked)
            status, _, body = client.request("GET", f"{prefix}{path}?cis={quote(blocked, safe='')}")
            assert status == 200
            decode(body, checked)
        status, body = post(client, prefix + "/cis/sell", {"cis_list": [free]})
        assert status == 201
        decode(body, SALE_RESULTS)
        status, _, body = client.request("GET", prefix + "/cis/sold?limit=5")
        assert status == 200
        decode(body, SOLD_PAGE)
        status, body = post(client, prefix + "/cis/return", {"cis_list": [free]})
        assert status == 200
        decode(body, SALE_RESULTS)
        # errors: every one decodes as the envelope FMU-API reads a non-200 answer into
        for method, path, payload in (("POST", "/cis/outCheck", {"cis_list": ["junk"]}),
                                      ("POST", "/cis/outCheck", {"nope": 1}),
                                      ("POST", "/cis/outCheck", {"cis_list": []}),
                                      ("POST", "/cis/sell", {"cis_list": ["junk"]}),
                                      ("POST", "/init", {}), ("DELETE", "/status", None),
                                      ("GET", "/nowhere", None)):
            status, _, body = client.request(method, prefix + path, None if payload is None else json.dumps(payload),
                                             JSON)
            assert 400 <= status < 500
            decode(body, ERROR)
        status, _, body = client.request("GET", prefix + "/status", auth=False)
        assert status == 200            # the official module's status needs no credentials
        decode(body, STATUS)
        status, _, body = client.request("GET", prefix + "/config", auth=False)
        assert status == 401
        decode(body, ERROR)
    status, body = post(client, "/api/v2/greyList", {"enableGreyList": False})
    assert status == 200
    decode(body, ACK)


def test_status_before_the_first_sync_has_no_nulls(tmp_path: Path) -> None:
    empty = make_db(tmp_path / "never.db", [], load=False)
    with ServerThread(empty) as srv:
        for prefix in ("/api/v1", "/api/v2"):
            status, _, body = srv.client().request("GET", prefix + "/status")
            assert status == 200
            decode(body, STATUS)
            assert (body["status"], body["lastSync"], body["dbVersion"], body["requiresDownload"]) == (
                "not_configured", 0, "0", True)


def test_no_field_changes_type_between_v1_and_v2(client: Client, codes: dict[str, list[str]]) -> None:
    def types(value: Any, path: str = "") -> dict[str, str]:
        out = {path: type(value).__name__ if value is not None else "null"}
        if isinstance(value, dict):
            for key, sub in value.items():
                out.update(types(sub, f"{path}.{key}"))
        elif isinstance(value, list) and value:
            out.update(types(value[0], path + "[]"))
        return out

    v1 = types(client.request("GET", "/api/v1/status")[2])
    v2 = types(client.request("GET", "/api/v2/status")[2])
    assert v1 == v2
    one = types(post(client, "/api/v1/cis/outCheck", {"cis_list": [codes["blocked"][3]]})[1])
    two = types(post(client, "/api/v2/cis/outCheck", {"cis_list": [codes["blocked"][3]]})[1]["results"][0])
    shared = one.keys() & two.keys()
    assert len(shared) > 20 and all(one[k] == two[k] for k in shared if "null" not in (one[k], two[k]))


def test_a_sale_that_cannot_be_committed_is_answered_503(tmp_path: Path, codes: dict[str, list[str]],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import lmdb

    from lmcz_fast.store.sold import SoldRegister

    db = make_db(tmp_path / "full.db", codes["blocked"][:3])
    original = SoldRegister.op_record

    def failing(self: SoldRegister, batch: Any, at_ms: int, **options: Any) -> Any:
        record = original(self, batch, at_ms, **options)

        def op(txn: Any) -> Any:
            if any(code.identity == codes["free"][60] for code in batch):
                raise lmdb.MapFullError("mdb_put: MDB_MAP_FULL: Environment mapsize limit reached")
            return record(txn)

        return op

    monkeypatch.setattr(SoldRegister, "op_record", failing)
    with ServerThread(db) as srv:
        client = srv.client()
        status, body = post(client, "/api/v2/cis/sell", {"cis_list": [codes["free"][61], codes["free"][60]]})
        assert (status, body["error"]) == (503, "write_failed"), body
        decode(body, ERROR)
        assert post(client, "/api/v2/cis/sell", {"cis_list": [codes["free"][62]]})[0] == 201
        assert not srv.blocklist.is_sold(codes["free"][61]) and srv.blocklist.is_sold(codes["free"][62])
