"""The Local-Module-compatible service, over real HTTP on loopback, against a real database."""

from __future__ import annotations

import json
import logging
import random
import re
import signal
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from _service_support import (
    GS,
    PASSWORD,
    USER,
    Client,
    ServeProcess,
    ServerThread,
    auth_header,
    identity_sets,
    make_db,
    make_identity,
    make_scan,
    parse_responses,
    raw_exchange,
    set_synced_ago,
)

CODE_FIELDS = {"cis", "printView", "gtin", "groupIds", "found", "valid", "verified", "realizable", "utilised", "sold",
               "isBlocked", "ogvs", "isGreyGtin"}
ENVELOPE_FIELDS = {"code", "description", "reqId", "reqTimestamp", "inst", "version", "isCheckedOffline", "codes"}
STATUS_FIELDS = {"status", "operationMode", "version", "dbVersion", "lastSync", "lastUpdate", "inst", "inn", "name",
                 "serviceUrl", "requiresDownload"}


@pytest.fixture(scope="module")
def codes() -> dict[str, list[str]]:
    rng = random.Random(20261123)
    sets = identity_sets(rng, blocked=50, free=50)
    plus = [make_identity(rng, alphabet="ab+cd")]
    tobacco = [make_identity(rng, serial_len=7, alphabet="ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789")]
    return {**sets, "plus": plus, "tobacco": tobacco}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, codes: dict[str, list[str]]) -> Path:
    return make_db(tmp_path_factory.mktemp("svc") / "store.db", codes["blocked"] + codes["plus"] + codes["tobacco"])


@pytest.fixture(scope="module")
def server(db: Path, tmp_path_factory: pytest.TempPathFactory):
    with ServerThread(db, audit_dir=tmp_path_factory.mktemp("audit"), name="shop 7", inn="7700000000",
                      max_codes=20, max_body=64 * 1024) as srv:
        yield srv


@pytest.fixture()
def client(server: ServerThread):
    c = server.client()
    yield c
    c.close()


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


# -- the contract ---------------------------------------------------------------------------------------------


def test_status_ready_fields(client: Client) -> None:
    status, _, body = client.request("GET", "/api/v1/status")
    assert status == 200
    assert STATUS_FIELDS <= body.keys()
    assert body["status"] == "ready"
    assert body["operationMode"] == "active"
    assert body["requiresDownload"] is False
    assert isinstance(body["dbVersion"], str) and int(body["dbVersion"]) >= 1
    assert _is_uuid(body["inst"])
    assert body["inn"] == "7700000000" and body["name"] == "shop 7"
    assert abs(body["lastSync"] - time.time() * 1000) < 60_000
    assert isinstance(body["lastUpdate"], int)
    assert body["serviceUrl"] == "https://feed.example/lm"
    assert body["dbFreshness"] == "ready"
    assert body["dbState"]["blocked_cis"] == {"docCount": 52}
    assert body["dbState"]["blocked_gtin"] == {"docCount": 0}


def test_check_blocked_and_free(client: Client, codes: dict[str, list[str]]) -> None:
    rng = random.Random(1)
    blocked, free = codes["blocked"][0], codes["free"][0]
    before = time.time() * 1000
    status, headers, body = client.check([make_scan(blocked, rng), make_scan(free, rng)],
                                         headers={"X-ClientId": "9999078900001234"})
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    assert ENVELOPE_FIELDS <= body.keys()
    assert body["code"] == 0 and body["isCheckedOffline"] is True
    assert _is_uuid(body["reqId"]) and _is_uuid(body["inst"]) and _is_uuid(body["version"])
    assert before - 1 <= body["reqTimestamp"] <= time.time() * 1000 + 1
    first, second = body["codes"]
    assert CODE_FIELDS <= first.keys()
    assert first["cis"] == blocked and first["gtin"] == blocked[2:16]
    assert first["isBlocked"] is True and second["isBlocked"] is False
    for code in (first, second):
        assert code["found"] and code["valid"] and code["verified"] and code["realizable"] and code["utilised"]
        assert code["sold"] is False and code["isGreyGtin"] is False and code["groupIds"] == []
    assert body["tag1265"] == f"UUID={body['reqId']}&Time={body['reqTimestamp']}&Inst={body['inst']}" \
                              f"&Ver={body['version']}"
    assert int(body["dbVersion"]) >= 1 and body["dbAge"] >= 0


