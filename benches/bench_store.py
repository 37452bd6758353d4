"""The store against its baselines on the same 900k codes and the same probes, in the same run.

Probes are what a till sees: raw scans with crypto tails, 1 % of them blocked. Baselines: a Python `set` of the
already-cut CIS strings, SQLite with an index, plain py-lmdb `get` on CIS keys. Targets (issue 3):
single `is_blocked(raw)` <= 1.0x `cis in set`; `is_blocked_many` per code <= 0.33x the set loop; open + first
verdict <= 5 % of building the set from the file; full load <= 0.7x SQLite's bulk insert; < 10 MB extra
private memory per reader process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import lmdb
import pytest

from conftest import median_of
from lmcz_fast import Blocklist
from lmcz_fast.synth import blocklist_and_probes

N_CODES = int(os.environ.get("LMCZ_BENCH_CODES", "900000"))
N_PROBES = 100_000
BLOCKED_SHARE = 0.01


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The blocklist file, the probes (raw scans + their pre-cut CIS + truth) and a loaded database."""
    root = tmp_path_factory.mktemp("store-bench")
    blocked, probe_scans, probe_cis, truth = blocklist_and_probes(
        N_CODES, N_PROBES, blocked_share=BLOCKED_SHARE, seed=2026
    )
    listing = root / "blocked.txt"
    listing.write_text("\n".join(blocked) + "\n", encoding="ascii")
    db_path = root / "db"
    with Blocklist.create(db_path) as bl:
        bl.load(listing)
    return {
        "root": root,
        "listing": listing,
        "blocked": blocked,
        "scans": probe_scans,
        "cis": probe_cis,
        "truth": truth,
        "db": db_path,
    }


@pytest.fixture(scope="module")
def reader(data):
    with Blocklist.open(data["db"]) as bl:
        yield bl


@pytest.fixture(scope="module")
def cis_set(data):
    return set(data["blocked"])


def _per_code(seconds: float, n: int) -> float:
    return seconds / n


@pytest.mark.benchmark(group="single")
def test_single_set_baseline(benchmark, data, cis_set, board):
    probes = data["cis"]

    def loop():
        hits = 0
        for cis in probes:
            if cis in cis_set:
                hits += 1
        return hits

    assert benchmark(loop) == sum(data["truth"])
    board.record("single/set", _per_code(median_of(benchmark), len(probes)))


@pytest.mark.benchmark(group="single")
def test_single_is_blocked_raw_scan(benchmark, data, reader, board):
    probes = data["scans"]
    is_blocked = reader.is_blocked

    def loop():
        hits = 0
        for scan in probes:
            if is_blocked(scan):
                hits += 1
        return hits

    assert benchmark(loop) == sum(data["truth"])
    board.record("single/is_blocked", _per_code(median_of(benchmark), len(probes)))
    board.target("single/is_blocked", "single/set", 1.0, "is_blocked(raw scan) vs `cis in set` (pre-cut)")


@pytest.mark.benchmark(group="batch")
def test_batch_set_loop_baseline(benchmark, data, cis_set, board):
    probes = data["cis"]
    result = benchmark(lambda: [cis in cis_set for cis in probes])
    assert result == data["truth"]
    board.record("batch/set", _per_code(median_of(benchmark), len(probes)))


@pytest.mark.benchmark(group="batch")
def test_batch_is_blocked_many(benchmark, data, reader, board):
    probes = data["scans"]
    result = benchmark(reader.is_blocked_many, probes)
    assert result == data["truth"]
    board.record("batch/is_blocked_many", _per_code(median_of(benchmark), len(probes)))
    board.target("batch/is_blocked_many", "batch/set", 0.33, "is_blocked_many(raw scans) vs set loop, per code")


@pytest.mark.benchmark(group="single")
def test_single_plain_lmdb_get_baseline(benchmark, data, board, tmp_path_factory):
    path = tmp_path_factory.mktemp("plain-lmdb")
    env = lmdb.open(str(path), map_size=1 << 32, readahead=False)
    with env.begin(write=True) as txn, txn.cursor() as cursor:
        cursor.putmulti(((c.encode(), b"") for c in sorted(data["blocked"])), append=True)
    keys = [c.encode() for c in data["cis"]]
    with env.begin(buffers=True) as txn:
        get = txn.get

        def loop():
            hits = 0
            for key in keys:
                if get(key) is not None:
                    hits += 1
            return hits

        assert benchmark(loop) == sum(data["truth"])
    env.close()
    board.record("single/lmdb_get", _per_code(median_of(benchmark), len(keys)))
    board.target("single/is_blocked", "single/lmdb_get", 1.0, "is_blocked(raw scan) vs plain py-lmdb get (pre-cut)")


