"""Query parameters of a request, as the endpoints of both protocols read them."""

from __future__ import annotations

from urllib.parse import unquote

from .responses import error


def query_values(query: bytes | None, name: bytes) -> list[str]:
    """Values of one query parameter, percent-decoded without turning '+' into a space.

    GS1's character set has '+' and no space, so a '+' in a scan is the scan's own character.
    """
    if not query:
        return []
    values = []
    for part in query.split(b"&"):
        key, sep, value = part.partition(b"=")
        if key == name and sep:
            values.append(unquote(value.decode("latin-1"), encoding="utf-8", errors="strict"))
    return values


def int_param(query: bytes | None, name: bytes, default: int) -> int:
    """A non-negative integer parameter (the last one given), or `default`; HTTP 400 for anything else."""
    values = query_values(query, name)
    if not values:
        return default
    text = values[-1].strip()
    if not text.isdigit():
        raise error(400, "bad_request", f"{name.decode()} must be a non-negative integer, not {text!r}")
    return int(text)
