"""Prometheus metrics of the service: counters and a latency histogram, rendered on scrape."""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import Status

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """Counters and a latency histogram, rendered in the Prometheus text format on scrape.

    Updating costs a dict increment and a bisect per request; everything else is computed when scraped.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.codes_checked = 0
        self.codes_blocked = 0
        self.codes_unreadable = 0
        self.connections_total = 0
        self.started = time.time()
        #: More figures to render on scrape (the HTTP stack's, the throttle's): callables returning name -> value.
        self.sources: list[Callable[[], dict[str, float]]] = []
        #: Labelled families, rendered as the lines they return (HELP/TYPE included).
        self.families: list[Callable[[], list[str]]] = []

    def observe(self, endpoint: str, outcome: str, seconds: float) -> None:
        key = (endpoint, outcome)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def render(self, status: Status | None, lm_status: str, extra: dict[str, float] | None = None, *,
               stale_readers_cleared: int | None = None, replication: dict[str, Any] | None = None) -> bytes:
        out = [
            "# HELP lmcz_requests_total HTTP requests by endpoint and outcome.",
            "# TYPE lmcz_requests_total counter",
        ]
        for (endpoint, outcome), count in sorted(self.requests.items()):
            out.append(f'lmcz_requests_total{{endpoint="{endpoint}",outcome="{outcome}"}} {count}')
        out += [
            "# HELP lmcz_request_duration_seconds Time from the request's first byte to its response built.",
            "# TYPE lmcz_request_duration_seconds histogram",
        ]
        running = 0
        for bound, count in zip(LATENCY_BUCKETS, self.latency_counts):
            running += count
            out.append(f'lmcz_request_duration_seconds_bucket{{le="{bound}"}} {running}')
        running += self.latency_counts[-1]
        out.append(f'lmcz_request_duration_seconds_bucket{{le="+Inf"}} {running}')
        out.append(f"lmcz_request_duration_seconds_sum {self.latency_sum:.6f}")
        out.append(f"lmcz_request_duration_seconds_count {running}")
        out += [
            "# HELP lmcz_codes_checked_total Marking codes checked.",
            "# TYPE lmcz_codes_checked_total counter",
            f"lmcz_codes_checked_total {self.codes_checked}",
            "# HELP lmcz_codes_blocked_total Marking codes found blocked.",
            "# TYPE lmcz_codes_blocked_total counter",
            f"lmcz_codes_blocked_total {self.codes_blocked}",
            "# HELP lmcz_codes_unreadable_total Scans answered as unreadable (not marking codes) beside readable "
            "codes of the same request.",
            "# TYPE lmcz_codes_unreadable_total counter",
            f"lmcz_codes_unreadable_total {self.codes_unreadable}",
            "# HELP lmcz_connections_total TCP connections accepted.",
            "# TYPE lmcz_connections_total counter",
            f"lmcz_connections_total {self.connections_total}",
        ]
        if status is not None:
            out += [
                "# HELP lmcz_db_version Version of the database being served.",
                "# TYPE lmcz_db_version gauge",
                f"lmcz_db_version {status.version}",
                "# HELP lmcz_db_age_seconds Seconds since the last successful sync or load (-1: never).",
                "# TYPE lmcz_db_age_seconds gauge",
                f"lmcz_db_age_seconds {-1 if status.age is None else round(status.age, 3)}",
                "# HELP lmcz_db_expires_at_seconds When offline answers stop (Unix s; -1: no list loaded).",
                "# TYPE lmcz_db_expires_at_seconds gauge",
                f"lmcz_db_expires_at_seconds {-1 if status.expires_at is None else round(status.expires_at, 3)}",
                "# HELP lmcz_db_offline_limit_seconds The offline limit: checks are refused this long after the "
                "last successful sync or load.",
                "# TYPE lmcz_db_offline_limit_seconds gauge",
                f"lmcz_db_offline_limit_seconds {status.expire_after:g}",
                "# HELP lmcz_db_codes Blocked codes in the database.",
                "# TYPE lmcz_db_codes gauge",
                f"lmcz_db_codes {status.codes}",
                "# HELP lmcz_db_gtins Wholly blocked GTINs in the database.",
                "# TYPE lmcz_db_gtins gauge",
                f"lmcz_db_gtins {status.gtins}",
                "# HELP lmcz_clock_behind_seconds How far this machine's clock reads behind the store's own last "
                "sync or load (0: not behind); while positive the store is expired: nothing is aged by such a clock.",
                "# TYPE lmcz_clock_behind_seconds gauge",
                f"lmcz_clock_behind_seconds {round(getattr(status, 'clock_behind', None) or 0.0, 3)}",
                "# HELP lmcz_db_state Freshness of the database (1 for the current state).",
                "# TYPE lmcz_db_state gauge",
            ]
            for state in ("ready", "stale", "expired", "empty"):
                out.append(f'lmcz_db_state{{state="{state}"}} {int(status.state == state)}')
        out += [
            "# HELP lmcz_lm_status Status as the Local Module API reports it (1 for the current one).",
            "# TYPE lmcz_lm_status gauge",
        ]
        for name in ("ready", "initialization", "sync_error", "not_configured"):
            out.append(f'lmcz_lm_status{{status="{name}"}} {int(lm_status == name)}')
        if stale_readers_cleared is not None:
            out += [
                "# HELP lmcz_store_stale_readers_cleared_total Reader slots of dead processes cleared from the store.",
                "# TYPE lmcz_store_stale_readers_cleared_total counter",
                f"lmcz_store_stale_readers_cleared_total {stale_readers_cleared}",
            ]
        if replication is not None:
            out += _replication_lines(replication)
        extra = dict(extra or {})
        for source in self.sources:
            extra.update(source())
        for name, value in sorted(extra.items()):
            out.append(f"# TYPE {name} {'counter' if name.endswith('_total') else 'gauge'}")
            out.append(f"{name} {value}")
        for family in self.families:
            out += family()
        out.append(f"lmcz_uptime_seconds {time.time() - self.started:.1f}")
        return ("\n".join(out) + "\n").encode()



def _replication_lines(replication: dict[str, Any]) -> list[str]:
    """Per source database of a replicated store, as the official module's replication status has them."""
    series = (
        ("lmcz_replication_local_docs", "localDocCount", "Records held here from the source database."),
        ("lmcz_replication_source_docs", "serverDocCount", "Documents in the source database at the last batch."),
        ("lmcz_replication_seq_lag", "seqLag", "Changes of the source database not yet replicated."),
        ("lmcz_replication_unmapped_docs", "unmapped", "Source documents that do not map to a record."),
        ("lmcz_replication_last_batch_age_seconds", "timeLag", "Seconds since the last replicated batch."),
    )
    out = []
    for metric, field, text in series:
        out += [f"# HELP {metric} {text}", f"# TYPE {metric} gauge"]
        for name, db in sorted(replication["databases"].items()):
            value = db.get(field)
            if value is not None:
                out.append(f'{metric}{{database="{name}"}} {value}')
    return out


class OncePer:
    """A log line at most once per `seconds`, telling how many like it were held back since the last one: for
    events a client can cause at will (a hostile body), which must be seen but must not flood the log."""

    def __init__(self, logger: logging.Logger, seconds: float) -> None:
        self.logger = logger
        self.seconds = seconds
        self._next = 0.0
        self._held = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return
        if self._held:
            message += f" ({self._held} more like it in the last {self.seconds:.0f} s not logged)"
        self.logger.warning(message, *args)
        self._next = now + self.seconds
        self._held = 0
