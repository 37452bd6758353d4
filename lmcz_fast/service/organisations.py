"""Several organisations, one module (`serve --organisations FILE`): who they are, how their tills authenticate,
what each one sees of the module, and what the service counts for each.

The official Local Module serves one organisation (its participant token is its own). Here one store and one
process serve several: the national lists (blocked codes and GTINs, minimum prices, grey GTINs) are one copy shared
by all, while each organisation has its own credentials, its own instance UUID (`inst`, fiscal tag 1265; one per
organisation, kept in the store's metadata as `organisation_instance:<INN>` so it survives restarts), its own
`init` state, its own grey-list switch (`enableGreyList`; the metadata field `organisation_grey_list:<INN>`, durable
with the answer as the store's own `grey_list_enabled` is) and its own share of the sold register (store/sold/,
"Organisations").

The file is TOML, one `[[organisation]]` table each (docs/service.md, "Several organisations"):

    [[organisation]]
    inn = "7701234567"                 # 10 or 12 digits, unique
    name = "ООО Ромашка"
    user = "romashka"                  # HTTP Basic user of its tills, unique across the file
    password_file = "romashka.password"  # relative to the organisations file's directory
    token_file = "romashka.tokens"     # optional: `Authorization: Token` tokens (the --token-file format)
    page_user = "romashka-manager"     # optional, with page_password_file: a read-only login to the status page
    page_password_file = "romashka.page"
    earlier_sales = true               # optional, at most one: owns sales recorded before the file (no organisation)

`Organisations` is the part of `LocalModule` that holds them: it authenticates a request to one organisation (or
none), answers its identity, and counts per organisation what the status page and /metrics show. `configure`
replaces the whole set (SIGHUP) and keeps the counters and the `init` state of the organisations that stay.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hmac
import logging
import os
import time
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..receipt import instance_uuid, version_uuid
from ..secret_files import first_line
from ..store import SoldOwner
from .config import Token, read_token_file
from .metrics import OncePer

if TYPE_CHECKING:
    from ..store import Blocklist

log = logging.getLogger("lmcz_fast.service")

#: The metadata field holding one organisation's instance id (a UUID made the first time it is served).
META_INSTANCE = "organisation_instance:"
#: The metadata field holding one organisation's grey-list switch (`init`/`greyList` `enableGreyList`; absent: off).
META_GREY = "organisation_grey_list:"
#: Tills remembered per organisation for the status page (the oldest seen is forgotten first).
MAX_TILLS = 256
_KEYS = frozenset({"inn", "name", "user", "password_file", "token_file", "page_user", "page_password_file",
                   "earlier_sales"})


class OrganisationsError(ValueError):
    """An organisations file that cannot be used, said in words (the file and the organisation it is about)."""


@dataclass(frozen=True)
class Organisation:
    """One organisation of the file: never logged with its secrets (`__repr__` hides them)."""

    inn: str
    name: str
    user: str
    password: str
    tokens: tuple[Token, ...] = ()
    page_user: str | None = None
    page_password: str | None = None
    #: Owns the sales recorded before the organisations file (records that name no organisation).
    earlier_sales: bool = False

    def __repr__(self) -> str:
        return (f"Organisation(inn={self.inn!r}, name={self.name!r}, user={self.user!r}, password=<hidden>, "
                f"tokens={len(self.tokens)}, page_user={self.page_user!r})")


def _valid_inn(inn: Any) -> bool:
    return isinstance(inn, str) and inn.isascii() and inn.isdigit() and len(inn) in (10, 12)


def _secret(base: str, value: Any, what: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise OrganisationsError(f"{where}: `{what}` must be the name of a file")
    path = os.path.join(base, value)
    try:
        secret = first_line(path, what.replace("_", " "))
    except OSError as exc:
        raise OrganisationsError(f"{where}: cannot read its {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise OrganisationsError(f"{where}: its {what} {path} is not UTF-8 text") from None
    if not secret:
        raise OrganisationsError(f"{where}: the first line of its {what} {path} is empty")
    return secret


def _organisation(table: Any, base: str, where: str) -> Organisation:
    if not isinstance(table, dict):
        raise OrganisationsError(f"{where}: expected a table of keys")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise OrganisationsError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
    inn = table.get("inn")
    if not _valid_inn(inn):
        raise OrganisationsError(f"{where}: `inn` must be a string of 10 or 12 digits (quote it: inn = \"7701234567\")")
    where = f"{where} (inn {inn})"
    name, user = table.get("name"), table.get("user")
    if not isinstance(name, str) or not name.strip():
        raise OrganisationsError(f"{where}: `name` must be a non-empty string")
    if not isinstance(user, str) or not user or ":" in user:
        raise OrganisationsError(f"{where}: `user` must be a non-empty string without ':'")
    earlier = table.get("earlier_sales", False)
    if not isinstance(earlier, bool):
        raise OrganisationsError(f"{where}: `earlier_sales` must be true or false")
    tokens: tuple[Token, ...] = ()
    if table.get("token_file") is not None:
        path = os.path.join(base, str(table["token_file"]))
        try:
            tokens = read_token_file(path)
        except ValueError as exc:
            raise OrganisationsError(f"{where}: {exc}") from None
    page_user = table.get("page_user")
    page_password = None
    if (page_user is None) != (table.get("page_password_file") is None):
        raise OrganisationsError(f"{where}: give `page_user` and `page_password_file` together")
    if page_user is not None:
        if not isinstance(page_user, str) or not page_user or ":" in page_user:
            raise OrganisationsError(f"{where}: `page_user` must be a non-empty string without ':'")
        page_password = _secret(base, table["page_password_file"], "page_password_file", where)
    return Organisation(inn, name.strip(), user, _secret(base, table.get("password_file"), "password_file", where),
                        tokens, page_user, page_password, earlier)


def parse_organisations(text: str, source: str = "the organisations file", base: str = ".") -> tuple[Organisation,
                                                                                                     ...]:
    """The organisations of a file's TOML text; secret files named in it are read relative to `base`.
    `OrganisationsError` in words for anything wrong: bad TOML, a missing key, an INN, user, page user or token
    given twice, more than one `earlier_sales`, no organisation at all."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise OrganisationsError(f"{source} is not valid TOML: {exc}") from None
    extra = sorted(set(data) - {"organisation"})
    if extra:
        raise OrganisationsError(f"{source}: unknown top-level key(s) {', '.join(extra)}; write one "
                                 "[[organisation]] table per organisation")
    tables = data.get("organisation")
    if not isinstance(tables, list) or not tables:
        raise OrganisationsError(f"{source} names no organisation: write one [[organisation]] table per organisation")
    out = [_organisation(table, base, f"{source}, organisation {number}") for number, table in enumerate(tables, 1)]
    users: set[str] = set()
    secrets: set[bytes] = set()
    for org in out:
        if sum(o.inn == org.inn for o in out) > 1:
            raise OrganisationsError(f"{source}: inn {org.inn} is given twice")
        for login in (org.user, org.page_user):
            if login is not None and login in users:
                raise OrganisationsError(f"{source}: the login {login!r} (inn {org.inn}) is used twice: each "
                                         "login names one organisation")
            if login is not None:
                users.add(login)
        for token in org.tokens:
            if token.secret in secrets:
                raise OrganisationsError(f"{source}: a token of inn {org.inn} ({token.label}) is also another "
                                         "organisation's: each token names one organisation")
            secrets.add(token.secret)
    if sum(org.earlier_sales for org in out) > 1:
        raise OrganisationsError(f"{source}: `earlier_sales = true` is given to more than one organisation")
    return tuple(out)


