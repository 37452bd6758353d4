"""The signed feed through the local file system: publish, sync (snapshots, deltas, GTIN blocks, codes that collide),
the files read by the store tools, the mirror and the keys. Refusals: test_feed_refusals.py; the CLI and the
daemon's SIGTERM: test_feed_cli.py; a sync or mirror killed with SIGKILL at random points: test_feed_kill.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _feed_support import (_flip_last_byte, _newest, content_digest, db_state, fast_identities,
                           publish_set)
from _store_support import colliding_pairs, gtin_with_check
from click.testing import CliRunner

from lmcz_fast import feed
from lmcz_fast.store import Blocklist

GTIN = gtin_with_check("4600000000001")
CODES = fast_identities(3000, seed=11)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return feed.write_keypair(tmp_path / "feed.key")


def test_snapshot_then_deltas(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    first = publish_set(fd, key, CODES[:2000], [GTIN])
    assert first.action == "created" and first.version == 1

    report = feed.sync(db, str(fd), pub)
    assert (report.action, report.to_version) == ("snapshot", 1)
    assert db_state(db) == (1, first.set_digest) and content_digest(db) == first.set_digest

    publish_set(fd, key, CODES[100:2100], [GTIN])
    report = feed.sync(db, str(fd))
    assert (report.action, report.added, report.removed) == ("delta", 100, 100)

    publish_set(fd, key, CODES[150:2300])
    last = publish_set(fd, key, CODES[150:2200] + CODES[:50])
    report = feed.sync(db, str(fd))
    assert report.action == "delta" and len(report.files) == 2 and report.to_version == 4
    assert db_state(db) == (4, last.set_digest) and content_digest(db) == last.set_digest
    with Blocklist.open(db) as bl:
        assert list(bl.iter_identities()) == sorted(CODES[150:2200] + CODES[:50])
        assert bl.is_blocked(CODES[0]) and not bl.is_blocked(CODES[2250])
        assert bl.get_meta("feed_url") == fd.resolve().as_uri() + "/"
        assert bl.status().state == "ready"

    assert feed.sync(db, str(fd)).action == "up-to-date"


def test_far_behind_loads_the_snapshot(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    publish_set(fd, key, CODES[:1000], keep_deltas=1)
    feed.sync(db, str(fd), pub)
    publish_set(fd, key, CODES[:1100], keep_deltas=1)
    last = publish_set(fd, key, CODES[:1200], keep_deltas=1)
    report = feed.sync(db, str(fd))
    assert report.action == "snapshot" and "no delta chain from version 1" in report.reason
    assert db_state(db) == (3, last.set_digest)


def test_gtin_blocks_travel_through_deltas(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    code_of_gtin = f"01{GTIN}21SERIAL1"
    publish_set(fd, key, CODES[:100])
    feed.sync(db, str(fd), pub)
    delta = tmp_path / "d.txt"
    delta.write_text(f"+{GTIN}\n-{CODES[0]}\n")
    feed.publish(fd, key, delta=delta)
    report = feed.sync(db, str(fd))
    assert report.action == "delta"
    assert (report.added, report.removed, report.gtins_added, report.gtins_removed) == (0, 1, 1, 0)
    assert "-1 codes, +1 -0 GTINs" in report.summary()
    with Blocklist.open(db) as bl:
        assert bl.is_blocked(code_of_gtin) and not bl.is_blocked(CODES[0])
        assert list(bl.iter_gtins()) == [GTIN]
    delta.write_text(f"-{GTIN}\n")
    feed.publish(fd, key, delta=delta)
    report = feed.sync(db, str(fd))
    assert (report.gtins_added, report.gtins_removed) == (0, 1) and "+0 -1 GTINs" in report.summary()
    delta.write_text(f"+{GTIN}\n")
    feed.publish(fd, key, delta=delta)
    report = feed.sync(tmp_path / "fresh", str(fd), pub)
    assert (report.action, report.added, report.gtins_added) == ("snapshot", 99, 1)
    assert "99 codes, 1 GTINs" in report.summary()


def test_deltas_that_cancel_out_still_bring_the_store_to_the_feeds_version(tmp_path: Path, keys) -> None:
    """A store composes the chain into one delta; +X then -X composes to nothing, and the store must still reach
    the manifest's version (an empty delta keeps the version only outside a feed)."""
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    publish_set(fd, key, CODES[:100], [GTIN])
    feed.sync(db, str(fd), pub)
    publish_set(fd, key, CODES[:101])
    last = publish_set(fd, key, CODES[:100], [GTIN])
    report = feed.sync(db, str(fd))
    assert (report.action, report.from_version, report.to_version, len(report.files)) == ("delta", 1, 3, 2)
    assert (report.added, report.removed) == (0, 0)
    assert db_state(db) == (3, last.set_digest)
    assert feed.sync(db, str(fd)).action == "up-to-date"


