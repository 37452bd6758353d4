"""The sold register: marking codes this store has sold, so that a second sale of one code is refused offline.

A till reports each sale after the receipt is fiscalised (`POST /api/v2/cis/sell`, or `bl.record_sold(...)` in
process); from the next check on, every till of the store is answered `sold: true` for that code (the official
Local Module 2.x keeps the same register; see docs/protocol.md, "The sold register"). A return
(`/cis/return`, `return_sold`) removes it. Entries expire after `sold_expire_after` seconds (a metadata field,
30 days by default), as the official module's do.

The register lives in the store's LMDB environment, beside the blocked codes, in two tables of its own:

- `sold`: key = the identity (canonical GS1 form, ASCII) -> value = sold-at (u64 BE, Unix ms) + the CIS as CRPT
  prints it [+ NUL + the INN of the organisation that sold it, when `serve --organisations` serves several; a
  record without it, as every store made before, belongs to no organisation: see "Organisations" below];
- `sold_time`: key = sold-at (u64 BE ms) + identity -> empty: the same entries in time order, so expired ones are
  found (and purged) from the front, and `/cis/sold` pages through them oldest first.

(The key is the identity itself rather than the packed form of `codes`: a check looks it up with a cursor kept per
read transaction, and encoding the str is cheaper than packing it; the few bytes more per sale do not matter.)

Loads, deltas, feed syncs and snapshots never touch these tables: a full reload drops the blocklist's tables only.
Every change is one durable write transaction (committed before the call returns). Many concurrent sales are
batched into one transaction by a `GroupCommitter` (store/group_commit.py; the service uses one).

**Time.** A sale is stamped by the clock, but never earlier than the newest time the database already holds (its
newest sale, its last sync or load): a till whose clock is behind (a dead CMOS battery) stamps its sales at that
floor instead of a year ago, so when the clock is corrected they are not expired at once (a double sale would
pass). The purge, the one step that deletes, never runs by a clock that jumped ahead: in a process it counts no
faster than the monotonic clock since it last agreed with the wall clock, and never past a day after the
database's newest time. (Lookups judge expiry by the wall clock: a clock jumped ahead far enough to hide a sale,
30 days, has expired the whole store long before, 72 h, so no check is answered from it; and the entry is still
there once the clock is right.) See docs/service.md, "Clocks".

**Organisations.** One store may serve several organisations (`serve --organisations`): a code sold by any of them
is sold for all (the check reads only the sold-at), and the record names who sold it. The write and read operations
take an `Owner` (its INN, and whether it also owns the records that name no organisation); with one, a record of
another owner is never overwritten, removed, cleared or listed. Without one (None) they act on every record, as they
did before organisations existed. A record without an organisation is read as `organisation=None`; the NUL cannot
be part of a CIS (GS1's character set), so the old format is the new one's "no organisation".

Reads answer from the `Blocklist`'s current read transaction, so `check()`'s `sold` and its `blocked` come from
the same database version; a write made through this handle is seen by its next call. `check()` asks a filter of
the register first (store/sold_filter.py), so every write that adds entries also records `sold_high`/`sold_epoch`
(`note_added`) for readers to bring their filter forward.

The parts: `records.py` (the tables' records as stored: `SoldEntry`, `Owner`, the value's layout, the newest time
the database holds, the check's lookup), `register.py` (`SoldRegister`, the register of one open `Blocklist`: its
operations, writes and reads), `clock.py` (`PurgeClock`: the time the purge deletes by, which a clock jumped ahead
does not move) and `transfer.py` (the export format: `sold export`, `sold import`).
"""

from __future__ import annotations

from .clock import JUMP_SLACK
from .records import DEFAULT_SOLD_EXPIRE_AFTER, Owner, SoldEntry, newest_time_ms, sold_in, split_value
from .register import MAX_PAGE, PURGE_LEAD, PURGE_PER_COMMIT, SoldRegister
from .transfer import EXPORT_FORMAT, EXPORT_KIND, SoldRegisterError

__all__ = ["DEFAULT_SOLD_EXPIRE_AFTER", "EXPORT_FORMAT", "EXPORT_KIND", "JUMP_SLACK", "MAX_PAGE", "PURGE_LEAD",
           "PURGE_PER_COMMIT", "Owner", "SoldEntry", "SoldRegister", "SoldRegisterError", "newest_time_ms",
           "sold_in", "split_value"]
