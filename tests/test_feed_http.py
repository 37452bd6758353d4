"""The feed over real HTTP on loopback (Python's http.server, and Debian's nginx where installed): sync, retries,
cut transfers, refusals, and a chain mirror: one upstream pull, several stores syncing from the mirror."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from _feed_support import FeedServer, NginxServer, content_digest, db_state, fast_identities, write_list

from lmcz_fast import feed

CODES = fast_identities(4000, seed=23)
FAST_RETRY = feed.RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, timeout=5)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return feed.write_keypair(tmp_path / "feed.key")


def publish_set(feed_dir: Path, key: Path, identities: list[str]) -> feed.PublishReport:
    source = feed_dir.parent / f"input-{random.random()}.txt"
    try:
        return feed.publish(feed_dir, key, snapshot=write_list(source, identities))
    finally:
        source.unlink()


def data_requests(server: FeedServer) -> list[str]:
    return [name for name in server.requests if name != "manifest.json"]


def test_http_snapshot_then_delta(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    publish_set(fd, key, CODES[:3000])
    with FeedServer(fd) as server:
        first = feed.sync(db, server.url, pub, retry=FAST_RETRY)
        last = publish_set(fd, key, CODES[500:3500])
        second = feed.sync(db, server.url, retry=FAST_RETRY)
        third = feed.sync(db, server.url, retry=FAST_RETRY)
    assert (first.action, second.action, third.action) == ("snapshot", "delta", "up-to-date")
    assert second.downloaded_bytes < first.downloaded_bytes
    assert db_state(db) == (2, last.set_digest) and content_digest(db) == last.set_digest
    assert server.requests == ["manifest.json", "snapshot-00000001.txt.gz",
                               "manifest.json", "delta-00000001-00000002.txt.gz", "manifest.json"]


def test_retries_through_server_errors(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    report = publish_set(fd, key, CODES[:1000])
    with FeedServer(fd, fail_first=3) as server:
        feed.sync(db, server.url, pub, retry=FAST_RETRY)
    assert server.requests[:4] == ["manifest.json"] * 4
    assert db_state(db) == (1, report.set_digest)


def test_gives_up_after_the_attempts_and_changes_nothing(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    publish_set(fd, key, CODES[:1000])
    with FeedServer(fd) as server:
        feed.sync(db, server.url, pub, retry=FAST_RETRY)
    before = db_state(db)
    publish_set(fd, key, CODES[:1100])
    with FeedServer(fd, fail_first=50, fail_status=502) as server:
        with pytest.raises(feed.FeedUnavailable, match="gave up after 4 attempts"):
            feed.sync(db, server.url, retry=FAST_RETRY)
    assert len(server.requests) == 4
    assert db_state(db) == before


def test_cut_transfers_are_retried_never_applied(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    report = publish_set(fd, key, CODES[:3000])
    with FeedServer(fd, truncate_first=2) as server:
        feed.sync(db, server.url, pub, retry=FAST_RETRY)
    assert data_requests(server) == ["snapshot-00000001.txt.gz"] * 3
    assert db_state(db) == (1, report.set_digest)


def test_missing_manifest_is_not_retried(tmp_path: Path, keys) -> None:
    _, pub = keys
    (tmp_path / "empty").mkdir()
    with FeedServer(tmp_path / "empty") as server:
        with pytest.raises(feed.FeedUnavailable, match="HTTP 404"):
            feed.sync(tmp_path / "db", server.url, pub, retry=FAST_RETRY)
    assert server.requests == ["manifest.json"]


def test_tampered_file_over_http(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    publish_set(fd, key, CODES[:1000])
    with FeedServer(fd) as server:
        feed.sync(db, server.url, pub, retry=FAST_RETRY)
        before = db_state(db)
        publish_set(fd, key, CODES[:1200])
        delta = next(fd.glob("delta-*.txt.gz"))
        delta.write_bytes(delta.read_bytes()[::-1])
        with pytest.raises(feed.IntegrityError, match="SHA-256"):
            feed.sync(db, server.url, retry=FAST_RETRY)
    assert db_state(db) == before


def test_chain_mirror_one_upstream_pull_many_stores(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, md = tmp_path / "feed", _mkdir(tmp_path / "mirror")
    stores = [tmp_path / f"store-{n}" for n in range(4)]
    publish_set(fd, key, CODES[:3000])
    with FeedServer(fd) as upstream, FeedServer(md) as mirror_http:
        first = feed.mirror(upstream.url, md, pub, db=tmp_path / "mirror.db", retry=FAST_RETRY)
        assert first.action == "updated" and first.store.action == "snapshot"
        for store in stores:
            assert feed.sync(store, mirror_http.url, pub, retry=FAST_RETRY).action == "snapshot"
        assert upstream.requests == ["manifest.json", "snapshot-00000001.txt.gz"]

        last = publish_set(fd, key, CODES[200:3300])
        second = feed.mirror(upstream.url, md, pub, db=tmp_path / "mirror.db", retry=FAST_RETRY)
        assert second.fetched == ("snapshot-00000002.txt.gz", "delta-00000001-00000002.txt.gz")
        for store in stores:
            report = feed.sync(store, mirror_http.url, retry=FAST_RETRY)
            assert report.action == "delta" and report.files == ("delta-00000001-00000002.txt.gz",)
        assert feed.mirror(upstream.url, md, pub, retry=FAST_RETRY).action == "up-to-date"
        assert data_requests(upstream) == ["snapshot-00000001.txt.gz", "snapshot-00000002.txt.gz",
                                           "delta-00000001-00000002.txt.gz"]
        assert mirror_http.requests.count("delta-00000001-00000002.txt.gz") == len(stores)

    assert (md / "manifest.json").read_bytes() == (fd / "manifest.json").read_bytes()
    for db in [*stores, tmp_path / "mirror.db"]:
        assert db_state(db) == (2, last.set_digest)


def _nginx(directory: Path) -> NginxServer:
    try:
        return NginxServer(directory)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def test_chain_mirror_behind_nginx(tmp_path: Path, keys) -> None:
    """Upstream feed and mirror both served by nginx, unchanged static files: one upstream pull per file, the
    stores sync from the mirror, and everyone ends with the publisher's digest."""
    key, pub = keys
    fd, md = tmp_path / "feed", _mkdir(tmp_path / "mirror")
    stores = [tmp_path / f"store-{n}" for n in range(3)]
    publish_set(fd, key, CODES[:3000])
    with _nginx(fd) as upstream, _nginx(md) as mirror_http:
        assert feed.mirror(upstream.url, md, pub, retry=FAST_RETRY).action == "updated"
        for store in stores:
            assert feed.sync(store, mirror_http.url, pub, retry=FAST_RETRY).action == "snapshot"
        last = publish_set(fd, key, CODES[300:3400])
        assert feed.mirror(upstream.url, md, pub, retry=FAST_RETRY).action == "updated"
        for store in stores:
            report = feed.sync(store, mirror_http.url, retry=FAST_RETRY)
            assert report.action == "delta" and report.files == ("delta-00000001-00000002.txt.gz",)
        upstream_data = [name for name in upstream.requests if name != "manifest.json"]
        mirror_data = [name for name in mirror_http.requests if name != "manifest.json"]
    assert upstream_data == ["snapshot-00000001.txt.gz", "snapshot-00000002.txt.gz",
                             "delta-00000001-00000002.txt.gz"]
    assert mirror_data.count("delta-00000001-00000002.txt.gz") == len(stores)
    assert mirror_data.count("snapshot-00000001.txt.gz") == len(stores)
    for db in stores:
        assert db_state(db) == (2, last.set_digest) and content_digest(db) == last.set_digest


