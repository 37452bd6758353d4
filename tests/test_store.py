"""The LMDB store: loads, checks, deltas, versions, collision-safe removal, cross-process visibility."""

from __future__ import annotations

import gzip
import os
import random
import subprocess
import sys
import textwrap
import time

import pytest

from lmcz_fast import (
    Blocklist,
    CodeError,
    LoadError,
    NoListError,
    StoreError,
    VersionError,
    set_digest_of,
)

from lmcz_fast.store import guard

from _store_support import GS, colliding_pairs, gtin_with_check, make_identity, make_scan, prefilter_key


@pytest.fixture()
def rng() -> random.Random:
    return random.Random(1234)


@pytest.fixture()
def db(tmp_path):
    with Blocklist.create(tmp_path / "db") as bl:
        yield bl


def write(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def test_open_missing_database_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="no database"):
        Blocklist.open(tmp_path / "nothing")


def test_create_refuses_to_overwrite(tmp_path):
    Blocklist.create(tmp_path / "db").close()
    with pytest.raises(StoreError, match="already exists"):
        Blocklist.create(tmp_path / "db")


def test_direct_construction_is_refused():
    with pytest.raises(TypeError):
        Blocklist()


def test_a_store_that_never_held_a_list_answers_nothing(db, tmp_path, rng):
    """Version 0 (created, never loaded): no surface may say "may be sold" (issue 11)."""
    identity = make_identity(rng)
    for call in (lambda: db.is_blocked(identity), lambda: db.is_blocked_many([identity] * 40),
                 lambda: db.check(identity), lambda: db.check_many([identity])):
        with pytest.raises(NoListError, match="no list loaded"):
            call()
    with db.snapshot() as view:
        with pytest.raises(NoListError):
            view.is_blocked(identity)
        with pytest.raises(NoListError):
            view.check(identity)
    assert issubclass(NoListError, StoreError)
    with pytest.raises(CodeError):   # a bad scan is still a bad scan
        db.is_blocked("hello")
    assert db.status().state == "empty" and db.status().expires_at is None
    with Blocklist.open(db.path) as reader:
        with pytest.raises(NoListError):
            reader.is_blocked(identity)
        db.load(write(tmp_path / "none.txt", []))       # an empty list is a list: nothing is blocked
        time.sleep(0.3)                                   # the reader's refresh interval
        assert reader.is_blocked(identity) is False
        assert reader.check(identity).db_version == 1
    assert db.is_blocked(identity) is False and db.is_blocked_many([identity]) == [False]
    assert db.status().state == "ready"


def test_load_text_then_check_scans_in_every_form(db, tmp_path, rng):
    blocked = [make_identity(rng) for _ in range(500)]
    free = [make_identity(rng) for _ in range(500)]
    report = db.load(write(tmp_path / "list.txt", blocked), block={"authority": "RPN", "reason": "recall"})
    assert (report.codes, report.rejected, report.version) == (500, 0, 1)
    for identity in blocked[:50]:
        assert db.is_blocked(identity)
        assert db.is_blocked(make_scan(identity, rng))
        assert db.is_blocked("]d2" + make_scan(identity, rng) + "\r\n")
        verdict = db.check(make_scan(identity, rng))
        assert verdict.blocked and verdict.identity == identity
        assert verdict.block.authority == "RPN" and verdict.block.reason == "recall"
        assert verdict.block.scope == "code"
    for identity in free[:50]:
        assert not db.is_blocked(make_scan(identity, rng))
        assert db.check(identity).blocked is False
    scans = [make_scan(i, rng) for i in blocked[:100] + free[:100]]
    assert db.is_blocked_many(scans) == [True] * 100 + [False] * 100


