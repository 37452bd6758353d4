"""What the parts of a `LocalModule` share, handed to each when it is built: the store, the settings, the metrics,
the audit log, the clock, the activity board, who the request being handled is, and two small helpers every
answer needs (`StatusView`: the store's status, cached; the UUIDs of an instance and a database version).

The parts (`checks.Checks`, `v2.ProtocolTwo`, `sold.SoldEndpoints`, `durable.DurableWriter`) read this one object;
none reaches into another part. `LocalModule` (api/) owns it and sets the request fields on each request.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..receipt import instance_uuid, version_uuid
from .config import ERROR_NOT_READY, ERROR_SYNC, ServiceConfig
from .metrics import Metrics, OncePer
from .organisations import Caller
from .page import Activity
from .responses import HttpError, Response, encode_json, error

if TYPE_CHECKING:
    from ..audit import AuditLog
    from .organisations import Member, Organisations
    from ..store import Blocklist, Status

log = logging.getLogger("lmcz_fast.service")

_LM_STATUS = {"ready": "ready", "stale": "ready", "expired": "sync_error", "empty": "not_configured"}
_JSON = json.JSONDecoder(strict=False)
_BOM = b"\xef\xbb\xbf"
_STALE_LOG_EVERY = 600.0


def _json_media_type(content_type: bytes | None) -> bool:
    if content_type is None:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media in (b"application/json", b"text/json") or media.endswith(b"+json")


def span(seconds: float) -> str:
    """An offline limit in words: '72 h', '90 min', '45 s'."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:g} s"


def clock_behind_text(seconds: float) -> str:
    """The one sentence every surface says about a clock behind the store's own records."""
    return (f"this machine's clock reads {span(seconds)} before the store's last sync or load: the clock is "
            f"behind (a dead CMOS battery, NTP not running?), and the store's age cannot be measured by it")


def _ms(moment: float | None) -> int | None:
    return None if moment is None else int(moment * 1000)


def _utc(moment: float | None) -> str:
    return "-" if moment is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(moment))


class StatusView:
    """The store's `Status` and the LM status it maps to, re-read at most every `status_cache` seconds, with the
    grey-list switches read alongside (the store's, and each organisation's when `organisations` is set); logs the store's state changes (and a stale store every 10 minutes)."""

    def __init__(self, blocklist: Blocklist, status_cache: Callable[[], float]) -> None:
        self._blocklist = blocklist
        self._status_cache = status_cache
        #: When `init` first came (None: never); the LM status of an empty store is then "initialization".
        self.initialized_at: float | None = None
        #: The grey-list switch as read with the last status (`grey_list_enabled` re-reads when due).
        self.grey_list = False
        #: The organisations served (`Shared.organisations`), whose own switches are read with the status; or None.
        self.organisations: Organisations | None = None
        self._status: Status | None = None
        self._lm_status = "not_configured"
        self._until = 0.0
        self._last_state: str | None = None
        self._stale_logged_at = 0.0

    @property
    def last(self) -> Status | None:
        """The status last read (None before the first), without reading it again."""
        return self._status

    def forget(self) -> None:
        """Re-read at the next question: a write (init, greyList) may have changed what the status says."""
        self._until = 0.0

    def current(self, force: bool = False) -> tuple[Status, str]:
        """The store's `Status` and the LM status it maps to, re-read at most every `status_cache` seconds."""
        now = time.monotonic()
        if force or self._status is None or now >= self._until:
            status = self._blocklist.status()
            self.grey_list = self._blocklist.get_meta("grey_list_enabled", False) is True
            if self.organisations is not None:
                self.organisations.read_switches()
            lm = _LM_STATUS.get(status.state, "sync_error")
            if lm == "not_configured" and self.initialized_at is not None:
                lm = "initialization"
            self._status, self._lm_status = status, lm
            self._until = now + self._status_cache()
            self._log_transition(status, now)
        assert self._status is not None
        return self._status, self._lm_status

    def _log_transition(self, status: Status, now: float) -> None:
        age = "never synced" if status.age is None else f"last sync {status.age / 3600:.1f} h ago"
        if status.clock_behind is not None:
            age = clock_behind_text(status.clock_behind)
        if status.state != self._last_state:
            level = logging.INFO if status.state == "ready" else logging.WARNING
            log.log(level, "database state %s -> %s (version %d, %s)", self._last_state, status.state,
                    status.version, age)
            self._last_state = status.state
            self._stale_logged_at = now
        elif status.state in ("stale", "expired") and now - self._stale_logged_at >= _STALE_LOG_EVERY:
            log.warning("database is %s: version %d, %s; checks %s", status.state, status.version, age,
                        "still served" if status.state == "stale" else "refused (4050)")
            self._stale_logged_at = now

    def grey_list_enabled(self) -> bool:
        """Whether `isGreyGtin` answers from the grey-GTIN list (`init`/`greyList` `enableGreyList`; a meta field),
        read with the status (at most every `status_cache` seconds; at once after this module changed it). The
        store's switch: a request of an organisation answers by its own (`Member.grey_list`)."""
        self.current()
        return self.grey_list

    def require_ready(self) -> Status:
        """The status if checks may be answered, else the LM's refusal (4045 not ready, 4050 sync error)."""
        status, lm = self.current()
        if lm == "ready":
            return status
        if lm == "sync_error" and status.clock_behind is not None:
            raise error(400, "sync_error", f"{clock_behind_text(status.clock_behind)}: checks are refused until "
                        "the clock is right", errorCode=ERROR_SYNC, status=lm, offlineLimit=status.expire_after,
                        expiresAt=_ms(status.expires_at), clockBehind=round(status.clock_behind, 3))
        if lm == "sync_error":
            raise error(400, "sync_error",
                        f"no successful sync within the offline limit ({span(status.expire_after)}): checks are "
                        f"refused since {_utc(status.expires_at)}",
                        errorCode=ERROR_SYNC, status=lm, offlineLimit=status.expire_after,
                        expiresAt=_ms(status.expires_at))
        raise error(400, lm, "the local module is not configured or still initialising: no database loaded",
                    errorCode=ERROR_NOT_READY, status=lm)


