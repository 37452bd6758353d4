"""The sold register in the store: record, return, expiry, export/import, group commit, and what never touches it
(loads, deltas, a feed sync, a snapshot)."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import lmdb
import pytest
from _feed_support import fast_identities, write_list
from _store_support import make_identity, make_scan
from click.testing import CliRunner

from lmcz_fast import feed
from lmcz_fast.cli import main
from lmcz_fast import CodeError
from lmcz_fast.store import Blocklist, SoldRegisterError, StoreError, guard
from lmcz_fast.store.environment import DB_SOLD, DB_SOLD_TIME

RNG = random.Random(20261201)
CODES = [make_identity(RNG) for _ in range(40)]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    source = tmp_path / "blocked.txt"
    source.write_text("\n".join(CODES[:10]) + "\n")
    with Blocklist.create(path) as bl:
        bl.load([str(source)])
    return path


def test_record_then_check_says_sold_then_return(db: Path) -> None:
    rng = random.Random(1)
    with Blocklist.open(db) as bl:   # read-only for the blocklist: sales are the store's own, still written
        scan = make_scan(CODES[20], rng)
        assert bl.check(scan).sold is False and not bl.is_sold(scan)
        [entry] = bl.record_sold([scan])
        assert (entry.identity, entry.cis) == (CODES[20], CODES[20])
        assert abs(entry.sold_at_ms - time.time() * 1000) < 5000
        assert bl.check(scan).sold is True and bl.check(CODES[20]).sold is True  # seen by the very next call
        assert bl.is_sold(make_scan(CODES[20], rng)) and not bl.is_sold(CODES[21])
        assert bl.check(CODES[21]).sold is False
        assert bl.sold.count() == 1
        assert bl.return_sold([CODES[20], CODES[21]]) == [True, False]
        assert bl.check(scan).sold is False and bl.sold.count() == 0


def test_blocked_and_sold_are_separate_answers(db: Path) -> None:
    with Blocklist.open(db) as bl:
        bl.record_sold([CODES[0]])
        verdict = bl.check(CODES[0])
        assert verdict.blocked and verdict.sold
        assert bl.is_blocked(CODES[0]) and not bl.is_blocked(CODES[30])


def test_another_handle_sees_a_sale_within_its_refresh_interval(db: Path) -> None:
    with Blocklist.open(db, refresh_interval=0.05) as reader, Blocklist.open(db) as till:
        assert reader.check(CODES[22]).sold is False
        till.record_sold([CODES[22]])
        deadline = time.monotonic() + 5.0       # due within 0.05 s; generous for a loaded machine
        while not reader.check(CODES[22]).sold and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reader.check(CODES[22]).sold is True


def test_an_invalid_code_records_nothing(db: Path) -> None:
    with Blocklist.open(db) as bl:
        with pytest.raises(CodeError) as caught:
            bl.record_sold([CODES[23], "not a code", CODES[24]])
        assert caught.value.index == 1  # type: ignore[attr-defined]
        with pytest.raises(CodeError):
            bl.record_sold([CODES[23], 42])  # type: ignore[list-item]
        with pytest.raises(TypeError):
            bl.record_sold(CODES[23])  # type: ignore[arg-type]
        assert bl.sold.count() == 0 and not bl.is_sold(CODES[23])


def test_entries_expire(db: Path) -> None:
    with Blocklist.open(db) as bl:
        assert bl.sold.expire_after() == 30 * 86400
        now = time.time()
        bl.record_sold([CODES[25]], at=now - 29 * 86400)
        bl.record_sold([CODES[26]], at=now - 31 * 86400)    # already past the 30 days: purged by the same write
        assert bl.is_sold(CODES[25]) and not bl.is_sold(CODES[26])
        bl.sold.set_expire_after(28 * 86400)
        assert not bl.is_sold(CODES[25]) and bl.sold.count() == 0   # answered expired at once
        assert bl.sold.purge() == 1                                  # and purged on the next write or purge
        with pytest.raises(StoreError):
            bl.sold.set_expire_after(0)


def test_a_later_sale_moves_the_entry_an_older_report_does_not(db: Path) -> None:
    with Blocklist.open(db) as bl:
        now = time.time()
        bl.record_sold([CODES[27]], at=now - 3600)
        bl.record_sold([CODES[27]], at=now)
        bl.record_sold([CODES[27]], at=now - 7200)
        total, entries = bl.sold.page()
        assert total == 1 and entries[0].sold_at_ms == int(now * 1000)


def test_page_is_oldest_first_with_skip_and_limit(db: Path) -> None:
    with Blocklist.open(db) as bl:
        now = time.time()
        for i, code in enumerate(CODES[30:37]):
            bl.record_sold([code], at=now - 100 + i)
        total, entries = bl.sold.page(skip=2, limit=3)
        assert total == 7 and [e.identity for e in entries] == CODES[32:35]
        assert [e.identity for e in bl.sold] == CODES[30:37]
        with pytest.raises(ValueError):
            bl.sold.page(limit=1001)


def test_clear(db: Path) -> None:
    with Blocklist.open(db) as bl:
        bl.record_sold(CODES[30:35])
        assert bl.sold.clear() == 5
        assert bl.sold.count() == 0 and not bl.is_sold(CODES[30])


def test_loads_deltas_and_meta_writes_never_touch_the_register(db: Path, tmp_path: Path) -> None:
    source = tmp_path / "other.txt"
    source.write_text("\n".join(CODES[10:15]) + "\n")
    with Blocklist.open(db, readonly=False) as bl:
        bl.record_sold(CODES[30:33])
        before = [(e.identity, e.sold_at_ms) for e in bl.sold]
        guard.accept(bl)                                         # 10 -> 5 codes: past the shrink guard's limit
        bl.load([str(source)])                                   # a full reload replaces the blocklist
        assert not bl.is_blocked(CODES[0]) and bl.is_blocked(CODES[10])
        bl.apply_delta(add=[CODES[31]], remove=[CODES[10]], to_version=bl.info()["version"] + 1)
        bl.mark_synced()
        bl.set_meta(refresh_window=3600.0)
        assert [(e.identity, e.sold_at_ms) for e in bl.sold] == before
        assert bl.check(CODES[31]).blocked and bl.check(CODES[31]).sold


def test_feed_sync_and_snapshot_never_touch_the_register(tmp_path: Path) -> None:
    identities = fast_identities(500, seed=3)
    key, pub = feed.write_keypair(tmp_path / "feed.key")
    fd = tmp_path / "feed"
    feed.publish(fd, key, snapshot=write_list(tmp_path / "v1.txt", identities[:300]))
    store = tmp_path / "store.db"
    feed.sync(store, str(fd), pub)
    with Blocklist.open(store) as bl:
        bl.record_sold(identities[:3] + identities[400:403])
        before = [(e.identity, e.sold_at_ms) for e in bl.sold]
    feed.publish(fd, key, snapshot=write_list(tmp_path / "v2.txt", identities[100:450]))   # a delta
    assert feed.sync(store, str(fd)).action == "delta"
    far = tmp_path / "far.db"
    feed.sync(far, str(fd), pub)                                                  # a snapshot into a new store
    for _ in range(3):
        feed.publish(fd, key, snapshot=write_list(tmp_path / "v3.txt", identities[200:500]), keep_deltas=0)
    assert feed.sync(store, str(fd)).action == "snapshot"                        # a full reload by the feed
    with Blocklist.open(store) as bl:
        assert [(e.identity, e.sold_at_ms) for e in bl.sold] == before
        assert bl.check(identities[400]).blocked and bl.check(identities[400]).sold
    with Blocklist.open(far) as other:
        assert other.sold.count() == 0        # sales never travel in the feed


def test_a_database_made_before_the_register_gains_it_empty(db: Path) -> None:
    env = lmdb.open(str(db), max_dbs=16, subdir=True)
    with env.begin(write=True) as txn:
        for name in (DB_SOLD, DB_SOLD_TIME):
            txn.drop(env.open_db(name, txn=txn), delete=True)
    with env.begin() as txn:
        names = {bytes(k) for k, _ in txn.cursor()}
    env.close()
    assert DB_SOLD not in names
    with Blocklist.open(db) as bl:
        assert bl.sold.count() == 0
        bl.record_sold([CODES[38]])
        assert bl.check(CODES[38]).sold


# -- export and import ------------------------------------------------------------------------------------------


def test_export_import_round_trip_and_refusals(db: Path, tmp_path: Path) -> None:
    with Blocklist.open(db) as bl:
        now = time.time()
        bl.record_sold(CODES[30:34], at=now - 60)
        bl.record_sold(CODES[34:35], at=now)
        lines = list(bl.sold.export_lines())
        instance = bl.get_meta("instance_id")
    header = json.loads(lines[0])
    assert header["instanceId"] == instance and header["count"] == 5 and len(lines) == 6

    other = tmp_path / "other.db"
    Blocklist.create(other).close()
    with Blocklist.open(other) as bl:
        bl.record_sold([CODES[39]])
        with pytest.raises(SoldRegisterError, match="belongs to instance"):
            bl.sold.import_lines(lines)
        assert [e.identity for e in bl.sold] == [CODES[39]]          # refused: nothing changed
        assert bl.sold.import_lines(lines, force=True) == 5
        got = {e.identity: e.sold_at_ms for e in bl.sold}
        assert set(got) == set(CODES[30:35]) | {CODES[39]} and got[CODES[34]] == int(now * 1000)
        assert bl.sold.import_lines(lines, force=True, replace=True) == 5
        assert CODES[39] not in {e.identity for e in bl.sold}

    with Blocklist.open(db) as bl:                 # the same instance: no force needed; a damaged export refused
        bl.sold.clear()
        for damaged, message in ((lines[:-1], "incomplete"), (lines[:3] + ["{not json"] + lines[4:], "not JSON"),
                                 ([lines[0], json.dumps({"cis": "junk", "identity": "junk", "soldAt": 1})],
                                  "not a marking code"),
                                 ([lines[0].replace('"format": 1', '"format": 9')] + lines[1:], "format"),
                                 (["{}"] + lines[1:], "header"), ([], "empty")):
            with pytest.raises(SoldRegisterError, match=message):
                bl.sold.import_lines(damaged)
            assert bl.sold.count() == 0
        assert bl.sold.import_lines(lines) == 5


def test_cli_sold_export_import(db: Path, tmp_path: Path) -> None:
    with Blocklist.open(db) as bl:
        bl.record_sold(CODES[30:33])
    out = tmp_path / "sold.jsonl"
    runner = CliRunner()
    result = runner.invoke(main, ["sold", "export", str(db), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 sold codes exported" in result.output
    new = tmp_path / "new.db"
    Blocklist.create(new).close()
    result = runner.invoke(main, ["sold", "import", str(new), str(out)])
    assert result.exit_code == 3 and "belongs to instance" in result.output
    result = runner.invoke(main, ["sold", "import", str(new), str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert "3 sold codes imported" in result.output
    with Blocklist.open(new) as bl:
        assert sorted(e.identity for e in bl.sold) == sorted(CODES[30:33])
        assert all(bl.is_sold(code) for code in CODES[30:33])
    result = runner.invoke(main, ["sold", "list", str(new), "--limit", "2"])
    assert result.exit_code == 0 and len(result.stdout.strip().splitlines()) == 2



def test_cli_sold_record_and_return(db: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["sold", "record", str(db), CODES[20], CODES[21]])
    assert result.exit_code == 0, result.output
    assert "2 sales recorded" in result.output
    result = runner.invoke(main, ["sold", "record", str(db), CODES[22], "not a code"])
    assert result.exit_code == 3
    assert "code 2 is not a marking code" in result.output and "nothing recorded" in result.output
    result = runner.invoke(main, ["sold", "return", str(db), CODES[20], "not a code"])
    assert result.exit_code == 3
    assert "code 2 is not a marking code" in result.output and "nothing changed" in result.output
    with Blocklist.open(db) as bl:
        assert sorted(e.identity for e in bl.sold) == sorted(CODES[20:22])
    result = runner.invoke(main, ["sold", "return", str(db), CODES[20], CODES[23]])
    assert result.exit_code == 0, result.output
    assert "1 of 2 codes were in the register and are removed" in result.output
    with Blocklist.open(db) as bl:
        assert [e.identity for e in bl.sold] == [CODES[21]]
    missing = db.parent / "none.db"
    result = runner.invoke(main, ["sold", "record", str(missing), CODES[20]])
    assert result.exit_code == 4 and f"no database at {missing}" in result.output

# -- group commit ---------------------------------------------------------------------------------------------


def test_group_commit_batches_concurrent_sales(db: Path) -> None:
    codes = [make_identity(random.Random(i)) for i in range(400)]
    with Blocklist.open(db) as bl:
        register = bl.sold
        committer = register.committer()
        try:
            def till(part: list[str]) -> None:
                for code in part:
                    from lmcz_fast._codes import parse_code

                    committer.run(register.op_record([parse_code(code)], int(time.time() * 1000)), timeout=30)

            threads = [threading.Thread(target=till, args=(codes[i::40],)) for i in range(40)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            committer.close()
        assert all(bl.is_sold(code) for code in codes)
        assert committer.jobs_done == 400
        assert committer.commits < 400        # concurrent sales shared commits


def test_group_commit_isolates_a_failing_job(db: Path) -> None:
    from lmcz_fast._codes import parse_code

    with Blocklist.open(db) as bl:
        register = bl.sold
        gate = threading.Event()
        committer = register.committer()
        try:
            blocker = committer.submit(lambda txn: gate.wait(5), future=True)   # holds the writer so a batch forms
            now_ms = int(time.time() * 1000)
            good = [committer.submit(register.op_record([parse_code(c)], now_ms), future=True) for c in CODES[30:33]]

            def bad(txn: lmdb.Transaction) -> None:
                raise RuntimeError("boom")

            failing = committer.submit(bad, future=True)
            more = committer.submit(register.op_record([parse_code(CODES[33])], now_ms), future=True)
            gate.set()
            assert blocker.future is not None and blocker.future.result(10)
            for job in good + [more]:
                assert job.future is not None and job.future.result(10)
            assert failing.future is not None
            with pytest.raises(RuntimeError, match="boom"):
                failing.future.result(10)
        finally:
            committer.close()
        assert all(bl.is_sold(code) for code in CODES[30:34])