@pytest.mark.benchmark(group="single")
def test_single_sqlite_baseline(benchmark, data, board, tmp_path_factory):
    path = tmp_path_factory.mktemp("sqlite") / "codes.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE codes (cis TEXT PRIMARY KEY) WITHOUT ROWID")
    con.executemany("INSERT INTO codes VALUES (?)", ((c,) for c in data["blocked"]))
    con.commit()
    probes = data["cis"][:20_000]
    truth = sum(data["truth"][:20_000])
    query = con.execute

    def loop():
        hits = 0
        for cis in probes:
            if query("SELECT 1 FROM codes WHERE cis = ?", (cis,)).fetchone() is not None:
                hits += 1
        return hits

    assert benchmark.pedantic(loop, rounds=3, iterations=1) == truth
    con.close()
    board.record("single/sqlite", _per_code(median_of(benchmark), len(probes)))
    board.target("single/is_blocked", "single/sqlite", 1.0, "is_blocked(raw scan) vs SQLite point query (pre-cut)")


@pytest.mark.benchmark(group="open")
def test_open_set_from_file_baseline(benchmark, data, board):
    listing = data["listing"]

    def build():
        with open(listing, encoding="ascii") as stream:
            return {line.rstrip("\n") for line in stream}

    codes = benchmark.pedantic(build, rounds=3, iterations=1)
    assert len(codes) == len(set(data["blocked"]))
    board.record("open/set_from_file", median_of(benchmark))


@pytest.mark.benchmark(group="open")
def test_open_and_first_verdict(benchmark, data, board):
    first = data["scans"][0]

    def open_and_check():
        with Blocklist.open(data["db"]) as bl:
            return bl.is_blocked(first)

    assert benchmark(open_and_check) == data["truth"][0]
    board.record("open/first_verdict", median_of(benchmark))
    board.target("open/first_verdict", "open/set_from_file", 0.05, "open 900k DB + first verdict vs set from file")


@pytest.mark.benchmark(group="load")
def test_load_sqlite_bulk_insert_baseline(benchmark, data, board, tmp_path_factory):
    listing = data["listing"]
    counter = iter(range(1000))

    def setup():
        path = tmp_path_factory.mktemp(f"sqlite-load-{next(counter)}") / "codes.sqlite"
        return (path,), {}

    def bulk(path):
        con = sqlite3.connect(path)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE codes (cis TEXT PRIMARY KEY) WITHOUT ROWID")
        with open(listing, encoding="ascii") as stream:
            con.executemany("INSERT OR IGNORE INTO codes VALUES (?)", ((line.rstrip("\n"),) for line in stream))
        con.commit()
        count = con.execute("SELECT count(*) FROM codes").fetchone()[0]
        con.close()
        return count

    # One round: the baseline is ~10x the full load it is compared with (target 0.7x; 0.09-0.17x measured), and its
    # three rounds in a loaded run spread 12.1-15.4 s (1.27x), so a single round reads the same verdict (the
    # fastest SQLite round over the slowest full load: 0.12x) in a third of the time (~4 s of CI instead of ~13).
    assert benchmark.pedantic(bulk, setup=setup, rounds=1, iterations=1) == len(set(data["blocked"]))
    board.record("load/sqlite", median_of(benchmark))


