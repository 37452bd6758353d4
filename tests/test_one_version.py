"""One call, one version (issue 11): a batch, a snapshot, a service request answers from one database version and
names it, while a writer in another process commits under it.

The writer flips a whole batch of codes: every even version blocks all of them, every odd version none. So any
answer that is not all-blocked or all-free mixed two versions, and an answer naming version V must be all-blocked
exactly when V is even. Readers in other processes renew as often as they can (refresh interval 2 ms), so a
renewal inside a call, if one were possible, would happen many times.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import lmcz_fast
from lmcz_fast import Blocklist

from _service_support import USER, Client, ServeProcess, auth_header, make_identity, make_scan

BATCH = 3000
SECONDS = 5.0

WRITER = textwrap.dedent("""
    import sys, time
    from lmcz_fast import Blocklist
    db, batch_file, stop_file = sys.argv[1:4]
    batch = open(batch_file).read().split("\\n")[:-1]
    commits = 0
    with Blocklist.open(db, readonly=False) as bl:
        version = bl.get_meta("version")
        print("ready", flush=True)
        while True:
            try:
                open(stop_file).close()
                break
            except FileNotFoundError:
                pass
            if version % 2:     # odd: none of the batch blocked -> the next (even) version blocks all of it
                bl.apply_delta(add=batch, from_version=version, to_version=version + 1)
            else:
                bl.apply_delta(remove=batch, from_version=version, to_version=version + 1)
            version += 1
            commits += 1
            time.sleep(0.005)
    print(commits, flush=True)
""")

READER = textwrap.dedent("""
    import json, sys, time
    from lmcz_fast import Blocklist
    db, batch_file, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    batch = open(batch_file).read().split("\\n")[:-1]
    stats = {"calls": 0, "mixed": 0, "misnamed": 0, "all_blocked": 0, "all_free": 0, "versions": []}
    seen = set()

    def record(answers, version=None):
        stats["calls"] += 1
        kinds = set(answers)
        if len(kinds) != 1:
            stats["mixed"] += 1
            return
        blocked = kinds.pop()
        stats["all_blocked" if blocked else "all_free"] += 1
        if version is not None:
            seen.add(version)
            if blocked != (version % 2 == 0):
                stats["misnamed"] += 1

    with Blocklist.open(db, refresh_interval=0.002) as bl:
        print("ready", flush=True)
        sys.stdin.readline()
        until = time.monotonic() + seconds
        turn = 0
        while time.monotonic() < until:
            turn += 1
            mode = turn % 3
            if mode == 0:
                record(bl.is_blocked_many(batch))
            elif mode == 1:
                verdicts = bl.check_many(batch[:500])
                versions = {v.db_version for v in verdicts}
                if len(versions) != 1:
                    stats["calls"] += 1
                    stats["mixed"] += 1
                else:
                    record([v.blocked for v in verdicts], versions.pop())
            else:
                with bl.snapshot() as view:
                    answers = view.is_blocked_many(batch)
                    answers += [view.is_blocked(code) for code in batch[:200]]
                    record(answers, view.db_version)
    stats["versions"] = sorted(seen)
    print(json.dumps(stats), flush=True)
