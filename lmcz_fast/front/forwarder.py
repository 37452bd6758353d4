"""The front of the official module: forward a till's request within a deadline, judge what came back.

`Front.forward` sends one request on the pool and returns an `Outcome`: the module's answer when it answered in
time with something a till can use, else the reason it did not (`timeout`, `refused`, `reset`, `http_500`,
`malformed`, `official_4050`, ...). What the till then gets (the module's answer unchanged, or ours from the
local store) is the service's decision (service/fronting.py): this layer knows the module, not the store's answers.

Every check the module answered in time teaches the front its current `inst` and `version` (kept on disk through
`FrontState`, for answers given while it is down) and is handed to the observers (`on_official_answer`: the
cross-check hooks in here). Counters by reason and the last failure are in `stats()` for the status page,
/api/v1/status and /metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from .config import FrontConfig
from .pool import Answer, Pool, PoolError
from .state import FrontState

log = logging.getLogger("lmcz_fast.front")

#: The official module's refusals of a module that is not ready (docs/protocol.md): 4045 and 4050.
NOT_READY_CODES = (4045, 4050)
#: `on_official_answer(protocol, codes, official, local_version)`: protocol 1 or 2, the per-code objects of the
#: module's answer, the whole decoded answer, the version of our store the request saw (or None).
Observer = Callable[[int, list[dict[str, Any]], dict[str, Any], "int | None"], None]
_LOG_EVERY = 60.0


class Forwarded(NamedTuple):
    """A till's check as the module is asked it: `Pool.request_bytes` takes these fields in this order."""
    method: bytes
    path: bytes
    query: bytes | None
    body: bytes
    content_type: bytes | None
    client_id: bytes | None


@dataclass(slots=True)
class Outcome:
    """What forwarding one request gave: `answer` is the module's (None when it gave none), `reason` "ok" when a
    till may have it as it is, else why not; `payload` the decoded JSON of a check answered "ok"."""

    answer: Answer | None
    reason: str
    payload: Any = None
    elapsed: float = 0.0
    #: The per-code objects of an "ok" answer (`payload`'s, as judged), for the observers.
    codes: list[dict[str, Any]] | None = None

    @property
    def ok(self) -> bool:
        return self.reason == "ok"


def _codes_of(protocol: int, payload: Any) -> list[dict[str, Any]] | None:
    """The per-code objects of a check answer, or None when its shape is not the documented one."""
    if not isinstance(payload, dict):
        return None
    if protocol == 1:
        codes = payload.get("codes")
        if isinstance(codes, list) and codes and all(isinstance(c, dict) and isinstance(c.get("isBlocked"), bool)
                                                     for c in codes):
            return codes
        return None
    results = payload.get("results")
    if not isinstance(results, list) or not results:
        return None
    out: list[dict[str, Any]] = []
    for entry in results:
        if not isinstance(entry, dict):
            return None
        codes = entry.get("codes")
        if not isinstance(codes, list):
            return None
        if entry.get("code", 0) != 0 and not codes:
            continue                        # a code it could not read: its own refusal, nothing to learn
        for code in codes:
            if not isinstance(code, dict) or not isinstance(code.get("isBlocked"), bool):
                return None
            out.append(code)
    return out


def _envelope(protocol: int, payload: dict[str, Any]) -> dict[str, Any] | None:
    if protocol == 1:
        return payload
    results = payload.get("results")
    first = results[0] if isinstance(results, list) and results else None
    return first if isinstance(first, dict) else None


_scan_json = json.JSONDecoder().scan_once
_JSON_SPACE = " \t\n\r"


def decode_json(body: bytes) -> Any:
    """`json.loads(body)`, exactly (the same values, the same bodies refused with a `ValueError`), without its
    wrappers for the common case, a UTF-8 object: the C scanner called directly, the surrounding whitespace checked
    here. 7.5 instead of 11.6 us for a one-code answer of the module (~700 bytes): the largest single piece of the
    front's own work per forwarded check (issue 21). Anything else (another first byte, a BOM, UTF-16/32) goes to
    `json.loads` itself."""
    if body[:1] != b"{" or body[1:2] == b"\x00":
        return json.loads(body)
    text = body.decode("utf-8", "surrogatepass")        # as json.loads decodes bytes (a lone surrogate passes)
    try:
        value, end = _scan_json(text, 0)
    except StopIteration as exc:           # the scanner's "no value here" (json.loads says "Expecting value")
        raise json.JSONDecodeError("Expecting value", text, exc.value) from None
    if end != len(text) and text[end:].strip(_JSON_SPACE):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


