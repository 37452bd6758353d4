"""Replication from a real CouchDB-compatible server (npm's pouchdb-server, in memory, on loopback)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _couch_support import Couch, SharedCouch, needs_pouchdb
from _lm_contract import STATUS, decode
from _service_support import gtin_with_check, make_identity
from click.testing import CliRunner

from lmcz_fast import replicate as repl
from lmcz_fast.cli import main
from lmcz_fast.store import Blocklist, ShrinkRefusedError, guard

pytestmark = needs_pouchdb

CODES_ONLY = {"codes": "blocked_cis", "gtins": "blocked_gtin"}


def _identities(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return sorted({make_identity(rng) for _ in range(n)})


def _gtins(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return sorted({gtin_with_check("0" + "".join(rng.choice("0123456789") for _ in range(12))) for _ in range(n)})


@pytest.fixture(scope="module")
def couch_server(tmp_path_factory):
    shared = SharedCouch(tmp_path_factory.mktemp("couch"))
    yield shared
    shared.close()


@pytest.fixture()
def couch(couch_server):
    """A fresh source: one pouchdb-server per module, every test's databases made anew (tests/_couch_support.py)."""
    yield from couch_server.fresh("blocked_cis", "blocked_gtin")


def _config(couch: Couch, **kwargs) -> repl.ReplicationConfig:
    kwargs.setdefault("databases", dict(CODES_ONLY))
    return repl.ReplicationConfig(source=couch.url, proxy=repl.ProxyConfig.direct(), **kwargs)


def _store_set(db: Path) -> tuple[set[str], set[str]]:
    with Blocklist.open(db) as bl:
        return set(bl.iter_identities()), set(bl.iter_gtins())


def test_first_incremental_deletions_and_restart(couch, tmp_path):
    codes, gtins = _identities(3000, 1), _gtins(50, 2)
    couch.put_docs("blocked_cis", [{"_id": c} for c in codes])
    couch.put_docs("blocked_gtin", [{"_id": g} for g in gtins])
    db = tmp_path / "store.db"
    report = repl.replicate(db, _config(couch, batch_size=700))
    assert report.full and report.reason == "first replication"
    assert _store_set(db) == (set(codes), set(gtins))
    with Blocklist.open(db) as bl:
        assert bl.status().state == "ready"             # a replication counts as a sync
        status = repl.replication_status(bl)
        assert status["databases"]["blocked_cis"]["localDocCount"] == 3000
        assert status["databases"]["blocked_cis"]["serverDocCount"] == 3000
        assert status["databases"]["blocked_cis"]["seqLag"] == 0
        version = bl.get_meta("version")

    # Incremental: new codes, deletions (unblock), a GTIN added; pages of 700 changes, each one transaction.
    new = _identities(1500, 3)
    couch.put_docs("blocked_cis", [{"_id": c} for c in new])
    couch.delete_docs("blocked_cis", codes[:400])
    couch.put_docs("blocked_gtin", [{"_id": _gtins(1, 9)[0]}])
    report = repl.replicate(db, _config(couch, batch_size=700))
    assert not report.full
    assert report.databases[0].batches >= 3
    assert _store_set(db) == (set(codes[400:]) | set(new), set(gtins) | set(_gtins(1, 9)))
    with Blocklist.open(db) as bl:
        assert bl.get_meta("version") > version
        assert bl.is_blocked(new[0]) and not bl.is_blocked(codes[0])

    # Nothing new: a pass changes no version, still counts as a sync.
    with Blocklist.open(db) as bl:
        before = bl.get_meta("version")
    report = repl.replicate(db, _config(couch))
    assert report.changes == 0
    with Blocklist.open(db) as bl:
        assert bl.get_meta("version") == before


def test_recreated_source_is_re_replicated_and_swapped_in(couch, tmp_path):
    old = _identities(800, 4)
    couch.put_docs("blocked_cis", [{"_id": c} for c in old])
    db = tmp_path / "store.db"
    repl.replicate(db, _config(couch))
    couch.drop("blocked_cis")
    couch.create("blocked_cis")
    fresh = _identities(300, 5)
    couch.put_docs("blocked_cis", [{"_id": c} for c in fresh])
    # 800 -> 300 codes is past the shrink guard's limit (store/guard.py): refused until an operator accepts it.
    with pytest.raises(ShrinkRefusedError):
        repl.replicate(db, _config(couch))
    assert _store_set(db)[0] == set(old)
    with Blocklist.open(db, readonly=False) as bl:
        guard.accept(bl, "the source was really recreated")
    report = repl.replicate(db, _config(couch))
    assert report.full and "recreated" in report.reason
    assert _store_set(db)[0] == set(fresh)


