"""Replicate the blocklist from a CouchDB-compatible source, the way the official Local Module gets its data.

The official module keeps CRPT's data in its own CouchDB-compatible database ("Yenisei": databases `blocked_cis`,
`blocked_gtin`, `min_price`) and replicates it from CRPT. CouchDB's replication protocol is public, so any server
that speaks it (the official module's own database, a chain's CouchDB at HQ) can be our upstream. We only read:
`GET /{db}` (document count, update sequence) and `GET /{db}/_changes?since=...&limit=...&include_docs=true`
(normal or longpoll feed), parsed as a stream so a 900k-document first batch never sits in memory as JSON.

Each batch of changes of one source database becomes one atomic delta of the store, written together with that
database's checkpoint (`last_seq`) in the same LMDB transaction: after a crash the store and its checkpoints
agree, and a restart resumes from them. A deletion (`"deleted": true`) unblocks. A first replication, or a
source that was recreated or refuses our checkpoint, is done as a full re-replication: every configured
database read from the start, collected aside (packed keys, not documents) and swapped in by one full load —
never a store half old and half new, and never an empty store answering "may be sold" while it fills.

The document layout inside the official databases is not public. `Mapping` says where the code, the GTIN and the
price sit (by default the document id; see docs/replication.md for the guess and its reasons); documents that do
not map are counted per database and reported, never dropped silently.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import itertools
import json
import logging
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import ijson
import msgspec

from ._codes import CodeError, parse_code
from .store import Blocklist, CutCodes, StoreError
from .store.replication import META_PREFIX, META_SOURCE, replication_status
from .store.replication import checkpoint as _checkpoint
from .upstream import ProxyConfig, SyncHttpClient, UpstreamError

__all__ = [
    "DEFAULT_DATABASES",
    "Mapping",
    "ReplicationConfig",
    "ReplicationError",
    "ReplicationReport",
    "SourceAuthError",
    "SourceUnavailable",
    "follow",
    "read_credentials",
    "replicate",
    "replication_status",
]

log = logging.getLogger("lmcz_fast.replicate")

#: What each kind of data is called in the official module's database (LM 2.x), and the kinds we replicate.
DEFAULT_DATABASES = {"codes": "blocked_cis", "gtins": "blocked_gtin", "prices": "min_price"}
KINDS = ("codes", "gtins", "prices")
DEFAULT_BATCH = 10_000


class ReplicationError(Exception):
    """Replication could not go on; the store holds what it held before the failing batch."""


class SourceUnavailable(ReplicationError):
    """The source did not answer, answered an error, or cut the answer short."""


class SourceAuthError(ReplicationError):
    """The source refused our credentials (HTTP 401/403)."""


@dataclass(frozen=True)
class Mapping:
    """Where the data sits in a source document. A field name, or `_id` for the document id.

    `code_field`: the marking code in `blocked_cis` documents (any form a scan or a CIS line takes).
    `gtin_field`: the GTIN in `blocked_gtin` documents.
    `price_key_field`: what a minimum price applies to in `min_price` documents: a 14-digit GTIN, or a product
    group as `pg:N` or a bare number up to 3 digits. `price_field`: the price in kopecks (a non-negative integer).
    """

    code_field: str = "_id"
    gtin_field: str = "_id"
    price_key_field: str = "_id"
    price_field: str = "price"

    def field_of(self, kind: str) -> str:
        return {"codes": self.code_field, "gtins": self.gtin_field, "prices": self.price_key_field}[kind]


@dataclass(frozen=True)
class ReplicationConfig:
    """A source and what to pull from it."""

    source: str
    databases: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_DATABASES))
    mapping: Mapping = field(default_factory=Mapping)
    credentials: tuple[str, str] | None = field(default=None, repr=False)
    proxy: ProxyConfig | None = None
    batch_size: int = DEFAULT_BATCH
    timeout: float = 60.0
    longpoll_timeout: float = 30.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.source)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ReplicationError(f"a source is an http:// or https:// URL of a CouchDB server, not {self.source!r}")
        if parts.username is not None or parts.password is not None:
            raise ReplicationError("the source URL must not carry credentials (the command line is visible to "
                                   "other users); give them in a file (--credentials-file) or the environment")
        unknown = set(self.databases) - set(KINDS)
        if unknown:
            raise ReplicationError(f"unknown kinds of data {sorted(unknown)}; known: {', '.join(KINDS)}")
        if not self.databases:
            raise ReplicationError("no source database to replicate")
        if self.batch_size < 1:
            raise ReplicationError("the batch size is at least 1")

    @property
    def base(self) -> str:
        parts = urlsplit(self.source)
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def read_credentials(path: str | os.PathLike[str] | None = None,
                     environ: dict[str, str] | None = None) -> tuple[str, str] | None:
    """Source credentials: a file whose first line is `user:password`, else LMCZ_FAST_SOURCE_USER and
    LMCZ_FAST_SOURCE_PASSWORD from the environment, else None (an open source)."""
    env = os.environ if environ is None else environ
    if path is not None:
        try:
            with open(path, encoding="utf-8") as fh:
                line = fh.readline().rstrip("\r\n")
        except OSError as exc:
            raise ReplicationError(f"cannot read the credentials file {os.fspath(path)}: {exc.strerror}") from None
        user, sep, password = line.partition(":")
        if not sep or not user:
            raise ReplicationError(f"the first line of {os.fspath(path)} must be user:password")
        return user, password
    user = env.get("LMCZ_FAST_SOURCE_USER")
    if user:
        return user, env.get("LMCZ_FAST_SOURCE_PASSWORD", "")
    return None


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


# -- the source ----------------------------------------------------------------------------------------------------


class _Reader:
    """A file-like view of a response body's chunks, for ijson."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