async def within(seconds: float, work: Awaitable[Answer]) -> Answer:
    """`await work`, or `TimeoutError` once `seconds` have passed (cancelling it: a connection cut off mid-answer
    is closed by the pool). `asyncio.timeout` without Python 3.11: one timer on the loop, no extra task."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    fired = False

    def expire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    timer = loop.call_later(seconds, expire)
    try:
        return await work
    except asyncio.CancelledError:
        if not fired:
            raise
        uncancel = getattr(task, "uncancel", None)
        if uncancel is not None:
            uncancel()
        raise TimeoutError(f"no answer within {seconds:g} s") from None
    finally:
        timer.cancel()


def refusal_code(answer: Answer) -> int | None:
    """4045 or 4050 when `answer` is the module's not-ready refusal (HTTP 400 with that `errorCode`), else None."""
    if answer.status != 400:
        return None
    try:
        payload = json.loads(answer.body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    for key in ("errorCode", "code"):
        value = payload.get(key)
        if isinstance(value, int) and value in NOT_READY_CODES:
            return value
    return None


class Front:
    """The forwarder: a pool of kept-alive connections to the official module, a deadline per request, what the
    module last said of itself, and counters. Lives on the service's event loop (`start()` in it)."""

    def __init__(self, config: FrontConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.state = FrontState(config.state_dir)
        self.pool: Pool | None = None
        self.observers: list[Observer] = []
        #: Answers by who gave them and why: "front" (the module's answer as it came), "local:<reason>".
        self.answered: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.last_failure: tuple[float, str, str] | None = None     # (when, reason, detail)
        self.last_official_at: float | None = None
        self.last_refusal: tuple[float, int] | None = None         # (when, 4045|4050) the module refused checks
        self.overridden = 0                                         # its refusals answered from our fresh store
        self._logged: dict[str, float] = {}

    # -- life -------------------------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self.pool is None:
            self.pool = Pool(self.config.target, self.config.credentials, self.config.pool_size, loop)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

    # -- what it knows of the module ------------------------------------------------------------------------------

    @property
    def inst(self) -> str | None:
        """The official module's last-known `inst` (from its last check answer, or its status), or None."""
        value = self.state.last_known.get("inst")
        return value if isinstance(value, str) and value else None

    @property
    def version(self) -> str | None:
        value = self.state.last_known.get("version")
        return value if isinstance(value, str) and value else None

    def learn(self, envelope: dict[str, Any] | None) -> None:
        """Take `inst` and `version` from a check answer (or `inst` from its status) the module gave."""
        if not envelope:
            return
        inst = envelope.get("inst")
        if isinstance(inst, str) and inst:
            version = envelope.get("version")
            self.state.remember(inst, version if isinstance(version, str) else (self.version or ""), self.clock())

    def token(self) -> str | None:
        """The participant token the last `init` through the front carried (for a re-init), or None."""
        return self.state.token()

    # -- forwarding -----------------------------------------------------------------------------------------------

    async def forward(self, method: bytes, path: bytes, query: bytes | None, body: bytes,
                      content_type: bytes | None, client_id: bytes | None, *, deadline: float | None = None,
                      since: float | None = None) -> Answer:
        """One request to the module, its whole answer within `deadline` s (default: the configured one) of
        `since` (a `time.perf_counter()`: when the till's request arrived; default now). Raises `PoolError` (no
        whole answer) or `TimeoutError`."""
        if self.pool is None:
            self.start()
        assert self.pool is not None
        data = self.pool.request_bytes(method, path, query, body, content_type, client_id)
        left = self.config.deadline if deadline is None else deadline
        if since is not None:
            left -= max(0.0, time.perf_counter() - since)
        return await within(max(left, 0.0), self.pool.request(data))

    async def check(self, protocol: int, method: bytes, path: bytes, query: bytes | None, body: bytes,
                    content_type: bytes | None, client_id: bytes | None, since: float | None = None) -> Outcome:
        """Forward one check (the deadline counted from `since`, when the till's request arrived) and judge the
        answer (`judge`). The service uses `check_soon`, the same without a task."""
        waiter: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

        def done(outcome: Outcome) -> None:
            if not waiter.done():
                waiter.set_result(outcome)

        self.check_soon(protocol, Forwarded(method, path, query, body, content_type, client_id), since, done)
        return await waiter

    def check_soon(self, protocol: int, request: Forwarded, since: float | None,
                   done: Callable[[Outcome], None]) -> None:
        """Forward one check (`request`: the till's method, path, query, body, content type and X-ClientId) on the
        pool (`Pool.call`: no task, no future) and call `done(outcome)` on the loop once it is judged (`judge`),
        within the deadline counted from `since` (a `time.perf_counter()`: when the till's request arrived;
        default now)."""
        if self.pool is None:
            self.start()
        pool = self.pool
        assert pool is not None
        started = time.perf_counter()
        left = self.config.deadline
        if since is not None:
            left -= max(0.0, started - since)

        def answered(answer: Answer | None, error: Exception | None) -> None:
            done(self.judge(protocol, answer, error, started))

        pool.call(pool.request_bytes(*request), max(left, 0.0), answered)

    def judge(self, protocol: int, answer: Answer | None, error: Exception | None, started: float) -> Outcome:
        """What a forwarded check gave (`Outcome.reason`): "ok" for a 200 whose body is a check answer of the
        documented shape; `official_4045`/`official_4050` for the module's not-ready refusal (the answer is
        kept: the service passes it through when our store cannot answer either); otherwise why not."""
        if answer is None:
            if isinstance(error, PoolError):
                return self._failed(error.reason, str(error), started)
            return self._failed("timeout", f"no answer within {self.config.deadline * 1000:g} ms", started)
        elapsed = time.perf_counter() - started
        if answer.status != 200:
            number = refusal_code(answer)
            if number is not None:
                self.last_refusal = (self.clock(), number)
                return Outcome(answer, f"official_{number}", None, elapsed)
            return self._failed(f"http_{answer.status}", f"HTTP {answer.status}", started, answer)
        try:
            payload = decode_json(answer.body)
        except ValueError:
            return self._failed("malformed", "the answer is not JSON", started, answer)
        codes = _codes_of(protocol, payload)
        if codes is None:
            return self._failed("malformed", "the answer is not a check answer of the documented shape", started,
                                answer)
        self.last_official_at = self.clock()
        self.learn(_envelope(protocol, payload))
        return Outcome(answer, "ok", payload, elapsed, codes)

    def observe(self, protocol: int, payload: dict[str, Any], local_version: int | None,
                codes: list[dict[str, Any]] | None = None) -> None:
        """Hand a check the module answered to the observers (after the till has its answer); `codes`: its
        per-code objects when already known (`Outcome.codes`)."""
        if not self.observers:
            return
        if codes is None:
            codes = _codes_of(protocol, payload) or []
        for observer in self.observers:
            try:
                observer(protocol, codes, payload, local_version)
            except Exception:
                log.exception("a front observer failed")

    def count(self, who: str) -> None:
        self.answered[who] = self.answered.get(who, 0) + 1

    def _failed(self, reason: str, detail: str, started: float, answer: Answer | None = None) -> Outcome:
        now = self.clock()
        self.failures[reason] = self.failures.get(reason, 0) + 1
        self.last_failure = (now, reason, detail)
        if now - self._logged.get(reason, 0.0) >= _LOG_EVERY:
            self._logged[reason] = now
            log.warning("the official module at %s did not answer a check usably (%s: %s): answering from the "
                        "local store (said once a minute per reason)", self.config.target.url, reason, detail)
        return Outcome(answer, reason, None, time.perf_counter() - started)

    def stats(self) -> dict[str, Any]:
        """The front's figures for the status page, /api/v1/status and /metrics (no secret in them)."""
        failure = self.last_failure
        refusal = self.last_refusal
        return {
            "url": self.config.target.url,
            "deadlineMs": round(self.config.deadline * 1000, 3),
            "inst": self.inst or "",
            "version": self.version or "",
            "answered": dict(self.answered),
            "failures": dict(self.failures),
            "lastOfficialAt": 0 if self.last_official_at is None else int(self.last_official_at * 1000),
            "lastFailure": None if failure is None else {"at": int(failure[0] * 1000), "reason": failure[1],
                                                         "detail": failure[2]},
            "lastRefusal": None if refusal is None else {"at": int(refusal[0] * 1000), "errorCode": refusal[1]},
            "refusalsOverridden": self.overridden,
            "poolOpen": 0 if self.pool is None else self.pool.open,
            "tokenKept": self.token() is not None,
        }
