from collections.abc import Callable
from typing import Any

from typing_extensions import disjoint_base

@disjoint_base
class Envelope:
    req_id: str
    req_ms: int
    inst: str
    version: str
    freshness: str
    grey: bool
    audit_client: str | None
    audit_tail: str
    audit_tag: str
    def __init__(
        self,
        req_id: str,
        req_ms: int,
        inst: str,
        version: str,
        freshness: str,
        grey: bool,
        audit_client: str | None = None,
        audit_tail: str = "",
        audit_tag: str = "",
    ) -> None: ...

@disjoint_base
class Answers:
    def __init__(self, unreadable_type: type, error_unreadable: int) -> None: ...
    def v1(self, answers: list[Any], head: Envelope) -> tuple[bytes, str | None, int, int]: ...
    def v2(
        self,
        answers: list[Any],
        pgs: list[int | None],
        ids: bytes,
        head: Envelope,
        db_version: int | None,
        uuids: Callable[[str, int], tuple[str, str]],
    ) -> tuple[bytes, str, int, int]: ...

    def v1_batches(
        self, batches: list[Any], unreadable: dict[int, Any], head: Envelope
    ) -> tuple[bytes, str | None, int, int]: ...
    def v2_batches(
        self,
        batches: list[Any],
        unreadable: dict[int, Any],
        pgs: list[int | None],
        ids: bytes,
        head: Envelope,
        db_version: int | None,
        uuids: Callable[[str, int], tuple[str, str]],
    ) -> tuple[bytes, str, int, int]: ...

def request_id(raw: bytes) -> str: ...
def cis_list(body: bytes) -> list[str] | None: ...
def too_long(raws: list[Any], max_len: int) -> list[int]: ...
def json_text(value: object) -> str: ...
