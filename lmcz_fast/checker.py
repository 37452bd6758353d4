"""Till-side checker: ask the national system online; if no answer arrives within the deadline, decide offline.

The rule at the till (CRPT: "if the online check gives no answer within 1.5 seconds, check offline") is one hard
deadline over the whole online attempt — DNS, connect, TLS, send, read. The offline check starts at the same time as
the online one, so its answer is already there when the deadline passes; the call returns then, never later. An
online answer that arrives after the deadline is logged (with what it would have decided), not used.

Threads: the asyncio API runs in the caller's loop and starts no thread. The sync API checks an in-process
`Blocklist` in the caller's thread and runs the network parts on one background event-loop thread owned by the
`Checker` (started on first need, stopped by `close()`), so no thread and no socket is created per call.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import datetime as _dt
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from ._codes import CodeError, readings_of
from .receipt import instance_uuid, request_id, tag_1265, version_uuid
from .store.environment import DEFAULT_EXPIRE_AFTER
from .store.errors import NoListError
from .trueapi import CheckResponse, TrueApiClient, TrueApiError, split
from .upstream import HttpClient, ProxyConfig

__all__ = [
    "MAX_RECEIPT_CODES",
    "TAG_1262",
    "TAG_1263",
    "TAG_1264",
    "Checker",
    "CodeVerdict",
    "Decision",
    "LocalModuleClient",
    "LocalModuleError",
    "Mode",
    "Reason",
    "ReceiptTooLarge",
    "TillVerdict",
]

log = logging.getLogger("lmcz_fast.checker")

#: A fiscal drive takes at most 128 marking codes per receipt (CRPT webinar; see ../shared/domain.md).
MAX_RECEIPT_CODES = 128
TAG_1262 = "030"
TAG_1263 = "21.11.2023"
TAG_1264 = "1944"
_CONST_TAGS = {1262: TAG_1262, 1263: TAG_1263, 1264: TAG_1264}


class Decision(str, Enum):
    SELL = "sell"
    REFUSE = "refuse"
    CANNOT_CHECK = "cannot_check"


class Mode(str, Enum):
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a code was refused or could not be checked, or a note on how it was checked.

    `key` is stable (logs, metrics, till scripts); `ru` and `en` are what the cashier reads.
    """

    key: str
    ru: str
    en: str

    def text(self, lang: str = "ru") -> str:
        return self.en if lang == "en" else self.ru


def _r(key: str, ru: str, en: str) -> Reason:
    return Reason(key, ru, en)


def _limit_words(seconds: float) -> tuple[str, str]:
    """An offline limit after "больше" / "for over", in Russian (genitive) and English: 72 часов / 72 hours."""
    for size, ru_one, ru_many, en in ((3600, "часа", "часов", "hour"), (60, "минуты", "минут", "minute"),
                                      (1, "секунды", "секунд", "second")):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            ru = ru_one if n % 10 == 1 and n % 100 != 11 else ru_many
            return f"{n} {ru}", f"{n} {en}{'' if n == 1 else 's'}"
    return f"{seconds:g} секунды", f"{seconds:g} seconds"


def offline_expired_reason(expire_after: float) -> Reason:
    """The refusal for an in-process offline database past its offline limit, naming the configured limit."""
    ru, en = _limit_words(expire_after)
    return Reason("offline_expired", f"Проверка не удалась: офлайн-база не обновлялась больше {ru}",
                  f"Could not check: the offline database has not been updated for over {en}")


def offline_sync_error_reason(expire_after: float | None) -> Reason:
    """The refusal for a Local Module in `sync_error` (4050). `lmcz-fast serve` says its limit (`offlineLimit`);
    the official module's is 72 hours (the programmer's guide), assumed when it says none."""
    ru, en = _limit_words(DEFAULT_EXPIRE_AFTER if expire_after is None else expire_after)
    return Reason("offline_sync_error", f"Проверка не удалась: локальный модуль не синхронизировался больше {ru}",
                  f"Could not check: the Local Module has not synchronised for over {en}")


