"""The appliers of a `Change`: each owns one part of the database and changes it inside the caller's write
transaction — codes and the prefilter (`Codes`), blocked GTINs and their index (`Gtins`), block details (`Blocks`),
the price and grey tables (`Records`), the side tables (`Side`); the metadata and the set digest are `Meta`'s.

An applier reads only its own tables; what the others need from it (counts, digest sums, metadata fields) it puts in
the `Tally` the writer passes along, and `Meta` turns that into the new version's metadata and digest.

The parts, one applier each: `codes.py` (`Codes`, and `ordered_items`: a full load's codes in key order),
`gtins.py` (`Gtins`), `blocks.py` (`Blocks`), `records.py` (`Records`), `side.py` (`Side`), `meta.py` (`Meta`);
`plan.py` holds what passes between the writer and them (`Plan`, `Tally`).
"""

from __future__ import annotations

from .blocks import Blocks
from .codes import Codes, ordered_items
from .gtins import Gtins
from .meta import Meta, read_json
from .plan import Plan, Tally
from .records import Records
from .side import Side, side_prefix

__all__ = ["Blocks", "Codes", "Gtins", "Meta", "Plan", "Records", "Side", "Tally", "ordered_items", "read_json",
           "side_prefix"]
