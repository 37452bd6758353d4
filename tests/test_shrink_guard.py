"""The shrink guard (store/guard.py) on every full replacement: `load --replace`, a feed snapshot, and the
leftovers of killed first builds (store/leftovers.py)."""

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
from _feed_support import fast_identities, write_list
from click.testing import CliRunner

from lmcz_fast import feed
from lmcz_fast.cli import main
from lmcz_fast.store import Blocklist, ShrinkRefusedError, StoreError, guard, leftovers

CODES = fast_identities(2000, seed=21)


def _codes(db: Path) -> list[str]:
    with Blocklist.open(db) as bl:
        return sorted(bl.iter_identities())


def test_load_replace_that_shrinks_too_much_is_refused_until_accepted(tmp_path):
    db = tmp_path / "store.db"
    big, small = write_list(tmp_path / "big.txt", CODES), write_list(tmp_path / "small.txt", CODES[:1500])
    assert CliRunner().invoke(main, ["load", str(db), big]).exit_code == 0
    result = CliRunner().invoke(main, ["load", str(db), small])
    assert result.exit_code == 4 and "from 2,000 to 1,500 (25%" in result.output, result.output
    assert _codes(db) == CODES
    # A shrink within the limit goes through, and a refusal no longer stands after it.
    assert CliRunner().invoke(main, ["load", str(db), write_list(tmp_path / "s2.txt", CODES[:1700])]).exit_code == 0
    with Blocklist.open(db) as bl:
        assert guard.held(bl) is None and bl.info()["codes"] == 1700
    smaller = write_list(tmp_path / "smaller.txt", CODES[:1000])
    assert CliRunner().invoke(main, ["load", str(db), smaller]).exit_code == 4
    result = CliRunner().invoke(main, ["guard", str(db)])
    assert result.exit_code == 1 and "HELD" in result.output and "1,700 to 1,000" in result.output
    result = CliRunner().invoke(main, ["load", str(db), smaller, "--accept-shrink"])
    assert result.exit_code == 0, result.output
    assert _codes(db) == CODES[:1000]
    # Adding is never a replacement; the limit is the store's own.
    assert CliRunner().invoke(main, ["guard", str(db), "--limit", "60"]).exit_code == 0
    assert CliRunner().invoke(main, ["load", str(db), write_list(tmp_path / "s3.txt", CODES[:500])]).exit_code == 0
    assert json.loads(CliRunner().invoke(main, ["guard", str(db), "--json"]).output)["limit"] == 0.6


def test_the_acceptance_is_one_shot_and_logged(tmp_path, caplog):
    db = tmp_path / "store.db"
    with Blocklist.building(db) as bl:
        bl.load([CODES])
    with Blocklist.open(db, readonly=False) as bl:
        result = CliRunner().invoke(main, ["guard", str(db), "--accept", "--note", "CRPT unblocked half"])
        assert result.exit_code == 0 and "accepted" in result.output
        bl.load([CODES[:10]])                             # consumed here
        assert guard.state(bl)["accepted"] is None
        with pytest.raises(ShrinkRefusedError):
            bl.load([CODES[:1]])
        assert [*bl.iter_identities()] == sorted(CODES[:10])


def test_a_refused_table_replacement(tmp_path):
    """Minimum prices vanishing from a snapshot are a false "may be sold" too (a sale below the minimum)."""
    db = tmp_path / "store.db"
    records = [f"group_min_price {pg} {100 * pg}" for pg in range(1, 11)]
    with Blocklist.building(db) as bl:
        bl.load([CODES], records=records)
    with Blocklist.open(db, readonly=False) as bl:
        with pytest.raises(ShrinkRefusedError, match="table records from 10 to 2"):
            bl.load([CODES], records=records[:2])
        assert bl.info()["group_min_prices"] == 10
        bl.load([CODES[:1900]], records=records[:9])      # within the limit on both


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return feed.write_keypair(tmp_path / "feed.key")


def _publish(feed_dir: Path, key: Path, identities: list[str]):
    source = feed_dir.parent / f"input-{random.random()}.txt"
    try:
        return feed.publish(feed_dir, key, snapshot=write_list(source, identities), keep_deltas=0)
    finally:
        source.unlink()


def test_a_feed_snapshot_that_shrinks_too_much_is_refused(tmp_path, keys):
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    _publish(fd, key, CODES)
    feed.sync(db, str(fd), pub)
    _publish(fd, key, CODES[:100])                       # a publisher's accident
    with pytest.raises(ShrinkRefusedError):
        feed.sync(db, str(fd))
    with Blocklist.open(db) as bl:
        assert [*bl.iter_identities()] == CODES and guard.held(bl)["after"] == 100
    result = CliRunner().invoke(main, ["sync", str(db), "--feed", str(fd), "--nice", "0"])
    assert result.exit_code == 4 and "would shrink" in result.output, result.output
    assert CliRunner().invoke(main, ["guard", str(db), "--accept"]).exit_code == 0
    assert feed.sync(db, str(fd)).action == "snapshot"
    assert _codes(db) == CODES[:100]


_BUILDER = textwrap.dedent("""
    import sys, time
    from lmcz_fast.store import Blocklist
    with Blocklist.building(sys.argv[1]) as bl:
        print("building", flush=True)
        time.sleep(600)
""")


def test_a_killed_first_build_is_swept_once_its_builder_is_gone(tmp_path):
    db = tmp_path / "store.db"
    proc = subprocess.Popen([sys.executable, "-c", _BUILDER, str(db)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONSAFEPATH="1"))
    try:
        assert proc.stdout.readline().strip() == "building"
        [work] = list(tmp_path.glob(".store.db.*.building"))
        old = time.time() - 3600
        os.utime(work, (old, old))                        # old enough: only the builder's lock protects it
        assert leftovers.sweep(str(db)) == [] and work.exists()
    finally:
        proc.kill()
        proc.wait(10)
    # Younger than the grace period: kept (a builder that made its directory may not hold the lock yet).
    os.utime(work, None)
    assert leftovers.sweep(str(db)) == [] and work.exists()
    os.utime(work, (old, old))
    # The next build removes it, and builds.
    with Blocklist.building(db) as bl:
        bl.load([CODES[:5]])
    assert not work.exists() and _codes(db) == CODES[:5]
    assert list(tmp_path.glob(".store.db.*.building")) == []


def test_a_building_directory_whose_environment_is_open_is_never_swept(tmp_path):
    """A builder of an older version holds no flock; LMDB's own lock on lock.mdb says it is alive."""
    db = tmp_path / "store.db"
    work = tmp_path / ".store.db.abc123.building"
    code = textwrap.dedent("""
        import sys, time
        from lmcz_fast.store import Blocklist
        bl = Blocklist.create(sys.argv[1])
        print("open", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(work)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONSAFEPATH="1"))
    try:
        assert proc.stdout.readline().strip() == "open"
        old = time.time() - 3600
        os.utime(work, (old, old))
        assert leftovers.sweep(str(db)) == [] and work.exists()
    finally:
        proc.kill()
        proc.wait(10)
    assert leftovers.sweep(str(db)) == [str(work)] and not work.exists()


def test_a_bad_limit_is_refused(tmp_path):
    db = tmp_path / "store.db"
    with Blocklist.building(db) as bl:
        bl.load([CODES[:3]])
    with Blocklist.open(db, readonly=False) as bl:
        with pytest.raises(StoreError):
            guard.set_limit(bl, 1.5)
    assert CliRunner().invoke(main, ["guard", str(db), "--limit", "150"]).exit_code == 2
