"""A feed sync or mirror killed with SIGKILL at random points leaves the old state or the new one, never a third
(moved from test_feed.py)."""

from __future__ import annotations

import hashlib
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _feed_support import content_digest, db_state, fast_identities, publish_set

from lmcz_fast import feed
from lmcz_fast.store import Blocklist


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return feed.write_keypair(tmp_path / "feed.key")


# -- kill -9 ------------------------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys, time
    from lmcz_fast import feed
    from lmcz_fast.store import Blocklist
    db, url = sys.argv[1], sys.argv[2]
    bl = Blocklist.open(db, readonly=False)
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    report = feed.sync(bl, url)
    print("done", report.action, time.perf_counter() - started, flush=True)
""")


def _run_child(db: Path, fd: Path, kill_after: float | None) -> str:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(fd)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        if kill_after is None:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            return out
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        return ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sync_killed_anywhere_leaves_old_or_new_state(tmp_path: Path, keys) -> None:
    key, pub = keys
    codes = fast_identities(60_000, seed=5)
    fd = tmp_path / "feed"
    publish_set(fd, key, codes[:40_000])
    base = {"empty": tmp_path / "base-empty", "delta": tmp_path / "base-delta"}
    Blocklist.create(base["empty"]).close()
    feed.sync(base["delta"], str(fd), pub)
    with Blocklist.open(base["empty"], readonly=False) as bl:
        bl.set_meta(feed_public_key=feed.public_key_text(feed.load_public_key(pub)))
    publish_set(fd, key, codes[5_000:45_000])
    new = publish_set(fd, key, codes[8_000:50_000])
    old = {kind: db_state(path) for kind, path in base.items()}

    durations = {}
    for kind, path in base.items():
        scratch = tmp_path / f"timing-{kind}"
        shutil.copytree(path, scratch)
        durations[kind] = float(_run_child(scratch, fd, None).split()[-1])
        assert db_state(scratch) == (3, new.set_digest)

    rng = random.Random(20261123)
    seen = {"old": 0, "new": 0}
    for iteration in range(24):
        kind = ("empty", "delta")[iteration % 2]
        target = tmp_path / f"run-{iteration}"
        shutil.copytree(base[kind], target)
        _run_child(target, fd, rng.uniform(0, durations[kind] * 1.2))
        state = db_state(target)
        assert state in (old[kind], (3, new.set_digest)), f"iteration {iteration} ({kind}): {state}"
        assert content_digest(target) == state[1]
        seen["old" if state == old[kind] else "new"] += 1
        if iteration % 6 == 5:
            feed.sync(target, str(fd))
            assert db_state(target) == (3, new.set_digest)
        shutil.rmtree(target)
    print(f"sync durations {durations}, outcomes after SIGKILL {seen}")
    assert seen["old"] and seen["new"], seen


MIRROR_CHILD = textwrap.dedent("""
    import sys
    from lmcz_fast import feed
    print("ready", flush=True)
    sys.stdin.readline()
    feed.mirror(sys.argv[1], sys.argv[2], sys.argv[3])
    print("done", flush=True)
""")


def test_mirror_killed_anywhere_serves_only_whole_verified_files(tmp_path: Path, keys) -> None:
    key, pub = keys
    codes = fast_identities(60_000, seed=9)
    fd, md = tmp_path / "feed", tmp_path / "mirror"
    publish_set(fd, key, codes[:40_000])
    feed.mirror(str(fd), md, pub)
    publish_set(fd, key, codes[10_000:50_000])
    rng = random.Random(4)
    for iteration in range(12):
        target = tmp_path / f"mirror-{iteration}"
        shutil.copytree(md, target)
        proc = subprocess.Popen([sys.executable, "-c", MIRROR_CHILD, str(fd), str(target), str(pub)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            proc.stdin.write("go\n")
            proc.stdin.flush()
            time.sleep(rng.uniform(0, 0.15))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        served = feed.parse_manifest((target / "manifest.json").read_bytes(), pub)
        assert served.version in (1, 2)
        for entry in served.files():
            data = (target / entry.path).read_bytes()
            assert len(data) == entry.size and hashlib.sha256(data).hexdigest() == entry.sha256
        store = tmp_path / f"store-{iteration}"
        assert feed.sync(store, str(target), pub).to_version == served.version
        feed.mirror(str(fd), target, pub)
        assert feed.sync(store, str(target)).to_version == 2
        shutil.rmtree(target)
        shutil.rmtree(store)
