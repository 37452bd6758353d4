"""What clearing stale reader slots costs (`mdb_reader_check`), against what a reader and a writer pay anyway.

A writer clears the reader table before every write transaction; a long-lived reader at most every
`READER_CHECK_INTERVAL` (5 s) when it renews its read transaction (every 0.25 s by default). The check probes each
other process in the table with one `fcntl(F_GETLK)`, so its cost grows with the number of reader processes: measured
here with 16 live till processes holding read transactions. Baselines in the same run: one renewal (`_renew`) and
one delta of 10k codes.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import median_of
from lmcz_fast import Blocklist
from lmcz_fast.store import environment
from lmcz_fast.synth import cis_list

N_CODES = 100_000
N_READERS = 16
DELTA = 10_000

_TILL = textwrap.dedent(
    """
    import sys, time
    from lmcz_fast import Blocklist
    bl = Blocklist.open(sys.argv[1])
    print("ready", flush=True)
    time.sleep(3600)
    """
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("readers-bench") / "db"
    codes = cis_list(N_CODES + 20 * DELTA, seed=41)
    with Blocklist.create(path) as bl:
        bl.load([codes[:N_CODES]])
    tills = [subprocess.Popen([sys.executable, "-c", _TILL, str(path)], stdout=subprocess.PIPE,
                              stdin=subprocess.DEVNULL) for _ in range(N_READERS)]
    try:
        for till in tills:
            assert till.stdout.readline() == b"ready\n"
        writer = Blocklist.open(path, readonly=False)
        try:
            yield {"path": path, "writer": writer, "codes": codes, "tills": tills}
        finally:
            writer.close()
    finally:
        for till in tills:
            till.send_signal(signal.SIGKILL)
            till.wait()
            till.stdout.close()


def _other_pids(bl):
    rows = [line.split() for line in bl.handle.env.readers().splitlines()[1:]]
    return {int(row[0]) for row in rows if len(row) == 3 and row[0].isdigit()} - {os.getpid()}


@pytest.mark.benchmark(group="reader-check")
def test_reader_check_with_16_till_processes(benchmark, store, board):
    writer = store["writer"]
    assert _other_pids(writer) == {till.pid for till in store["tills"]}
    cleared = benchmark(environment.clear_stale_readers, writer.handle.env, str(store["path"]))
    assert cleared == 0   # all 16 are alive: nothing to clear, every one of them probed
    seconds = median_of(benchmark)
    board.record("readers/reader_check", seconds)
    # a reader renews every DEFAULT_REFRESH_INTERVAL and checks at most every READER_CHECK_INTERVAL
    share = environment.DEFAULT_REFRESH_INTERVAL / environment.READER_CHECK_INTERVAL
    board.record("readers/reader_check_per_renewal", seconds * share)
    board.target("readers/reader_check_per_renewal", "readers/renew", 0.25,
                 "reader_check (16 tills) amortized over renewals vs a renewal")
    board.target("readers/reader_check", "readers/delta", 0.001, "reader_check (16 tills) vs a delta of 10k codes")
    board.notes.append(f"reader_check with {N_READERS} till processes in the reader table: {seconds * 1e6:.1f} us "
                       f"per call (once per write; at most every {environment.READER_CHECK_INTERVAL:g} s on renewals)")


@pytest.mark.benchmark(group="reader-check")
def test_renew_baseline(benchmark, store, board):
    with Blocklist.open(store["path"]) as reader:
        reader._renew()   # the rate-limited check has run once at open; these renewals do not repeat it
        benchmark(reader._renew)
        assert reader.get_meta("codes") >= N_CODES
    board.record("readers/renew", median_of(benchmark))


@pytest.mark.benchmark(group="reader-check")
def test_delta_baseline(benchmark, store, board):
    writer = store["writer"]
    codes = store["codes"]
    rng = random.Random(3)
    current = list(codes[:N_CODES])
    fresh = iter(codes[N_CODES:])

    def setup():
        add = [next(fresh) for _ in range(DELTA)]
        remove = [current.pop(rng.randrange(len(current))) for _ in range(DELTA)]
        current.extend(add)
        return (add, remove), {}

    def delta(add, remove):
        return writer.apply_delta(add=add, remove=remove, to_version=writer.get_meta("version") + 1).added

    assert benchmark.pedantic(delta, setup=setup, rounds=8, iterations=1) == DELTA
    board.record("readers/delta", median_of(benchmark))
