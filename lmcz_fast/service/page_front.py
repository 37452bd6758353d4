"""The status page's section about the official module behind a `serve --front`: its health as the watchdog saw
it, the cross-check's agreements and disagreements per field, the sales waiting for it (page.py calls `section`
with status's `front` object; lmcz_fast/front/watch.py builds it)."""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Mapping
from typing import Any

_TEXT = {
    "ru": {
        "title": "Официальный модуль (за lmcz-fast)", "url": "Адрес", "state": "Состояние",
        "answer": "Время ответа", "last_sync": "Его последняя синхронизация", "version": "Версия",
        "db_version": "Версия базы", "database": "Его база данных", "alive": "отвечает", "dead": "НЕ ОТВЕЧАЕТ",
        "not_watched": "не проверяется", "reinit": "Повторных init", "checked": "Проверен",
        "cross": "Сверка ответов", "field": "Поле", "agree": "Совпало", "disagree": "Расходится",
        "codes": "Сверено кодов", "dropped": "Пропущено (очередь полна)", "recent": "Последние расхождения",
        "identity": "Код (GTIN + серийный номер)", "official": "Официальный", "ours": "Наш",
        "outbox": "Продажи и возвраты для официального модуля", "pending": "Ждут отправки",
        "oldest": "Старейшая ждёт", "delivered": "Доставлено", "refused": "Отклонено им", "error": "Последняя ошибка",
        "none": "нет", "never": "никогда", "s": "с",
    },
    "en": {
        "title": "The official module (behind lmcz-fast)", "url": "Address", "state": "State",
        "answer": "Answer time", "last_sync": "Its last sync", "version": "Version",
        "db_version": "Database version", "database": "Its database", "alive": "answers", "dead": "DOES NOT ANSWER",
        "not_watched": "not watched", "reinit": "init called again", "checked": "Checked",
        "cross": "Cross-check of answers", "field": "Field", "agree": "Agree", "disagree": "Disagree",
        "codes": "Codes compared", "dropped": "Not compared (queue full)", "recent": "Last disagreements",
        "identity": "Code (GTIN + serial)", "official": "Official", "ours": "Ours",
        "outbox": "Sales and returns for the official module", "pending": "Waiting",
        "oldest": "Oldest waiting for", "delivered": "Delivered", "refused": "Refused by it", "error": "Last error",
        "none": "none", "never": "never", "s": "s",
    },
}


def _when_ms(ms: Any, t: Mapping[str, str]) -> str:
    if not isinstance(ms, int) or ms <= 0:
        return t["never"]
    return dt.datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _row(name: str, value: str, ident: str = "", cls: str = "") -> str:
    attrs = (f' id="{ident}"' if ident else "") + (f' class="{cls}"' if cls else "")
    return f"<dt>{html.escape(name)}</dt><dd{attrs}>{html.escape(value)}</dd>"


def _official(official: Mapping[str, Any], t: Mapping[str, str]) -> list[str]:
    answer = official.get("answerMs")
    database = official.get("database") or {}
    alive = database.get("alive")
    out = [_row(t["state"], str(official.get("state", "")), "front-state",
                "" if official.get("state") == "ready" else "overdue"),
           _row(t["answer"], "—" if answer is None else f"{answer:.1f} ms", "front-answer"),
           _row(t["last_sync"], _when_ms(official.get("lastSync"), t), "front-last-sync"),
           _row(t["version"], str(official.get("version") or "—")),
           _row(t["db_version"], str(official.get("dbVersion") or "—")),
           _row(t["database"], f"{database.get('url') or ''} " + (t["not_watched"] if alive is None else
                                                                  t["alive"] if alive else t["dead"]),
                "front-database", "overdue" if alive is False else ""),
           _row(t["reinit"], str((official.get("reinit") or {}).get("count", 0)), "front-reinits"),
           _row(t["checked"], _when_ms(official.get("checkedAt"), t))]
    return out


def _cross(cross: Mapping[str, Any], t: Mapping[str, str]) -> list[str]:
    esc = html.escape
    out = [f'<h2>{esc(t["cross"])}</h2><p>{esc(t["codes"])}: <b id="cross-codes">{cross.get("codes", 0)}</b>; '
           f'{esc(t["dropped"])}: <b id="cross-dropped">{cross.get("dropped", 0)}</b></p>',
           f'<table id="cross"><tr><th>{esc(t["field"])}</th><th>{esc(t["agree"])}</th>'
           f'<th>{esc(t["disagree"])}</th></tr>']
    agree, disagree = cross.get("agree") or {}, cross.get("disagree") or {}
    for field in agree:
        bad = disagree.get(field, 0)
        out.append(f'<tr class="cross-field{" overdue" if bad else ""}" data-field="{esc(field)}"><td>{esc(field)}</td>'
                   f'<td>{agree[field]}</td><td class="disagree">{bad}</td></tr>')
    out.append("</table>")
    recent = cross.get("recent") or []
    if recent:
        out.append(f'<h2>{esc(t["recent"])}</h2><table id="cross-recent"><tr><th>{esc(t["field"])}</th>'
                   f'<th>{esc(t["identity"])}</th><th>{esc(t["official"])}</th><th>{esc(t["ours"])}</th></tr>')
        for item in recent:
            out.append(f'<tr class="disagreement"><td>{esc(str(item["field"]))}</td><td><code>'
                       f'{esc(str(item["identity"]))}</code></td><td>{esc(json.dumps(item["official"]))} '
                       f'({esc(str(item["officialVersion"]))})</td><td>{esc(json.dumps(item["ours"]))} '
                       f'({item["ourVersion"]})</td></tr>')
        out.append("</table>")
    return out


def _outbox(outbox: Mapping[str, Any], t: Mapping[str, str]) -> list[str]:
    esc = html.escape
    oldest = outbox.get("oldestAge")
    out = [f'<h2>{esc(t["outbox"])}</h2><dl>',
           _row(t["pending"], str(outbox.get("pending", 0)), "outbox-pending",
                "overdue" if outbox.get("pending") and outbox.get("lastError") else ""),
           _row(t["oldest"], "—" if oldest is None else f"{oldest:.0f} {t['s']}"),
           _row(t["delivered"], str(outbox.get("delivered", 0)), "outbox-delivered"),
           _row(t["refused"], str(outbox.get("refused", 0)), "outbox-refused"),
           _row(t["error"], str(outbox.get("lastError") or t["none"])), "</dl>"]
    return out


def section(front: Mapping[str, Any], lang: str) -> list[str]:
    """The HTML lines of the front's section (every value escaped)."""
    t = _TEXT.get(lang, _TEXT["ru"])
    out = [f'<section id="front"><h2>{html.escape(t["title"])}</h2><dl>',
           _row(t["url"], str(front.get("url", "")), "front-url")]
    if front.get("official"):
        out += _official(front["official"], t)
    out.append("</dl>")
    if front.get("crossCheck"):
        out += _cross(front["crossCheck"], t)
    if front.get("outbox"):
        out += _outbox(front["outbox"], t)
    out.append("</section>")
    return out