def test_serials_that_look_like_a_lost_gs_travel_whole(tmp_path: Path, keys) -> None:
    """A 13-character serial ending in 93 + 4 characters is a CIS, not a short serial with a lost GS: the
    publisher, the delta files and the store must all keep it whole."""
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    tricky = f"01{GTIN}210bCgeWk93wGHR"
    publish_set(fd, key, CODES[:100] + [tricky])
    feed.sync(db, str(fd), pub)
    delta = tmp_path / "d.txt"
    delta.write_text(f"-{tricky}\n+{tricky}X\n")
    report = feed.publish(fd, key, delta=delta)
    assert (report.added, report.removed) == (1, 1)
    assert feed.sync(db, str(fd)).action == "delta"
    with Blocklist.open(db) as bl:
        identities = set(bl.iter_identities())
    assert tricky not in identities and f"{tricky}X" in identities and len(identities) == 101


def test_removal_never_unblocks_a_colliding_code(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    (a, b), = colliding_pairs(1)
    publish_set(fd, key, CODES[:200] + [a, b])
    feed.sync(db, str(fd), pub)
    publish_set(fd, key, CODES[:200] + [b])
    assert feed.sync(db, str(fd)).action == "delta"
    with Blocklist.open(db) as bl:
        assert bl.is_blocked(b) and not bl.is_blocked(a)


def test_publish_delta_heartbeat_and_pruning(tmp_path: Path, keys) -> None:
    key, _ = keys
    fd = tmp_path / "feed"
    publish_set(fd, key, CODES[:500], now=100)
    delta = tmp_path / "d.txt"
    delta.write_text("".join(f"+{c}\n" for c in CODES[500:510]) + f"-{CODES[0]}\n")
    report = feed.publish(fd, key, delta=delta, now=200)
    assert (report.version, report.added, report.removed, report.codes) == (2, 10, 1, 509)
    beat = feed.publish(fd, key, now=300)
    assert (beat.action, beat.version, beat.published_at) == ("refreshed", 2, 300)
    publish_set(fd, key, CODES[:400], now=400)
    publish_set(fd, key, CODES[:300], now=500, keep_deltas=2)
    names = sorted(p.name for p in fd.iterdir())
    assert names == ["delta-00000001-00000002.txt.gz", "delta-00000002-00000003.txt.gz",
                     "delta-00000003-00000004.txt.gz", "manifest.json", "snapshot-00000003.txt.gz",
                     "snapshot-00000004.txt.gz"]
    assert [d["path"] for d in json.loads((fd / "manifest.json").read_text())["signed"]["deltas"]] == names[1:3]
    snapshot = feed.read_snapshot(fd / "snapshot-00000004.txt.gz")
    assert snapshot.identities == CODES[:300]
    with pytest.raises(feed.PublishError, match="forward"):
        publish_set(fd, key, CODES[:10], version=4)
    bad = tmp_path / "bad.txt"
    bad.write_text("not a code\n")
    with pytest.raises(feed.PublishError, match="bad input"):
        feed.publish(fd, key, snapshot=str(bad))
    assert json.loads((fd / "manifest.json").read_text())["signed"]["version"] == 4


def test_feed_files_load_with_the_store_tools(tmp_path: Path, keys) -> None:
    """A snapshot is a plain load file and a delta a plain delta file: no feed code needed to use them."""
    key, _ = keys
    fd = tmp_path / "feed"
    publish_set(fd, key, CODES[:300], [GTIN])
    last = publish_set(fd, key, CODES[50:350])
    with Blocklist.create(tmp_path / "db") as bl:
        bl.load(str(fd / "snapshot-00000001.txt.gz"), strict=True, version=1)
        delta = feed.read_delta(fd / "delta-00000001-00000002.txt.gz")
        bl.apply_delta(delta.add, delta.remove, add_gtins=delta.add_gtins, remove_gtins=delta.remove_gtins,
                       from_version=1, to_version=2)
        assert bl.info()["set_digest"] == last.set_digest


def test_file_parsers_refuse_malformed_content() -> None:
    good = f"# lmcz-feed snapshot 1\n# version 3\n# codes 1\n# gtins 1\n{GTIN}\n{CODES[0]}\n".encode()
    assert feed.read_snapshot(good).identities == [CODES[0]]
    for bad in (good.replace(b"# codes 1", b"# codes 2"), good.replace(b"# gtins 1", b"# gtins 0"),
                good.replace(b"# lmcz-feed snapshot 1\n", b""), b"\x1f\x8b not gzip"):
        with pytest.raises(feed.IntegrityError):
            feed.read_snapshot(bad)
    assert feed.read_delta(f"+{CODES[0]}\n-{GTIN}\n".encode()).remove_gtins == [GTIN]
    for bad in (f"{CODES[0]}\n", f"+{CODES[0]}\n-{CODES[0]}\n", "+\n"):
        with pytest.raises(feed.IntegrityError):
            feed.read_delta(bad.encode())


def test_a_delta_line_with_a_gs_is_read_whole(tmp_path: Path) -> None:
    """Issue 18 (minor): a `+SCAN` line whose scan holds a GS (0x1D, the separator of a GS1 element string) was
    split at the GS by str.splitlines(): the tail became a line of its own, refused with a line number one past the
    real one (and every later number shifted). `load` reads the same line whole; so does a delta now."""
    scan = f"01{GTIN}21ABCdef1234567\x1d93dGVz"
    with pytest.raises(feed.IntegrityError, match="delta line 4: .* got 'not a line'"):
        feed.read_delta(f"# a hand-written delta\n+{scan}\n-{CODES[1]}\nnot a line\n".encode())
    delta = feed.read_delta(f"# a hand-written delta\n+{scan}\n-{CODES[1]}\n".encode())
    assert delta.add == [scan] and delta.remove == [CODES[1]]
    # the store applies it as `load` reads the same scan: the code's identity is blocked
    db = tmp_path / "db"
    listed = tmp_path / "list.txt"
    listed.write_text(f"{CODES[1]}\n")
    with Blocklist.create(db) as bl:
        bl.load([str(listed)])
    changes = tmp_path / "changes.txt"
    changes.write_text(f"+{scan}\n-{CODES[1]}\n")
    from lmcz_fast.cli import main
    result = CliRunner().invoke(main, ["delta", str(db), str(changes)])
    assert result.exit_code == 0, result.output
    with Blocklist.open(db) as bl:
        assert bl.is_blocked(scan) and bl.is_blocked(f"01{GTIN}21ABCdef1234567")
        assert not bl.is_blocked(CODES[1])


def test_local_mirror(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, md = tmp_path / "feed", tmp_path / "mirror"
    publish_set(fd, key, CODES[:1000])
    report = feed.mirror(str(fd), md, pub, db=tmp_path / "mirror.db")
    assert report.action == "updated" and report.store.action == "snapshot"
    assert (md / "manifest.json").read_bytes() == (fd / "manifest.json").read_bytes()
    publish_set(fd, key, CODES[:1100])
    again = feed.mirror(str(fd), md, pub, db=tmp_path / "mirror.db")
    assert again.fetched == ("snapshot-00000002.txt.gz", "delta-00000001-00000002.txt.gz")
    assert again.store.action == "delta"
    assert feed.mirror(str(fd), md, pub).action == "up-to-date"
    store = tmp_path / "store.db"
    feed.sync(store, str(md), pub)
    assert db_state(store) == db_state(tmp_path / "mirror.db")

    publish_set(fd, key, CODES[:1200])
    _flip_last_byte(_newest(fd, "delta"))
    with pytest.raises(feed.IntegrityError):
        feed.mirror(str(fd), md, pub)
    assert json.loads((md / "manifest.json").read_text())["signed"]["version"] == 2


def test_keys_round_trip(tmp_path: Path) -> None:
    priv, pub = feed.write_keypair(tmp_path / "k.pem")
    assert oct(priv.stat().st_mode & 0o777) == "0o600"
    key = feed.load_private_key(priv)
    text = pub.read_text().strip()
    assert feed.public_key_text(feed.load_public_key(pub)) == text == feed.public_key_text(key)
    assert feed.public_key_text(feed.load_public_key(text)) == text
    with pytest.raises(FileExistsError):
        feed.write_keypair(tmp_path / "k.pem")
    with pytest.raises(feed.FeedError):
        feed.load_public_key("not a key")
