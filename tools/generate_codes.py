"""Write generated marking codes to a file: a blocklist (one CIS per line) or scans (what a till receives).

Needs lmcz-fast importable (installed, or `PYTHONPATH=.` in a checkout with the extension built in place).

    python tools/generate_codes.py blocklist 900000 blocked.txt --seed 2026
    python tools/generate_codes.py scans 10000 scans.txt --damage-rate 0.3 --groups shoes,milk
    python tools/generate_codes.py scans 1000 - --format jsonl        # to stdout, one JSON object per line

Scans hold GS (0x1D) and maybe CR/LF, so the text format escapes them as `\\u001d`, `\\r`, `\\n` (the parser reads
`\\u001d` back as GS); `--format jsonl` writes {"scan", "identity", "cis", "group", "damage"} per line instead.
Everything is deterministic in --seed (see lmcz_fast/synth.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from lmcz_fast import synth


def _escape(scan: str) -> str:
    return scan.replace("\\", "\\\\").replace("\x1d", "\\u001d").replace("\r", "\\r").replace("\n", "\\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("blocklist", "scans"), help="CIS lines, or raw scans")
    parser.add_argument("count", type=int, help="how many codes")
    parser.add_argument("output", help="file to write, or - for stdout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--groups", help=f"comma-separated product groups (default all: {','.join(synth.GROUPS)})")
    parser.add_argument("--damage-rate", type=float, default=0.0, help="share of scans with scanner damage (scans)")
    parser.add_argument("--format", choices=("text", "jsonl"), default="text", help="scans: escaped text or JSON lines")
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error("count must be >= 0")
    if not 0.0 <= args.damage_rate <= 1.0:
        parser.error("--damage-rate must be within 0..1")
    groups = args.groups.split(",") if args.groups else None

    start = time.perf_counter()
    try:
        if args.what == "blocklist":
            lines = synth.cis_list(args.count, seed=args.seed, groups=groups)
        else:
            codes = synth.generate(args.count, seed=args.seed, groups=groups, damage_rate=args.damage_rate)
            if args.format == "jsonl":
                lines = [
                    json.dumps({"scan": c.scan, "identity": c.identity, "cis": c.cis, "group": c.group,
                                "damage": list(c.damage)}, ensure_ascii=False)
                    for c in codes
                ]
            else:
                lines = [_escape(c.scan) for c in codes]
    except ValueError as exc:
        parser.error(str(exc))
    text = "\n".join(lines) + ("\n" if lines else "")
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
        print(f"wrote {len(lines)} {args.what} to {args.output} in {time.perf_counter() - start:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
