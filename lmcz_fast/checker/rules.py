"""The refusal rules: a True API answer in CRPT's recommended order, the offline refusal table (sold, blocked,
grey, price) and the price rules, sale prices and product groups as a till gives them."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

from ..store import PG_TOBACCO
from .reasons import REASONS, Reason
from .verdicts import Decision

_ONLINE_ORDER = (
    ("valid", False, "not_valid"),
    ("found", False, "not_found"),
    ("utilised", False, "not_utilised"),
    ("verified", False, "not_verified"),
    ("sold", True, "sold"),
    ("realizable", False, "not_realizable"),
    ("isBlocked", True, "blocked"),
)


#: Reasons that make a code `cannot_check` rather than `refuse` (try again online).
_CANNOT_DECIDE = frozenset({"online_only"})

#: Product groups with a single minimum price by law (tobacco, other tobacco products, nicotine products): the
#: only ones for which a Local Module's `smp` is used (LM 2.6 answers an `smp` for every product; FMU-API applies
#: it to groups 3 and 16 only). The store's own table counts for whatever GTIN or group it lists.
PG_MINIMUM_PRICE_GROUPS = frozenset({3, 12, 16})


class PriceError(ValueError):
    """A sale price that is not a whole, non-negative number of kopecks (or a bad `pg`); nothing was checked."""


def _check_price(price: Any, where: str) -> int | None:
    if price is None:
        return None
    if isinstance(price, bool) or not isinstance(price, int) or price < 0 or price >= 1 << 63:
        raise PriceError(f"{where}: a sale price is a whole, non-negative number of kopecks (14630 for 146.30 "
                         f"roubles), not {price!r}")
    return price


def _check_pg(pg: Any, where: str) -> int | None:
    if pg is None:
        return None
    if isinstance(pg, bool) or not isinstance(pg, int) or not 1 <= pg <= 0xFFFF:
        raise PriceError(f"{where}: a product group (pg) is an integer id such as 3 (tobacco), not {pg!r}")
    return pg


def _rub(kopecks: int) -> str:
    return f"{kopecks // 100}.{kopecks % 100:02d}"


def _price_reason(key: str, price: int, limit: int) -> Reason:
    base = REASONS[key]
    ru_limit = {"price_not_mrp": "МРЦ", "price_below_min": "минимальная цена", "price_below_mrp": "МРЦ"}[key]
    en_limit = {"price_not_mrp": "maximum retail price", "price_below_min": "minimum price",
                "price_below_mrp": "maximum retail price"}[key]
    return Reason(key, f"{base.ru} (цена {_rub(price)} ₽, {ru_limit} {_rub(limit)} ₽)",
                  f"{base.en} (price {_rub(price)} RUB, {en_limit} {_rub(limit)} RUB)")


def price_reasons(price: int | None, pg: int | None, mrp: int | None, smp: int | None) -> tuple[Reason, ...]:
    """The refusals a sale price earns against the code's maximum retail price (`mrp`) and the minimum price
    that applies (`smp`), by the offline refusal table (docs/protocol.md; one source):

    - tobacco (pg 3): price != mrp, or price < smp;
    - every other group (nicotine products 16, 12 and the rest with a minimum price): price < smp, or
      price < mrp when the code or the answer carries an mrp (the table's wording for these groups).

    A limit that is not known (None) refuses nothing; no price given, nothing to check.
    """
    if price is None:
        return ()
    out = []
    if pg == PG_TOBACCO:
        if mrp is not None and price != mrp:
            out.append(_price_reason("price_not_mrp", price, mrp))
        if smp is not None and price < smp:
            out.append(_price_reason("price_below_min", price, smp))
    else:
        if smp is not None and price < smp:
            out.append(_price_reason("price_below_min", price, smp))
        if mrp is not None and price < mrp:
            out.append(_price_reason("price_below_mrp", price, mrp))
    return tuple(out)


def offline_table(*, sold: bool, blocked: bool, grey: bool, price: int | None = None, pg: int | None = None,
                  mrp: int | None = None, smp: int | None = None) -> tuple[Reason, ...]:
    """The offline refusal table (docs/protocol.md), in its order: sold refuses always; blocked refuses, but a
    blocked code of a grey GTIN only an online check may allow (`online_only`: cannot check); then the price."""
    reasons: list[Reason] = []
    if sold:
        reasons.append(REASONS["sold"])
    if blocked:
        reasons.append(REASONS["online_only"] if grey else REASONS["blocked"])
    reasons.extend(price_reasons(price, pg, mrp, smp))
    return tuple(reasons)


def _int_field(entry: Mapping[str, Any], name: str) -> int | None:
    value = entry.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _parse_expiry(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value) / (1000.0 if value > 1e11 else 1.0)
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            moment = _dt.datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_dt.timezone(_dt.timedelta(hours=3)))
        return moment.timestamp()
    return None


def online_reasons(entry: Any, now: float) -> tuple[Reason, ...] | None:
    """The refusal reasons of one True API `codes[]` entry, in the recommendations' order; None if malformed."""
    if not isinstance(entry, Mapping) or ("valid" not in entry and "found" not in entry):
        return None
    reasons = [REASONS[key] for name, bad, key in _ONLINE_ORDER if entry.get(name) is bad]
    expiry = _parse_expiry(entry.get("expireDate"))
    if expiry is not None and expiry < now:
        reasons.append(REASONS["expired"])
    return tuple(reasons)


def offline_reasons(entry: Mapping[str, Any], price: int | None = None, pg: int | None = None,
                    mrp: int | None = None) -> tuple[Reason, ...]:
    """A Local Module's answer for one code through the offline refusal table: `sold`, `isBlocked`,
    `isGreyGtin`, and with a sale `price` its `mrp` (the code's own `mrp` first) and `smp` (for the groups in
    PG_MINIMUM_PRICE_GROUPS only). Its other fields carry no meaning offline."""
    smp = _int_field(entry, "smp") if pg in PG_MINIMUM_PRICE_GROUPS else None
    return offline_table(sold=entry.get("sold") is True, blocked=entry.get("isBlocked") is True,
                         grey=entry.get("isGreyGtin") is True, price=price, pg=pg,
                         mrp=mrp if mrp is not None else _int_field(entry, "mrp"), smp=smp)


def _decided(reasons: tuple[Reason, ...]) -> Decision:
    if not reasons:
        return Decision.SELL
    if all(r.key in _CANNOT_DECIDE for r in reasons):
        return Decision.CANNOT_CHECK
    return Decision.REFUSE


def _online_groups(entry: Mapping[str, Any]) -> int | None:
    groups = entry.get("groupIds")
    if isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], int):
        return groups[0]
    return None
