"""The status page a person in the store reads: `GET /` on `serve`, in Russian (English with `?lang=en`).

The official module has no face: store staff learn that it stopped syncing when a till refuses to sell. This page
answers at a glance whether the tills can sell offline right now and until when, and shows what lies behind it
(database version, age and counts, last and next sync, the tills seen, the last refusals, the request rate).

It is one self-contained HTML document: inline CSS, no script, no font or image from anywhere, refreshed by a
`<meta http-equiv="refresh">`, so it works with JavaScript off and on a store network cut off from the internet.
`Activity` is what the service remembers for it between requests (bounded: a till table and a ring of refusals).
"""

from __future__ import annotations

import collections
import datetime as dt
import html
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .page_front import section as front_section

#: Seconds between the page's own refreshes.
REFRESH_SECONDS = 10
#: Tills remembered (the oldest seen is forgotten first); a store has ~100.
MAX_TILLS = 512
#: Refusals kept for the page.
MAX_REFUSALS = 20
#: Window of the request-rate figure, in seconds.
RATE_WINDOW = 60


@dataclass(slots=True)
class TillSeen:
    """One till as the service saw it: by its X-ClientId (fiscal drive number) or, without one, its address."""

    name: str
    by: str                 # "client-id" or "address"
    last_request: float     # Unix s
    requests: int = 0
    checks: int = 0


@dataclass(slots=True)
class FailingTill:
    """A client whose requests carried wrong credentials: by its X-ClientId, else its address."""

    name: str
    by: str                 # "client-id" or "address"
    failures: int
    last_failure: float     # Unix s


_new_tuple = tuple.__new__


class Refusal(NamedTuple):
    """A code the service answered as not to be sold, or a check it refused to answer (a named tuple: one is made
    per blocked code answered, ~0.3 us where a frozen dataclass took ~1.5 us)."""

    at: float
    code: str
    reason: str


