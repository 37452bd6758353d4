"""Fetching a feed's files below one URL (http, https or file) with retries, streamed through size and SHA-256."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import random
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..progress import Progress
from ..upstream import ProxyAuthError, ProxyConfig, SyncHttpClient, UpstreamError
from .directory import _CHUNK
from .errors import FeedUnavailable, IntegrityError
from .manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, DeltaEntry, SnapshotEntry

log = logging.getLogger("lmcz_fast.feed")  # the feed's one logger, whichever file logs


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one fetch: exponential backoff (base * 2**n, capped) with jitter over its upper half. `sleep`
    waits between attempts and `rng` draws the jitter (a fresh `random.Random()` per fetch when None): the seams a
    caller that paces its own rounds, or a test, replaces."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    timeout: float = 30.0
    sleep: Callable[[float], Any] = field(default=time.sleep, compare=False, repr=False)
    rng: random.Random | None = field(default=None, compare=False, repr=False)

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.max_delay, self.base_delay * (2 ** attempt))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


class _Transient(Exception):
    """A failure worth retrying: connection trouble, timeouts, 5xx, 429, a transfer cut short."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _NotFound(FeedUnavailable):
    """A named file is not on the server (yet, or any more): the caller re-reads the manifest."""


def _feed_base(feed_url: str) -> str:
    """The URL of the feed directory, from a directory URL, a manifest URL, or a local path."""
    if "://" not in feed_url:
        feed_url = Path(feed_url).resolve().as_uri()
    if feed_url.endswith("/" + MANIFEST_NAME):
        feed_url = feed_url[: -len(MANIFEST_NAME)]
    return feed_url if feed_url.endswith("/") else feed_url + "/"


