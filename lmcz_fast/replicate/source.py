"""The source: CouchDB's HTTP API, read-only (`GET /{db}`, `GET /{db}/_changes`), and its sequences."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from ..upstream import SyncHttpClient, UpstreamError
from .changes import _LastSeq, _parse_changes, checked_seq
from .config import ReplicationConfig, ReplicationError, SourceAuthError, SourceMalformed, SourceUnavailable

log = logging.getLogger("lmcz_fast.replicate")


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
            info = json.loads(body, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            raise SourceMalformed(f"{url}: not a CouchDB database answer: {body[:120]!r}") from None
        if not isinstance(info, dict):
            raise SourceUnavailable(f"{url}: not a CouchDB database answer")
        return info

    def _small_json(self, url: str, missing_ok: bool = False, cap: int = 1 << 20) -> Any:
        """A small JSON answer (at most `cap` bytes, 1 MiB by default); None for a 404 when `missing_ok`."""
        try:
            with self._get(url, self.headers) as response:
                body = b""
                for chunk in _decoded(response, 65536):
                    body += chunk
                    if len(body) > cap:
                        raise SourceMalformed(f"{url}: the answer is over {cap >> 20} MiB")
                if response.status == 404 and missing_ok:
                    return None
                if response.status != 200:
                    raise self._refused(response.status, url, body)
        except UpstreamError as exc:
            raise SourceUnavailable(f"{url}: {exc}") from exc
        try:
            return json.loads(body, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            raise SourceMalformed(f"{url}: not a JSON answer: {body[:120]!r}") from None

    def get_json(self, url: str, cap: int = 1 << 20) -> Any:
        """A JSON answer of at most `cap` bytes (`replicate --inspect`: `_all_dbs`, `_all_docs` samples)."""
        return self._small_json(url, cap=cap)

    def server(self) -> dict[str, Any]:
        """`GET /`: the server's welcome (CouchDB and PouchDB give a `uuid` of the server); {} when refused."""
        try:
            found = self._small_json(self.config.base + "/")
        except SourceAuthError:
            return {}
        except SourceUnavailable as exc:
            if "HTTP " in str(exc):
                return {}                   # a server that does not welcome: no identity from it, not an outage
            raise
        return found if isinstance(found, dict) else {}

    def doc_change(self, db: str, doc_id: str) -> dict[str, Any] | None:
        """The latest change of one document (`_changes?filter=_doc_ids`): {"rev", "seq", "deleted"}, or None when
        the database's history has no such document."""
        url = self.url(db, "/_changes", filter="_doc_ids", doc_ids=json.dumps([doc_id]), style="main_only")
        found = self._small_json(url)
        results = found.get("results") if isinstance(found, dict) else None
        if not isinstance(results, list):
            raise SourceMalformed(f"{url}: the answer has no `results` list")
        for change in results:
            if isinstance(change, dict) and change.get("id") == doc_id:
                revs = change.get("changes")
                rev = revs[0].get("rev") if isinstance(revs, list) and revs and isinstance(revs[0], dict) else None
                return {"rev": rev, "seq": checked_seq(change.get("seq"), url),
                        "deleted": change.get("deleted") is True}
        return None

    def doc_revisions(self, db: str, doc_id: str) -> set[str]:
        """Every revision in the histories of one document's leaves (`?open_revs=all&revs=true`), tombstones too."""
        url = self.url(db, "/" + quote(doc_id, safe=""), open_revs="all", revs="true")
        found = self._small_json(url, missing_ok=True)
        out: set[str] = set()
        for leaf in found if isinstance(found, list) else []:
            doc = leaf.get("ok") if isinstance(leaf, dict) else None
            history = doc.get("_revisions") if isinstance(doc, dict) else None
            if isinstance(history, dict) and isinstance(history.get("start"), int) \
                    and isinstance(history.get("ids"), list):
                out.update(f"{history['start'] - i}-{rev}" for i, rev in enumerate(history["ids"]))
        return out

    def changes(self, db: str, since: Any, limit: int, longpoll: bool = False,
                include_docs: bool = True, ids_only: bool = False,
                keyed: bool = False) -> Iterator[list[Any] | _LastSeq]:
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
                    yield from _parse_changes(chunks, url, ids_only, keyed)
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


#: The read-only client under a public name, for `inspection/` (a package of its own).
CouchSource = _Source


class _BadCheckpoint(Exception):
    pass


class _WaitOver(Exception):
    """A longpoll wait ended (deadline or stop) with nothing received."""


def _seq_text(seq: Any) -> str:
    return "0" if seq is None else str(seq)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _seq_number(seq: Any) -> int | None:
    """The numeric part of a sequence: CouchDB 1.x and PouchDB use integers, CouchDB 2+ `N-opaque` strings."""
    if isinstance(seq, bool):
        return None
    if isinstance(seq, float) and not seq.is_integer():
        return None                               # NaN, Infinity: never a position in a history
    if isinstance(seq, (int, float)):
        return int(seq)
    if isinstance(seq, str):
        head = seq.split("-", 1)[0]
        if head.isdigit():
            return int(head)
    return None
