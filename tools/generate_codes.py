"""Write generated marking codes to files: a blocklist (one CIS per line) or scans (what a till receives, one per line).

Needs lmcz-fast importable (installed, or `PYTHONPATH=.` in a checkout with the extension built in place).

    python tools/generate_codes.py blocklist 900000 blocked.txt --seed 2026
    python tools/generate_codes.py scans 10000 scans.txt --damage-rate 0.3 --groups shoes,milk
    python tools/generate_codes.py scans 1000 - --format jsonl        # to stdout, one JSON object per line

To try a list: a blocklist and scans of which a share are codes on it (damaged like the others), and which ones:

    python tools/generate_codes.py scans 10000 try-scans.txt --blocklist try-list.txt --list-size 100000 \\
        --blocked-share 0.1 --damage-rate 0.3 --truth truth.txt
    lmcz-fast load store.db try-list.txt && lmcz-fast lookup store.db < try-scans.txt

An output file that exists is not overwritten (the tool stops and says so) unless --force is given.

A text scans file holds each scan as a scanner types it, one per line: GS as the GS byte (0x1D; with `--gs symbol`
as the visible U+241D, which the parser reads as GS too), and a scan that ends in CR (the `trailing_newline` damage)
ends its line with CR LF, one that ends in LF with its LF. Every line reads back, through `lmcz-fast lookup` (stdin,
one scan per line) or any reader that splits lines at LF, as the code it was made from. `--format jsonl`
writes {"scan", "identity", "cis", "group", "damage"} per line instead (and "blocked" with --blocklist).
`--truth FILE` writes, per scan line, `blocked` or `free` and the code's identity. Everything is deterministic in
--seed (see lmcz_fast/synth.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from typing import Any, BinaryIO

from lmcz_fast import synth

GS_SYMBOL = "\u241d"        # SYMBOL FOR GROUP SEPARATOR; the parser reads it as GS (docs/codes.md)


def _line(scan: str, gs: str) -> str:
    """The scan as one line of a text file, ended by LF: a scan's own trailing CR or CR LF stays (CR LF), a lone LF
    is the line's end. Readers split lines at LF (`lmcz-fast lookup` reads stdin so) and drop a CR before it."""
    body = scan.rstrip("\r\n")
    end = "\r\n" if scan[len(body):].startswith("\r") else "\n"
    if gs == "symbol":
        body = body.replace("\x1d", GS_SYMBOL)
    return body + end


def _write(path: str, text: str) -> None:
    data = text.encode("utf-8")
    if path == "-":
        out: BinaryIO = sys.stdout.buffer
        out.write(data)
        out.flush()
    else:
        with open(path, "wb") as stream:
            stream.write(data)


def _scans(args: argparse.Namespace, groups: list[str] | None) -> tuple[list[synth.GeneratedCode], list[bool],
                                                                         list[str]]:
    """(scans, whether each is of a listed code, the blocklist's lines)."""
    if args.blocklist is None:
        codes = synth.generate(args.count, seed=args.seed, groups=groups, damage_rate=args.damage_rate)
        return codes, [False] * len(codes), []
    hits = round(args.count * args.blocked_share)
    if hits > args.list_size:
        raise ValueError(f"--blocked-share {args.blocked_share} of {args.count} scans is {hits} listed codes, more "
                         f"than --list-size {args.list_size}")
    codes = synth.generate(args.list_size + args.count - hits, seed=args.seed, groups=groups,
                           damage_rate=args.damage_rate)
    listed, fresh = codes[:args.list_size], codes[args.list_size:]
    rng = random.Random(args.seed ^ 0x7A11)
    picked = [(code, True) for code in rng.sample(listed, hits)] + [(code, False) for code in fresh]
    rng.shuffle(picked)
    return [c for c, _ in picked], [b for _, b in picked], [c.cis for c in listed]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("blocklist", "scans"), help="CIS lines, or raw scans")
    parser.add_argument("count", type=int, help="how many codes")
    parser.add_argument("output", help="file to write, or - for stdout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--groups", help=f"comma-separated product groups (default all: {','.join(synth.GROUPS)})")
    parser.add_argument("--damage-rate", type=float, default=0.0, help="share of scans with scanner damage (scans)")
    parser.add_argument("--format", choices=("text", "jsonl"), default="text",
                        help="scans: one scan per line as typed, or JSON lines")
    parser.add_argument("--gs", choices=("raw", "symbol"), default="raw",
                        help="text scans: GS as the 0x1D byte, or as the visible symbol U+241D")
    parser.add_argument("--blocklist", metavar="FILE",
                        help="scans: also write a blocklist to FILE, and make --blocked-share of the scans its codes")
    parser.add_argument("--list-size", type=int, default=None,
                        help="codes in the --blocklist (default: COUNT)")
    parser.add_argument("--blocked-share", type=float, default=0.1,
                        help="with --blocklist: share of the scans that are of listed codes (default 0.1)")
    parser.add_argument("--truth", metavar="FILE",
                        help="scans: write 'blocked' or 'free' and the identity, tab-separated, per scan line")
    parser.add_argument("--force", action="store_true", help="overwrite output files that exist (default: refuse)")
    args = parser.parse_args(argv)
    if not args.force:
        there = [path for path in (args.output, args.blocklist, args.truth)
                 if path is not None and path != "-" and os.path.exists(path)]
        if there:
            parser.error(f"{', '.join(there)} exists already; give --force to overwrite")
    if args.count < 0:
        parser.error("count must be >= 0")
    if not 0.0 <= args.damage_rate <= 1.0:
        parser.error("--damage-rate must be within 0..1")
    if not 0.0 <= args.blocked_share <= 1.0:
        parser.error("--blocked-share must be within 0..1")
    if args.what == "blocklist" and (args.blocklist or args.truth):
        parser.error("--blocklist and --truth go with 'scans' (a blocklist alone: 'blocklist COUNT FILE')")
    if args.list_size is None:
        args.list_size = args.count
    if args.list_size < 0:
        parser.error("--list-size must be >= 0")
    groups = args.groups.split(",") if args.groups else None

    start = time.perf_counter()
    try:
        if args.what == "blocklist":
            lines = [c + "\n" for c in synth.cis_list(args.count, seed=args.seed, groups=groups)]
            listed: list[str] = []
            codes: list[Any] = []
            blocked: list[bool] = []
        else:
            codes, blocked, listed = _scans(args, groups)
            if args.format == "jsonl":
                lines = []
                for c, hit in zip(codes, blocked):
                    record: dict[str, Any] = {"scan": c.scan, "identity": c.identity, "cis": c.cis,
                                              "group": c.group, "damage": list(c.damage)}
                    if args.blocklist is not None:
                        record["blocked"] = hit
                    lines.append(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                lines = [_line(c.scan, args.gs) for c in codes]
    except ValueError as exc:
        parser.error(str(exc))
    _write(args.output, "".join(lines))
    if args.blocklist is not None:
        _write(args.blocklist, "".join(c + "\n" for c in listed))
    if args.truth is not None:
        _write(args.truth, "".join(f"{'blocked' if hit else 'free'}\t{c.identity}\n" for c, hit in zip(codes, blocked)))
    took = f"in {time.perf_counter() - start:.2f} s"
    if args.blocklist is not None:
        print(f"wrote {len(lines)} scans to {args.output} ({sum(blocked)} of listed codes) and {len(listed)} codes to "
              f"{args.blocklist} {took}", file=sys.stderr)
    elif args.output != "-":
        print(f"wrote {len(lines)} {args.what} to {args.output} {took}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
