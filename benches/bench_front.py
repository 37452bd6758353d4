"""`serve --front` (docs/front.md, issue 21): what the front costs a till, against the official module called directly
in the same run, and how long a till waits when the module hangs, against the deadline.

The official module is its stand-in (tests/_official_standin.py) in its own process; `lmcz-fast serve --front` in
another; the load client (this file run as a script: open loop, latency from each request's scheduled send time, as
benches/bench_service.py's) in a third. 200 tills on keep-alive connections to the stand-in and 200 to the front ask
one code at a time at a till-like rate (default 500 checks/s: 2.5 a second per till, busier than any till scans), and
the two sides take turns in slices of `SLICE` (0.5 s) for the whole run: direct, front, direct, front, ... Only one
side is loaded at a time, at the same rate, by the same client process, with the same tills and codes, and the
slices are short enough that both sides see the machine of the same seconds. The run is cut in blocks of `BLOCK`
(4 s: four slices a side, ~1,000 answers a side); each side's p50 and p99 are taken per block, and the medians over
the blocks (16 s measured: four blocks) are compared:

- front overhead: p99 through the front / p99 direct (target <= 1.2x), and p50 added by the front / 1 ms (<= 1);
- fallback: p99 of the answers while the stand-in hangs / the deadline (<= 1.05x): every one of them is our own
  answer after the deadline, so this is the deadline plus what the fallback costs.

Before (issue 21, up to this change) the sides took turns in rounds of 2 s, one client process a round (direct,
front / front, direct / ...), three rounds: the two sides of a comparison were 3-5 s apart, and a stall of the
shared machine of 100-300 ms (which sets a round's p99: at 500 checks/s it delays 50-150 answers, more than the 1 %
that p99 leaves out) fell in one side's round and not the other's; per-round ratios of one build ranged 0.1-2.8x in
one run. In half-second turns a stall falls on either side alike, and the median over blocks leaves out the block
it fell in.

Two controls, measured in the same run, say when the machine cannot judge a latency ratio of 1.2x (NOT JUDGED, with
why, as the other latency benches do: `Board.unjudged`):

- oversubscribed: over the run the stand-in, runnable, waited longer for a CPU than it ran (/proc/PID/schedstat).
  Every wake-up then queues behind other work, and a check through the front has four wake-ups (front, module,
  front, till) where a direct one has two;
- the direct side against itself (an A/A test): the median of the blocks' p99 over its odd slices against the same
  over its even slices differ by as much as a regression would be (their max / min against `regression_level`; for
  p50, their max - min in ms).

A quiet run is judged as before; a figure within its limit is judged always.

Set LMCZ_BENCH_FRONT=0 to skip it; LMCZ_BENCH_FRONT_RATE, LMCZ_BENCH_FRONT_SECONDS (measured), LMCZ_BENCH_FRONT_SLICE
tune it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))          # run as the client: its siblings
sys.path.insert(1, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from _board import Target, regression_level  # noqa: E402
from bench_service import _ClientConn, _make_corpus, _Serve, build_requests, run_client_process  # noqa: E402

TILLS = 200
DEADLINE_MS = 300
#: Seconds one side is loaded before the other takes its turn.
SLICE = 0.5
#: Seconds of a block: each side's p50 and p99 are taken per block, and the medians over the blocks compared.
BLOCK = 4.0

Samples = list[tuple[int, float]]           # (slice number, seconds from the scheduled send to the whole answer)


# -- the client: two sides in turns ----------------------------------------------------------------------------------


async def _alternate(ports: list[int], requests: list[bytes], tills: int, rate: float, slice_s: float,
                     warmup: float, duration: float) -> dict[str, object]:
    """`tills` keep-alive connections to each port; side k is loaded in the slices whose number is k modulo the
    number of sides. Each till asks every tills/rate seconds from a random phase, in its own side's slices only:
    within a slice its side gets `rate` checks/s, the others none. Latency from the scheduled send time."""
    loop = asyncio.get_running_loop()
    conns: list[list[_ClientConn]] = []
    for port in ports:
        group: list[_ClientConn] = []
        for start in range(0, tills, 100):
            batch = await asyncio.gather(*(loop.create_connection(_ClientConn, "127.0.0.1", port)
                                           for _ in range(min(100, tills - start))))
            group.extend(proto for _, proto in batch)
        conns.append(group)
    clock = time.perf_counter
    start = clock() + 0.05
    first = int(round(warmup / slice_s))
    measure_from = start + first * slice_s
    end = measure_from + duration
    period = tills / rate
    rng = random.Random(1)
    samples: list[Samples] = [[] for _ in ports]
    statuses: list[dict[int, int]] = [{} for _ in ports]
    errors = [0 for _ in ports]

    async def till(side: int, index: int, conn: _ClientConn) -> None:
        scheduled = start + rng.random() * period
        i = index
        while scheduled < end:
            number = int((scheduled - start) / slice_s)
            if number % len(ports) == side:
                delay = scheduled - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    status = await conn.request(requests[i % len(requests)])
                except (ConnectionError, RuntimeError):
                    errors[side] += 1
                    return
                done = clock()
                i += tills
                if number >= first:
                    samples[side].append((number, round(done - scheduled, 7)))
                    statuses[side][status] = statuses[side].get(status, 0) + 1
            scheduled += period

    await asyncio.gather(*(till(side, index, conn) for side, group in enumerate(conns)
                           for index, conn in enumerate(group)))
    for group in conns:
        for conn in group:
            if conn.transport is not None:
                conn.transport.close()
    return {"sides": [{"samples": samples[side], "statuses": statuses[side], "errors": errors[side]}
                      for side in range(len(ports))], "first": first}


def run_alternating(ports: list[int], codes_file: str, *, tills: int, rate: float, slice_s: float, warmup: float,
                    duration: float) -> dict[str, object]:
    """`_alternate` in a separate process (this file as a script); its JSON result. The result (every sample) goes
    through a file: it is hundreds of KB, and a pipe the event loop left non-blocking may take only part of it."""
    with tempfile.TemporaryDirectory(prefix="lmcz-bench-front-") as directory:
        out = os.path.join(directory, "result.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--ports", ",".join(map(str, ports)), "--codes-file",
               codes_file, "--tills", str(tills), "--rate", str(rate), "--slice", str(slice_s), "--warmup",
               str(warmup), "--duration", str(duration), "--out", out]
        subprocess.run(cmd, capture_output=True, text=True, timeout=warmup + duration + 120, check=True)
        with open(out, encoding="utf-8") as fh:
            return json.load(fh)  # type: ignore[no-any-return]


def _client(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="two sides loaded in turns (loopback only): see the module doc")
    parser.add_argument("--ports", required=True, help="comma-separated: the sides, loaded in turns")
    parser.add_argument("--codes-file", required=True, help="one scan per line (JSON strings)")
    parser.add_argument("--tills", type=int, default=TILLS)
    parser.add_argument("--rate", type=float, default=500.0, help="checks/s of the side whose turn it is")
    parser.add_argument("--slice", type=float, default=SLICE, help="seconds of one turn")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=16.0, help="seconds measured (max 60)")
    parser.add_argument("--out", help="write the JSON result here (default: standard output)")
    args = parser.parse_args(argv)
    with open(args.codes_file, encoding="utf-8") as fh:
        codes = [json.loads(line) for line in fh if line.strip()]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_alternate([int(p) for p in args.ports.split(",")], build_requests(codes, "admin", "admin"),
                                    args.tills, args.rate, args.slice, args.warmup, min(args.duration, 60.0)))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(result, fh)
    else:
        print(json.dumps(result))


# -- the figures -----------------------------------------------------------------------------------------------------


def blocks(samples: Samples, first: int, block: int, sides: int = 2, parity: int | None = None) -> list[list[float]]:
    """A side's samples by block of `block` slices (all sides' slices counted) from slice `first` on; `parity` 0 or
    1: only the side's even or odd slices of each block (the A/A halves)."""
    out: dict[int, list[float]] = {}
    for number, seconds in samples:
        if parity is not None and ((number - first) // sides) % 2 != parity:
            continue
        out.setdefault((number - first) // block, []).append(seconds)
    return [out[b] for b in sorted(out)]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


def median_of_blocks(samples: Samples, first: int, block: int, p: float, parity: int | None = None) -> float:
    """The median over the blocks of each block's `p` percentile (seconds)."""
    return statistics.median(pct(values, p) for values in blocks(samples, first, block, parity=parity))


# -- under pytest ----------------------------------------------------------------------------------------------------


def test_front_overhead_and_fallback(tmp_path, board) -> None:  # type: ignore[no-untyped-def]
    import pytest

    if os.environ.get("LMCZ_BENCH_FRONT", "1") == "0" or not sys.platform.startswith("linux"):
        pytest.skip("LMCZ_BENCH_FRONT=0")
    from _front_support import cpu_times
    from _official_standin import StandInProcess

    rate = float(os.environ.get("LMCZ_BENCH_FRONT_RATE", "500"))
    seconds = float(os.environ.get("LMCZ_BENCH_FRONT_SECONDS", "16"))
    slice_s = float(os.environ.get("LMCZ_BENCH_FRONT_SLICE", str(SLICE)))
    db, codes_file = _make_corpus(str(tmp_path), blocked_count=20_000, scans=4_000)
    with open(codes_file, encoding="utf-8") as fh:
        some_blocked = [json.loads(line) for line in fh][:2000:10]
    blocked_file = tmp_path / "official-blocked.txt"
    blocked_file.write_text("".join(code.split("\x1d")[0] + "\n" for code in some_blocked))
    credentials = tmp_path / "official-login"
    credentials.write_text("admin:admin\n")
    os.chmod(credentials, 0o600)
    load = {"connections": TILLS, "rate": rate, "duration": 2.0, "warmup": 0.5}
    with StandInProcess(tmp_path / "official", "--blocked-file", str(blocked_file)) as official, \
            _Serve(db, "--no-audit", "--front", official.url, "--front-credentials-file", str(credentials),
                   "--front-deadline", str(DEADLINE_MS)) as front:
        run_client_process(front.port, codes_file, **{**load, "duration": 0.5})       # fill the pool
        # The stand-in's CPU time and run-queue wait over the run: the control of the machine's quiet.
        before = cpu_times(official.proc.pid)
        result = run_alternating([official.port, front.port], codes_file, tills=TILLS, rate=rate, slice_s=slice_s,
                                 warmup=1.0, duration=seconds)
        after = cpu_times(official.proc.pid)
        official.set(fault="hang")
        hung = run_client_process(front.port, codes_file, **load)
    sides = dict(zip(("direct", "front"), result["sides"]))  # type: ignore[call-overload]
    for name, side in sides.items():
        assert side["errors"] == 0 and set(side["statuses"]) == {"200"}, (name, side["errors"], side["statuses"])
        assert len(side["samples"]) >= rate * seconds / 2 * 0.8, (name, len(side["samples"]))  # its share answered
    assert hung["errors"] == 0 and set(hung["statuses"]) == {"200"}, hung  # type: ignore[arg-type]
    first = int(result["first"])  # type: ignore[call-overload]
    block = max(2, round(BLOCK / slice_s))
    p50 = {name: median_of_blocks(side["samples"], first, block, 0.5) for name, side in sides.items()}
    p99 = {name: median_of_blocks(side["samples"], first, block, 0.99) for name, side in sides.items()}
    halves_p99 = {name: [median_of_blocks(side["samples"], first, block, 0.99, parity) * 1e3 for parity in (0, 1)]
                  for name, side in sides.items()}
    halves_p50 = [median_of_blocks(sides["direct"]["samples"], first, block, 0.5, parity) * 1e3 for parity in (0, 1)]
    per_block = [pct(f, 0.99) / max(pct(d, 0.99), 1e-9)
                 for d, f in zip(blocks(sides["direct"]["samples"], first, block),
                                 blocks(sides["front"]["samples"], first, block))]
    standin_cpu = None if before is None or after is None else [after[0] - before[0], after[1] - before[1]]

    board.record("front: p99 of a check through the front, 200 tills", p99["front"])
    board.record("front: p99 of a check to the official module directly, 200 tills", p99["direct"])
    board.target("front: p99 of a check through the front, 200 tills",
                 "front: p99 of a check to the official module directly, 200 tills", 1.2,
                 "front: overhead at p99 (through the front / direct, same run)")
    board.record("front: p50 added by the front, 200 tills", max(p50["front"] - p50["direct"], 1e-6))
    board.record("1 ms", 0.001)
    board.target("front: p50 added by the front, 200 tills", "1 ms", 1.0,
                 "front: latency it adds at p50 / 1 ms")
    board.record("front: p99 of the fallback answer while the module hangs", float(hung["p99_ms"]) / 1000)  # type: ignore
    board.record("front: deadline", DEADLINE_MS / 1000)
    board.target("front: p99 of the fallback answer while the module hangs", "front: deadline", 1.05,
                 "front: fallback p99 / deadline")
    # Oversubscribed: over the run the stand-in, runnable, waited for a CPU longer than it ran. Then other work wants
    # more than the two cores, every wake-up of a process queues behind it, and a path of three processes (till,
    # front, module) against one of two measures the machine's queue, not the front's work.
    oversubscribed = standin_cpu is not None and standin_cpu[1] > standin_cpu[0] > 0
    if oversubscribed:
        assert standin_cpu is not None
        why = (f"NOT JUDGED on this run: the machine was oversubscribed (over the run the stand-in waited "
               f"{standin_cpu[1] / 1e6:.0f} ms for a CPU and ran {standin_cpu[0] / 1e6:.0f} ms, /proc/PID/schedstat)")
        if p99["front"] / p99["direct"] > 1.2:
            board.unjudged("front: p99 of a check through the front, 200 tills",
                           "front: p99 of a check to the official module directly, 200 tills", why)
        if p50["front"] - p50["direct"] > 0.001:
            board.unjudged("front: p50 added by the front, 200 tills", "1 ms", why)
    # The A/A control: the direct side's alternate slices against each other. When they alone differ by as much as
    # this ratio would call a regression (`regression_level`), the run cannot tell a regression from the machine's
    # pauses (as bench_replicate.py judges its reader's worst call).
    direct_p99 = halves_p99["direct"]
    spread_p99 = max(direct_p99) / max(min(direct_p99), 1e-9)
    overhead = p99["front"] / p99["direct"]
    level = regression_level(Target("front: p99 of a check through the front, 200 tills",
                                    "front: p99 of a check to the official module directly, 200 tills", 1.2, ""))
    if overhead > 1.2 and spread_p99 >= level and not oversubscribed:
        board.unjudged("front: p99 of a check through the front, 200 tills",
                       "front: p99 of a check to the official module directly, 200 tills",
                       f"NOT JUDGED on this run: the direct side's alternate slices alone differ by {spread_p99:.2f}x "
                       f"at p99 ({'/'.join(f'{v:.2f}' for v in direct_p99)} ms), over the {level:g}x a regression is")
    added = p50["front"] - p50["direct"]
    spread_p50 = (max(halves_p50) - min(halves_p50)) / 1000
    level = regression_level(Target("front: p50 added by the front, 200 tills", "1 ms", 1.0, ""))
    if added > 0.001 and spread_p50 >= level * 0.001 and not oversubscribed:
        board.unjudged("front: p50 added by the front, 200 tills", "1 ms",
                       f"NOT JUDGED on this run: the direct side's alternate slices alone differ by "
                       f"{spread_p50 * 1e3:.2f} ms at p50 ({'/'.join(f'{v:.2f}' for v in halves_p50)} ms), over the "
                       f"{level:g} ms a regression is")
    board.notes.append(
        f"front: p99 through the front / direct by block of {block * slice_s:g} s: "
        f"{', '.join(f'{x:.2f}' for x in per_block)}; A/A halves (each side's alternate slices), median of the "
        f"blocks' p99: direct {'/'.join(f'{v:.2f}' for v in direct_p99)} ms, through the front "
        f"{'/'.join(f'{v:.2f}' for v in halves_p99['front'])} ms; stand-in over the run: "
        + ("no schedstat" if standin_cpu is None else
           f"ran {standin_cpu[0] / 1e6:.0f} ms, waited for a CPU {standin_cpu[1] / 1e6:.0f} ms"))
    board.notes.append(
        f"front, {TILLS} tills a side @ {rate:g} checks/s in {slice_s:g} s turns, {seconds:g} s measured "
        f"({len(sides['direct']['samples'])}/{len(sides['front']['samples'])} answers), median of {len(per_block)} "
        f"blocks: direct p50 {p50['direct'] * 1e3:.2f} ms p99 {p99['direct'] * 1e3:.2f} ms; through the front p50 "
        f"{p50['front'] * 1e3:.2f} ms p99 {p99['front'] * 1e3:.2f} ms; module hung: p50 {hung['p50_ms']} ms p99 "
        f"{hung['p99_ms']} ms (deadline {DEADLINE_MS} ms)")
    print(json.dumps({"p50": p50, "p99": p99, "per_block": per_block, "hung": hung}, indent=1))


if __name__ == "__main__":
    _client()
