"""Field fidelity (issue 20): every client found in the field works against `serve` unchanged.

What the surveyed clients send and expect is written in docs/service.md ("What clients in the field send"): a
`Token` scheme beside Basic, status without credentials (a Zabbix template), `lastSync` never 0 on a store that holds
a list, codes cut to 31 characters (a Pascal client), one unreadable code among many, init on `sync_error`, LM 1.x's
`replicationStatus`, standard reason phrases, `GET /config`. The strict decoders are in `_lm_contract.py`.
"""

from __future__ import annotations

import dataclasses
import json
import random
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from _lm_contract import (
    ACK,
    CONFIG,
    ENVELOPE,
    ERROR,
    EVOTOR_ENVELOPE,
    PASCAL_ENVELOPE,
    RESULTS,
    SALE_RESULTS,
    SOLD_PAGE,
    STATUS_FIELD,
    decode,
)
from _service_support import (
    PASSWORD,
    USER,
    Client,
    ServeProcess,
    ServerThread,
    auth_header,
    identity_sets,
    make_db,
    parse_responses,
    raw_exchange,
    set_synced_ago,
)

from lmcz_fast import synth
from lmcz_fast.service.config import parse_tokens
from lmcz_fast.service.throttle import AuthThrottle
from lmcz_fast.store import REPLICATION_META_PREFIX as META_PREFIX
from lmcz_fast.store import REPLICATION_META_SOURCE as META_SOURCE
from lmcz_fast.store import Blocklist, wake

JSON = {"Content-Type": "application/json"}
TOKEN = str(uuid.UUID(int=0x20261207))
TOKEN_LINE = f"{TOKEN} 2099-12-31 till 3 (TS PIoT)\n"


def _token_client(port: int, token: str = TOKEN) -> Client:
    return Client(port, auth=f"Token {token}")


