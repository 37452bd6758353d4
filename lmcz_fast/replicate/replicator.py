"""The store side: a full re-replication or incremental pages, each written with its checkpoint in one
transaction; and what a pass reports."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .._codes import CodeError
from ..store import Blocklist, Change, CutCodes
from ..store import REPLICATION_META_PREFIX as META_PREFIX
from ..store import REPLICATION_META_SOURCE as META_SOURCE
from ..store import replication_checkpoint as _checkpoint
from .changes import _IdChange, _LastSeq
from .config import MappingRefused, ReplicationConfig, SourceMalformed
from .mapping import (_Batch, _map_bulk, _map_change, _map_keyed, _needs_no_doc, _record_of, grey_record,
                      price_record)
from .source import _BadCheckpoint, _seq_number, _Source

log = logging.getLogger("lmcz_fast.replicate")


@dataclass
class DbReport:
    """What one pass did with one source database."""

    name: str
    kind: str
    changes: int = 0
    added: int = 0
    removed: int = 0
    unmapped: int = 0
    batches: int = 0
    last_seq: Any = None
    source_docs: int | None = None


@dataclass
class ReplicationReport:
    """What `replicate` did: full or incremental, per database, the store's version after, and the time."""

    full: bool
    reason: str
    version: int
    databases: list[DbReport]
    seconds: float
    unmapped_examples: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return sum(d.changes for d in self.databases)

    def summary(self) -> str:
        kind = f"full re-replication ({self.reason})" if self.full else "incremental"
        parts = [f"{d.name}: {d.changes} changes, +{d.added} -{d.removed}"
                 + (f", {d.unmapped} unmapped" if d.unmapped else "") for d in self.databases]
        return f"{kind}: version {self.version}; " + "; ".join(parts) + f"; in {self.seconds:.2f} s"