""")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(lmcz_fast.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _start(script: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=_env())
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"child did not start: {line!r}")
    return proc


@pytest.fixture()
def world(tmp_path: Path) -> dict:
    rng = random.Random(20261201)
    others = [make_identity(rng) for _ in range(20_000)]
    batch = [make_identity(rng) for _ in range(BATCH)]
    listing = tmp_path / "others.txt"
    listing.write_text("\n".join(others) + "\n")
    db = tmp_path / "db"
    with Blocklist.building(db) as bl:
        bl.load(listing)                # version 1: odd, none of the batch blocked
    with Blocklist.open(db, readonly=False) as bl:
        bl.mark_synced()
    batch_file = tmp_path / "batch.txt"
    batch_file.write_text("\n".join(make_scan(code, rng) for code in batch) + "\n")
    return {"db": db, "batch": batch, "batch_file": batch_file, "rng": rng, "tmp": tmp_path}


def test_every_call_answers_from_one_version_while_a_writer_commits(world: dict) -> None:
    db, batch_file, tmp = world["db"], world["batch_file"], world["tmp"]
    password = tmp / "password"
    password.write_text("s3cret-Pa55\n")
    stop = tmp / "stop"
    readers = [_start(READER, str(db), str(batch_file), str(SECONDS)) for _ in range(2)]
    service_stats = {"calls": 0, "mixed": 0, "misnamed": 0, "all_blocked": 0, "all_free": 0}
    service_versions: set[int] = set()
    writer = None
    commits = -1
    results: list[dict] = []
    try:
        with ServeProcess(db, password_file=password) as serve:
            writer = _start(WRITER, str(db), str(batch_file), str(stop))
            for reader in readers:
                assert reader.stdin is not None
                reader.stdin.write("go\n")
                reader.stdin.flush()
            client = Client(serve.port, auth_header(USER, "s3cret-Pa55"))
            scans = batch_file.read_text().split("\n")[:1000]
            until = time.monotonic() + SECONDS
            while time.monotonic() < until:
                status, _, body = client.check(scans)
                assert status == 200, body
                version = int(body["dbVersion"])   # a string, as typed clients declare it
                service_versions.add(version)
                # the answer names one version: every code, `version`, and tag 1265's Ver= are that version's
                assert body["tag1265"].endswith("&Ver=" + body["version"])
                answers = {code["isBlocked"] for code in body["codes"]}
                service_stats["calls"] += 1
                if len(answers) != 1:
                    service_stats["mixed"] += 1
                    continue
                blocked = answers.pop()
                service_stats["all_blocked" if blocked else "all_free"] += 1
                if blocked != (version % 2 == 0):
                    service_stats["misnamed"] += 1
            client.close()
            for reader in readers:
                out, _ = reader.communicate(timeout=60)
                assert reader.returncode == 0, out
                results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        stop.touch()
        if writer is not None:
            commits = int(writer.communicate(timeout=60)[0].strip().splitlines()[-1])
        for proc in readers:
            if proc.poll() is None:
                proc.kill()
    print(f"writer commits {commits}; readers {results}; service {service_stats}, "
          f"{len(service_versions)} versions")
    # the run was a real one: the writer moved the versions under the readers, who saw both states
    assert commits >= 20
    for stats in (*results, service_stats):
        assert stats["all_blocked"] > 0 and stats["all_free"] > 0, stats
        assert stats["mixed"] == 0 and stats["misnamed"] == 0, stats
    assert all(len(stats["versions"]) >= 5 for stats in results)
    assert len(service_versions) >= 5


def test_a_snapshot_keeps_its_version_while_the_blocklist_moves_on(world: dict) -> None:
    db, batch = world["db"], world["batch"]
    with Blocklist.open(db, readonly=False) as writer, Blocklist.open(db, refresh_interval=0.001) as reader:
        view = reader.snapshot()
        assert view.db_version == 1 and not any(view.is_blocked_many(batch))
        writer.apply_delta(add=batch, to_version=2)
        time.sleep(0.01)
        assert all(reader.is_blocked_many(batch))           # the blocklist renews before the call ...
        assert reader.check_many(batch[:3])[0].db_version == 2
        assert not any(view.is_blocked_many(batch))         # ... the snapshot never does
        assert [v.db_version for v in view.check_many(batch[:3])] == [1, 1, 1]
        assert not view.check(batch[0]).blocked and view.meta()["version"] == 1
        with reader.snapshot() as newer:
            assert newer.db_version == 2 and newer.check(batch[0]).blocked
        view.close()
        with pytest.raises(lmcz_fast.NotAttachedError):
            view.is_blocked(batch[0])
        kept = reader.snapshot()
    with pytest.raises(lmcz_fast.NotAttachedError):       # closing the blocklist closes its snapshots
        kept.is_blocked_many(batch)
    with pytest.raises(lmcz_fast.StoreError):
        kept.check(batch[0])


def test_check_many_names_a_bad_item_and_answers_nothing(world: dict) -> None:
    with Blocklist.open(world["db"]) as bl:
        with pytest.raises(lmcz_fast.CodeError) as info:
            bl.check_many([world["batch"][0], "junk", world["batch"][1]])
        assert info.value.index == 1 and "item 1" in str(info.value)
        assert bl.check_many([]) == []


def test_a_renewal_by_another_thread_inside_a_batch_does_not_mix_versions(world: dict) -> None:
    """The compiled batch holds the version it took: a `_confirm` callback that lets another thread (here: the
    callback itself) renew to a newer version changes nothing for the call in flight."""
    db, batch = world["db"], world["batch"]
    scans = world["batch_file"].read_text().split("\n")[:-1]
    with Blocklist.open(db, readonly=False) as writer:
        writer.apply_delta(add=batch, to_version=2)
        with Blocklist.open(db, refresh_interval=3600) as reader:
            assert reader.get_meta("version") == 2
            writer.apply_delta(remove=batch, to_version=3)
            reading = reader.versions.current
            calls = {"n": 0}
            original = type(reading)._confirm

            def confirm_and_renew(self, identity: bytes) -> bool:
                calls["n"] += 1
                if calls["n"] == 100:
                    reader._renew()         # another version attached in the middle of the call
                return original(self, identity)

            type(reading)._confirm = confirm_and_renew
            try:
                answers = reader.is_blocked_many(scans)
            finally:
                type(reading)._confirm = original
            assert calls["n"] >= 100 and answers == [True] * len(scans)
            assert reader.is_blocked_many(scans) == [False] * len(scans)    # the next call: the newer version