#: Refusal reasons in the order CRPT's recommendations check them (online), then offline and operational ones.
REASONS: dict[str, Reason] = {
    r.key: r
    for r in (
        _r("not_valid", "Код маркировки недействителен — продажа запрещена",
           "The marking code is not valid — do not sell"),
        _r("not_found", "Код не найден в системе «Честный знак» — продажа запрещена",
           "The code is not known to Chestny Znak — do not sell"),
        _r("not_utilised", "Код выпущен, но не нанесён на товар (нет отчёта о нанесении) — продажа запрещена",
           "The code was issued but never reported as applied to goods — do not sell"),
        _r("not_verified", "Код не прошёл криптографическую проверку (возможна подделка) — продажа запрещена",
           "The code failed the cryptographic check (possibly fake) — do not sell"),
        _r("sold", "Товар уже продан (выведен из оборота) — продажа запрещена",
           "This item has already been sold (withdrawn from circulation) — do not sell"),
        _r("not_realizable", "Товар не введён в оборот — продажа запрещена",
           "The item is not in circulation — do not sell"),
        _r("blocked", "Товар заблокирован по решению госоргана — продажа запрещена",
           "The item is blocked by a government authority — do not sell"),
        _r("expired", "Истёк срок годности — продажа запрещена",
           "The item is past its expiry date — do not sell"),
        _r("unreadable", "Код не распознан — отсканируйте ещё раз",
           "The scan is not a marking code — scan it again"),
        _r("no_answer", "Проверка не удалась: нет ответа онлайн и нет офлайн-проверки",
           "Could not check: no online answer and no offline check available"),
        offline_expired_reason(DEFAULT_EXPIRE_AFTER),
        _r("offline_empty", "Проверка не удалась: офлайн-база пуста (не загружена)",
           "Could not check: the offline database is empty (never loaded)"),
        _r("offline_not_ready", "Проверка не удалась: локальный модуль не готов к работе",
           "Could not check: the Local Module is not ready"),
        offline_sync_error_reason(None),
        _r("offline_failed", "Проверка не удалась: локальный модуль не ответил",
           "Could not check: the Local Module did not answer"),
        _r("offline_auth", "Проверка не удалась: локальный модуль отклонил логин или пароль — проверьте настройки",
           "Could not check: the Local Module refused the user name or password — check the settings"),
        # Notes: how a verdict was reached. They never change the decision.
        _r("checked_offline", "Проверено офлайн: онлайн-проверка не ответила вовремя",
           "Checked offline: the online check did not answer in time"),
        _r("offline_stale", "Внимание: офлайн-база давно не обновлялась",
           "Warning: the offline database is out of date"),
    )
}

_ONLINE_ORDER = (
    ("valid", False, "not_valid"),
    ("found", False, "not_found"),
    ("utilised", False, "not_utilised"),
    ("verified", False, "not_verified"),
    ("sold", True, "sold"),
    ("realizable", False, "not_realizable"),
    ("isBlocked", True, "blocked"),
)


_BLOCKED: tuple[Reason, ...] = (REASONS["blocked"],)


class ReceiptTooLarge(ValueError):
    """More marking codes than a fiscal drive takes on one receipt."""

    def __init__(self, count: int) -> None:
        super().__init__(
            f"a receipt holds at most {MAX_RECEIPT_CODES} marking codes (fiscal drive limit); got {count}: "
            f"split the sale into several receipts"
        )
        self.count = count
        self.limit = MAX_RECEIPT_CODES


@dataclass(slots=True)
class CodeVerdict:
    """The verdict on one scanned code.

    `code` is the full code as sent to the online system (symbology prefix and line ends removed, GS kept);
    `online` is this code's entry in the True API answer, `offline` the `Verdict` (in-process) or the Local Module's
    entry that decided, when one did. `tags` holds 1262–1264 always and 1265 when the code was actually checked.
    """

    raw: str
    code: str | None
    cis: str | None
    gtin: str | None
    decision: Decision
    mode: Mode | None
    reasons: tuple[Reason, ...] = ()
    notes: tuple[Reason, ...] = ()
    tags: Mapping[int, str] = field(default_factory=dict)
    online: Mapping[str, Any] | None = None
    offline: Any = None

    @property
    def tag_1265(self) -> str | None:
        return self.tags.get(1265)

    def message(self, lang: str = "ru") -> str:
        if self.reasons:
            return self.reasons[0].text(lang)
        return ("Можно продавать" if lang != "en" else "OK to sell") + (
            f" ({self.notes[0].text(lang)})" if self.notes else ""
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "raw": self.raw,
            "cis": self.cis,
            "gtin": self.gtin,
            "decision": self.decision.value,
            "mode": self.mode.value if self.mode else None,
            "reasons": [{"key": r.key, "ru": r.ru, "en": r.en} for r in self.reasons],
            "notes": [{"key": r.key, "ru": r.ru, "en": r.en} for r in self.notes],
            "tags": {str(k): v for k, v in self.tags.items()},
            "online": dict(self.online) if self.online is not None else None,
        }