@pytest.mark.benchmark(group="load")
def test_load_full(benchmark, data, board, tmp_path_factory):
    listing = data["listing"]
    counter = iter(range(1000))

    def setup():
        return (tmp_path_factory.mktemp(f"lmdb-load-{next(counter)}") / "db",), {}

    def full_load(path):
        with Blocklist.create(path) as bl:
            return bl.load(listing).codes

    assert benchmark.pedantic(full_load, setup=setup, rounds=3, iterations=1) == len(set(data["blocked"]))
    board.record("load/full", median_of(benchmark))
    board.target("load/full", "load/sqlite", 0.7, "full load of 900k vs SQLite bulk insert")
    with Blocklist.open(data["db"]) as bl:
        info = bl.info()
    board.notes.append(
        f"database for {info['codes']} codes: {info['used_bytes'] / 1e6:.1f} MB used "
        f"(prefilter {info['prefilter_bytes'] / 1e6:.2f} MB); the official module's list is ~30 MB"
    )


_READER = textwrap.dedent(
    """
    import json, sys
    def private_kb():
        fields = {}
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    fields[parts[0].rstrip(":")] = int(parts[1])
        return fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0), fields.get("Rss", 0)
    mode, path, probes_file = sys.argv[1:4]
    probes = open(probes_file, encoding="ascii").read().split("\\n")
    if mode == "lmcz":
        from lmcz_fast import Blocklist
        before = private_kb()
        bl = Blocklist.open(path)
        hits = sum(bl.is_blocked_many(probes))
    else:
        before = private_kb()
        codes = {line.rstrip("\\n") for line in open(path, encoding="ascii")}
        hits = sum(c in codes for c in probes)
    after = private_kb()
    print(json.dumps({"private_kb": after[0] - before[0], "rss_kb": after[1] - before[1], "hits": hits}))
    """
)


def _reader_memory(mode: str, path, probes_file) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _READER, mode, str(path), str(probes_file)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def test_reader_process_memory(data, board, tmp_path_factory):
    probes_file = tmp_path_factory.mktemp("probes") / "probes.txt"
    probes_file.write_text("\n".join(data["scans"]), encoding="ascii")
    lmcz = _reader_memory("lmcz", data["db"], probes_file)
    baseline = _reader_memory("set", data["listing"], probes_file)
    assert lmcz["hits"] == sum(data["truth"])
    board.record("memory/reader_private", lmcz["private_kb"] * 1024, "B")
    board.record("memory/set_private", baseline["private_kb"] * 1024, "B")
    board.notes.append(
        f"extra memory per reader process: lmcz-fast {lmcz['private_kb'] / 1024:.1f} MB private "
        f"({lmcz['rss_kb'] / 1024:.1f} MB RSS incl. shared map pages) vs a set of the CIS strings "
        f"{baseline['private_kb'] / 1024:.1f} MB private; target < 10 MB"
    )
    assert lmcz["private_kb"] < baseline["private_kb"]


# -- the price and grey tables beside the codes (issue 10): the hot path must not pay for them -----------------------

N_PRICED_GTINS = 20_000
N_GREY_GTINS = 5_000


@pytest.fixture(scope="module")
def tables_reader(data, tmp_path_factory):
    """A copy of the benchmark database with a minimum-price table and a grey list loaded (the GTINs of the
    probes, so `check` finds entries), opened read-only."""
    import shutil

    from lmcz_fast import parse_code

    root = tmp_path_factory.mktemp("store-tables")
    path = root / "db"
    shutil.copytree(data["db"], path)
    gtins = sorted({parse_code(scan).gtin for scan in data["scans"]})
    prices = root / "prices.csv"
    rows = [f"{gtin},,{10000 + i}" for i, gtin in enumerate(gtins[:N_PRICED_GTINS])]
    prices.write_text("gtin,pg,price\n" + "\n".join(rows) + "\n,3,12000\n")
    grey = root / "grey.txt"
    grey.write_text("\n".join(gtins[-N_GREY_GTINS:]) + "\n")
    with Blocklist.open(path, readonly=False) as bl:
        bl.load_prices(prices)
        bl.load_grey(grey)
        assert bl.info()["min_prices"] == min(N_PRICED_GTINS, len(gtins))
    with Blocklist.open(path) as bl:
        yield bl