def test_unmappable_and_malformed_documents_are_counted_not_dropped(couch, tmp_path):
    good = _identities(20, 6)
    docs = [{"_id": c} for c in good] + [{"_id": "not a code"}, {"_id": "0104600000000000215short"},
                                         {"_id": "_design/views", "views": {}}]
    couch.put_docs("blocked_cis", docs)
    couch.put_docs("blocked_gtin", [{"_id": "12345678901234"}, {"_id": "abc"}])   # bad check digit, not digits
    db = tmp_path / "store.db"
    # a database none of whose documents maps is a wrong mapping, not an empty list: refused, no store
    with pytest.raises(repl.MappingRefused, match="blocked_gtin: none of its 2 documents"):
        repl.replicate(db, _config(couch))
    assert not db.exists()
    gtin = _gtins(1, 6)[0]
    couch.put_docs("blocked_gtin", [{"_id": gtin}])
    report = repl.replicate(db, _config(couch))
    by_name = {d.name: d for d in report.databases}
    assert by_name["blocked_cis"].unmapped == 2 and by_name["blocked_gtin"].unmapped == 2
    assert any("not a code" in e for e in report.unmapped_examples)
    assert _store_set(db) == (set(good), {gtin})
    with Blocklist.open(db) as bl:
        assert repl.replication_status(bl)["databases"]["blocked_cis"]["unmapped"] == 2


def test_a_code_in_a_field_and_its_deletion(couch, tmp_path):
    codes = _identities(50, 7)
    couch.put_docs("blocked_cis", [{"_id": f"doc-{i}", "cis": c} for i, c in enumerate(codes)])
    db = tmp_path / "store.db"
    config = _config(couch, mapping=repl.Mapping(code_field="cis"))
    repl.replicate(db, config)
    assert _store_set(db)[0] == set(codes)
    # A deletion carries no fields: the document map kept in the store says which code it was.
    couch.delete_docs("blocked_cis", ["doc-0", "doc-1"])
    found = couch.request("POST", "/blocked_cis/_all_docs", {"keys": ["doc-2"]})["rows"][0]
    couch.put_docs("blocked_cis", [{"_id": "doc-2", "_rev": found["value"]["rev"], "cis": codes[0]}])
    repl.replicate(db, config)
    assert _store_set(db)[0] == set(codes[3:]) | {codes[0]}


def test_bad_credentials_and_a_missing_database(couch, tmp_path):
    couch.put_docs("blocked_cis", [{"_id": c} for c in _identities(10, 8)])
    couch.require_auth("boss", "s3cret", "blocked_cis", "blocked_gtin")
    db = tmp_path / "store.db"
    with pytest.raises(repl.SourceAuthError, match="credentials"):
        repl.replicate(db, _config(couch))
    with pytest.raises(repl.SourceAuthError):
        repl.replicate(db, _config(couch, credentials=("boss", "wrong")))
    assert not db.exists(), "a failed first replication must leave no database"
    report = repl.replicate(db, _config(couch, credentials=("boss", "s3cret")))
    assert report.full and len(_store_set(db)[0]) == 10
    with pytest.raises(repl.SourceUnavailable, match="no database"):
        repl.replicate(db, _config(couch, credentials=("boss", "s3cret"),
                                   databases={"codes": "blocked_cis", "gtins": "no_such_db"}))


