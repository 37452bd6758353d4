"""The sold register on both sides: sales and returns committed here first, then delivered to the official module,
in order, each until it took it (docs/front.md, "The sold register on both sides").

A till's `cis/sell` or `cis/return` is answered once its write transaction is committed here, as without a front
(service/sold.py, durable.py). With a front, `SaleQueue.joined` makes that same transaction also append the
request to the store's outbox table (store/outbox.py): there is never a sale here without its entry, nor an entry
without its sale, and a kill -9 loses neither. A thread (`start`) sends the entries oldest first to the official
module's `POST /api/v2/cis/sell` (or `return`) with the till's own `cis_list`, and deletes an entry only after the
official module answered it 2xx. While it is down (refused, reset, timed out, 5xx, 408, 429) the entry stays at the
head and is tried again with a growing pause (`retry_min` .. `retry_max`): the later ones wait behind it, so the
official register sees the sales in the order the tills made them.

Delivery is at least once. An entry whose 2xx came but whose deletion was not yet committed when the process
died is sent again after the restart: a sale sent twice leaves the official register as once (the code is sold;
its time moves), a return sent twice finds nothing the second time; and since the queue keeps its order, a sale
and its return are never swapped. What the official module refuses with another 4xx (a code it cannot read, a
body it does not take) can never succeed by sending it again: it is taken off the queue, counted
(`lmcz_front_outbox_refused_total`), logged with the codes' identities and kept in `refusals` for the status page;
our register keeps the sale (`sold` answers from ours). 401/403 are the front's credentials, not the sale: the
entry stays and is tried again (and the page says so). 404/405/501: that module keeps no sold register (1.x):
counted as `unsupported` and taken off (logged once an hour).
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._codes import CodeError, parse_code
from .calls import CallError

if TYPE_CHECKING:
    from ..store import Blocklist, WriteOp

log = logging.getLogger("lmcz_fast.front")

#: The official module's endpoints for each kind (its 2.x register; docs/protocol.md, "The sold register").
PATHS = {"sell": "/api/v2/cis/sell", "return": "/api/v2/cis/return"}
#: Entries sent before their deletion is committed (one commit per batch; at most this many sent again after a kill).
BATCH = 32
#: Refusals kept for the status page.
MAX_REFUSALS = 20
#: Statuses that say the official module is not there right now: try again later.
RETRY_STATUSES = {408, 429}
#: Statuses that say this module keeps no sold register.
UNSUPPORTED_STATUSES = {404, 405, 501}

Send = Callable[[str, bytes, dict[str, str]], tuple[int, bytes]]


@dataclass(frozen=True, slots=True)
class Refused:
    """A sale or return the official module refused (taken off the queue; ours keeps it)."""

    at: float
    kind: str
    identities: tuple[str, ...]
    status: int
    answer: str


def identities_of(items: list[Any]) -> tuple[str, ...]:
    """The identities (GTIN + serial, no crypto tail) of a `cis_list`, for logs and the page; unreadable ones as
    `?`."""
    out = []
    for item in items:
        raw = item.get("cis") if isinstance(item, dict) else item
        try:
            out.append(parse_code(raw).identity if isinstance(raw, str) else "?")
        except CodeError:
            out.append("?")
    return tuple(out)


class SaleQueue:
    """Sales and returns on their way to the official module: joined to the local write, delivered by a thread.

    `send(path, body, headers) -> (status, answer)` makes one call (raises `CallError` when no HTTP answer came).
    """

    def __init__(self, blocklist: Blocklist, send: Send, *, retry_min: float = 0.5, retry_max: float = 30.0,
                 batch: int = BATCH, clock: Callable[[], float] = time.time) -> None:
        self._blocklist = blocklist
        self._send = send
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.batch = batch
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.refused = 0
        self.unsupported = 0
        self.retries = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_delivered_at: float | None = None
        self.refusals: collections.deque[Refused] = collections.deque(maxlen=MAX_REFUSALS)
        self._unsupported_logged = 0.0
        self._held_since: float | None = None

    # -- the write side: joined to the sale's own transaction ---------------------------------------------------

    def joined(self, op: WriteOp, kind: str, items: list[Any], client: str | None = None) -> WriteOp:
        """`op` (the local sale or return) followed, in the same transaction, by appending it to the outbox."""
        if kind not in PATHS:
            raise ValueError(f"kind must be one of {sorted(PATHS)}, not {kind!r}")
        entry = json.dumps({"kind": kind, "cis_list": items, "at": int(self._clock() * 1000), "client": client},
                           ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        append = self._blocklist.outbox.op_append([entry])

        def op_and_entry(txn: Any) -> Any:
            result = op(txn)
            append(txn)
            return result

        return op_and_entry

    def wake(self) -> None:
        """Something was committed: deliver it now (called after the commit)."""
        self._wake.set()

    # -- the delivering thread ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        pending = self._blocklist.outbox.count()
        if pending:
            log.info("front outbox: %d sales/returns wait for the official module (delivered in order)", pending)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lmcz-front-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        thread, self._thread = self._thread, None
        self._stop.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        pause = self.retry_min
        while not self._stop.is_set():
            try:
                held = self.deliver_some()
            except Exception:                      # the store closed under us, a bug: say it, go on
                log.exception("front outbox: delivery round failed")
                held = True
            if held:
                self._stop.wait(pause)
                pause = min(self.retry_max, pause * 2)
                continue
            pause = self.retry_min
            self._wake.wait(5.0)
            self._wake.clear()

    def deliver_some(self) -> bool:
        """Deliver from the head, up to one batch; delete what is done in one commit. Returns whether the head is
        held (the official module did not take it: try again after a pause)."""
        entries = self._blocklist.outbox.head(self.batch)
        if not entries:
            self._held_since = None
            return False
        done: list[int] = []
        held = False
        for seq, raw in entries:
            if self._stop.is_set():
                break
            if not self._deliver_one(seq, raw):
                held = True
                break
            done.append(seq)
        if done:
            self._blocklist.outbox.delete(done)
        if held:
            self.retries += 1
            if self._held_since is None:
                self._held_since = self._clock()
        else:
            self._held_since = None
        return held

    def _deliver_one(self, seq: int, raw: bytes) -> bool:
        """Send one entry; True when it is done with (taken, refused for good, or unreadable)."""
        try:
            entry = json.loads(raw)
            kind, items = entry["kind"], entry["cis_list"]
            path = PATHS[kind]
        except (ValueError, KeyError, TypeError):
            log.error("front outbox: entry %d is not readable (%r...): dropped", seq, raw[:80])
            return True
        headers = {"X-ClientId": str(entry["client"])} if entry.get("client") else {}
        body = json.dumps({"cis_list": items}, ensure_ascii=False).encode("utf-8")
        try:
            status, answer = self._send(path, body, headers)
        except CallError as exc:
            self._failed(f"{kind}: {exc}")
            return False
        if 200 <= status < 300:
            self.delivered += 1
            self.last_delivered_at = self._clock()
            return True
        text = answer[:300].decode("utf-8", "replace")
        if status >= 500 or status in RETRY_STATUSES:
            self._failed(f"{kind}: the official module answered {status}: {text}")
            return False
        if status in (401, 403):
            self._failed(f"{kind}: the official module refused the front's credentials ({status}): check "
                         "--front-credentials-file")
            return False
        identities = identities_of(items)
        if status in UNSUPPORTED_STATUSES:
            self.unsupported += 1
            now = time.monotonic()
            if now >= self._unsupported_logged:
                self._unsupported_logged = now + 3600
                log.warning("front outbox: the official module answers %d to %s: it keeps no sold register "
                            "(module 1.x?); sales stay in ours only", status, path)
            return True
        self.refused += 1
        self.refusals.append(Refused(self._clock(), kind, identities, status, text))
        log.warning("front outbox: the official module refused a %s of %s (%d: %s): taken off the queue; our "
                    "register keeps it", kind, ", ".join(identities), status, text)
        return True

    def _failed(self, message: str) -> None:
        if self.last_error != message:
            log.warning("front outbox: %s; the queue waits and tries again", message)
        self.last_error = message
        self.last_error_at = self._clock()

    # -- what the surfaces show ---------------------------------------------------------------------------------

    def oldest_age(self) -> float | None:
        """Seconds the oldest waiting entry has waited, or None when none waits."""
        head = self._blocklist.outbox.head(1)
        if not head:
            return None
        try:
            at = float(json.loads(head[0][1])["at"]) / 1000
        except (ValueError, KeyError, TypeError):
            return None
        return max(0.0, self._clock() - at)

    def status(self) -> dict[str, Any]:
        """The `outbox` part of status's `front` object (times in Unix ms, 0 for never)."""
        pending = self._blocklist.outbox.count()
        oldest = self.oldest_age() if pending else None
        return {"pending": pending, "oldestAge": None if oldest is None else round(oldest, 3),
                "delivered": self.delivered, "refused": self.refused, "unsupported": self.unsupported,
                "retries": self.retries, "lastError": self.last_error or "",
                "lastErrorAt": int((self.last_error_at or 0) * 1000),
                "lastDeliveredAt": int((self.last_delivered_at or 0) * 1000),
                "refusals": [{"at": int(r.at * 1000), "kind": r.kind, "identities": list(r.identities),
                              "status": r.status, "answer": r.answer} for r in reversed(self.refusals)]}

    def metrics(self) -> dict[str, float]:
        pending = self._blocklist.outbox.count()
        oldest = self.oldest_age() if pending else None
        return {"lmcz_front_outbox_pending": pending,
                "lmcz_front_outbox_oldest_age_seconds": round(oldest or 0.0, 3),
                "lmcz_front_outbox_delivered_total": self.delivered,
                "lmcz_front_outbox_refused_total": self.refused,
                "lmcz_front_outbox_unsupported_total": self.unsupported,
                "lmcz_front_outbox_retries_total": self.retries}
