"""Fiscal tag 1265 from every surface: request ids are valid UUIDv4, and one database version gives one `Ver=`."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from _service_support import PASSWORD, USER, ServerThread, make_db, make_identity, make_scan

from lmcz_fast import Blocklist
from lmcz_fast.checker import Checker, Decision
from lmcz_fast.receipt import instance_uuid, request_id, tag_1265, version_uuid

TAG = re.compile(r"UUID=(?P<uuid>[^&]+)&Time=(?P<time>\d{13})&Inst=(?P<inst>[^&]+)&Ver=(?P<ver>[^&]+)")


def assert_uuid4(text: str) -> None:
    value = uuid.UUID(text)
    assert str(value) == text                           # canonical: lower-case hex, hyphens where RFC 4122 puts them
    assert value.version == 4 and text[14] == "4"       # version nibble
    assert value.variant == uuid.RFC_4122 and text[19] in "89ab", text   # variant bits 10xx


def test_request_ids_are_uuid4_in_every_bit():
    ids = [request_id() for _ in range(20000)]
    for text in ids:
        assert_uuid4(text)
    assert len(set(ids)) == len(ids)
    # The variant digit spreads over 8, 9, a, b (two random bits) and the other digits over all 16 values.
    assert set(Counter(i[19] for i in ids)) == set("89ab")
    assert all(len(set(i[k] for i in ids)) == 16 for k in (0, 9, 15, 20, 35))


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    rng = random.Random(1265)
    blocked = [make_identity(rng) for _ in range(5)]
    return make_db(tmp_path_factory.mktemp("receipt") / "store.db", blocked), blocked


def test_the_checkers_own_request_ids_are_uuid4(db):
    path, blocked = db
    rng = random.Random(7)
    with Blocklist.open(path) as bl, Checker(None, bl) as checker:
        tags = [checker.check(make_scan(blocked[0], rng)).tag_1265 for _ in range(300)]
        tags += [checker.check_receipt([make_scan(b, rng) for b in blocked]).tag_1265 for _ in range(300)]
    for tag in tags:
        assert tag is not None
        match = TAG.fullmatch(tag)
        assert match, tag
        assert_uuid4(match["uuid"])


def test_request_ids_do_not_follow_the_applications_random_seed(db):
    """A till daemon that seeds `random` for its own reasons must not send the same request ids twice: both the
    receipt's ids and the checker's compiled ones come from the system's generator."""
    path, blocked = db
    rng = random.Random(8)
    scans = [make_scan(blocked[0], rng) for _ in range(4)]

    def draw(checker: Checker) -> list[str]:
        random.seed(1265)
        ids = [request_id() for _ in range(4)]
        return ids + [TAG.fullmatch(checker.check(scan).tag_1265)["uuid"] for scan in scans]

    with Blocklist.open(path) as bl, Checker(None, bl) as checker:
        first, second = draw(checker), draw(checker)
    assert not set(first) & set(second)


def test_one_database_version_one_ver_on_every_surface(db, tmp_path):
    path, blocked = db
    rng = random.Random(8)
    scans = [make_scan(b, rng) for b in blocked]
    with ServerThread(path) as server:
        client = server.client()
        try:
            status, _, body = client.check(scans[:2])
        finally:
            client.close()
        assert status == 200, body
        served = TAG.fullmatch(body["tag1265"])
        assert served and served["ver"] == body["version"] and served["inst"] == body["inst"]
        with Blocklist.open(path) as bl:
            info = bl.info()
            with Checker(None, bl) as checker:
                one = checker.check(scans[0])
                receipt = checker.check_receipt(scans[:2])
        with Checker(None, f"http://{USER}:{PASSWORD}@127.0.0.1:{server.port}") as via_lm:
            remote = via_lm.check_receipt(scans[:2])
    assert one.decision is receipt.decision is remote.decision is Decision.REFUSE
    for verdict in (one, receipt, remote):
        match = TAG.fullmatch(verdict.tag_1265 or "")
        assert match, verdict.tag_1265
        assert (match["inst"], match["ver"]) == (body["inst"], body["version"])
    assert body["version"] == version_uuid(info["instance_id"], info["version"])
    assert body["inst"] == instance_uuid(info["instance_id"])


def test_a_new_version_gets_a_new_ver_and_the_same_one_everywhere(db, tmp_path):
    path, blocked = db
    copy = make_db(tmp_path / "store.db", blocked)
    rng = random.Random(9)
    with Blocklist.open(copy, readonly=False) as bl:
        before = bl.info()["version"]
        bl.apply_delta(add=[make_identity(rng)], to_version=before + 1)
        info = bl.info()
    with ServerThread(copy) as server:
        client = server.client()
        try:
            _, _, body = client.check([make_scan(blocked[1], rng)])
        finally:
            client.close()
    with Blocklist.open(copy) as bl, Checker(None, bl) as checker:
        tag = checker.check(make_scan(blocked[1], rng)).tag_1265
    assert int(body["dbVersion"]) == info["version"] == before + 1
    assert TAG.fullmatch(tag or "")["ver"] == body["version"] == version_uuid(info["instance_id"], before + 1)
    assert body["version"] != version_uuid(info["instance_id"], before)


def test_version_uuid_is_the_same_in_another_process():
    code = ("from lmcz_fast.receipt import version_uuid, instance_uuid; "
            "print(version_uuid('shop-7', 41), version_uuid('8f79c876-d7e7-4a3f-be37-3dbb67e5a0b7', 41), "
            "instance_uuid('shop-7'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [version_uuid("shop-7", 41), version_uuid("8f79c876-d7e7-4a3f-be37-3dbb67e5a0b7", 41),
                   instance_uuid("shop-7")]
    # A UUID instance id is its own `inst`; any other text is mapped to a UUID; versions differ per instance.
    assert instance_uuid("8F79C876-D7E7-4A3F-BE37-3DBB67E5A0B7") == "8f79c876-d7e7-4a3f-be37-3dbb67e5a0b7"
    assert uuid.UUID(instance_uuid("shop-7")).version == 5
    assert version_uuid("shop-7", 41) != version_uuid("shop-8", 41) != version_uuid("shop-7", 42)
    assert tag_1265("r", 1, "i", "v") == "UUID=r&Time=1&Inst=i&Ver=v"
