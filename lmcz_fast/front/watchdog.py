"""The watchdog: the official module's health, polled as integrators do, and its `init` again on `sync_error`
(docs/front.md, "The watchdog").

Every `every` seconds (10 by default, as FMU-API and fleet scripts poll) a thread asks the official module's
`GET /api/v1/status` (its state, `lastSync`, versions, `inst`) and times the answer, and asks its database's root
URL (CouchDB's `GET /` on its own port, 5984 by default: the module's "Yenisei" database; docs/front.md) whether it
is alive: the module's API is known to answer while its database is dead. On `sync_error` it calls the module's
`POST /api/v1/init` again with the participant token kept from the tills' last `init` through the front (as
FMU-API does), at most once per `reinit_every` seconds (5 minutes by default); the token is never logged or shown.

What it found is one immutable `Observation`, replaced whole after each poll, read by the status page,
`/api/v1/status` (the `front` object) and /metrics.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .calls import CallError, OfficialCalls

log = logging.getLogger("lmcz_fast.front")

#: Seconds between two polls.
DEFAULT_EVERY = 10.0
#: Seconds between two `init` calls on `sync_error` at least.
DEFAULT_REINIT_EVERY = 300.0
#: The official module's database port (CouchDB's; the module's "Yenisei" database listens there).
DEFAULT_DATABASE_PORT = 5984
#: Seconds a poll waits for an answer.
DEFAULT_TIMEOUT = 3.0
#: The official module's states (docs/protocol.md); anything else is reported as it came.
STATES = ("ready", "initialization", "sync_error", "not_configured")


def database_url_of(front_url: str, port: int = DEFAULT_DATABASE_PORT) -> str:
    """The default root URL of the official module's database: the module's host, CouchDB's port."""
    parts = urlsplit(front_url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit(("http", f"{host}:{port}", "/", "", ""))


@dataclass(frozen=True, slots=True)
class Observation:
    """What the last poll found (times Unix s; None: not known)."""

    checked_at: float | None = None
    reachable: bool = False
    http_status: int | None = None
    answer_seconds: float | None = None
    state: str = "unknown"
    last_sync: int = 0                  # the module's own lastSync, Unix ms (0: never or unknown)
    software_version: str = ""
    db_version: str = ""
    inst: str = ""
    error: str = ""
    database_alive: bool | None = None
    database_seconds: float | None = None
    database_error: str = ""
    reinits: int = 0
    last_init_at: float | None = None
    last_init_result: str = ""


def _str(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else json.dumps(value)


class Watchdog:
    """Polls the official module (`calls`) and its database (`database`, or None) on a thread; see the module doc.

    `token()` answers the participant token kept from the last forwarded `init`, or None."""

    def __init__(self, calls: OfficialCalls, database: OfficialCalls | None, token: Callable[[], str | None], *,
                 every: float = DEFAULT_EVERY, reinit_every: float = DEFAULT_REINIT_EVERY,
                 timeout: float = DEFAULT_TIMEOUT, clock: Callable[[], float] = time.time) -> None:
        if every <= 0 or reinit_every < 0:
            raise ValueError("the poll interval must be positive and the re-init interval not negative")
        self._calls = calls
        self._database = database
        self._token = token
        self.every = every
        self.reinit_every = reinit_every
        self.timeout = timeout
        self._clock = clock
        self.last = Observation()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_state: str | None = None
        self._no_token_logged = False
        self.polls = 0
        self.failures = 0

    @property
    def database_url(self) -> str:
        return self._database.base_url + "/" if self._database is not None else ""

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="lmcz-front-watchdog", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:
                log.exception("front watchdog: poll failed")
            self._stop.wait(self.every)

    # -- one poll -----------------------------------------------------------------------------------------------

    def poll(self) -> Observation:
        """Poll once (status, database, `init` if due) and publish what was found."""
        self.polls += 1
        seen = self._status()
        seen = self._database_alive(seen)
        seen = self._maybe_reinit(seen)
        self._log_transition(seen)
        self.last = seen
        return seen

    def _status(self) -> Observation:
        before = self.last
        base = Observation(checked_at=self._clock(), reinits=before.reinits, last_init_at=before.last_init_at,
                           last_init_result=before.last_init_result)
        try:
            status, body, seconds = self._calls.request("GET", "/api/v1/status", timeout=self.timeout)
        except CallError as exc:
            self.failures += 1
            return replace(base, state="unreachable", error=str(exc))
        base = replace(base, reachable=True, http_status=status, answer_seconds=seconds)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if status != 200 or not isinstance(payload, dict):
            self.failures += 1
            return replace(base, state="failure", error=f"status answered HTTP {status}: "
                                                        f"{body[:200].decode('utf-8', 'replace')}")
        last_sync = payload.get("lastSync")
        return replace(base, state=_str(payload.get("status")) or "unknown",
                       last_sync=last_sync if isinstance(last_sync, int) and not isinstance(last_sync, bool) else 0,
                       software_version=_str(payload.get("version")), db_version=_str(payload.get("dbVersion")),
                       inst=_str(payload.get("inst")))

    def _database_alive(self, seen: Observation) -> Observation:
        if self._database is None:
            return seen
        try:
            status, body, seconds = self._database.request("GET", "/", timeout=self.timeout, auth=False)
        except CallError as exc:
            return replace(seen, database_alive=False, database_error=str(exc))
        try:
            alive = status == 200 and isinstance(json.loads(body), dict)
        except ValueError:
            alive = False
        return replace(seen, database_alive=alive, database_seconds=seconds,
                       database_error="" if alive else f"HTTP {status}: {body[:120].decode('utf-8', 'replace')}")

    def _maybe_reinit(self, seen: Observation) -> Observation:
        if seen.state != "sync_error":
            return seen
        now = self._clock()
        if seen.last_init_at is not None and now - seen.last_init_at < self.reinit_every:
            return seen
        token = self._token()
        if not token:
            if not self._no_token_logged:
                self._no_token_logged = True
                log.warning("front watchdog: the official module is in sync_error and no participant token is kept "
                            "(one is kept when a till's init goes through the front): not re-initialised")
            return seen
        body = json.dumps({"token": token}).encode()
        try:
            status, answer, _ = self._calls.request("POST", "/api/v1/init", body, timeout=max(self.timeout, 10.0))
            result = f"HTTP {status}"
        except CallError as exc:
            result = f"no answer: {exc}"
        log.warning("front watchdog: the official module is in sync_error: init called again with the kept "
                    "participant token (%s)", result)
        return replace(seen, reinits=seen.reinits + 1, last_init_at=now, last_init_result=result)

    def _log_transition(self, seen: Observation) -> None:
        if seen.state != self._last_state:
            level = logging.INFO if seen.state == "ready" else logging.WARNING
            log.log(level, "front watchdog: official module %s -> %s%s", self._last_state, seen.state,
                    f" ({seen.error})" if seen.error else "")
            self._last_state = seen.state

    # -- what the surfaces show ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The watchdog's part of status's `front` object (times Unix ms, 0 for never; seconds as numbers)."""
        seen = self.last
        return {
            "state": seen.state, "reachable": seen.reachable, "checkedAt": int((seen.checked_at or 0) * 1000),
            "answerMs": None if seen.answer_seconds is None else round(seen.answer_seconds * 1000, 3),
            "lastSync": seen.last_sync, "version": seen.software_version, "dbVersion": seen.db_version,
            "inst": seen.inst, "error": seen.error, "pollEvery": self.every,
            "database": {"url": self.database_url, "alive": seen.database_alive,
                         "answerMs": None if seen.database_seconds is None else round(seen.database_seconds * 1000, 3),
                         "error": seen.database_error},
            "reinit": {"count": seen.reinits, "lastAt": int((seen.last_init_at or 0) * 1000),
                       "lastResult": seen.last_init_result, "every": self.reinit_every,
                       "tokenKept": bool(self._token())},
        }

    def warning(self) -> str | None:
        """What the status page warns of: the official module unreachable, not ready, or its database dead."""
        seen = self.last
        if seen.checked_at is None:
            return None
        if not seen.reachable or seen.state == "failure":
            return (f"the official module does not answer its status ({seen.error}): the tills get this store's "
                    "answers (официальный модуль не отвечает: кассы получают ответы этой базы)")
        if seen.state != "ready":
            return (f"the official module reports {seen.state}" + (f" (init called again {seen.reinits} times)"
                                                                  if seen.reinits else "")
                    + " (официальный модуль не готов)")
        if seen.database_alive is False:
            return (f"the official module's database at {self.database_url} is dead ({seen.database_error}) while "
                    "its API answers (база данных официального модуля не отвечает)")
        return None

    def prometheus_lines(self) -> list[str]:
        seen = self.last
        out = ["# HELP lmcz_front_official_up Whether the official module answered its last status poll (1) or not.",
               "# TYPE lmcz_front_official_up gauge",
               f"lmcz_front_official_up {int(seen.reachable and seen.http_status == 200)}",
               "# HELP lmcz_front_official_state The official module's state at the last poll (1 for the current).",
               "# TYPE lmcz_front_official_state gauge"]
        states = (*STATES, "unreachable", "failure", "unknown")
        current = seen.state if seen.state in states else "unknown"
        out += [f'lmcz_front_official_state{{state="{s}"}} {int(current == s)}' for s in states]
        out += ["# HELP lmcz_front_official_answer_seconds How long its last status answer took (-1: none).",
                "# TYPE lmcz_front_official_answer_seconds gauge",
                f"lmcz_front_official_answer_seconds {-1 if seen.answer_seconds is None else round(seen.answer_seconds, 6)}",
                "# HELP lmcz_front_official_last_sync_seconds The official module's lastSync (Unix s; 0: never).",
                "# TYPE lmcz_front_official_last_sync_seconds gauge",
                f"lmcz_front_official_last_sync_seconds {seen.last_sync / 1000:.3f}",
                "# HELP lmcz_front_official_database_up Whether the official module's database answered its root "
                "URL (1), not (0), or is not watched (-1).",
                "# TYPE lmcz_front_official_database_up gauge",
                f"lmcz_front_official_database_up {-1 if seen.database_alive is None else int(seen.database_alive)}",
                "# HELP lmcz_front_official_reinits_total init calls made again on sync_error.",
                "# TYPE lmcz_front_official_reinits_total counter",
                f"lmcz_front_official_reinits_total {seen.reinits}",
                "# HELP lmcz_front_official_polls_total Status polls of the official module.",
                "# TYPE lmcz_front_official_polls_total counter",
                f"lmcz_front_official_polls_total {self.polls}",
                "# HELP lmcz_front_official_poll_failures_total Status polls that got no good answer.",
                "# TYPE lmcz_front_official_poll_failures_total counter",
                f"lmcz_front_official_poll_failures_total {self.failures}"]
        return out
