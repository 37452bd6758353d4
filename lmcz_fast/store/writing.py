"""The writer of a `Blocklist`: every change of the store is a `Change`, applied in one LMDB write transaction by
the appliers of `appliers/`, each owning one part of the database.

`load` and `apply_delta` (the public calls) only build a `Change`; so do the feed, replication and the tables.
Kept apart from the read side because it is a job of its own: every till process reads; only the loader, the feed
and the service's writer threads come here.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from .appliers import Blocks, Codes, Gtins, Meta, Plan, Records, Side, Tally, ordered_items
from .change import Change
from .digest import format_digest
from .errors import LoadError, StoreError
from .group_commit import WriteOp
from .guard import check_replacement, refusals_recorded
from .handle import StoreHandle
from .keys import cut_all, pack_gtin
from .records import DeltaReport, LoadReport
from .sources import Collected, collect
from .tables import META_COUNTS, META_TABLES_DIGEST, META_TABLES_VERSION, parse_record
from .tables import whole_tables as tables_of

#: Metadata fields the store keeps itself: `set_meta` and a change's `meta` may not set them.
RESERVED_META = frozenset({
    "version", "codes", "gtins", "set_digest", "prefilter", "gtin_index", "prefilter_index", "prefilter_base",
    "prefilter_base_index", "prefilter_added", "prefilter_removed", "instance_id",
    "updated_at", "loaded_at", "source", META_TABLES_DIGEST, META_TABLES_VERSION, *META_COUNTS.values(),
})


def checked_meta(fields: dict[str, Any]) -> dict[str, Any]:
    """Refuse fields the store keeps itself, and values that are not JSON, before any transaction starts."""
    reserved = (RESERVED_META & fields.keys()) | {name for name in fields if name.startswith("prefilter")}
    if reserved:
        raise StoreError(f"these fields are kept by the store itself: {sorted(reserved)}")
    for name, value in fields.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"metadata field {name!r} is not a JSON value: {exc}") from exc
    return dict(fields)


class Writer:
    """The write side of one `Blocklist` (`bl.writer`): applies `Change`s, loads sources, sets metadata. The
    handle renews its version after every commit, so its next call answers from what was written."""

    def __init__(self, handle: StoreHandle) -> None:
        self._handle = handle
        self._renew = handle.renew
        dbs = handle.dbs
        self._codes = Codes(dbs)
        self._gtins = Gtins(dbs)
        self._blocks = Blocks(dbs)
        self._records = Records(dbs)
        self._side = Side(dbs)
        self._meta = Meta(dbs)

    # -- metadata --------------------------------------------------------------------------------------------

    def set_meta(self, fields: dict[str, Any]) -> None:
        """Set metadata fields (JSON values) in one durable transaction."""
        self._handle.require_writable()
        fields = checked_meta(fields)
        with self._handle.write() as txn:
            self._meta.put(txn, fields)
        self._renew()

    def op_set_meta(self, fields: dict[str, Any]) -> WriteOp:
        """A write operation setting metadata fields (checked now, as `set_meta`), for `commit` or a group commit:
        the fields the store's own services keep (the service's `grey_list_enabled`)."""
        checked = checked_meta(fields)
        meta = self._meta

        def op(txn: Any) -> None:
            meta.put(txn, checked)

        return op

    def commit(self, op: WriteOp) -> Any:
        """Run `op` in one durable write transaction; this handle sees it from its next read. Not refused on a
        read-only handle: such operations are the store's own (sales, the service's switches), not the list's."""
        with self._handle.write() as txn:
            result = op(txn)
        self._handle.invalidate()
        return result

    # -- loads -----------------------------------------------------------------------------------------------

    def load(self, sources: Iterable[Any] | str | os.PathLike[str], change: Change, *, strict: bool = False,
             progress: Callable[[int], None] | None = None, whole_tables: bool = False) -> LoadReport:
        """Read `sources` into `change` (its codes, GTINs, block details and `@` records) and apply it; see
        `Blocklist.load`. A full change with `whole_tables` (or with any records) makes the tables exactly its
        records; without, they are kept."""
        self._handle.require_writable()
        checked_meta(change.meta or {})
        started = time.perf_counter()
        if isinstance(sources, (str, bytes, os.PathLike)):
            sources = [sources]
        report = LoadReport(replaced=change.replace)
        collected = Collected()
        for source in sources:
            collect(source, collected, report, change.block, progress)
        records = list(collected.records)
        records.extend(parse_record(item) for item in change.add_records)
        if strict and report.rejected:
            raise LoadError(
                f"{report.rejected} bad lines (first: line {report.errors[0].line} of {report.errors[0].source}: "
                f"{report.errors[0].message}); nothing was loaded",
                report,
            )
        change.collected = collected
        if change.replace:
            if change.tables is None and (records or whole_tables):
                change.tables = tables_of(records)
            change.add_records = ()
            self._apply_full(change, report)
        else:
            change.add_gtins = list(collected.gtins)
            change.add_records = records
            if change.to_version is None:
                with self._handle.lock:
                    change.to_version = self._handle.fresh().meta().get("version") + 1
            delta = self.apply(change)
            report.codes, report.gtins, report.version = delta.added, delta.gtins_added, delta.to_version
        report.seconds = time.perf_counter() - started
        return report

    # -- applying --------------------------------------------------------------------------------------------

    def apply(self, change: Change) -> DeltaReport:
        """Apply `change` in one write transaction (see `Change`); a full change reports as a delta from the
        version it replaced."""
        self._handle.require_writable()
        if change.replace:
            if change.collected is None:
                change.collected = _collected_of(change)
            report = LoadReport(replaced=True)
            current = self._handle_version()
            self._apply_full(change, report)
            return DeltaReport(True, current, report.version or 0, report.codes, 0, report.gtins, 0,
                               report.seconds)
        if change.to_version is None:
            raise StoreError("a delta names the version it goes to (to_version)")
        return self._apply_delta(change, self._plan(change))

    def _handle_version(self) -> int:
        with self._handle.lock:
            return int(self._handle.fresh().meta().get("version", 0))

    def _plan(self, change: Change) -> Plan:
        collected = change.collected
        if collected is not None:
            # a load that adds: its lines were cut while they were read, so take the packed keys as they are
            add_keys, add_hashes = collected.keys, collected.hashes
            add_values = list(collected.values)
            gtins: list[tuple[bytes, bytes | None]] = [(pack_gtin(g), v) for g, v in collected.gtins.items()]
            new_blocks = collected.blocks
        else:
            add_keys, add_hashes = cut_all(change.add, "add")
            add_values = [b""] * len(add_keys)
            gtins = [(pack_gtin(g), None) for g in change.add_gtins]
            new_blocks = {}
        remove_keys, remove_hashes = cut_all(change.remove, "remove")
        return Plan(
            add_keys=add_keys, add_hashes=add_hashes, add_values=add_values, remove_keys=remove_keys,
            remove_hashes=remove_hashes, gtins=gtins, remove_gtins=[pack_gtin(g) for g in change.remove_gtins],
            new_blocks=new_blocks, block=change.block,
            plus_records=[parse_record(item) for item in change.add_records],
            minus_records=[parse_record(item) for item in change.remove_records],
            meta=checked_meta(change.meta or {}),
        )

    def _apply_delta(self, change: Change, plan: Plan) -> DeltaReport:
        """Block and unblock codes, GTINs and records, moving the version to `change.to_version`; see
        `Blocklist.apply_delta` for the rules."""
        started = time.perf_counter()
        to_version = change.to_version
        assert to_version is not None
        meta = self._meta
        cached = self._codes.forget()
        with self._handle.write() as txn:
            current = meta.get(txn, "version")
            if meta.delta_is_done(current, to_version, change.from_version):
                if cached:
                    self._codes.restore(cached)
                return DeltaReport(False, current, current, 0, 0, 0, 0, time.perf_counter() - started)
            block_value = self._blocks.add(txn, plan, own_block=change.collected is None)
            digest_text = meta.get(txn, "set_digest")
            bitmap = self._codes.bitmap(txn, cached, current, digest_text)
            count = meta.get(txn, "codes")
            tally = Tally()
            # Fold the overlay into a new base or not; the overlay's pages first, while the free runs are whole.
            self._codes.reserve(txn, bitmap, len(plan.add_keys), len(plan.remove_keys))
            self._codes.delta(txn, plan, bitmap, tally)
            self._gtins.delta(txn, plan, block_value, tally)
            self._records.delta(txn, plan, to_version, tally)
            new_digest = meta.digest(digest_text, tally.sums)
            meta.expect(new_digest, change.expect_digest, f"the delta {current}->{to_version}")
            if not (tally.changed or change.advance_empty):
                if change.side or change.clear_side:
                    # The records stay; the writer's side tables and its fields about them move together.
                    self._side.write(txn, change.side, change.clear_side)
                    meta.put(txn, plan.meta)
                    self._codes.keep_prefilter(txn, bitmap)      # the same set and base: the reserved pages get it
                    self._codes.check_written()
                else:
                    txn.abort()  # nothing changes: not even a new block record or the version
                if cached:
                    self._codes.restore(cached)
                return DeltaReport(False, current, current, 0, 0, 0, 0, time.perf_counter() - started)
            meta.put(txn, meta.version_fields(
                to_version, change.synced, **plan.meta, **tally.fields, codes=count + tally.added - tally.removed,
                gtins=self._gtins.count(txn), set_digest=new_digest))
            self._codes.write_prefilter(txn, bitmap)
            if tally.gtins_added or tally.gtins_removed:
                self._gtins.write_index(txn)
            self._side.write(txn, change.side, change.clear_side)
            self._codes.check_written()
        self._codes.remember(to_version, new_digest, bitmap)
        self._renew()
        return DeltaReport(
            applied=True, from_version=current, to_version=to_version, added=tally.added, removed=tally.removed,
            gtins_added=tally.gtins_added, gtins_removed=tally.gtins_removed,
            seconds=time.perf_counter() - started, records_added=tally.records_added,
            records_removed=tally.records_removed,
        )

    def _apply_full(self, change: Change, report: LoadReport) -> None:
        """Replace everything with `change.collected` in one write transaction: codes in key order with MDB_APPEND
        (full pages, no B-tree splits), the prefilter, the collision counts and the digest computed in bulk. The
        price and grey tables are replaced by `change.tables`, or kept (with their part of the digest) when None."""
        from pyroaring import BitMap

        started = time.perf_counter()
        collected = change.collected
        assert collected is not None
        items, distinct, sorted_hashes, shared_keys, sums = ordered_items(
            collected.keys, collected.hashes, collected.values if collected.mixed else None,
            collected.uniform_value or b"")
        report.duplicates += len(collected.keys) - distinct
        bitmap = BitMap(sorted_hashes)
        gtin_keys = sorted((pack_gtin(gtin), value) for gtin, value in collected.gtins.items())
        code_sums = Meta.with_gtins(sums, [key for key, _ in gtin_keys])
        tables, meta = change.tables, self._meta
        if tables is not None:
            digest = format_digest((code_sums[0] + tables.sums[0], code_sums[1] + tables.sums[1]))
            meta.expect(digest, change.expect_digest, "the load")
        self._codes.forget()
        # The shrink guard (store/guard.py), in the transaction it protects: a refusal aborts it and is recorded.
        with refusals_recorded(self._handle), self._handle.write() as txn:
            new_version = meta.full_version(meta.get(txn, "version"), change.to_version)
            check_replacement(txn, self._handle.dbs, blocked=distinct + len(gtin_keys),
                              records=None if tables is None else len(tables.records))
            fields: dict[str, Any] = {}
            if tables is None:
                # The tables stay: their part of the digest comes from the transaction that keeps them.
                kept = self._records.kept_sums(txn)
                digest = format_digest((code_sums[0] + kept[0], code_sums[1] + kept[1]))
                meta.expect(digest, change.expect_digest, "the load")
            else:
                self._records.replace(txn, tables, new_version, fields)
            self._codes.replace(txn, items, shared_keys, bitmap)
            self._gtins.replace(txn, gtin_keys)
            self._blocks.replace(txn, collected.blocks)
            fields = meta.version_fields(new_version, change.synced, **checked_meta(change.meta or {}), **fields,
                                         codes=distinct, gtins=len(gtin_keys), set_digest=digest,
                                         source=collected.source_names)
            fields["loaded_at"] = fields["updated_at"]
            meta.put(txn, fields)
            self._side.write(txn, change.side, change.clear_side)
        self._codes.remember(new_version, digest, bitmap)
        report.version, report.codes, report.gtins = new_version, distinct, len(gtin_keys)
        report.seconds = time.perf_counter() - started
        self._renew()


def _collected_of(change: Change) -> Collected:
    """The codes and GTINs a full `Change` names itself (no sources read), as a load gathers them."""
    collected = Collected()
    value = collected.block_value(dict(change.block or {}))
    keys, hashes = cut_all(change.add, "add")
    collected.add(keys, hashes, value)
    for gtin in change.add_gtins:
        collected.gtins[gtin] = value
    collected.source_names.append("<change>")
    return collected