class _Source:
    """The CouchDB HTTP API, read-only, over the project's HTTP client (proxies included)."""

    def __init__(self, config: ReplicationConfig) -> None:
        self.config = config
        self.client = SyncHttpClient(config.proxy, timeout=config.timeout)
        self.stop: threading.Event | None = None
        self.headers = {"Accept": "application/json"}
        if config.credentials is not None:
            token = base64.b64encode(":".join(config.credentials).encode()).decode()
            self.headers["Authorization"] = "Basic " + token

    def close(self) -> None:
        self.client.close()

    def url(self, db: str, path: str = "", **query: Any) -> str:
        url = f"{self.config.base}/{quote(db, safe='')}{path}"
        if query:
            url += "?" + "&".join(f"{k}={quote(str(v), safe='')}" for k, v in query.items())
        return url

    def _refused(self, status: int, url: str, body: bytes) -> ReplicationError:
        try:
            detail = json.loads(body)
            text = f"{detail.get('error')}: {detail.get('reason')}"
        except (ValueError, AttributeError):
            text = body[:200].decode("utf-8", "replace")
        if status in (401, 403):
            return SourceAuthError(f"{url}: the source refused our credentials (HTTP {status}: {text}); check "
                                   f"--credentials-file")
        return SourceUnavailable(f"{url}: HTTP {status} ({text})")

    @contextlib.contextmanager
    def _get(self, url: str, headers: dict[str, str]) -> Iterator[Any]:
        """A GET, tried again once when a kept-alive connection was closed before any byte of the answer (a proxy
        such as tinyproxy closes them after each request; every request here is a read, safe to repeat)."""
        try:
            with self.client.get(url, headers) as response:
                yield response
                return
        except UpstreamError as exc:
            if exc.phase != "dropped" or exc.started:
                raise
            log.debug("%s: connection closed before the answer (%s); trying once more", url, exc)
        with self.client.get(url, headers) as response:
            yield response

    def info(self, db: str) -> dict[str, Any]:
        url = self.url(db)
        try:
            with self._get(url, self.headers) as response:
                body = b"".join(_decoded(response, 65536))
                if response.status == 404:
                    raise SourceUnavailable(f"{url}: the source has no database {db!r}")
                if response.status != 200:
                    raise self._refused(response.status, url, body)
        except UpstreamError as exc:
            raise SourceUnavailable(f"{url}: {exc}") from exc
        try:
            info = json.loads(body)
        except ValueError:
            raise SourceUnavailable(f"{url}: not a CouchDB database answer: {body[:120]!r}") from None
        if not isinstance(info, dict):
            raise SourceUnavailable(f"{url}: not a CouchDB database answer")
        return info

    def changes(self, db: str, since: Any, limit: int, longpoll: bool = False,
                include_docs: bool = True, ids_only: bool = False) -> Iterator[list[Any] | _LastSeq]:
        """Yield each change (a dict) of one `_changes` page, then the page's `last_seq` (not a dict).

        Raises `_BadCheckpoint` when the source refuses `since` (HTTP 400), which calls for a full pass.
        """
        query: dict[str, Any] = {"since": _seq_text(since), "limit": limit, "style": "main_only"}
        if include_docs:
            query["include_docs"] = "true"
        if longpoll:
            # A heartbeat (a newline) every second lets us keep our own deadline and notice `stop`, whether or
            # not the server honours `timeout` (pouchdb-server does not).
            query.update(feed="longpoll", timeout=int(self.config.longpoll_timeout * 1000), heartbeat=1000)
        url = self.url(db, "/_changes", **query)
        # A compressed longpoll answer would sit in the server's compressor, heartbeats and all.
        headers = {**self.headers, "Accept-Encoding": "identity"} if longpoll else self.headers
        try:
            with self._get(url, headers) as response:
                if response.status == 400:
                    raise _BadCheckpoint(f"{db}: the source refuses checkpoint {since!r}")
                if response.status != 200:
                    raise self._refused(response.status, url, b"".join(response.iter_raw(65536)))
                chunks = _decoded(response, None)   # as they arrive: heartbeats must not wait for 64 KiB
                if longpoll:
                    chunks = self._until_deadline(chunks, time.monotonic() + self.config.longpoll_timeout + 1)
                try:
                    yield from _parse_changes(chunks, url, ids_only)
                except _WaitOver:
                    yield _LastSeq(since)          # no change within the wait: nothing to apply
        except UpstreamError as exc:
            raise SourceUnavailable(f"{url}: {exc}") from exc

    def _until_deadline(self, chunks: Iterator[bytes], deadline: float) -> Iterator[bytes]:
        received = False                      # a change or the end: anything past `{"results":[` and heartbeats
        for chunk in chunks:
            if b'"seq"' in chunk or b'"last_seq"' in chunk:
                received = True
            if not received and (time.monotonic() > deadline or (self.stop is not None and self.stop.is_set())):
                raise _WaitOver
            yield chunk