def test_credentials_never_on_the_command_line(couch, tmp_path):
    result = CliRunner().invoke(main, ["replicate", str(tmp_path / "db"), "--source",
                                       f"http://u:p@127.0.0.1:{couch.port}", "--nice", "0"])
    assert result.exit_code == 2 and "must not carry credentials" in result.output
    # The file's credentials are what is sent: the server knows no such user and says so (exit 5).
    cred = tmp_path / "cred"
    cred.write_text("nobody:nothing\n")
    args = ["replicate", str(tmp_path / "db"), "--source", couch.url, "--nice", "0",
            "--databases", "codes=blocked_cis,gtins=blocked_gtin", "--json"]
    result = CliRunner().invoke(main, args + ["--credentials-file", str(cred)])
    assert result.exit_code == 5 and "refused our credentials" in result.output, result.output
    assert not (tmp_path / "db").exists()
    result = CliRunner(env={"LMCZ_FAST_SOURCE_USER": None}).invoke(main, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["full"] is True


class _Saboteur:
    """A TCP relay in front of the source that, in `mode`, stalls or drops each answer after `after` bytes."""

    def __init__(self, target_port: int, mode: str, after: int = 300) -> None:
        self.target = target_port
        self.mode = mode
        self.after = after
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target))
        request = client.recv(65536)
        upstream.sendall(request)
        sent = 0
        sabotage = b"_changes" in request.split(b"\r\n", 1)[0] or self.mode.endswith("-all")
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                if sabotage and sent + len(data) > self.after:
                    client.sendall(data[: self.after - sent])
                    if self.mode.startswith("stall"):
                        self.stop.wait(30)
                    break
                client.sendall(data)
                sent += len(data)
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("mode", ["drop", "stall"])
def test_a_source_that_stalls_or_drops_mid_answer_changes_nothing(couch, tmp_path, mode):
    first = _identities(200, 10)
    couch.put_docs("blocked_cis", [{"_id": c} for c in first])
    db = tmp_path / "store.db"
    repl.replicate(db, _config(couch))
    with Blocklist.open(db) as bl:
        version, checkpoint = bl.get_meta("version"), bl.get_meta("replication:blocked_cis")
    couch.put_docs("blocked_cis", [{"_id": c} for c in _identities(500, 11)])
    saboteur = _Saboteur(couch.port, mode, after=2000)
    try:
        config = repl.ReplicationConfig(source=f"http://127.0.0.1:{saboteur.port}", databases=dict(CODES_ONLY),
                                        proxy=repl.ProxyConfig.direct(), timeout=1.0)
        started = time.monotonic()
        with pytest.raises(repl.SourceUnavailable):
            repl.replicate(db, config)
        assert time.monotonic() - started < 10
    finally:
        saboteur.close()
    with Blocklist.open(db) as bl:
        assert bl.get_meta("version") == version
        assert bl.get_meta("replication:blocked_cis")["last_seq"] == checkpoint["last_seq"]
    assert _store_set(db)[0] == set(first)


def _cli(db: Path, couch: Couch, *args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from lmcz_fast.cli import main; sys.exit(main())", "replicate",
            str(db), "--source", couch.url, "--databases", "codes=blocked_cis,gtins=blocked_gtin", "--nice", "0",
            *args]