def test_every_request_gets_its_own_id(client: Client, codes: dict[str, list[str]]) -> None:
    ids = {client.check([codes["free"][1]])[2]["reqId"] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize("path", ["/api/v1/cis/outCheck", "/api/v2/cis/outCheck", "/api/v1/cis/check",
                                  "/api/v2/cis/check", "/api/v1/cis/outCheck/"])
def test_get_spellings_with_url_encoded_scans(client: Client, codes: dict[str, list[str]], path: str) -> None:
    rng = random.Random(2)
    scans = [make_scan(codes["blocked"][2], rng), make_scan(codes["free"][2], rng)]
    query = "&".join("cis=" + quote(s, safe="") for s in scans)
    status, _, body = client.request("GET", f"{path}?{query}")
    assert status == 200, body
    if "/v2/" in path:  # protocol 2: one envelope per code
        body = {"codes": [code for result in body["results"] for code in result["codes"]]}
    assert [c["isBlocked"] for c in body["codes"]] == [True, False]
    assert body["codes"][0]["cis"] == codes["blocked"][2]


def test_plus_in_query_is_the_serials_own_character(client: Client, codes: dict[str, list[str]]) -> None:
    identity = codes["plus"][0]
    for query in (quote(identity, safe=""), identity):
        status, _, body = client.request("GET", "/api/v1/cis/check?cis=" + query)
        assert status == 200, body
        assert body["codes"][0]["cis"] == identity and body["codes"][0]["isBlocked"] is True


def test_json_escaped_and_raw_gs_and_bom(client: Client, codes: dict[str, list[str]]) -> None:
    identity = json.dumps(codes["blocked"][3])[1:-1]
    escaped = ('{"cis_list": ["' + identity + '\\u001d93Ab1z"]}').encode()
    raw_gs = ('{"cis_list": ["' + identity + GS + '93Ab1z"]}').encode()
    for body in (escaped, raw_gs, b"\xef\xbb\xbf" + escaped):
        status, _, answer = client.request("POST", "/api/v1/cis/outCheck", body,
                                           {"Content-Type": "application/json; charset=utf-8"})
        assert status == 200, answer
        assert answer["codes"][0]["isBlocked"] is True


def test_tobacco_pack_and_scanner_prefix(client: Client, codes: dict[str, list[str]]) -> None:
    identity = codes["tobacco"][0]
    pack = identity[2:16] + identity[18:] + "AAAA" + "Y7Ab"
    assert len(pack) == 29
    status, _, body = client.check([pack, "]C1" + identity + GS + "93Ab1z"])
    assert status == 200, body
    assert [c["isBlocked"] for c in body["codes"]] == [True, True]
    assert body["codes"][0]["cis"] == identity[2:16] + identity[18:]


def test_literal_backslash_u001d_in_a_query(client: Client, codes: dict[str, list[str]]) -> None:
    identity = codes["blocked"][4]
    status, _, body = client.request("GET", "/api/v1/cis/outCheck?cis=" + quote(identity + "\\u001d93Ab1z", safe=""))
    assert status == 200, body
    assert body["codes"][0]["isBlocked"] is True


def test_keep_alive_and_pipelining(server: ServerThread, codes: dict[str, list[str]]) -> None:
    auth = auth_header()
    requests = b""
    for i in range(3):
        body = json.dumps({"cis_list": [codes["blocked"][i] if i % 2 == 0 else codes["free"][i]]}).encode()
        requests += (f"POST /api/v1/cis/outCheck HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    requests += b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth.encode() + \
                b"\r\nConnection: close\r\n\r\n"
    responses = parse_responses(raw_exchange(server.port, requests))
    assert [r[0] for r in responses] == [200, 200, 200, 200]
    assert [json.loads(r[2])["codes"][0]["isBlocked"] for r in responses[:3]] == [True, False, True]
    assert responses[-1][1].get("connection") == "close"


def test_expect_100_continue(server: ServerThread, codes: dict[str, list[str]]) -> None:
    body = json.dumps({"cis_list": [codes["free"][5]]}).encode()
    request = (f"POST /api/v1/cis/outCheck HTTP/1.1\r\nHost: x\r\nAuthorization: {auth_header()}\r\n"
               f"Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {len(body)}\r\n"
               "Connection: close\r\n\r\n").encode() + body
    data = raw_exchange(server.port, request)
    assert data.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert parse_responses(data)[0][0] == 200


def test_init_accepts_token(client: Client) -> None:
    status, _, body = client.request("POST", "/api/v1/init", json.dumps({"token": "t0ken-value"}),
                                     {"Content-Type": "application/json"})
    assert status == 200 and body["code"] == 0
    assert client.request("GET", "/api/v1/status")[2]["initialized"] is True
    status, _, body = client.request("POST", "/api/v1/init", "{}", {"Content-Type": "application/json"})
    assert status == 400 and body["error"] == "bad_request"


# -- auth -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", [None, auth_header(USER, "wrong"), auth_header("admin", "admin"),
                                  "Basic !!notbase64!!", "Bearer " + PASSWORD, "Basic " + "dGlsbA=="])