class _Fetcher:
    """GETs files below one feed URL (http, https or file) with retries; streams them through size and hash.

    http(s) goes through `lmcz_fast.upstream` (httpx), with the proxy `proxy` says (default: the environment's).
    Use as a context manager: it keeps its connections open between the files of one sync."""

    def __init__(self, feed_url: str, retry: RetryPolicy, sleep: Callable[[float], Any], rng: random.Random,
                 proxy: ProxyConfig | None = None) -> None:
        self.base = _feed_base(feed_url)
        self.retry = retry
        self.sleep = sleep
        self.rng = rng
        self.proxy = proxy
        self.requests = 0
        self.bytes = 0
        self._http: SyncHttpClient | None = None

    def __enter__(self) -> _Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def url(self, name: str) -> str:
        return urllib.parse.urljoin(self.base, urllib.parse.quote(name))

    @contextlib.contextmanager
    def _open(self, url: str, fresh: bool, what: str) -> Iterator[tuple[Iterator[bytes], int | None]]:
        """Yield the body as chunks of at most `_CHUNK` bytes, and its length when the server said it."""
        self.requests += 1
        if url.startswith("file:"):
            path = urllib.request.url2pathname(urllib.parse.urlparse(url).path)
            try:
                stream = open(path, "rb")
            except FileNotFoundError as exc:
                raise _NotFound(f"{url}: no such file") from exc
            except OSError as exc:
                raise FeedUnavailable(f"{url}: {exc.strerror or exc}") from exc
            with stream:
                yield iter(lambda: stream.read(_CHUNK), b""), os.fstat(stream.fileno()).st_size
            return
        headers = {"Accept-Encoding": "identity"}
        if fresh:
            headers["Cache-Control"] = "no-cache"
        if self._http is None:
            self._http = SyncHttpClient(self.proxy, timeout=self.retry.timeout, user_agent="lmcz-fast-feed/1")
        try:
            with self._http.get(url, headers) as response:
                status = response.status
                if not 200 <= status < 300:
                    if status in (404, 410):
                        raise _NotFound(f"{url}: HTTP {status}")
                    if status >= 500 or status in (408, 429):
                        raise _Transient(f"HTTP {status}", _retry_after(response.headers.get("retry-after")))
                    raise FeedUnavailable(f"{url}: HTTP {status} {http.client.responses.get(status, '')}".rstrip())
                length = response.headers.get("content-length")
                yield _reading(response.iter_raw(_CHUNK), what), int(length) if length and length.isdigit() else None
        except ProxyAuthError as exc:
            raise FeedUnavailable(str(exc)) from exc
        except UpstreamError as exc:
            if exc.phase == "proxy" and exc.status is not None and 400 <= exc.status < 500 and exc.status != 408:
                raise FeedUnavailable(str(exc)) from exc  # the proxy refuses this tunnel: retrying will not help
            raise _Transient(str(exc)) from exc

    def _with_retries(self, what: str, operation: Callable[[], Any]) -> Any:
        last: _Transient | None = None
        for attempt in range(self.retry.attempts):
            try:
                return operation()
            except _Transient as exc:
                last = exc
                if attempt + 1 >= self.retry.attempts:
                    break
                delay = self.retry.delay(attempt, self.rng)
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, self.retry.max_delay))
                log.warning("fetching %s failed (%s); retry %d/%d in %.1f s", what, exc, attempt + 1,
                            self.retry.attempts - 1, delay)
                self.sleep(delay)
        raise FeedUnavailable(f"{what}: {last} (gave up after {self.retry.attempts} attempts)")

    def get_manifest(self) -> bytes:
        url = self.url(MANIFEST_NAME)

        def once() -> bytes:
            data = bytearray()
            with self._open(url, fresh=True, what="the manifest") as (chunks, length):
                for chunk in chunks:
                    data += chunk
                    if len(data) > MAX_MANIFEST_BYTES:
                        break
            if length is not None and len(data) < length:
                raise _Transient(f"the manifest transfer stopped after {len(data)} of {length} bytes")
            self.bytes += len(data)
            return bytes(data)

        return self._with_retries(url, once)

    def download(self, name: str, size: int, sha256: str, dest: Path,
                 progress: Callable[[int], Any] | None = None) -> None:
        """Fetch `name` into `dest` (a temp path the caller owns); raise unless exactly `size` bytes of `sha256`.

        `progress(n)` is called with each chunk's byte count (a retry starts the count again from zero: it is
        called with minus what the failed attempt had counted)."""
        url = self.url(name)

        def once() -> None:
            digest = hashlib.sha256()
            received = 0
            try:
                with self._open(url, fresh=False, what=name) as (chunks, length), open(dest, "wb") as out:
                    for chunk in chunks:
                        received += len(chunk)
                        if received > size:
                            raise IntegrityError(f"{name} is longer than the {size} bytes the manifest says")
                        digest.update(chunk)
                        out.write(chunk)
                        if progress is not None:
                            progress(len(chunk))
            except _Transient:
                if progress is not None and received:
                    progress(-received)
                raise
            self.bytes += received
            if length is not None and received < length:
                if progress is not None and received:
                    progress(-received)
                raise _Transient(f"the transfer of {name} stopped after {received} of {length} bytes")
            if received != size:
                raise IntegrityError(f"{name} is {received} bytes; the manifest says {size}")
            if digest.hexdigest() != sha256:
                raise IntegrityError(f"{name}: SHA-256 {digest.hexdigest()} differs from the manifest's {sha256}")

        self._with_retries(url, once)


def _reading(chunks: Iterator[bytes], what: str) -> Iterator[bytes]:
    """A transfer cut or stalled part-way is worth another try."""
    try:
        yield from chunks
    except (UpstreamError, OSError) as exc:
        raise _Transient(f"reading {what}: {exc}") from exc


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _fetch_to(fetcher: _Fetcher, entry: SnapshotEntry | DeltaEntry, dest: Path, progress: Progress | None) -> None:
    counted: Callable[[int], None] | None = None
    if progress is not None:
        stage, done = f"downloading {entry.path}", [0]
        progress(stage, 0, entry.size, "bytes")

        def count(n: int) -> None:
            done[0] += n
            progress(stage, done[0], entry.size, "bytes")
        counted = count

    fetcher.download(entry.path, entry.size, entry.sha256, dest, counted)
