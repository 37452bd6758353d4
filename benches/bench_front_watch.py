"""The cross-check's cost (issue 21): server CPU per forwarded check with the cross-check on / off, <= 1.2x.

Two `serve --front` processes over the same store in front of one official-module stand-in (a subprocess,
tests/_official_standin.py), one with `--no-front-crosscheck`; the same closed-loop load (bench_service.py's
client, 1-code v1 checks) against each in interleaved rounds, median of the server's CPU (/proc) per request. Both
forward every check (the stand-in answers in time), so the difference is the cross-check: the observer's append
on the till's path and the comparison after it.
"""

from __future__ import annotations

import os
import re
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from bench_service import _enabled, _make_corpus, _Serve, run_client_process  # noqa: E402


def test_crosscheck_cpu_per_forwarded_check(tmp_path, board) -> None:  # type: ignore[no-untyped-def]
    import pytest
    from _official_standin import StandInProcess

    if not _enabled():
        pytest.skip("LMCZ_BENCH_SERVICE=0")
    db, codes_file = _make_corpus(str(tmp_path), blocked_count=20_000, scans=5_000)
    rounds = int(os.environ.get("LMCZ_BENCH_SERVICE_ROUNDS", "5"))
    runs: dict[str, list[float]] = {"on": [], "off": []}
    common = ("--no-audit", "--front-poll", "0", "--front-state-dir")
    with StandInProcess(tmp_path / "standin", "--blocked-file", os.path.join(str(tmp_path), "blocked.txt")) as lm, \
            _Serve(db, "--front", lm.url, *common, str(tmp_path / "on")) as on, \
            _Serve(db, "--front", lm.url, *common, str(tmp_path / "off"), "--no-front-crosscheck") as off:
        servers = (("on", on), ("off", off))
        for round_no in range(rounds):
            for name, srv in (servers if round_no % 2 == 0 else servers[::-1]):
                before = srv.cpu_seconds()
                result = run_client_process(srv.port, codes_file, connections=20, rate=0, duration=1.0,
                                            warmup=0.0)
                served = int(result["responses"]) or 1  # type: ignore[call-overload]
                assert result["errors"] == 0, result
                runs[name].append((srv.cpu_seconds() - before) / served)
        calls = lm.received()
        with urllib.request.urlopen(f"http://127.0.0.1:{on.port}/metrics", timeout=10) as answer:
            metrics = answer.read().decode()
    compared = float(re.search(r"^lmcz_front_crosscheck_seconds_total (\S+)", metrics, re.M).group(1))
    codes = int(re.search(r"^lmcz_front_crosscheck_codes_total (\S+)", metrics, re.M).group(1))
    drains = int(re.search(r"^lmcz_front_crosscheck_drains_total (\S+)", metrics, re.M).group(1))
    cpu = {name: sorted(values)[len(values) // 2] for name, values in runs.items()}
    board.record("front: server CPU per forwarded check, cross-check on", cpu["on"])
    board.record("front: server CPU per forwarded check, cross-check off", cpu["off"])
    board.target("front: server CPU per forwarded check, cross-check on",
                 "front: server CPU per forwarded check, cross-check off", 1.2,
                 "front: cross-check cost (server CPU per forwarded check, on / off)")
    board.notes.append(f"front cross-check: median server CPU {cpu['on'] * 1e6:.1f} us/check on, "
                       f"{cpu['off'] * 1e6:.1f} us/check off, over {rounds} interleaved rounds "
                       f"({calls['checks']} checks reached the stand-in); the comparing itself: "
                       f"{compared / max(codes, 1) * 1e6:.1f} us/code over {codes} codes in {drains} drains")
    assert calls["checks"] > 0
