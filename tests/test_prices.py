"""Minimum prices and grey GTINs in the store: loads, answers, digest, bad input, upgrade of an older store, CLI."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import lmdb
import pytest
from click.testing import CliRunner

from lmcz_fast import Blocklist, LoadError, RecordError, set_digest_of
from lmcz_fast.cli import main
from lmcz_fast.store import RECORD_KINDS, digest_after, guard

from _store_support import gtin_with_check, make_identity

GS = "\x1d"
G1 = gtin_with_check("0460043993125")       # 04600439931256, the GTIN of the --help examples
G2 = gtin_with_check("4601234567890")
G3 = gtin_with_check("4607777777777")


def pack(gtin: str, price_chars: str = "ACW.") -> str:
    """A 29-character tobacco pack: GTIN, 7-character serial, 4 price characters, 4 check characters."""
    return f"{gtin}aB3!x_-{price_chars}Ck<>"


def content_digest(bl: Blocklist) -> str:
    """The digest recomputed from what the store holds, not from its metadata."""
    return set_digest_of(bl.iter_identities(), bl.iter_gtins(), bl.iter_records())


@pytest.fixture()
def db(tmp_path):
    with Blocklist.create(tmp_path / "db") as bl:
        yield bl


@pytest.fixture()
def price_file(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text(f"# minimum prices, kopecks\ngtin,pg,price\n{G1},,14630\n,tobacco,12000\n,16,9000\n")
    return path


def test_prices_and_grey_load_and_answer(db, tmp_path, price_file):
    grey = tmp_path / "grey.txt"
    grey.write_text(f"{G2}\n# comment\n\n{G3}\n")
    report = db.load_prices(price_file)
    assert (report.min_prices, report.group_min_prices, report.changed, report.version) == (1, 2, True, 1)
    assert db.load_grey(grey).grey_gtins == 2
    info = db.info()
    assert (info["version"], info["min_prices"], info["group_min_prices"], info["grey_gtins"]) == (2, 1, 2, 2)
    assert db.min_price(G1) == 14630 and db.min_price(G1, 3) == 14630      # the GTIN's own entry wins
    assert db.min_price(G2) is None and db.min_price(G2, 3) == 12000 and db.min_price(G2, 16) == 9000
    assert db.min_price(G2, 8) is None
    assert db.is_grey_gtin(G2) and db.is_grey_gtin(G3) and not db.is_grey_gtin(G1)
    assert sorted(db.iter_records()) == sorted([
        f"min_price {G1} 14630", "group_min_price 3 12000", "group_min_price 16 9000",
        f"grey_gtin {G2}", f"grey_gtin {G3}",
    ])
    assert content_digest(db) == info["set_digest"]


def test_check_carries_mrp_smp_and_grey_from_one_version(db, price_file, tmp_path):
    db.load_prices(price_file)
    (tmp_path / "grey.txt").write_text(f"{G2}\n")
    db.load_grey(tmp_path / "grey.txt")
    v = db.check(pack(G1))
    assert (v.mrp, v.smp, v.grey_gtin, v.blocked) == (14630, 14630, False, False)
    v = db.check(pack(G2, "AAAB"))                 # a pack is tobacco by itself: the group 3 price applies
    assert (v.mrp, v.smp, v.grey_gtin) == (1, 12000, True)
    milk = f"01{G2}21Ab3!x_{GS}93dGVz"
    v = db.check(milk)                             # an element string's group is unknown without pg
    assert (v.mrp, v.smp, v.grey_gtin) == (None, None, True)
    assert db.check(milk, pg=16).smp == 9000 and db.check(milk, pg=8).smp is None
    block = f"01{G3}21aB3!x_-{GS}8005125000{GS}93AbCd"
    assert db.check(block, pg=3).mrp == 125000 and db.check(block, pg=3).smp == 12000
    for bad in (0, -1, 70000, True, "3", 3.0):
        with pytest.raises(RecordError):
            db.check(milk, pg=bad)


def test_empty_tables_answer_nothing(db):
    identity = make_identity(random.Random(1))
    db.load([[identity]])
    v = db.check(identity)
    assert (v.blocked, v.mrp, v.smp, v.grey_gtin) == (True, None, None, False)
    assert db.min_price(G1, 3) is None and not db.is_grey_gtin(G1)


def test_tables_do_not_touch_the_blocked_answers(db, price_file, tmp_path):
    rng = random.Random(2)
    codes = [make_identity(rng) for _ in range(200)]
    db.load([codes[:100]])
    before = db.is_blocked_many(codes)
    db.load_prices(price_file)
    (tmp_path / "grey.txt").write_text("".join(f"{c[2:16]}\n" for c in codes[:150]))
    db.load_grey(tmp_path / "grey.txt")
    assert db.is_blocked_many(codes) == before == [True] * 100 + [False] * 100
    assert db.info()["codes"] == 100


def test_a_code_reload_keeps_the_tables_and_a_snapshot_load_replaces_them(db, price_file):
    rng = random.Random(3)
    codes = [make_identity(rng) for _ in range(20)]
    db.load_prices(price_file)
    db.load([codes])
    assert db.min_price(G1) == 14630 and db.info()["min_prices"] == 1
    assert content_digest(db) == db.info()["set_digest"]
    guard.accept(db)                    # 20 -> 5 codes: past the shrink guard's limit (store/guard.py)
    db.load([codes[:5]], records=[f"grey_gtin {G1}"])          # a whole snapshot: codes and tables
    assert list(db.iter_records()) == [f"grey_gtin {G1}"]
    info = db.info()
    assert (info["min_prices"], info["group_min_prices"], info["grey_gtins"]) == (0, 0, 1)
    assert content_digest(db) == info["set_digest"]
    guard.accept(db)                    # 1 -> 0 table records
    db.load([codes[:5]], records=[])                           # records=[]: the tables become empty
    assert list(db.iter_records()) == [] and db.info()["grey_gtins"] == 0
    assert content_digest(db) == db.info()["set_digest"] == set_digest_of(codes[:5])


def test_record_lines_in_a_load_source(db, tmp_path):
    rng = random.Random(4)
    code = make_identity(rng)
    source = tmp_path / "snapshot.txt"
    source.write_text(f"# lmcz-feed snapshot 2\n{code}\n@min_price {G1} 500\n@grey_gtin {G2}\n")
    db.load(source, strict=True)
    assert db.is_blocked(code) and db.min_price(G1) == 500 and db.is_grey_gtin(G2)
    bad = tmp_path / "newer.txt"
    bad.write_text(f"{code}\n@max_price {G1} 500\n")
    with pytest.raises(LoadError) as info:
        db.load(bad, strict=True)
    assert info.value.report.errors[0].reason == "unknown_record_kind"
    assert "upgrade lmcz-fast" in info.value.report.errors[0].message
    assert db.min_price(G1) == 500 and db.info()["version"] == 1


def test_deltas_set_and_delete_records_exactly(db):
    db.apply_delta(add_records=[f"min_price {G1} 100", "group_min_price 3 50", f"grey_gtin {G2}"], to_version=1)
    assert db.min_price(G1) == 100
    report = db.apply_delta(remove_records=[f"min_price {G1} 100"], add_records=[f"min_price {G1} 120"],
                            to_version=2)
    assert (report.records_added, report.records_removed) == (1, 1) and db.min_price(G1) == 120
    db.apply_delta(add_records=[f"min_price {G1} 130"], to_version=3)          # setting replaces the value
    assert db.min_price(G1) == 130 and db.info()["min_prices"] == 1
    report = db.apply_delta(remove_records=[f"min_price {G1} 999", f"grey_gtin {G3}"], to_version=4)
    assert report.records_removed == 0 and db.min_price(G1) == 130          # not the value held: kept
    db.apply_delta(remove_records=[f"grey_gtin {G2}", "group_min_price 3 50"], to_version=5)
    info = db.info()
    assert (info["min_prices"], info["group_min_prices"], info["grey_gtins"]) == (1, 0, 0)
    assert content_digest(db) == info["set_digest"]
    assert info["set_digest"] == digest_after(set_digest_of(()), add_records=[f"min_price {G1} 130"])


def test_an_unknown_record_kind_or_a_bad_record_changes_nothing(db, price_file):
    db.load_prices(price_file)
    before = (db.info()["version"], db.info()["set_digest"], list(db.iter_records()))
    bad_records = [
        ("unknown_record_kind", "max_price 04600439931256 100"),
        ("bad_price", f"min_price {G1} -5"),
        ("bad_price", f"min_price {G1} 12.5"),
        ("bad_record", "min_price 04600439931257 100"),             # wrong check digit
        ("bad_group", "group_min_price 0 100"),
        ("bad_record", f"grey_gtin {G1} extra"),
    ]
    for reason, text in bad_records:
        with pytest.raises(RecordError) as info:
            db.apply_delta(add_records=[f"min_price {G2} 1", text], to_version=before[0] + 1)
        assert info.value.reason == reason, text
        assert (db.info()["version"], db.info()["set_digest"], list(db.iter_records())) == before


@pytest.mark.parametrize("row, reason", [
    (f"{G2},,12.50", "bad_price"),
    (f"{G2},,-1", "bad_price"),
    (f"{G2},,1e3", "bad_price"),
    (f"{G2},,", "bad_price"),
    (f"{G2},,abc", "bad_price"),
    (f"{G2},3,100", "bad_record"),
    (",,100", "bad_record"),
    ("04600439931257,,100", "bad_record"),
    (",0,100", "bad_group"),
    (",99999999,100", "bad_group"),
    (",chocolate,100", "bad_group"),
    (f"{G1},,999", "conflict"),
])
def test_a_bad_price_row_refuses_the_whole_file(db, tmp_path, price_file, row, reason):
    db.load_prices(price_file)
    before = (db.info()["version"], list(db.iter_records()))
    bad = tmp_path / "bad.csv"
    bad.write_text(f"gtin,pg,price\n{G1},,14630\n{G3},,1\n{row}\n")
    with pytest.raises(LoadError) as info:
        db.load_prices(bad)
    assert info.value.report.errors[0].reason == reason
    assert info.value.report.errors[0].line == 4
    assert (db.info()["version"], list(db.iter_records())) == before


def test_a_price_file_needs_its_header(db, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{G1},14630\n")
    with pytest.raises(Exception, match="header naming a 'price' column"):
        db.load_prices(bad)
    assert db.info()["version"] == 0


def test_reloading_the_same_prices_changes_nothing(db, price_file):
    db.load_prices(price_file)
    report = db.load_prices(price_file)
    assert not report.changed and report.version == 1 == db.info()["version"]


def test_min_price_refuses_bad_arguments(db):
    for gtin in ("123", "04600439931257", 4600439931256):
        with pytest.raises((RecordError, TypeError, ValueError)):
            db.min_price(gtin)  # type: ignore[arg-type]
    with pytest.raises(RecordError):
        db.min_price(G1, 0)
    with pytest.raises(RecordError):
        db.is_grey_gtin("garbage")


def test_a_store_made_before_the_tables_opens_with_them_empty_and_its_digest_unchanged(tmp_path):
    rng = random.Random(5)
    codes = [make_identity(rng) for _ in range(30)]
    path = tmp_path / "old"
    with Blocklist.create(path) as bl:
        bl.load([codes])
        digest = bl.info()["set_digest"]
    # Make it look like a store of the previous version: no table databases, no table metadata.
    env = lmdb.open(str(path), max_dbs=16, subdir=True)
    with env.begin(write=True) as txn:
        for name in (b"prices", b"grey"):
            txn.drop(env.open_db(name, txn=txn), delete=True)
        meta = env.open_db(b"meta", txn=txn)
        for name in (b"tables_digest", b"min_prices", b"group_min_prices", b"grey_gtins"):
            assert txn.delete(name, db=meta)
    env.close()
    with Blocklist.open(path, readonly=False) as bl:
        assert bl.info()["set_digest"] == digest and bl.check(codes[0]).smp is None
        assert not bl.is_grey_gtin(G1) and bl.min_price(G1) is None
        bl.apply_delta(add_records=[f"min_price {G1} 700"], to_version=2)
        assert bl.min_price(G1) == 700
        assert content_digest(bl) == bl.info()["set_digest"]


def test_a_reader_in_another_process_sees_the_tables_with_the_codes(tmp_path, price_file):
    path = tmp_path / "db"
    with Blocklist.create(path) as bl:
        bl.load_prices(price_file)
    script = (
        "import json, sys\n"
        "from lmcz_fast import Blocklist\n"
        "with Blocklist.open(sys.argv[1]) as bl:\n"
        f"    v = bl.check({pack(G2)!r})\n"
        "    print(json.dumps([v.db_version, v.mrp, v.smp, v.grey_gtin]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [1, 14630, 12000, False]


def test_record_kinds_are_the_documented_ones():
    assert RECORD_KINDS == ("min_price", "group_min_price", "grey_gtin")


# -- CLI ------------------------------------------------------------------------------------------------------------


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def test_cli_help_examples_work_as_printed(runner, tmp_path, monkeypatch):
    """The --help examples: the printf lines make the files, the commands load them."""
    monkeypatch.chdir(tmp_path)
    for command, made in ((["prices", "load"], "min-prices.csv"), (["grey", "load"], "grey.txt")):
        text = runner.invoke(main, [*command, "--help"]).output
        lines = [line.strip() for line in text.splitlines() if line.strip().startswith(("printf", "lmcz-fast"))]
        printf, invocation = lines
        assert subprocess.run(printf, shell=True, cwd=tmp_path).returncode == 0 and (tmp_path / made).exists()
        result = runner.invoke(main, invocation.split()[1:])
        assert result.exit_code == 0, result.output
    with Blocklist.open(tmp_path / "store.db") as bl:
        assert bl.min_price("04600439931256") == 14630 and bl.min_price(G2, 3) == 12000
        assert bl.is_grey_gtin("04600439931256")


def test_cli_load_list_lookup_and_bad_input(runner, tmp_path, price_file):
    db = str(tmp_path / "store.db")
    result = runner.invoke(main, ["prices", "load", db, str(price_file)])
    assert result.exit_code == 0 and "1 GTIN minimum prices, 2 product-group" in result.output
    listed = runner.invoke(main, ["prices", "list", db]).output
    assert listed.splitlines() == ["gtin,pg,price", f"{G1},,14630", ",3,12000", ",16,9000"]
    again = tmp_path / "again.csv"
    again.write_text(listed)
    assert "unchanged" in runner.invoke(main, ["prices", "load", db, str(again)]).output
    # a store with only prices holds no list yet (empty, 4045): lookups answer once a list arrived (a sync here)
    assert "no list loaded" in runner.invoke(main, ["lookup", db, pack(G1)]).output
    with Blocklist.open(db, readonly=False) as bl:
        bl.mark_synced(feed_url="https://feed.example/")
    result = runner.invoke(main, ["lookup", db, "--json", pack(G1)])
    row = json.loads(result.output)
    assert (row["mrp"], row["smp"], row["grey_gtin"]) == (14630, 14630, False)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"gtin,price\n{G2},146.30\n")
    result = runner.invoke(main, ["prices", "load", db, str(bad)])
    assert result.exit_code == 3 and "bad.csv:2: bad_price" in result.stderr
    assert "whole number of kopecks" in result.stderr
    with Blocklist.open(db) as bl:
        assert bl.info()["version"] == 1 and bl.min_price(G2) is None
    grey = tmp_path / "grey.txt"
    grey.write_text(f"{G2}\nnot-a-gtin\n")
    result = runner.invoke(main, ["grey", "load", db, str(grey)])
    assert result.exit_code == 3 and ":2: bad_gtin" in result.stderr


def test_cli_delta_changes_records(runner, tmp_path, price_file):
    db = str(tmp_path / "store.db")
    runner.invoke(main, ["prices", "load", db, str(price_file)])
    delta = tmp_path / "delta.txt"
    delta.write_text(f"-@min_price {G1} 14630\n+@min_price {G1} 15000\n+@grey_gtin {G2}\n")
    result = runner.invoke(main, ["delta", db, str(delta)])
    assert result.exit_code == 0 and "+2 -1 table records" in result.output
    with Blocklist.open(db) as bl:
        assert bl.min_price(G1) == 15000 and bl.is_grey_gtin(G2)
    newer = tmp_path / "newer.txt"
    newer.write_text(f"+@max_price {G1} 1\n")
    result = runner.invoke(main, ["delta", db, str(newer)])
    assert result.exit_code != 0 and "upgrade lmcz-fast" in result.output + result.stderr
    with Blocklist.open(db) as bl:
        assert bl.info()["version"] == 2


def test_a_reader_sees_new_tables_and_keeps_its_copy_across_code_only_updates(tmp_path, price_file):
    import time

    path = tmp_path / "db"
    rng = random.Random(6)
    codes = [make_identity(rng) for _ in range(10)]
    with Blocklist.create(path) as writer, Blocklist.open(path, refresh_interval=0.02) as reader:
        writer.load_prices(price_file)
        time.sleep(0.05)
        assert reader.check(pack(G2)).smp == 12000 and reader.min_price(G1) == 14630
        version, copy = reader.versions.current, reader.versions.current.tables()      # the tables as that version answers them
        writer.apply_delta(add=codes, to_version=writer.info()["version"] + 1)      # codes only
        time.sleep(0.05)
        assert reader.check(codes[0]).blocked and reader.versions.current is not version
        assert reader.versions.current.tables() is copy                          # a new version, the same tables: not reread
        writer.apply_delta(add_records=["group_min_price 3 12500"], to_version=writer.info()["version"] + 1)
        time.sleep(0.05)
        assert reader.check(pack(G2)).smp == 12500 and reader.versions.current.tables() is not copy
        assert reader.check(pack(G1)).smp == 14630


def test_a_snapshot_answers_prices_from_its_one_version(tmp_path, price_file):
    path = tmp_path / "db"
    rng = random.Random(7)
    milk = f"01{G2}21Ab3!x_{GS}93dGVz"
    with Blocklist.create(path) as bl:
        bl.load([[make_identity(rng)]])
        bl.load_prices(price_file)
        with bl.snapshot() as view:
            bl.apply_delta(remove_records=["group_min_price 3 12000"], add_records=["group_min_price 3 13000"],
                           to_version=bl.info()["version"] + 1)
            assert [v.smp for v in view.check_many([pack(G1), pack(G2), milk], [None, None, 16])] == [
                14630, 12000, 9000]
            assert view.min_price(G2, 3) == 12000 and view.check(milk, pg=3).smp == 12000
            with pytest.raises(ValueError):
                view.check_many([milk], [1, 2])
        assert bl.min_price(G2, 3) == 13000 and bl.check_many([milk], [3])[0].smp == 13000
        lines = list(bl.snapshot_lines())
    assert lines[-3:] == [f"@min_price {G1} 14630", "@group_min_price 3 13000", "@group_min_price 16 9000"]
    with Blocklist.create(tmp_path / "copy") as copy:             # a store's lines load whole elsewhere
        copy.load([lines], strict=True)
        assert list(copy.iter_records()) == [line[1:] for line in lines[-3:]]