def test_nginx_refusal_of_a_missing_file_is_not_applied(tmp_path: Path, keys) -> None:
    """A mirror whose data file went missing (a half-copied directory behind nginx): the store refuses after
    its retries, nothing is applied."""
    key, pub = keys
    fd, db = tmp_path / "feed", tmp_path / "db"
    publish_set(fd, key, CODES[:1000])
    (fd / "snapshot-00000001.txt.gz").unlink()
    with _nginx(fd) as server:
        with pytest.raises(feed.FeedError):
            feed.sync(db, server.url, pub, retry=FAST_RETRY)
    assert not (db / "data.mdb").exists() or db_state(db)[0] == 0


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def test_mirror_refuses_a_bad_upstream_and_keeps_serving(tmp_path: Path, keys) -> None:
    key, pub = keys
    fd, md, db = tmp_path / "feed", _mkdir(tmp_path / "mirror"), tmp_path / "db"
    publish_set(fd, key, CODES[:1000])
    with FeedServer(fd) as upstream, FeedServer(md) as mirror_http:
        feed.mirror(upstream.url, md, pub, retry=FAST_RETRY)
        feed.sync(db, mirror_http.url, pub, retry=FAST_RETRY)
        served = (md / "manifest.json").read_bytes()
        publish_set(fd, key, CODES[:1100])
        snapshot = sorted(fd.glob("snapshot-*.txt.gz"))[-1]
        snapshot.write_bytes(snapshot.read_bytes()[:-1])
        with pytest.raises(feed.IntegrityError):
            feed.mirror(upstream.url, md, pub, retry=FAST_RETRY)
        assert (md / "manifest.json").read_bytes() == served
        assert feed.sync(db, mirror_http.url, retry=FAST_RETRY).action == "up-to-date"


def test_cli_mirror_then_store_sync_over_http(tmp_path: Path, keys) -> None:
    import click
    from click.testing import CliRunner

    from lmcz_fast.cli.feed import register

    cli = click.Group()
    register(cli)
    key, pub = keys
    fd, md = tmp_path / "feed", _mkdir(tmp_path / "mirror")
    last = publish_set(fd, key, CODES[:2000])
    runner = CliRunner()
    with FeedServer(fd) as upstream, FeedServer(md) as mirror_http:
        result = runner.invoke(cli, ["mirror", str(md), "--feed", upstream.url, "--public-key", str(pub),
                                     "--db", str(tmp_path / "mirror.db"), "--nice", "0"])
        assert result.exit_code == 0 and "mirror at version 1 (updated)" in result.output, result.output
        result = runner.invoke(cli, ["sync", str(tmp_path / "store.db"), "--feed", mirror_http.url,
                                     "--public-key", str(pub), "--json", "--nice", "0"])
        assert result.exit_code == 0, result.output
    assert '"action": "snapshot"' in result.output
    assert db_state(tmp_path / "store.db") == db_state(tmp_path / "mirror.db") == (1, last.set_digest)