class _Replicator:
    def __init__(self, bl: Blocklist, config: ReplicationConfig, progress: Callable[[str, int, int | None], None] | None) -> None:
        self.bl = bl
        self.config = config
        self.source = _Source(config)
        self.progress = progress
        self.lock = threading.Lock()
        self.examples: list[str] = []
        self.server_uuid: str | None = None       # the source server's uuid, asked once per pass

    # - deciding -

    def need_full(self, infos: dict[str, dict[str, Any]]) -> str | None:
        recorded = self.bl.get_meta(META_SOURCE)
        if not recorded:
            return "first replication"
        if recorded.get("url") != self.config.base:
            return f"the source changed from {recorded.get('url')} to {self.config.base}"
        if recorded.get("databases") != self.config.databases:
            return "the set of replicated databases changed"
        if recorded.get("mapping") != self.config.mapping.as_dict():
            return "the document mapping changed"
        server: dict[str, Any] | None = None
        for name, info in infos.items():
            cp = _checkpoint(self.bl, name)
            if cp is None:
                return f"no checkpoint for {name}"
            if server is None:
                server = self.source.server()
                self.server_uuid = str(server.get("uuid") or "")
            if cp.get("server_uuid") and server.get("uuid") and cp["server_uuid"] != server["uuid"]:
                return f"the source is another server (its uuid {server['uuid']} is not {cp['server_uuid']})"
            start = info.get("instance_start_time")
            if start not in (None, "0", 0) and cp.get("instance_start_time") not in (None, "0", 0) \
                    and str(start) != str(cp.get("instance_start_time")):
                return f"{name} was recreated on the source (new instance_start_time)"
            ours, theirs = _seq_number(cp.get("last_seq")), _seq_number(info.get("update_seq"))
            if ours is not None and theirs is not None and theirs < ours:
                return f"{name} was recreated on the source (its update_seq {theirs} is behind our checkpoint {ours})"
            reason = self._history_differs(name, cp)
            if reason is not None:
                return reason
        return None

    def _history_differs(self, name: str, cp: dict[str, Any]) -> str | None:
        """Whether the source database's history still holds the change our checkpoint was anchored on: the last
        document we read, at its revision and (with numeric sequences) its place. A database deleted and created
        again, even refilled past our checkpoint, has another history: then a full pass, never an increment."""
        if "anchor" not in cp:
            if _seq_number(cp.get("last_seq")) == 0:
                return None                         # nothing read yet: reading from the start misses nothing
            return f"the checkpoint of {name} holds no anchor in the source's history (an older version wrote it)"
        anchor = cp["anchor"]
        if anchor is None:
            return None if _seq_number(cp.get("last_seq")) in (0, None) else \
                f"the checkpoint of {name} holds no anchor in the source's history"
        doc_id, rev, seq = anchor.get("id"), anchor.get("rev"), anchor.get("seq")
        found = self.source.doc_change(name, doc_id)
        if found is None:
            return (f"{name} was recreated on the source: document {doc_id!r}, read at seq {seq}, is not in its "
                    f"history")
        ours, theirs = _seq_number(seq), _seq_number(found["seq"])
        if found["rev"] == rev:
            if ours is not None and theirs is not None and ours != theirs and isinstance(seq, int):
                return (f"{name} was recreated on the source: document {doc_id!r} rev {rev} sits at seq {theirs}, "
                        f"not {ours}")
            return None
        if rev not in self.source.doc_revisions(name, doc_id):
            return (f"{name} was recreated on the source: the history of document {doc_id!r} no longer holds "
                    f"rev {rev}")
        if ours is not None and theirs is not None and isinstance(seq, int) and theirs <= ours:
            return f"{name} was recreated on the source: document {doc_id!r} changed, yet at seq {theirs} <= {ours}"
        return None

    # - full -

    def full(self, reason: str, infos: dict[str, dict[str, Any]]) -> ReplicationReport:
        started = time.perf_counter()
        log.info("full re-replication from %s: %s", self.config.base, reason)
        reports: list[DbReport] = []
        codes: dict[str, str] = {}
        gtins: dict[str, str] = {}
        grey: dict[str, str] = {}
        prices: dict[str, int] = {}
        side: dict[bytes, dict[bytes, bytes | None]] = {}
        checkpoints: dict[str, dict[str, Any]] = {}
        cut: CutCodes | None = None
        for kind, name in self.config.databases.items():
            report = DbReport(name, kind, source_docs=_int(infos[name].get("doc_count")))
            mapped: dict[str, str] = {}
            seq: Any = None
            if kind == "codes" and self.config.mapping.code_field == "_id":
                cut = CutCodes(name)
            bulk = cut if kind == "codes" else None
            anchor: dict[str, Any] | None = None
            progress = _Progress(name)
            first_example = len(self.examples)
            while True:
                batch, new_seq, count = self._page(name, kind, seq, cut=bulk)
                progress.check(seq, new_seq, count, self.config.batch_size)
                seq = new_seq
                anchor = batch.anchor or anchor
                report.changes += batch.changes
                report.unmapped += len(batch.unmapped)
                for doc_id in batch.remove:
                    mapped.pop(doc_id, None)
                mapped.update(batch.add)
                if kind == "prices":
                    prices.update(batch.prices)
                report.batches += 1
                if self.progress is not None:
                    self.progress(name, report.changes, report.source_docs)
                if count < self.config.batch_size:
                    break
            report.last_seq = seq
            if kind == "codes":
                codes = mapped
            elif kind == "gtins":
                gtins = mapped
            elif kind == "grey":
                grey = mapped
            else:
                prices = {key: prices[key] for key in set(mapped.values())}
            report.added = len(bulk.take()[0]) if bulk is not None else len(set(mapped.values()))
            _refuse_if_nothing_maps(report, self.config.mapping.field_of(kind), self.examples[first_example:])
            if self.config.mapping.field_of(kind) != "_id":
                side[_side_table(name)] = {d.encode(): v.encode() for d, v in mapped.items()}
            checkpoints[name] = self._checkpoint_value(kind, infos[name], seq, report.added, report.unmapped,
                                                       self._resolved(name, anchor))
            reports.append(report)
        meta = {META_PREFIX + name: cp for name, cp in checkpoints.items()}
        meta[META_SOURCE] = self._source_value()
        sources: list[Any] = [list(codes.values()) + sorted(set(gtins.values()))]
        if cut is not None:
            sources.append(cut)
        with self.lock:
            version = self.bl.get_meta("version") + 1
            self.bl.load(sources, replace=True, version=version, synced=True,
                         meta=meta, side=side, clear_side=[_side_table(n) for n in self.config.databases.values()],
                         **_full_tables(self.bl, self.config.databases, prices, set(grey.values())))
        return ReplicationReport(True, reason, version, reports, time.perf_counter() - started, self.examples[:20])

    # - incremental -

    def incremental(self, infos: dict[str, dict[str, Any]], longpoll: bool = False,
                    only: str | None = None) -> ReplicationReport:
        started = time.perf_counter()
        reports: list[DbReport] = []
        for kind, name in self.config.databases.items():
            if only is not None and name != only:
                continue
            report = DbReport(name, kind, source_docs=_int(infos[name].get("doc_count")))
            cp = _checkpoint(self.bl, name) or {}
            seq = cp.get("last_seq")
            progress = _Progress(name)
            while True:
                batch, new_seq, count = self._page(name, kind, seq, longpoll=longpoll)
                progress.check(seq, new_seq, count, self.config.batch_size)
                self._apply(kind, name, infos[name], batch, new_seq, report)
                seq = new_seq
                if count < self.config.batch_size:
                    break
            report.last_seq = seq
            reports.append(report)
        return ReplicationReport(False, "checkpoints", self.bl.get_meta("version"), reports,
                                 time.perf_counter() - started, self.examples[:20])

    def _page(self, name: str, kind: str, since: Any, longpoll: bool = False,
              cut: CutCodes | None = None) -> tuple[_Batch, Any, int]:
        """One `_changes` page mapped into a `_Batch`; with `cut` (a full pass of codes keyed by the id) the codes
        go into it as keys instead."""
        batch = _Batch(kind)
        batch.cut = cut
        bulk = cut is not None
        last: Any = since
        count = 0
        mapping = self.config.mapping
        by_id = _needs_no_doc(kind, mapping)
        for items in self.source.changes(name, since, self.config.batch_size, longpoll, include_docs=not by_id,
                                         ids_only=bulk, keyed=by_id and not bulk):
            if isinstance(items, _LastSeq):
                last = items.value
                continue
            if bulk:
                count += len(items)
                _map_bulk(items, batch)
            elif items and type(items[0]) is _IdChange:     # one decode gives all `_IdChange`s or all dicts
                count += len(items)
                _map_keyed(items, batch)
            else:
                count += len(items)
                for item in items:
                    _map_change(item, batch, mapping)
            batch.anchor = _anchor_of(items) or batch.anchor
        if batch.unmapped:
            log.warning("%s: %d documents do not map (first: %s)", name, len(batch.unmapped), batch.unmapped[0])
            self.examples.extend(batch.unmapped[: max(0, 20 - len(self.examples))])
        return batch, last, count

    def _apply(self, kind: str, name: str, info: dict[str, Any], batch: _Batch, seq: Any, report: DbReport) -> None:
        """One page -> one transaction: the records, the document map and this database's checkpoint together."""
        by_id = self.config.mapping.field_of(kind) == "_id"
        with self.lock:
            cp = _checkpoint(self.bl, name) or {}
            if not batch.changes and seq == cp.get("last_seq") and time.time() - cp.get("last_batch_at", 0) < 60:
                return      # an idle longpoll round: the last minute's record of a good sync stands
            gone: list[str] = []
            for doc_id in batch.remove:
                value = self._doc_value(name, kind, doc_id, by_id)
                if value is None:
                    report.unmapped += 0 if doc_id.startswith("_design/") else 1
                    batch.unmapped.append(f"{doc_id}: deleted, but it never mapped to a record")
                else:
                    gone.append(value)
            if not by_id:                   # a document whose field changed: its old record goes
                for doc_id, value in batch.add.items():
                    old = self._doc_value(name, kind, doc_id, by_id)
                    if old is not None and old != value:
                        gone.append(old)
            values = set(batch.add.values())
            gone = [v for v in dict.fromkeys(gone) if v not in values]
            unmapped = cp.get("unmapped", 0) + len(batch.unmapped)
            report.changes += batch.changes
            report.unmapped += len(batch.unmapped)
            report.batches += 1
            side = {} if by_id else {_side_table(name): {**{d.encode(): None for d in batch.remove},
                                                         **{d.encode(): v.encode() for d, v in batch.add.items()}}}
            args: dict[str, Any]
            if kind == "codes":
                args = {"add": sorted(values), "remove": gone}
            elif kind == "gtins":
                args = {"add_gtins": sorted(values), "remove_gtins": gone}
            elif kind == "grey":
                args = _grey_args(self.bl, values, gone)
            else:
                args = _price_args(self.bl, batch.prices, remove=gone)
            docs = self._record_count(kind) + len(values) - len(gone)     # an estimate, corrected below
            anchor = self._resolved(name, batch.anchor) if batch.anchor else cp.get("anchor")
            meta = {META_PREFIX + name: self._checkpoint_value(kind, info, seq, docs, unmapped, anchor)}
            if not values and not gone and not side:
                self.bl.mark_synced(**meta)
            else:
                delta = self.bl.apply(Change(to_version=self.bl.get_meta("version") + 1, synced=True, meta=meta,
                                             side=side or None, **args))
                if not delta.applied and not side:
                    self.bl.mark_synced(**meta)     # the records were there already: only the checkpoint moves
                report.added += delta.added + delta.gtins_added
                report.removed += delta.removed + delta.gtins_removed
            if self.progress is not None:
                self.progress(name, report.changes, None)

    def _record_count(self, kind: str) -> int:
        if kind == "prices":
            return int(self.bl.get_meta("min_prices") or 0) + int(self.bl.get_meta("group_min_prices") or 0)
        return int(self.bl.get_meta({"codes": "codes", "gtins": "gtins", "grey": "grey_gtins"}[kind]) or 0)

    def _doc_value(self, name: str, kind: str, doc_id: str, by_id: bool) -> str | None:
        """The record a document maps to now: derived from its id, or looked up in the document map."""
        if by_id:
            try:
                return _record_of(kind, doc_id, "_id")
            except (ValueError, CodeError):
                return None
        found = self.bl.side_get(_side_table(name), doc_id.encode())
        return None if found is None else found.decode()

    def _resolved(self, name: str, anchor: dict[str, Any] | None) -> dict[str, Any] | None:
        """An anchor with its revision and sequence: a full pass of ids reads neither, so the source says them."""
        if anchor is None or anchor.get("rev") is not None:
            return anchor
        found = self.source.doc_change(name, anchor["id"])
        return None if found is None else {"id": anchor["id"], "rev": found["rev"], "seq": found["seq"]}

    def _checkpoint_value(self, kind: str, info: dict[str, Any], seq: Any, docs: int, unmapped: int,
                          anchor: dict[str, Any] | None) -> dict[str, Any]:
        """A database's checkpoint and the source's identity it holds for: the server's uuid, the database's
        `instance_start_time` and an anchor in its history (`_history_differs`)."""
        theirs, ours = _seq_number(info.get("update_seq")), _seq_number(seq)
        if self.server_uuid is None:
            self.server_uuid = str(self.source.server().get("uuid") or "")
        return {
            "server_uuid": self.server_uuid or None,
            "anchor": anchor,
            "kind": kind,
            "last_seq": seq,
            "docs": docs,
            "unmapped": unmapped,
            "source_docs": _int(info.get("doc_count")),
            "seq_lag": None if theirs is None or ours is None else max(0, theirs - ours),
            "instance_start_time": info.get("instance_start_time"),
            "last_batch_at": time.time(),
        }

    def _source_value(self) -> dict[str, Any]:
        return {"url": self.config.base, "databases": dict(self.config.databases),
                "mapping": self.config.mapping.as_dict()}

    def infos(self) -> dict[str, dict[str, Any]]:
        return {name: self.source.info(name) for name in self.config.databases.values()}

    def run_once(self, full: bool = False, longpoll: bool = False) -> ReplicationReport:
        self.server_uuid = None                 # asked again: a pass records the identity of the server it read
        infos = self.infos()
        reason = "asked for" if full else self.need_full(infos)
        if reason is None:
            try:
                return self.incremental(infos, longpoll=longpoll)
            except _BadCheckpoint as exc:
                reason = str(exc)
        return self.full(reason, infos)


