"""What a check answers, on both protocols: the per-code fields and the envelope around them.

Types are those typed clients decode (C# System.Text.Json and FPC's JSON objects, strict: a number never reads
into a string, null never into a long; see ../shared/domain.md): strings stay strings (`dbVersion` too), times
are int64 Unix milliseconds, booleans are booleans, `mrp`/`smp` are integers (kopecks) or null. The same field has
the same type on `/api/v1` and `/api/v2`.
"""

from __future__ import annotations

from typing import Any

from ..receipt import tag_1265
from ..store import PRODUCT_GROUPS as STORE_GROUPS
from ..store import Verdict

#: Product group ids a till sends as `pg` (../shared/domain.md: Dev1100/chz-emulator's list), from the store's table.
PRODUCT_GROUPS: dict[int, str] = {number: name for name, number in STORE_GROUPS.items()}


def _min_price_docs(info: dict[str, Any]) -> int:
    """How many minimum prices the store holds (status `dbState.min_price.docCount`): per GTIN and per group."""
    return int(info.get("min_prices") or 0) + int(info.get("group_min_prices") or 0)


def code_json(verdict: Verdict, pg: int | None, grey_list: bool) -> dict[str, Any]:
    """One code's answer. Offline unknowns are the values that do not refuse a sale (docs/service.md). The prices
    are the verdict's own (`mrp` from the code, `smp` for its GTIN or `pg`, from the version that checked it)."""
    block = verdict.block
    if block is not None:
        block_json: Any = {"authority": block.authority, "reason": block.reason, "since": block.since,
                           "scope": block.scope}
        ogvs = [block.authority] if block.authority else []
    else:
        block_json = None
        ogvs = []
    return {
        "cis": verdict.cis, "printView": verdict.cis, "gtin": verdict.gtin, "groupIds": [] if pg is None else [pg],
        "found": True, "valid": True, "verified": True, "realizable": True, "utilised": True,
        "sold": verdict.sold, "isBlocked": verdict.blocked, "ogvs": ogvs, "isGreyGtin": grey_list and verdict.grey_gtin,
        "mrp": verdict.mrp, "smp": verdict.smp, "block": block_json,
    }


def envelope(req_id: str, req_ms: int, inst: str, version: str, codes: list[dict[str, Any]], verdict: Verdict,
             freshness: str) -> dict[str, Any]:
    """The envelope of one check answer: the official fields, then ours (`tag1265`, `dbVersion`, ...)."""
    return {
        "code": 0,
        "description": "ok",
        "reqId": req_id,
        "reqTimestamp": req_ms,
        "inst": inst,
        "version": version,
        "isCheckedOffline": True,
        "codes": codes,
        "tag1265": tag_1265(req_id, req_ms, inst, version),
        "dbVersion": str(verdict.db_version),
        "dbAge": None if verdict.db_age is None else round(verdict.db_age, 3),
        "dbFreshness": freshness,
    }


#: The official module's database of each kind of replicated data (its `dbState` keys).
_DB_STATE_KEY = {"codes": "blocked_cis", "gtins": "blocked_gtin", "prices": "min_price"}


def _replication_fields(replication: dict[str, Any] | None,
                        db_state: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]] | None:
    """A replicated store's status the way the official module reports its replication: per source database
    `localDocCount`, `serverDocCount` and `timeLag` (s; LM 1.x's `replicationStatus`, "unknown" when not known),
    and the same figures with `seqLag` and `lastBatch` (ms) beside `docCount` in the matching `dbState` entry."""
    if not replication:
        return None
    out = {}
    for name, db in replication["databases"].items():
        lag = db.get("timeLag")
        out[name] = {"localDocCount": int(db.get("localDocCount") or 0),
                     "serverDocCount": "unknown" if db.get("serverDocCount") is None else int(db["serverDocCount"]),
                     "timeLag": "unknown" if lag is None else int(round(lag))}
        entry = db_state.get(_DB_STATE_KEY.get(str(db.get("kind")), ""))
        if entry is not None:
            entry.update({key: value for key, value in out[name].items() if value != "unknown"})
            if db.get("seqLag") is not None:
                entry["seqLag"] = int(db["seqLag"])
            if db.get("lastBatchAt") is not None:
                entry["lastBatch"] = int(db["lastBatchAt"] * 1000)
    return out


def status_json(*, lm_status: str, operation_mode: str, software_version: str, status: Any, info: dict[str, Any],
                inst: str, inn: str, name: str, grey_list: bool, sold_count: int,
                initialized: bool, replication: dict[str, Any] | None = None) -> dict[str, Any]:
    """`/status`, the same on both protocols: the official fields with their declared types, then ours
    (`expiresAt` is null while no list is loaded: there is no moment at which checks stop). A replicated store
    (`replication`, from `store.replication.replication_status`) adds its replication figures."""
    updated = info.get("updated_at")
    last_sync = 0 if status.last_sync_at is None else int(status.last_sync_at * 1000)
    db_state = {
        "blocked_cis": {"docCount": status.codes},
        "blocked_gtin": {"docCount": status.gtins},
        "min_price": {"docCount": _min_price_docs(info)},
    }
    replicated = _replication_fields(replication, db_state)
    answer = {
        "status": lm_status,
        "operationMode": operation_mode,
        "version": software_version,
        "dbVersion": str(status.version),
        "lastSync": last_sync,
        "lastUpdate": 0 if updated is None else int(updated * 1000),
        "inst": inst,
        "inn": inn,
        "name": name,
        "serviceUrl": status.feed_url or "",
        "requiresDownload": status.state == "empty",
        "isGreyGtin": grey_list,
        "dbState": db_state,
        "dbFreshness": status.state,
        "dbAge": None if status.age is None else round(status.age, 3),
        "nextSync": 0 if status.next_sync_at is None else int(status.next_sync_at * 1000),
        "expiresAt": None if status.expires_at is None else int(status.expires_at * 1000),
        "offlineLimit": status.expire_after,
        "codes": status.codes,
        "gtins": status.gtins,
        "soldCount": sold_count,
        "initialized": initialized,
    }
    if replicated is not None:
        answer["replicationStatus"] = replicated
    return answer