def _decoded(response: Any, size: int | None) -> Iterator[bytes]:
    """The body's chunks with gzip or deflate content-coding undone, as they arrive (never the whole body)."""
    coding = response.headers.get("content-encoding", "identity").lower()
    if coding in ("", "identity"):
        yield from response.iter_raw(size)
        return
    if coding not in ("gzip", "deflate"):
        raise SourceUnavailable(f"{response.url}: unsupported content encoding {coding!r}")
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS if coding == "gzip" else zlib.MAX_WBITS)
    try:
        for chunk in response.iter_raw(size):
            out = inflate.decompress(chunk)
            if out:
                yield out
        tail = inflate.flush()
    except zlib.error as exc:
        raise SourceUnavailable(f"{response.url}: a damaged {coding} body ({exc})") from None
    if tail:
        yield tail


class _BadCheckpoint(Exception):
    pass


class _WaitOver(Exception):
    """A longpoll wait ended (deadline or stop) with nothing received."""


_RESULTS_OPEN = re.compile(r'\s*\{\s*"results"\s*:\s*\[')
_SKIP = re.compile(r"[\s,]*")
_DECODE = json.JSONDecoder().raw_decode


class _Change(msgspec.Struct, gc=False):
    """The two fields of a change that a full pass of codes keyed by the document id needs; the rest is skipped.
    Not tracked by the garbage collector (it holds a str and a bool, never a cycle): 900k of them would make the
    collector walk them again and again during a first pass."""

    id: str
    deleted: bool = False


_DECODE_IDS = msgspec.json.Decoder(list[_Change]).decode
_DECODE_ANY = msgspec.json.Decoder().decode
_RESULTS_OPEN_BYTES = re.compile(rb'\s*\{\s*"results"\s*:\s*\[')
_MAX_PENDING = 1 << 20          # bytes of changes held undecoded before the parser cuts them one by one


def _decode_array(text: bytes, ids_only: bool) -> list[Any]:
    """A JSON array of changes, decoded in C: `_Change`s with `ids_only` (dicts where an element does not fit)."""
    if ids_only:
        try:
            return _DECODE_IDS(text)
        except msgspec.ValidationError:
            pass
    try:
        return _DECODE_ANY(text)
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from None