class _Progress:
    """Pages must move forward: a source (or a caching proxy) that ignores `since` answers the same page again and
    again, and a pass would loop for ever; one whose sequence goes back is not the history we read."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: set[str] = set()

    def check(self, since: Any, last: Any, count: int, limit: int) -> None:
        # Only integer sequences (CouchDB 1.x, PouchDB) are ordered here: a cluster's `N-opaque` ones may rewind
        # after a node fails, and their N is not a position in one history.
        integers = type(since) is int and type(last) is int
        ours, theirs = (since, last) if integers else (None, None)
        if ours is not None and theirs is not None and theirs < ours:
            raise SourceMalformed(f"{self.name}: asked for changes since {since}, the source answered up to {last}, "
                                  f"behind it (a source or a caching proxy that ignores `since`?)")
        if count >= limit:                  # a full page: the pass will ask again from `last`
            key = repr(last)
            if last == since or key in self.seen or (ours is not None and theirs is not None and theirs <= ours):
                raise SourceMalformed(f"{self.name}: the page after {since} ends at {last} again: the pass makes no "
                                      f"progress (a source or a caching proxy that ignores `since`?)")
            self.seen.add(key)


def _anchor_of(items: list[Any]) -> dict[str, Any] | None:
    """The last change of a page that can anchor a checkpoint in the source's history (a data document)."""
    for item in reversed(items):
        if type(item) is dict:
            doc_id = item.get("id")
            revs = item.get("changes")
            rev = revs[0].get("rev") if isinstance(revs, list) and revs and isinstance(revs[0], dict) else None
            seq = item.get("seq")
            if not (isinstance(seq, int) and not isinstance(seq, bool)) and not isinstance(seq, str):
                seq = None
            if isinstance(doc_id, str) and not doc_id.startswith("_") and isinstance(rev, str):
                return {"id": doc_id, "rev": rev, "seq": seq}
        elif type(item) is _IdChange:
            rev = item.rev
            if not item.id.startswith("_") and isinstance(rev, str):
                return {"id": item.id, "rev": rev, "seq": item.seq}
        else:
            doc_id = getattr(item, "id", None)
            if isinstance(doc_id, str) and not doc_id.startswith("_"):
                return {"id": doc_id, "rev": None, "seq": None}
    return None


