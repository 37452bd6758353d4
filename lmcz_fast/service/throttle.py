"""Failed HTTP Basic logins, per client address: the answer to a wrong password is delayed, more after each.

A correct password is answered at once, from any address, whatever else that address is doing: tills often share
one (a terminal server, an integrator in front of many tills, every local till on 127.0.0.1), so a guesser or a
misconfigured till must never lock the others out. Only wrong guesses are slowed:

- the first few failures of an address (`FREE_FAILURES`) are answered at once (a typo costs nothing);
- then each wrong guess's 401 is held for a delay that doubles with the address's recent failures (up to
  `MAX_DELAY`), in one of the address's few *slots* (`SLOTS`), even if the client hangs up;
- with every slot held, a further wrong guess waits its turn: it is answered 429 (Retry-After) no sooner than one
  delay after the previous waiting guess of the address, so however many connections an address opens, its wrong
  guesses are answered at most (slots + 1) per delay, and an answer never comes sooner for a wrong password than
  the throttle allows;
- only when an address has `MAX_WAITING` wrong guesses waiting (it holds that many connections open) are its next
  requests refused 429 at once *without their credentials being read*, the same for a right and a wrong password
  (answering a right one would make each refusal a verdict on a guess at line speed). That bound caps the
  connections and memory one address can tie up; below it, a right password is never refused.

The delay is not a sleep: the HTTP stack holds the answer with `loop.call_later` (see `http/`). The table of
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
#: Delayed failures (held 401s) one address may have at once; beyond them its wrong guesses wait (see below).
SLOTS = 8
#: Wrong guesses of one address waiting for their 429 at once; beyond that: 429 without reading the credentials.
MAX_WAITING = 256
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
    waiting: int = 0           # wrong guesses held beyond the slots (answered 429 when their turn comes)
    wait_tail: float = 0.0     # when the last of them is answered
    burst_failures: int = 0
    burst_refused: int = 0
    burst_started: float = 0.0
    last_failure: float = 0.0


class AuthThrottle:
    """Per-address failure counts, the delay of each failure's 401, and the 429 refusal when an address's slots
    are all held. Runs on the event loop's thread; `clock` is monotonic seconds."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, free_failures: int = FREE_FAILURES,
                 first_delay: float = FIRST_DELAY, max_delay: float = MAX_DELAY, slots: int = SLOTS,
                 half_life: float = HALF_LIFE, quiet: float = QUIET, max_addresses: int = MAX_ADDRESSES,
                 max_waiting: int = MAX_WAITING) -> None:
        self.clock = clock
        self.free_failures = free_failures
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.slots = slots
        self.half_life = half_life
        self.quiet = quiet
        self.max_addresses = max_addresses
        self.max_waiting = max_waiting
        self._table: OrderedDict[str, _Address] = OrderedDict()
        self.failures_total = 0
        self.refused_total = 0
        self.delayed_total = 0
        self.delay_seconds_total = 0.0
        self.waited_total = 0

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
        credentials (it has `max_waiting` wrong guesses waiting already), or None to let it through."""
        entry = self._table.get(key)
        if entry is None or entry.waiting < self.max_waiting:
            return None
        self.refused_total += 1
        entry.burst_refused += 1
        return max(0.0, entry.wait_tail - self.clock())

    def failed(self, key: str) -> tuple[float, bool]:
        """Count a wrong or missing password from this address: `(delay, waiting)`, how long to hold its answer,
        and whether that answer is a 429 (every slot is held: the guess waited its turn) rather than the 401.

        A positive delay holds one of the address's slots, or a place among its waiting guesses: call
        `release(key, waiting)` when the delay is over (whether or not the client is still there).
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
            return 0.0, False
        delay = min(self.max_delay, self.first_delay * 2.0 ** (over - 1))
        if len(entry.due) < self.slots:
            entry.due.append(now + delay)
            self.delayed_total += 1
            self.delay_seconds_total += delay
            return delay, False
        # Every slot is held: wait one delay after the address's previous waiting guess (and no less than a slot).
        entry.wait_tail = max(now, entry.wait_tail) + delay
        entry.waiting += 1
        self.waited_total += 1
        wait = entry.wait_tail - now
        self.delay_seconds_total += wait
        return wait, True

    def release(self, key: str, waiting: bool = False) -> None:
        entry = self._table.get(key)
        if entry is None:
            return
        if waiting:
            entry.waiting = max(0, entry.waiting - 1)
        elif entry.due:
            entry.due.remove(min(entry.due))

    def sweep(self) -> None:
        """Log the bursts that have gone quiet and forget addresses with nothing left to remember."""
        now = self.clock()
        for key in list(self._table):
            entry = self._table[key]
            if entry.burst_failures and now - entry.last_failure > self.quiet:
                self._log_burst(key, entry, entry.last_failure)
                entry.burst_failures = entry.burst_refused = 0
            if not entry.due and not entry.waiting and not entry.burst_failures and self._score(entry, now) < 0.05:
                del self._table[key]

    def _evict(self) -> None:
        for key, entry in self._table.items():
            if not entry.due and not entry.waiting:
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
            "lmcz_auth_waited_total": self.waited_total,
            "lmcz_auth_throttled_addresses": self.throttled(),
        }
