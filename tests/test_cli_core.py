"""The store commands of `lmcz-fast`: load, lookup, info, delta — exit codes, messages, no data loss."""

from __future__ import annotations

import datetime
import gzip
import json
import random

import pytest
from click.testing import CliRunner

from lmcz_fast import Blocklist
from lmcz_fast.cli import main

from _store_support import make_identity, make_scan


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture()
def codes() -> list[str]:
    rng = random.Random(5)
    return [make_identity(rng) for _ in range(50)]


def test_help_teaches(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("load", "lookup", "info", "delta"):
        assert command in result.output
    assert "Example" in runner.invoke(main, ["load", "--help"]).output


def test_load_lookup_info_round_trip(runner, tmp_path, codes):
    listing = tmp_path / "blocked.txt.gz"
    with gzip.open(listing, "wt") as stream:
        stream.write("\n".join(codes[:25]) + "\nnot-a-code\n")
    db = str(tmp_path / "db")
    result = runner.invoke(main, ["load", db, str(listing)])
    assert result.exit_code == 0, result.output
    assert "25 codes" in result.output and "1 rejected" in result.output
    assert ":26:" in result.stderr

    rng = random.Random(1)
    blocked_scan = make_scan(codes[0], rng)
    result = runner.invoke(main, ["lookup", db, blocked_scan, codes[30]])
    assert result.exit_code == 1
    assert "BLOCKED" in result.output and "ok" in result.output

    result = runner.invoke(main, ["lookup", db, "--json"], input=f"{codes[30]}\n{codes[31]}\n")
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["blocked"] for line in lines] == [False, False]
    assert lines[0]["db_version"] == 1

    result = runner.invoke(main, ["lookup", db, "garbage"])
    assert result.exit_code == 3 and "INVALID" in result.output

    result = runner.invoke(main, ["info", db, "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["codes"] == 25


def test_strict_load_refuses_and_keeps_the_old_list(runner, tmp_path, codes):
    db = str(tmp_path / "db")
    first = tmp_path / "first.txt"
    first.write_text("\n".join(codes[:10]) + "\n")
    assert runner.invoke(main, ["load", db, str(first)]).exit_code == 0
    second = tmp_path / "second.txt"
    second.write_text("\n".join(codes[10:20]) + "\nbroken\n")
    result = runner.invoke(main, ["load", db, str(second), "--strict"])
    assert result.exit_code == 3
    with Blocklist.open(db) as bl:
        assert bl.get_meta("version") == 1
        assert all(bl.is_blocked_many(codes[:10]))
        assert not any(bl.is_blocked_many(codes[10:20]))


def test_delta_command(runner, tmp_path, codes):
    db = str(tmp_path / "db")
    listing = tmp_path / "blocked.txt"
    listing.write_text("\n".join(codes[:10]) + "\n")
    runner.invoke(main, ["load", db, str(listing)])
    delta = tmp_path / "delta.txt"
    delta.write_text(f"# change 2\n+{codes[20]}\n-{codes[0]}\n")
    result = runner.invoke(main, ["delta", db, str(delta)])
    assert result.exit_code == 0, result.output
    assert "version 1 -> 2" in result.output
    with Blocklist.open(db) as bl:
        assert bl.is_blocked(codes[20]) and not bl.is_blocked(codes[0])
    result = runner.invoke(main, ["delta", db, str(delta), "--from-version", "1"])
    assert result.exit_code == 4 and "store holds 2" in result.output + result.stderr
    bad = tmp_path / "bad.txt"
    bad.write_text(f"+{codes[30]}\n+nonsense\n")
    result = runner.invoke(main, ["delta", db, str(bad)])
    assert result.exit_code == 3
    with Blocklist.open(db) as bl:
        assert not bl.is_blocked(codes[30]) and bl.get_meta("version") == 2


def test_delta_that_changes_nothing_keeps_the_version(runner, tmp_path, codes):
    db = str(tmp_path / "db")
    listing = tmp_path / "blocked.txt"
    listing.write_text("\n".join(codes[:10]) + "\n")
    assert runner.invoke(main, ["load", db, str(listing)]).exit_code == 0
    noop = tmp_path / "noop.txt"
    noop.write_text(f"+{codes[0]}\n+{codes[1]}\n-{codes[40]}\n")
    result = runner.invoke(main, ["delta", db, str(noop)])
    assert result.exit_code == 0, result.output
    assert "nothing changed" in result.output and "stays at version 1" in result.output
    with Blocklist.open(db) as bl:
        assert bl.get_meta("version") == 1


def test_info_prints_times_with_their_zone(runner, tmp_path, codes, monkeypatch):
    import re
    import time

    db = str(tmp_path / "db")
    listing = tmp_path / "blocked.txt"
    listing.write_text(codes[0] + "\n")
    assert runner.invoke(main, ["load", db, str(listing)]).exit_code == 0
    monkeypatch.setenv("TZ", "MSK-3")  # POSIX spelling of UTC+3
    time.tzset()
    try:
        result = runner.invoke(main, ["info", db])
    finally:
        monkeypatch.undo()
        time.tzset()
    assert result.exit_code == 0, result.output
    loaded = re.search(r"loaded_at: (\S+ \S+) \((\d+)\)", result.output)
    assert loaded, result.output
    stamp = datetime.datetime.fromisoformat(loaded.group(1))
    assert stamp.utcoffset() == datetime.timedelta(hours=3)
    assert stamp.timestamp() == int(loaded.group(2))


def test_lookup_on_missing_database_is_a_clear_error(runner, tmp_path):
    result = runner.invoke(main, ["lookup", str(tmp_path / "nope"), "x"])
    assert result.exit_code != 0


# -- a store that never held a list (issue 11) ------------------------------------------------------------------


def test_a_failed_first_load_leaves_no_database(runner, tmp_path, codes):
    listing = tmp_path / "bad.txt"
    listing.write_text("\n".join(codes[:10]) + "\nbroken\n")
    db = tmp_path / "store.db"
    result = runner.invoke(main, ["load", str(db), str(listing), "--strict"])
    assert result.exit_code == 3
    assert "no database was created" in result.stderr
    assert not db.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt"]     # nothing half-built beside it either
    result = runner.invoke(main, ["lookup", str(db), codes[20]])
    assert result.exit_code != 0 and result.stdout == ""
    # the same text without --strict loads; then the store is there
    assert runner.invoke(main, ["load", str(db), str(listing)]).exit_code == 0
    with Blocklist.open(db) as bl:
        assert bl.get_meta("version") == 1 and bl.is_blocked(codes[0])


def test_a_failed_first_load_into_an_existing_empty_directory_leaves_it_empty(runner, tmp_path, codes):
    db = tmp_path / "store.db"
    db.mkdir()
    (db / "README").write_text("ours\n")
    listing = tmp_path / "bad.txt"
    listing.write_text("broken\n")
    assert runner.invoke(main, ["load", str(db), str(listing), "--strict"]).exit_code == 3
    assert sorted(p.name for p in db.iterdir()) == ["README"]
    good = tmp_path / "good.txt"
    good.write_text("\n".join(codes[:5]) + "\n")
    assert runner.invoke(main, ["load", str(db), str(good)]).exit_code == 0
    assert (db / "README").read_text() == "ours\n"
    with Blocklist.open(db) as bl:
        assert bl.is_blocked_many(codes[:6]) == [True] * 5 + [False]


def test_lookup_info_status_on_a_store_that_never_held_a_list(runner, tmp_path, codes):
    db = str(tmp_path / "db")
    Blocklist.create(db).close()      # what an interrupted or older first load left behind
    for args in (["lookup", db, codes[0]], ["lookup", db, "--json"]):
        result = runner.invoke(main, args, input=f"{codes[0]}\n")
        assert result.exit_code == 4, result.output
        assert "no list loaded" in result.stderr
        assert result.stdout == ""
    result = runner.invoke(main, ["info", db])
    assert result.exit_code == 0 and "no list loaded" in result.output
    fields = json.loads(runner.invoke(main, ["info", db, "--json"]).output)
    assert (fields["state"], fields["expires_at"], fields["version"]) == ("empty", None, 0)
    result = runner.invoke(main, ["status", db])
    assert "EMPTY (no list loaded)" in result.output
    assert runner.invoke(main, ["status", db, "--check"]).exit_code == 2


@pytest.mark.parametrize("args, words", [
    (["--every", "2h", "--follow"], "not both"),
    (["--settle", "2"], "--settle goes with --follow"),
])
def test_replicate_refuses_options_that_do_not_go_together(runner, tmp_path, args, words):
    result = runner.invoke(main, ["replicate", str(tmp_path / "db"), "--source", "http://127.0.0.1:1", *args])
    assert result.exit_code == 2 and words in result.output
    assert not (tmp_path / "db").exists()