def test_bad_or_missing_credentials(server: ServerThread, auth: str | None) -> None:
    client = Client(server.port, auth=auth or "")
    paths = [("GET", "/api/v1/cis/outCheck?cis=x"), ("GET", "/api/v1/config")]
    if auth is not None:        # status answers without credentials, but checks the ones a client sends
        paths.append(("GET", "/api/v1/status"))
    for method, path in paths:
        status, headers, body = client.request(method, path)
        assert status == 401
        assert headers["www-authenticate"].startswith("Basic ")
        assert body["error"] == "unauthorized"


def test_scheme_is_case_insensitive(server: ServerThread) -> None:
    client = Client(server.port, auth=auth_header().replace("Basic", "basic"))
    assert client.request("GET", "/api/v1/status")[0] == 200


def test_metrics_need_no_credentials_and_carry_the_figures(server: ServerThread, client: Client,
                                                           codes: dict[str, list[str]]) -> None:
    client.check([codes["blocked"][6]])
    Client(server.port, auth="").request("GET", "/api/v1/status")
    status, headers, text = Client(server.port, auth="").request("GET", "/metrics", auth=False)
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert re.search(r'lmcz_requests_total\{endpoint="check",outcome="ok"\} \d+', text)
    assert re.search(r'lmcz_requests_total\{endpoint="status",outcome="unauthorized"\} \d+', text)
    assert 'lmcz_request_duration_seconds_bucket{le="0.005"}' in text
    assert re.search(r"^lmcz_db_version \d+$", text, re.M)
    assert re.search(r"^lmcz_db_age_seconds [0-9.]+$", text, re.M)
    assert 'lmcz_db_state{state="ready"} 1' in text
    assert 'lmcz_lm_status{status="ready"} 1' in text
    assert re.search(r"^lmcz_codes_blocked_total [1-9]\d*$", text, re.M)
    assert "lmcz_audit_records_total" in text


# -- bad input ------------------------------------------------------------------------------------------------


def _post(client: Client, body: bytes | str, content_type: str | None = "application/json"):
    headers = {"Content-Type": content_type} if content_type else {}
    return client.request("POST", "/api/v1/cis/outCheck", body, headers)


