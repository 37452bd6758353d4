"""`Checker`: online first, offline within the deadline, one call for the till daemon (sync and asyncio APIs,
the background loop, the receipt's verdict)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from .._codes import CodeError, readings_of
from ..store import product_group_of
from ..trueapi import CheckResponse, TrueApiClient, TrueApiError
from .local_module import LocalModuleClient
from .offline import _BlocklistLike, _Offline, _OfflineSide
from .online import _online_entries, _OnlineSide, _outcome
from .reasons import REASONS
from .rules import PriceError, _check_pg, _check_price, _decided, online_reasons
from .verdicts import (
    _CONST_TAGS,
    MAX_RECEIPT_CODES,
    TAG_1262,
    TAG_1263,
    TAG_1264,
    CodeVerdict,
    Decision,
    Mode,
    ReceiptTooLarge,
    TillVerdict,
    _Item,
)

_PRICE_END = 1 << 63
log = logging.getLogger("lmcz_fast.checker")  # the checker's one logger, whichever file logs


class Checker(_OnlineSide, _OfflineSide):
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
        self._version_tail: tuple[tuple[Any, Any], str] | None = None
        self._late = 0
        self._late_lock = threading.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        # The offline-only in-process scan, whole in compiled code (offline.py, `_till_scan`): the path a till
        # without internet takes for every scan.
        self._scan = self._till_scan() if online is None and self._blocklist is not None else None

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

    def check(self, raw: str | bytes, *, price: int | None = None, pg: int | None = None) -> TillVerdict:
        """Check one scan (sync). Returns within `deadline` plus a few milliseconds, whatever the network does.

        `price`: the sale price (kopecks) the till means to charge; it is checked against the code's maximum
        retail price and the minimum price that applies (see `price_reasons`). `pg`: the product group, when the
        till knows it (a tobacco pack is group 3 by itself). A bad price or pg raises `PriceError` first.
        """
        # A plain int in range passes as it is (what _check_price/_check_pg would answer); the rest is theirs.
        if price is not None and (type(price) is not int or not 0 <= price < _PRICE_END):
            price = _check_price(price, "check")
        if pg is not None and (type(pg) is not int or not 1 <= pg <= 0xFFFF):
            pg = _check_pg(pg, "check")
        scan = self._scan
        if scan is not None:
            return scan.check(raw, price, pg)
        return self.check_receipt((raw,), prices=(price,), pgs=(pg,))

    def _receipt_of_one(self, raw: str | bytes, price: int | None, pg: int | None) -> TillVerdict:
        """`check_receipt((raw,))`: where the offline-only scan (`_till_scan`) sends what it does not answer itself
        (an unreadable scan, an empty or expired store)."""
        return self.check_receipt((raw,), prices=(price,), pgs=(pg,))

    async def check_async(self, raw: str | bytes, *, price: int | None = None,
                          pg: int | None = None) -> TillVerdict:
        """Check one scan in the running event loop (`price`, `pg` as in `check`)."""
        return await self.check_receipt_async((raw,), prices=(price,), pgs=(pg,))

    def check_receipt(self, raws: Sequence[str | bytes], *, prices: Sequence[int | None] | None = None,
                      pgs: Sequence[int | None] | None = None) -> TillVerdict:
        """Check every marking code of one receipt in one online request (sync).

        `prices` / `pgs`, when given, hold one sale price (kopecks, or None) / product group (or None) per scan.
        Raises `ReceiptTooLarge` for more than 128 codes (the fiscal drive's limit), `ValueError` for none, and
        `PriceError` for a bad price or pg (before anything is sent).
        """
        started = time.monotonic()
        until = started + self.deadline
        items = self._prepare(raws, prices, pgs)
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

    async def check_receipt_async(self, raws: Sequence[str | bytes], *, prices: Sequence[int | None] | None = None,
                                  pgs: Sequence[int | None] | None = None) -> TillVerdict:
        """Check every marking code of one receipt in one online request, in the running event loop."""
        started = time.monotonic()
        until = started + self.deadline
        items = self._prepare(raws, prices, pgs)
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

    # ----- pieces (the online side's are in online.py, the offline side's in offline.py)

    def _prepare(self, raws: Sequence[str | bytes], prices: Sequence[int | None] | None = None,
                 pgs: Sequence[int | None] | None = None) -> list[_Item]:
        if isinstance(raws, (str, bytes)):
            raise TypeError("check_receipt takes a sequence of scans; use check() for one")
        if len(raws) > MAX_RECEIPT_CODES:
            raise ReceiptTooLarge(len(raws))
        if not raws:
            raise ValueError("a receipt needs at least one marking code")
        for name, given in (("prices", prices), ("pgs", pgs)):
            if given is not None and (isinstance(given, (str, bytes)) or len(given) != len(raws)):
                raise PriceError(f"{name} holds one entry (or None) per scan: {len(raws)} scans")
        checked_prices = [_check_price(p, f"item {i + 1}") for i, p in enumerate(prices or ())] or None
        checked_pgs = [_check_pg(g, f"item {i + 1}") for i, g in enumerate(pgs or ())] or None
        items = []
        need_parse = self.online is not None or self._lm is not None
        for index, raw in enumerate(raws):
            text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, (bytes, bytearray)) else raw
            item = _Item(raw=text)
            if checked_prices is not None:
                item.price = checked_prices[index]
            if checked_pgs is not None:
                item.pg = checked_pgs[index]
            if need_parse or item.price is not None:
                try:
                    readings = readings_of(raw)
                except CodeError as exc:
                    item.unreadable = str(exc)
                else:
                    parsed = readings[0]
                    item.cis, item.gtin = parsed.cis, parsed.gtin
                    item.code = parsed.element_string
                    item.mrp = parsed.mrp
                    if item.pg is None:
                        item.pg = product_group_of(parsed)
                    # Online, the most likely reading only: a wrong reading is no code the national system knows
                    # (refused as not found). A Local Module knows only what is blocked, so it is asked every reading.
                    if self._lm is not None and len(readings) > 1:
                        item.alts = tuple(r.element_string for r in readings[1:])
            items.append(item)
        return items

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
            if reasons is not None and response is not None and item.price is not None:
                reasons += self._online_price_reasons(item, entry)
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