def test_load_csv_with_details_and_gtin_rows(db, tmp_path, rng):
    codes = [make_identity(rng) for _ in range(10)]
    whole_product = gtin_with_check("4600000000123")
    rows = ["cis;gtin;authority;reason;since"]
    rows += [f"{c};;FNS;fake;2026-11-01" for c in codes[:5]]
    rows += [f"{c};;RPN;recall;2026-11-02" for c in codes[5:]]
    rows.append(f";{whole_product};MVD;batch;2026-11-03")
    path = tmp_path / "list.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as stream:
        stream.write("\n".join(rows) + "\n")
    report = db.load(path)
    assert (report.codes, report.gtins, report.rejected) == (10, 1, 0)
    assert db.check(codes[0]).block.authority == "FNS"
    assert db.check(codes[7]).block.reason == "recall"
    any_serial = f"01{whole_product}21ABCDEFGHIJKLM"
    verdict = db.check(any_serial)
    assert verdict.blocked and verdict.block.scope == "gtin" and verdict.block.authority == "MVD"
    assert db.is_blocked(any_serial)
    assert db.is_blocked_many([any_serial, make_identity(rng)]) == [True, False]


def test_bad_lines_are_reported_with_line_numbers_and_strict_refuses(db, tmp_path, rng):
    good = [make_identity(rng) for _ in range(3)]
    bad_gtin = "01" + "4600000000124" + "0" + "21ABC"
    lines = [good[0], "hello world", good[1], bad_gtin, "", good[2]]
    path = write(tmp_path / "list.txt", lines)
    with pytest.raises(LoadError) as refused:
        db.load(path, strict=True)
    assert refused.value.report.rejected == 2
    assert [e.line for e in refused.value.report.errors] == [2, 4]
    assert db.get_meta("version") == 0 and db.info()["codes"] == 0
    report = db.load(path)
    assert (report.codes, report.rejected) == (3, 2)
    assert all(db.is_blocked(g) for g in good)


def test_replace_load_makes_exactly_the_new_list(db, rng):
    first = [make_identity(rng) for _ in range(200)]
    second = [make_identity(rng) for _ in range(200)]
    db.load([first])
    db.load([second + second[:10]])
    assert db.get_meta("version") == 2
    assert not any(db.is_blocked_many(first))
    assert all(db.is_blocked_many(second))
    assert sorted(db.iter_identities()) == sorted(second)
    assert db.info()["codes"] == 200


def test_add_load_keeps_what_is_there(db, rng):
    first = [make_identity(rng) for _ in range(50)]
    second = [make_identity(rng) for _ in range(50)]
    db.load([first])
    report = db.load([second], replace=False)
    assert report.codes == 50 and report.version == 2
    assert all(db.is_blocked_many(first + second))


@pytest.mark.parametrize("compress", [False, True])
def test_load_reads_a_pipe_whole(db, rng, compress):
    """`lmcz-fast load store.db <(zcat list.gz)`: a pipe can be read once, so sniffing for gzip must not eat it (it
    did, and an empty list loaded as version 1 answers every scan "may be sold")."""
    import threading

    codes = [make_identity(rng) for _ in range(300)]
    data = ("\n".join(codes) + "\n").encode()
    data = gzip.compress(data) if compress else data
    read_end, write_end = os.pipe()

    def feed():
        with os.fdopen(write_end, "wb") as stream:
            stream.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        report = db.load(f"/dev/fd/{read_end}")
    finally:
        writer.join()
        os.close(read_end)
    assert (report.codes, report.lines) == (300, 300)
    assert all(db.is_blocked_many(codes))


def test_versions_only_move_forward(db, rng):
    db.load([[make_identity(rng)]], version=5)
    with pytest.raises(VersionError):
        db.load([[make_identity(rng)]], version=5)
    with pytest.raises(VersionError):
        db.apply_delta(add=[make_identity(rng)], to_version=4)
    with pytest.raises(VersionError):
        db.apply_delta(add=[make_identity(rng)], from_version=3, to_version=6)
    assert db.get_meta("version") == 5


