"""Why a code was refused or could not be checked: `Reason` (a stable key, the cashier's words in Russian and
English) and the table of them, `REASONS`."""

from __future__ import annotations

from dataclasses import dataclass

from ..store import DEFAULT_EXPIRE_AFTER


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a code was refused or could not be checked, or a note on how it was checked.

    `key` is stable (logs, metrics, till scripts); `ru` and `en` are what the cashier reads.
    """

    key: str
    ru: str
    en: str

    def text(self, lang: str = "ru") -> str:
        return self.en if lang == "en" else self.ru


def _r(key: str, ru: str, en: str) -> Reason:
    return Reason(key, ru, en)


def _limit_words(seconds: float) -> tuple[str, str]:
    """An offline limit after "больше" / "for over", in Russian (genitive) and English: 72 часов / 72 hours."""
    for size, ru_one, ru_many, en in ((3600, "часа", "часов", "hour"), (60, "минуты", "минут", "minute"),
                                      (1, "секунды", "секунд", "second")):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            ru = ru_one if n % 10 == 1 and n % 100 != 11 else ru_many
            return f"{n} {ru}", f"{n} {en}{'' if n == 1 else 's'}"
    return f"{seconds:g} секунды", f"{seconds:g} seconds"


def offline_expired_reason(expire_after: float) -> Reason:
    """The refusal for an in-process offline database past its offline limit, naming the configured limit."""
    ru, en = _limit_words(expire_after)
    return Reason("offline_expired", f"Проверка не удалась: офлайн-база не обновлялась больше {ru}",
                  f"Could not check: the offline database has not been updated for over {en}")


def offline_sync_error_reason(expire_after: float | None) -> Reason:
    """The refusal for a Local Module in `sync_error` (4050). `lmcz-fast serve` says its limit (`offlineLimit`);
    the official module's is 72 hours (the programmer's guide), assumed when it says none."""
    ru, en = _limit_words(DEFAULT_EXPIRE_AFTER if expire_after is None else expire_after)
    return Reason("offline_sync_error", f"Проверка не удалась: локальный модуль не синхронизировался больше {ru}",
                  f"Could not check: the Local Module has not synchronised for over {en}")


#: Refusal reasons in the order CRPT's recommendations check them (online), then offline and operational ones.
REASONS: dict[str, Reason] = {
    r.key: r
    for r in (
        _r("not_valid", "Код маркировки недействителен — продажа запрещена",
           "The marking code is not valid — do not sell"),
        _r("not_found", "Код не найден в системе «Честный знак» — продажа запрещена",
           "The code is not known to Chestny Znak — do not sell"),
        _r("not_utilised", "Код выпущен, но не нанесён на товар (нет отчёта о нанесении) — продажа запрещена",
           "The code was issued but never reported as applied to goods — do not sell"),
        _r("not_verified", "Код не прошёл криптографическую проверку (возможна подделка) — продажа запрещена",
           "The code failed the cryptographic check (possibly fake) — do not sell"),
        _r("sold", "Товар уже продан (выведен из оборота) — продажа запрещена",
           "This item has already been sold (withdrawn from circulation) — do not sell"),
        _r("not_realizable", "Товар не введён в оборот — продажа запрещена",
           "The item is not in circulation — do not sell"),
        _r("blocked", "Товар заблокирован по решению госоргана — продажа запрещена",
           "The item is blocked by a government authority — do not sell"),
        _r("expired", "Истёк срок годности — продажа запрещена",
           "The item is past its expiry date — do not sell"),
        # Prices (the sale price given per code; kopecks in the code and the tables, roubles in the messages).
        _r("price_not_mrp", "Цена продажи не равна МРЦ, указанной в коде — продажа запрещена",
           "The sale price is not the maximum retail price printed in the code — do not sell"),
        _r("price_below_min", "Цена продажи ниже минимальной — продажа запрещена",
           "The sale price is below the minimum price — do not sell"),
        _r("price_below_mrp", "Цена продажи ниже МРЦ — продажа запрещена",
           "The sale price is below the maximum retail price — do not sell"),
        # Offline, a blocked code of a grey-zone GTIN: the offline check cannot allow it, an online one may.
        _r("online_only", "Товар из «серой зоны» заблокирован: продать можно только после онлайн-проверки",
           "A blocked grey-zone item: only an online check can allow the sale"),
        _r("unreadable", "Код не распознан — отсканируйте ещё раз",
           "The scan is not a marking code — scan it again"),
        _r("no_answer", "Проверка не удалась: нет ответа онлайн и нет офлайн-проверки",
           "Could not check: no online answer and no offline check available"),
        offline_expired_reason(DEFAULT_EXPIRE_AFTER),
        _r("offline_clock_behind", "Проверка не удалась: часы кассы отстают от времени последнего обновления "
           "офлайн-базы — проверьте дату и время",
           "Could not check: this machine's clock reads before the offline database's last update — check the "
           "date and time"),
        _r("offline_empty", "Проверка не удалась: офлайн-база пуста (не загружена)",
           "Could not check: the offline database is empty (never loaded)"),
        _r("offline_not_ready", "Проверка не удалась: локальный модуль не готов к работе",
           "Could not check: the Local Module is not ready"),
        offline_sync_error_reason(None),
        _r("offline_failed", "Проверка не удалась: локальный модуль не ответил",
           "Could not check: the Local Module did not answer"),
        _r("offline_auth", "Проверка не удалась: локальный модуль отклонил логин или пароль — проверьте настройки",
           "Could not check: the Local Module refused the user name or password — check the settings"),
        # Notes: how a verdict was reached. They never change the decision.
        _r("checked_offline", "Проверено офлайн: онлайн-проверка не ответила вовремя",
           "Checked offline: the online check did not answer in time"),
        _r("offline_stale", "Внимание: офлайн-база давно не обновлялась",
           "Warning: the offline database is out of date"),
    )
}
