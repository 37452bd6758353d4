"""Failed HTTP Basic logins, per client address: the answer to a wrong password is delayed, more after each.

A correct password is never delayed, from any address. A wrong one is answered 401 only after a delay that grows
with the address's recent failures (0 for the first few: a typo costs nothing), and while its delay runs the
failure holds one of the address's few *slots*, even if the client hangs up. With every slot held, the address's
next requests are refused at once with 429, without their credentials being looked at. So guesses from one address
are bounded by slots / delay, however many connections it opens, and since the 429 is the same for a right and a
wrong password it tells an attacker nothing; and one misconfigured till holds one slot, never locking out the
tills behind the same address (a proxy, a NAT).

The delay is not a sleep: the HTTP stack holds the 401 with `loop.call_later` (see `http.py`). The table of
addresses is bounded; IPv6 clients are keyed by their /64, which one host can fill with addresses.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("lmcz_fast.service")

#: Failures an address may make with no delay (a typo, a till being set up).
FREE_FAILURES = 3
#: Delay of the first delayed failure; it doubles with each further one, up to `MAX_DELAY`.
FIRST_DELAY = 0.25
MAX_DELAY = 10.0
#: Delayed failures one address may have waiting at once; beyond that: 429 without looking at the credentials.
SLOTS = 8
#: The failure count stops growing this far past the free ones (so an address recovers within minutes).
MAX_SCORE_OVER = 16
#: An address's failure count halves every this many seconds without a failure.
HALF_LIFE = 60.0
#: A burst of failures is over (and its summary logged) after this long without one.
QUIET = 60.0
#: Addresses remembered; the longest-untouched is forgotten first.
MAX_ADDRESSES = 4096


def address_key(peer: object) -> str:
    """The key a client's failures are counted under: its IPv4 address, or the /64 of an IPv6 one."""
    host = peer[0] if isinstance(peer, tuple) and peer else peer
    if not isinstance(host, str):
        return "unknown"
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(slots=True)
class _Address:
    score: float = 0.0         # failures, decaying with HALF_LIFE
    scored_at: float = 0.0
    due: list[float] = field(default_factory=list)  # when each held slot (a delayed 401) is released
    burst_failures: int = 0
    burst_refused: int = 0
    burst_started: float = 0.0
    last_failure: float = 0.0


class AuthThrottle:
    """Per-address failure counts, the delay of each failure's 401, and the 429 refusal when an address's slots
    are all held. Runs on the event loop's thread; `clock` is monotonic seconds."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, free_failures: int = FREE_FAILURES,
                 first_delay: float = FIRST_DELAY, max_delay: float = MAX_DELAY, slots: int = SLOTS,
                 half_life: float = HALF_LIFE, quiet: float = QUIET, max_addresses: int = MAX_ADDRESSES) -> None:
        self.clock = clock
        self.free_failures = free_failures
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.slots = slots
        self.half_life = half_life
        self.quiet = quiet
        self.max_addresses = max_addresses
        self._table: OrderedDict[str, _Address] = OrderedDict()
        self.failures_total = 0
        self.refused_total = 0
        self.delayed_total = 0
        self.delay_seconds_total = 0.0

    def __len__(self) -> int:
        return len(self._table)

    def throttled(self) -> int:
        """Addresses whose next failure would be delayed."""
        now = self.clock()
        return sum(1 for entry in self._table.values() if self._score(entry, now) >= self.free_failures)

    def _score(self, entry: _Address, now: float) -> float:
        if entry.score and now > entry.scored_at:
            return entry.score * 0.5 ** ((now - entry.scored_at) / self.half_life)
        return entry.score

    def refuse(self, key: str) -> float | None:
        """Seconds to put in Retry-After if this address's request must be refused (429) without looking at its
        credentials, or None to let it through."""
        entry = self._table.get(key)
        if entry is None or len(entry.due) < self.slots:
            return None
        self.refused_total += 1
        entry.burst_refused += 1
        return max(0.0, min(entry.due) - self.clock())

    def failed(self, key: str) -> float:
        """Count a wrong or missing password from this address; return how long to hold its 401.

        A positive delay holds one of the address's slots: call `release(key)` when the delay is over (whether or
        not the client is still there).
        """
        now = self.clock()
        entry = self._table.get(key)
        if entry is None:
            entry = self._table[key] = _Address()
            if len(self._table) > self.max_addresses:
                self._evict()
        else:
            self._table.move_to_end(key)
        entry.score = min(self._score(entry, now) + 1.0, self.free_failures + MAX_SCORE_OVER)
        entry.scored_at = now
        if not entry.burst_failures or now - entry.last_failure > self.quiet:
            if entry.burst_failures:
                self._log_burst(key, entry, entry.last_failure)
            entry.burst_failures, entry.burst_refused, entry.burst_started = 0, 0, now
            log.warning("failed HTTP Basic login from %s; after %d free ones its failures are answered late "
                        "(%.2g s, doubling up to %.3g s) and counted in lmcz_auth_failures_total; a summary follows "
                        "when it has been quiet for %.0f s", key, self.free_failures, self.first_delay,
                        self.max_delay, self.quiet)
        entry.burst_failures += 1
        entry.last_failure = now
        self.failures_total += 1
        over = round(entry.score) - self.free_failures  # recent failures past the free ones, this one included
        if over < 1:
            return 0.0
        delay = min(self.max_delay, self.first_delay * 2.0 ** (over - 1))
        entry.due.append(now + delay)
        self.delayed_total += 1
        self.delay_seconds_total += delay
        return delay

    def release(self, key: str) -> None:
        entry = self._table.get(key)
        if entry is not None and entry.due:
            entry.due.remove(min(entry.due))

    def sweep(self) -> None:
        """Log the bursts that have gone quiet and forget addresses with nothing left to remember."""
        now = self.clock()
        for key in list(self._table):
            entry = self._table[key]
            if entry.burst_failures and now - entry.last_failure > self.quiet:
                self._log_burst(key, entry, entry.last_failure)
                entry.burst_failures = entry.burst_refused = 0
            if not entry.due and not entry.burst_failures and self._score(entry, now) < 0.05:
                del self._table[key]

    def _evict(self) -> None:
        for key, entry in self._table.items():
            if not entry.due:
                del self._table[key]
                return
        self._table.popitem(last=False)

    def _log_burst(self, key: str, entry: _Address, ended: float) -> None:
        log.warning("failed HTTP Basic logins from %s: %d in %.0f s (%d more refused with 429 unread)", key,
                    entry.burst_failures, ended - entry.burst_started, entry.burst_refused)

    def metrics(self) -> dict[str, float]:
        return {
            "lmcz_auth_failures_total": self.failures_total,
            "lmcz_auth_delayed_total": self.delayed_total,
            "lmcz_auth_delay_seconds_total": round(self.delay_seconds_total, 3),
            "lmcz_auth_refused_total": self.refused_total,
            "lmcz_auth_throttled_addresses": self.throttled(),
        }
