"""Sizes read from untrusted bytes never decide what is allocated (issue 25).

A gzip file's trailer says its uncompressed size (ISIZE, mod 2**32): a damaged or hostile file says what it
likes. A flipped top byte of a delta's ISIZE drove a test process to 24 GB under arm64 emulation. What reads a
gzip file here (the progress estimate, the feed's file reader, the store's loader) must answer for such a file
with a bounded amount of memory and a typed error, on every architecture: the process's peak RSS (VmHWM) is
measured in a child, against the same child's peak before it touched the file. tests/test_arm64.py runs this file
under arm64 emulation too.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

from lmcz_fast import feed
from lmcz_fast.feed.files import MAX_LINE_BYTES, text_limit
from lmcz_fast.progress import _gzip_size, estimate_lines
from lmcz_fast.store import Blocklist, StoreError
from lmcz_fast.synth import cis_list

LINES = 20_000
FOUR_GB = b"\xff\xff\xff\xff"


def _claiming_4gb(path: Path, text: bytes) -> Path:
    """A gzip file of `text` whose trailer claims 4 GiB - 1 bytes (the CRC is right, the length is not)."""
    data = bytearray(gzip.compress(text, mtime=0))
    data[-4:] = FOUR_GB
    path.write_bytes(bytes(data))
    return path


def _delta_text(codes: list[str]) -> bytes:
    return ("# lmcz-feed delta 1\n# from 1\n# to 2\n" + "".join(f"+{code}\n" for code in codes)).encode()


CHILD = textwrap.dedent("""
    import json, sys
    from lmcz_fast import feed
    from lmcz_fast.progress import estimate_lines
    from lmcz_fast.store import Blocklist, StoreError

    def peak_kb():
        with open("/proc/self/status") as status:
            return int(next(line.split()[1] for line in status if line.startswith("VmHWM:")))

    path, db = sys.argv[1], sys.argv[2]
    before = peak_kb()
    out = {"estimate": estimate_lines([path])}
    try:
        feed.read_delta(path)
        out["read_delta"] = "read"
    except feed.IntegrityError as exc:
        out["read_delta"] = "IntegrityError: " + str(exc)
    try:
        with Blocklist.building(db) as bl:
            bl.load([path], strict=True)
        out["load"] = "loaded"
    except StoreError as exc:
        out["load"] = type(exc).__name__ + ": " + str(exc)
    out["before_kb"], out["after_kb"] = before, peak_kb()
    print(json.dumps(out))
""")


def test_a_gzip_file_claiming_4gb_costs_a_bounded_amount_of_memory(tmp_path: Path) -> None:
    codes = cis_list(LINES, seed=25)
    path = _claiming_4gb(tmp_path / "delta-claims-4gb.txt.gz", _delta_text(codes))
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(tmp_path / "db")], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # Each reader refuses the file with its own typed error, naming the damage.
    assert out["read_delta"].startswith("IntegrityError") and "length" in out["read_delta"], out
    assert out["load"].startswith("StoreError") and "damaged gzip" in out["load"], out
    assert not (tmp_path / "db").exists()
    # The estimate is about the truth (the sample's ratio), not the trailer's 4 GiB (~100 million lines).
    assert LINES / 2 <= out["estimate"] <= LINES * 2, out
    # The file is ~0.8 MB of text: handling it may take a few tens of MB, never anything like what it claims.
    grown_mb = (out["after_kb"] - out["before_kb"]) / 1024
    assert grown_mb < 128, f"handling a file that claims 4 GiB raised the peak RSS by {grown_mb:.0f} MB: {out}"


def test_the_isize_is_used_only_where_it_can_be_true() -> None:
    # plausible: between what was sampled and deflate's ~1032x of the compressed size
    assert _gzip_size(isize=5_000_000, compressed=1_000_000, sampled=65_536, consumed=13_000) == 5_000_000
    # 4 GiB claimed by a 1 MB file: impossible (over 1032x); the sample's ratio stands in
    assert _gzip_size(isize=0xFFFFFFFF, compressed=1_000_000, sampled=65_536, consumed=13_107) == 5_000_076
    # less than was already read: damaged, or a file over 4 GiB whose ISIZE wrapped
    assert _gzip_size(isize=10, compressed=1_000_000, sampled=65_536, consumed=13_107) == 5_000_076
    # a file whose sample says it is over 4 GiB: ISIZE (mod 2**32) cannot say so, the ratio does
    assert _gzip_size(isize=5_000_000, compressed=10**9, sampled=65_536, consumed=10_000) == 6_553_600_000


def test_a_deflate_bomb_is_refused_as_it_expands(tmp_path: Path) -> None:
    """A small file that expands without end is refused at the bound, not after it was expanded: the bound is
    the caller's (a sync passes its manifest's counts) or `MAX_TEXT_BYTES`."""
    bomb = gzip.compress(b"# lmcz-feed delta 1\n" + b"\n" * 50_000_000, mtime=0)   # ~50 KB expanding 1000x
    assert len(bomb) < 100_000
    with pytest.raises(feed.IntegrityError, match="expands past"):
        feed.read_delta(bomb, max_bytes=text_limit(1_000))
    with pytest.raises(feed.IntegrityError, match="expands past"):
        feed.read_snapshot(bomb, max_bytes=1 << 20)
    # the same text within its bound reads as before
    code = cis_list(1, seed=4)[0]
    small = gzip.compress(_delta_text([code]), mtime=0)
    assert len(feed.read_delta(small, max_bytes=text_limit(1)).add) == 1
    assert text_limit(1) == (1 << 16) + MAX_LINE_BYTES


def test_damaged_gzip_is_a_typed_error_everywhere(tmp_path: Path) -> None:
    text = _delta_text(cis_list(2_000, seed=2))
    whole = gzip.compress(text, mtime=0)
    flipped = bytearray(whole)
    flipped[len(flipped) // 2] ^= 0x40          # inside the deflate stream
    for name, data in (("cut.txt.gz", whole[:-7]), ("flipped.txt.gz", bytes(flipped)),
                       ("garbage-after.txt.gz", whole + b"not gzip")):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(feed.IntegrityError):
            feed.read_delta(path)
        with pytest.raises(StoreError):
            with Blocklist.building(tmp_path / f"{name}.db") as bl:
                bl.load([path], strict=True)
        estimate_lines([path])   # an estimate only: any number or None, never an exception or a big allocation
    assert zlib.decompress(whole, wbits=31) == text
