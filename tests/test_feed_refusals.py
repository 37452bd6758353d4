"""The signed feed's refusals, each with the store left as it was: damaged, replayed, out-of-order and expired files
and manifests, a manifest signed years ahead (moved from test_feed.py)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from _feed_support import _flip_last_byte, _newest, content_digest, fast_identities, full_state, publish_set, resign

from lmcz_fast import feed
from lmcz_fast.store import Blocklist

CODES = fast_identities(3000, seed=11)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return feed.write_keypair(tmp_path / "feed.key")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


@pytest.mark.parametrize("damage, error", [
    (lambda fd, key, other: _flip_last_byte(_newest(fd, "delta")), feed.IntegrityError),
    (lambda fd, key, other: _truncate(_newest(fd, "delta")), feed.IntegrityError),
    (lambda fd, key, other: (_newest(fd, "delta").unlink(), _newest(fd, "snapshot").unlink()), feed.FeedUnavailable),
    (lambda fd, key, other: resign(fd, other, lambda body: None), feed.SignatureError),
    (lambda fd, key, other: resign(fd, key, lambda body: None) or _edit_raw(fd, '"version": 2', '"version": 3'),
     feed.SignatureError),
    (lambda fd, key, other: resign(fd, key, lambda body: body["deltas"][-1].update(size=5)), feed.IntegrityError),
    (lambda fd, key, other: resign(fd, key, lambda body: body.update(set_digest="0" * 32)), feed.ManifestError),
    (lambda fd, key, other: resign(fd, key, lambda body: body.update(feed_id="other")), feed.ManifestError),
    (lambda fd, key, other: (fd / "manifest.json").write_text('{"format": "lmcz-feed/1", "signed": {'),
     feed.ManifestError),
    (lambda fd, key, other: resign(fd, key, lambda body: body.update(expires_at=body["published_at"] - 1)),
     feed.ExpiredManifestError),
], ids=["flipped-delta", "truncated-delta", "missing-files", "wrong-key", "edited-after-signing",
        "wrong-size-signed", "digest-mismatch", "other-feed", "broken-json", "expired"])
def test_damaged_feed_leaves_the_store_unchanged(tmp_path: Path, keys, damage, error) -> None:
    key, pub = keys
    other_key, _ = feed.write_keypair(tmp_path / "other.key")
    fd, db = tmp_path / "feed", tmp_path / "db"
    publish_set(fd, key, CODES[:1000])
    feed.sync(db, str(fd), pub, now=time.time())
    before = full_state(db)
    publish_set(fd, key, CODES[10:1010])
    damage(fd, key, other_key)
    with pytest.raises(error):
        feed.sync(db, str(fd), retry=feed.RetryPolicy(attempts=2, base_delay=0.001))
    assert full_state(db) == before and content_digest(db) == before[1]


def _edit_raw(fd: Path, old: str, new: str) -> None:
    path = fd / "manifest.json"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_damaged_snapshot_refused_on_a_fresh_store(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    publish_set(fd, key, CODES[:1000])
    _flip_last_byte(_newest(fd, "snapshot"))
    with pytest.raises(feed.IntegrityError):
        feed.sync(db, str(fd), pub)
    # A failed first sync leaves no database (issue 11): not even an empty one that `lookup` would open.
    assert not db.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feed", "feed.key", "feed.pub"]


def test_replayed_manifests_are_refused(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    publish_set(fd, key, CODES[:1000], now=1_000_000)
    old_manifest = (fd / "manifest.json").read_bytes()
    publish_set(fd, key, CODES[:1100], now=1_000_100)
    feed.sync(db, str(fd), pub, now=1_000_200)
    before = full_state(db)

    (fd / "manifest.json").write_bytes(old_manifest)
    with pytest.raises(feed.ReplayError, match="already holds 2"):
        feed.sync(db, str(fd), now=1_000_300)
    assert full_state(db) == before

    publish_set(fd, key, CODES[:1100], now=1_000_400)
    assert feed.sync(db, str(fd), now=1_000_500).action == "up-to-date"
    (fd / "manifest.json").write_bytes(old_manifest)
    publish_set(fd, key, CODES[:1100], now=1_000_150, version=2)
    with pytest.raises(feed.ReplayError, match="before the one"):
        feed.sync(db, str(fd), now=1_000_600)

    forked = tmp_path / "forked"
    publish_set(forked, key, CODES[:900], now=1_000_000)
    publish_set(forked, key, CODES[:950], now=1_000_900)
    with pytest.raises(feed.ReplayError, match="under that version"):
        feed.sync(db, str(forked), now=1_001_000)
    assert full_state(db)[:2] == before[:2]


TEN_YEARS = 10 * 365 * 86400


def test_a_manifest_signed_years_ahead_freezes_nothing(tmp_path: Path, keys) -> None:
    """Issue 18, item 5: one manifest signed by a publisher's clock ten years ahead. Before: a store and a mirror
    applied it, recorded its signing time, and refused every real manifest after it as a replay (and after the
    offline limit the store refused checks). Now: it is refused at the door (more than `MAX_AHEAD` ahead), nothing
    recorded; and a store that did record one (an older version, or its own clock was as wrong) takes the next
    version, which is ordered by version first, then signing time: the publisher's documented way out."""
    key, pub = keys
    fd, db, mirror_dir = tmp_path / "feed", tmp_path / "db", tmp_path / "mirror"
    t = 1_800_000_000
    publish_set(fd, key, CODES[:1000], now=t)
    feed.sync(db, str(fd), pub, now=t + 10)
    feed.mirror(str(fd), mirror_dir, pub, now=t + 10)
    before = full_state(db)

    publish_set(fd, key, CODES[:1100], now=t + TEN_YEARS)
    with pytest.raises(feed.FutureManifestError, match="ahead of this machine's clock"):
        feed.sync(db, str(fd), now=t + 20)
    with pytest.raises(feed.FutureManifestError):
        feed.mirror(str(fd), mirror_dir, pub, now=t + 20)
    assert full_state(db) == before
    with Blocklist.open(db) as bl:
        assert bl.get_meta("feed_published_at") == t
    # within the tolerance (a clock a few hours off) a manifest is taken as usual
    assert feed.MAX_AHEAD >= 12 * 3600
    # the publisher's clock is right again: a heartbeat of the same version signed "earlier" is refused, by name
    with pytest.raises(feed.PublishError, match="--version 3"):
        feed.publish(fd, key, now=t + 30)
    report = feed.publish(fd, key, now=t + 30, version=3)
    assert (report.action, report.version, report.published_at) == ("updated", 3, t + 30)
    assert feed.sync(db, str(fd), now=t + 40).to_version == 3
    assert feed.mirror(str(fd), mirror_dir, pub, now=t + 40) is not None
    assert full_state(db)[0] == 3

    # A store that recorded a manifest signed ten years ahead (its own clock was as far ahead then) is not frozen:
    # the next version is applied although it is signed "before" the one it holds.
    frozen = tmp_path / "frozen"
    fd2 = tmp_path / "feed2"
    publish_set(fd2, key, CODES[:500], now=t + TEN_YEARS)
    feed.sync(frozen, str(fd2), pub, now=t + TEN_YEARS + 10)
    with Blocklist.open(frozen) as bl:
        assert bl.get_meta("feed_published_at") == t + TEN_YEARS
    publish_set(fd2, key, CODES[:600], now=t + 50, version=2)
    report = feed.sync(frozen, str(fd2), now=t + 60)
    assert (report.action, report.to_version) in {("delta", 2), ("snapshot", 2)}
    with Blocklist.open(frozen) as bl:
        assert bl.get_meta("feed_published_at") == t + 50
        assert bl.status(now=t + 70).state == "ready"
    feed.publish(fd2, key, now=t + 70)       # the heartbeat goes on from the corrected clock
    assert feed.sync(frozen, str(fd2), now=t + 80).action == "up-to-date"


