"""Several organisations, one module (issue 23): `serve --organisations FILE`.

Each organisation's tills authenticate with its own credentials, and every answer is that organisation's: its `inn`
and `inst` (status), its `inst` in tag 1265 (checks), its own init state, its own sales (return, clearSold, sold).
The national lists and the fact that a code was sold are shared. Without the file nothing changes (the rest of the
suite runs without one).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest
from _lm_contract import ACK, CONFIG, ENVELOPE, ERROR, EVOTOR_ENVELOPE, PASCAL_ENVELOPE, RESULTS, SALE_RESULTS, SOLD_PAGE
from _lm_contract import STATUS_FIELD, decode
from _organisations_support import JSON, inn_of, org_client, post, write_organisations
from _service_support import Client, ServeProcess, ServerThread, auth_header, make_db, make_identity

from lmcz_fast.audit import export
from lmcz_fast.service.organisations import OrganisationsError, parse_organisations, read_organisations
from lmcz_fast.store import Blocklist, SoldOwner
from lmcz_fast.store.environment import DB_SOLD


@pytest.fixture(scope="module")
def codes() -> dict[str, list[str]]:
    rng = random.Random(2026_12_07_23)
    return {"blocked": [make_identity(rng) for _ in range(10)], "free": [make_identity(rng) for _ in range(4000)]}


# -- the file ------------------------------------------------------------------------------------------------------


def test_the_file_is_checked_and_said_in_words(tmp_path: Path) -> None:
    path = write_organisations(tmp_path, 2)
    orgs = read_organisations(path)
    assert [o.inn for o in orgs] == [inn_of(0), inn_of(1)] and orgs[0].password == "pw-0"
    assert "pw-0" not in repr(orgs)
    base = str(tmp_path)
    good = f'[[organisation]]\ninn = "{inn_of(0)}"\nname = "A"\nuser = "a"\npassword_file = "password-0"\n'
    cases = {
        "": "names no organisation",
        "[[organisation]\n": "not valid TOML",
        good.replace(f'"{inn_of(0)}"', "7700000000"): "10 or 12 digits",
        good.replace(f'"{inn_of(0)}"', '"123"'): "10 or 12 digits",
        good + good: "given twice",
        good + good.replace(f'"{inn_of(0)}"', f'"{inn_of(1)}"'): "used twice",
        good.replace("password-0", "missing"): "cannot read its password_file",
        good + 'pasword_file = "x"\n': "unknown key(s) pasword_file",
        good + "earlier_sales = true\n" + good.replace(f'"{inn_of(0)}"', f'"{inn_of(1)}"').replace('"a"', '"b"')
        + "earlier_sales = true\n": "more than one organisation",
        good + 'page_user = "m"\n': "together",
    }
    for text, words in cases.items():
        with pytest.raises(OrganisationsError, match=words.replace("(", r"\(").replace(")", r"\)")):
            parse_organisations(text, "the file", base)


# -- two and then twenty organisations, ten tills each, at once -----------------------------------------------------


def _till(port: int, number: int, codes: list[str], blocked: str, seen: list[tuple[int, str, str, str]],
          failures: list[str]) -> None:
    client = org_client(port, number)
    try:
        status, _, body = client.request("GET", "/api/v1/status")
        decode(body, STATUS_FIELD)
        seen.append((number, "status", body["inn"], body["inst"]))
        for code in codes:
            status, _, body = client.check([code, blocked])
            assert status == 200, body
            decode(body, ENVELOPE)
            assert [c["isBlocked"] for c in body["codes"]] == [False, True]
            assert f"&Inst={body['inst']}&" in body["tag1265"]
            seen.append((number, "check", "", body["inst"]))
            status, body = post(client, "/api/v2/cis/sell", {"cis_list": [code]})
            assert status == 201 and body["results"][0]["success"] is True, body
            status, body = post(client, "/api/v2/cis/outCheck", {"cis_list": [code]})
            assert status == 200 and body["results"][0]["codes"][0]["sold"] is True, body
            seen.append((number, "check2", "", body["results"][0]["inst"]))
    except Exception as exc:      # noqa: BLE001 - collected and asserted by the test
        failures.append(f"till of {number}: {exc!r}")
    finally:
        client.close()


@pytest.mark.parametrize("count", [2, 20])
def test_organisations_with_ten_tills_each_at_once(tmp_path: Path, codes: dict[str, list[str]], count: int) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"])
    orgs = read_organisations(write_organisations(tmp_path / "etc", count))
    free = iter(codes["free"])
    per_till = 3 if count == 20 else 10
    seen: list[tuple[int, str, str, str]] = []
    failures: list[str] = []
    with ServerThread(db, organisations=orgs) as srv:
        tills = [threading.Thread(target=_till, args=(srv.port, number, [next(free) for _ in range(per_till)],
                                                      codes["blocked"][number % 10], seen, failures))
                 for number in range(count) for _ in range(10)]
        for till in tills:
            till.start()
        for till in tills:
            till.join(120)
        assert not failures, failures[:5]
        insts = {number: {inst for n, _, _, inst in seen if n == number} for number in range(count)}
        assert all(len(found) == 1 for found in insts.values()), insts        # one inst per organisation
        assert len({next(iter(found)) for found in insts.values()}) == count   # and each its own
        assert {(n, inn) for n, kind, inn, _ in seen if kind == "status"} == {(n, inn_of(n)) for n in range(count)}
        # Every organisation's sales are its own.
        for number in range(count):
            status, _, body = org_client(srv.port, number).request("GET", "/api/v2/cis/sold")
            assert status == 200 and body["total_count"] == 10 * per_till
    # The inst of each organisation is kept in the store: the same after a restart.
    with ServerThread(db, organisations=orgs) as srv:
        for number in range(count):
            assert org_client(srv.port, number).request("GET", "/api/v1/status")[2]["inst"] == \
                next(iter(insts[number]))


# -- one organisation can never act as another ---------------------------------------------------------------------


def test_an_organisation_cannot_act_as_another(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"])
    orgs = read_organisations(write_organisations(tmp_path / "etc", 2))
    a_code, a_other, b_code = codes["free"][:3]
    with ServerThread(db, organisations=orgs) as srv:
        a, b = org_client(srv.port, 0), org_client(srv.port, 1)
        # only the organisations' credentials: no default admin, no mixing one's user with another's password
        for auth in (auth_header("admin", "admin"), auth_header("u0", "pw-1"), auth_header("u1", "pw-0")):
            intruder = Client(srv.port, auth=auth)
            for method, path, payload in (("POST", "/api/v1/init", {"token": "t"}),
                                          ("POST", "/api/v2/cis/sell", {"cis_list": [b_code]}),
                                          ("POST", "/api/v2/cis/return", {"cis_list": [a_code]}),
                                          ("GET", "/api/v2/cis/sold", None),
                                          ("GET", "/api/v1/status", None)):
                status, _, body = intruder.request(method, path, None if payload is None else json.dumps(payload),
                                                   JSON)
                assert status == 401, (auth, path, body)
                decode(body, ERROR)
        # init is each organisation's own
        status, body = post(a, "/api/v1/init", {"token": "participant-a"})
        assert status == 200
        decode(body, ACK)
        assert a.request("GET", "/api/v1/status")[2]["initialized"] is True
        assert b.request("GET", "/api/v1/status")[2]["initialized"] is False
        # a code sold by A is sold for B's tills; B can neither return it nor sell it again
        assert post(a, "/api/v2/cis/sell", {"cis_list": [a_code, a_other]})[0] == 201
        assert post(b, "/api/v2/cis/sell", {"cis_list": [b_code]})[0] == 201
        assert b.check([a_code])[2]["codes"][0]["sold"] is True
        for path in ("/api/v2/cis/return", "/api/v2/cis/sell"):
            status, body = post(b, path, {"cis_list": [b_code, a_code]})
            assert status == 403 and body["error"] == "sold_by_another_organisation" and body["index"] == 1, body
            decode(body, ERROR)
        assert b.check([b_code])[2]["codes"][0]["sold"] is True          # nothing of B's refused request changed
        # each lists its own
        assert sorted(a.request("GET", "/api/v2/cis/sold")[2]["cis_list"]) == sorted([a_code, a_other])
        assert b.request("GET", "/api/v2/cis/sold")[2]["cis_list"] == [b_code]
        # clearSold of A leaves B's sales
        status, body = post(a, "/api/v1/init", {"token": "participant-a", "clearSold": True})
        assert status == 200 and body["soldCleared"] == 2
        assert a.check([a_code])[2]["codes"][0]["sold"] is False
        assert b.check([b_code])[2]["codes"][0]["sold"] is True
        assert b.request("GET", "/api/v2/cis/sold")[2]["total_count"] == 1
        # A returns its own; B can now sell the code A returned
        assert post(a, "/api/v2/cis/sell", {"cis_list": [a_code]})[0] == 201
        status, body = post(a, "/api/v2/cis/return", {"cis_list": [a_code]})
        assert status == 200 and body["results"][0] == {"success": True, "cis": a_code, "wasSold": True}
        assert post(b, "/api/v2/cis/sell", {"cis_list": [a_code]})[0] == 201
    with Blocklist.open(db) as bl:
        assert {e.cis: e.organisation for e in bl.sold} == {b_code: inn_of(1), a_code: inn_of(1)}


def test_every_answer_decodes_for_an_organisation(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"])
    orgs = read_organisations(write_organisations(tmp_path / "etc", 2))
    free, blocked = codes["free"][10], codes["blocked"][0]
    with ServerThread(db, organisations=orgs) as srv:
        client = org_client(srv.port, 1)
        for prefix in ("/api/v1", "/api/v2"):
            status, _, body = client.request("GET", prefix + "/status")
            assert status == 200 and body["inn"] == inn_of(1) and body["name"] == "Организация 1"
            decode(body, STATUS_FIELD)
            status, _, body = client.request("GET", prefix + "/config")
            assert status == 200 and body["authorization"] == [{"type": "basic", "user": "u1"}], body
            decode(body, CONFIG)
            status, body = post(client, prefix + "/cis/outCheck", {"cis_list": [free, blocked, "junk"]})
            assert status == 200, body
            envelopes = decode(body, RESULTS)["results"] if prefix == "/api/v2" else [body]
            for one in envelopes:
                decode(one, ENVELOPE)
                decode(one, EVOTOR_ENVELOPE)
                decode(one, PASCAL_ENVELOPE)
            decode(post(client, prefix + "/init", {"token": "t", "clearSold": True})[1], ACK)
            status, body = post(client, prefix + "/cis/sell", {"cis_list": [free]})
            assert status == 201
            decode(body, SALE_RESULTS)
            decode(client.request("GET", prefix + "/cis/sold?limit=3")[2], SOLD_PAGE)
            decode(post(client, prefix + "/cis/return", {"cis_list": [free]})[1], SALE_RESULTS)
        # anyone's status (no credentials) is the module's, not an organisation's
        status, _, body = Client(srv.port, auth="").request("GET", "/api/v1/status")
        assert status == 200 and body["inn"] == "" and "warnings" not in body
        decode(body, STATUS_FIELD)


# -- the sold register's records: old ones open, and read as no organisation ---------------------------------------


def test_an_existing_store_opens_and_its_sales_belong_to_no_organisation(tmp_path: Path,
                                                                         codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"])
    old, kept = codes["free"][20:22]
    with Blocklist.open(db) as bl:
        bl.record_sold([old, kept])        # as a store served without organisations recorded them
        with bl._handle.env.begin(db=bl._handle.dbs[DB_SOLD]) as txn:   # the format before organisations
            raw = bytes(txn.get(next(iter(bl.sold)).identity.encode()))
        assert b"\0" not in raw[8:]
        assert {entry.organisation for entry in bl.sold} == {None}
    orgs = read_organisations(write_organisations(tmp_path / "etc", 2, extra="earlier_sales = true\n"))
    with ServerThread(db, organisations=orgs) as srv:
        a, b = org_client(srv.port, 0), org_client(srv.port, 1)
        assert b.check([old])[2]["codes"][0]["sold"] is True        # sold for every till
        assert post(b, "/api/v2/cis/return", {"cis_list": [old]})[0] == 403
        assert b.request("GET", "/api/v2/cis/sold")[2]["total_count"] == 0
        assert a.request("GET", "/api/v2/cis/sold")[2]["total_count"] == 2       # earlier_sales = true
        assert post(a, "/api/v2/cis/return", {"cis_list": [old]})[1]["results"][0]["wasSold"] is True
    # the store still opens and answers without the file, as before
    with Blocklist.open(db) as bl:
        assert bl.sold.is_sold(kept) and not bl.sold.is_sold(old)
        assert bl.sold.op_clear(SoldOwner(inn_of(1)))  # an owner's clear is an op like any other
    with ServerThread(db) as srv:
        assert srv.client().check([kept])[2]["codes"][0]["sold"] is True


def test_export_and_import_keep_the_organisation(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"])
    one, two = codes["free"][30:32]
    with Blocklist.open(db) as bl:
        bl.commit(bl.sold.op_record([__import__("lmcz_fast").parse_code(one)], int(time.time() * 1000),
                                    owner=SoldOwner(inn_of(3))))
        bl.record_sold([two])
        lines = list(bl.sold.export_lines())
        # Entries by their code: two sales of one millisecond are exported in their identities' order.
        entries = {item["cis"]: item for item in map(json.loads, lines[1:])}
        assert len(entries) == 2 and entries[one].get("organisation") == inn_of(3) and "organisation" not in entries[two]
        assert bl.sold.import_lines(lines, replace=True) == 2
        assert {e.cis: e.organisation for e in bl.sold} == {one: inn_of(3), two: None}


# -- audit, page, metrics ------------------------------------------------------------------------------------------


def test_audit_records_the_organisation_and_exports_by_inn(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"])
    etc = tmp_path / "etc"
    etc.mkdir()
    token = "5f0c6a52-8f9e-4a39-9d39-1b2c3d4e5f60"
    (etc / "tokens").write_text(f"{token} 2099-12-31 till 7\n")
    orgs = read_organisations(write_organisations(etc, 2, first=0, extra='token_file = "tokens"\n'))
    audit_dir = tmp_path / "audit"
    with ServerThread(db, organisations=orgs, audit_dir=audit_dir) as srv:
        by_token = Client(srv.port, auth=f"Token {token}")
        assert by_token.request("GET", "/api/v1/status")[2]["inn"] == inn_of(0)
        for number, n in ((0, 3), (1, 2)):
            client = by_token if number == 0 else org_client(srv.port, number)
            for code in codes["free"][40:40 + n]:
                assert client.check([code])[0] == 200
            assert post(client, "/api/v2/cis/outCheck", {"cis_list": [codes["free"][50]]})[0] == 200
    import io
    for inn, expected in ((inn_of(0), 4), (inn_of(1), 3), ("7799999999", 0)):
        out = io.StringIO()
        stats = export(audit_dir, out, inn=inn)
        records = [json.loads(line) for line in out.getvalue().splitlines()]
        assert len(records) == expected == stats.records and all(r["inn"] == inn for r in records)
        assert all(r.get("auth") == ("token:till 7" if inn == inn_of(0) else None) for r in records)
    out = io.StringIO()
    assert export(audit_dir, out).records == 7


def test_page_and_metrics_per_organisation(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"])
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "page").write_text("manager-pw\n")
    orgs = read_organisations(write_organisations(etc, 2, extra='page_user = "manager0"\npage_password_file = "page"\n'))
    with ServerThread(db, organisations=orgs) as srv:
        a = org_client(srv.port, 0)
        for _ in range(2):
            a.check([codes["blocked"][1], codes["free"][60]], headers={"X-ClientId": "till-a1"})
        org_client(srv.port, 1).check([codes["free"][61]], headers={"X-ClientId": "till-b1"})
        assert Client(srv.port, auth=auth_header("u1", "wrong")).request("GET", "/api/v1/cis/sold")[0] == 401
        metrics = a.request("GET", "/metrics")[2]
        for line in (f'lmcz_organisation_checks_total{{inn="{inn_of(0)}",name="Организация 0"}} 2',
                     f'lmcz_organisation_refusals_total{{inn="{inn_of(0)}",name="Организация 0"}} 2',
                     f'lmcz_organisation_tills{{inn="{inn_of(1)}",name="Организация 1"}} 1',
                     f'lmcz_organisation_auth_failures_total{{inn="{inn_of(1)}",name="Организация 1"}} 1'):
            assert line in metrics, line
        # the manager's read-only login: the page of A only, and nothing else
        manager = Client(srv.port, auth=auth_header("manager0", "manager-pw"))
        status, _, page = manager.request("GET", "/?lang=en")
        assert status == 200 and f'data-inn="{inn_of(0)}"' in page and inn_of(1) not in page and "till-a1" in page
        assert "till-b1" not in page
        assert manager.request("GET", "/api/v2/cis/sold")[0] == 401
        # the tills' login of B: B's row
        status, _, page = org_client(srv.port, 1).request("GET", "/")
        assert status == 200 and f'data-inn="{inn_of(1)}"' in page and inn_of(0) not in page


# -- kill -9 during a mixed stream of sales -------------------------------------------------------------------------


def _seller(port: int, number: int, codes: list[str], acknowledged: list[tuple[str, int]]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"Authorization": auth_header(f"u{number}", f"pw-{number}"), **JSON}
    try:
        for code in codes:
            conn.request("POST", "/api/v2/cis/sell", json.dumps({"cis_list": [code]}), headers)
            response = conn.getresponse()
            body = response.read()
            if response.status == 201 and json.loads(body)["results"][0]["cis"] == code:
                acknowledged.append((code, number))
    except (OSError, http.client.HTTPException, ValueError):
        return
    finally:
        conn.close()


def test_kill_9_during_sales_of_several_organisations_loses_none(tmp_path: Path) -> None:
    rng = random.Random(23)
    db = make_db(tmp_path / "sales.db", [make_identity(rng) for _ in range(5)])
    path = write_organisations(tmp_path / "etc", 3)
    total = 0
    for _ in range(5):
        codes = [make_identity(rng) for _ in range(6 * 1500)]
        acknowledged: list[tuple[str, int]] = []
        with ServeProcess(db, "--no-audit", "--organisations", str(path)) as proc:
            sellers = [threading.Thread(target=_seller, args=(proc.port, i % 3, codes[i::6], acknowledged))
                       for i in range(6)]
            for seller in sellers:
                seller.start()
            time.sleep(rng.uniform(0.3, 1.2))
            os.kill(proc.proc.pid, signal.SIGKILL)        # type: ignore[union-attr]
            proc.proc.wait(10)                            # type: ignore[union-attr]
            for seller in sellers:
                seller.join(10)
        with Blocklist.open(db) as bl:
            for code, number in acknowledged:
                entry = bl.sold.entry(code)
                assert entry is not None and entry.organisation == inn_of(number), code
        total += len(acknowledged)
    assert total > 30, "too few sales were answered to judge"


# -- SIGHUP: organisations added and removed under load, no connection dropped --------------------------------------


def _checker(port: int, number: int, code: str, stop: threading.Event, errors: list[str], done: list[int]) -> None:
    client = org_client(port, number)
    sock = None
    try:
        while not stop.is_set():
            status, _, body = client.check([code])
            if status != 200 or body["inst"] == "":
                errors.append(f"{status} {body}")
                return
            if sock is None:
                sock = client.conn.sock
            elif client.conn.sock is not sock:
                errors.append("the connection was dropped")
                return
            done[0] += 1
    except Exception as exc:     # noqa: BLE001 - collected and asserted by the test
        errors.append(repr(exc))
    finally:
        client.close()


def test_sighup_adds_and_removes_organisations_under_load(tmp_path: Path, codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"])
    etc = tmp_path / "etc"
    path = write_organisations(etc, 2)
    stop = threading.Event()
    errors: list[str] = []
    done = [0]
    with ServeProcess(db, "--no-audit", "--organisations", str(path)) as served:
        checkers = [threading.Thread(target=_checker, args=(served.port, i % 2, codes["free"][i], stop, errors, done))
                    for i in range(4)]
        for checker in checkers:
            checker.start()
        try:
            assert org_client(served.port, 2).check([codes["free"][9]])[0] == 401
            write_organisations(etc, 3)                                   # C added
            served.proc.send_signal(signal.SIGHUP)                        # type: ignore[union-attr]
            served.wait_for_log("added: " + inn_of(2))
            c_till = org_client(served.port, 2)
            status, _, body = c_till.request("GET", "/api/v1/status")
            assert status == 200 and body["inn"] == inn_of(2)
            connection = c_till.conn.sock
            (etc / "password-2").write_text("pw-2-changed\n")           # C's password changed
            served.proc.send_signal(signal.SIGHUP)                        # type: ignore[union-attr]
            served.wait_for_log("credentials changed: " + inn_of(2))
            assert c_till.request("GET", "/api/v1/status")[0] == 401     # a request without a body: kept open
            c_till.auth = auth_header("u2", "pw-2-changed")
            assert c_till.check([codes["free"][9]])[0] == 200 and c_till.conn.sock is connection
            write_organisations(etc, 2)                                   # C removed
            served.proc.send_signal(signal.SIGHUP)                        # type: ignore[union-attr]
            served.wait_for_log("removed: " + inn_of(2))
            assert org_client(served.port, 2).check([codes["free"][9]])[0] == 401
            path.write_text("[[organisation]\n")                          # broken: the old ones stay
            served.proc.send_signal(signal.SIGHUP)                        # type: ignore[union-attr]
            line = served.wait_for_log("was NOT taken")
            assert "not valid TOML" in line
            assert org_client(served.port, 1).check([codes["free"][9]])[0] == 200
            before = done[0]
            deadline = time.monotonic() + 10
            while done[0] < before + 20 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            for checker in checkers:
                checker.join(20)
        assert not errors, errors[:3]
        assert done[0] > 20
        assert not any("pw-" in line for line in served.log), "a password was logged"
        assert served.signal(signal.SIGTERM) == 0


def test_serve_refuses_options_that_contradict_the_file(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lmcz_fast.cli.serve import serve

    path = write_organisations(tmp_path / "etc", 1)
    password = tmp_path / "password"
    password.write_text("x\n")
    result = CliRunner().invoke(serve, [str(tmp_path / "db"), "--organisations", str(path), "--password-file",
                                        str(password)])
    assert result.exit_code == 2 and "do not go together" in result.output
    (tmp_path / "etc" / "password-0").unlink()
    result = CliRunner().invoke(serve, [str(tmp_path / "db"), "--organisations", str(path)])
    assert result.exit_code == 2 and "cannot read its password_file" in result.output


def test_basic_header_encoded_otherwise_still_names_its_organisation(tmp_path: Path,
                                                                     codes: dict[str, list[str]]) -> None:
    db = make_db(tmp_path / "store.db", codes["blocked"])
    orgs = read_organisations(write_organisations(tmp_path / "etc", 2))
    with ServerThread(db, organisations=orgs) as srv:
        header = "basic   " + base64.b64encode(b"u1:pw-1").decode() + " "
        status, _, body = Client(srv.port, auth=header).request("GET", "/api/v1/status")
        assert status == 200 and body["inn"] == inn_of(1)


def test_the_documented_file_is_read_as_printed(tmp_path: Path) -> None:
    """The example of docs/service.md, "Several organisations", with its secret files made beside it."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "service.md").read_text(encoding="utf-8")
    example = text.split("## Several organisations", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    for name in ("romashka.password", "romashka.tokens", "romashka.page", "lutikova.password"):
        (tmp_path / name).write_text("5f0c6a52-8f9e-4a39-9d39-1b2c3d4e5f60\n" if name.endswith("tokens")
                                     else f"secret of {name}\n")
    (tmp_path / "organisations.toml").write_text(example, encoding="utf-8")
    orgs = read_organisations(tmp_path / "organisations.toml")
    assert [(o.inn, o.user, o.earlier_sales, len(o.tokens)) for o in orgs] == [
        ("7701234567", "romashka", True, 1), ("770987654321", "lutikova", False, 0)]


def test_systemd_units_carry_the_organisations_file() -> None:
    import shlex

    from click.testing import CliRunner

    from lmcz_fast.cli import main
    from lmcz_fast.units import UnitOptions, render

    binary = "/opt/lmcz-fast/bin/lmcz-fast"
    text = render(UnitOptions(binary=binary, organisations_file="/etc/lmcz-fast/organisations.toml"))[
        "lmcz-fast-serve.service"]
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    words = shlex.split(exec_start.split("=", 1)[1])
    assert words[words.index("--organisations") + 1] == "/etc/lmcz-fast/organisations.toml"
    assert "organisations files again" in text                     # systemctl reload re-reads it
    assert CliRunner().invoke(main, [*words[1:], "--help"]).exit_code == 0
    with pytest.raises(ValueError, match="do not go together"):
        render(UnitOptions(binary=binary, organisations_file="/etc/o.toml", password_file="/etc/p"))
    with pytest.raises(ValueError, match="absolute path"):
        render(UnitOptions(binary=binary, organisations_file="o.toml"))
