"""The sold register over HTTP: durable sales with group commit against one fsync per sale, and what the register
costs a check.

Both servers are `lmcz-fast serve` processes on loopback, measured in the same run by the keep-alive load client of
bench_service.py running as a separate process:

1. `POST /api/v2/cis/sell`, one unique code per request, 200 connections (200 tills):
   - open loop at 2000 sales/s for a few seconds: throughput and p50/p99 latency from each request's scheduled send
     time (a 201 means the sale's commit returned: fsync'd);
   - closed loop: saturation throughput.
   Candidate: the default group commit. Baseline: `--sold-max-batch 1`, i.e. one commit, one fsync, per sale.
2. One-code outCheck requests against a database whose register holds 200 000 sales, and against the same
   database with an empty register: server CPU per request, interleaved rounds, medians (as the audit bench).

With LMCZ_BENCH_BASELINE_PYTHON set to the Python of a build of the base branch (today's code), (2) also serves
a copy of the database with that build and compares this branch, register full, against it.

Targets (LMCZ_BENCH_ENFORCE=1 fails on a miss): group commit >= 2000 sales/s with p99 < 20 ms at 200 tills; its
time per sale at saturation at most half the baseline's; a check with the register full at most 1.10x the CPU of
one with it empty. LMCZ_BENCH_SERVICE=0 skips it (it needs ~30 s).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys

import pytest
from bench_service import _gtin, _make_corpus, _Serve, run_client_process

SECONDS = float(os.environ.get("LMCZ_BENCH_SERVICE_SECONDS", "3"))
ROUNDS = int(os.environ.get("LMCZ_BENCH_SERVICE_ROUNDS", "5"))
TILLS = 200
RATE = 2000


class _OtherServe(_Serve):
    """`lmcz-fast serve` from another Python environment (a build of the base branch): today's server."""

    def __init__(self, python: str, db: str, *args: str) -> None:
        import subprocess

        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.proc = subprocess.Popen(
            [python, "-c", "import sys; from lmcz_fast.cli.serve import serve; sys.exit(serve())", db,
             "--port", "0", *args],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd="/")
        self.port = 0
        self.log: list[str] = []


def _enabled() -> bool:
    return os.environ.get("LMCZ_BENCH_SERVICE", "1") != "0" and sys.platform.startswith("linux")


def _sale_codes(path: str, count: int, seed: int) -> str:
    rng = random.Random(seed)
    alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    gtins = [_gtin(rng) for _ in range(500)]
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(count):
            fh.write(json.dumps("01" + rng.choice(gtins) + "21" + "".join(rng.choice(alnum) for _ in range(13)))
                     + "\n")
    return path


def _fresh_db(root: str, name: str) -> str:
    from lmcz_fast.store import Blocklist

    path = os.path.join(root, name)
    source = os.path.join(root, name + ".txt")
    with open(source, "w") as fh:
        fh.write("0104600000000008215abcdef\n")
    with Blocklist.create(path) as bl:
        bl.load([source])
        bl.mark_synced()
    return path


