"""What passes between the writer and the appliers: the `Plan` of a change (cut and checked before its
transaction) and the `Tally` of what they did."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..digest import DIGEST_MOD
from ..tables import Record


@dataclass(slots=True)
class Plan:
    """A `Change` cut and checked before its transaction starts: packed keys, their prefilter keys and values."""

    add_keys: list[bytes]
    add_hashes: Any
    add_values: list[bytes]
    remove_keys: list[bytes]
    remove_hashes: Any
    gtins: list[tuple[bytes, bytes | None]]          # (packed GTIN, its block value; None: the change's block)
    remove_gtins: list[bytes]
    new_blocks: dict[int, dict[str, str]]             # block details the sources named, by their own ids
    block: dict[str, str] | None                       # the details of every code the change names itself
    plus_records: list[Record]
    minus_records: list[Record]
    meta: dict[str, Any]


@dataclass(slots=True)
class Tally:
    """What the appliers did, for the report and the metadata: counts, the change of the set digest's sums, and
    metadata fields of their own (table counts, the tables' digest)."""

    added: int = 0
    removed: int = 0
    gtins_added: int = 0
    gtins_removed: int = 0
    records_added: int = 0
    records_removed: int = 0
    sums: tuple[int, int] = (0, 0)
    fields: dict[str, Any] = field(default_factory=dict)

    def count(self, sums: tuple[int, int], sign: int = 1) -> None:
        self.sums = ((self.sums[0] + sign * sums[0]) % DIGEST_MOD, (self.sums[1] + sign * sums[1]) % DIGEST_MOD)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.gtins_added or self.gtins_removed or self.records_added
                    or self.records_removed)