def _parse_changes(chunks: Iterator[bytes], url: str, ids_only: bool = False) -> Iterator[list[Any] | _LastSeq]:
    """Stream-parse a `_changes` answer: lists of the elements of `results` as they arrive, then `last_seq`.

    CouchDB and its kin write `{"results":[`, then one change per line, then `],"last_seq":...}`: in that
    common layout all complete lines of each chunk are decoded as one JSON array in C (msgspec), straight from
    the bytes. A chunk whose lines are not whole changes is cut change by change (`raw_decode`); any other layout
    goes through ijson's event stream. Memory is bounded by a chunk and one change, whatever `limit` the server
    honoured. With `ids_only`, changes come as `_Change` (id and deleted only, the rest skipped unbuilt) where
    they fit, else as dicts.
    """
    buffer = b""
    chunks = iter(chunks)
    for chunk in chunks:
        buffer += chunk
        if len(buffer.lstrip()) >= 16 or b"[" in buffer:
            break
    opening = _RESULTS_OPEN_BYTES.match(buffer)
    if opening is None:
        yield from _parse_changes_generally(itertools.chain([buffer], chunks), url)
        return
    # The lines are gathered in a bytearray that starts with "[": the lines up to the last one that ends with a
    # comma, that comma turned into "]", are decoded in place (a memoryview, no copy), and the rest moves to the
    # front behind a new "[". Only that rest is searched for the closing "\n]": each byte is copied once, and the
    # searches look at the end of each chunk, not at all of it.
    buffer = bytearray(b"[") + buffer[opening.end():]
    searched = 1                        # how much of the buffer is known to hold no closing "\n]"
    at_start = True                     # nothing but whitespace after "[" so far
    closed = False
    while True:
        comma = buffer.rfind(b",\n")
        if comma > 1 and buffer[comma - 2:comma] == b"\n]":
            comma = buffer.rfind(b",\n", 0, comma - 2)   # "\n],\n" closes the results: decode up to the last change
        if comma > 0:
            buffer[comma] = 0x5D        # "]"
            try:
                with memoryview(buffer) as view:
                    items = _decode_array(view[:comma + 1], ids_only)
            except ValueError:
                buffer[comma] = 0x2C
                break                   # not one change per line: cut them one by one below
            if items:
                yield items
            del buffer[:comma + 1]
            buffer[0] = 0x5B            # "[" over the newline: the rest starts an array again
            searched = 1
        end = buffer.find(b"\n]", max(1, searched - 1))
        if end < 0 and at_start:
            rest = buffer[1:].lstrip()
            if rest.startswith(b"]"):
                end = len(buffer) - len(rest) - 1         # `[]`, `[ ]`: no results
            at_start = not rest
        if end >= 0:                    # the results close here: the last lines, then the tail
            body = bytes(buffer[1:end + 1]).strip().rstrip(b",")
            try:
                items = _decode_array(b"[" + body + b"]", ids_only) if body else []
            except ValueError:
                break                   # not one change per line: cut them one by one below
            if items:
                yield items
            closed = True
            buffer = buffer[end + 2:]
            break
        if len(buffer) > _MAX_PENDING:
            break                       # lines that never end with a comma: cut them one by one below
        searched = len(buffer)
        chunk = next(chunks, None)
        if chunk is None:
            break                       # no line layout (all on one line?), or cut short: the general cut decides
        buffer += chunk
    if not closed:
        buffer = bytes(buffer[1:])
    if not closed:
        decoder = codecs.getincrementaldecoder("utf-8")()
        text = decoder.decode(buffer)
        while True:
            items, text, closed = _cut_objects(text)
            if items:
                yield items
            if closed:
                break
            chunk = next(chunks, None)
            if chunk is None:
                raise SourceUnavailable(f"{url}: the answer is malformed or was cut short inside its results")
            text += decoder.decode(chunk)
        buffer = text.encode()
    rest = (buffer + b"".join(chunks)).strip().lstrip(b",").strip()
    try:
        tail = {} if rest == b"}" else json.loads(b"{" + rest)
    except ValueError:
        raise SourceUnavailable(f"{url}: the end of the answer is not JSON (cut short?): {rest[:80]!r}") from None
    if not isinstance(tail, dict) or "last_seq" not in tail:
        raise SourceUnavailable(f"{url}: the answer has no last_seq (cut short?)")
    yield _LastSeq(tail["last_seq"])


def _cut_objects(text: str) -> tuple[list[Any], str, bool]:
    """The complete changes at the start of `text`, one by one -> (changes, what is left, results closed)."""
    items = []
    pos = _SKIP.match(text).end()
    while pos < len(text) and text[pos] != "]":
        try:
            item, end = _DECODE(text, pos)
        except ValueError:
            break                                       # cut by the chunk boundary: wait for more
        items.append(item)
        pos = _SKIP.match(text, end).end()
    if pos < len(text) and text[pos] == "]":
        return items, text[pos + 1:], True
    return items, text[pos:], False