class Activity:
    """What the service saw, kept for the status page: tills, refusals and the request rate. Bounded memory."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self.tills: collections.OrderedDict[str, TillSeen] = collections.OrderedDict()
        self.refusals: collections.deque[Refusal] = collections.deque(maxlen=MAX_REFUSALS)
        self.failing: collections.OrderedDict[str, FailingTill] = collections.OrderedDict()
        self._second = 0
        self._per_second: collections.deque[tuple[int, int]] = collections.deque()
        self._current = 0

    def request(self, client_id: str | None, address: str | None, checks: int = 0) -> None:
        """Count one API request of a till; `checks` is how many codes it asked about."""
        now = self._clock()
        self._roll(int(now))
        self._current += 1
        if client_id:
            key, by, name = "id:" + client_id, "client-id", client_id
        elif address:
            key, by, name = "addr:" + address, "address", address
        else:
            return
        till = self.tills.get(key)
        if till is None:
            till = self.tills[key] = TillSeen(name=name, by=by, last_request=now)
            if len(self.tills) > MAX_TILLS:
                self.tills.popitem(last=False)
        else:
            self.tills.move_to_end(key)
        till.last_request = now
        till.requests += 1
        till.checks += checks

    def auth_failed(self, client_id: str | None, address: str | None) -> None:
        """Count a request that sent credentials and got them wrong (a browser's first, credential-less request
        is the 401 challenge, not a failure, and is not counted)."""
        if client_id:
            key, by, name = "id:" + client_id[:64], "client-id", client_id[:64]
        elif address:
            key, by, name = "addr:" + address, "address", address
        else:
            return
        now = self._clock()
        till = self.failing.get(key)
        if till is None:
            till = self.failing[key] = FailingTill(name, by, 0, now)
            if len(self.failing) > MAX_TILLS:
                self.failing.popitem(last=False)
        else:
            self.failing.move_to_end(key)
        till.failures += 1
        till.last_failure = now

    def prometheus_lines(self) -> list[str]:
        """`lmcz_auth_failures_by_till_total{till, by}`: failed logins per till, for alerting by till."""
        out = ["# HELP lmcz_auth_failures_by_till_total Requests with wrong credentials, by till (X-ClientId, "
               "else address).", "# TYPE lmcz_auth_failures_by_till_total counter"]
        for till in self.failing.values():
            name = till.name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
            out.append(f'lmcz_auth_failures_by_till_total{{till="{name}",by="{till.by}"}} {till.failures}')
        return out

    def refused(self, code: str, reason: str) -> None:
        self.refusals.append(_new_tuple(Refusal, (self._clock(), code[:64], reason)))   # Refusal(...), in C

    def rate(self) -> float:
        """Requests per second over the last `RATE_WINDOW` complete seconds."""
        self._roll(int(self._clock()))
        return sum(n for _, n in self._per_second) / RATE_WINDOW

    def _roll(self, second: int) -> None:
        """Close the counter of the past second and forget seconds older than the window."""
        if second != self._second:
            if self._current:
                self._per_second.append((self._second, self._current))
            self._second, self._current = second, 0
        while self._per_second and self._per_second[0][0] <= second - RATE_WINDOW:
            self._per_second.popleft()


@dataclass(frozen=True, slots=True)
class PageData:
    """Everything the page shows, gathered by the service at request time."""

    state: str                      # ready | stale | expired | empty (the store's Status.state)
    lm_status: str                  # what /api/v1/status says
    now: float
    version: int
    age: float | None
    last_sync_at: float | None
    next_sync_at: float | None
    expires_at: float | None        # when offline checks start to be refused (None: never loaded)
    source: str | None              # feed URL or replication source
    counts: Mapping[str, int]       # blocked_codes, blocked_gtins, min_prices, grey_gtins, sold
    tills: list[TillSeen] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    rate: float = 0.0
    name: str = "lmcz-fast"
    software_version: str = ""
    warnings: list[str] = field(default_factory=list)
    failing: list[FailingTill] = field(default_factory=list)
    last_error: str | None = None       # the last failed sync/replication round, in words (None: none recorded)
    last_error_at: float | None = None
    #: One row per organisation served (`serve --organisations`; `Organisations.rows`), empty for one.
    organisations: list[dict[str, Any]] = field(default_factory=list)
    front: Mapping[str, Any] | None = None     # status's `front` object behind `serve --front` (page_front.py)


_TEXT = {
    "ru": {
        "title": "Локальный модуль: состояние",
        "ready": "Кассы могут продавать: офлайн-проверки работают",
        "stale": "Данные устарели: офлайн-проверки пока работают",
        "expired": "Офлайн-проверки отклоняются (ошибка 4050): нужна синхронизация",
        "empty": "Ожидание первого списка: офлайн-проверки отклоняются (4045, модуль не настроен)",
        "until": "Офлайн-проверки будут отклоняться с {when} (через {left}).",
        "refused_since": "Проверки отклоняются с {when} ({ago} назад).",
        "never": "База ещё ни разу не загружалась: первая синхронизация (lmcz-fast sync ХРАНИЛИЩЕ --feed URL) "
                 "или загрузка заполнит её, перезапуск не нужен.",
        "database": "База данных",
        "version": "Версия",
        "age": "Возраст данных",
        "blocked_codes": "Заблокированных кодов",
        "blocked_gtins": "Заблокированных GTIN",
        "min_prices": "Минимальных цен",
        "grey_gtins": "GTIN «серого списка»",
        "sold": "В реестре проданных",
        "sync": "Синхронизация",
        "last_sync": "Последняя",
        "next_sync": "Следующая (не позже)",
        "source": "Источник",
        "none": "нет",
        "tills": "Кассы",
        "till": "Касса",
        "last_request": "Последний запрос",
        "requests": "Запросов",
        "checks": "Проверено кодов",
        "no_tills": "Ни одна касса ещё не обращалась.",
        "refusals": "Последние отказы",
        "when": "Когда",
        "code": "Код",
        "reason": "Причина",
        "no_refusals": "Отказов не было.",
        "rate": "Запросов в секунду (за минуту)",
        "refresh": "Страница обновляется каждые {n} с.",
        "by_address": "по адресу",
        "ago": "назад",
        "s": "с", "min": "мин", "h": "ч", "d": "дн",
        "other_lang": "English",
        "overdue": " (просрочена)",
        "warnings": "Предупреждения",
        "failing": "Ошибки входа (неверный пароль)",
        "failing_none": "Неудачных входов не было.",
        "failures": "Неудачных входов",
        "last_failure": "Последний",
        "failing_hint": "Пароль Локального модуля в настройках этих касс не совпадает с паролем сервиса.",
        "others": "Прочие клиенты (без X-ClientId — не кассы?)",
        "client": "Адрес",
        "why": "Почему",
        "why_error": "Последняя синхронизация не удалась ({when}): {error}",
        "why_none": "Ошибок синхронизации не записано: вероятно, служба синхронизации не запущена.",
        "todo": "Что делать",
        "todo_stale": "Проверьте службу синхронизации (systemctl status lmcz-fast-sync; journalctl -u lmcz-fast-sync), "
                      "доступ к серверу обновлений и прокси. Кассы пока продают.",
        "todo_expired": "Срочно восстановите синхронизацию (systemctl status lmcz-fast-sync; journalctl -u "
                        "lmcz-fast-sync): пока её нет, офлайн-проверки отклоняются.",
        "todo_empty": "Выполните первую синхронизацию от имени пользователя службы (docs/operations.md): "
                      "runuser -u lmcz-fast -- lmcz-fast sync ХРАНИЛИЩЕ --feed URL --public-key КЛЮЧ.",
        "r_blocked": "заблокирован", "r_sold": "уже продан", "r_invalid_code": "неверный код",
        "r_sync_error": "нет синхронизации", "r_not_configured": "модуль не настроен",
    },
    "en": {
        "title": "Local module: status",
        "ready": "Tills can sell: offline checks are working",
        "stale": "Data is stale: offline checks still work for now",
        "expired": "Offline checks are refused (error 4050): a sync is needed",
        "empty": "Waiting for the first list: offline checks are refused (4045, not configured)",
        "until": "Offline checks will be refused from {when} (in {left}).",
        "refused_since": "Checks have been refused since {when} ({ago} ago).",
        "never": "The database has never been loaded: the first sync (lmcz-fast sync STORE --feed URL) or load "
                 "fills it, no restart needed.",
        "database": "Database",
        "version": "Version",
        "age": "Age of the data",
        "blocked_codes": "Blocked codes",
        "blocked_gtins": "Blocked GTINs",
        "min_prices": "Minimum prices",
        "grey_gtins": "Grey-list GTINs",
        "sold": "In the sold register",
        "sync": "Synchronisation",
        "last_sync": "Last",
        "next_sync": "Next (at the latest)",
        "source": "Source",
        "none": "none",
        "tills": "Tills",
        "till": "Till",
        "last_request": "Last request",
        "requests": "Requests",
        "checks": "Codes checked",
        "no_tills": "No till has called yet.",
        "refusals": "Last refusals",
        "when": "When",
        "code": "Code",
        "reason": "Reason",
        "no_refusals": "No refusals.",
        "rate": "Requests per second (last minute)",
        "refresh": "This page refreshes every {n} s.",
        "by_address": "by address",
        "ago": "ago",
        "s": "s", "min": "min", "h": "h", "d": "d",
        "other_lang": "Русский",
        "overdue": " (overdue)",
        "warnings": "Warnings",
        "failing": "Failed logins (wrong password)",
        "failing_none": "No failed logins.",
        "failures": "Failed logins",
        "last_failure": "Last",
        "failing_hint": "The Local Module password set on these tills differs from the service's.",
        "others": "Other clients (no X-ClientId: not tills?)",
        "client": "Address",
        "why": "Why",
        "why_error": "The last sync failed ({when}): {error}",
        "why_none": "No sync error is recorded: the sync service is probably not running.",
        "todo": "What to do",
        "todo_stale": "Check the sync service (systemctl status lmcz-fast-sync; journalctl -u lmcz-fast-sync), the "
                      "update server and the proxy. The tills still sell.",
        "todo_expired": "Restore the sync now (systemctl status lmcz-fast-sync; journalctl -u lmcz-fast-sync): "
                        "until then offline checks are refused.",
        "todo_empty": "Run the first sync as the service user (docs/operations.md): runuser -u lmcz-fast -- "
                      "lmcz-fast sync STORE --feed URL --public-key KEY.",
        "r_blocked": "blocked", "r_sold": "already sold", "r_invalid_code": "invalid code",
        "r_sync_error": "no sync", "r_not_configured": "not configured",
    },
}

_CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:0;background:#f4f5f7;color:#1d2129}
main{max-width:980px;margin:0 auto;padding:16px}
.banner{padding:20px 24px;border-radius:8px;color:#fff;margin-bottom:16px}
.banner h1{margin:0 0 6px 0;font-size:26px}
.banner p{margin:0;font-size:17px}
.state-ready{background:#1e7b34}
.state-stale{background:#b36b00}
.state-expired{background:#b3141d}
.state-empty{background:#5b2a86}
section{background:#fff;border-radius:8px;padding:12px 16px;margin-bottom:12px}
h2{font-size:18px;margin:4px 0 10px 0}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e3e5e8;font-size:14px}
dl{display:grid;grid-template-columns:max-content auto;gap:4px 16px;margin:0}
dt{color:#5a6270}dd{margin:0;font-weight:bold}
.overdue{color:#b3141d}
.warn{background:#fff4d6;border:1px solid #e0b84c}
footer{color:#5a6270;font-size:12px;text-align:center}
a{color:inherit}
"""