class Shared:
    """What every part of one `LocalModule` reads: handed to each part when the module is built.

    `config` may be replaced (serve's SIGHUP: a new password or tokens); the parts read it here on each request.
    `peer`, `auth_label`, `endpoint` and `started` describe the request being handled (set by `LocalModule.handle`;
    one event loop owns the module, so one request at a time)."""

    def __init__(self, blocklist: Blocklist, config: ServiceConfig, audit: AuditLog | None, metrics: Metrics,
                 clock: Callable[[], float]) -> None:
        self.blocklist = blocklist
        self.config = config
        self.audit = audit
        self.metrics = metrics
        self.clock = clock
        self.activity = Activity(clock)
        self.status = StatusView(blocklist, lambda: self.config.status_cache)
        #: The address of the request being handled (the status page names a till by it).
        self.peer: str | None = None
        #: Who the request being handled authenticated as ("basic:<user>", "token:<label>"), or None.
        self.auth_label: str | None = None
        #: The endpoint and start (perf_counter) of the request being handled: a deferred answer is observed
        #: under them once committed.
        self.endpoint = "other"
        self.started = 0.0
        #: The organisations served (`serve --organisations`; organisations.py), or None: one, as the official one.
        self.organisations: Organisations | None = None
        #: The organisation the request being handled authenticated as (its `Caller`), or None.
        self.caller: Caller | None = None
        #: What the audit lines of the check being answered add to their outcome ("local:<reason>" while a fronted
        #: check is answered locally, service/fronting.py), or None.
        self.audit_tag: str | None = None
        self._nested_json_log = OncePer(log, 60.0)
        self._inst = ""
        self._inst_source: str | None = None
        self._version_uuids: dict[int, str] = {}

    # -- identity of the instance and the database version (fiscal tag 1265) ----------------------------------

    def instance_uuid(self, instance_id: str, who: Any = None) -> str:
        """The UUID sent as `inst` for an instance id (cached; a new id clears the version cache); for a request of
        an organisation (`who` its `Caller`), the organisation's own."""
        if who.__class__ is Caller:
            return who.member.inst  # type: ignore[no-any-return]
        if instance_id != self._inst_source:
            self._inst = instance_uuid(instance_id)
            self._inst_source = instance_id
            self._version_uuids.clear()
        return self._inst

    def version_uuid(self, instance_id: str, db_version: int, who: Any = None) -> str:
        """The UUID sent as `version` (and `Ver=` of tag 1265) for one database version of one instance.

        The official module sends a UUID there; ours is derived (UUIDv5) from the instance and the integer
        version, so it is stable, the same in every process serving that version, and mappable back. For a request
        of an organisation (`who` its `Caller`), derived from the organisation's instance.
        """
        if who.__class__ is Caller:
            return who.member.version_uuid(db_version)  # type: ignore[no-any-return]
        self.instance_uuid(instance_id)           # a new instance id clears the cache below
        found = self._version_uuids.get(db_version)
        if found is None:
            found = version_uuid(instance_id, db_version)
            self._version_uuids[db_version] = found
        return found

    # -- what every handler needs -------------------------------------------------------------------------------

    @staticmethod
    def grey_field(member: Member | None) -> str:
        """The metadata field of the grey-list switch a request sets (`enableGreyList`): the store's, or for a
        request of an organisation (`member`) its own."""
        return "grey_list_enabled" if member is None else member.grey_field

    def audit_who(self) -> str | Caller | None:
        """What the audit log records of who asked: the token's label; None for HTTP Basic (one user) or none. A
        request of an organisation: its `Caller` (the label and the INN; the check path reads the organisation's
        identity from it, as the request's own, across the slices of a big request)."""
        if self.caller is not None:
            return self.caller
        label = self.auth_label
        return label if label is not None and label.startswith("token:") else None

    def organisation_saw(self, who: Any, client: str | None, codes: int = 0, refused: int = 0,
                         peer: str | None = None) -> None:
        """Count a check request (`codes` asked about, `refused` of them) for the organisation of `who`, if any;
        `peer`: the till's address when the request is not the one being handled (default: that one's)."""
        if who.__class__ is Caller:
            member = who.member
            if codes:
                member.checks += 1
                member.codes += codes
                member.saw(client, self.peer if peer is None else peer, self.clock())
            member.refusals += refused

    def json_body(self, body: bytes, content_type: bytes | None) -> Any:
        """A request's JSON body, or the 400/415 that says what is wrong with it."""
        if content_type != b"application/json" and not _json_media_type(content_type):
            raise error(415, "unsupported_media_type", "send the body as application/json")
        if not body:
            raise error(400, "empty_body", "the request has no JSON body")
        try:
            # utf-8-sig is utf-8 once a BOM is off; without one, the plain (faster) decoder, the same errors
            return _JSON.decode(body.decode("utf-8-sig") if body.startswith(_BOM) else body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise error(400, "bad_encoding", f"the body is not UTF-8 (byte {exc.start})") from None
        except ValueError as exc:
            raise error(400, "bad_json", f"malformed JSON: {exc}") from None
        except RecursionError:
            self._nested_json_log.warning("refused a JSON body of %d bytes nested too deeply (400 bad_json)", len(body))
            raise error(400, "bad_json", "malformed JSON: nested too deeply") from None

    def error_response(self, exc: HttpError) -> Response:
        """The JSON answer of an `HttpError`: the LM's `code`/`error`/`description`, its extra fields, `Allow` on a
        405, the authentication challenges on a 401."""
        body: dict[str, Any] = {"code": exc.extra.get("errorCode", exc.status), "error": exc.error,
                                "description": exc.description}
        headers = b""
        for name, value in exc.extra.items():
            if name == "allow":
                headers += b"Allow: " + value.encode() + b"\r\n"
            else:
                body[name] = value
        if exc.status == 401:
            headers += b'WWW-Authenticate: Basic realm="lmcz-fast", charset="UTF-8"\r\n'
            if self.config.tokens or (self.organisations is not None and self.organisations.has_tokens):
                headers += b'WWW-Authenticate: Token realm="lmcz-fast"\r\n'
        body["reqTimestamp"] = int(self.clock() * 1000)
        return Response(exc.status, encode_json(body).encode(), headers,
                        close=exc.status in (413, 431))