def test_delta_adds_and_removes_atomically_and_reapply_is_harmless(db, rng):
    base = [make_identity(rng) for _ in range(100)]
    db.load([base])
    extra = [make_identity(rng) for _ in range(20)]
    report = db.apply_delta(add=extra, remove=base[:30], from_version=1, to_version=2)
    assert (report.applied, report.added, report.removed) == (True, 20, 30)
    expected = set(base[30:]) | set(extra)
    assert set(db.iter_identities()) == expected
    again = db.apply_delta(add=extra, remove=base[:30], from_version=1, to_version=2)
    assert again.applied is False
    assert set(db.iter_identities()) == expected
    assert db.info()["codes"] == len(expected)
    assert db.info()["set_digest"] == set_digest_of(sorted(expected))


def test_a_delta_that_changes_nothing_keeps_the_version(db, rng):
    """Adding what is there and removing what is not is no change: no new version, no write at all."""
    base = [make_identity(rng) for _ in range(40)]
    gtin = gtin_with_check("0460700000001")
    db.load([base + [gtin]])
    before = db.info()
    absent = [make_identity(rng) for _ in range(5)]
    report = db.apply_delta(add=base[:10], remove=absent, add_gtins=[gtin], to_version=2, meta={"note": "x"},
                            block={"authority": "FNS"})
    assert (report.applied, report.from_version, report.to_version) == (False, 1, 1)
    assert (report.added, report.removed, report.gtins_added, report.gtins_removed) == (0, 0, 0, 0)
    after = db.info()
    assert after["version"] == 1 and after["updated_at"] == before["updated_at"]
    assert after["set_digest"] == before["set_digest"] and db.get_meta("note") is None
    assert db.apply_delta(to_version=2).applied is False and db.get_meta("version") == 1
    # an adding load of codes already there is the same no-op
    assert db.load([base[:5]], replace=False).version == 1
    # the version still has to be valid: the check comes before the no-op
    with pytest.raises(VersionError):
        db.apply_delta(add=base[:1], from_version=7, to_version=8)
    # a feed asks for the version to move anyway (a chain of deltas may cancel out)
    moved = db.apply_delta(add=base[:10], to_version=3, advance_empty=True, meta={"note": "y"})
    assert (moved.applied, moved.to_version, moved.added) == (True, 3, 0)
    assert db.get_meta("version") == 3 and db.get_meta("note") == "y"
    assert db.info()["set_digest"] == before["set_digest"]
    # and a real change still moves it by one
    assert db.apply_delta(add=absent[:1], to_version=4).applied is True


def test_bad_code_in_delta_changes_nothing(db, rng):
    base = [make_identity(rng) for _ in range(10)]
    db.load([base])
    digest = db.info()["set_digest"]
    with pytest.raises(CodeError):
        db.apply_delta(add=[make_identity(rng), "garbage"], remove=base[:5], to_version=2)
    assert db.get_meta("version") == 1 and db.info()["set_digest"] == digest
    assert all(db.is_blocked_many(base))


def test_removing_one_of_a_colliding_pair_keeps_the_other_blocked(db):
    pairs = colliding_pairs(3)
    for left, right in pairs:
        assert left != right and prefilter_key(left) == prefilter_key(right)
    db.load([[code for pair in pairs for code in pair]])
    db.apply_delta(remove=[left for left, _ in pairs], to_version=2)
    for left, right in pairs:
        assert db.is_blocked(right), "a still-blocked code was let through by a removal"
        assert not db.is_blocked(left)
        assert db.check(right).blocked and not db.check(left).blocked
    db.apply_delta(remove=[right for _, right in pairs], to_version=3)
    for left, right in pairs:
        assert not db._maybe(right.encode()), "the bit of the last code with that key must be cleared"
    db.apply_delta(add=[left for left, _ in pairs] + [right for _, right in pairs], to_version=4)
    db.apply_delta(remove=[right for _, right in pairs], to_version=5)
    assert all(db.is_blocked(left) for left, _ in pairs)


def test_prefilter_false_positive_never_blocks(db):
    (left, right), = colliding_pairs(1, seed=11)
    db.load([[left]])
    assert db._maybe(right.encode()) is True
    assert db.is_blocked(right) is False
    assert db.check(right).blocked is False
    assert db.is_blocked_many([right, left]) == [False, True]


