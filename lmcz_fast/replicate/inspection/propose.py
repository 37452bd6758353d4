"""From sampled databases to a proposed mapping: which database holds which data, in which field, how sure.

Each database is scored for each kind of data by the share of its sampled documents that would map under the best
field (or fields) for that kind, read with our own parser (classify.py). Names only break ties and nudge: a
database or field named like the kind (`price`, `grey`, `pg`, ...) earns a small bonus, never a mapping on its own.
Minimum prices and grey GTINs need such a name as well, since values alone cannot tell a price from a counter or a
grey GTIN from a blocked one. A marking code cannot read by chance (a GTIN can, one time in ten): a database whose
documents read as codes holds codes, whatever its other fields. Each database serves one kind, each kind one
database, best score first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import KINDS, Mapping
from .classify import CODE, GROUP, GTIN, PGKEY, PRICE, Sample

#: Words in a database's or a field's name that hint at a kind (lower case, matched as substrings).
_DB_HINTS = {"codes": ("cis", "code", "km", "mark"), "gtins": ("gtin", "block", "ban", "stop"),
             "prices": ("price", "mrp", "cost", "цен"), "grey": ("grey", "gray", "сер")}
_PRICE_HINTS = ("price", "cost", "mrp", "kop", "amount", "sum", "min", "цен")
_GROUP_HINTS = ("pg", "group", "category", "tg", "груп")
#: A proposal below this share of mapped documents is not made.
MIN_SHARE = 0.5


@dataclass
class Choice:
    """One kind of data: the database, its fields, the share of sampled documents that map, and the evidence."""

    kind: str
    database: str
    fields: dict[str, str]
    share: float
    sampled: int
    score: float
    confidence: str = "low"
    evidence: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"database": self.database, "fields": self.fields, "share": round(self.share, 4),
                "sampled": self.sampled, "confidence": self.confidence, "evidence": self.evidence}


@dataclass
class Proposal:
    """What `replicate --inspect` proposes: a choice per kind found, and what it saw in every database."""

    choices: dict[str, Choice]
    databases: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def mapping(self) -> tuple[dict[str, str], Mapping]:
        dbs = {kind: c.database for kind, c in self.choices.items()}
        f: dict[str, str] = {}
        for c in self.choices.values():
            f.update(c.fields)
        return dbs, Mapping(**f)

    def as_dict(self) -> dict[str, Any]:
        return {"choices": {k: c.as_dict() for k, c in self.choices.items()}, "databases": self.databases,
                "notes": self.notes}


def _hint(name: str, words: tuple[str, ...]) -> bool:
    low = name.lower()
    return any(w in low for w in words)


def _ranked(sample: Sample, names: tuple[str, ...], hints: tuple[str, ...] = ()) -> list[tuple[float, str]]:
    """Field paths by the share of documents whose value admits one of `names`; `_id` first among equals (it
    needs no document map), then a field whose name hints."""
    out = []
    for path, stats in sample.fields.items():
        if any(stats.counts[n] for n in names):
            share = sample.share(path, *names)
            tie = (0.002 if path == "_id" else 0.0) + (0.001 if hints and _hint(path, hints) else 0.0)
            out.append((share + tie, path))
    return sorted(out, reverse=True)


def _evidence(sample: Sample, ranked: list[tuple[float, str]], role: str, names: tuple[str, ...]) -> list[str]:
    lines = []
    for i, (_, path) in enumerate(ranked[:3]):
        stats = sample.fields[path]
        hits = round(sample.share(path, *names) * len(sample.docs))
        lead = f"{role}: field {path!r}" if i == 0 else f"  runner-up {path!r}"
        lines.append(f"{lead}: {hits} of {len(sample.docs)} sampled documents read as {'/'.join(names)} "
                     f"({hits / max(1, len(sample.docs)):.0%}); e.g. {', '.join(stats.shown())}")
    return lines


def _single(sample: Sample, kind: str) -> Choice | None:
    """Codes, GTINs or grey GTINs: one field whose values read as such."""
    names = (CODE,) if kind == "codes" else (GTIN,)
    ranked = _ranked(sample, names)
    if not ranked:
        return None
    best = ranked[0][1]
    share = sample.share(best, *names)
    attribute = {"codes": "code_field", "gtins": "gtin_field", "grey": "grey_field"}[kind]
    rival = sample.share(ranked[1][1], *names) if len(ranked) > 1 else 0.0
    choice = Choice(kind, sample.name, {attribute: best}, share, len(sample.docs),
                    share + (0.25 if _hint(sample.name, _DB_HINTS[kind]) else 0.0) + (0.5 if kind == "codes" else 0),
                    evidence=_evidence(sample, ranked, {"codes": "code", "gtins": "gtin", "grey": "gtin"}[kind],
                                       names))
    choice.confidence = _confidence(share, rival, len(sample.docs), best != "_id" and rival >= share)
    return choice


def _prices(sample: Sample) -> Choice | None:
    """Minimum prices: a key (a GTIN or `pg:N`) or a group field, and a price field, chosen together as the
    combination under which the most sampled documents map."""
    keys = [p for _, p in _ranked(sample, (GTIN, PGKEY))] + [""]
    groups = [p for _, p in _ranked(sample, (GROUP,), _GROUP_HINTS)] + [""]
    prices = [p for _, p in _ranked(sample, (PRICE,), _PRICE_HINTS)]
    best: tuple[float, float, str, str, str] | None = None
    shares: dict[str, float] = {}           # per price field, the best share it reaches
    for price in prices:
        for key in keys[:6]:
            for group in groups[:6]:
                if (not key and not group) or len({price, key, group} - {""}) < len([x for x in (price, key, group)
                                                                                     if x]):
                    continue
                mapped = sum(1 for row in sample.docs if _price_maps(row, key, group, price))
                share = mapped / max(1, len(sample.docs))
                bonus = _price_bonus(sample, price, key, group)
                shares[price] = max(shares.get(price, 0.0), share)
                candidate = (share, bonus, price, key, group)
                if best is None or candidate[:2] > best[:2]:
                    best = candidate
    if best is None or not (_hint(sample.name, _DB_HINTS["prices"]) or _hint(best[2], _PRICE_HINTS)):
        return None
    share, bonus, price, key, group = best
    evidence = _evidence(sample, _ranked(sample, (PRICE,), _PRICE_HINTS), "price", (PRICE,))
    if key:
        evidence += _evidence(sample, [(0.0, key)], "key", (GTIN, PGKEY))
    if group:
        evidence += _evidence(sample, [(0.0, group)], "group", (GROUP,))
    choice = Choice("prices", sample.name, {"price_key_field": key, "price_group_field": group, "price_field": price},
                    share, len(sample.docs), share + 0.25, evidence=evidence)
    rival = max((v for k, v in shares.items() if k != price), default=0.0)
    choice.confidence = _confidence(share, rival, len(sample.docs), rival >= share and bonus < 0.5)
    if rival >= share and choice.confidence == "high":
        choice.confidence = "medium"        # a tie between price fields, broken by names and the values' shape
    return choice


def _price_maps(row: dict[str, Any], key: str, group: str, price: str) -> bool:
    if price not in row or PRICE not in row[price][1]:
        return False
    if key and key in row and row[key][0] not in (None, ""):
        return bool(row[key][1] & {GTIN, PGKEY})
    return bool(group) and group in row and GROUP in row[group][1]


def _price_bonus(sample: Sample, price: str, key: str, group: str) -> float:
    """What tells a price from a product group or a counter when both map: names, and the values' shape (a
    group's values repeat over the GTINs' documents, yet a group has one minimum price, so among the documents
    that fall back to the group each group comes once; prices spread; counters step by one)."""
    bonus = 0.0
    if _hint(price, _PRICE_HINTS):
        bonus += 0.5
    if _hint(price, _GROUP_HINTS) or price == "_id":
        bonus -= 0.5
    if _counter_like(sample, price):
        bonus -= 0.4                        # a sequence, a version, a time stamp: counts, not prices
    stats = sample.fields[price]
    if len(stats.distinct) == 1 and stats.present >= 5:
        bonus -= 0.4                        # one value in every document: a flag or a schema version
    if group:
        stats = sample.fields[group]
        bonus += 0.3 if _hint(group, _GROUP_HINTS) else 0.0
        bonus += 0.2 if len(stats.distinct) <= max(1, stats.present // 2) else -0.2
        bonus -= 0.5 if _hint(group, _PRICE_HINTS) else 0.0
        fallen = [row[group][0] for row in sample.docs
                  if group in row and not (key and key in row and row[key][0] not in (None, ""))]
        if len(fallen) >= 2:
            bonus += 0.3 if len(set(map(str, fallen))) == len(fallen) else -0.3
        elif not fallen and not _hint(group, _GROUP_HINTS):
            bonus -= 0.1                    # no document needs a group: name none rather than guess one
    return bonus


def _counter_like(sample: Sample, path: str) -> bool:
    """Whether a field's integers step by one from document to document in most of the sample (a sequence
    number, a revision, a time in seconds of a batch load): the shape of a counter, not of prices."""
    values = [row[path][0] for row in sample.docs if path in row]
    pairs = [(a, b) for a, b in zip(values, values[1:])
             if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and not isinstance(b, bool)]
    return len(pairs) >= 4 and sum(1 for a, b in pairs if abs(a - b) == 1) >= len(pairs) / 2


def _confidence(share: float, rival: float, sampled: int, by_name: bool) -> str:
    """high: nearly all documents map, no rival field comes close, and enough were sampled; low: a share under
    80 %, a tie broken by names alone, or under 20 documents; medium otherwise."""
    if share < 0.8 or sampled < 20 or by_name:
        return "low"
    if share >= 0.95 and rival <= 0.5:
        return "high"
    if rival >= share - 0.05:
        return "medium" if share >= 0.95 else "low"
    return "medium"


def propose(samples: list[Sample]) -> Proposal:
    """The proposed mapping for these sampled databases (see the module's text)."""
    candidates: list[Choice] = []
    seen: dict[str, dict[str, Any]] = {}
    for sample in samples:
        seen[sample.name] = {"doc_count": sample.doc_count, "sampled": len(sample.docs),
                             "fields": {p: {"present": s.present, **{k: v for k, v in s.counts.items() if v}}
                                        for p, s in sorted(sample.fields.items())}}
        if not sample.docs:
            continue
        for kind in ("codes", "gtins", "grey"):
            choice = _single(sample, kind)
            if choice is not None and choice.share >= MIN_SHARE \
                    and (kind != "grey" or _hint(sample.name, _DB_HINTS["grey"])):
                candidates.append(choice)
        price = _prices(sample)
        if price is not None and price.share >= MIN_SHARE:
            candidates.append(price)
    chosen: dict[str, Choice] = {}
    used: set[str] = set()
    for choice in sorted(candidates, key=lambda c: (-c.score, KINDS.index(c.kind))):
        if choice.kind not in chosen and choice.database not in used:
            chosen[choice.kind] = choice
            used.add(choice.database)
    notes = []
    for kind in KINDS:
        if kind not in chosen:
            notes.append(f"{kind}: no database holds it in the sample (not mapped; add a [{kind}] section by hand "
                         f"if the source has one)")
    for name in seen:
        if name not in used:
            notes.append(f"database {name!r}: mapped to nothing ({seen[name]['sampled']} documents sampled)")
    return Proposal({k: chosen[k] for k in KINDS if k in chosen}, seen, notes)
