"""Minimum prices and grey GTINs through the signed feed: format 2, snapshots and deltas, the digest, and the
refusal of formats and record kinds this version does not know (by name, with the store unchanged)."""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from pathlib import Path

import pytest
from _feed_support import content_digest, fast_identities, resign, write_list
from _store_support import gtin_with_check
from click.testing import CliRunner

from lmcz_fast import feed
from lmcz_fast.cli import main
from lmcz_fast.store import Blocklist

CODES = fast_identities(2000, seed=21)
G1 = gtin_with_check("0460043993125")
G2 = gtin_with_check("4601234567890")
G3 = gtin_with_check("4607777777777")


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return feed.write_keypair(tmp_path / "feed.key")


def state(db: Path) -> tuple[int, str, list[str]]:
    with Blocklist.open(db) as bl:
        info = bl.info()
        return info["version"], info["set_digest"], list(bl.iter_records())


def manifest(fd: Path) -> dict:
    return json.loads((fd / "manifest.json").read_text())


def newest(fd: Path, kind: str) -> Path:
    return sorted(fd.glob(f"{kind}-*.txt.gz"))[-1]


def rewrite(fd: Path, key: Path, path: Path, edit) -> None:
    """Change a feed file's text and sign a manifest naming its new size and SHA-256: a publisher that wrote it."""
    data = gzip.compress(edit(gzip.decompress(path.read_bytes()).decode()).encode(), mtime=0)
    path.write_bytes(data)

    def update(body: dict) -> None:
        for entry in (body["snapshot"], *body["deltas"]):
            if entry["path"] == path.name:
                entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())

    resign(fd, key, update)


def prices_csv(tmp_path: Path, rows: str) -> Path:
    path = tmp_path / f"prices-{time.monotonic_ns()}.csv"
    path.write_text("gtin,pg,price\n" + rows)
    return path


def grey_txt(tmp_path: Path, *gtins: str) -> Path:
    path = tmp_path / f"grey-{time.monotonic_ns()}.txt"
    path.write_text("".join(f"{g}\n" for g in gtins))
    return path