def test_readonly_handle_refuses_writes(db, rng):
    db.load([[make_identity(rng)]])
    with Blocklist.open(db.path) as reader:
        with pytest.raises(StoreError, match="read-only"):
            reader.load([[make_identity(rng)]])
        with pytest.raises(StoreError, match="read-only"):
            reader.apply_delta(add=[make_identity(rng)], to_version=9)


def test_reader_sees_a_new_version_within_the_refresh_interval(tmp_path, rng):
    path = tmp_path / "db"
    codes = [make_identity(rng) for _ in range(20)]
    with Blocklist.create(path) as writer:
        writer.load([codes[:10]])
        with Blocklist.open(path, refresh_interval=0.05) as reader:
            assert not reader.is_blocked(codes[15])
            writer.apply_delta(add=codes[10:], to_version=2)
            deadline = time.monotonic() + 2
            while not reader.is_blocked(codes[15]):
                assert time.monotonic() < deadline, "reader never saw the new version"
                time.sleep(0.01)
            assert reader.check(codes[15]).db_version == 2


def test_another_process_sees_the_new_version(tmp_path, rng):
    path = tmp_path / "db"
    codes = [make_identity(rng) for _ in range(4)]
    script = textwrap.dedent(
        """
        import sys, time
        from lmcz_fast import Blocklist
        bl = Blocklist.open(sys.argv[1], refresh_interval=0.05)
        print(int(bl.is_blocked(sys.argv[2])), flush=True)
        sys.stdin.readline()
        deadline = time.monotonic() + 5
        while not bl.is_blocked(sys.argv[2]) and time.monotonic() < deadline:
            time.sleep(0.01)
        print(int(bl.is_blocked(sys.argv[2])), bl.check(sys.argv[2]).db_version, flush=True)
        """
    )
    with Blocklist.create(path) as writer:
        writer.load([codes[:2]])
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(path), codes[3]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout.readline().strip() == "0"
            writer.apply_delta(add=codes[2:], to_version=2)
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline().split() == ["1", "2"]
        finally:
            child.kill()
            child.wait()


def test_status_follows_sync_times(db, rng):
    db.load([[make_identity(rng)]])
    now = time.time()
    db.mark_synced(at=now - 60, feed_url="http://127.0.0.1:1/feed")
    status = db.status(now=now)
    assert status.state == "ready" and status.feed_url.endswith("/feed")
    assert db.status(now=now + 3 * 3600).state == "stale"
    assert db.status(now=now + 73 * 3600).state == "expired"
    db.set_meta(refresh_window=60.0, expire_after=120.0)
    assert db.status(now=now + 30).state == "stale"
    assert db.status(now=now + 100).state == "expired"


def test_info_reports_counts_and_sizes(db, rng):
    db.load([[make_identity(rng) for _ in range(1000)] + [gtin_with_check("4600000000555")]])
    info = db.info()
    assert info["codes"] == 1000 and info["gtins"] == 1 and info["version"] == 1
    assert 0 < info["prefilter_bytes"] < 100_000
    assert info["used_bytes"] <= info["file_bytes"]
    assert len(info["instance_id"]) == 36


def test_invalid_scans_raise_typed_errors(db):
    with pytest.raises(CodeError):
        db.check("not a code")
    with pytest.raises(CodeError):
        db.is_blocked("")
    with pytest.raises(CodeError):
        db.is_blocked_many(["0104600000000010" + "21ABC", "junk"])


def test_gs_lost_scan_is_recovered_for_lookup(db, rng):
    identity = make_identity(rng)
    db.load([[identity]])
    scan = make_scan(identity, rng).replace(GS, "")
    assert db.is_blocked(scan)


def test_unreadable_source_is_a_store_error(db, tmp_path):
    with pytest.raises(StoreError, match="cannot read"):
        db.load(tmp_path / "missing.txt")
    assert os.path.exists(db.path)


def test_a_cis_whose_serial_ends_like_a_93_tail_is_loaded_whole(db):
    gtin = gtin_with_check("4600000000017")
    cis = f"01{gtin}21ABCDEFG93wxyz"
    db.load([[cis]])
    assert db.is_blocked(cis + GS + "93abcd")
    assert db.check(cis + GS + "93abcd").identity == cis
    db.apply_delta(remove=[cis], to_version=2)
    assert not db.is_blocked(cis + GS + "93abcd")
    assert db.info()["codes"] == 0


