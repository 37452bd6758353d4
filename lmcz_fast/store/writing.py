"""The write side of `Blocklist`: metadata, full loads and deltas, each in one LMDB write transaction.

Kept apart from the read side (`blocklist.py`) because it is a job of its own: the read side is what every till
process runs; only the loader, the feed and the service's writer threads come here.
"""

from __future__ import annotations

import array
import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import lmdb

from .._bulk import prepare_full_load
from .digest import _DIGEST_MOD, digest_add, format_digest, parse_digest
from .environment import (
    DB_BLOCKS,
    DB_CODES,
    DB_COLLISIONS,
    DB_GTINS,
    DB_META,
    DB_SIDE,
    META_GTIN_INDEX,
    META_PREFILTER,
    put_prefilter,
    write_txn,
)
from .errors import DigestMismatchError, LoadError, StoreError, VersionError
from .guard import check_replacement, refusals_recorded
from .keys import cut_all, decode_block_id, encode_block_id, gtin_index, pack_gtin
from .records import DeltaReport, LoadReport
from .sources import Collected, collect
from .tables import (
    META_COUNTS,
    META_TABLES_DIGEST,
    META_TABLES_VERSION,
    Record,
    TableRows,
    apply_records,
    parse_record,
    whole_tables,
    write_whole,
)


