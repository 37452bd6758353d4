"""What a whole check answer costs the server (issue 24): server CPU per code of a 128-code outCheck on both
protocols, and of a one-code request, each against a baseline measured in the same run.

The baseline of every row is the server's CPU for a request the HTTP stack answers with nothing behind it (a
one-code POST to an unknown path: read, parsed, routed, answered 404 in JSON): the stack's floor, ~30 us, measured
on the same server in the same rounds, so that the machine's load weighs on both sides alike (the probe's own
cost, ~50 ns a code on a quiet machine and 200-800 ns on a loaded one, moves far more than the service's under
load; it is printed beside the figures, not used as a baseline).

- per code (`/api/v1` and `/api/v2` `cis/outCheck`, 128 codes a request): server CPU (utime + stime of the
  `lmcz-fast serve` process, /proc/PID/stat) per code answered. Targets 1.5 us (v1) and 2 us (v2) a code over a
  30 us floor: 0.05x and 0.067x.
- one code: server CPU per one-code `/api/v1/cis/outCheck`. Target 40 us a request over the 30 us floor: 1.33x.

The same server (audit log on, the default) answers every load, the loads interleaved, each figure the median of
the rounds. Also printed: where a request's time goes, step by step, measured in this process on the same store
(`step_breakdown`: parse the body, check the codes, encode the answer with its audit line, write the audit log).
Run by hand for the breakdown alone: `python benches/bench_answer.py`.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_service import _enabled, _make_corpus, _Serve, run_client_process  # noqa: E402

ROUNDS = int(os.environ.get("LMCZ_BENCH_SERVICE_ROUNDS", "5"))


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def probe_per_code(db: str, codes: list[str], rounds: int = 7) -> float:
    """Seconds per code of `Blocklist.is_blocked_many` over `codes` (median of `rounds`)."""
    from lmcz_fast.store import Blocklist

    runs = []
    with Blocklist.open(db) as bl:
        bl.is_blocked_many(codes)
        for _ in range(rounds):
            started = time.perf_counter()
            bl.is_blocked_many(codes)
            runs.append((time.perf_counter() - started) / len(codes))
    return _median(runs)


def step_breakdown(db: str, codes: list[str], per_request: int) -> dict[str, dict[str, float]]:
    """Microseconds per code of each step of a check request, in this process, by protocol: `parse` (the body to
    its items), `auth` (the credentials judged), `snapshot` (one version taken and let go), `check` (the verdicts,
    from one snapshot, the snapshot included), `encode` (the answer's bytes and its audit line, one compiled pass),
    `audit` (the writer's formatting and writing, no fsync), and `handle` (the whole `LocalModule.handle`, without
    the HTTP stack)."""
    from lmcz_fast.audit import AuditLog
    from lmcz_fast.service import LocalModule, ServiceConfig
    from lmcz_fast.service.v2 import cis_items
    from lmcz_fast.store import Blocklist

    out: dict[str, dict[str, float]] = {}
    bodies = [json.dumps({"cis_list": codes[i:i + per_request]}).encode()
              for i in range(0, len(codes) - per_request + 1, per_request)]
    total = per_request * len(bodies)
    auth = b"Basic " + base64.b64encode(b"admin:admin")
    ctype = b"application/json"
    with tempfile.TemporaryDirectory() as root, Blocklist.open(db) as bl, \
            AuditLog(os.path.join(root, "audit"), fsync=False, flush_interval=3600) as audit:
        module = LocalModule(bl, ServiceConfig(user="admin", password="admin"), audit=audit)
        checks = module.checks
        status = module.shared.status.require_ready()

        def best(step) -> float:  # type: ignore[no-untyped-def]
            runs = []
            for _ in range(3):
                started = time.process_time()
                step()
                runs.append(time.process_time() - started)
            return min(runs) / total * 1e6

        for name, path in (("v1", b"/api/v1/cis/outCheck"), ("v2", b"/api/v2/cis/outCheck")):
            def handle() -> None:
                for body in bodies:
                    answer = module.handle(b"POST", path, None, body, auth, b"9999078900001234", ctype)
                    answer = answer.run() if hasattr(answer, "run") else answer
                    assert answer.status == 200

            def parse() -> None:
                for body in bodies:
                    items = checks.items(b"POST", None, body, ctype)
                    if name == "v2":
                        cis_items(items)

            raws = [checks.items(b"POST", None, body, ctype) for body in bodies]
            checked: list = []

            def check() -> None:
                checked.clear()
                for items in raws:
                    checked.append(checks.check_all(items, "r", 0, "c", status,
                                                    None if name == "v1" else [None] * len(items)))

            check()

            def encode() -> None:
                for done in checked:
                    head = checks.envelope("00000000-0000-4000-8000-000000000000", 0, done, status, "c", None)
                    count = sum(len(batch) for batch in done.batches)
                    if name == "v1":
                        checks.answers.v1_batches(done.batches, done.unreadable, head)
                    else:
                        checks.answers.v2_batches(done.batches, done.unreadable, [None] * count,
                                                  os.urandom(16 * count), head, done.db_version,
                                                  lambda i, v: (head.inst, head.version))

            route = module._routes[path.lower()]

            def auth_step() -> None:
                for _ in bodies:
                    module._admitted(route, auth)

            def snapshot() -> None:
                for _ in bodies:
                    bl.snapshot().close()

            figures = {"handle": best(handle), "parse": best(parse), "auth": best(auth_step),
                       "snapshot": best(snapshot), "check": best(check), "encode": best(encode)}
            audit.flush()
            handle()
            started = time.process_time()
            audit.flush()
            figures["audit"] = (time.process_time() - started) / total * 1e6
            out[name] = {key: round(value, 2) for key, value in figures.items()}
    return out


def _cpu_per(srv: _Serve, port: int, codes_file: str, per_request: int, path: str) -> tuple[float, dict]:
    before = srv.cpu_seconds()
    result = run_client_process(port, codes_file, connections=8, rate=0, duration=1.0, warmup=0.0,
                                per_request=per_request, path=path)
    served = int(result["responses"]) or 1
    return (srv.cpu_seconds() - before) / served, result["statuses"]


def test_whole_answer_cost(tmp_path, board) -> None:  # type: ignore[no-untyped-def]
    import pytest

    if not _enabled():
        pytest.skip("LMCZ_BENCH_SERVICE=0")
    db, codes_file = _make_corpus(str(tmp_path), blocked_count=100_000, scans=8192)
    with open(codes_file, encoding="utf-8") as fh:
        codes = [json.loads(line) for line in fh if line.strip()]
    loads = {  # name: (codes per request, path)
        "v1_128": (128, "/api/v1/cis/outCheck"),
        "v2_128": (128, "/api/v2/cis/outCheck"),
        "one": (1, "/api/v1/cis/outCheck"),
        "floor": (1, "/api/v1/cis/nothing"),
    }
    runs: dict[str, list[float]] = {name: [] for name in loads}
    statuses: dict[str, object] = {}
    probe: list[float] = []
    with _Serve(db, "--audit-dir", str(tmp_path / "audit")) as srv:
        for round_no in range(ROUNDS):
            order = list(loads.items())
            for name, (per_request, path) in (order if round_no % 2 == 0 else order[::-1]):
                cpu, statuses[name] = _cpu_per(srv, srv.port, codes_file, per_request, path)
                runs[name].append(cpu / per_request)
            probe.append(probe_per_code(db, codes[:4096], rounds=3))
    cpu = {name: _median(values) for name, values in runs.items()}
    probe_cost = _median(probe)
    board.record("answer: v1 outCheck of 128 codes, server CPU per code", cpu["v1_128"])
    board.record("answer: v2 outCheck of 128 codes, server CPU per code", cpu["v2_128"])
    board.record("answer: one-code outCheck, server CPU per request", cpu["one"])
    board.record("answer: 404 request of the same size, server CPU per request", cpu["floor"])
    board.target("answer: v1 outCheck of 128 codes, server CPU per code",
                 "answer: 404 request of the same size, server CPU per request",
                 0.05, "answer: v1 outCheck, 128 codes, CPU per code / HTTP floor (1.5 us / 30 us)")
    board.target("answer: v2 outCheck of 128 codes, server CPU per code",
                 "answer: 404 request of the same size, server CPU per request",
                 0.067, "answer: v2 outCheck, 128 codes, CPU per code / HTTP floor (2 us / 30 us)")
    board.target("answer: one-code outCheck, server CPU per request",
                 "answer: 404 request of the same size, server CPU per request",
                 1.33, "answer: one-code request / HTTP floor, server CPU (40 us / 30 us)")
    steps = {per: step_breakdown(db, codes[:2048], per) for per in (128, 1)}
    board.notes.append(
        f"answer: server CPU per code, 128-code outCheck: v1 {cpu['v1_128'] * 1e6:.2f} us, "
        f"v2 {cpu['v2_128'] * 1e6:.2f} us "
        f"(probe {probe_cost * 1e9:.0f} ns); one-code request {cpu['one'] * 1e6:.1f} us, 404 floor "
        f"{cpu['floor'] * 1e6:.1f} us; median of {ROUNDS} rounds")
    for per, figures in steps.items():
        for name, row in figures.items():
            board.notes.append(f"answer steps, {name}, {per} code(s) a request, us per code in-process: "
                               + ", ".join(f"{key} {value}" for key, value in row.items()))
    print(json.dumps({"cpu_runs": runs, "probe": probe, "statuses": statuses, "steps": steps}, indent=1))
    answered = {str(s) for name in ("v1_128", "v2_128", "one") for s in statuses[name]}  # type: ignore[attr-defined]
    assert answered == {"200"}
    assert set(statuses["floor"]) == {"404"}  # type: ignore[arg-type]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as root:
        database, scans_file = _make_corpus(root, blocked_count=100_000, scans=4096)
        with open(scans_file, encoding="utf-8") as fh:
            scans = [json.loads(line) for line in fh if line.strip()]
        print(json.dumps({"probe_ns_per_code": round(probe_per_code(database, scans) * 1e9, 1),
                          **{f"{per}_codes": step_breakdown(database, scans, per) for per in (128, 1)}}, indent=1))