def _duration(seconds: float, t: Mapping[str, str]) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{int(seconds)} {t['s']}"
    if seconds < 2 * 3600:
        return f"{int(seconds // 60)} {t['min']}"
    if seconds < 3 * 86400:
        hours, rest = divmod(int(seconds), 3600)
        return f"{hours} {t['h']} {rest // 60} {t['min']}"
    return f"{int(seconds // 86400)} {t['d']} {int(seconds % 86400 // 3600)} {t['h']}"


def _when(ts: float | None, t: Mapping[str, str]) -> str:
    if ts is None:
        return t["none"]
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _number(n: int, lang: str) -> str:
    """Thousands separated: `1 234 567` (a narrow no-break space, the Russian way) or `1,234,567`."""
    text = f"{n:,}"
    return text.replace(",", "\u202f") if lang == "ru" else text


def _reason(reason: str, t: Mapping[str, str]) -> str:
    """A refusal's reason in the page's language: the kind is translated, the details (the list's own reason and
    authority, the parser's message) stay as recorded."""
    head, sep, rest = reason.partition(";")
    word = head.split(":", 1)[0].strip()
    parts = word.split()
    kind = parts[-1] if parts else ""
    code = parts[0] + " " if len(parts) == 2 and parts[0].isdigit() else ""
    key = f"r_{kind}"
    if key not in t:
        return reason
    # the service's own English description of a refusal (the banner says it in the page's language) is left out
    detail = head.split(":", 1)[1].strip() if ":" in head and kind not in ("sync_error", "not_configured") else ""
    tail = rest.strip() if sep else ""
    return code + t[key] + "".join(f"; {x}" for x in (detail, tail) if x)