def read_organisations(path: str | os.PathLike[str]) -> tuple[Organisation, ...]:
    """`parse_organisations` of the file at `path` (its secret files relative to its directory)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise OrganisationsError(f"cannot read the organisations file {path}: "
                                 f"{getattr(exc, 'strerror', None) or exc}") from None
    return parse_organisations(text, f"the organisations file {path}", os.path.dirname(os.path.abspath(path)))


class Caller:
    """Who a request of an organisation is: what the audit log records (`label`: a token's "token:<label>", None
    for HTTP Basic; `inn`) and the organisation's `Member`. Made once per credential, reused by every request."""

    __slots__ = ("label", "inn", "member", "auth_label")

    def __init__(self, member: Member, label: str | None, auth_label: str) -> None:
        self.member = member
        self.label = label
        self.inn = member.organisation.inn
        self.auth_label = auth_label


class Member:
    """One organisation being served: its settings, its identity (instance UUID, version UUIDs), its `init` state,
    its grey-list switch and what the service counted for it (tills seen, check requests, codes refused, failed
    logins)."""

    def __init__(self, organisation: Organisation, instance_id: str) -> None:
        self.organisation = organisation
        self.instance_id = instance_id
        self.inst = instance_uuid(instance_id)
        self.owner = SoldOwner(organisation.inn, organisation.earlier_sales)
        self.initialized_at: float | None = None
        #: Whether `isGreyGtin` answers from the grey-GTIN list for this organisation's tills (`META_GREY`, as
        #: read with the store's status: `Organisations.read_switches`).
        self.grey_list = False
        #: The metadata field of that switch.
        self.grey_field = META_GREY + organisation.inn
        self.tills: collections.OrderedDict[str, float] = collections.OrderedDict()
        self.requests = 0
        self.checks = 0
        self.codes = 0
        self.refusals = 0
        self.auth_failures = 0
        self._versions: dict[int, str] = {}

    def version_uuid(self, db_version: int) -> str:
        """The UUID this organisation's answers send as `version` (and `Ver=`) for one database version."""
        found = self._versions.get(db_version)
        if found is None:
            if len(self._versions) > 64:
                self._versions.clear()
            found = self._versions[db_version] = version_uuid(self.instance_id, db_version)
        return found

    def saw(self, client: str | None, peer: str | None, now: float) -> None:
        """Count one request of a till of this organisation (named by X-ClientId, else its address)."""
        self.requests += 1
        key = client or peer
        if key is None:
            return
        tills = self.tills
        if key in tills:
            tills.move_to_end(key)
        elif len(tills) >= MAX_TILLS:
            tills.popitem(last=False)
        tills[key] = now


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


