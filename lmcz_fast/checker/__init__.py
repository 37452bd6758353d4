"""Till-side checker: ask the national system online; if no answer arrives within the deadline, decide offline.

The rule at the till (CRPT: "if the online check gives no answer within 1.5 seconds, check offline") is one hard
deadline over the whole online attempt — DNS, connect, TLS, send, read. The offline check starts at the same time as
the online one, so its answer is already there when the deadline passes; the call returns then, never later. An
online answer that arrives after the deadline is logged (with what it would have decided), not used.

Threads: the asyncio API runs in the caller's loop and starts no thread. The sync API checks an in-process
`Blocklist` in the caller's thread and runs the network parts on one background event-loop thread owned by the
`Checker` (started on first need, stopped by `close()`), so no thread and no socket is created per call.

The package's files, one job each: `deadline.py` (`Checker`: the race of the online and the offline side, the
verdict), `online.py` (the True API side), `offline.py` (the in-process store or a Local Module), `local_module.py`
(the Local Module's HTTP client), `rules.py` (the refusal rules: online order, offline table, prices),
`reasons.py` (what the cashier is told) and `verdicts.py` (what a check answers).
"""

from __future__ import annotations

from .deadline import Checker
from .local_module import LocalModuleClient, LocalModuleError
from .reasons import REASONS, Reason, offline_expired_reason, offline_sync_error_reason  # REASONS and the rest too,
from .rules import (                                                                     # as before the split
    PG_MINIMUM_PRICE_GROUPS,
    PG_TOBACCO,
    PriceError,
    offline_reasons,
    offline_table,
    online_reasons,
    price_reasons,
)
from .verdicts import (
    MAX_RECEIPT_CODES,
    TAG_1262,
    TAG_1263,
    TAG_1264,
    CodeVerdict,
    Decision,
    Mode,
    ReceiptTooLarge,
    TillVerdict,
)

__all__ = [
    "MAX_RECEIPT_CODES",
    "PG_MINIMUM_PRICE_GROUPS",
    "PG_TOBACCO",
    "TAG_1262",
    "TAG_1263",
    "TAG_1264",
    "Checker",
    "CodeVerdict",
    "Decision",
    "LocalModuleClient",
    "LocalModuleError",
    "Mode",
    "PriceError",
    "Reason",
    "ReceiptTooLarge",
    "TillVerdict",
    "offline_table",
    "price_reasons",
]
