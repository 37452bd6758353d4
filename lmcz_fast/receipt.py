"""Fiscal tag 1265 pieces: the version UUID of a database version, request ids, the tag's text.

An offline check's tag 1265 ("отраслевой реквизит чека") is `UUID=<request id>&Time=<ms>&Inst=<instance>&Ver=<db
version>`. The official Local Module sends UUIDs for `Inst` and `Ver`; ours are derived (UUIDv5) from the database's
instance id and its integer version, so the same database version gives the same `Ver=` from every surface (`serve`
and its `version` field, the till-side checker's in-process answer) and in every process. Everything here is pure:
no clock, no I/O; `service` and `checker` both import it (it imports nothing of the project).
"""

from __future__ import annotations

import random
import uuid
from functools import lru_cache

__all__ = ["VERSION_NAMESPACE", "instance_uuid", "request_id", "tag_1265", "version_uuid"]

#: Namespace of the derived instance UUIDs (an instance id that is not a UUID itself).
VERSION_NAMESPACE = uuid.UUID("6f1d2b6e-7d0a-5c43-9a43-2f0f5b1c9e11")


@lru_cache(maxsize=64)
def instance_uuid(instance_id: str) -> str:
    """The UUID sent as `inst` (and `Inst=`): the instance id itself when it is a UUID, else one derived from it."""
    try:
        return str(uuid.UUID(instance_id))
    except (ValueError, TypeError, AttributeError):
        return str(uuid.uuid5(VERSION_NAMESPACE, f"instance:{instance_id}"))


@lru_cache(maxsize=256)
def version_uuid(instance_id: str, db_version: int) -> str:
    """The UUID sent as `version` (and `Ver=`) for one database version of one instance: UUIDv5 of the version in
    the instance's UUID, so it is stable, the same in every process serving that version, and mappable back."""
    return str(uuid.uuid5(uuid.UUID(instance_uuid(instance_id)), f"db-version:{int(db_version)}"))


_RANDOM_128 = random.SystemRandom().getrandbits
#: The bits a UUID version 4 of RFC 4122 fixes: version (4) in bits 76-79, variant (10) in bits 62-63.
_V4_KEEP = ((1 << 128) - 1) & ~((0xF << 76) | (0x3 << 62))
_V4_SET = (0x4 << 76) | (0x2 << 62)


def request_id() -> str:
    """A new request id (`reqId`, `UUID=`): a random UUID version 4, variant RFC 4122, in its canonical text
    (`str(uuid.UUID(int=..., version=4))`, formatted here without the `UUID` object: a till's every check makes one).

    The bits come from the system's generator (`os.urandom`): two workers never share a sequence, and an application
    that calls `random.seed(...)` never repeats an id."""
    h = "%032x" % (_RANDOM_128(128) & _V4_KEEP | _V4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def tag_1265(req_id: str, req_timestamp_ms: int, inst: str, version: str) -> str:
    """The text of tag 1265 for an offline answer."""
    return f"UUID={req_id}&Time={req_timestamp_ms}&Inst={inst}&Ver={version}"
