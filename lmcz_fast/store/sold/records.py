"""The sold register's records as its two tables hold them (`sold`: identity -> sold-at + CIS [+ NUL + INN];
`sold_time`: sold-at + identity), the owners they name, the newest time the database holds, and the lookup a
check makes (the register's layout: the package's docstring)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import lmdb

#: How long a sale is remembered (seconds) unless the metadata field `sold_expire_after` says otherwise.
DEFAULT_SOLD_EXPIRE_AFTER = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class SoldEntry:
    """One sold code: its identity (canonical GS1 form), its CIS as CRPT prints it, when it was sold (ms), and the
    INN of the organisation that sold it (None: a record that names none, as every one made without organisations)."""

    identity: str
    cis: str
    sold_at_ms: int
    organisation: str | None = None


@dataclass(frozen=True, slots=True)
class Owner:
    """On whose behalf a register operation acts (`serve --organisations`): the organisation's INN, and whether it
    also owns the records that name no organisation (the sales recorded before the organisations file)."""

    inn: str
    owns_unowned: bool = False

    def owns(self, organisation: str | None) -> bool:
        """Whether a record naming `organisation` (None: none) is this owner's."""
        return organisation == self.inn if organisation is not None else self.owns_unowned


def split_value(value: bytes | memoryview) -> tuple[int, str, str | None]:
    """A `sold` record's value: (sold-at ms, CIS, organisation INN or None). Records written before organisations
    existed hold no NUL and read as no organisation."""
    raw = bytes(value)
    cis, sep, organisation = raw[8:].partition(b"\0")
    return int.from_bytes(raw[:8], "big"), cis.decode(), organisation.decode("ascii") if sep else None


def _value(stamp: bytes, cis: str, organisation: str | None) -> bytes:
    return stamp + cis.encode() + (b"" if organisation is None else b"\0" + organisation.encode("ascii"))


def _ms(value: float) -> bytes:
    return int(value).to_bytes(8, "big")


def newest_time_ms(txn: lmdb.Transaction, time_db: Any, meta_db: Any) -> int:
    """The newest time the database holds (Unix ms): its newest sale, its last sync or load; 0 if none."""
    newest = 0
    with txn.cursor(db=time_db) as cursor:
        if cursor.last():
            newest = int.from_bytes(bytes(cursor.key()[:8]), "big")
    for name in (b"last_sync_at", b"loaded_at"):
        raw = txn.get(name, db=meta_db)
        value = json.loads(bytes(raw)) if raw is not None else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            newest = max(newest, int(value * 1000))
    return newest


def sold_in(cursor: lmdb.Cursor, identity: str, meta: dict[str, Any], now: float) -> bool:
    """Whether `identity` is in the register and not expired, through a cursor on the `sold` table of the reader's
    transaction: one `set_key` is what `Blocklist.check` adds to a check (a cursor lookup costs less than half a
    `Transaction.get`, which also releases and retakes the GIL); the expiry is looked at only for a code there."""
    if not cursor.set_key(identity.encode("ascii")):
        return False
    expire = meta.get("sold_expire_after") or DEFAULT_SOLD_EXPIRE_AFTER
    return int.from_bytes(cursor.value()[:8], "big") >= int((now - float(expire)) * 1000)