def test_kill_9_during_batches_leaves_checkpoint_and_data_consistent(couch, tmp_path):
    """20 replication processes killed at random: the store always holds exactly the changes up to its
    checkpoint, and the next run resumes from there."""
    db = tmp_path / "store.db"
    couch.put_docs("blocked_cis", [{"_id": c} for c in _identities(500, 12)])
    assert subprocess.run(_cli(db, couch), capture_output=True, timeout=60).returncode == 0
    rng = random.Random(13)
    env = dict(os.environ, PYTHONSAFEPATH="1")
    # How long a run of one round's changes takes on this machine now, so that the kills land inside runs
    # whether the machine is quiet or loaded.
    couch.put_docs("blocked_cis", [{"_id": c} for c in _identities(600, 99)])
    started = time.monotonic()
    assert subprocess.run(_cli(db, couch, "--batch", "20"), capture_output=True, timeout=60).returncode == 0
    run_time = time.monotonic() - started
    killed = 0
    for round_no in range(20):
        couch.put_docs("blocked_cis", [{"_id": c} for c in _identities(600, 100 + round_no)])
        proc = subprocess.Popen(_cli(db, couch, "--batch", "20"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        time.sleep(rng.uniform(0.3, 0.9) * run_time)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(30)
        changes = couch.request("GET", "/blocked_cis/_changes")["results"]
        with Blocklist.open(db) as bl:
            checkpoint = bl.get_meta("replication:blocked_cis")["last_seq"]
            held = set(bl.iter_identities())
        expected = {c["id"] for c in changes if c["seq"] <= checkpoint}
        assert held == expected, (round_no, checkpoint, len(held), len(expected))
    assert killed >= 10, f"only {killed} of 20 runs were killed mid-way; the test did not test"
    assert subprocess.run(_cli(db, couch), capture_output=True, timeout=60).returncode == 0
    all_ids = {c["id"] for c in couch.request("GET", "/blocked_cis/_changes")["results"]}
    assert _store_set(db)[0] == all_ids


def test_follow_applies_changes_as_they_come(couch, tmp_path):
    db = tmp_path / "store.db"
    couch.put_docs("blocked_cis", [{"_id": c} for c in _identities(100, 14)])
    stop = threading.Event()
    errors: list[BaseException] = []
    config = _config(couch, longpoll_timeout=2.0)
    worker = threading.Thread(target=repl.follow, args=(str(db), config),
                              kwargs={"stop": stop, "on_error": errors.append, "retry_after": 0.5}, daemon=True)
    worker.start()
    try:
        late = _identities(10, 15)
        deadline = time.monotonic() + 20
        while not db.joinpath("data.mdb").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        couch.put_docs("blocked_cis", [{"_id": c} for c in late])
        with Blocklist.open(db) as bl:
            while time.monotonic() < deadline and not all(bl.check(c).blocked for c in late):
                time.sleep(0.1)
            assert all(bl.check(c).blocked for c in late), errors
    finally:
        stop.set()
        worker.join(15)
    assert not worker.is_alive()


def _follow_while_trickling(couch, db, settle: float, codes: list[str]) -> int:
    """Versions the store moved through while `codes` arrived one by one, 0.1 s apart, under `follow`."""
    repl.replicate(db, _config(couch))
    with Blocklist.open(db) as bl:
        before = bl.get_meta("version")
    stop = threading.Event()
    config = _config(couch, longpoll_timeout=2.0)
    worker = threading.Thread(target=repl.follow, args=(str(db), config),
                              kwargs={"stop": stop, "retry_after": 0.5, "settle": settle}, daemon=True)
    worker.start()
    try:
        time.sleep(0.5)
        for code in codes:
            couch.put_docs("blocked_cis", [{"_id": code}])
            time.sleep(0.1)
        deadline = time.monotonic() + 20
        with Blocklist.open(db) as bl:
            while time.monotonic() < deadline and not all(bl.check(c).blocked for c in codes):
                time.sleep(0.1)
            assert all(bl.check(c).blocked for c in codes)
            return bl.get_meta("version") - before
    finally:
        stop.set()
        worker.join(15)


def test_follow_lets_a_trickle_of_changes_gather_into_few_transactions(couch, tmp_path):
    couch.put_docs("blocked_cis", [{"_id": c} for c in _identities(50, 30)])
    at_once = _follow_while_trickling(couch, tmp_path / "a.db", 0.0, _identities(20, 31))
    gathered = _follow_while_trickling(couch, tmp_path / "b.db", 1.0, _identities(20, 32))
    assert at_once >= 10, at_once             # each change its own transaction (or nearly)
    assert gathered <= 5, gathered            # ~2 s of trickle in batches at most 1 s apart


def test_status_and_metrics_report_replication(couch, tmp_path):
    codes = _identities(120, 16)
    couch.put_docs("blocked_cis", [{"_id": c} for c in codes] + [{"_id": "junk"}])
    db = tmp_path / "store.db"
    repl.replicate(db, _config(couch))
    result = CliRunner().invoke(main, ["status", str(db), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["state"] == "ready" and shown["replication"]["source"] == couch.url
    cis = shown["replication"]["databases"]["blocked_cis"]
    assert (cis["localDocCount"], cis["serverDocCount"], cis["seqLag"], cis["unmapped"]) == (120, 121, 0, 1)
    text = CliRunner().invoke(main, ["status", str(db)]).output
    assert f"replicated: from {couch.url}" in text and "1 documents that do not map" in text
    from lmcz_fast.service import LocalModule, ServiceConfig

    with Blocklist.open(db) as bl:
        body = LocalModule(bl, ServiceConfig(auth=False)).handle(b"GET", b"/metrics", None, b"", None, None,
                                                                 None).body.decode()
    assert 'lmcz_replication_local_docs{database="blocked_cis"} 120' in body
    assert 'lmcz_replication_source_docs{database="blocked_cis"} 121' in body
    assert 'lmcz_replication_unmapped_docs{database="blocked_cis"} 1' in body
    with Blocklist.open(db) as bl:
        answer = LocalModule(bl, ServiceConfig(auth=False)).handle(b"GET", b"/api/v2/status", None, b"", None, None,
                                                                   None)
    state = decode(json.loads(answer.body), STATUS)          # still what strict typed clients decode
    assert state["replicationStatus"]["blocked_cis"]["localDocCount"] == 120
    assert state["replicationStatus"]["blocked_cis"]["serverDocCount"] == 121
    assert isinstance(state["replicationStatus"]["blocked_cis"]["timeLag"], int)
    entry = state["dbState"]["blocked_cis"]
    assert (entry["docCount"], entry["localDocCount"], entry["serverDocCount"], entry["seqLag"]) == (120, 120, 121, 0)
    assert abs(entry["lastBatch"] / 1000 - time.time()) < 120


@pytest.mark.parametrize("auth", [None, ("shop", "pr0xy-Pass")])
def test_through_a_real_proxy(couch, tmp_path, auth):
    from _proxy_support import Tinyproxy, tinyproxy_binary

    if tinyproxy_binary() is None:
        pytest.skip("tinyproxy is not installed (.ci/run installs Debian's tinyproxy)")
    codes = _identities(300, 17)
    couch.put_docs("blocked_cis", [{"_id": c} for c in codes])
    with Tinyproxy(auth=auth) as proxy:
        config = repl.ReplicationConfig(source=couch.url, databases=dict(CODES_ONLY),
                                        proxy=repl.ProxyConfig(url=proxy.url, username=auth and auth[0],
                                                               password=auth and auth[1], trust_env=False))
        report = repl.replicate(tmp_path / "store.db", config)
        seen = proxy.wait_for(4)
    assert report.full and _store_set(tmp_path / "store.db")[0] == set(codes)
    assert any("/blocked_cis/_changes" in r for r in seen) and any(r.endswith("/blocked_gtin") for r in seen), seen
    if auth is not None:
        wrong = repl.ReplicationConfig(source=couch.url, databases=dict(CODES_ONLY),
                                       proxy=repl.ProxyConfig(url="http://127.0.0.1:1", trust_env=False), timeout=2)
        with pytest.raises(repl.SourceUnavailable):
            repl.replicate(tmp_path / "other.db", wrong)
        assert not (tmp_path / "other.db").exists()


def test_publish_from_a_replicated_store_feeds_the_chain(couch, tmp_path):
    """One server replicates; the chain's stores sync the signed static feed published from that store."""
    from lmcz_fast import feed

    codes, gtins = _identities(400, 18), _gtins(5, 19)
    couch.put_docs("blocked_cis", [{"_id": c} for c in codes])
    couch.put_docs("blocked_gtin", [{"_id": g} for g in gtins])
    replica = tmp_path / "replica.db"
    repl.replicate(replica, _config(couch))
    key = tmp_path / "feed.key"
    feed.write_keypair(key, tmp_path / "feed.pub")
    result = CliRunner().invoke(main, ["publish", str(tmp_path / "feed"), "--key", str(key), "--from-store",
                                       str(replica)])
    assert result.exit_code == 0, result.output
    store = tmp_path / "till.db"
    feed.sync(store, (tmp_path / "feed").as_uri(), tmp_path / "feed.pub")
    assert _store_set(store) == (set(codes), set(gtins))
    with Blocklist.open(replica) as a, Blocklist.open(store) as b:
        assert a.get_meta("set_digest") == b.get_meta("set_digest")


def test_min_prices_replicate_into_the_price_table(couch, tmp_path):
    """`min_price` documents (a GTIN or `pg:N` as the id, `price` in kopecks) become the store's minimum-price
    records; deletions delete them; a full re-replication replaces them and keeps the grey list."""
    couch.create("min_price")
    codes, gtins = _identities(50, 21), _gtins(4, 22)
    couch.put_docs("blocked_cis", [{"_id": c} for c in codes])
    couch.put_docs("min_price", [{"_id": gtins[0], "price": 14630}, {"_id": gtins[1], "price": 9900},
                                 {"_id": "pg:3", "price": 12000}, {"_id": "16", "price": 8000}])
    db = tmp_path / "store.db"
    config = _config(couch, databases={**CODES_ONLY, "prices": "min_price"})
    repl.replicate(db, config)
    with Blocklist.open(db, readonly=False) as bl:
        assert sorted(bl.iter_records()) == sorted([f"min_price {gtins[0]} 14630", f"min_price {gtins[1]} 9900",
                                                    "group_min_price 3 12000", "group_min_price 16 8000"])
        assert bl.min_price(gtins[1]) == 9900 and bl.min_price(gtins[3], 16) == 8000
        bl.apply_delta(add_records=[f"grey_gtin {gtins[2]}"], to_version=bl.get_meta("version") + 1)
    couch.delete_docs("min_price", [gtins[1], "pg:3"])
    couch.put_docs("min_price", [{"_id": gtins[3], "price": 500}])
    report = repl.replicate(db, config)
    assert not report.full
    with Blocklist.open(db) as bl:
        assert sorted(bl.iter_records()) == sorted([f"min_price {gtins[0]} 14630", f"min_price {gtins[3]} 500",
                                                    "group_min_price 16 8000", f"grey_gtin {gtins[2]}"])
        assert bl.group_min_price(3) is None and bl.min_price(gtins[1]) is None
    report = repl.replicate(db, config, full=True)
    assert report.full
    with Blocklist.open(db) as bl:
        assert sorted(bl.iter_records()) == sorted([f"min_price {gtins[0]} 14630", f"min_price {gtins[3]} 500",
                                                    "group_min_price 16 8000", f"grey_gtin {gtins[2]}"])
        from lmcz_fast.store import set_digest_of
        assert set_digest_of(bl.iter_identities(), bl.iter_gtins(), bl.iter_records()) == bl.info()["set_digest"]
