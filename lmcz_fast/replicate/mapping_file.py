"""The mapping file: which source database holds which data, and in which field of its documents (TOML).

The built-in mapping is `DEFAULT_MAPPING_TEXT`, parsed by the same reader as a file (`replicate --mapping FILE`),
so the guess and a file are one structure; `replicate --inspect` writes a file of this form (`render`).
"""

from __future__ import annotations

import os
import tomllib
from typing import Any

from .config import KINDS, Mapping, MappingError, check_path

#: The built-in mapping: LM 2.x's database names, each record keyed by the document id (docs/replication.md).
DEFAULT_MAPPING_TEXT = """\
# lmcz-fast replication mapping (docs/replication.md, "The mapping file").
# A field is a name, a dotted path into nested objects (item.cis), or _id for the document id.

[codes]                 # blocked marking codes
database = "blocked_cis"
code = "_id"

[gtins]                 # wholly blocked GTINs
database = "blocked_gtin"
gtin = "_id"

[prices]                # minimum prices in kopecks, for a GTIN or a product group
database = "min_price"
key = "_id"             # a GTIN, or a product group as pg:N or a number of up to 3 digits ("": none)
price = "price"
# group = "pg"          # optional: a product group id, where the key field is absent or empty

# [grey]                # grey GTINs (no such database by default)
# database = "grey_gtin"
# gtin = "_id"
"""

#: Each section's keys: (the Mapping attribute, or "database"; its default, None for required).
_KEYS: dict[str, dict[str, tuple[str, str | None]]] = {
    "codes": {"database": ("database", None), "code": ("code_field", "_id")},
    "gtins": {"database": ("database", None), "gtin": ("gtin_field", "_id")},
    "prices": {"database": ("database", None), "key": ("price_key_field", "_id"), "price": ("price_field", "price"),
               "group": ("price_group_field", "")},
    "grey": {"database": ("database", None), "gtin": ("grey_field", "_id")},
}


def parse_mapping(text: str, origin: str = "the mapping") -> tuple[dict[str, str], Mapping]:
    """A mapping file's text -> ({kind: database}, Mapping). `MappingError` naming the key for anything wrong:
    not TOML, an unknown section or key, a value that is not a string, a database named twice, no section."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{origin}: not a TOML file: {exc}") from None
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise MappingError(f"{origin}: unknown section [{unknown[0]}]; known: "
                           + ", ".join(f"[{k}]" for k in KINDS))
    if not data:
        raise MappingError(f"{origin}: maps nothing (no [codes], [gtins], [prices] or [grey] section)")
    databases: dict[str, str] = {}
    fields: dict[str, str] = {}
    for kind in KINDS:
        section = data.get(kind)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise MappingError(f"{origin}: {kind} must be a section ([{kind}]), not a value")
        extra = sorted(set(section) - set(_KEYS[kind]))
        if extra:
            raise MappingError(f"{origin}: unknown key {kind}.{extra[0]}; known: "
                               + ", ".join(f"{kind}.{k}" for k in _KEYS[kind]))
        for key, (attribute, default) in _KEYS[kind].items():
            value = section.get(key, default)
            if value is None:
                raise MappingError(f"{origin}: {kind}.{key} is missing (the source database's name)")
            if not isinstance(value, str):
                raise MappingError(f"{origin}: {kind}.{key} must be a string, not {value!r}")
            if attribute == "database":
                if not value.strip() or value != value.strip() or not value.isprintable():
                    raise MappingError(f"{origin}: {kind}.database: {value!r} is not a database name")
                if value in databases.values():
                    raise MappingError(f"{origin}: {kind}.database: {value!r} is named for two kinds of data")
                databases[kind] = value
            elif not value and attribute in ("price_key_field", "price_group_field"):
                fields[attribute] = ""          # none: a price applies by the other of the two
            else:
                fields[attribute] = check_path(value, f"{origin}: {kind}.{key}")
    try:
        return databases, Mapping(**fields)
    except MappingError as exc:
        raise MappingError(f"{origin}: {exc}") from None


def read_mapping(path: str | os.PathLike[str]) -> tuple[dict[str, str], Mapping]:
    """A mapping file -> ({kind: database}, Mapping); `MappingError` when unreadable or malformed."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(1 << 20)
    except OSError as exc:
        raise MappingError(f"cannot read the mapping file {os.fspath(path)}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MappingError(f"{os.fspath(path)}: not UTF-8 text") from None
    return parse_mapping(text, os.fspath(path))


def default_mapping() -> tuple[dict[str, str], Mapping]:
    return parse_mapping(DEFAULT_MAPPING_TEXT, "the built-in mapping")


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(databases: dict[str, str], mapping: Mapping, notes: dict[str, list[str]] | None = None,
           header: list[str] | None = None) -> str:
    """A mapping file's text for `databases` and `mapping`, each section preceded by its `notes` (comments)."""
    notes = notes or {}
    lines = [f"# {line}" for line in (header or [])]
    values = {"price_key_field": mapping.price_key_field, "price_group_field": mapping.price_group_field,
              "code_field": mapping.code_field, "gtin_field": mapping.gtin_field,
              "price_field": mapping.price_field, "grey_field": mapping.grey_field}
    for kind in KINDS:
        if lines:
            lines.append("")
        lines += [f"# {line}" for line in notes.get(kind, [])]
        if kind not in databases:
            lines.append(f"# [{kind}]: not mapped")
            continue
        lines.append(f"[{kind}]")
        lines.append(f"database = {_quoted(databases[kind])}")
        for key, (attribute, _) in _KEYS[kind].items():
            if attribute == "database" or (attribute == "price_group_field" and not values[attribute]):
                continue
            lines.append(f"{key} = {_quoted(values[attribute])}")
    return "\n".join(lines) + "\n"