def test_a_bare_cis_that_reads_like_a_lost_gs_scan_is_still_found(db):
    gtin = gtin_with_check("4600000000017")
    cis = f"01{gtin}21ABCDEFG93wxyz"
    short_reading = f"01{gtin}21ABCDEFG"
    db.load([[cis]])
    verdict = db.check(cis)
    assert verdict.blocked and verdict.identity == cis
    assert db.is_blocked(cis)
    assert db.is_blocked_many([cis, short_reading]) == [True, False]
    db.load([[short_reading]])
    assert db.check(cis).blocked and db.check(cis).identity == short_reading


def test_readers_switch_versions_through_the_stored_index(tmp_path, rng):
    """The writer stores the prefilter's index; a reader validates everything once, on opening, and later
    versions reuse the stored index (no private 1 MiB table, no pass over the prefilter's values)."""
    from lmcz_fast._probe import STORED_INDEX_NBYTES

    path = tmp_path / "db"
    codes = [make_identity(rng) for _ in range(3000)]
    with Blocklist.create(path) as writer:
        writer.load([codes[:1000]])
        assert writer.info()["prefilter_index_bytes"] == STORED_INDEX_NBYTES
        with Blocklist.open(path, refresh_interval=3600) as reader:
            assert reader._index_nbytes == 0
            for step in range(1, 4):
                writer.apply_delta(add=codes[1000 * step:1000 * step + 1000], remove=codes[:10 * step],
                                   to_version=1 + step)
                reader._renew()
                assert reader.get_meta("version") == 1 + step
                assert reader._index_nbytes == 0
                blocked = set(codes[10 * step:1000 * step + 1000])
                assert reader.is_blocked_many(codes) == [c in blocked for c in codes]


def test_a_tampered_stored_index_is_refused_on_open(tmp_path, rng):
    import lmdb

    from lmcz_fast.store.environment import PREFILTER_CHUNK, PREFILTER_CHUNKS, get_prefilter

    path = tmp_path / "db"
    codes = [make_identity(rng) for _ in range(500)]
    with Blocklist.create(path) as bl:
        bl.load([codes])
    env = lmdb.open(str(path), max_dbs=8, subdir=True)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        index = bytearray(get_prefilter(txn, meta)[1])       # joined from its chunks
        used = next(k for k in range(65536) if index[32 + 16 * k + 12])
        index[32 + 16 * used:32 + 16 * used + 8] = bytes(8)   # clear a summary: in bounds, but wrong
        for number, at in enumerate(range(0, len(index), PREFILTER_CHUNK)):
            txn.put(PREFILTER_CHUNKS + b"i" + number.to_bytes(4, "big"), bytes(index[at:at + PREFILTER_CHUNK]),
                    db=meta)
    env.close()
    with pytest.raises(StoreError, match="corrupt prefilter.*does not match"):
        Blocklist.open(path)


def test_an_unexpected_digest_refuses_the_write_and_changes_nothing(db, rng):
    from lmcz_fast import DigestMismatchError, digest_after

    codes = [make_identity(rng) for _ in range(50)]
    db.load([codes[:30]])
    before = db.info()
    right = digest_after(before["set_digest"], add=codes[30:], remove=codes[:5])
    wrong = digest_after(right, add=[codes[0]])
    with pytest.raises(DigestMismatchError) as caught:
        db.apply_delta(add=codes[30:], remove=codes[:5], to_version=2, expect_digest=wrong, meta={"feed_id": "x"})
    assert (caught.value.expected, caught.value.actual) == (wrong, right)
    with pytest.raises(DigestMismatchError):
        db.load([codes[10:]], expect_digest=wrong)
    after = db.info()
    assert {k: after[k] for k in ("version", "codes", "set_digest")} == {
        k: before[k] for k in ("version", "codes", "set_digest")}
    assert db.get_meta("feed_id") is None and sorted(db.iter_identities()) == sorted(codes[:30])
    # the right digest goes through, with its metadata in the same transaction
    report = db.apply_delta(add=codes[30:], remove=codes[:5], to_version=2, expect_digest=right,
                            meta={"feed_id": "x"})
    assert (report.added, report.removed) == (20, 5)
    assert db.info()["set_digest"] == right == set_digest_of(codes[5:])
    assert db.get_meta("feed_id") == "x"
    guard.accept(db)                    # 25 -> 3 codes: past the shrink guard's limit (store/guard.py)
    db.load([codes[:3]], expect_digest=set_digest_of(codes[:3]), meta={"feed_id": "y"})
    assert db.get_meta("feed_id") == "y" and db.info()["codes"] == 3