def test_sales_group_commit_against_one_fsync_per_sale(tmp_path, board) -> None:  # type: ignore[no-untyped-def]
    if not _enabled():
        pytest.skip("LMCZ_BENCH_SERVICE=0")
    root = str(tmp_path)
    results: dict[str, dict[str, object]] = {}
    per_run = int(RATE * (SECONDS + 1) * 1.2)
    with _Serve(_fresh_db(root, "group.db"), "--no-audit") as group, \
            _Serve(_fresh_db(root, "single.db"), "--no-audit", "--sold-max-batch", "1") as single:
        for name, srv, seed in (("group", group, 1), ("single", single, 2)):
            codes = _sale_codes(os.path.join(root, f"{name}-open.jsonl"), per_run, seed)
            results[f"{name}_open"] = run_client_process(srv.port, codes, connections=TILLS, rate=RATE,
                                                         duration=SECONDS, warmup=1, path="/api/v2/cis/sell")
        for name, srv, seed in (("group", group, 3), ("single", single, 4)):
            codes = _sale_codes(os.path.join(root, f"{name}-closed.jsonl"), 60_000, seed)
            results[f"{name}_closed"] = run_client_process(srv.port, codes, connections=TILLS, rate=0,
                                                           duration=SECONDS, warmup=0.5, path="/api/v2/cis/sell",
                                                           max_requests=60_000)
    print(json.dumps(results, indent=1))
    for key, result in results.items():
        assert result["errors"] == 0 and set(result["statuses"]) == {"201"}, (key, result)  # type: ignore[arg-type]
    group_open, single_open = results["group_open"], results["single_open"]
    group_rate = float(results["group_closed"]["per_s"])  # type: ignore[arg-type]
    single_rate = float(results["single_closed"]["per_s"])  # type: ignore[arg-type]
    board.record("sell: time per durable sale at saturation, group commit", 1.0 / group_rate)
    board.record("sell: time per durable sale at saturation, one fsync per sale", 1.0 / single_rate)
    board.target("sell: time per durable sale at saturation, group commit",
                 "sell: time per durable sale at saturation, one fsync per sale", 0.5,
                 "sell: group commit / one fsync per sale (s per sale, 200 tills)")
    for name, r in (("group commit", group_open), ("one fsync per sale", single_open)):
        board.notes.append(f"sell open loop, {TILLS} tills @ {RATE}/s, {name}: {r['per_s']} sales/s, "
                           f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms")
    board.notes.append(f"sell closed loop, {TILLS} tills: group commit {group_rate:.0f} sales/s, one fsync per sale "
                       f"{single_rate:.0f} sales/s ({group_rate / single_rate:.1f}x)")
    if os.environ.get("LMCZ_BENCH_ENFORCE") == "1":
        assert float(group_open["per_s"]) >= RATE * 0.98  # type: ignore[arg-type]
        assert float(group_open["p99_ms"]) < 20.0  # type: ignore[arg-type]
        assert group_rate >= 2 * single_rate


def test_check_cost_with_a_full_register(tmp_path, board) -> None:  # type: ignore[no-untyped-def]
    if not _enabled():
        pytest.skip("LMCZ_BENCH_SERVICE=0")
    from lmcz_fast.store import Blocklist

    db, scans = _make_corpus(str(tmp_path), blocked_count=100_000)
    empty = os.path.join(str(tmp_path), "empty-register.db")
    shutil.copytree(db, empty)
    with Blocklist.open(db) as bl:        # 200k sales, among them a third of the scans the client sends
        with open(scans, encoding="utf-8") as fh:
            sent = [json.loads(line) for line in fh]
        sold = sent[::3]
        rng = random.Random(8)
        alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        others = ["01" + _gtin(rng) + "21" + "".join(rng.choice(alnum) for _ in range(13))
                  for _ in range(200_000 - len(sold))]
        for start in range(0, len(others), 20_000):
            bl.record_sold(others[start:start + 20_000])
        bl.record_sold(sold)
        assert bl.sold.count() > 190_000      # a few scans repeat a code
    # Today's server, when a build of the base branch is given: the same database, served by the code before the
    # register existed (it ignores the register's tables).
    base_python = os.environ.get("LMCZ_BENCH_BASELINE_PYTHON")
    base_db = os.path.join(str(tmp_path), "base.db")
    if base_python:
        shutil.copytree(db, base_db)
    cpu: dict[str, list[float]] = {"full": [], "empty": [], "base": []}
    last: dict[str, dict[str, object]] = {}
    with _Serve(db, "--no-audit") as full, _Serve(empty, "--no-audit") as plain, \
            (_OtherServe(base_python, base_db, "--no-audit") if base_python else _Serve(empty, "--no-audit")) as base:
        for srv in (full, plain):   # every scan once on both first: the first reads of the register fault its pages in
            run_client_process(srv.port, scans, connections=100, rate=0, duration=10.0, warmup=0.0,
                               max_requests=len(sent))
        open_full = run_client_process(full.port, scans, connections=1000, rate=5000, duration=SECONDS, warmup=1)
        open_empty = run_client_process(plain.port, scans, connections=1000, rate=5000, duration=SECONDS, warmup=1)
        servers = [("full", full), ("empty", plain)] + ([("base", base)] if base_python else [])
        for round_no in range(ROUNDS):
            for name, srv in (servers if round_no % 2 == 0 else servers[::-1]):
                before = srv.cpu_seconds()
                last[name] = run_client_process(srv.port, scans, connections=100, rate=0, duration=1.0, warmup=0.0)
                served = int(last[name]["responses"]) or 1  # type: ignore[call-overload]
                cpu[name].append((srv.cpu_seconds() - before) / served)
    median = {name: sorted(runs)[len(runs) // 2] for name, runs in cpu.items() if runs}
    if base_python:
        board.record("check: server CPU per request, base branch's serve", median["base"])
        board.target("check: server CPU per request, register of 200k sales",
                     "check: server CPU per request, base branch's serve", 1.10,
                     "check: this branch with 200k sales / the base branch (CPU/req)")
    board.record("check: server CPU per request, register of 200k sales", median["full"])
    board.record("check: server CPU per request, empty register", median["empty"])
    board.target("check: server CPU per request, register of 200k sales",
                 "check: server CPU per request, empty register", 1.10,
                 "check: sold register cost (server CPU/request, 200k / empty)")
    for name, r in (("register of 200k", open_full), ("empty register", open_empty)):
        board.notes.append(f"check open loop, 1000 conns @ 5000/s, {name}: p50 {r['p50_ms']} ms, "
                           f"p99 {r['p99_ms']} ms, {r['per_s']} checks/s")
    board.notes.append(f"check closed loop, 100 conns (last round): register of 200k {last['full']['per_s']} req/s, "
                       f"empty {last['empty']['per_s']} req/s; median CPU {median['full'] * 1e6:.1f} / "
                       f"{median['empty'] * 1e6:.1f} us per request")
    print(json.dumps({"open": {"full": open_full, "empty": open_empty}, "cpu": cpu}, indent=1))
    for r in (open_full, open_empty):
        assert r["errors"] == 0 and set(r["statuses"]) == {"200"}  # type: ignore[arg-type]
    if os.environ.get("LMCZ_BENCH_ENFORCE") == "1":
        assert median["full"] <= median["empty"] * 1.10