def test_a_feed_without_records_stays_format_1(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd = tmp_path / "feed"
    feed.publish(fd, key, snapshot=write_list(tmp_path / "in.txt", CODES[:100]))
    feed.publish(fd, key, snapshot=write_list(tmp_path / "in.txt", CODES[:120]))
    body = manifest(fd)
    assert body["format"] == body["signed"]["feed"] == "lmcz-feed/1" and "records" not in body["signed"]
    assert "records_added" not in body["signed"]["deltas"][0]
    assert gzip.decompress(newest(fd, "snapshot").read_bytes()).startswith(b"# lmcz-feed snapshot 1\n")
    assert gzip.decompress(newest(fd, "delta").read_bytes()).startswith(b"# lmcz-feed delta 1\n")


def test_prices_and_grey_travel_by_snapshot_and_by_delta(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, a, b = tmp_path / "feed", tmp_path / "a", tmp_path / "b"
    feed.publish(fd, key, snapshot=write_list(tmp_path / "in.txt", CODES[:1000], [G3]))
    assert feed.sync(a, str(fd), pub).action == "snapshot"

    report = feed.publish(fd, key, prices=prices_csv(tmp_path, f"{G1},,14630\n,3,12000\n"))
    assert report.format == "lmcz-feed/2" and (report.records, report.records_added) == (2, 2)
    body = manifest(fd)["signed"]
    assert body["feed"] == "lmcz-feed/2" and body["records"] == 2 == body["snapshot"]["records"]
    assert body["deltas"][-1]["records_added"] == 2 and body["codes"] == 1000
    synced = feed.sync(a, str(fd))                      # across the format change, by the delta
    assert (synced.action, synced.records_added) == ("delta", 2)
    assert feed.sync(b, str(fd), pub).action == "snapshot"
    for db in (a, b):
        version, digest, records = state(db)
        assert (version, digest) == (2, body["set_digest"]) == (2, content_digest(db))
        assert records == [f"min_price {G1} 14630", "group_min_price 3 12000"]

    # A changed price, a dropped group price, a grey list; codes change in the same version.
    feed.publish(fd, key, snapshot=write_list(tmp_path / "in.txt", CODES[5:1005], [G3]),
                 prices=prices_csv(tmp_path, f"{G1},,15000\n"), grey=grey_txt(tmp_path, G2))
    delta_text = gzip.decompress(newest(fd, "delta").read_bytes()).decode()
    assert f"-@min_price {G1} 14630\n" in delta_text and f"+@min_price {G1} 15000\n" in delta_text
    assert "-@group_min_price 3 12000\n" in delta_text and f"+@grey_gtin {G2}\n" in delta_text
    for db in (a, b):
        synced = feed.sync(db, str(fd))
        assert synced.action == "delta" and (synced.added, synced.removed) == (5, 5)
        version, digest, records = state(db)
        assert (version, digest) == (3, manifest(fd)["signed"]["set_digest"]) and digest == content_digest(db)
        assert records == [f"min_price {G1} 15000", f"grey_gtin {G2}"]
        with Blocklist.open(db) as bl:
            assert bl.min_price(G1) == 15000 and bl.min_price(G1, 3) == 15000 and bl.min_price(G2, 3) is None
            assert bl.is_grey_gtin(G2) and bl.is_blocked(CODES[5]) and not bl.is_blocked(CODES[0])

    # A codes-only publish keeps the tables (and the format: once 2, always 2).
    feed.publish(fd, key, snapshot=write_list(tmp_path / "in.txt", CODES[5:1006], [G3]))
    assert manifest(fd)["format"] == "lmcz-feed/2" and manifest(fd)["signed"]["records"] == 2
    assert feed.sync(a, str(fd)).action == "delta" and state(a)[2] == [f"min_price {G1} 15000", f"grey_gtin {G2}"]

    # A snapshot holds the records after the codes; a fresh store loads it whole.
    snap = feed.read_snapshot(newest(fd, "snapshot"))
    assert snap.records == [f"min_price {G1} 15000", f"grey_gtin {G2}"] and len(snap.identities) == 1001
    c = tmp_path / "c"
    with Blocklist.create(c) as bl:
        bl.load(newest(fd, "snapshot"), strict=True)
        assert list(bl.iter_records()) == snap.records and bl.info()["set_digest"] == state(a)[1]


def test_a_delta_input_changes_records_exactly(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    feed.publish(fd, key, snapshot=write_list(tmp_path / "in.txt", CODES[:50]),
                 prices=prices_csv(tmp_path, f"{G1},,100\n{G2},,200\n"))
    feed.sync(db, str(fd), pub)
    change = tmp_path / "change.txt"
    # +@ sets a key (the old value goes), -@ of a value not held is dropped, -@ of a held value deletes it.
    change.write_text(f"+@min_price {G1} 110\n-@min_price {G2} 999\n+@grey_gtin {G3}\n+{CODES[60]}\n")
    report = feed.publish(fd, key, delta=change)
    assert (report.records_added, report.records_removed, report.added) == (2, 1, 1)
    assert feed.sync(db, str(fd)).action == "delta"
    assert state(db)[2] == [f"min_price {G1} 110", f"min_price {G2} 200", f"grey_gtin {G3}"]
    change.write_text(f"-@min_price {G2} 200\n")
    feed.publish(fd, key, delta=change)
    feed.sync(db, str(fd))
    assert state(db)[2] == [f"min_price {G1} 110", f"grey_gtin {G3}"] and state(db)[1] == content_digest(db)


def test_bad_price_input_publishes_nothing(tmp_path: Path, keys) -> None:
    key, _ = keys
    fd = tmp_path / "feed"
    feed.publish(fd, key, snapshot=write_list(tmp_path / "in.txt", CODES[:50]))
    before = (fd / "manifest.json").read_bytes()
    for rows in (f"{G1},,12.5\n", f"{G1},,-3\n", f"{G1},,1\n{G1},,2\n", ",0,5\n"):
        with pytest.raises(feed.PublishError, match="nothing published"):
            feed.publish(fd, key, prices=prices_csv(tmp_path, rows))
    with pytest.raises(feed.PublishError, match="nothing published"):
        feed.publish(fd, key, grey=grey_txt(tmp_path, "04600439931257"))
    assert (fd / "manifest.json").read_bytes() == before


@pytest.mark.parametrize("where", ["delta", "snapshot"])
def test_an_unknown_record_kind_is_refused_by_name_and_nothing_changes(tmp_path: Path, keys, where) -> None:
    """A newer publisher's record kind, in a correctly signed file: the store refuses the whole feed, never
    applies the codes without it."""
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    feed.publish(fd, key, snapshot=write_list(tmp_path / "in.txt", CODES[:500]),
                 prices=prices_csv(tmp_path, f"{G1},,100\n"))
    feed.sync(db, str(fd), pub)
    before = state(db)
    feed.publish(fd, key, snapshot=write_list(tmp_path / "in.txt", CODES[:600]),
                 prices=prices_csv(tmp_path, f"{G1},,120\n"))
    if where == "delta":
        rewrite(fd, key, newest(fd, "delta"), lambda text: text + f"+@max_price {G1} 900\n")
        target = db
    else:
        def add_record(text: str) -> str:
            return text.replace("# records 1\n", "# records 2\n") + f"@max_price {G1} 900\n"

        rewrite(fd, key, newest(fd, "snapshot"), add_record)
        resign(fd, key, lambda body: body.update(records=2) or body["snapshot"].update(records=2))
        target = tmp_path / "fresh"
    with pytest.raises(feed.UnsupportedFeedError) as info:
        feed.sync(target, str(fd), pub)
    message = str(info.value)
    assert "'max_price'" in message and "upgrade lmcz-fast" in message and "nothing was changed" in message
    if where == "delta":
        assert state(db) == before and content_digest(db) == before[1]
    else:
        assert not target.exists()              # a failed first sync leaves no database at all


def test_a_newer_manifest_format_is_refused_by_name(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    feed.publish(fd, key, snapshot=write_list(tmp_path / "in.txt", CODES[:100]))
    feed.sync(db, str(fd), pub)
    before = state(db)
    feed.publish(fd, key, snapshot=write_list(tmp_path / "in.txt", CODES[:200]))
    resign(fd, key, lambda body: body.update(feed="lmcz-feed/3"))
    with pytest.raises(feed.UnsupportedFeedError, match=r"format lmcz-feed/3, newer than this version .* upgrade"):
        feed.sync(db, str(fd))
    assert state(db) == before
    with pytest.raises(feed.UnsupportedFeedError, match="format lmcz-feed/3"):
        feed.read_delta(b"# lmcz-feed delta 3\n# from 1\n# to 2\n+" + CODES[0].encode() + b"\n")
    with pytest.raises(feed.ManifestError):               # not a feed at all: not "upgrade"
        feed.parse_manifest(b'{"format": "something-else/1"}', pub)


def test_a_format_1_manifest_cannot_carry_records(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    feed.publish(fd, key, snapshot=write_list(tmp_path / "in.txt", CODES[:100]))
    resign(fd, key, lambda body: body.update(records=0))
    with pytest.raises(feed.ManifestError, match="cannot count table records"):
        feed.sync(db, str(fd), pub)


def test_the_manifest_must_count_the_snapshots_records(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    feed.publish(fd, key, snapshot=write_list(tmp_path / "in.txt", CODES[:100]),
                 prices=prices_csv(tmp_path, f"{G1},,100\n,3,50\n"))
    resign(fd, key, lambda body: body.update(records=1) or body["snapshot"].update(records=1))
    with pytest.raises(feed.IntegrityError, match="2 table records, the manifest says 1"):
        feed.sync(db, str(fd), pub)
    assert not db.exists()


def test_cli_publish_prices_and_grey_then_sync(tmp_path: Path) -> None:
    runner = CliRunner()
    key, fd, db = tmp_path / "feed.key", tmp_path / "feed", tmp_path / "store.db"
    assert runner.invoke(main, ["keygen", str(key)]).exit_code == 0
    listing = write_list(tmp_path / "blocked.txt", CODES[:100])
    (tmp_path / "min-prices.csv").write_text(f"gtin,price\n{G1},14630\n")
    grey_txt(tmp_path, G2).rename(tmp_path / "grey.txt")
    result = runner.invoke(main, ["publish", str(fd), "--key", str(key), "--snapshot", listing,
                                  "--prices", str(tmp_path / "min-prices.csv"), "--grey", str(tmp_path / "grey.txt")])
    assert result.exit_code == 0, result.output
    assert "2 table records" in result.output and "lmcz-feed/2" in result.output
    result = runner.invoke(main, ["sync", str(db), "--feed", str(fd), "--public-key", str(tmp_path / "feed.pub"),
                                  "--nice", "0"])
    assert result.exit_code == 0, result.output
    with Blocklist.open(db) as bl:
        assert bl.min_price(G1) == 14630 and bl.is_grey_gtin(G2) and bl.info()["codes"] == 100
    (tmp_path / "bad.csv").write_text(f"gtin,price\n{G1},146.30\n")
    result = runner.invoke(main, ["publish", str(fd), "--key", str(key), "--prices", str(tmp_path / "bad.csv")])
    assert result.exit_code != 0 and "whole number of kopecks" in result.output + result.stderr


def test_a_mirror_relays_format_2_unchanged(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, mirror_dir, db = tmp_path / "feed", tmp_path / "mirror", tmp_path / "db"
    feed.publish(fd, key, snapshot=write_list(tmp_path / "in.txt", CODES[:300]),
                 prices=prices_csv(tmp_path, f"{G1},,100\n"), grey=grey_txt(tmp_path, G2))
    report = feed.mirror(str(fd), mirror_dir, pub, db=db)
    assert report.store is not None and report.store.action == "snapshot"
    assert (mirror_dir / "manifest.json").read_bytes() == (fd / "manifest.json").read_bytes()
    assert state(db)[2] == [f"min_price {G1} 100", f"grey_gtin {G2}"] and state(db)[1] == content_digest(db)