_ORGANISATIONS_TEXT = {
    "ru": ("Организации", "ИНН", "Название", "Касс за сутки", "Запросов", "Проверок", "Кодов", "Отказов",
           "Неудачных входов", "Инициализирован", "Серый список", "да", "нет"),
    "en": ("Organisations", "INN", "Name", "Tills (24 h)", "Requests", "Check requests", "Codes", "Refusals",
           "Failed logins", "Initialised", "Grey list", "yes", "no"),
}


def organisations_section(rows: list[dict[str, Any]], lang: str) -> list[str]:
    """The page's table of the organisations served (none: nothing), one row each, every value escaped."""
    if not rows:
        return []
    t = _ORGANISATIONS_TEXT.get(lang, _ORGANISATIONS_TEXT["ru"])
    esc = html.escape
    out = [f'<section id="organisations"><h2>{esc(t[0])} ({len(rows)})</h2><table><tr>'
           + "".join(f"<th>{esc(h)}</th>" for h in t[1:11]) + "</tr>"]
    for row in rows:
        cells = [esc(row["inn"]), esc(row["name"])] + [_number(row[k], lang) for k in (
            "tills", "requests", "checks", "codes", "refusals", "auth_failures")]
        cells += [esc(t[11] if row[k] else t[12]) for k in ("initialized", "grey_list")]
        out.append(f'<tr class="organisation" data-inn="{esc(row["inn"])}" '
                   f'data-grey-list="{"on" if row["grey_list"] else "off"}">'
                   + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table></section>")
    return out


def render(data: PageData, lang: str = "ru") -> bytes:
    """The page as UTF-8 HTML. Every value from outside (till names, codes, reasons, URLs) is escaped."""
    t = _TEXT.get(lang, _TEXT["ru"])
    esc = html.escape
    state = data.state if data.state in ("ready", "stale", "expired", "empty") else "expired"
    if data.expires_at is None:
        detail = t["never"]
    elif data.expires_at > data.now:
        detail = t["until"].format(when=_when(data.expires_at, t), left=_duration(data.expires_at - data.now, t))
    else:
        detail = t["refused_since"].format(when=_when(data.expires_at, t), ago=_duration(data.now - data.expires_at, t))
    other = "en" if lang == "ru" else "ru"
    out = [
        "<!DOCTYPE html>",
        f'<html lang="{lang}"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(t['title'])} — {esc(data.name)}</title>",
        f"<style>{_CSS}</style></head>",
        f'<body data-state="{state}" data-lm-status="{esc(data.lm_status)}"><main>',
        f'<div id="state" class="banner state-{state}"><h1>{esc(t[state])}</h1>',
        f'<p id="expires" data-expires-at="{"" if data.expires_at is None else int(data.expires_at)}">'
        f"{esc(detail)}</p></div>",
    ]
    if state in ("stale", "expired", "empty"):
        if state == "empty":
            why = None
        elif data.last_error:
            why = t["why_error"].format(when=_when(data.last_error_at, t), error=data.last_error)
        else:
            why = t["why_none"]
        out.append('<section id="why" class="warn"><dl>')
        if why is not None:
            out.append(f'<dt>{esc(t["why"])}</dt><dd id="why-text">{esc(why)}</dd>')
        out.append(f'<dt>{esc(t["todo"])}</dt><dd id="todo">{esc(t["todo_" + state])}</dd>')
        out.append("</dl></section>")
    if data.warnings:
        out.append(f'<section id="warnings" class="warn"><h2>{esc(t["warnings"])}</h2><ul>')
        out += [f"<li>{esc(w)}</li>" for w in data.warnings]
        out.append("</ul></section>")
    if data.front is not None:
        out += front_section(data.front, lang)
    age = "—" if data.age is None else _duration(data.age, t)
    out.append(f'<section id="database"><h2>{esc(t["database"])}</h2><dl>')
    out.append(f'<dt>{esc(t["version"])}</dt><dd id="db-version">{data.version}</dd>')
    out.append(f'<dt>{esc(t["age"])}</dt><dd id="db-age">{esc(age)}</dd>')
    for name in ("blocked_codes", "blocked_gtins", "min_prices", "grey_gtins", "sold"):
        if name in data.counts:
            out.append(f'<dt>{esc(t[name])}</dt><dd id="count-{name}">{_number(data.counts[name], lang)}</dd>')
    out.append("</dl></section>")
    out.append(f'<section id="sync"><h2>{esc(t["sync"])}</h2><dl>')
    out.append(f'<dt>{esc(t["last_sync"])}</dt><dd id="last-sync">{esc(_when(data.last_sync_at, t))}</dd>')
    overdue = data.next_sync_at is not None and data.next_sync_at < data.now
    out.append(f'<dt>{esc(t["next_sync"])}</dt><dd id="next-sync" class="{"overdue" if overdue else ""}">'
               f'{esc(_when(data.next_sync_at, t))}{esc(t["overdue"]) if overdue else ""}</dd>')
    out.append(f'<dt>{esc(t["source"])}</dt><dd id="source">{esc(data.source or t["none"])}</dd>')
    out.append("</dl></section>")
    out += organisations_section(data.organisations, lang)
    tills = [till for till in data.tills if till.by == "client-id"]
    others = [till for till in data.tills if till.by != "client-id"]
    out.append(f'<section id="tills"><h2>{esc(t["tills"])} ({len(tills)})</h2>')
    out.append(f'<p>{esc(t["rate"])}: <b id="rate">{data.rate:.1f}</b></p>')

    def table(rows: list[TillSeen], first: str, css: str, opening: str = "<table>") -> None:
        out.append(f"{opening}<tr><th>{esc(first)}</th><th>{esc(t['last_request'])}</th>"
                   f"<th>{esc(t['requests'])}</th><th>{esc(t['checks'])}</th></tr>")
        for till in rows:
            ago = _duration(data.now - till.last_request, t)
            out.append(f'<tr class="{css}"><td>{esc(till.name)}</td><td>{esc(ago)} {esc(t["ago"])}</td>'
                       f"<td>{_number(till.requests, lang)}</td><td>{_number(till.checks, lang)}</td></tr>")
        out.append("</table>")

    if tills:
        table(tills, t["till"], "till")
    else:
        out.append(f"<p>{esc(t['no_tills'])}</p>")
    if others:
        table(others, t["client"], "other", opening=f'<h2>{esc(t["others"])}</h2><table id="others">')
    out.append("</section>")
    out.append(f'<section id="failing"><h2>{esc(t["failing"])}</h2>')
    if data.failing:
        out.append(f"<p>{esc(t['failing_hint'])}</p><table><tr><th>{esc(t['till'])}</th>"
                   f"<th>{esc(t['failures'])}</th><th>{esc(t['last_failure'])}</th></tr>")
        for till in data.failing:
            name = esc(till.name) + (f" ({esc(t['by_address'])})" if till.by == "address" else "")
            out.append(f'<tr class="failing"><td>{name}</td><td>{_number(till.failures, lang)}</td>'
                       f"<td>{esc(_when(till.last_failure, t))}</td></tr>")
        out.append("</table>")
    else:
        out.append(f"<p>{esc(t['failing_none'])}</p>")
    out.append("</section>")
    out.append(f'<section id="refusals"><h2>{esc(t["refusals"])}</h2>')
    if data.refusals:
        out.append(f"<table><tr><th>{esc(t['when'])}</th><th>{esc(t['code'])}</th>"
                   f"<th>{esc(t['reason'])}</th></tr>")
        for refusal in reversed(data.refusals):
            code = esc(refusal.code.replace("\x1d", "<GS>"))
            out.append(f'<tr class="refusal"><td>{esc(_when(refusal.at, t))}</td><td><code>{code}'
                       f"</code></td><td>{esc(_reason(refusal.reason, t))}</td></tr>")
        out.append("</table>")
    else:
        out.append(f"<p>{esc(t['no_refusals'])}</p>")
    out.append("</section>")
    out.append(f'<footer>{esc(t["refresh"].format(n=REFRESH_SECONDS))} {esc(data.name)} '
               f'{esc(data.software_version)} · <a href="/?lang={other}">{esc(t["other_lang"])}</a></footer>')
    out.append("</main></body></html>")
    return "\n".join(out).encode("utf-8")