@pytest.mark.parametrize("body, content_type, status, error", [
    (b'{"cis_list": [', "application/json", 400, "bad_json"),
    (b"not json at all", "application/json", 400, "bad_json"),
    (b'{"cis_list": "0104600000000001215abc"}', "application/json", 400, "bad_request"),
    (b'["0104600000000001215abc"]', "application/json", 400, "bad_request"),
    (b'{"cis_list": []}', "application/json", 400, "no_codes"),
    (b'{"cis_list": ["not a marking code"]}', "application/json", 400, "invalid_code"),
    (b'{"cis_list": [12345]}', "application/json", 400, "invalid_code"),
    (b'{"cis_list": ["\xff\xfe"]}', "application/json", 400, "bad_encoding"),
    (b'{"cis_list": ["x"]}', "text/plain", 415, "unsupported_media_type"),
    (b'{"cis_list": ["x"]}', "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b"", "application/json", 400, "empty_body"),
])
def test_bad_bodies(client: Client, body: bytes, content_type: str, status: int, error: str) -> None:
    got, headers, answer = _post(client, body, content_type)
    assert (got, answer["error"]) == (status, error), answer
    assert headers["content-type"].startswith("application/json")
    assert answer["code"] == status and answer["description"]
    assert client.request("GET", "/api/v1/status")[0] == 200


def test_invalid_code_is_answered_on_its_own(client: Client, codes: dict[str, list[str]]) -> None:
    status, _, body = client.check([codes["free"][7], codes["blocked"][0], "0104600000000001"])
    assert status == 200 and body["unreadable"] == 1, body
    free, blocked, bad = body["codes"]
    assert free["isBlocked"] is False and blocked["isBlocked"] is True
    assert bad["cis"] == "0104600000000001" and bad["isBlocked"] is True and bad["valid"] is False
    assert bad["errorCode"] == 400 and bad["error"] == "invalid_code" and bad["reason"] == "bad_gtin_check_digit"
    assert "cis_list[2]" in bad["message"]


def test_request_of_only_unreadable_codes_is_refused_naming_the_first(client: Client) -> None:
    status, _, body = client.check(["junk", "0104600000000001"])
    assert status == 400 and body["error"] == "invalid_code" and body["index"] == 0
    assert body["reason"] and _is_uuid(body["reqId"])


def test_too_many_codes(client: Client, codes: dict[str, list[str]]) -> None:
    status, _, body = client.check(codes["free"][:21])
    assert status == 413 and body["error"] == "too_many_codes" and body["limit"] == 20
    assert client.check(codes["free"][:20])[0] == 200


def test_declared_huge_body_is_refused_before_reading_it(server: ServerThread) -> None:
    request = (f"POST /api/v1/cis/outCheck HTTP/1.1\r\nHost: x\r\nAuthorization: {auth_header()}\r\n"
               "Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{").encode()
    responses = parse_responses(raw_exchange(server.port, request))
    assert responses[0][0] == 413 and responses[0][1]["connection"] == "close"
    assert json.loads(responses[0][2])["error"] == "body_too_large"


def test_chunked_huge_body_is_refused(server: ServerThread) -> None:
    chunk = b"x" * 16384
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(6)) + b"0\r\n\r\n"
    request = (f"POST /api/v1/cis/outCheck HTTP/1.1\r\nHost: x\r\nAuthorization: {auth_header()}\r\n"
               "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode() + body
    responses = parse_responses(raw_exchange(server.port, request))
    assert responses[0][0] == 413


def test_huge_head_is_refused(server: ServerThread) -> None:
    request = b"GET /api/v1/status?" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    responses = parse_responses(raw_exchange(server.port, request))
    assert responses[0][0] == 431


@pytest.mark.parametrize("garbage", [b"HELLO\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00",
                                     b"POST /api/v1/init HTTP/1.1\r\nContent-Length: abc\r\n\r\n"])
def test_malformed_http(server: ServerThread, garbage: bytes) -> None:
    responses = parse_responses(raw_exchange(server.port, garbage))
    if b"HTTP/9.9" in garbage:      # a well-formed request line of an HTTP version this server does not speak
        assert responses and responses[0][0] == 505
        assert json.loads(responses[0][2])["error"] == "http_version_not_supported"
    else:
        assert responses and responses[0][0] == 400
        assert json.loads(responses[0][2])["error"] == "bad_http"
    assert server.client().request("GET", "/api/v1/status")[0] == 200


def test_unknown_path_and_wrong_method(client: Client) -> None:
    status, _, body = client.request("GET", "/api/v1/nothing")
    assert status == 404 and body["error"] == "not_found"
    status, headers, body = client.request("DELETE", "/api/v1/status")
    assert status == 405 and headers["allow"] == "GET"
    status, _, _ = client.request("GET", "/api/v1/init")
    assert status == 405


def test_missing_cis_parameter(client: Client) -> None:
    status, _, body = client.request("GET", "/api/v1/cis/outCheck")
    assert status == 400 and body["error"] == "no_codes"


def test_credentials_and_tokens_never_logged(server: ServerThread, caplog: pytest.LogCaptureFixture,
                                             codes: dict[str, list[str]]) -> None:
    caplog.set_level(logging.DEBUG)
    client = server.client()
    client.request("POST", "/api/v1/init", json.dumps({"token": "SECRET-TOKEN-42"}),
                   {"Content-Type": "application/json"})
    Client(server.port, auth=auth_header(USER, "WRONG-PASSWORD-77")).request("GET", "/api/v1/status")
    client.check(["garbage"])
    text = caplog.text + repr(server.config)
    for secret in ("SECRET-TOKEN-42", "WRONG-PASSWORD-77", PASSWORD, auth_header()[6:]):
        assert secret not in text
    if server.audit is not None:
        server.audit.flush()
        for path in server.audit.directory.iterdir():
            assert b"SECRET-TOKEN-42" not in path.read_bytes()


# -- status mapping -------------------------------------------------------------------------------------------


def test_status_mapping(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    empty = make_db(tmp_path / "empty.db", [], load=False)
    with ServerThread(empty) as srv:
        client = srv.client()
        status, _, body = client.request("GET", "/api/v1/status")
        assert (status, body["status"], body["requiresDownload"]) == (200, "not_configured", True)
        status, _, body = client.check([codes["free"][0]])
        assert (status, body["errorCode"], body["status"]) == (400, 4045, "not_configured")
        client.request("POST", "/api/v1/init", '{"token": "abc"}', {"Content-Type": "application/json"})
        assert client.request("GET", "/api/v1/status")[2]["status"] == "initialization"
        status, _, body = client.check([codes["free"][0]])
        assert (status, body["errorCode"], body["status"]) == (400, 4045, "initialization")

    db = make_db(tmp_path / "aging.db", codes["blocked"][:5])
    with ServerThread(db) as srv:
        client = srv.client()
        assert client.request("GET", "/api/v1/status")[2]["status"] == "ready"
        set_synced_ago(db, 3 * 3600)
        time.sleep(0.1)
        status, _, body = client.request("GET", "/api/v1/status")
        assert (body["status"], body["dbFreshness"]) == ("ready", "stale")
        status, _, body = client.check([codes["blocked"][0]])
        assert status == 200 and body["dbFreshness"] == "stale" and body["codes"][0]["isBlocked"] is True
        assert 'lmcz_db_state{state="stale"} 1' in client.request("GET", "/metrics", auth=False)[2]
        set_synced_ago(db, 73 * 3600)
        time.sleep(0.1)
        assert client.request("GET", "/api/v1/status")[2]["status"] == "sync_error"
        status, _, body = client.check([codes["blocked"][0]])
        assert (status, body["errorCode"], body["error"]) == (400, 4050, "sync_error")
        set_synced_ago(db, 10)
        time.sleep(0.1)
        assert client.check([codes["blocked"][0]])[0] == 200


def test_new_version_is_seen_without_restart(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    from lmcz_fast.store import Blocklist

    db = make_db(tmp_path / "live.db", codes["blocked"][:3])
    with ServerThread(db) as srv:
        client = srv.client()
        target = codes["free"][9]
        first = client.check([target])[2]
        assert first["codes"][0]["isBlocked"] is False
        with Blocklist.open(db, readonly=False) as bl:
            bl.apply_delta(add=[target], to_version=int(first["dbVersion"]) + 1)
        time.sleep(0.2)
        second = client.check([target])[2]
        assert second["codes"][0]["isBlocked"] is True
        assert int(second["dbVersion"]) == int(first["dbVersion"]) + 1 and second["version"] != first["version"]


# -- the command, as a process --------------------------------------------------------------------------------


def test_serve_process_sigterm_is_graceful(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "proc.db", codes["blocked"][:5])
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    audit_dir = tmp_path / "audit"
    with ServeProcess(db, "--audit-dir", str(audit_dir), "--audit-flush", "1.0",
                      password_file=password_file) as proc:
        client = Client(proc.port)
        ids = [client.check([codes["blocked"][0]])[2]["reqId"] for _ in range(20)]
        assert proc.signal(signal.SIGTERM) == 0
    text = "".join(proc.log)
    assert "serving" in text and "audit log flushed" in text
    assert PASSWORD not in text
    from lmcz_fast.audit import iter_records

    assert [r["id"] for r in iter_records(audit_dir)] == ids


def test_a_closed_connection_is_freed_without_a_garbage_collection(db: Path) -> None:
    """A connection's parser holds its protocol's callbacks (a cycle): once closed, the connection drops it, so
    that its objects go by reference counting and not at the next full collection (with 10,000 open connections a
    full collection walks ~180k objects, and the closed ones would wait for it with their buffers)."""
    import gc
    import socket

    from lmcz_fast.service.http import _Connection

    with ServerThread(db) as srv:
        def alive() -> int:      # this server's connections still in memory (other tests' are not counted)
            return sum(1 for o in gc.get_objects() if isinstance(o, _Connection) and o.server is srv.server)

        gc.collect()
        gc.disable()
        try:
            before = alive()
            clients = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(20)]
            for sock in clients:
                sock.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            assert alive() >= before + 20      # the control: the open connections are there to be counted
            for sock in clients:
                sock.close()
            deadline = time.monotonic() + 10
            while srv.server.connections and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not srv.server.connections
            deadline = time.monotonic() + 5
            while alive() > before and time.monotonic() < deadline:
                time.sleep(0.02)
            assert alive() == before
        finally:
            gc.enable()


def test_every_idle_connection_is_closed_though_the_sweep_takes_them_in_slices(db: Path) -> None:
    """The timeout sweep checks a tenth of the connections every 0.1 s (`SWEEP_SLICES`): each of many idle
    connections is still closed about a second after its timeout, whichever slice it falls in."""
    import socket

    from lmcz_fast.service.http import SWEEP_SLICES

    count = SWEEP_SLICES * 3 + 7                # slices of 4, the last one short
    with ServerThread(db, keepalive_timeout=1.0) as srv:
        started = time.monotonic()
        idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(count)]
        try:
            for sock in idle:
                assert sock.recv(1) == b""
            assert time.monotonic() - started < 6.0       # 1 s timeout + a 1 s round of slices, on a loaded VM
        finally:
            for sock in idle:
                sock.close()
        assert srv.client().request("GET", "/api/v1/status")[0] == 200


def test_slow_requests_and_idle_connections_are_closed(db: Path) -> None:
    import select
    import socket

    with ServerThread(db, request_timeout=1.0, keepalive_timeout=1.0) as srv:
        slow = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        idle = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        slow.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        answer = b""
        for _ in range(15):
            readable, _, _ = select.select([slow], [], [], 0.3)
            if readable:
                answer = slow.recv(4096)
                break
            slow.sendall(b"X-Trickle: 1\r\n")
        assert parse_responses(answer)[0][0] == 408
        assert idle.recv(1) == b""
        assert time.monotonic() - started < 4.5
        slow.close()
        idle.close()
        assert srv.client().request("GET", "/api/v1/status")[0] == 200