def _parse_changes_generally(chunks: Iterator[bytes], url: str) -> Iterator[Any]:
    """Any JSON layout of a `_changes` answer, through ijson's events."""
    last_seq: Any = _MISSING
    builder: Any = None
    try:
        for prefix, event, value in ijson.parse(_Reader(chunks), use_float=True):
            if builder is not None:
                builder.event(event, value)
                if prefix == "results.item" and event == "end_map":
                    yield [builder.value]
                    builder = None
            elif prefix == "results.item" and event == "start_map":
                builder = ijson.ObjectBuilder()
                builder.event(event, value)
            elif prefix == "last_seq" and event in ("string", "number"):
                last_seq = value
    except ijson.JSONError as exc:
        raise SourceUnavailable(f"{url}: the answer is not valid JSON or was cut short ({exc})") from None
    if last_seq is _MISSING:
        raise SourceUnavailable(f"{url}: the answer has no last_seq (cut short?)")
    yield _LastSeq(last_seq)


_MISSING = object()


@dataclass(frozen=True)
class _LastSeq:
    value: Any


def _seq_text(seq: Any) -> str:
    return "0" if seq is None else str(seq)


def _seq_number(seq: Any) -> int | None:
    """The numeric part of a sequence: CouchDB 1.x and PouchDB use integers, CouchDB 2+ `N-opaque` strings."""
    if isinstance(seq, bool):
        return None
    if isinstance(seq, (int, float)):
        return int(seq)
    if isinstance(seq, str):
        head = seq.split("-", 1)[0]
        if head.isdigit():
            return int(head)
    return None


# -- mapping documents to records -----------------------------------------------------------------------------------


class _Batch:
    """The changes of one page of one database, mapped: what to block, unblock, price and un-price."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.add: dict[str, str] = {}         # doc id -> identity / GTIN / price key
        self.remove: dict[str, None] = {}     # doc ids deleted
        self.prices: dict[str, int] = {}      # price key -> kopecks (prices kind)
        self.cut: CutCodes | None = None      # a full pass of codes keyed by the id: their keys, cut
        self.changes = 0
        self.unmapped: list[str] = []


def _value_of(doc: dict[str, Any], name: str) -> Any:
    return doc.get(name) if name != "_id" else doc.get("_id")


def _map_bulk(changes: list[Any], batch: _Batch) -> None:
    """A full pass of codes keyed by the document id: the ids are cut to keys in compiled code as each page
    arrives (`batch.cut`), so the pass holds packed keys, never the ids' text, and the load does not cut them again.
    In a pass from the start each document comes once, at its latest revision; one deleted later in the pass is
    dropped from what came before (`CutCodes.remove`: the last word wins)."""
    if changes and type(changes[0]) is _Change:       # one decode gives all `_Change`s or all dicts
        live = [c.id for c in changes if c.deleted is not True]
        gone = [c.id for c in changes if c.deleted is True] if len(live) != len(changes) else []
    else:
        live, gone = [], []
        for change in changes:
            doc_id = change.get("id") if type(change) is dict else getattr(change, "id", None)
            deleted = change.get("deleted") if type(change) is dict else getattr(change, "deleted", False)
            if type(doc_id) is not str:
                batch.unmapped.append(f"a change without a document id: {str(change)[:80]}")
            elif deleted is True:
                gone.append(doc_id)
            else:
                live.append(doc_id)
    assert batch.cut is not None
    for index, _, message in batch.cut.add(live):
        doc_id = live[index]
        if doc_id.startswith("_design/"):
            continue                                  # views and validation functions, not data
        if len(doc_id) == 14 and doc_id.isdigit():
            message = "a GTIN, not a marking code"
        batch.unmapped.append(f"{doc_id}: {message}")
    if gone:
        batch.cut.remove(gone)
    batch.changes += len(changes)


def _map_change(change: Any, batch: _Batch, mapping: Mapping) -> None:
    """Map one change into `batch`: a record to add (from the document id or a field), a deletion, or unmapped."""
    batch.changes += 1
    if not isinstance(change, dict) or not isinstance(change.get("id"), str):
        batch.unmapped.append(f"a change without a document id: {str(change)[:80]}")
        return
    doc_id = change["id"]
    if doc_id.startswith("_design/"):
        return                                    # views and validation functions, not data
    if change.get("deleted") is True:
        batch.add.pop(doc_id, None)
        batch.remove[doc_id] = None
        return
    batch.remove.pop(doc_id, None)
    name = mapping.field_of(batch.kind)
    doc = {"_id": doc_id} if _needs_no_doc(batch.kind, mapping) else change.get("doc")
    if not isinstance(doc, dict):
        batch.unmapped.append(f"{doc_id}: no document in the change (include_docs unsupported?)")
        return
    try:
        record = _record_of(batch.kind, _value_of(doc, name), name)
        if batch.kind == "prices":
            price = _value_of(doc, mapping.price_field)
            if isinstance(price, bool) or not isinstance(price, int) or price < 0:
                raise ValueError(f"field {mapping.price_field!r} is not a non-negative integer of kopecks")
            batch.prices[record] = price
        batch.add[doc_id] = record
    except (ValueError, CodeError) as exc:
        batch.add.pop(doc_id, None)
        batch.unmapped.append(f"{doc_id}: {exc}")


def _needs_no_doc(kind: str, mapping: Mapping) -> bool:
    """Codes and GTINs keyed by the document id are read off the change itself: no `include_docs` needed."""
    return kind != "prices" and mapping.field_of(kind) == "_id"


def _record_of(kind: str, value: Any, name: str) -> str:
    """The record a document's field maps to: an identity, a GTIN, or a price key. `ValueError`/`CodeError`."""
    if kind == "codes":
        if not isinstance(value, str):
            raise ValueError(f"field {name!r} is not a string")
        return parse_code(value, cis=True).identity
    if kind == "gtins":
        gtin = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
        if not gtin.isdigit() or len(gtin) > 14:
            raise ValueError(f"field {name!r} is not a GTIN")
        gtin = gtin.zfill(14)
        parse_code(f"01{gtin}21A", cis=True)          # checks the check digit
        return gtin
    return _price_key(value, name)


