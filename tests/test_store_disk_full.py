"""A full disk is an error with the cause in words and exit code 4, never a signal, never a changed store.

The scenarios run on a real small filesystem: a tmpfs of 8 MB mounted for the test (needs root; the tests skip
and say why otherwise). Anything that could die of a signal runs in a child process, so that a regression shows
as its return code (SIGBUS: -7) instead of killing the test run.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from _log_support import Logged

from lmcz_fast import Blocklist, DiskFullError, MapFullError, StoreError, identity_of
from lmcz_fast._codes import parse_code
from lmcz_fast.store import environment
from lmcz_fast.synth import cis_list

CLI = "import sys; from lmcz_fast.cli import main; sys.argv[0] = 'lmcz-fast'; main()"
EXIT_STORE = 4


@pytest.fixture()
def small_fs(tmp_path):
    """An 8 MB tmpfs, mounted for this test and unmounted after it."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8); the disk-full scenarios need a real full disk")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _free(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _fill(mnt, leave: int = 0):
    """Take all the free space of `mnt` but `leave` bytes, with one file; return its path (delete it to free)."""
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        block = b"\xff" * 65536
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                if len(block) == 4096:
                    break
                block = block[:4096]
    finally:
        os.close(fd)
    if leave:
        os.truncate(filler, os.path.getsize(filler) - leave)
    assert abs(_free(mnt) - leave) <= 8192
    return filler


def _cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-c", CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _write_list(path, codes):
    path.write_text("".join(code + "\n" for code in codes), encoding="ascii")
    return path


def _store(path, codes):
    with Blocklist.create(path) as bl:
        bl.load([codes])
    return path


def _no_traceback(done):
    assert "Traceback" not in done.stderr and "Bus error" not in done.stderr, done.stderr


# -- creating on a full disk ------------------------------------------------------------------------------------


def test_load_into_a_new_path_on_a_full_disk_refuses_instead_of_dying(small_fs, tmp_path):
    listing = _write_list(tmp_path / "list.txt", cis_list(1000, seed=1))
    _fill(small_fs)
    done = _cli("load", small_fs / "new.db", listing)
    # before the fix: -7, SIGBUS inside lmdb.open (LMDB wrote into its sparse lock file through a shared map)
    assert done.returncode == EXIT_STORE, (done.returncode, done.stderr)
    assert "disk full at" in done.stderr and "MB free" in done.stderr and "nothing was created" in done.stderr
    _no_traceback(done)
    assert not (small_fs / "new.db").exists()


def test_a_load_that_outgrows_a_new_database_leaves_no_database(small_fs, tmp_path):
    listing = _write_list(tmp_path / "list.txt", cis_list(60_000, seed=2))
    _fill(small_fs, leave=1_500_000)   # room to create, not to load
    done = _cli("load", small_fs / "new.db", listing)
    assert done.returncode == EXIT_STORE, (done.returncode, done.stderr)
    assert "disk full at" in done.stderr and "no database was created" in done.stderr
    assert "still being served" not in done.stderr      # a store without a list serves nothing (issue 11)
    _no_traceback(done)
    # a failed first load leaves no (empty) database behind, nor the one it was building (issue 11)
    assert not (small_fs / "new.db").exists()
    assert not [p for p in small_fs.iterdir() if p.name.startswith(".new.db.")]


def test_sync_into_a_new_path_on_a_full_disk_refuses_instead_of_dying(small_fs, tmp_path):
    from lmcz_fast import feed

    key, pub = feed.write_keypair(tmp_path / "feed.key")
    feed.publish(tmp_path / "feed", key, snapshot=str(_write_list(tmp_path / "list.txt", cis_list(500, seed=3))))
    _fill(small_fs)
    done = _cli("sync", small_fs / "new.db", "--feed", tmp_path / "feed", "--public-key", pub, "--nice", "0")
    assert done.returncode == EXIT_STORE, (done.returncode, done.stderr)
    assert "disk full at" in done.stderr
    _no_traceback(done)


# -- reading on a full disk -------------------------------------------------------------------------------------

_READERS = textwrap.dedent(
    """
    import sys
    from lmcz_fast import Blocklist, StoreError
    try:
        bl = Blocklist.open(sys.argv[1])
    except StoreError as exc:
        print("refused:", exc)
        sys.exit(4)
    # 200 read transactions at once take 200 slots: pages 2-4 of the reader table, as 200 till processes would
    txns = [bl.handle.env.begin() for _ in range(200)]
    print("ok", len(txns), bl.is_blocked(sys.argv[2]))
    """
)


def test_many_readers_on_a_full_disk_do_not_die_of_sigbus(small_fs):
    codes = cis_list(500, seed=4)
    path = _store(small_fs / "db", codes)
    _fill(small_fs)
    done = subprocess.run([sys.executable, "-c", _READERS, str(path), codes[0]], capture_output=True, text=True,
                          timeout=60)
    # before the fix: -7, SIGBUS at the 63rd reader (the first slot on the lock file's second, unallocated page)
    assert (done.returncode, done.stdout.strip()) == (0, "ok 200 True"), (done.returncode, done.stderr)


def test_a_sparse_lock_file_on_a_full_disk_is_refused_in_words(small_fs):
    codes = cis_list(500, seed=5)
    path = _store(small_fs / "db", codes)
    (path / "lock.mdb").unlink()
    with open(path / "lock.mdb", "wb") as lock:   # as LMDB (and earlier versions of this store) leave it: sparse
        lock.truncate(environment.LOCK_FILE_BYTES)
    _fill(small_fs)
    done = subprocess.run([sys.executable, "-c", _READERS, str(path), codes[0]], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 4, (done.returncode, done.stdout, done.stderr)
    assert "refused: disk full at" in done.stdout and "reader table" in done.stdout


# -- writing on a full disk: nothing changes, the old version answers, freeing space lets the write through ------


@pytest.mark.parametrize("leave", [0, 400_000], ids=["no-space-at-all", "short-write"])
def test_a_delta_on_a_full_disk_changes_nothing_and_goes_through_once_space_is_freed(small_fs, tmp_path, leave):
    codes = cis_list(31_000, seed=6)
    path = _store(small_fs / "db", codes[:1000])
    with Blocklist.open(path) as bl:
        before = bl.info()
    delta = tmp_path / "delta.txt"
    delta.write_text("".join(f"+{code}\n" for code in codes[1000:]) + f"-{codes[0]}\n", encoding="ascii")
    reader = Blocklist.open(path, refresh_interval=0.01)   # a till that was answering before the disk filled
    writer = Blocklist.open(path, readonly=False)
    try:
        filler = _fill(small_fs, leave)

        done = _cli("delta", path, delta)
        assert done.returncode == EXIT_STORE, (done.returncode, done.stderr)
        assert "disk full at" in done.stderr and "MB free" in done.stderr
        assert f"nothing was changed; version {before['version']} is still being served" in done.stderr
        _no_traceback(done)

        with pytest.raises(DiskFullError, match="disk full at .* MB free.*is still being served") as caught:
            writer.apply_delta(add=codes[1000:], remove=codes[:1], to_version=before["version"] + 1)
        assert caught.value.free_bytes is not None and caught.value.free_bytes < 4 << 20
        assert caught.value.__cause__.code == (errno.ENOSPC if leave == 0 else errno.EIO)
        with pytest.raises(DiskFullError):
            writer.load([codes], replace=True)
        if leave == 0:
            with pytest.raises(DiskFullError):
                writer.mark_synced()

        # the old version is still served, whole, to the reader that was open and to a fresh one
        assert reader.is_blocked_many(codes[:1000]) == [True] * 1000
        assert reader.is_blocked_many(codes[1000:1500]) == [False] * 500
        assert reader.get_meta("version") == before["version"]
        with Blocklist.open(path) as fresh:
            after = fresh.info()
            assert set(fresh.iter_identities()) == {identity_of(c, cis=True).decode() for c in codes[:1000]}
        assert (after["version"], after["set_digest"], after["codes"]) == \
               (before["version"], before["set_digest"], before["codes"])

        filler.unlink()
        done = _cli("delta", path, delta)
        assert done.returncode == 0, done.stderr
        assert reader.get_meta("version") == before["version"] + 1
        assert reader.is_blocked(codes[30_000]) and not reader.is_blocked(codes[0])
    finally:
        reader.close()
        writer.close()


def test_a_sync_on_a_full_disk_is_a_store_error_and_changes_nothing(small_fs, tmp_path):
    from lmcz_fast import feed

    codes = cis_list(21_000, seed=7)
    key, pub = feed.write_keypair(tmp_path / "feed.key")
    feed_dir = tmp_path / "feed"
    feed.publish(feed_dir, key, snapshot=str(_write_list(tmp_path / "v1.txt", codes[:1000])))
    path = small_fs / "db"
    feed.sync(path, str(feed_dir), pub)
    delta = _write_list(tmp_path / "d.txt", [f"+{code}" for code in codes[1000:]])
    feed.publish(feed_dir, key, delta=str(delta))
    filler = _fill(small_fs)
    with pytest.raises(DiskFullError, match="still being served"):
        feed.sync(path, str(feed_dir), pub)
    with Blocklist.open(path) as bl:
        assert bl.get_meta("version") == 1 and bl.get_meta("codes") == 1000
    filler.unlink()
    assert feed.sync(path, str(feed_dir), pub).to_version == 2


def test_the_sync_daemon_outlives_a_full_disk_and_catches_up_once_space_is_freed(small_fs, tmp_path):
    from lmcz_fast import feed

    codes = cis_list(21_000, seed=9)
    key, pub = feed.write_keypair(tmp_path / "feed.key")
    feed_dir = tmp_path / "feed"
    feed.publish(feed_dir, key, snapshot=str(_write_list(tmp_path / "v1.txt", codes[:1000])))
    path = small_fs / "db"
    feed.sync(path, str(feed_dir), pub)
    daemon = subprocess.Popen([sys.executable, "-c", CLI, "sync", str(path), "--every", "0.3s", "--nice", "0"],
                              stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def until(text):
        deadline = time.monotonic() + 30
        while not any(text in line for line in lines):
            assert daemon.poll() is None and time.monotonic() < deadline, "".join(lines)
            lines.append(daemon.stderr.readline())

    try:
        until("sync ok: up to date")
        filler = _fill(small_fs)
        feed.publish(feed_dir, key, delta=str(_write_list(tmp_path / "d.txt", [f"+{c}" for c in codes[1000:]])))
        until("FAILED (DiskFullError): disk full at")
        assert daemon.poll() is None
        filler.unlink()
        until("sync ok: version 1 -> 2 by delta")
        daemon.send_signal(signal.SIGTERM)
        _, rest = daemon.communicate(timeout=15)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert daemon.returncode == 0, "".join(lines) + rest
    assert "Traceback" not in "".join(lines) + rest
    with Blocklist.open(path) as bl:
        assert bl.get_meta("version") == 2 and bl.get_meta("codes") == 21_000


def test_the_sync_loop_keeps_running_when_recording_the_next_sync_time_fails():
    import signal as signals

    from lmcz_fast.cli import common

    rounds = []

    def once(sleep):
        rounds.append(1)
        if len(rounds) == 3:
            raise common.Stopped()
        return "sync ok"

    def on_schedule(at):
        raise DiskFullError("disk full at X (0.0 MB free): nothing was changed", path="X", free_bytes=0)

    handlers = {sig: signals.getsignal(sig) for sig in (signals.SIGTERM, signals.SIGINT)}
    try:
        with Logged("lmcz_fast.feed") as logged:
            common.run_forever(0.01, once, on_schedule)
    finally:
        for sig, handler in handlers.items():
            signals.signal(sig, handler)
    assert len(rounds) == 3
    assert logged.text.count("could not record the next sync time (DiskFullError): disk full at X") == 2


# -- the map ------------------------------------------------------------------------------------------------------


def test_reaching_the_map_size_is_a_store_error_in_words(tmp_path, monkeypatch):
    monkeypatch.setattr(environment, "MAP_SIZE", 4 << 20)
    codes = cis_list(60_000, seed=8)
    with Blocklist.create(tmp_path / "db") as bl:
        bl.load([codes[:100]])
        with pytest.raises(MapFullError, match="reached its map size .*version 1 is still being served"):
            bl.apply_delta(add=codes[100:], to_version=2)
        assert isinstance(MapFullError("x"), StoreError)
        assert bl.get_meta("version") == 1 and bl.is_blocked(codes[0]) and not bl.is_blocked(codes[200])


def test_sales_failing_on_a_full_disk_are_logged_as_a_count_per_interval(small_fs):
    """Issue 18 (minor): before, every sale that failed on a full disk logged its own warning line (58,611 lines in
    15 s under a stream of sales). Now the first failure is logged at once, then one line per interval with how many
    failed since; every failed sale still gets its error."""
    codes = cis_list(60_000, seed=9)
    path = _store(small_fs / "db", codes[:100])
    with Blocklist.open(path, readonly=False) as bl, Logged("lmcz_fast.store", logging.WARNING) as logged:
        committer = bl.sold.committer(housekeeping_every=3600)
        committer.failure_log_every = 1.0
        filler = _fill(small_fs)
        try:
            failed = 0
            started = time.monotonic()
            n = 100
            while time.monotonic() - started < 3.5:
                jobs = [committer.submit(bl.sold.op_record([parse_code(codes[n + i])], int(time.time() * 1000)),
                                         future=True) for i in range(50)]
                n += 50
                for job in jobs:
                    try:
                        job.future.result(30)
                    except StoreError:
                        failed += 1
        finally:
            committer.close()
        lines = [m for m in logged.messages if "durable write" in m]
        assert failed >= 100, failed
        # the first at once, then at most one per second (3.5 s) and the last count when the writer closed
        assert 2 <= len(lines) <= 7, lines
        counted = sum(int(m.split()[0]) if m[0].isdigit() else 1 for m in lines)
        assert counted == failed, (counted, failed, lines)
        filler.unlink()
        assert bl.record_sold([codes[n]])[0].identity