@dataclass(slots=True)
class TillVerdict:
    """The verdict on one scan (`check`) or one receipt (`check_receipt`): what the till does next.

    `decision` is `refuse` if any code is refused, else `cannot_check` if any code could not be checked, else
    `sell`. `mode` is `online` when every checked code was decided online, `offline` when any was decided offline,
    None when none was decided. `elapsed` is the wall time of the call (monotonic seconds).
    """

    decision: Decision
    mode: Mode | None
    codes: tuple[CodeVerdict, ...]
    elapsed: float
    deadline: float
    online_error: str | None = None
    offline_error: str | None = None

    @property
    def reasons(self) -> tuple[Reason, ...]:
        seen: dict[str, Reason] = {}
        for c in self.codes:
            for r in c.reasons:
                seen.setdefault(r.key, r)
        return tuple(seen.values())

    @property
    def notes(self) -> tuple[Reason, ...]:
        seen: dict[str, Reason] = {}
        for c in self.codes:
            for r in c.notes:
                seen.setdefault(r.key, r)
        return tuple(seen.values())

    @property
    def tags(self) -> Mapping[int, str]:
        """The tags of a single-code verdict; for a receipt, those all its codes share (use `codes[i].tags`)."""
        if len(self.codes) == 1:
            return self.codes[0].tags
        common = dict(_CONST_TAGS)
        values = {c.tags.get(1265) for c in self.codes}
        if len(values) == 1 and None not in values:
            common[1265] = values.pop()  # type: ignore[assignment]
        return common

    @property
    def tag_1265(self) -> str | None:
        return self.tags.get(1265)

    @property
    def sell(self) -> bool:
        return self.decision is Decision.SELL

    def message(self, lang: str = "ru") -> str:
        """One line for the cashier."""
        if self.decision is Decision.SELL:
            return self.codes[0].message(lang) if len(self.codes) == 1 else (
                "Можно продавать" if lang != "en" else "OK to sell")
        bad = [c for c in self.codes if c.decision is self.decision]
        if len(self.codes) == 1:
            return bad[0].message(lang)
        positions = ", ".join(str(self.codes.index(c) + 1) for c in bad)
        head = f"Позиции {positions}: " if lang != "en" else f"Items {positions}: "
        return head + bad[0].message(lang)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision.value,
            "mode": self.mode.value if self.mode else None,
            "message_ru": self.message("ru"),
            "message_en": self.message("en"),
            "elapsed": round(self.elapsed, 6),
            "deadline": self.deadline,
            "online_error": self.online_error,
            "offline_error": self.offline_error,
            "tags": {str(k): v for k, v in self.tags.items()},
            "codes": [c.to_dict() for c in self.codes],
        }


# --------------------------------------------------------------------------------------------------------------------
# Local Module over HTTP