def _price_key(value: Any, name: str) -> str:
    """A minimum price applies to a GTIN (14 digits) or to a product group (`pg:N`)."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if text.startswith("pg:") and text[3:].isdigit():
        return f"pg:{int(text[3:])}"
    if text.isdigit() and len(text) <= 3:
        return f"pg:{int(text)}"
    if text.isdigit() and len(text) <= 14:
        gtin = text.zfill(14)
        parse_code(f"01{gtin}21A", cis=True)
        return gtin
    raise ValueError(f"field {name!r} is neither a GTIN nor a product group")


# -- the store side ------------------------------------------------------------------------------------------------


class _Replicator:
    def __init__(self, bl: Blocklist, config: ReplicationConfig, progress: Callable[[str, int, int | None], None] | None) -> None:
        self.bl = bl
        self.config = config
        self.source = _Source(config)
        self.progress = progress
        self.lock = threading.Lock()
        self.examples: list[str] = []

    # - deciding -

    def need_full(self, infos: dict[str, dict[str, Any]]) -> str | None:
        recorded = self.bl.get_meta(META_SOURCE)
        if not recorded:
            return "first replication"
        if recorded.get("url") != self.config.base:
            return f"the source changed from {recorded.get('url')} to {self.config.base}"
        if recorded.get("databases") != self.config.databases:
            return "the set of replicated databases changed"
        if recorded.get("mapping") != _mapping_dict(self.config.mapping):
            return "the document mapping changed"
        for name, info in infos.items():
            cp = _checkpoint(self.bl, name)
            if cp is None:
                return f"no checkpoint for {name}"
            start = info.get("instance_start_time")
            if start not in (None, "0", 0) and cp.get("instance_start_time") not in (None, "0", 0) \
                    and str(start) != str(cp.get("instance_start_time")):
                return f"{name} was recreated on the source (new instance_start_time)"
            ours, theirs = _seq_number(cp.get("last_seq")), _seq_number(info.get("update_seq"))
            if ours is not None and theirs is not None and theirs < ours:
                return f"{name} was recreated on the source (its update_seq {theirs} is behind our checkpoint {ours})"
        return None

    # - full -

    def full(self, reason: str, infos: dict[str, dict[str, Any]]) -> ReplicationReport:
        started = time.perf_counter()
        log.info("full re-replication from %s: %s", self.config.base, reason)
        reports: list[DbReport] = []
        codes: dict[str, str] = {}
        gtins: dict[str, str] = {}
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
            while True:
                batch, seq, count = self._page(name, kind, seq, cut=bulk)
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
            else:
                prices = {key: prices[key] for key in set(mapped.values())}
            report.added = len(bulk.take()[0]) if bulk is not None else len(set(mapped.values()))
            if self.config.mapping.field_of(kind) != "_id":
                side[_side_table(name)] = {d.encode(): v.encode() for d, v in mapped.items()}
            checkpoints[name] = self._checkpoint_value(kind, infos[name], seq, report.added, report.unmapped)
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
                         **(_price_args(self.bl, prices, replace=True) if "prices" in self.config.databases else {}))
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
            while True:
                batch, new_seq, count = self._page(name, kind, seq, longpoll=longpoll)
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
        for items in self.source.changes(name, since, self.config.batch_size, longpoll,
                                         include_docs=not _needs_no_doc(kind, mapping), ids_only=bulk):
            if isinstance(items, _LastSeq):
                last = items.value
            elif bulk:
                count += len(items)
                _map_bulk(items, batch)
            else:
                count += len(items)
                for item in items:
                    _map_change(item, batch, mapping)
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
            else:
                args = _price_args(self.bl, batch.prices, remove=gone)
            docs = self._record_count(kind) + len(values) - len(gone)     # an estimate, corrected below
            meta = {META_PREFIX + name: self._checkpoint_value(kind, info, seq, docs, unmapped)}
            if not values and not gone and not side:
                self.bl.mark_synced(**meta)
            else:
                delta = self.bl.apply_delta(to_version=self.bl.get_meta("version") + 1, synced=True, meta=meta,
                                            side=side or None, **args)
                if not delta.applied and not side:
                    self.bl.mark_synced(**meta)     # the records were there already: only the checkpoint moves
                report.added += delta.added + delta.gtins_added
                report.removed += delta.removed + delta.gtins_removed
            if self.progress is not None:
                self.progress(name, report.changes, None)

    def _record_count(self, kind: str) -> int:
        if kind == "prices":
            return int(self.bl.get_meta("min_prices") or 0) + int(self.bl.get_meta("group_min_prices") or 0)
        return int(self.bl.get_meta({"codes": "codes", "gtins": "gtins"}[kind]) or 0)

    def _doc_value(self, name: str, kind: str, doc_id: str, by_id: bool) -> str | None:
        """The record a document maps to now: derived from its id, or looked up in the document map."""
        if by_id:
            try:
                return _record_of(kind, doc_id, "_id")
            except (ValueError, CodeError):
                return None
        found = self.bl.side_get(_side_table(name), doc_id.encode())
        return None if found is None else found.decode()

    def _checkpoint_value(self, kind: str, info: dict[str, Any], seq: Any, docs: int, unmapped: int) -> dict[str, Any]:
        theirs, ours = _seq_number(info.get("update_seq")), _seq_number(seq)
        return {
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
                "mapping": _mapping_dict(self.config.mapping)}

    def infos(self) -> dict[str, dict[str, Any]]:
        return {name: self.source.info(name) for name in self.config.databases.values()}

    def run_once(self, full: bool = False, longpoll: bool = False) -> ReplicationReport:
        infos = self.infos()
        reason = "asked for" if full else self.need_full(infos)
        if reason is None:
            try:
                return self.incremental(infos, longpoll=longpoll)
            except _BadCheckpoint as exc:
                reason = str(exc)
        return self.full(reason, infos)


def _side_table(name: str) -> bytes:
    """The document map of one source database (only for a mapping from a field other than `_id`)."""
    return b"replica:" + name.encode()


def _mapping_dict(mapping: Mapping) -> dict[str, str]:
    return {"code_field": mapping.code_field, "gtin_field": mapping.gtin_field,
            "price_key_field": mapping.price_key_field, "price_field": mapping.price_field}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _price_record(key: str, price: int) -> str:
    """A price key (`pg:N` or a GTIN) and its kopecks as the store's table record (store/tables.py)."""
    return f"group_min_price {key[3:]} {price}" if key.startswith("pg:") else f"min_price {key} {price}"


