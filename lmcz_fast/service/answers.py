"""What a check answers, on both protocols: the per-code fields and the envelope around them.

Types are those typed clients decode (C# System.Text.Json and FPC's JSON objects, strict: a number never reads
into a string, null never into a long; see docs/protocol.md): strings stay strings (`dbVersion` too), times
are int64 Unix milliseconds, booleans are booleans, `mrp`/`smp` are integers (kopecks) or null. The same field has
the same type on `/api/v1` and `/api/v2`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from ..receipt import tag_1265
from ..store import PRODUCT_GROUPS as STORE_GROUPS
from ..store import REPLICATION_META_SOURCE as META_SOURCE
from ..store import Verdict, reference_time
from .responses import encode_json

if TYPE_CHECKING:
    from .config import ServiceConfig

#: Product group ids a till sends as `pg` (docs/protocol.md: Dev1100/chz-emulator's list), from the store's table.
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


#: `errorCode` of a code the service could not read (a per-code answer: the request's other codes are answered).
ERROR_UNREADABLE = 400


class Unreadable(NamedTuple):
    """A scan of a check request that is not a marking code (or not a string): answered on its own, refused. A
    named tuple: one is made per unreadable scan answered, in C (`checks._unreadable`), where a frozen dataclass's
    `__init__` ran in Python."""

    index: int
    raw: str
    reason: str
    message: str


def unreadable_json(item: Unreadable, pg: int | None) -> dict[str, Any]:
    """The answer for a code that could not be read: refused on every field a till reads (`isBlocked` true, `valid`
    and `found` false: a client that reads only `isBlocked` must not sell what no one could check), with the
    reason in `errorCode`/`message` and ours (`error`, `reason`). Types as `code_json`'s."""
    return {
        "cis": item.raw, "printView": item.raw, "gtin": "", "groupIds": [] if pg is None else [pg],
        "found": False, "valid": False, "verified": False, "realizable": False, "utilised": False,
        "sold": False, "isBlocked": True, "ogvs": [], "isGreyGtin": False, "mrp": None, "smp": None, "block": None,
        "errorCode": ERROR_UNREADABLE, "message": item.message, "error": "invalid_code", "reason": item.reason,
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


# -- the reference encoder --------------------------------------------------------------------------------------
# The check answers are written by the compiled encoder (lmcz_fast/_answer.pyx, `Answers`) in one pass. The dicts
# above, and the two functions below, are how they were built before, field by field: kept as the reference the
# tests compare the compiled answers with, byte for byte (tests/test_answer_encoder.py).

AuditCodes = list[tuple[str, "bool | None"]]


def reference_v1(answers: list[Verdict | Unreadable], req_id: str, req_ms: int, inst: str, version: str,
                 grey_list: bool, freshness: str) -> tuple[bytes, AuditCodes]:
    """Protocol 1's check answer and its audit record's codes, as the service built them with `json`."""
    first = next(v for v in answers if not isinstance(v, Unreadable))
    codes = [unreadable_json(v, None) if isinstance(v, Unreadable) else code_json(v, None, grey_list)
             for v in answers]
    payload = envelope(req_id, req_ms, inst, version, codes, first, freshness)
    unread = sum(isinstance(v, Unreadable) for v in answers)
    if unread:
        payload["description"] = (f"ok; {unread} of {len(answers)} codes could not be read (their entries: "
                                  f"errorCode {ERROR_UNREADABLE}, isBlocked true)")
        payload["unreadable"] = unread
    audit: AuditCodes = [(v.raw[:64], None) if isinstance(v, Unreadable) else (v.cis, v.blocked) for v in answers]
    return encode_json(payload).encode(), audit


def reference_v2(answers: list[Verdict | Unreadable], pgs: list[int | None], req_ids: list[str], req_ms: int,
                 uuids: Any, grey_list: bool, freshness: str) -> tuple[bytes, list[tuple[str, str, AuditCodes]]]:
    """Protocol 2's check answer (one envelope per code, `req_ids[i]` its `reqId`) and its audit records
    (`(reqId, outcome, codes)` each), as the service built them with `json`; `uuids(instance_id, db_version)`
    gives `(inst, version)`."""
    known = next(v for v in answers if not isinstance(v, Unreadable))
    results = []
    records = []
    for verdict, pg, rid in zip(answers, pgs, req_ids):
        if isinstance(verdict, Unreadable):
            inst, version = uuids(known.instance_id, known.db_version)
            entry = envelope(rid, req_ms, inst, version, [unreadable_json(verdict, pg)], known, freshness)
            entry.update(code=ERROR_UNREADABLE, description=verdict.message, error="invalid_code",
                         errorCode=ERROR_UNREADABLE, reason=verdict.reason)
            results.append(entry)
            refused: AuditCodes = [(verdict.raw[:64], None)]
            records.append((rid, "invalid_code", refused))
            continue
        inst, version = uuids(verdict.instance_id, verdict.db_version)
        results.append(envelope(rid, req_ms, inst, version, [code_json(verdict, pg, grey_list)], verdict,
                                freshness))
        records.append((rid, "ok", [(verdict.cis, verdict.blocked)]))
    return encode_json({"results": results}).encode(), records


#: The official module's database of each kind of replicated data (its `dbState` keys).
_DB_STATE_KEY = {"codes": "blocked_cis", "gtins": "blocked_gtin", "prices": "min_price"}


#: The official module 1.x's databases, always answered in `replicationStatus` (docs/service.md, Status).
LM1_DATABASES = ("cis", "blocked_cis", "blocked_gtin", "blocked_series")


def _replication_fields(replication: dict[str, Any] | None, db_state: dict[str, dict[str, Any]],
                        status: Any) -> dict[str, dict[str, Any]]:
    """The store's `replicationStatus` the way the official module 1.x reports it: for each of its databases
    (`cis`, `blocked_cis`, `blocked_gtin`, `blocked_series`) `localDocCount`, `serverDocCount` and `timeLag` (s),
    numbers where we have them and "unknown" where not (we keep no `cis` or series database: always "unknown";
    a store not replicated knows its own counts only). A replicated store adds each source database's figures
    under its name, and the same figures with `seqLag` and `lastBatch` (ms) beside `docCount` in the matching
    `dbState` entry."""
    holds = status.version != 0
    out: dict[str, dict[str, Any]] = {name: {"localDocCount": "unknown", "serverDocCount": "unknown",
                                             "timeLag": "unknown"} for name in LM1_DATABASES}
    if holds:
        out["blocked_cis"]["localDocCount"] = int(status.codes)
        out["blocked_gtin"]["localDocCount"] = int(status.gtins)
    if not replication:
        return out
    for name, db in replication["databases"].items():
        lag = db.get("timeLag")
        out[name] = {"localDocCount": int(db.get("localDocCount") or 0),
                     "serverDocCount": "unknown" if db.get("serverDocCount") is None else int(db["serverDocCount"]),
                     "timeLag": "unknown" if lag is None else int(round(lag))}
        lm_name = _DB_STATE_KEY.get(str(db.get("kind")), "")
        if lm_name in out and lm_name != name:
            out[lm_name] = dict(out[name])
        entry = db_state.get(lm_name)
        if entry is not None:
            entry.update({key: value for key, value in out[name].items() if value != "unknown"})
            if db.get("seqLag") is not None:
                entry["seqLag"] = int(db["seqLag"])
            if db.get("lastBatchAt") is not None:
                entry["lastBatch"] = int(db["lastBatchAt"] * 1000)
    return out


def _ms_of(value: Any) -> int:
    return int(float(value) * 1000)


def made_current_at(status: Any, info: dict[str, Any], replication: dict[str, Any] | None) -> tuple[float, float]:
    """`(lastSync, lastUpdate)` in Unix s: when the store's data was last made current, 0 only for a store that
    never held a list.

    `lastSync` is the moment the offline limit counts from (the last sync or replication round, else the last full
    load from files: `store.freshness.reference_time`), so that `lastSync + offlineLimit = expiresAt`, as the guide
    counts its 72 hours "from lastSync". `lastUpdate` is the latest change of any kind: that, or a delta or a
    replication batch after it. A store that holds a list with neither (deltas only) reports its latest change
    for both (it is `expired`: no fresh moment).
    """
    if status.version == 0:
        return 0.0, 0.0
    moments = [info.get(key) for key in ("last_sync_at", "loaded_at", "updated_at")]
    if replication:
        moments += [db.get("lastBatchAt") for db in replication["databases"].values()]
    known = [float(m) for m in moments if m is not None]
    latest = max(known) if known else float(info.get("created_at") or 0.0)
    reference = reference_time(info)
    return (latest if reference is None else reference), latest


@dataclass(frozen=True)
class Identity:
    """Who answers `/status`: the module's settings and this instance (the fields that name it)."""

    operation_mode: str
    software_version: str
    inst: str
    inn: str
    name: str
    service_url: str = ""


@dataclass(frozen=True)
class ServiceFacts:
    """What `/status` says from the service's side next to the store's `Status` and info: the LM status it maps
    to, the grey list, the sold register's size, whether `init` came, replication figures, the version's UUID."""

    lm_status: str
    grey_list: bool
    sold_count: int
    initialized: bool
    replication: dict[str, Any] | None = None
    version_id: str = ""


def status_json(status: Any, info: dict[str, Any], identity: Identity, facts: ServiceFacts) -> dict[str, Any]:
    """`/status`, the same on both protocols: the official fields with their declared types, then ours
    (`expiresAt` is null while no list is loaded: there is no moment at which checks stop). `replicationStatus`
    is always there (`_replication_fields`); a replicated store (`replication`, from
    `store.replication.replication_status`) adds its replication figures. `lastSync` and `lastUpdate` are the
    moment the data was last made current (`made_current_at`), 0 only when the store never held a list;
    `dbVersionId` is the `version` every check answered from this database version carries (docs/service.md)."""
    replication = facts.replication
    synced, updated = made_current_at(status, info, replication)
    last_sync, last_update = _ms_of(synced), _ms_of(updated)
    db_state = {
        "blocked_cis": {"docCount": status.codes},
        "blocked_gtin": {"docCount": status.gtins},
        "min_price": {"docCount": _min_price_docs(info)},
    }
    replicated = _replication_fields(replication, db_state, status)
    answer = {
        "status": facts.lm_status,
        "operationMode": identity.operation_mode,
        "version": identity.software_version,
        "dbVersion": str(status.version),
        "lastSync": last_sync,
        "lastUpdate": last_update,
        "inst": identity.inst,
        "inn": identity.inn,
        "name": identity.name,
        "serviceUrl": identity.service_url,
        "requiresDownload": status.state == "empty",
        "isGreyGtin": facts.grey_list,
        "dbState": db_state,
        "dbFreshness": status.state,
        "dbAge": None if status.age is None else round(status.age, 3),
        "nextSync": 0 if status.next_sync_at is None else int(status.next_sync_at * 1000),
        "expiresAt": None if status.expires_at is None else int(status.expires_at * 1000),
        "offlineLimit": status.expire_after,
        "codes": status.codes,
        "gtins": status.gtins,
        "soldCount": facts.sold_count,
        "initialized": facts.initialized,
        "dbVersionId": facts.version_id,
        "replicationStatus": replicated,
    }
    return answer


# -- GET /api/v{1,2}/config ----------------------------------------------------------------------------------------


def public_url(url: str) -> str:
    """`url` without what may be secret in it (user and password, query, fragment): what status and config show."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def sync_kind(blocklist: Any, status: Any) -> str | None:
    """What keeps this store current, as far as the store says: "replication", "sync" or None (files only)."""
    if blocklist.get_meta(META_SOURCE):
        return "replication"
    if status.feed_url:
        return "sync"
    return None


def config_json(config: ServiceConfig, status: Any, info: dict[str, Any], replication: dict[str, Any] | None,
                kind: str | None, sold_expire_after: float, software_version: str) -> dict[str, Any]:
    """`GET /api/v{1,2}/config`: a read-only view of the settings, in the field names seen in the field (one public
    client, one emulator; docs/service.md, Config, says which and what they hold here); ours under `lmczFast`. No
    secret: no password, no token, no URL credentials."""
    source = (replication or {}).get("source") or status.feed_url or ""
    sold_days = sold_expire_after / 86400.0
    level = logging.getLogger("lmcz_fast").getEffectiveLevel()
    auth: list[dict[str, Any]] = []
    if config.auth:
        auth.append({"type": "basic", "user": config.user})
        auth.extend({"type": "token", "label": t.label,
                     "expiresAt": None if t.expires_at is None else int(t.expires_at * 1000)}
                    for t in config.tokens)
    return {
        "replicationInstUrl": public_url(source),
        "blockSyncPeriod": int(status.refresh_window),
        "soldStorePeriod": int(round(sold_days)),
        "logLevel": logging.getLevelName(level).lower(),
        "operationMode": config.operation_mode,
        "authorization": auth,
        "lmczFast": {
            "offlineLimit": int(status.expire_after),
            "refreshWindow": int(status.refresh_window),
            "soldStoreDays": sold_days,
            "maxCodes": config.max_codes,
            "maxBody": config.max_body,
            "statusAuth": config.status_auth,
            "auth": config.auth,
            "syncKind": kind,
            "isGreyGtin": info.get("grey_list_enabled") is True,
            "name": config.name,
            "softwareVersion": software_version,
        },
    }
