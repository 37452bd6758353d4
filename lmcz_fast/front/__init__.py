"""In front of the official Local Module (`serve --front URL`, docs/front.md): its configuration (config.py), a
pool of kept-alive HTTP/1.1 connections to it on the service's event loop (pool.py), the forwarder that sends a
till's request within a deadline and judges the answer (forwarder.py), and what it keeps on disk (state.py: the
participant token, the module's last-known `inst`/`version`).

The watching half: `crosscheck.py` (every official answer checked here too, off the till's path, disagreements
counted per field), `outbox.py` (sales and returns delivered to the official module in order from a durable
queue), `watchdog.py` (the official module's health polled, `init` again on `sync_error`), `calls.py` (their
blocking HTTP calls) and `watch.py` (the three as one object the service holds, and what they show).

A layer between store/ and service/: it may import the store and below, never the service (which builds on it:
service/fronting.py decides what a till gets from an `Outcome`)."""

from __future__ import annotations

from .config import DEFAULT_DEADLINE_MS, DEFAULT_POOL_SIZE, Credentials, FrontConfig, FrontConfigError
from .forwarder import NOT_READY_CODES, Forwarded, Front, Observer, Outcome, refusal_code
from .pool import Answer, Pool, PoolError
from .state import FrontState

__all__ = ["DEFAULT_DEADLINE_MS", "DEFAULT_POOL_SIZE", "NOT_READY_CODES", "Answer", "Credentials", "Front",
           "Forwarded", "FrontConfig", "FrontConfigError", "FrontState", "Observer", "Outcome", "Pool", "PoolError",
           "refusal_code"]