def _price_args(bl: Blocklist, prices: dict[str, int], *, replace: bool = False,
                remove: Iterable[str] = ()) -> dict[str, Any]:
    """The store's arguments for minimum prices: its table records (`load(records=)` replaces the tables, the
    grey list kept as it is, since the source has none; `apply_delta(add_records=, remove_records=)` sets and
    deletes keys, a deleted key's record named with the price the store holds for it)."""
    if replace:
        kept = [text for text in bl.iter_records() if text.startswith("grey_gtin ")]
        return {"records": [_price_record(key, price) for key, price in sorted(prices.items())] + kept}
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


def _open(db: Blocklist | str | os.PathLike[str]) -> tuple[Blocklist, bool]:
    """The store of an existing database, and whether we opened it (and close it after)."""
    if isinstance(db, Blocklist):
        return db, False
    return Blocklist.open(db, readonly=False), True


def _is_new(db: Blocklist | str | os.PathLike[str]) -> bool:
    return not isinstance(db, Blocklist) and not os.path.exists(os.path.join(os.fspath(db), "data.mdb"))


def replicate(db: Blocklist | str | os.PathLike[str], config: ReplicationConfig, *, full: bool = False,
              progress: Callable[[str, int, int | None], None] | None = None) -> ReplicationReport:
    """One replication pass: incremental from the checkpoints, or full when it must be (or `full=True`).

    `db` is a writable `Blocklist` or a path. A new store is built aside (`Blocklist.building`) and appears at the
    path only when its first replication succeeded: a failed or killed first pass leaves no database there.
    Raises `ReplicationError` (the store keeps what it held before the failing batch) or `StoreError`.
    """
    if _is_new(db):
        with Blocklist.building(db) as bl:
            return _run_once(bl, config, full, progress)
    bl, owned = _open(db)
    try:
        return _run_once(bl, config, full, progress)
    finally:
        if owned:
            bl.close()