def _side_table(name: str) -> bytes:
    """The document map of one source database (only for a mapping from a field other than `_id`)."""
    return b"replica:" + name.encode()


def _refuse_if_nothing_maps(report: DbReport, field_name: str, examples: list[str]) -> None:
    """A database holding documents of which none maps is a wrong mapping, not an empty list: the pass is refused
    before anything is written, and says why (the shrink guard judges only a list that shrinks; a first pass, or
    an empty table, has nothing for it to compare)."""
    if report.unmapped and not report.added:
        first = next((e for e in examples if e), "")
        raise MappingRefused(
            f"{report.name}: none of its {report.unmapped} documents maps to a {_WHAT[report.kind]} under the "
            f"mapping (field {field_name!r}; first: {first[:120]}): a wrong mapping, refused (`lmcz-fast replicate "
            f"--inspect` proposes one)")


_WHAT = {"codes": "marking code", "gtins": "GTIN", "prices": "minimum price", "grey": "grey GTIN"}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_price_record = price_record


def _full_tables(bl: Blocklist, databases: dict[str, str], prices: dict[str, int],
                 grey: set[str]) -> dict[str, Any]:
    """A full pass's table records: the source's minimum prices and grey GTINs where it holds them, and the
    store's own records of a kind the source does not hold, kept as they are."""
    if "prices" not in databases and "grey" not in databases:
        return {}
    kept = [text for text in bl.iter_records()
            if ("grey" not in databases if text.startswith("grey_gtin ") else "prices" not in databases)]
    ours = [_price_record(key, price) for key, price in sorted(prices.items())] if "prices" in databases else []
    if "grey" in databases:
        ours += [grey_record(gtin) for gtin in sorted(grey)]
    return {"records": ours + kept}


def _grey_args(bl: Blocklist, values: set[str], gone: list[str]) -> dict[str, Any]:
    """An increment of the grey list: records to add, and those to delete that the store holds."""
    args: dict[str, Any] = {}
    if values:
        args["add_records"] = [grey_record(gtin) for gtin in sorted(values)]
    held = [grey_record(gtin) for gtin in gone if bl.is_grey_gtin(gtin)]
    if held:
        args["remove_records"] = held
    return args


def _price_args(bl: Blocklist, prices: dict[str, int], *, remove: Iterable[str] = ()) -> dict[str, Any]:
    """An increment of minimum prices (`apply_delta(add_records=, remove_records=)`): keys set, and deleted keys'
    records named with the price the store holds for them. A full pass replaces the tables (`_full_tables`)."""
    args: dict[str, Any] = {}
    if prices:
        args["add_records"] = [_price_record(key, price) for key, price in sorted(prices.items())]
    gone = []
    for key in remove:
        held = bl.group_min_price(int(key[3:])) if key.startswith("pg:") else bl.min_price(key)
        if held is not None:
            gone.append(_price_record(key, held))
    if gone:
        args["remove_records"] = gone
    return args
