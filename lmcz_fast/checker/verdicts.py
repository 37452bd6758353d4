"""What a check answers: the decision and mode, the verdict on one code and on one scan or receipt, the fiscal
tags they carry, and the receipt's limit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .reasons import Reason

#: A fiscal drive takes at most 128 marking codes per receipt (CRPT webinar; see docs/protocol.md).
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


#: The working state of one scan while its receipt is checked (what its `CodeVerdict` is made from).
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
    price: int | None = None      # the sale price the till means to charge, kopecks
    pg: int | None = None         # the product group: given, else what the code's form proves (tobacco pack: 3)
    mrp: int | None = None        # the maximum retail price the code carries