def _run_once(bl: Blocklist, config: ReplicationConfig, full: bool,
              progress: Callable[[str, int, int | None], None] | None) -> ReplicationReport:
    replicator = _Replicator(bl, config, progress)
    try:
        return replicator.run_once(full=full)
    finally:
        replicator.source.close()


def follow(db: Blocklist | str | os.PathLike[str], config: ReplicationConfig, *, stop: threading.Event,
           on_report: Callable[[ReplicationReport], None] | None = None,
           on_error: Callable[[BaseException], None] | None = None, retry_after: float = 10.0) -> None:
    """Replicate continuously on the longpoll feed until `stop` is set: one thread per source database waits
    for its changes; each batch is applied as it comes (one transaction with its checkpoint). A source that needs
    a full re-replication pauses them all for it. Errors are reported and retried after `retry_after` seconds."""
    if _is_new(db):
        while not stop.is_set():                  # the first pass builds the store aside
            try:
                report = replicate(db, config)
                if on_report is not None:
                    on_report(report)
                break
            except (ReplicationError, StoreError) as exc:
                if on_error is not None:
                    on_error(exc)
                stop.wait(retry_after)
        if stop.is_set():
            return
    bl, owned = _open(db)
    replicator = _Replicator(bl, config, None)
    replicator.source.stop = stop
    try:
        while not stop.is_set():
            try:
                report = replicator.run_once()
                if on_report is not None:
                    on_report(report)
                need_full = threading.Event()
                workers = [threading.Thread(target=_follow_one, name=f"replicate-{name}", daemon=True,
                                            args=(replicator, name, stop, need_full, on_report, on_error,
                                                  retry_after))
                           for name in config.databases.values()]
                for worker in workers:
                    worker.start()
                while not stop.is_set() and not need_full.is_set():
                    stop.wait(0.5)
                need_full.set()
                for worker in workers:
                    worker.join(config.longpoll_timeout + config.timeout + 5)
            except (ReplicationError, StoreError) as exc:
                if on_error is not None:
                    on_error(exc)
                stop.wait(retry_after)
    finally:
        replicator.source.close()
        if owned:
            bl.close()


def _follow_one(replicator: _Replicator, name: str, stop: threading.Event, need_full: threading.Event,
                on_report: Callable[[ReplicationReport], None] | None,
                on_error: Callable[[BaseException], None] | None, retry_after: float) -> None:
    while not stop.is_set() and not need_full.is_set():
        try:
            infos = {n: replicator.source.info(n) for n in [name]}
            with replicator.lock:
                reason = replicator.need_full({**infos})
            if reason is not None:
                need_full.set()
                return
            report = replicator.incremental({**_all_infos(replicator, infos)}, longpoll=True, only=name)
            if on_report is not None and report.changes:
                on_report(report)
        except _BadCheckpoint:
            need_full.set()
            return
        except (ReplicationError, StoreError) as exc:
            if on_error is not None:
                on_error(exc)
            stop.wait(retry_after)


def _all_infos(replicator: _Replicator, infos: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n: infos.get(n, {}) for n in replicator.config.databases.values()}