class LocalModuleError(Exception):
    """The Local Module (official or `lmcz-fast serve`) gave no usable answer.

    `kind`: "not_ready" (HTTP 400, errorCode 4045), "sync_error" (errorCode 4050: no sync within the offline limit,
    `offline_limit` when the module says it), "auth"
    (401/403), "http" (another status), "bad_response", "connect", "dropped".
    """

    def __init__(self, kind: str, message: str, *, error_code: int | None = None, status: int | None = None,
                 offline_limit: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.error_code = error_code
        self.status = status
        self.offline_limit = offline_limit     # seconds, when the module says its limit (lmcz-fast serve does)


class LocalModuleClient:
    """A client of the Local Module's `POST /api/v1/cis/outCheck` (`{"cis_list": [...]}`).

    `url` may carry the Basic-auth credentials (`http://admin:secret@127.0.0.1:5995`); otherwise `user`/`password`
    (the programmer's guide's examples use admin:admin). `client_id` is sent as `X-ClientId` (the fiscal drive
    number), as tills do. The Local Module is on the store's own network: requests go direct unless `proxy` says
    otherwise (a proxy from the environment is meant for the internet, not for 127.0.0.1).
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:5995",
        *,
        user: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        path: str = "/api/v1/cis/outCheck",
        http: HttpClient | None = None,
        proxy: ProxyConfig | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not a Local Module URL: {url!r}")
        netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        self.url = urlunsplit((parts.scheme, netloc, "", "", "")).rstrip("/")
        user = user if user is not None else (parts.username or "admin")
        password = password if password is not None else (parts.password or "admin")
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.client_id = client_id
        self.path = path
        self.http = http or HttpClient(proxy=proxy if proxy is not None else ProxyConfig.direct())

    def __repr__(self) -> str:
        return f"LocalModuleClient({self.url!r})"

    async def check_codes(self, codes: Sequence[str]) -> dict[str, Any]:
        headers = {"Authorization": self._auth, "Content-Type": "application/json", "Accept": "application/json"}
        if self.client_id:
            headers["X-ClientId"] = self.client_id
        body = json.dumps({"cis_list": list(codes)}, separators=(",", ":")).encode()
        try:
            response = await self.http.request("POST", self.url + self.path, headers=headers, body=body)
        except (ConnectionError, OSError) as exc:
            raise LocalModuleError("connect", f"{self.url}: {exc!r}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status in (401, 403):
            raise LocalModuleError("auth", f"{self.url} refused the credentials (HTTP {response.status})",
                                   status=response.status)
        if response.status != 200:
            error_code = payload.get("errorCode") if isinstance(payload, Mapping) else None
            kind = {4045: "not_ready", 4050: "sync_error"}.get(error_code, "http")  # type: ignore[arg-type]
            limit = payload.get("offlineLimit") if isinstance(payload, Mapping) else None
            raise LocalModuleError(kind, f"{self.url} answered HTTP {response.status}: {response.body[:160]!r}",
                                   error_code=error_code, status=response.status,
                                   offline_limit=float(limit) if isinstance(limit, (int, float)) and limit > 0
                                   else None)
        if not isinstance(payload, Mapping) or not isinstance(payload.get("codes"), list):
            raise LocalModuleError("bad_response", f"{self.url} answered something that is not an outCheck "
                                   f"response: {response.body[:160]!r}")
        if payload.get("code", 0) not in (0, None):
            raise LocalModuleError("http", f"{self.url} answered code {payload.get('code')}: "
                                   f"{payload.get('description')}")
        return dict(payload)

    async def aclose(self) -> None:
        await self.http.aclose()


class _BlocklistLike(Protocol):
    def check(self, raw: str | bytes) -> Any: ...


# --------------------------------------------------------------------------------------------------------------------
# The checker


@dataclass(slots=True)
class _Item:
    raw: str
    code: str | None = None
    alts: tuple[str, ...] = ()      # the scan's other readings (`readings_of`), asked of a Local Module too
    cis: str | None = None
    gtin: str | None = None
    unreadable: str | None = None
    offline: Any = None
    offline_reasons: tuple[Reason, ...] | None = None


@dataclass(slots=True)
class _Offline:
    """What the offline side said for a whole receipt."""

    req_id: str
    req_timestamp: int
    inst: str
    version: str
    notes: tuple[Reason, ...] = ()
    failure: Reason | None = None
    error: str | None = None
    _tag: str | None = None

    def tag_1265(self) -> str:
        if self._tag is None:
            self._tag = tag_1265(self.req_id, self.req_timestamp, self.inst, self.version)
        return self._tag


def _parse_expiry(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value) / (1000.0 if value > 1e11 else 1.0)
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            moment = _dt.datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_dt.timezone(_dt.timedelta(hours=3)))
        return moment.timestamp()
    return None


def online_reasons(entry: Any, now: float) -> tuple[Reason, ...] | None:
    """The refusal reasons of one True API `codes[]` entry, in the recommendations' order; None if malformed."""
    if not isinstance(entry, Mapping) or ("valid" not in entry and "found" not in entry):
        return None
    reasons = [REASONS[key] for name, bad, key in _ONLINE_ORDER if entry.get(name) is bad]
    expiry = _parse_expiry(entry.get("expireDate"))
    if expiry is not None and expiry < now:
        reasons.append(REASONS["expired"])
    return tuple(reasons)


def offline_reasons(entry: Mapping[str, Any]) -> tuple[Reason, ...]:
    """Offline answers decide on `isBlocked` and `sold` only (the Local Module's other fields carry no meaning)."""
    reasons = []
    if entry.get("sold") is True:
        reasons.append(REASONS["sold"])
    if entry.get("isBlocked") is True:
        reasons.append(REASONS["blocked"])
    return tuple(reasons)


def _decided(reasons: tuple[Reason, ...]) -> Decision:
    return Decision.REFUSE if reasons else Decision.SELL


class Checker:
    """Online first, offline within the deadline, one call for the till daemon.

    `online`: a `TrueApiClient` or None (offline only). `offline`: a `Blocklist` (checked in-process), a Local Module
    URL (`"http://admin:admin@127.0.0.1:5995"`), a `LocalModuleClient`, or None. `deadline`: seconds, hard, over the
    whole online attempt. `late_grace`: how long after the deadline a slow online request may still run so its
    answer can be logged; at most `max_late` such requests live at once (beyond that, they are cancelled at the
    deadline). Use as a context manager (`with` for the sync API, `async with` for the asyncio one).
    """

    def __init__(
        self,
        online: TrueApiClient | None = None,
        offline: _BlocklistLike | LocalModuleClient | str | None = None,
        deadline: float = 1.5,
        *,
        fiscal_drive_number: str | None = None,
        late_grace: float = 5.0,
        max_late: int = 16,
        status_every: float = 1.0,
    ) -> None:
        if deadline <= 0:
            raise ValueError("the deadline must be positive")
        if online is None and offline is None:
            raise ValueError("a Checker needs an online client, an offline check, or both")
        self.online = online
        if isinstance(offline, str):
            offline = LocalModuleClient(offline, client_id=fiscal_drive_number)
        elif offline is not None and not isinstance(offline, LocalModuleClient) \
                and not callable(getattr(offline, "check", None)):
            raise TypeError(f"offline must be a Blocklist, a Local Module URL or a LocalModuleClient, "
                            f"not {type(offline).__name__}")
        self._lm = offline if isinstance(offline, LocalModuleClient) else None
        self._blocklist = None if isinstance(offline, LocalModuleClient) else offline
        self.offline = offline
        self.deadline = deadline
        self.fiscal_drive_number = fiscal_drive_number
        self.late_grace = late_grace
        self.max_late = max_late
        self.status_every = status_every
        self._status: tuple[float, _Offline | None] | None = None
        self._late = 0
        self._late_lock = threading.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    # ----- lifecycle

    def __enter__(self) -> Checker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Checker:
        self.warm_up_async()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _background_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is not None:
            return self._loop
        with self._start_lock:
            if self._closed:
                raise RuntimeError("the Checker is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=run, name="lmcz-fast-checker", daemon=True)
                thread.start()
                ready.wait()
                self._thread = thread
                self._loop = loop
        return self._loop

    def warm_up(self) -> None:
        """Start the background loop and discover online hosts now, so the first check does not pay for it."""
        if self.online is not None:
            loop = self._background_loop()
            loop.call_soon_threadsafe(self.warm_up_async)

    def warm_up_async(self) -> None:
        """Schedule host discovery in the running loop (returns at once)."""
        if self.online is not None:
            self._spawn(self._quiet_discovery())

    async def _quiet_discovery(self) -> None:
        assert self.online is not None
        try:
            await self.online.ensure_hosts()
        except (TrueApiError, OSError, ConnectionError) as exc:
            log.warning("True API host discovery failed: %r", exc)

    def close(self) -> None:
        """Stop the background loop (cancelling late online requests) and close its connections."""
        with self._start_lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    async def _shutdown(self) -> None:
        """On the Checker's own loop every task is the Checker's: cancel them all (late online requests too)."""
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.aclose()
        await asyncio.get_running_loop().shutdown_default_executor()

    async def aclose(self) -> None:
        """Cancel this loop's late online requests and close this loop's connections."""
        loop = asyncio.get_running_loop()
        mine = [t for t in self._tasks if t.get_loop() is loop]
        for task in mine:
            task.cancel()
        if mine:
            await asyncio.gather(*mine, return_exceptions=True)
        if self.online is not None:
            await self.online.aclose()
        if self._lm is not None:
            await self._lm.aclose()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ----- public checks

    def check(self, raw: str | bytes) -> TillVerdict:
        """Check one scan (sync). Returns within `deadline` plus a few milliseconds, whatever the network does."""
        if self.online is None and self._blocklist is not None:
            return self._check_in_process(raw)
        return self.check_receipt((raw,))

    def _check_in_process(self, raw: str | bytes) -> TillVerdict:
        """`check_receipt((raw,))` for the offline-only in-process case, without its general machinery: this is
        the path a till without internet takes for every scan, so it is kept to the lookup plus one verdict."""
        started = time.monotonic()
        status = self._offline_status()
        if status is not None and status.failure is not None:
            return self.check_receipt((raw,))
        try:
            verdict = self._blocklist.check(raw)  # type: ignore[union-attr]
        except (CodeError, NoListError):
            return self.check_receipt((raw,))
        tags = {1262: TAG_1262, 1263: TAG_1263, 1264: TAG_1264,
                1265: tag_1265(request_id(), int(time.time() * 1000), instance_uuid(verdict.instance_id),
                               version_uuid(verdict.instance_id, verdict.db_version))}
        if verdict.blocked:
            decision, reasons = Decision.REFUSE, _BLOCKED
        else:
            decision, reasons = Decision.SELL, ()
        text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, (bytes, bytearray)) else raw
        code = CodeVerdict(text, None, verdict.cis, verdict.gtin, decision, Mode.OFFLINE, reasons,
                           status.notes if status is not None else (), tags, None, verdict)
        return TillVerdict(decision, Mode.OFFLINE, (code,), time.monotonic() - started, self.deadline,
                           "no online check configured", None)

    async def check_async(self, raw: str | bytes) -> TillVerdict:
        """Check one scan in the running event loop."""
        return await self.check_receipt_async((raw,))

    def check_receipt(self, raws: Sequence[str | bytes]) -> TillVerdict:
        """Check every marking code of one receipt in one online request (sync).

        Raises `ReceiptTooLarge` for more than 128 codes (the fiscal drive's limit) and `ValueError` for none.
        """
        started = time.monotonic()
        until = started + self.deadline
        items = self._prepare(raws)
        sendable = [i.code for i in items if i.code is not None]
        online_fut: concurrent.futures.Future[Any] | None = None
        lm_fut: concurrent.futures.Future[Any] | None = None
        if sendable and (self.online is not None or self._lm is not None):
            loop = self._background_loop()
            if self.online is not None:
                online_fut = asyncio.run_coroutine_threadsafe(self._online(sendable, until), loop)
            if self._lm is not None:
                lm_fut = asyncio.run_coroutine_threadsafe(self._local_module(items), loop)
        offline = self._in_process(items) if self._blocklist is not None else None
        online: Any = None
        if online_fut is not None:
            done, _ = concurrent.futures.wait((online_fut,), timeout=max(0.0, until - time.monotonic()))
            if done:
                online = _outcome(online_fut)
            else:
                online = TimeoutError(f"no online answer within {self.deadline} s")
                self._leave_late(online_fut, started, items)
            if lm_fut is not None and self._all_online(items, online):
                lm_fut.cancel()
                lm_fut = None
        if lm_fut is not None:
            done, _ = concurrent.futures.wait((lm_fut,), timeout=max(0.0, until - time.monotonic()))
            if done:
                offline = self._from_local_module(items, _outcome(lm_fut))
            else:
                lm_fut.cancel()
                offline = self._offline_failure(REASONS["offline_failed"], f"no Local Module answer within "
                                                f"{self.deadline} s")
        return self._verdict(items, online, offline, started)

    async def check_receipt_async(self, raws: Sequence[str | bytes]) -> TillVerdict:
        """Check every marking code of one receipt in one online request, in the running event loop."""
        started = time.monotonic()
        until = started + self.deadline
        items = self._prepare(raws)
        sendable = [i.code for i in items if i.code is not None]
        online_task = self._spawn(self._online(sendable, until)) if sendable and self.online is not None else None
        lm_task = self._spawn(self._local_module(items)) if sendable and self._lm is not None else None
        offline = self._in_process(items) if self._blocklist is not None else None
        online: Any = None
        if online_task is not None:
            done, _ = await asyncio.wait((online_task,), timeout=max(0.0, until - time.monotonic()))
            if done:
                online = _outcome(online_task)
            else:
                online = TimeoutError(f"no online answer within {self.deadline} s")
                self._leave_late(online_task, started, items)
            if lm_task is not None and self._all_online(items, online):
                lm_task.cancel()
                lm_task = None
        if lm_task is not None:
            done, _ = await asyncio.wait((lm_task,), timeout=max(0.0, until - time.monotonic()))
            if done:
                offline = self._from_local_module(items, _outcome(lm_task))
            else:
                lm_task.cancel()
                offline = self._offline_failure(REASONS["offline_failed"], f"no Local Module answer within "
                                                f"{self.deadline} s")
        return self._verdict(items, online, offline, started)

    # ----- pieces

    def _prepare(self, raws: Sequence[str | bytes]) -> list[_Item]:
        if isinstance(raws, (str, bytes)):
            raise TypeError("check_receipt takes a sequence of scans; use check() for one")
        if len(raws) > MAX_RECEIPT_CODES:
            raise ReceiptTooLarge(len(raws))
        if not raws:
            raise ValueError("a receipt needs at least one marking code")
        items = []
        need_parse = self.online is not None or self._lm is not None
        for raw in raws:
            text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, (bytes, bytearray)) else raw
            item = _Item(raw=text)
            if need_parse:
                try:
                    readings = readings_of(raw)
                except CodeError as exc:
                    item.unreadable = str(exc)
                else:
                    parsed = readings[0]
                    item.cis, item.gtin = parsed.cis, parsed.gtin
                    item.code = parsed.element_string
                    # Online, the most likely reading only: a wrong reading is no code the national system knows
                    # (refused as not found). A Local Module knows only what is blocked, so it is asked every reading.
                    if self._lm is not None and len(readings) > 1:
                        item.alts = tuple(r.element_string for r in readings[1:])
            items.append(item)
        return items

    def _offline_status(self) -> _Offline | None:
        """The Blocklist's freshness, re-read at most every `status_every` seconds (a meta read is not free)."""
        now = time.monotonic()
        if self._status is not None and now - self._status[0] < self.status_every:
            return self._status[1]
        status_of = getattr(self._blocklist, "status", None)
        note: _Offline | None = None
        if status_of is not None:
            status = status_of()
            state = status.state
            if state == "expired":
                limit = getattr(status, "expire_after", DEFAULT_EXPIRE_AFTER)
                note = self._offline_failure(offline_expired_reason(limit),
                                             f"offline database expired (offline limit {limit:g} s)")
            elif state == "empty":
                note = self._offline_failure(REASONS["offline_empty"], "offline database never loaded")
            elif state == "stale":
                note = _Offline("", 0, "", "", notes=(REASONS["offline_stale"],))
        self._status = (now, note)
        return note

    def _offline_failure(self, reason: Reason, error: str) -> _Offline:
        return _Offline("", 0, "", "", failure=reason, error=error)

    def _in_process(self, items: list[_Item]) -> _Offline:
        assert self._blocklist is not None
        status = self._offline_status()
        if status is not None and status.failure is not None:
            return status
        bl = self._blocklist
        inst = version = ""
        # One receipt, one version: every code from one snapshot (a duck-typed offline without `snapshot` can
        # promise no such thing and is asked code by code).
        take = getattr(bl, "snapshot", None)
        with take() if take is not None else contextlib.nullcontext(bl) as view:
            for item in items:
                if item.unreadable is not None:
                    continue
                try:
                    verdict = view.check(item.raw)
                except CodeError as exc:
                    item.unreadable = str(exc)
                    continue
                except NoListError:
                    return self._offline_failure(REASONS["offline_empty"], "offline database never loaded")
                item.offline = verdict
                item.offline_reasons = _BLOCKED if verdict.blocked else ()
                if item.cis is None:
                    item.cis, item.gtin = verdict.cis, verdict.gtin
                inst = instance_uuid(verdict.instance_id)
                version = version_uuid(verdict.instance_id, verdict.db_version)
        return _Offline(
            req_id=request_id(),
            req_timestamp=int(time.time() * 1000),
            inst=inst,
            version=version,
            notes=status.notes if status is not None else (),
        )

    async def _online(self, codes: list[str], until: float) -> list[tuple[int, CheckResponse | BaseException]]:
        """All chunks of the receipt, each its own codes/check request, concurrently; runs at most to
        deadline + late_grace, then gives up (the caller stopped waiting at the deadline)."""
        assert self.online is not None
        client = self.online
        limit = max(0.001, until + self.late_grace - time.monotonic())
        chunks = list(split(codes, client.max_codes_per_request))

        async def one(chunk: Sequence[str]) -> CheckResponse:
            return await client.check_codes(
                chunk, fiscal_drive_number=self.fiscal_drive_number, try_until=until, slow_after=self.deadline)

        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(one(c)) for c in chunks]
        for task in tasks:
            task.add_done_callback(_retrieve)
        try:
            _done, pending = await asyncio.wait(tasks, timeout=limit)
        finally:
            for task in tasks:
                task.cancel()
        if pending:
            raise TrueApiError("timeout", f"no online answer within {self.deadline} + {self.late_grace} s")
        return [(len(chunk), _outcome(task)) for chunk, task in zip(chunks, tasks)]

    async def _local_module(self, items: list[_Item]) -> dict[str, Any]:
        """Ask the Local Module about every reading of every readable scan, in order (see `_from_local_module`)."""
        assert self._lm is not None
        return await self._lm.check_codes([c for i in items if i.code is not None for c in (i.code, *i.alts)])

    def _from_local_module(self, items: list[_Item], outcome: Any) -> _Offline:
        if isinstance(outcome, LocalModuleError):
            if outcome.kind == "sync_error":
                return self._offline_failure(offline_sync_error_reason(outcome.offline_limit),
                                             f"{outcome.kind}: {outcome}")
            reason = {"not_ready": "offline_not_ready", "auth": "offline_auth"}.get(outcome.kind, "offline_failed")
            return self._offline_failure(REASONS[reason], f"{outcome.kind}: {outcome}")
        if isinstance(outcome, BaseException):
            return self._offline_failure(REASONS["offline_failed"], repr(outcome))
        entries = outcome.get("codes") or []
        sent = [i for i in items if i.code is not None]
        if len(entries) == sum(1 + len(i.alts) for i in sent):
            at = 0
            for item in sent:
                mine = entries[at:at + 1 + len(item.alts)]
                at += len(mine)
                if all(isinstance(e, Mapping) for e in mine):
                    # One entry per reading: refused if any reading is (a blocked code is blocked under either).
                    said = [offline_reasons(e) for e in mine]
                    item.offline = next((e for e, r in zip(mine, said) if r), mine[0])
                    item.offline_reasons = tuple(dict.fromkeys(r for rs in said for r in rs))
        return _Offline(
            req_id=str(outcome.get("reqId") or ""),
            req_timestamp=int(outcome.get("reqTimestamp") or 0),
            inst=str(outcome.get("inst") or ""),
            version=str(outcome.get("version") or ""),
        )

    def _all_online(self, items: list[_Item], online: Any) -> bool:
        """Whether the online answer decides every code sent (then the Local Module's answer is not needed)."""
        if not isinstance(online, list):
            return False
        now = time.time()
        return all(r is not None and online_reasons(e, now) is not None for e, r in _online_entries(online))

    def _leave_late(self, fut: Any, started: float, items: list[_Item]) -> None:
        """The deadline passed: stop waiting, but let the request run on (up to `late_grace`) to log its answer."""
        with self._late_lock:
            if self._late >= self.max_late:
                fut.cancel()
                return
            self._late += 1

        def done(f: Any) -> None:
            with self._late_lock:
                self._late -= 1
            if f.cancelled():
                return
            outcome = _outcome(f)
            after = time.monotonic() - started
            if isinstance(outcome, list):
                now = time.time()
                said = [
                    (_decided(r).value if (r := online_reasons(e, now)) is not None else "malformed")
                    for e, _resp in _online_entries(outcome)
                ]
                sent = [i for i in items if i.code is not None]
                used = [_decided(i.offline_reasons).value if i.offline_reasons is not None else "unchecked"
                        for i in sent]
                log.warning("late online answer after %.3f s (deadline %.3f s), not used: online said %s, "
                            "offline said %s, for %s", after, self.deadline, said, used, [i.cis for i in sent])
            else:
                log.warning("online attempt ended after %.3f s (deadline %.3f s) without an answer: %s",
                            after, self.deadline, outcome)

        fut.add_done_callback(done)

    def _verdict(self, items: list[_Item], online: Any, offline: _Offline | None, started: float) -> TillVerdict:
        now = time.time()
        online_error: str | None = None
        entries: list[tuple[Any, CheckResponse | None]] = []
        if isinstance(online, list):
            entries = _online_entries(online)
            errors = [str(r) for _n, r in online if isinstance(r, BaseException)]
            online_error = "; ".join(errors) or None
        elif isinstance(online, BaseException):
            online_error = str(online) if isinstance(online, (TrueApiError, TimeoutError)) else repr(online)
        elif self.online is None:
            online_error = "no online check configured"
        sendable = [i for i in items if i.code is not None]
        online_of = {id(item): entry for item, entry in zip(sendable, entries)} if entries else {}
        out = [self._code_verdict(item, online_of.get(id(item)), offline, now) for item in items]
        if len(out) == 1:
            decision, mode = out[0].decision, out[0].mode
        else:
            decisions = {c.decision for c in out}
            decision = (Decision.REFUSE if Decision.REFUSE in decisions else
                        Decision.CANNOT_CHECK if Decision.CANNOT_CHECK in decisions else Decision.SELL)
            modes = {c.mode for c in out if c.mode is not None}
            mode = Mode.OFFLINE if Mode.OFFLINE in modes else (Mode.ONLINE if modes else None)
        return TillVerdict(
            decision=decision,
            mode=mode,
            codes=tuple(out),
            elapsed=time.monotonic() - started,
            deadline=self.deadline,
            online_error=online_error,
            offline_error=offline.error if offline is not None else (
                None if self.offline is not None else "no offline check configured"),
        )

    def _code_verdict(
        self, item: _Item, online: tuple[Any, CheckResponse | None] | None, offline: _Offline | None, now: float
    ) -> CodeVerdict:
        if item.unreadable is not None:
            return CodeVerdict(item.raw, item.code, item.cis, item.gtin, Decision.CANNOT_CHECK, None,
                               (REASONS["unreadable"],), (), dict(_CONST_TAGS))
        if online is not None:
            entry, response = online
            reasons = online_reasons(entry, now)
            if reasons is not None and response is not None:
                tags = {1262: TAG_1262, 1263: TAG_1263, 1264: TAG_1264,
                        1265: f"UUID={response.req_id}&Time={response.req_timestamp}"}
                return CodeVerdict(item.raw, item.code, item.cis, item.gtin, _decided(reasons), Mode.ONLINE,
                                   reasons, (), tags, entry, item.offline)
        if offline is not None and offline.failure is None and item.offline_reasons is not None:
            tags = {1262: TAG_1262, 1263: TAG_1263, 1264: TAG_1264, 1265: offline.tag_1265()}
            notes = (REASONS["checked_offline"], *offline.notes) if self.online is not None else offline.notes
            return CodeVerdict(item.raw, item.code, item.cis, item.gtin, _decided(item.offline_reasons),
                               Mode.OFFLINE, item.offline_reasons, notes, tags, None, item.offline)
        if offline is not None and offline.failure is not None:
            reason = offline.failure
        elif offline is not None:
            reason = REASONS["offline_failed"]
        else:
            reason = REASONS["no_answer"]
        return CodeVerdict(item.raw, item.code, item.cis, item.gtin, Decision.CANNOT_CHECK, None, (reason,), (),
                           dict(_CONST_TAGS))


def _online_entries(results: list[tuple[int, Any]]) -> list[tuple[Any, CheckResponse | None]]:
    """Flatten the chunked answers to one (entry, response) per code sent, in order. A failed chunk, or one whose
    answer does not hold exactly one entry per code sent, yields (None, None) for each of its codes."""
    out: list[tuple[Any, CheckResponse | None]] = []
    for count, result in results:
        if isinstance(result, CheckResponse) and len(result.codes) == count:
            out.extend((entry, result) for entry in result.codes)
        else:
            out.extend((None, None) for _ in range(count))
    return out


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a finished task's exception as seen: the outcome is read through `_outcome`, or deliberately not."""
    if not task.cancelled():
        task.exception()


def _outcome(fut: Any) -> Any:
    """A finished future's result, or its exception as a value."""
    if fut.cancelled():
        return asyncio.CancelledError()
    exc = fut.exception()
    return exc if exc is not None else fut.result()
