"""The module's own endpoints (`Endpoints`, a part of `LocalModule`): status, config, init, metrics and the status
page, and the warnings an operator must act on. It reads the module it belongs to (`module`: the store, the
settings, the status, the front and its watch, which are attached after it is built)."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from typing import TYPE_CHECKING, Any

from ...store import guard as shrink_guard
from ...store import replication_status, wake
from ..answers import Identity, ServiceFacts, config_json, public_url, status_json, sync_kind
from ..checks import query_values
from ..config import DEFAULT_PASSWORD
from ..organisations import Member
from ..page import PageData, TillSeen, render
from ..responses import Deferred, Response, encode_json, error
from ..shared import clock_behind_text

if TYPE_CHECKING:
    from ...store import Status

log = logging.getLogger("lmcz_fast.service")

_ENCODE = encode_json


def _loopback(host: str) -> bool:
    """Whether `host` (what `serve --host` was given) is reachable only from this machine."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Endpoints:
    """The module's own endpoints and warnings; `module` is the `LocalModule` they answer for (module.py, which
    builds this part: typed loosely, as an import back would be a circle)."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def handle_status(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                       content_type: bytes | None) -> Response:
        status, lm = self.module.current_status(force=True)
        info = self.module.blocklist.info()
        instance_id = str(info.get("instance_id", ""))
        caller = self.module.shared.caller
        member = caller.member if caller is not None else None
        inst = self.module.shared.instance_uuid(instance_id, caller)
        replication = replication_status(self.module.blocklist)
        inn, name = (self.module.config.inn, self.module.config.name) if member is None else (member.organisation.inn,
                                                                               member.organisation.name)
        initialized_at = self.module.initialized_at if member is None else member.initialized_at
        if member is not None and lm in ("not_configured", "initialization"):
            lm = "not_configured" if initialized_at is None else "initialization"
        identity = Identity(
            operation_mode=self.module.config.operation_mode, software_version=self.module.software_version, inst=inst,
            inn=inn, name=name, service_url=public_url((replication or {}).get("source") or status.feed_url or ""))
        facts = ServiceFacts(
            lm_status=lm, grey_list=info.get(self.module.shared.grey_field(member)) is True,
            sold_count=self.module.blocklist.sold.count(),
            initialized=initialized_at is not None, replication=replication,
            version_id=self.module.version_uuid_for(instance_id, status.version, caller) if status.version else "")
        payload = status_json(status, info, identity, facts)
        payload["roundRequest"] = self._round_request(info, status)
        if self.module.front_watch is not None:
            payload["front"] = self.module.front_watch.status()
        # What an operator must fix (the status page says it too): only to a client that authenticated, since
        # status answers anyone and a warning such as "the default password is in use" is a key to the door.
        if self.module.shared.auth_label is not None or not self.module.config.auth:
            payload["warnings"] = self.warnings()
        return Response(200, _ENCODE(payload).encode())

    def _round_request(self, info: dict[str, Any], status: Status) -> dict[str, Any]:
        """What `init` asked the store's sync or replication loop to do, and whether a loop took it (status)."""
        requested = info.get(wake.META_REQUESTED)
        taken = info.get(wake.META_TAKEN)
        return {
            "kind": sync_kind(self.module.blocklist, status) or "none",
            "requestedAt": 0 if requested is None else int(float(requested) * 1000),
            "takenAt": 0 if taken is None else int(float(taken) * 1000),
            "pending": wake.pending(info) is not None,
        }

    def handle_config(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                       content_type: bytes | None) -> Response:
        """`GET /api/v{1,2}/config`: a read-only view of the settings, in the official module's field names where
        one was seen in the field (docs/service.md lists which); ours under `lmczFast`. No secret: no password,
        no token, no URL credentials."""
        status, _ = self.module.current_status(force=True)
        config = self.module.config
        caller = self.module.shared.caller
        info = self.module.blocklist.info()
        if caller is not None:      # an organisation sees its own login, tokens, name and grey switch, nobody else's
            org = caller.member.organisation
            config = dataclasses.replace(config, user=org.user, tokens=org.tokens, name=org.name)
            info["grey_list_enabled"] = info.get(caller.member.grey_field) is True
        payload = config_json(config, status, info, replication_status(self.module.blocklist),
                              sync_kind(self.module.blocklist, status), self.module.blocklist.sold.expire_after(),
                              self.module.software_version)
        return Response(200, _ENCODE(payload).encode())

    def handle_init(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                     content_type: bytes | None) -> Response | Deferred:
        data = self.module.shared.json_body(body, content_type)
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise error(400, "bad_request", 'expected {"token": "<participant token>"}')
        clear_sold = data.get("clearSold", False)
        grey = data.get("enableGreyList")
        if not isinstance(clear_sold, bool) or not (grey is None or isinstance(grey, bool)):
            raise error(400, "bad_request", "clearSold and enableGreyList must be true or false")
        caller = self.module.shared.caller
        member = caller.member if caller is not None else None
        first = (self.module.initialized_at if member is None else member.initialized_at) is None
        if member is None:
            self.module.shared.status.initialized_at = self.module.clock()
        else:
            member.initialized_at = self.module.clock()
        if first and self.module.fronting is None:
            log.info("init received%s (token not stored; the database comes from `lmcz-fast sync`)",
                     "" if member is None else f" for inn {member.organisation.inn}")
        status, lm = self.module.current_status(force=True)
        if member is not None and lm == "not_configured":
            lm = "initialization"
        payload: dict[str, Any] = {"code": 0, "description": "ok", "status": lm,
                                   "reqTimestamp": int(self.module.clock() * 1000)}
        # On a store that is not ready, init asks its sync or replication loop for a round now (through the store:
        # the loop runs in its own process; store/wake.py), as the official module re-syncs on init.
        kind = sync_kind(self.module.blocklist, status) if status.state != "ready" else None
        started = kind is not None
        payload["started"] = kind or "none"
        if started:
            payload["description"] = (f"ok; a {kind} round was asked for now (the running `lmcz-fast "
                                      f"{'sync' if kind == 'sync' else 'replicate'} --every` loop of this store "
                                      f"starts it within {wake.POLL:g} s; status roundRequest says when it did)")
        elif status.state != "ready":
            payload["description"] = ("ok; nothing to start: no sync or replication is configured for this store "
                                      "(load a list, or run `lmcz-fast sync` / `lmcz-fast replicate`)")
        if not clear_sold and grey is None and not started:
            return Response(200, _ENCODE(payload).encode())
        register = self.module.blocklist.sold
        clear = register.op_clear(None if member is None else member.owner) if clear_sold else None
        fields: dict[str, Any] = {}
        if grey is not None:
            fields[self.module.shared.grey_field(member)] = grey
        if started:
            fields.update(wake.request_fields("init", self.module.clock()))
            log.info("init on a %s store: a %s round was asked for now", status.state, kind)
        meta = self.module.blocklist.op_set_meta(**fields) if fields else None

        def op(txn: Any) -> int:
            cleared = clear(txn) if clear is not None else 0
            if meta is not None:
                meta(txn)
            return cleared

        def build(cleared: int) -> Response:
            if clear_sold:
                log.info("init with clearSold%s: %d sold codes forgotten",
                         "" if member is None else f" of inn {member.organisation.inn}", cleared)
                payload["soldCleared"] = cleared
            if grey is not None:
                payload["enableGreyList"] = grey
                if member is not None:
                    member.grey_list = grey
            return Response(200, _ENCODE(payload).encode())

        return self.module.durable.write(op, build)

    def handle_metrics(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                        content_type: bytes | None) -> Response:
        try:
            status, lm = self.module.current_status(force=True)
        except Exception:
            log.exception("status unavailable for /metrics")
            status, lm = None, "sync_error"
        extra = dict(self.module.audit.metrics()) if self.module.audit is not None else {}
        extra.update(self.module.sold_metrics())
        cleared = getattr(self.module.blocklist, "stale_readers_cleared", None)
        replication = replication_status(self.module.blocklist) if hasattr(self.module.blocklist, "get_meta") else None
        if hasattr(self.module.blocklist, "get_meta"):
            extra.update(shrink_guard.metrics(self.module.blocklist))      # store/guard.py
        return Response(200, self.module.metrics.render(status, lm, extra, stale_readers_cleared=cleared,
                                                 replication=replication),
                        content_type=b"text/plain; version=0.0.4")

    def handle_page(self, method: bytes, query: bytes | None, body: bytes, client_id: bytes | None,
                     content_type: bytes | None) -> Response:
        """The status page for a person (service/page.py): Russian, or English with `?lang=en`."""
        lang = "en" if query_values(query, b"lang")[-1:] == ["en"] else "ru"
        caller = self.module.shared.caller
        if caller is not None:
            return self._organisation_page(caller.member, lang)
        status, lm = self.module.current_status(force=True)
        info = self.module.blocklist.info()
        now = self.module.clock()
        counts = {"blocked_codes": status.codes, "blocked_gtins": status.gtins,
                  "min_prices": int(info.get("min_prices") or 0) + int(info.get("group_min_prices") or 0),
                  "grey_gtins": int(info.get("grey_gtins") or 0), "sold": self.module.blocklist.sold.count()}
        page = PageData(
            state=status.state,
            lm_status=lm,
            now=now,
            version=status.version,
            age=status.age,
            last_sync_at=status.last_sync_at,
            next_sync_at=status.next_sync_at,
            expires_at=status.expires_at,
            source=status.feed_url or (", ".join(info.get("source") or []) or None),
            counts=counts,
            tills=sorted(self.module.activity.tills.values(), key=lambda t: t.last_request, reverse=True),
            refusals=list(self.module.activity.refusals),
            rate=self.module.activity.rate(),
            name=self.module.config.name,
            software_version=self.module.software_version,
            warnings=self.warnings(),
            failing=sorted(self.module.activity.failing.values(), key=lambda t: t.last_failure, reverse=True),
            last_error=self.module.blocklist.get_meta("sync_last_error"),
            last_error_at=self.module.blocklist.get_meta("sync_last_error_at"),
            organisations=self.module.organisations.rows() if self.module.organisations is not None else [],
            front=self.module.front_watch.status() if self.module.front_watch is not None else None,
        )
        return Response(200, render(page, lang), content_type=b"text/html; charset=utf-8")

    def _organisation_page(self, member: Member, lang: str) -> Response:
        """The status page as one organisation sees it (its tills' or its manager's login): the store's state (the
        lists are national), its own row, its own tills; nothing of the other organisations."""
        status, lm = self.module.current_status(force=True)
        info = self.module.blocklist.info()
        now = self.module.clock()
        counts = {"blocked_codes": status.codes, "blocked_gtins": status.gtins,
                  "min_prices": int(info.get("min_prices") or 0) + int(info.get("group_min_prices") or 0),
                  "grey_gtins": int(info.get("grey_gtins") or 0)}
        tills = [TillSeen(name=key, by="client-id", last_request=at) for key, at in reversed(member.tills.items())]
        page = PageData(
            state=status.state, lm_status=lm, now=now, version=status.version, age=status.age,
            last_sync_at=status.last_sync_at, next_sync_at=status.next_sync_at, expires_at=status.expires_at,
            source=None, counts=counts, tills=tills, name=member.organisation.name,
            software_version=self.module.software_version, organisations=self.module.organisations.rows(member)
            if self.module.organisations is not None else [])
        return Response(200, render(page, lang), content_type=b"text/html; charset=utf-8")

    def warnings(self) -> list[str]:
        """What an operator must fix, said on the status page and at start."""
        out = []
        config = self.module.config
        if (config.auth and self.module.organisations is None and config.password == DEFAULT_PASSWORD
                and not _loopback(config.host)):
            out.append(f"the default password admin:admin is in use while the service listens on "
                       f"{self.module.config.host}, reachable from the network: set one with `serve --password-file` "
                       f"(пароль по умолчанию при доступе из сети: задайте свой)")
        elif not self.module.config.auth and not _loopback(self.module.config.host):
            out.append(f"authentication is off while the service listens on {self.module.config.host} "
                       f"(проверка пароля отключена при доступе из сети)")
        status = self.module.shared.status.last
        if status is not None and status.clock_behind is not None:
            out.append(f"{clock_behind_text(status.clock_behind)}: checks are refused until the clock is right "
                       f"(часы отстают от времени последней синхронизации базы: проверьте время и NTP)")
        if hasattr(self.module.blocklist, "get_meta"):     # a refused full replacement (store/guard.py)
            out += [f"{text} (список не заменён: он сократился бы слишком сильно)"
                    for text in shrink_guard.warnings(self.module.blocklist)]
        if self.module.fronting is not None:
            out += self.module.fronting.warnings()
        if self.module.front_watch is not None:
            out += self.module.front_watch.warnings()
        return out
