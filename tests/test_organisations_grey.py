"""The grey-list switch of several organisations (issue 23, `serve --organisations FILE`).

Each organisation stands for its own official module, whose `enableGreyList` switch (`init`, `POST /api/v2/greyList`)
is its own: one organisation's till switching it changes nothing for another's answers (`isGreyGtin` in checks,
status, config, the page). Each organisation's switch is durable (in the store before the answer) and survives a
restart, a SIGHUP that drops and re-adds the organisation, and is seen by a second process serving the store. A
request of no organisation keeps the store's one switch.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from _lm_contract import ACK, RESULTS, STATUS_FIELD, decode
from _organisations_support import inn_of, org_client, post, write_organisations
from _service_support import Client, ServerThread, make_db, make_identity

from lmcz_fast.service.organisations import read_organisations
from lmcz_fast.store import Blocklist


def _grey_store(tmp_path: Path) -> tuple[Path, str, str]:
    """A ready store with one blocked code, and a free code whose GTIN is on the grey list."""
    rng = random.Random(2026_12_07_24)
    blocked, free = make_identity(rng), make_identity(rng)
    db = make_db(tmp_path / "store.db", [blocked])
    grey = tmp_path / "grey.txt"
    grey.write_text(free[2:16] + "\n" + blocked[2:16] + "\n")
    with Blocklist.open(db, readonly=False) as bl:
        bl.load_grey(grey)
    return db, blocked, free


def _seen(client: Client, codes: list[str]) -> tuple[bool, bool, bool, bool]:
    """What one till sees of its grey switch: status, config, a protocol-1 check, a protocol-2 check."""
    status = decode(client.request("GET", "/api/v1/status")[2], STATUS_FIELD)["isGreyGtin"]
    config = client.request("GET", "/api/v2/config")[2]["lmczFast"]["isGreyGtin"]
    one = client.check(codes)[2]["codes"]
    two = decode(post(client, "/api/v2/cis/check", {"cis_list": codes})[1], RESULTS)["results"]
    v1 = {code["isGreyGtin"] for code in one}
    v2 = {code["isGreyGtin"] for result in two for code in result["codes"]}
    assert len(v1) == 1 and len(v2) == 1, (one, two)     # every code here is on the grey list
    return status, config, v1.pop(), v2.pop()


ON, OFF = (True,) * 4, (False,) * 4


def test_each_organisation_has_its_own_grey_switch(tmp_path: Path) -> None:
    db, blocked, free = _grey_store(tmp_path)
    codes = [free, blocked]
    etc = tmp_path / "etc"
    orgs = read_organisations(write_organisations(etc, 2))
    with ServerThread(db, organisations=orgs) as srv:
        a, b = org_client(srv.port, 0), org_client(srv.port, 1)
        assert _seen(a, codes) == OFF and _seen(b, codes) == OFF
        status, body = post(a, "/api/v2/greyList", {"enableGreyList": True})
        assert status == 200 and decode(body, ACK)["enableGreyList"] is True
        assert _seen(b, codes) == OFF                   # B's answers do not change
        assert _seen(a, codes) == ON
        # durable: in the store when answered, as the organisation's own field; the store's switch is untouched
        with Blocklist.open(db) as bl:
            assert bl.get_meta(f"organisation_grey_list:{inn_of(0)}") is True
            assert bl.get_meta(f"organisation_grey_list:{inn_of(1)}") is None
            assert bl.get_meta("grey_list_enabled") is None
        # B switches its own on and off through init (both protocols); A's stays on
        assert post(b, "/api/v1/init", {"token": "t", "enableGreyList": True})[1]["enableGreyList"] is True
        assert _seen(b, codes) == ON and _seen(a, codes) == ON
        assert post(b, "/api/v2/init", {"token": "t", "enableGreyList": False})[1]["enableGreyList"] is False
        assert _seen(b, codes) == OFF and _seen(a, codes) == ON
        # the status page shows each organisation's switch (a till's login: its own row)
        for number, on in ((0, True), (1, False)):
            page = org_client(srv.port, number).request("GET", "/?lang=en")[2]
            row = page.split(f'data-inn="{inn_of(number)}"', 1)[1].split("</tr>", 1)[0]
            assert f'data-grey-list="{"on" if on else "off"}"' in row, row
        metrics = a.request("GET", "/metrics")[2]
        for number, on in ((0, 1), (1, 0)):
            assert f'lmcz_organisation_grey_list{{inn="{inn_of(number)}",name="Организация {number}"}} {on}' in metrics
        # a second process serving the store (here: a second module on it) reads the same switches
        with ServerThread(db, organisations=orgs) as other:
            assert _seen(org_client(other.port, 0), codes) == ON
            assert _seen(org_client(other.port, 1), codes) == OFF
            assert post(org_client(other.port, 1), "/api/v2/greyList", {"enableGreyList": True})[0] == 200
        deadline = time.monotonic() + 10.0      # seen by the first once its reader moves on (refresh_interval)
        while _seen(b, codes) != ON:
            assert time.monotonic() < deadline, "the other process's switch was never seen"
            time.sleep(0.02)
        assert post(b, "/api/v2/greyList", {"enableGreyList": False})[0] == 200
        # SIGHUP: B removed and added again keeps its switch, A (staying) keeps its own
        assert post(a, "/api/v2/greyList", {"enableGreyList": False})[0] == 200
        assert post(b, "/api/v2/greyList", {"enableGreyList": True})[0] == 200
        srv.app.set_organisations(orgs[:1])
        srv.app.set_organisations(orgs)
        assert _seen(a, codes) == OFF and _seen(org_client(srv.port, 1), codes) == ON
    # a restart: each organisation's switch as it was answered
    with ServerThread(db, organisations=orgs) as srv:
        assert _seen(org_client(srv.port, 0), codes) == OFF
        assert _seen(org_client(srv.port, 1), codes) == ON
    # without the file: the store's one switch, never turned on by an organisation
    with ServerThread(db) as srv:
        assert _seen(srv.client(), codes) == OFF


def test_a_request_of_no_organisation_keeps_the_stores_switch(tmp_path: Path) -> None:
    db, blocked, free = _grey_store(tmp_path)
    orgs = read_organisations(write_organisations(tmp_path / "etc", 1))
    with ServerThread(db) as srv:                       # served alone first: the store's switch on
        assert post(srv.client(), "/api/v2/greyList", {"enableGreyList": True})[0] == 200
        assert _seen(srv.client(), [free]) == ON
    with ServerThread(db, organisations=orgs) as srv:
        a = org_client(srv.port, 0)
        assert _seen(a, [free]) == OFF                   # an organisation starts with its own switch, off
        anyone = Client(srv.port, auth="").request("GET", "/api/v1/status")[2]
        assert anyone["isGreyGtin"] is True and anyone["inn"] == ""     # the module's own status: the store's
        assert post(a, "/api/v2/greyList", {"enableGreyList": True})[0] == 200
        assert post(a, "/api/v2/greyList", {"enableGreyList": False})[0] == 200
        assert Client(srv.port, auth="").request("GET", "/api/v1/status")[2]["isGreyGtin"] is True
    with ServerThread(db) as srv:
        assert _seen(srv.client(), [free]) == ON