@pytest.mark.benchmark(group="tables")
def test_hot_path_with_and_without_tables(benchmark, data, reader, tables_reader, board):
    """`is_blocked` and `is_blocked_many` on the same probes, on the database without tables and on its copy with
    a price table and a grey list, alternating within each round (A, B, A, B, ...) so both sides see the same
    neighbours' load; the ratio is of the fastest round of each side."""
    import time as _time

    probes = data["scans"]
    truth = sum(data["truth"])
    rounds: dict[str, list[float]] = {"single": [], "single_tables": [], "batch": [], "batch_tables": []}

    def single(bl: Blocklist) -> int:
        is_blocked = bl.is_blocked
        hits = 0
        for scan in probes:
            if is_blocked(scan):
                hits += 1
        return hits

    def one_round() -> int:
        hits = 0
        for name, bl in (("single", reader), ("single_tables", tables_reader)):
            started = _time.perf_counter()
            hits += single(bl)
            rounds[name].append(_time.perf_counter() - started)
        for name, bl in (("batch", reader), ("batch_tables", tables_reader)):
            started = _time.perf_counter()
            hits += sum(bl.is_blocked_many(probes))
            rounds[name].append(_time.perf_counter() - started)
        return hits

    assert benchmark.pedantic(one_round, rounds=12, iterations=1) == 4 * truth
    for name, times in rounds.items():
        board.record(f"tables/{name}", min(times) / len(probes))
    board.target("tables/single_tables", "tables/single", 1.1,
                 "is_blocked with price+grey tables vs without (interleaved)")
    board.target("tables/batch_tables", "tables/batch", 1.1,
                 "is_blocked_many with price+grey tables vs without (interleaved)")


N_CHECKS = 20_000


CHECK_CHUNK = 200
CHECK_PASSES = 5


@pytest.mark.benchmark(group="tables")
def test_check_with_and_without_tables(benchmark, data, reader, tables_reader, board):
    """The richer call: `check` also answers `smp` and `grey_gtin` when the tables hold anything. Both sides over the
    same chunks of 200 scans in alternating rounds (~0.1-0.2 ms each, the order swapped every round), each chunk's
    median round per side, summed over the chunks; both sides' loops do the same Python work per verdict. Rounds of
    the whole 20,000 scans (fastest of 8, plain always first) read 1.29 in one CI run against 0.89-1.19 otherwise: a
    loaded machine's preemptions (milliseconds) land in rounds that long, while the median of short rounds leaves
    out the few they hit."""
    import statistics as _statistics
    import time as _time

    probes = data["scans"][:N_CHECKS]
    chunks = [probes[i:i + CHECK_CHUNK] for i in range(0, len(probes), CHECK_CHUNK)]
    sides = {"plain": reader, "tables": tables_reader}
    times: dict[str, list[list[float]]] = {name: [[] for _ in chunks] for name in sides}
    perf = _time.perf_counter
    counts = {"blocked": 0, "priced": 0}

    def one_pass(p: int) -> int:
        blocked = priced = 0
        for c, chunk in enumerate(chunks):
            for name in (("plain", "tables") if (p + c) % 2 == 0 else ("tables", "plain")):
                check = sides[name].check
                started = perf()
                for scan in chunk:
                    verdict = check(scan)
                    blocked += verdict.blocked
                    priced += verdict.smp is not None
                times[name][c].append(perf() - started)
        counts["blocked"] += blocked
        counts["priced"] += priced
        return blocked

    passes = iter(range(CHECK_PASSES))
    assert benchmark.pedantic(lambda: one_pass(next(passes)), rounds=CHECK_PASSES, iterations=1) == \
        2 * sum(data["truth"][:N_CHECKS])
    assert counts["priced"] == CHECK_PASSES * N_CHECKS     # every probe's GTIN has an entry on the tables side
    for name, per_chunk in times.items():
        board.record(f"check/{name}", sum(_statistics.median(t) for t in per_chunk) / len(probes))
    # The richer call does more (smp and grey of every scan: a table lookup and an int object); the issue's
    # "unchanged" is for is_blocked/is_blocked_many, measured above.
    board.target("check/tables", "check/plain", 1.25, "check() with price+grey tables vs without (interleaved)")
    fastest = sum(min(t) for t in times["tables"]) / sum(min(t) for t in times["plain"])
    board.notes.append(
        f"check() per scan: {board.values['check/tables'] * 1e6:.2f} us with price+grey tables, "
        f"{board.values['check/plain'] * 1e6:.2f} us without (medians of {CHECK_PASSES} alternating rounds of "
        f"{CHECK_CHUNK} scans; fastest rounds {fastest:.3f}x)"
    )