class BlocklistWriter:
    """Mixin of `Blocklist`: every method that changes the store. Needs the attributes `Blocklist.open` sets."""

    # -- writing ---------------------------------------------------------------------------------------------

    def _require_writable(self) -> None:
        if self._readonly:
            raise StoreError("this blocklist was opened read-only; open it with readonly=False to change it")
        if self._env is None:
            raise StoreError("the blocklist is closed")

    def set_meta(self, **fields: Any) -> None:
        """Set metadata fields (JSON values) in one transaction, e.g. `feed_url` or `refresh_window`."""
        self._require_writable()
        fields = self._checked_meta(fields)
        with write_txn(self._env, self._path, self._dbs[DB_META]) as txn:
            self._put_meta(txn, fields)
        self._renew()

    def mark_synced(self, at: float | None = None, feed_url: str | None = None, **fields: Any) -> None:
        """Record a successful sync, with any other `fields` (as `set_meta`), in one transaction: the freshness
        clock restarts from `at` (now by default)."""
        fields["last_sync_at"] = time.time() if at is None else at
        if feed_url is not None:
            fields["feed_url"] = feed_url
        self.set_meta(**fields)

    @staticmethod
    def _checked_meta(fields: dict[str, Any]) -> dict[str, Any]:
        """Refuse fields the store keeps itself, and values that are not JSON, before any transaction starts."""
        reserved = {"version", "codes", "gtins", "set_digest", "prefilter", "gtin_index", "prefilter_index",
                    "instance_id", "updated_at", "loaded_at", "source", META_TABLES_DIGEST, META_TABLES_VERSION,
                    *META_COUNTS.values()}
        if reserved & fields.keys():
            raise StoreError(f"these fields are kept by the store itself: {sorted(reserved & fields.keys())}")
        for name, value in fields.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise StoreError(f"metadata field {name!r} is not a JSON value: {exc}") from exc
        return dict(fields)

    def load(
        self,
        sources: Iterable[Any] | str | os.PathLike[str],
        *,
        replace: bool = True,
        strict: bool = False,
        progress: Callable[[int], None] | None = None,
        version: int | None = None,
        block: dict[str, str] | None = None,
        synced: bool = False,
        expect_digest: str | None = None,
        meta: dict[str, Any] | None = None,
        side: Mapping[bytes, Mapping[bytes, bytes | None]] | None = None,
        clear_side: Iterable[bytes] = (),
        records: Iterable[str | Record] | None = None,
    ) -> LoadReport:
        """Load blocked codes from files or iterables of lines, in one write transaction.

        Each source is a path (plain text with one scan, CIS or 14-digit GTIN per line; CSV with a header naming a
        `cis`/`code` column and optionally `gtin`, `authority`, `reason`, `since`; gzip of either) or an iterable
        of lines. Raw scans are cut to their identity. Bad lines are counted and the first ones reported with
        their line numbers; with `strict=True` any bad line refuses the whole load and nothing changes.
        `replace=True` makes the result exactly the sources (a new full version); `replace=False` adds to what is
        there. `progress` is called with the number of lines read so far, now and then.
        `expect_digest`, `meta`, `synced`, `side` and `clear_side` work as in `apply_delta`.

        Table records (minimum prices, grey GTINs; see `store.tables`) come as `records` or as `@kind ...` lines
        in the sources. With `replace=True` and any records, both tables become exactly those records (a feed
        snapshot is loaded whole); with none, the tables are kept as they are. With `replace=False` records are
        added (a record sets its key's value).
        """
        self._require_writable()
        extra = self._checked_meta(meta or {})
        started = time.perf_counter()
        if isinstance(sources, (str, bytes, os.PathLike)):
            sources = [sources]
        report = LoadReport(replaced=replace)
        collected = Collected()
        for source in sources:
            collect(source, collected, report, block, progress)
        table_records = list(collected.records)
        if records is not None:
            table_records.extend(parse_record(item) for item in records)
        if strict and report.rejected:
            raise LoadError(
                f"{report.rejected} bad lines (first: line {report.errors[0].line} of {report.errors[0].source}: "
                f"{report.errors[0].message}); nothing was loaded",
                report,
            )
        if replace:
            tables = whole_tables(table_records) if records is not None or table_records else None
            with refusals_recorded(self):      # the shrink guard's refusal is recorded (store/guard.py)
                self._write_full(collected, report, version, synced, expect_digest, extra, side, clear_side, tables)
        else:
            delta = self.apply_delta(
                _collected=collected,
                add_gtins=list(collected.gtins),
                add_records=table_records,
                to_version=version if version is not None else self.get_meta("version") + 1,
                block=block,
                synced=synced,
                expect_digest=expect_digest,
                meta=extra,
                side=side,
                clear_side=clear_side,
            )
            report.codes = delta.added
            report.gtins = delta.gtins_added
            report.version = delta.to_version
        report.seconds = time.perf_counter() - started
        return report

    def _write_full(self, collected: Collected, report: LoadReport, version: int | None, synced: bool,
                    expect_digest: str | None, extra: dict[str, Any],
                    side: Mapping[bytes, Mapping[bytes, bytes | None]] | None = None,
                    clear_side: Iterable[bytes] = (), tables: TableRows | None = None) -> None:
        """Replace everything with `collected` in one write transaction: codes in key order with MDB_APPEND (full
        pages, no B-tree splits), the prefilter, the collision counts and the digest computed in bulk. The price
        and grey tables are replaced by `tables`, or kept (and their part of the digest with them) when None."""
        from pyroaring import BitMap

        keys = collected.keys
        order, unique_keys, sorted_hashes, shared_keys, sums = prepare_full_load(keys, collected.hashes)
        if collected.mixed:
            values = collected.values
            items: Iterable[tuple[bytes, bytes]] = zip(unique_keys, (values[index] for index in order))
        else:
            items = zip(unique_keys, itertools.repeat(collected.uniform_value or b""))
        report.duplicates += len(keys) - len(unique_keys)
        bitmap = BitMap(sorted_hashes)
        gtin_keys = sorted((pack_gtin(gtin), value) for gtin, value in collected.gtins.items())
        code_sums = digest_add(sums, (), [key for key, _ in gtin_keys])
        if tables is not None:
            digest = format_digest((code_sums[0] + tables.sums[0], code_sums[1] + tables.sums[1]))
            self._expect(digest, expect_digest, "the load")
        now = time.time()
        self._prefilter_cache = None
        with write_txn(self._env, self._path, self._dbs[DB_META]) as txn:
            current = self._read_json(txn, "version")
            new_version = current + 1 if version is None else version
            if new_version <= current:
                raise VersionError(
                    f"a full load must move the version forward: the store holds {current}, load asked for "
                    f"{new_version}",
                    current=current,
                    expected=new_version,
                )
            # The shrink guard (store/guard.py), in the transaction it protects: a refusal aborts it.
            check_replacement(txn, self._dbs[DB_META], blocked=len(unique_keys) + len(gtin_keys),
                              records=None if tables is None else len(tables.records))
            if tables is None:
                # The tables stay: their part of the digest comes from the transaction that keeps them.
                kept = parse_digest(self._read_json(txn, META_TABLES_DIGEST, format_digest((0, 0))))
                digest = format_digest((code_sums[0] + kept[0], code_sums[1] + kept[1]))
                self._expect(digest, expect_digest, "the load")
            for name in (DB_CODES, DB_GTINS, DB_COLLISIONS, DB_BLOCKS):
                txn.drop(self._dbs[name], delete=False)
            with txn.cursor(db=self._dbs[DB_CODES]) as cursor:
                cursor.putmulti(items, append=True)
            with txn.cursor(db=self._dbs[DB_GTINS]) as cursor:
                cursor.putmulti(gtin_keys, append=True)
            with txn.cursor(db=self._dbs[DB_COLLISIONS]) as cursor:
                cursor.putmulti(
                    [(h.to_bytes(4, "big"), n.to_bytes(4, "big")) for h, n in sorted(shared_keys.items())],
                    append=True,
                )
            for block_id, details in collected.blocks.items():
                txn.put(block_id.to_bytes(4, "big"), json.dumps(details).encode(), db=self._dbs[DB_BLOCKS])
            meta_fields: dict[str, Any] = {
                **extra,
                "version": new_version,
                "updated_at": now,
                "loaded_at": now,
                "codes": len(unique_keys),
                "gtins": len(gtin_keys),
                "set_digest": digest,
                "source": collected.source_names,
            }
            if synced:
                meta_fields["last_sync_at"] = now
            if tables is not None:
                write_whole(txn, self._dbs, tables)
                meta_fields[META_TABLES_DIGEST] = format_digest(tables.sums)
                meta_fields[META_TABLES_VERSION] = new_version
                meta_fields.update({META_COUNTS[kind]: n for kind, n in tables.counts.items()})
            self._put_meta(txn, meta_fields)
            put_prefilter(txn, self._dbs[DB_META], bitmap.serialize())
            txn.put(META_GTIN_INDEX, gtin_index(key for key, _ in gtin_keys), db=self._dbs[DB_META])
            self._put_side(txn, side, clear_side)
        self._prefilter_cache = (new_version, digest, bitmap)
        report.version = new_version
        report.codes = len(unique_keys)
        report.gtins = len(gtin_keys)
        self._renew()

    def _put_side(self, txn: lmdb.Transaction, side: Mapping[bytes, Mapping[bytes, bytes | None]] | None,
                  clear: Iterable[bytes]) -> None:
        """Side tables of a writer above the store, changed in the same transaction as the records they explain
        (replication keeps its document map here). `clear` empties tables first; a None value deletes a key."""
        db = self._dbs[DB_SIDE]
        for table in clear:
            prefix = _side_prefix(table)
            with txn.cursor(db=db) as cursor:
                if cursor.set_range(prefix):
                    while cursor.key()[:len(prefix)] == prefix:
                        if not cursor.delete():
                            break
        for table, entries in (side or {}).items():
            prefix = _side_prefix(table)
            for key, value in entries.items():
                if value is None:
                    txn.delete(prefix + key, db=db)
                else:
                    txn.put(prefix + key, value, db=db)

    def _put_meta(self, txn: lmdb.Transaction, fields: dict[str, Any]) -> None:
        for name, value in fields.items():
            txn.put(name.encode(), json.dumps(value).encode(), db=self._dbs[DB_META])

    _MISSING = object()

    def _read_json(self, txn: lmdb.Transaction, name: str, default: Any = _MISSING) -> Any:
        raw = txn.get(name.encode(), db=self._dbs[DB_META])
        if raw is None:
            if default is not BlocklistWriter._MISSING:
                return default
            raise StoreError(f"{self._path}: metadata field {name!r} is missing")
        return json.loads(bytes(raw))

    @staticmethod
    def _expect(digest: str, expect_digest: str | None, what: str) -> None:
        """Refuse (before commit: the caller's transaction is aborted) a write that would not lead to
        `expect_digest`."""
        if expect_digest is not None and digest != expect_digest:
            raise DigestMismatchError(
                f"{what} leads to digest {digest}, expected {expect_digest}; nothing was changed",
                expected=expect_digest,
                actual=digest,
            )

    def apply_delta(
        self,
        add: Iterable[str | bytes] = (),
        remove: Iterable[str | bytes] = (),
        *,
        to_version: int,
        from_version: int | None = None,
        add_gtins: Iterable[str] = (),
        remove_gtins: Iterable[str] = (),
        block: dict[str, str] | None = None,
        synced: bool = False,
        expect_digest: str | None = None,
        meta: dict[str, Any] | None = None,
        side: Mapping[bytes, Mapping[bytes, bytes | None]] | None = None,
        clear_side: Iterable[bytes] = (),
        advance_empty: bool = False,
        add_records: Iterable[str | Record] = (),
        remove_records: Iterable[str | Record] = (),
        _collected: Collected | None = None,
    ) -> DeltaReport:
        """Block and unblock codes and GTINs, moving the version to `to_version`, in one write transaction.

        Removals are applied before additions. A delta whose `from_version` is not the current version, or whose
        `to_version` does not move forward, raises `VersionError` and changes nothing; a delta whose `to_version`
        the store already holds is a harmless no-op (`applied=False`). Any bad code raises `CodeError` and
        changes nothing. Removing a code never unblocks another: prefilter keys shared by several codes are
        reference-counted in the `collisions` table, and a bit is cleared only when its last code goes.
        With `expect_digest`, a result with any other set digest raises `DigestMismatchError` and changes
        nothing (a feed checks the publisher's digest this way, before commit). `meta` fields (JSON values, see
        `set_meta`) are written in the same transaction; `synced=True` also records the sync time.
        A delta that changes nothing (every code and GTIN it adds is there already, every one it removes is not)
        writes nothing: `applied=False`, the version and the metadata stay. `advance_empty=True` moves the version
        (and writes `meta`) anyway: a feed's manifest names the version to reach, and a chain of deltas that
        cancel out still has to get there. `side` maps a side table's name to keys and values (None: delete)
        written in the same transaction, `clear_side` empties side tables first (see `side_get`); when the
        records do not change but `side` does, the side tables and `meta` are written and the version stays.
        `add_records` / `remove_records` change the price and grey tables (`store.tables`: a removal deletes a
        row holding exactly that value, an addition sets the key's value), in the same transaction; a record of a
        kind this version does not know raises `RecordError` and changes nothing.
        """
        self._require_writable()
        started = time.perf_counter()
        if _collected is not None:
            # a load that adds: its lines were cut while they were read, so take the packed keys as they are
            add_keys, add_hashes = _collected.keys, _collected.hashes
        else:
            add_keys, add_hashes = cut_all(add, "add")
        remove_keys, remove_hashes = cut_all(remove, "remove")
        add_gtins = list(add_gtins)
        add_gtin_keys = [pack_gtin(g) for g in add_gtins]
        remove_gtin_keys = [pack_gtin(g) for g in remove_gtins]
        plus_records = [parse_record(item) for item in add_records]
        minus_records = [parse_record(item) for item in remove_records]
        extra = self._checked_meta(meta or {})
        if _collected is not None:
            add_values = list(_collected.values)
            gtin_values = dict(_collected.gtins.items())
            new_blocks = _collected.blocks
        else:
            add_values = [b""] * len(add_keys)
            gtin_values = {}
            new_blocks = {}
        from pyroaring import BitMap

        codes_db = self._dbs[DB_CODES]
        gtins_db = self._dbs[DB_GTINS]
        collisions_db = self._dbs[DB_COLLISIONS]
        meta_db = self._dbs[DB_META]
        cached, self._prefilter_cache = self._prefilter_cache, None
        with write_txn(self._env, self._path, meta_db) as txn:
            current = self._read_json(txn, "version")
            if to_version == current and (from_version is None or from_version < current):
                self._prefilter_cache = cached
                return DeltaReport(False, current, current, 0, 0, 0, 0, time.perf_counter() - started)
            if from_version is not None and from_version != current:
                raise VersionError(
                    f"the delta starts at version {from_version} but the store holds {current}",
                    current=current,
                    expected=from_version,
                )
            if to_version <= current:
                raise VersionError(
                    f"versions only move forward: the store holds {current}, the delta goes to {to_version}",
                    current=current,
                    expected=from_version,
                )
            block_value = b""
            if block is not None or new_blocks:
                next_id = self._next_block_id(txn)
                remap: dict[int, int] = {}
                for old_id, details in new_blocks.items():
                    remap[old_id] = next_id
                    txn.put(next_id.to_bytes(4, "big"), json.dumps(details).encode(), db=self._dbs[DB_BLOCKS])
                    next_id += 1
                if block is not None and _collected is None:
                    txn.put(next_id.to_bytes(4, "big"), json.dumps(dict(block)).encode(),
                            db=self._dbs[DB_BLOCKS])
                    block_value = encode_block_id(next_id)
                add_values = [
                    encode_block_id(remap.get(decode_block_id(v), 0)) if v else block_value for v in add_values
                ]
                gtin_values = {
                    g: encode_block_id(remap.get(decode_block_id(v), 0)) if v else block_value
                    for g, v in gtin_values.items()
                }
            digest_text = self._read_json(txn, "set_digest")
            if cached is not None and cached[:2] == (current, digest_text):
                bitmap = cached[2]
            else:
                bitmap = BitMap.deserialize(bytes(txn.get(META_PREFILTER, db=meta_db)))
            digest = parse_digest(digest_text)
            count = self._read_json(txn, "codes")
            stored_shared = {
                int.from_bytes(key, "big"): int.from_bytes(value, "big")
                for key, value in txn.cursor(db=collisions_db)
            }
            shared = dict(stored_shared)
            changed: set[int] = set()

            # Removals, in key order (distinct keys; of the codes not there, nothing is removed).
            order, unique, _, _, removed_sums = prepare_full_load(remove_keys, remove_hashes)
            removed_keys: list[bytes] = []
            removed_hashes = array.array("I")
            missing: list[bytes] = []
            for index, key in zip(order, unique):
                if txn.delete(key, db=codes_db):
                    removed_keys.append(key)
                    removed_hashes.append(remove_hashes[index])
                else:
                    missing.append(key)
            if missing:
                removed_sums = digest_add(removed_sums, missing, (), -1)
            # A prefilter key without a `collisions` row has exactly one code: its bit goes with it.
            gone = BitMap(removed_hashes)
            counted = gone & BitMap(stored_shared)
            for h, n in Counter(h for h in removed_hashes if h in counted).items():
                shared[h] -= n
                changed.add(h)
            bitmap -= (gone - counted) | BitMap(h for h in counted if shared[h] <= 0)

            # Additions, in key order; only a key whose prefilter bit is set can already be there.
            order, unique, _, _, added_sums = prepare_full_load(add_keys, add_hashes)
            unique_hashes = array.array("I", [add_hashes[index] for index in order])
            maybe_there = BitMap(unique_hashes) & bitmap
            present: set[bytes] = set()
            if maybe_there:
                present = {key for key, h in zip(unique, unique_hashes)
                           if h in maybe_there and txn.get(key, db=codes_db) is not None}
            if present:
                added_sums = digest_add(added_sums, present, (), -1)
                kept = [i for i, key in enumerate(unique) if key not in present]
                unique = [unique[i] for i in kept]
                order = [order[i] for i in kept]
                unique_hashes = array.array("I", [unique_hashes[i] for i in kept])
            with txn.cursor(db=codes_db) as cursor:
                _, written = cursor.putmulti(zip(unique, (add_values[index] for index in order)), overwrite=False)
            if written != len(unique):
                raise StoreError(f"internal error: {len(unique) - written} codes appeared during a delta")
            fresh = BitMap(unique_hashes)
            overlap = bitmap & fresh
            if overlap or len(fresh) != len(unique_hashes):
                special = overlap | BitMap(h for h, n in Counter(unique_hashes).items() if n > 1)
                for h, n in Counter(h for h in unique_hashes if h in special).items():
                    shared[h] = shared.get(h, 1 if h in overlap else 0) + n
                    changed.add(h)
            bitmap |= fresh
            for h in changed:
                hkey = h.to_bytes(4, "big")
                if shared.get(h, 0) > 1:
                    txn.put(hkey, shared[h].to_bytes(4, "big"), db=collisions_db)
                elif h in stored_shared:
                    txn.delete(hkey, db=collisions_db)

            removed_gtins = [g for g in remove_gtin_keys if txn.delete(g, db=gtins_db)]
            added_gtins = []
            for gtin, key in zip(add_gtins, add_gtin_keys):
                value = gtin_values.get(gtin, block_value)
                if txn.put(key, value, db=gtins_db, overwrite=False):
                    added_gtins.append(key)
            digest = digest_add(digest, (), added_gtins)
            digest = digest_add(digest, (), removed_gtins, -1)
            table_fields: dict[str, Any] = {}
            applied = None
            if plus_records or minus_records:
                applied = apply_records(txn, self._dbs, plus_records, minus_records)
                tables_digest = parse_digest(self._read_json(txn, META_TABLES_DIGEST, format_digest((0, 0))))
                tables_digest = digest_add(digest_add(tables_digest, applied.added, ()), applied.removed, (), -1)
                digest = digest_add(digest_add(digest, applied.added, ()), applied.removed, (), -1)
                table_fields[META_TABLES_DIGEST] = format_digest(tables_digest)
                if applied.changed_in or applied.changed_out:
                    table_fields[META_TABLES_VERSION] = to_version
                for kind, change in applied.counts.items():
                    if change:
                        name = META_COUNTS[kind]
                        table_fields[name] = self._read_json(txn, name, 0) + change
            digest = (
                (digest[0] + added_sums[0] - removed_sums[0]) % _DIGEST_MOD,
                (digest[1] + added_sums[1] - removed_sums[1]) % _DIGEST_MOD,
            )
            new_digest = format_digest(digest)
            if expect_digest is not None and new_digest != expect_digest:
                raise DigestMismatchError(
                    f"the delta {current}->{to_version} leads to digest {new_digest}, expected {expect_digest}; "
                    f"nothing was changed",
                    expected=expect_digest,
                    actual=new_digest,
                )
            added_count = len(unique)
            records_changed = applied is not None and (applied.changed_in or applied.changed_out)
            if not (added_count or removed_keys or added_gtins or removed_gtins or records_changed or advance_empty):
                if side or clear_side:
                    # The records stay; the writer's side tables and its fields about them move together.
                    self._put_side(txn, side, clear_side)
                    self._put_meta(txn, extra)
                    self._prefilter_cache = cached
                    return DeltaReport(False, current, current, 0, 0, 0, 0, time.perf_counter() - started)
                txn.abort()  # nothing changes: not even a new block record or the version
                self._prefilter_cache = cached
                return DeltaReport(False, current, current, 0, 0, 0, 0, time.perf_counter() - started)
            gtin_count = txn.stat(gtins_db)["entries"]
            now = time.time()
            fields: dict[str, Any] = {
                **extra,
                **table_fields,
                "version": to_version,
                "updated_at": now,
                "codes": count + added_count - len(removed_keys),
                "gtins": gtin_count,
                "set_digest": new_digest,
            }
            if synced:
                fields["last_sync_at"] = now
            self._put_meta(txn, fields)
            put_prefilter(txn, meta_db, bitmap.serialize())
            if added_gtins or removed_gtins:
                with txn.cursor(db=gtins_db) as cursor:
                    index = gtin_index(cursor.iternext(keys=True, values=False))
                txn.put(META_GTIN_INDEX, index, db=meta_db)
            self._put_side(txn, side, clear_side)
        self._prefilter_cache = (to_version, new_digest, bitmap)
        self._renew()
        return DeltaReport(
            applied=True,
            from_version=current,
            to_version=to_version,
            added=added_count,
            removed=len(removed_keys),
            gtins_added=len(added_gtins),
            gtins_removed=len(removed_gtins),
            seconds=time.perf_counter() - started,
            records_added=applied.changed_in if applied is not None else 0,
            records_removed=applied.changed_out if applied is not None else 0,
        )

    def _next_block_id(self, txn: lmdb.Transaction) -> int:
        with txn.cursor(db=self._dbs[DB_BLOCKS]) as cursor:
            if cursor.last():
                return int.from_bytes(cursor.key(), "big") + 1
        return 1


def _side_prefix(table: bytes) -> bytes:
    if b"\0" in table or not table:
        raise StoreError(f"a side table's name is non-empty and has no NUL byte: {table!r}")
    return table + b"\0"
