"""Strict typed models of the Local Module's answers, written from public clients' field types.

Sources (../shared/domain.md, "The official module's second protocol"): shrayky/FMU-API (C#, System.Text.Json):
`LocalModuleState.cs` (status), `CheckMarksDataAnswerTrueApi.cs` (the check envelope), `CodeDataTrueApi.cs` (one
code), `LocalModuleServiceV2.cs` (`{"results": [...]}`); lalexs75/crpt_true_api (FPC):
`crptLocalTrueAPITypesUnit.pas` (`TLCServerStatus`, `TLCResult`, `TLCResultItem`, `TLCCodeInfo`); the notes for
the sold register and `dbState`.

The decoder is as strict as System.Text.Json without lenient options: a string field takes only a JSON string, a
`long` only an integer in int64 range, an `int` only one in int32 range, a `bool` only true/false, and null only
where the client declares a nullable type (`int?`, `string?`, `List<int>?`). Unknown fields are ignored, as those
clients ignore them. `required` lists the fields our answer promises (a C# client would silently take a default
for a missing one, which would hide a missing field from this test).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any


class ContractError(AssertionError):
    """An answer a strict typed client would fail to decode (or that misses a promised field)."""


@dataclass(frozen=True)
class Spec:
    kind: str                                   # string, int32, int64, bool, datetime, list, object, nullable,
                                                # count (an int64 or the string "unknown")
    inner: Spec | None = None
    fields: dict[str, Spec] = field(default_factory=dict)
    required: frozenset[str] = frozenset()


STRING = Spec("string")
INT32 = Spec("int32")
INT64 = Spec("int64")
BOOL = Spec("bool")
DATETIME = Spec("datetime")


def nullable(inner: Spec) -> Spec:
    return Spec("nullable", inner)


def list_of(inner: Spec) -> Spec:
    return Spec("list", inner)


def obj(fields: dict[str, Spec], required: set[str] | None = None) -> Spec:
    return Spec("object", fields=fields, required=frozenset(fields if required is None else required))


def decode(value: Any, spec: Spec, path: str = "$") -> Any:
    """Check `value` against `spec`; raise `ContractError` naming the path of the first mismatch."""
    kind = spec.kind
    if kind == "nullable":
        assert spec.inner is not None
        return None if value is None else decode(value, spec.inner, path)
    if value is None:
        raise ContractError(f"{path}: null where the client declares a non-nullable {kind}")
    if kind == "string":
        if not isinstance(value, str):
            raise ContractError(f"{path}: {type(value).__name__} {value!r} where the client declares a string")
    elif kind in ("int32", "int64"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ContractError(f"{path}: {type(value).__name__} {value!r} where the client declares an {kind}")
        bits = 31 if kind == "int32" else 63
        if not -(1 << bits) <= value < 1 << bits:
            raise ContractError(f"{path}: {value} is out of {kind} range")
    elif kind == "count":
        if value != "unknown" and (not isinstance(value, int) or isinstance(value, bool) or not
                                   -(1 << 63) <= value < 1 << 63):
            raise ContractError(f"{path}: {value!r} where the client declares an int64 or \"unknown\"")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ContractError(f"{path}: {type(value).__name__} {value!r} where the client declares a bool")
    elif kind == "datetime":
        if not isinstance(value, str):
            raise ContractError(f"{path}: {value!r} where the client declares a DateTime (an ISO 8601 string)")
        try:
            datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ContractError(f"{path}: {value!r} is not an ISO 8601 date") from None
    elif kind == "list":
        if not isinstance(value, list):
            raise ContractError(f"{path}: {type(value).__name__} where the client declares a list")
        assert spec.inner is not None
        for index, item in enumerate(value):
            decode(item, spec.inner, f"{path}[{index}]")
    elif kind == "object":
        if not isinstance(value, dict):
            raise ContractError(f"{path}: {type(value).__name__} where the client declares an object")
        for name in spec.required - value.keys():
            raise ContractError(f"{path}.{name}: missing")
        for name, sub in spec.fields.items():
            if name in value:
                decode(value[name], sub, f"{path}.{name}")
    else:  # pragma: no cover - a typo in a model
        raise ValueError(kind)
    return value


# -- the models -------------------------------------------------------------------------------------------------

#: FMU-API `LocalModuleState` + lalexs75 `TLCServerStatus` (+ `isGreyGtin`) + the notes' v2 `dbState`.
#: (lalexs75 declares `requiresDownload` a string; FMU-API and the notes a bool, which is what is sent.)
DOC_COUNT = obj({"docCount": INT64})
STATUS = obj({
    "version": STRING, "status": STRING, "serviceUrl": STRING, "operationMode": STRING, "name": STRING,
    "lastUpdate": INT64, "lastSync": INT64, "inst": STRING, "inn": STRING, "dbVersion": STRING,
    "requiresDownload": BOOL, "isGreyGtin": BOOL,
    "dbState": obj({"blocked_cis": DOC_COUNT, "blocked_gtin": DOC_COUNT, "min_price": DOC_COUNT}),
})

#: FMU-API `CodeDataTrueApi` (+ `isGreyGtin`, from the notes and the v2 answer); `required` is what we send.
CODE = obj({
    "cis": STRING, "found": BOOL, "gtin": STRING, "isBlocked": BOOL, "printView": STRING, "realizable": BOOL,
    "sold": BOOL, "utilised": BOOL, "valid": BOOL, "verified": BOOL, "groupIds": nullable(list_of(INT32)),
    "message": nullable(STRING), "isOwner": BOOL, "productionDate": DATETIME, "prVetDocument": nullable(STRING),
    "errorCode": INT32, "isTracking": BOOL, "packageType": nullable(STRING), "producerInn": nullable(STRING),
    "grayZone": BOOL, "mrp": nullable(INT32), "smp": nullable(INT32), "expireDate": nullable(DATETIME),
    "innerUnitCount": nullable(INT32), "soldUnitCount": nullable(INT32), "isGreyGtin": BOOL,
}, required={"cis", "gtin", "printView", "isBlocked", "isGreyGtin", "sold", "mrp", "smp", "found", "valid",
             "verified", "realizable", "utilised", "groupIds"})

#: FMU-API `CheckMarksDataTrueApi` = lalexs75 `TLCResultItem`: the envelope of one check answer.
ENVELOPE = obj({"code": INT32, "description": STRING, "reqId": STRING, "reqTimestamp": INT64, "inst": STRING,
                "version": STRING, "codes": list_of(CODE)})

#: FMU-API `LocalModuleResponseWrapper` = lalexs75 `TLCResult`: protocol 2's check answer.
RESULTS = obj({"results": list_of(ENVELOPE)})

#: The notes' sold register: sell/return answer and the `cis/sold` page.
SALE_RESULTS = obj({"results": list_of(obj({"success": BOOL, "cis": STRING}))})
SOLD_PAGE = obj({"total_count": INT64, "cis_list": list_of(STRING)})

#: FMU-API V1 decodes a non-200 check answer as `CheckMarksDataTrueApi` to log its `description`; every error
#: body must therefore decode as an envelope, of which an error sends `code` and `description` (+ `errorCode`).
ERROR = obj({"code": INT32, "description": STRING, "reqId": STRING, "reqTimestamp": INT64, "inst": STRING,
             "version": STRING, "codes": list_of(CODE), "errorCode": INT32},
            required={"code", "description", "reqTimestamp"})

#: init's and greyList's answers: clients only look at the HTTP status; what we send must still be typed.
ACK = obj({"code": INT32, "description": STRING, "reqTimestamp": INT64, "status": STRING,
           "enableGreyList": BOOL}, required={"code", "description"})


# -- field fidelity (issue 20): the models of the clients surveyed in ../shared/domain.md, "What clients in the field
# send and expect" ----------------------------------------------------------------------------------------------

COUNT = Spec("count")

#: LM 1.x `replicationStatus.{db}`: numbers or the string "unknown" (the C# client's integration test reads
#: `blocked_series.localDocCount`; the official module answers "unknown" where it does not know).
REPLICATION_DB = obj({"localDocCount": COUNT, "serverDocCount": COUNT, "timeLag": COUNT})

#: Status as the strictest surveyed client decodes it: FMU-API `LocalModuleState` (strings, int64 ms, a bool), Evotor
#: (`lastSync` a Long of Unix ms, 0 before initialisation), the Zabbix template's JSON paths, LM 1.x's
#: `replicationStatus` for its four databases, and our `dbVersionId` (the check's `version` of this database).
STATUS_FIELD = obj({
    **STATUS.fields,
    "replicationStatus": obj({name: REPLICATION_DB for name in ("cis", "blocked_cis", "blocked_gtin",
                                                                "blocked_series")}),
    "dbVersionId": STRING,
})

#: Evotor's check model (Java): `mrp`/`smp` nullable Integer, booleans boxed but never null in an answer, the
#: check's `version` a String ("the version of the blocklist database").
EVOTOR_CODE = obj({"cis": STRING, "isBlocked": BOOL, "sold": BOOL, "mrp": nullable(INT32), "smp": nullable(INT32),
                   "gtin": STRING, "isGreyGtin": BOOL})
EVOTOR_ENVELOPE = obj({"code": INT32, "reqId": STRING, "reqTimestamp": INT64, "inst": STRING, "version": STRING,
                       "codes": list_of(EVOTOR_CODE)})

#: lalexs75/crpt_true_api (FPC) `TLCResultItem`/`TLCCodeInfo`: the same fields, FPC's JSON objects as strict
#: (a string stays a string; `groupIds` an array of integers).
PASCAL_CODE = obj({"cis": STRING, "gtin": STRING, "printView": STRING, "groupIds": list_of(INT32),
                   "found": BOOL, "valid": BOOL, "verified": BOOL, "realizable": BOOL, "utilised": BOOL,
                   "sold": BOOL, "isBlocked": BOOL, "ogvs": list_of(STRING)})
PASCAL_ENVELOPE = obj({"code": INT32, "description": STRING, "reqId": STRING, "reqTimestamp": INT64,
                       "inst": STRING, "version": STRING, "codes": list_of(PASCAL_CODE)})

#: `GET /api/v{1,2}/config` in the field names seen (one public client, one emulator); ours under `lmczFast`.
CONFIG = obj({"replicationInstUrl": STRING, "blockSyncPeriod": INT64, "soldStorePeriod": INT64, "logLevel": STRING,
              "operationMode": STRING,
              "authorization": list_of(obj({"type": STRING, "user": STRING, "label": STRING,
                                            "expiresAt": nullable(INT64)}, required={"type"})),
              "lmczFast": obj({"offlineLimit": INT64, "maxCodes": INT64, "statusAuth": BOOL,
                               "syncKind": nullable(STRING)})})