def _post(client: Client, path: str, payload: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, body = client.request("POST", path, json.dumps(payload), {**JSON, **(headers or {})})
    return status, body


@pytest.fixture(scope="module")
def codes() -> dict[str, list[str]]:
    return identity_sets(random.Random(20261207), blocked=20, free=520)


# -- 1. Authorization: Token ---------------------------------------------------------------------------------------


def test_token_file_lines() -> None:
    tokens = parse_tokens("# tokens published by the TS PIoT\n\n"
                          f"{TOKEN}\n"
                          "0123456789abcdef0123 2027-01-31 till 1\n"
                          "fedcba9876543210fedc 2027-01-31T18:00:00+03:00 till 2 back office\n"
                          "aaaaaaaaaaaaaaaaaaaa - no expiry\n")
    assert [t.label for t in tokens] == ["line 3", "till 1", "till 2 back office", "no expiry"]
    assert tokens[0].secret == TOKEN.encode() and tokens[0].expires_at is None
    assert tokens[1].expires_at == 1801440000.0         # the end of 2027-01-31 UTC
    assert tokens[2].expires_at == 1801407600.0         # 15:00 UTC
    assert tokens[3].expires_at is None
    assert TOKEN not in repr(tokens)
    for text, words in (("short 2027-01-01 x\n", "at least 16"), (f"{TOKEN} 2027-13-01 x\n", "not a date"),
                        (f"{TOKEN}\n{TOKEN} again\n", "line 2: this token is already")):
        with pytest.raises(ValueError, match=words) as refused:
            parse_tokens(text)
        assert TOKEN not in str(refused.value)


def test_token_beside_basic_audited_by_label(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"])
    expired = "e" * 32
    tokens = parse_tokens(TOKEN_LINE + f"{expired} 2020-01-01 old till\n")
    with ServerThread(db, audit_dir=tmp_path / "audit", tokens=tokens) as srv:
        by_token = _token_client(srv.port)
        status, body = _post(by_token, "/api/v1/cis/outCheck", {"cis_list": [codes["blocked"][0]]},
                             {"X-ClientId": "9999078900012345"})
        assert status == 200 and body["codes"][0]["isBlocked"] is True
        status, body = _post(by_token, "/api/v2/cis/outCheck", {"cis_list": [codes["free"][0]]})
        assert status == 200 and body["results"][0]["codes"][0]["isBlocked"] is False
        assert srv.client().check([codes["free"][1]])[0] == 200                        # Basic still works
        for wrong in (_token_client(srv.port, "x" * 36), _token_client(srv.port, expired),
                      Client(srv.port, auth=f"Token {TOKEN[:-1]}"), Client(srv.port, auth="Token")):
            status, headers, body = wrong.check([codes["free"][0]])
            assert status == 401 and body["error"] == "unauthorized"
            assert "Token" in body["description"]
        srv.audit.flush()
    lines = [json.loads(line) for path in sorted((tmp_path / "audit").iterdir())
             for line in path.read_text().splitlines()]
    assert [(r.get("a"), r["c"]) for r in lines] == [("token:till 3 (TS PIoT)", "9999078900012345"),
                                                     ("token:till 3 (TS PIoT)", None), (None, None)]
    assert TOKEN not in "".join(path.read_text() for path in (tmp_path / "audit").iterdir())


def test_wrong_token_is_throttled_like_wrong_basic(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"])
    throttle = AuthThrottle(free_failures=0, first_delay=0.3, max_delay=0.3)
    with ServerThread(db, tokens=parse_tokens(TOKEN_LINE), throttle=throttle) as srv:
        good = _token_client(srv.port)
        good.check([codes["free"][0]])
        for client in (_token_client(srv.port, "y" * 36), Client(srv.port, auth=auth_header(USER, "wrong"))):
            started = time.monotonic()
            assert client.check([codes["free"][0]])[0] == 401
            assert time.monotonic() - started >= 0.25       # held by the throttle, never answered at once


def test_token_file_is_read_again_on_sighup(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"])
    token_file = tmp_path / "tokens"
    token_file.write_text(TOKEN_LINE)
    second = str(uuid.uuid4())
    with ServeProcess(db, "--token-file", str(token_file)) as served:
        assert _token_client(served.port).request("GET", "/api/v1/cis/outCheck?cis=x")[0] == 400
        assert _token_client(served.port, second).request("GET", "/api/v1/cis/outCheck?cis=x")[0] == 401
        token_file.write_text(f"{second}\n")
        served.proc.send_signal(signal.SIGHUP)        # type: ignore[union-attr]
        deadline = time.monotonic() + 15
        while not any("tokens reloaded" in line for line in served.log):
            assert time.monotonic() < deadline, served.log[-5:]
            time.sleep(0.05)
        assert _token_client(served.port, second).request("GET", "/api/v1/cis/outCheck?cis=x")[0] == 400
        assert _token_client(served.port).request("GET", "/api/v1/cis/outCheck?cis=x")[0] == 401
        assert not any(TOKEN in line or second in line for line in served.log)
        assert served.signal(signal.SIGTERM) == 0


# -- 3. status without credentials, holding no secret --------------------------------------------------------------


def test_status_without_credentials_holds_no_secret(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"])
    with Blocklist.open(db, readonly=False) as bl:
        bl.mark_synced(feed_url="https://feeduser:feedpass@feed.example:8443/lm?key=querysecret#frag")
    with ServerThread(db, tokens=parse_tokens(TOKEN_LINE)) as srv:
        srv.app.config = dataclasses.replace(srv.app.config, host="0.0.0.0")    # as if reachable from the network
        srv.app.set_password("admin")                                           # ... with the default password
        anyone = Client(srv.port, auth="")
        for prefix in ("/api/v1", "/api/v2"):
            status, _, body = anyone.request("GET", prefix + "/status")
            assert status == 200
            decode(body, STATUS_FIELD)
            text = json.dumps(body)
            for secret in ("feedpass", "feeduser", "querysecret", "frag", TOKEN, "admin:admin", "till 3"):
                assert secret not in text, secret
            assert body["serviceUrl"] == "https://feed.example:8443/lm" and "warnings" not in body
        # the operator (authenticated) still reads the warnings
        status, _, body = Client(srv.port, auth=auth_header(USER, "admin")).request("GET", "/api/v1/status")
        assert status == 200 and any("admin:admin" in w for w in body["warnings"])
        # credentials a client does send are checked
        assert Client(srv.port, auth=auth_header(USER, "nope")).request("GET", "/api/v1/status")[0] == 401
    with ServerThread(db, status_auth=True) as srv:
        assert Client(srv.port, auth="").request("GET", "/api/v1/status")[0] == 401
        assert srv.client().request("GET", "/api/v1/status")[0] == 200


# -- every answer of every endpoint, in every state, both protocols, both auth schemes ------------------------------


def _state_db(tmp_path: Path, state: str, blocked: list[str]) -> Path:
    path = tmp_path / f"{state}.db"
    if state in ("empty", "initialising"):
        return make_db(path, [], load=False)
    if state == "file-loaded":
        return make_db(path, blocked, synced_ago=None)
    make_db(path, blocked)
    if state == "stale":
        set_synced_ago(path, 3 * 3600)
    elif state == "expired":
        set_synced_ago(path, 73 * 3600)
    elif state == "replicated":
        now = time.time()
        with Blocklist.open(path, readonly=False) as bl:
            bl.set_meta(**{META_SOURCE: {"url": "https://couch.example/", "databases": {"codes": "blocked_cis",
                                                                                        "gtins": "blocked_gtin"}},
                           META_PREFIX + "blocked_cis": {"kind": "codes", "docs": len(blocked), "source_docs": 25,
                                                         "seq_lag": 3, "last_seq": "7-x", "last_batch_at": now - 5},
                           META_PREFIX + "blocked_gtin": {"kind": "gtins", "docs": 0, "source_docs": None,
                                                          "last_batch_at": None}})
    return path


STATES = ("empty", "initialising", "ready", "stale", "expired", "replicated", "file-loaded")


@pytest.mark.parametrize("state", STATES)
def test_every_answer_decodes_in_every_state(tmp_path: Path, codes: dict[str, list[str]], state: str) -> None:
    db = _state_db(tmp_path, state, codes["blocked"])
    blocked, free = codes["blocked"][3], codes["free"][3]
    serving = state in ("ready", "stale", "replicated", "file-loaded")
    with ServerThread(db, tokens=parse_tokens(TOKEN_LINE)) as srv:
        for client in (srv.client(), _token_client(srv.port)):
            if state == "initialising":
                assert _post(client, "/api/v1/init", {"token": "t"})[0] == 200
            for prefix in ("/api/v1", "/api/v2"):
                status, _, body = client.request("GET", prefix + "/status", auth=False)
                assert status == 200
                decode(body, STATUS_FIELD)
                holds = state not in ("empty", "initialising")
                assert (body["lastSync"] > 0) == holds and (body["lastUpdate"] > 0) == holds, body
                assert (body["dbVersionId"] != "") == holds
                status, _, body = client.request("GET", prefix + "/config")
                assert status == 200
                decode(body, CONFIG)
                for method, path in (("POST", "/cis/outCheck"), ("GET", "/cis/outCheck"), ("GET", "/cis/check")):
                    if method == "POST":
                        status, body = _post(client, prefix + path, {"cis_list": [free, blocked, "junk"]})
                    else:
                        query = "&".join("cis=" + quote(c, safe="") for c in (free, blocked, "junk"))
                        status, _, body = client.request("GET", f"{prefix}{path}?{query}")
                    if not serving:
                        assert status == 400 and body["errorCode"] in (4045, 4050)
                        decode(body, ERROR)
                        continue
                    assert status == 200, body
                    envelopes = decode(body, RESULTS)["results"] if prefix == "/api/v2" else [body]
                    for one in envelopes:
                        decode(one, ENVELOPE)
                        decode(one, EVOTOR_ENVELOPE)
                        decode(one, PASCAL_ENVELOPE)
                    answers = [c for one in envelopes for c in one["codes"]]
                    assert [c["isBlocked"] for c in answers] == [False, True, True]
                    assert answers[2]["valid"] is False and answers[2]["errorCode"] == 400
                status, body = _post(client, prefix + "/init", {"token": "t"})
                assert status == 200
                decode(body, ACK)
                status, body = _post(client, prefix + "/cis/sell", {"cis_list": [free]})
                assert status == 201
                decode(body, SALE_RESULTS)
                status, _, body = client.request("GET", prefix + "/cis/sold?limit=3")
                assert status == 200
                decode(body, SOLD_PAGE)
                status, body = _post(client, prefix + "/cis/return", {"cis_list": [free]})
                assert status == 200
                decode(body, SALE_RESULTS)
            status, body = _post(client, "/api/v2/greyList", {"enableGreyList": False})
            assert status == 200
            decode(body, ACK)


def test_replication_status_always_answered(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    for state, expected in (
        ("file-loaded", {"cis": "unknown", "blocked_cis": len(codes["blocked"]), "blocked_gtin": 0,
                         "blocked_series": "unknown"}),
        ("empty", {"cis": "unknown", "blocked_cis": "unknown", "blocked_gtin": "unknown",
                   "blocked_series": "unknown"}),
        ("replicated", {"cis": "unknown", "blocked_cis": len(codes["blocked"]), "blocked_gtin": 0,
                        "blocked_series": "unknown"}),
    ):
        with ServerThread(_state_db(tmp_path, state, codes["blocked"])) as srv:
            body = srv.client().request("GET", "/api/v1/status")[2]
        got = body["replicationStatus"]
        assert {name: got[name]["localDocCount"] for name in expected} == expected, (state, got)
        if state == "replicated":
            assert got["blocked_cis"]["serverDocCount"] == 25 and got["blocked_cis"]["timeLag"] >= 5
            assert got["blocked_gtin"]["serverDocCount"] == "unknown"
        else:
            assert all(got[name]["serverDocCount"] == "unknown" for name in expected)


def test_last_sync_is_when_the_data_was_made_current(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    before = int(time.time() * 1000)
    db = _state_db(tmp_path, "file-loaded", codes["blocked"])
    with ServerThread(db) as srv:
        client = srv.client()
        body = client.request("GET", "/api/v1/status")[2]
        assert before - 1000 <= body["lastSync"] <= int(time.time() * 1000) and body["lastUpdate"] >= body["lastSync"]
        assert body["lastSync"] + body["offlineLimit"] * 1000 == body["expiresAt"]
        with Blocklist.open(db, readonly=False) as bl:       # a delta makes the data newer: lastUpdate moves
            bl.apply_delta(add=[codes["free"][0]], to_version=bl.get_meta("version") + 1)
        time.sleep(0.1)
        after = client.request("GET", "/api/v1/status")[2]
        assert after["lastUpdate"] > body["lastUpdate"] and after["lastSync"] == body["lastSync"]


def test_status_names_the_version_the_checks_carry(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"])
    with ServerThread(db) as srv:
        client = srv.client()
        status = client.request("GET", "/api/v1/status")[2]
        check = client.check([codes["blocked"][0]])[2]
        v2 = _post(client, "/api/v2/cis/outCheck", {"cis_list": [codes["free"][0]]})[1]["results"][0]
        assert status["dbVersionId"] == check["version"] == v2["version"]
        assert status["dbVersion"] == check["dbVersion"] == "1"
        with Blocklist.open(db, readonly=False) as bl:
            bl.apply_delta(add=[codes["free"][0]], to_version=2)
        time.sleep(0.1)
        status = client.request("GET", "/api/v1/status")[2]
        check = client.check([codes["free"][0]])[2]
        assert status["dbVersionId"] == check["version"] != v2["version"] and status["dbVersion"] == "2"


# -- the Zabbix template, replayed ---------------------------------------------------------------------------------

#: A-Y89/zabbix-lmcz-agent-active (tested on the official 1.5.1-523), as docs/protocol.md describes it: one
#: unauthenticated `GET /api/v1/status`, items read by JSON path, four triggers.
ZABBIX_ITEMS = {"status": "$.status", "operationMode": "$.operationMode", "requiresDownload": "$.requiresDownload",
                "lastSync": "$.lastSync", "lastUpdate": "$.lastUpdate", "version": "$.version",
                "dbVersion": "$.dbVersion", "name": "$.name", "inst": "$.inst"}
ZABBIX_TRIGGERS = {
    "not ready": lambda i, now: i["status"] != "ready",
    "service mode": lambda i, now: i["operationMode"] == "service",
    "requires download": lambda i, now: i["requiresDownload"] is True,
    "not synchronised for more than a day": lambda i, now: now - i["lastSync"] / 1000 > 86400,
}


def _zabbix(port: int) -> set[str]:
    """One poll: every item must be supported (present, of a scalar type), then the triggers that fire."""
    status, _, body = Client(port, auth="").request("GET", "/api/v1/status")
    assert status == 200, "every item unsupported: status needs credentials"
    items = {}
    for name, path in ZABBIX_ITEMS.items():
        value = body[path[2:]]
        assert isinstance(value, (str, int, bool)), (name, value)
        items[name] = value
    now = time.time()
    return {name for name, fires in ZABBIX_TRIGGERS.items() if fires(items, now)}


@pytest.mark.parametrize(("synced_ago", "fired"), [
    (0.0, set()),
    (30 * 3600.0, {"not synchronised for more than a day"}),
    (73 * 3600.0, {"not ready", "not synchronised for more than a day"}),
    (None, {"not ready", "requires download", "not synchronised for more than a day"}),
], ids=["healthy", "stale", "expired", "empty"])
def test_zabbix_template_triggers(tmp_path: Path, codes: dict[str, list[str]], synced_ago: float | None,
                                  fired: set[str]) -> None:
    if synced_ago is None:
        db = make_db(tmp_path / "store.db", [], load=False)
    else:
        db = make_db(tmp_path / "store.db", codes["blocked"])
        set_synced_ago(db, synced_ago)
    with ServerThread(db) as srv:
        assert _zabbix(srv.port) == fired


# -- 2. codes cut short, one unreadable code among many ------------------------------------------------------------


@pytest.fixture(scope="module")
def cut_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[synth.GeneratedCode], set[str]]:
    generated = [c for group in synth.GROUPS for c in synth.generate(4, seed=2026, groups=[group])]
    blocked = {c.cis for c in generated[::2]}
    db = make_db(tmp_path_factory.mktemp("cut") / "store.db", sorted(blocked))
    return db, generated, blocked


@pytest.mark.parametrize("prefix", ["/api/v1", "/api/v2"])
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_31_character_cut_is_answered_for_its_identity(cut_store: Any, prefix: str, method: str) -> None:
    db, generated, blocked = cut_store
    scans = [c.element_string[:31] for c in generated]
    assert any(c.group == "beer" for c in generated) and any(c.group == "tobacco_block" for c in generated)
    with ServerThread(db) as srv:
        client = srv.client()
        if method == "POST":
            status, body = _post(client, prefix + "/cis/outCheck", {"cis_list": scans})
        else:
            query = "&".join("cis=" + quote(s, safe="") for s in scans)
            status, _, body = client.request("GET", f"{prefix}/cis/outCheck?{query}")
    assert status == 200, body
    answers = [r["codes"][0] for r in body["results"]] if prefix == "/api/v2" else body["codes"]
    for code, answer in zip(generated, answers, strict=True):
        assert "errorCode" not in answer, (code.group, answer)
        assert answer["gtin"] == code.gtin and answer["cis"] in (code.cis, code.identity), (code.group, answer)
        assert answer["isBlocked"] is (code.cis in blocked), code.group


@pytest.mark.parametrize("prefix", ["/api/v1", "/api/v2"])
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_batch_of_500_with_one_unreadable_code_answers_the_other_499(tmp_path: Path, codes: dict[str, list[str]],
                                                                     prefix: str, method: str) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"])
    scans = codes["blocked"][:10] + codes["free"][:489] + ["0104600439931256"]   # the last: no serial
    scans.insert(250, scans.pop())
    with ServerThread(db) as srv:
        if method == "POST":
            status, body = _post(srv.client(), prefix + "/cis/outCheck", {"cis_list": scans})
        else:
            query = "&".join("cis=" + quote(s, safe="") for s in scans)
            status, _, body = srv.client().request("GET", f"{prefix}/cis/outCheck?{query}")
        metrics = srv.client().request("GET", "/metrics", auth=False)[2]
    assert status == 200
    answers = [r["codes"][0] for r in decode(body, RESULTS)["results"]] if prefix == "/api/v2" else \
        decode(body, ENVELOPE)["codes"]
    assert len(answers) == 500
    bad = answers.pop(250)
    assert bad["isBlocked"] is True and bad["valid"] is False and bad["errorCode"] == 400
    assert sum(1 for a in answers if "errorCode" not in a) == 499
    assert [a["isBlocked"] for a in answers] == [True] * 10 + [False] * 489
    assert "lmcz_codes_unreadable_total 1\n" in metrics


def test_request_with_no_readable_code_stays_a_400(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"])
    with ServerThread(db) as srv:
        for prefix in ("/api/v1", "/api/v2"):
            status, body = _post(srv.client(), prefix + "/cis/outCheck", {"cis_list": ["junk", 42]})
            assert status == 400 and body["error"] == "invalid_code" and body["index"] == 0
            decode(body, ERROR)


# -- 5. init on a store that is not ready starts a round ------------------------------------------------------------


def test_init_on_an_expired_store_wakes_the_sync_loop(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    from lmcz_fast.cli.common import wait_for_round

    db = make_db(tmp_path / "store.db", codes["blocked"])       # synced from a feed (make_db records its URL)
    set_synced_ago(db, 73 * 3600)
    with ServerThread(db) as srv, Blocklist.open(db, readonly=False, refresh_interval=0.05) as loop_store:
        stop = threading.Event()
        waited: list[float] = []

        def loop() -> None:                     # what `lmcz-fast sync --every 1d` does between two rounds
            started = time.monotonic()
            wait_for_round(stop, 3600.0, lambda: loop_store)
            waited.append(time.monotonic() - started)

        waiter = threading.Thread(target=loop)
        waiter.start()
        client = srv.client()
        status, body = _post(client, "/api/v1/init", {"token": "t"})
        assert status == 200 and body["started"] == "sync" and "sync round" in body["description"]
        waiter.join(30)
        stop.set()
        assert waited and waited[0] < 30, "the loop was not woken"
        time.sleep(0.1)
        request = client.request("GET", "/api/v1/status")[2]["roundRequest"]
        assert request["kind"] == "sync" and request["pending"] is False
        assert request["takenAt"] >= request["requestedAt"] > 0
        # a ready store: init starts nothing
        set_synced_ago(db, 10)
        time.sleep(0.1)
        assert _post(client, "/api/v1/init", {"token": "t"})[1]["started"] == "none"


def test_init_says_when_nothing_can_be_started(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"], synced_ago=None)     # loaded from a file: no feed
    with Blocklist.open(db, readonly=False) as bl:
        bl.set_meta(expire_after=0.01)
    time.sleep(0.05)
    for path in (db, make_db(tmp_path / "empty.db", [], load=False)):
        with ServerThread(path) as srv:
            status, body = _post(srv.client(), "/api/v1/init", {"token": "t"})
            assert status == 200 and body["started"] == "none" and "nothing to start" in body["description"]
            assert srv.client().request("GET", "/api/v1/status")[2]["roundRequest"] == {
                "kind": "none", "requestedAt": 0, "takenAt": 0, "pending": False}


# -- 8. reason phrases; 9. config ----------------------------------------------------------------------------------


def test_every_status_line_has_its_standard_reason_phrase(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"])
    body = json.dumps({"cis_list": [codes["free"][0]]})
    with ServerThread(db) as srv:
        lines = []
        for request in (f"POST /api/v2/cis/sell HTTP/1.1\r\nHost: x\r\nAuthorization: {auth_header()}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                        f"Connection: close\r\n\r\n{body}",
                        "GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        "DELETE /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        "GET /api/v1/cis/outCheck?cis=x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
            data = raw_exchange(srv.port, request.encode())
            assert len(parse_responses(data)) == 1
            lines.append(data.split(b"\r\n", 1)[0])
    assert lines == [b"HTTP/1.1 201 Created", b"HTTP/1.1 404 Not Found", b"HTTP/1.1 405 Method Not Allowed",
                     b"HTTP/1.1 401 Unauthorized"]


def test_config_is_a_read_only_view_without_secrets(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"])
    with ServerThread(db, tokens=parse_tokens(TOKEN_LINE), max_codes=700) as srv:
        for prefix in ("/api/v1", "/api/v2"):
            status, _, body = srv.client().request("GET", prefix + "/config")
            assert status == 200
            decode(body, CONFIG)
            assert body["replicationInstUrl"] == "https://feed.example/lm" and body["operationMode"] == "active"
            assert body["lmczFast"]["maxCodes"] == 700 and body["lmczFast"]["syncKind"] == "sync"
            assert body["authorization"] == [{"type": "basic", "user": USER},
                                             {"type": "token", "label": "till 3 (TS PIoT)",
                                              "expiresAt": 4102444800000}]
            assert PASSWORD not in json.dumps(body) and TOKEN not in json.dumps(body)
            assert srv.client().request("POST", prefix + "/config", "{}", JSON)[0] == 405


def test_serve_refuses_a_bad_token_file_without_printing_a_token(tmp_path: Path,
                                                                  codes: dict[str, list[str]]) -> None:
    from click.testing import CliRunner

    from lmcz_fast.cli.serve import serve

    db = make_db(tmp_path / "store.db", codes["blocked"])
    bad = tmp_path / "tokens"
    bad.write_text(f"{TOKEN} 2027-02-30 till\n")
    result = CliRunner().invoke(serve, [str(db), "--port", "0", "--token-file", str(bad)])
    assert result.exit_code == 2 and "--token-file" in result.output and "line 1" in result.output
    assert TOKEN not in result.output
    missing = CliRunner().invoke(serve, [str(db), "--port", "0", "--token-file", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "cannot read the token file" in missing.output


def test_a_request_the_last_round_answered_does_not_start_another(tmp_path: Path,
                                                                    codes: dict[str, list[str]]) -> None:
    from lmcz_fast.cli.common import wait_for_round

    db = make_db(tmp_path / "store.db", codes["blocked"])
    with Blocklist.open(db, readonly=False, refresh_interval=0.05) as bl:
        bl.set_meta(**wake.request_fields("init", time.time() - 5))     # made while the round was running
        started = time.monotonic()
        wait_for_round(threading.Event(), 30.0, lambda: bl, round_started=time.time() - 10)
        assert time.monotonic() - started < 10          # made while the round ran: the next one starts now
        bl.set_meta(**wake.request_fields("init", time.time() - 5))
        started = time.monotonic()
        wait_for_round(threading.Event(), 1.5, lambda: bl, round_started=time.time() - 1)
        assert time.monotonic() - started >= 1.4        # answered by the round just run: the wait goes on
        assert wake.pending(bl) is None