class Organisations:
    """The organisations a `LocalModule` serves (a part of it, built from `ServiceConfig.organisations`)."""

    def __init__(self, blocklist: Blocklist, organisations: tuple[Organisation, ...],
                 clock: Callable[[], float] = time.time) -> None:
        self._blocklist = blocklist
        self._clock = clock
        self.members: dict[str, Member] = {}
        self._by_header: dict[bytes, Caller] = {}
        self._by_user: dict[bytes, tuple[bytes, Caller]] = {}
        self._tokens: tuple[tuple[Token, Caller], ...] = ()
        self._pages: dict[bytes, Member] = {}
        self._expired_log = OncePer(log, 60.0)
        self.configure(organisations)

    # -- the set of organisations ------------------------------------------------------------------------------

    def _instance_ids(self, organisations: tuple[Organisation, ...]) -> dict[str, str]:
        """Each organisation's instance id, from the store's metadata; made (and stored, durably) for a new one."""
        ids = {org.inn: self._blocklist.get_meta(META_INSTANCE + org.inn) for org in organisations}
        new = {META_INSTANCE + inn: str(uuid.uuid4()) for inn, known in ids.items() if not isinstance(known, str)}
        if new:
            self._blocklist.commit(self._blocklist.op_set_meta(**new))
            ids.update({name[len(META_INSTANCE):]: value for name, value in new.items()})
        return ids

    def configure(self, organisations: tuple[Organisation, ...]) -> str:
        """Serve `organisations` from the next request on (start, and SIGHUP): an organisation that stays keeps its
        counters and `init` state; credentials are replaced whole. Returns what changed, in words (no secret)."""
        ids = self._instance_ids(organisations)
        old = self.members
        members: dict[str, Member] = {}
        changed = []
        for org in organisations:
            member = old.get(org.inn)
            if member is None:
                member = Member(org, ids[org.inn])
            else:
                if (member.organisation.user, member.organisation.password, member.organisation.tokens,
                        member.organisation.page_password) != (org.user, org.password, org.tokens, org.page_password):
                    changed.append(org.inn)
                member.organisation = org
                member.owner = SoldOwner(org.inn, org.earlier_sales)
            members[org.inn] = member
        by_header, by_user, tokens, pages = {}, {}, [], {}
        for member in members.values():
            org = member.organisation
            basic = Caller(member, None, f"basic:{org.user}")
            by_header[b"Basic " + base64.b64encode(f"{org.user}:{org.password}".encode())] = basic
            by_user[org.user.encode()] = (org.password.encode(), basic)
            tokens += [(token, Caller(member, "token:" + token.label, "token:" + token.label)) for token in org.tokens]
            if org.page_user is not None and org.page_password is not None:
                pages[b"Basic " + base64.b64encode(f"{org.page_user}:{org.page_password}".encode())] = member
        self.members = members
        self._by_header, self._by_user, self._tokens, self._pages = by_header, by_user, tuple(tokens), pages
        self.read_switches()
        added = [inn for inn in members if inn not in old]
        removed = [inn for inn in old if inn not in members]
        return (f"{len(members)} organisations (added: {', '.join(added) or 'none'}; removed: "
                f"{', '.join(removed) or 'none'}; credentials changed: {', '.join(changed) or 'none'})")

    def read_switches(self) -> None:
        """Read each organisation's grey-list switch from the store (at start, SIGHUP, and with every read of the
        store's status: another process serving this store may have changed it)."""
        get = self._blocklist.get_meta
        for member in self.members.values():
            member.grey_list = get(member.grey_field, False) is True

    @property
    def has_tokens(self) -> bool:
        return bool(self._tokens)

    # -- who a request is ----------------------------------------------------------------------------------------

    def authenticate(self, header: bytes | None) -> Caller | None:
        """The organisation's `Caller` an `Authorization` header authenticates, or None (missing, wrong, expired).

        The usual header (a till's Basic credentials, sent the same way every time) is found by one dict lookup,
        which compares bytes only after a keyed hash matched (nothing an attacker can steer); any other form is
        decoded, the user's password compared in constant time, a token compared against every organisation's
        tokens, all of them every time."""
        if header is None:
            return None
        found = self._by_header.get(header)
        if found is not None:
            return found
        scheme, _, value = header.strip().partition(b" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == b"token":
            return self._token(value)
        if scheme != b"basic":
            return None
        try:
            user, sep, password = base64.b64decode(value, validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return None
        expected = self._by_user.get(user)
        if not sep or expected is None:
            hmac.compare_digest(password, password)     # the same work for an unknown user
            return None
        return expected[1] if hmac.compare_digest(password, expected[0]) else None

    def _token(self, value: bytes) -> Caller | None:
        found: tuple[Token, Caller] | None = None
        for pair in self._tokens:
            if hmac.compare_digest(value, pair[0].secret) and found is None:
                found = pair
        if found is None or not value:
            return None
        token, caller = found
        if token.expires_at is not None and self._clock() > token.expires_at:
            self._expired_log.warning("refused token %r of inn %s: expired at %s", token.label, caller.inn,
                                      time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(token.expires_at)))
            return None
        return caller

    def page_login(self, header: bytes | None) -> Member | None:
        """The organisation whose read-only status-page login this header is, or None."""
        if header is None:
            return None
        return self._pages.get(header.strip())

    def auth_failed(self, header: bytes | None) -> None:
        """Count a failed login against the organisation whose user (or page user) it named, if any."""
        if header is None:
            return
        scheme, _, value = header.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return
        try:
            user = base64.b64decode(value.strip(), validate=True).partition(b":")[0]
        except (binascii.Error, ValueError):
            return
        known = self._by_user.get(user)
        if known is not None:
            known[1].member.auth_failures += 1
            return
        for member in self.members.values():
            if member.organisation.page_user is not None and member.organisation.page_user.encode() == user:
                member.auth_failures += 1

    # -- what the service says of them ---------------------------------------------------------------------------

    def tills_seen(self, member: Member, within: float = 86400.0) -> int:
        """Tills of the organisation seen within `within` seconds."""
        since = self._clock() - within
        return sum(1 for at in member.tills.values() if at >= since)

    def rows(self, only: Member | None = None) -> list[dict[str, Any]]:
        """One row per organisation (or only `only`) for the status page."""
        return [{"inn": m.organisation.inn, "name": m.organisation.name, "tills": self.tills_seen(m),
                 "requests": m.requests, "checks": m.checks, "codes": m.codes, "refusals": m.refusals,
                 "auth_failures": m.auth_failures, "initialized": m.initialized_at is not None, "inst": m.inst,
                 "grey_list": m.grey_list}
                for m in self.members.values() if only is None or m is only]

    def prometheus_lines(self) -> list[str]:
        """Per-organisation families for /metrics, labelled by INN and name."""
        families = (
            ("lmcz_organisation_tills", "gauge", "Tills of the organisation seen in the last 24 h.",
             lambda m: self.tills_seen(m)),
            ("lmcz_organisation_requests_total", "counter", "API requests of the organisation's tills.",
             lambda m: m.requests),
            ("lmcz_organisation_checks_total", "counter", "Check requests of the organisation's tills.",
             lambda m: m.checks),
            ("lmcz_organisation_codes_checked_total", "counter", "Codes the organisation's tills asked about.",
             lambda m: m.codes),
            ("lmcz_organisation_refusals_total", "counter",
             "Codes refused to the organisation's tills (blocked, sold, unreadable, store not ready).",
             lambda m: m.refusals),
            ("lmcz_organisation_auth_failures_total", "counter",
             "Failed logins naming one of the organisation's users.", lambda m: m.auth_failures),
            ("lmcz_organisation_grey_list", "gauge",
             "1 if isGreyGtin answers from the grey-GTIN list for the organisation (enableGreyList), else 0.",
             lambda m: int(m.grey_list)),
        )
        out: list[str] = []
        for name, kind, text, value in families:
            out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            out += [f'{name}{{inn="{m.organisation.inn}",name="{_escape(m.organisation.name)}"}} {value(m)}'
                    for m in self.members.values()]
        return out