def test_metadata_the_store_keeps_or_cannot_encode_is_refused_first(db, rng):
    code = make_identity(rng)
    for fields in ({"version": 9}, {"set_digest": "0" * 32}, {"prefilter_index": 1}, {"when": object()}):
        with pytest.raises(StoreError):
            db.apply_delta(add=[code], to_version=1, meta=fields)
        with pytest.raises(StoreError):
            db.set_meta(**fields)
    assert db.info()["version"] == 0
    with pytest.raises(NoListError):
        db.is_blocked(code)
    db.mark_synced(at=123.0, feed_url="http://x/", feed_id="f")
    assert (db.get_meta("last_sync_at"), db.get_meta("feed_url"), db.get_meta("feed_id")) == (123.0, "http://x/", "f")


def test_building_a_store_leaves_nothing_behind_on_error(tmp_path, rng):
    codes = [make_identity(rng) for _ in range(10)]
    target = tmp_path / "store.db"
    with pytest.raises(LoadError):
        with Blocklist.building(target) as bl:
            assert bl.path != str(target) and not target.exists()   # built aside, invisible to readers
            bl.load([codes + ["broken"]], strict=True)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="interrupted"):
        with Blocklist.building(target) as bl:
            bl.load([codes])
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with Blocklist.building(target) as bl:
        bl.load([codes])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.db"]
    with Blocklist.open(target) as bl:
        assert bl.is_blocked_many(codes) == [True] * 10 and bl.get_meta("version") == 1


def test_building_never_replaces_a_store_that_is_there(tmp_path, rng):
    codes = [make_identity(rng) for _ in range(4)]
    target = tmp_path / "store.db"
    with Blocklist.building(target) as bl:
        bl.load([codes[:2]])
    with pytest.raises(StoreError, match="already exists"):
        with Blocklist.building(target):
            pass
    with pytest.raises(StoreError, match="appeared"):
        with Blocklist.building(tmp_path / "other.db") as bl:
            bl.load([codes[2:]])
            (tmp_path / "other.db").mkdir()                         # another store arrives meanwhile
            os.link(target / "data.mdb", tmp_path / "other.db" / "data.mdb")
    with Blocklist.open(tmp_path / "other.db") as bl:              # still the one that was there first
        assert bl.is_blocked_many(codes) == [True, True, False, False]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".building")]


def test_a_blocklist_nobody_holds_is_closed_by_its_last_reference(tmp_path) -> None:
    """Its parts hold no reference back to it: a blocklist let go of is closed at once, by reference counting,
    never later by the cyclic collector, which may run at any allocation, even inside the store's own locks (a
    close from there deadlocked a load in a CI run of this refactor)."""
    import gc
    import weakref

    path = tmp_path / "db"
    codes = [make_identity(random.Random(19)) for _ in range(3)]
    with Blocklist.building(path) as bl:
        bl.load([codes])
    bl = Blocklist.open(path, readonly=False)
    bl.check(codes[0])
    bl.sold.count()
    bl.min_price("04601234567893")
    with bl.snapshot() as view:
        view.check(codes[1])
    gone = weakref.ref(bl)
    enabled = gc.isenabled()
    gc.disable()
    try:
        del bl
        assert gone() is None
    finally:
        if enabled:
            gc.enable()