def test_out_of_order_files_are_refused(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    publish_set(fd, key, CODES[:1000])
    feed.sync(db, str(fd), pub)
    for n in range(3):
        publish_set(fd, key, CODES[:1000 + 10 * (n + 1)])
    before = full_state(db)

    manifest = json.loads((fd / "manifest.json").read_text())["signed"]
    first, second = manifest["deltas"][0], manifest["deltas"][1]
    swapped = {k: second[k] for k in ("path", "size", "sha256")}
    resign(fd, key, lambda body: body["deltas"][0].update(swapped))
    with pytest.raises(feed.ManifestError, match="names one file twice"):
        feed.sync(db, str(fd))

    resign(fd, key, lambda body: body["deltas"][0].update({**swapped, "path": first["path"]}))
    shutil.copy(fd / second["path"], fd / first["path"])
    with pytest.raises(feed.IntegrityError, match="header says 2->3"):
        feed.sync(db, str(fd))

    resign(fd, key, lambda body: body.update(deltas=body["deltas"][::-1]))
    with pytest.raises(feed.ManifestError, match="out of order"):
        feed.sync(db, str(fd))
    assert full_state(db) == before


def test_expired_manifest_is_not_a_sync(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    report = publish_set(fd, key, CODES[:100], now=2_000_000, valid_for=3600)
    with pytest.raises(feed.ExpiredManifestError):
        feed.sync(db, str(fd), pub, now=report.expires_at + 1)
    assert not db.exists()
    feed.sync(db, str(fd), pub, now=report.expires_at - 1)
    with Blocklist.open(db) as bl:
        assert bl.status(now=report.expires_at + 3 * 3600).state == "stale"
        assert bl.status(now=report.expires_at + 73 * 3600).state == "expired"
