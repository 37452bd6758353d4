"""What the store answers and reports: verdicts, freshness, load and delta reports (plain frozen data)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._probe import _register_verdict


@dataclass(frozen=True, slots=True)
class Block:
    """Why and since when something is blocked, as far as the source said."""

    authority: str | None = None
    reason: str | None = None
    since: str | None = None
    source: str | None = None
    scope: str = "code"

    def _key(self) -> tuple[str | None, ...]:
        return (self.authority, self.reason, self.since, self.source)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one check; carries what a receipt and an auditor need about the database that gave it."""

    blocked: bool
    cis: str
    gtin: str
    serial: str
    identity: str
    block: Block | None
    db_version: int
    db_updated_at: float | None
    db_age: float | None
    instance_id: str
    #: The maximum retail price the code itself carries (kopecks; `MarkingCode.mrp`), or None.
    mrp: int | None = None
    #: The minimum price that applies (kopecks): the GTIN's entry, else its product group's, else None.
    smp: int | None = None
    #: The GTIN is in the store's grey list.
    grey_gtin: bool = False
    #: In the sold register (store/sold/) and not expired: a second sale of this code must be refused.
    sold: bool = False


# The compiled check builds Verdicts itself (lmcz_fast/_probe/verdicts.pxi, `_fast_verdict`), slot by slot as
# __init__ does.
_register_verdict(Verdict)


@dataclass(frozen=True, slots=True)
class Status:
    """Freshness of the database: `empty` (no list: nothing to answer from), `ready`, `stale` (serving, loudly) or
    `expired` (refuse checks). `expires_at` (Unix s) is when offline answers stop (None only when `empty`); every
    surface reports this one value (`freshness.freshness` computes it)."""

    state: str
    version: int
    last_sync_at: float | None
    next_sync_at: float | None
    age: float | None
    feed_url: str | None
    codes: int
    gtins: int
    refresh_window: float
    expire_after: float
    expires_at: float | None = None
    loaded_at: float | None = None
    #: Seconds the clock reads behind the store's own newest timestamp (see `freshness`): then `expired`.
    clock_behind: float | None = None


@dataclass(slots=True)
class LineError:
    """One rejected input line: where it was, why, and the text (cut short)."""

    source: str
    line: int
    reason: str
    message: str
    text: str


@dataclass(slots=True)
class LoadReport:
    """What a load did: how many lines it read, took, found twice or rejected, and the first rejections."""

    version: int = 0
    lines: int = 0
    codes: int = 0
    gtins: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[LineError] = field(default_factory=list)
    seconds: float = 0.0
    replaced: bool = True

    def summary(self) -> str:
        text = (
            f"version {self.version}: {self.codes} codes and {self.gtins} GTINs from {self.lines} lines, "
            f"{self.duplicates} duplicates, {self.rejected} rejected, in {self.seconds:.2f} s"
        )
        return text


@dataclass(frozen=True, slots=True)
class DeltaReport:
    """What a delta did. `applied` is False when the store already held `to_version` (a harmless re-apply)."""

    applied: bool
    from_version: int
    to_version: int
    added: int
    removed: int
    gtins_added: int
    gtins_removed: int
    seconds: float
    #: Table records (minimum prices, grey GTINs) that really changed: set or replaced, and deleted.
    records_added: int = 0
    records_removed: int = 0

