"""The `_changes` answer, stream-parsed: lists of changes as they arrive, then `last_seq`, in bounded memory."""

from __future__ import annotations

import codecs
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ijson
import msgspec

from .config import SourceMalformed, SourceUnavailable


class _Reader:
    """A file-like view of a response body's chunks, for ijson."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


class _NotJson(ValueError):
    """NaN, Infinity or -Infinity: Python's decoder takes them, JSON has no such values."""


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value")


_SKIP = re.compile(r"[\s,]*")
_DECODE = json.JSONDecoder(parse_constant=_no_constant).raw_decode
_LOADS = json.JSONDecoder(parse_constant=_no_constant).decode
#: Deepest nesting accepted in a `_changes` answer (a change with its document is a few levels deep).
MAX_DEPTH = 64
#: Longest sequence accepted (CouchDB 2+'s opaque sequences grow with the number of shards, not the changes).
MAX_SEQ = 65536


class _Change(msgspec.Struct, gc=False):
    """The two fields of a change that a full pass of codes keyed by the document id needs; the rest is skipped.
    Not tracked by the garbage collector (it holds a str and a bool, never a cycle): 900k of them would make the
    collector walk them again and again during a first pass."""

    id: str
    deleted: bool = False


class _Rev(msgspec.Struct, gc=False):
    rev: Any = None


class _IdChange(msgspec.Struct, gc=False):
    """A change of an incremental pass whose records are keyed by the document id (codes, GTINs): the id, whether
    it was deleted, and the sequence and revision that anchor a checkpoint; the rest is skipped unbuilt. Untracked
    by the garbage collector (JSON holds no cycle): a page of 10k changes as dicts made ~40 collections in the
    writer between two commits, as these structs ~14 (their `changes` lists), and decodes in a fifth of the time."""

    id: str
    seq: int | str | None = None
    deleted: bool = False
    changes: list[_Rev] = []

    @property
    def rev(self) -> Any:
        return self.changes[0].rev if self.changes else None


_DECODE_IDS = msgspec.json.Decoder(list[_Change]).decode
_DECODE_KEYED = msgspec.json.Decoder(list[_IdChange]).decode
_DECODE_ANY = msgspec.json.Decoder().decode
_RESULTS_OPEN_BYTES = re.compile(rb'\s*\{\s*"results"\s*:\s*\[')
_MAX_PENDING = 1 << 20          # bytes of changes held undecoded before the parser cuts them one by one


def _decode_array(text: bytes, ids_only: bool, keyed: bool = False) -> list[Any]:
    """A JSON array of changes, decoded in C: `_Change`s with `ids_only`, `_IdChange`s with `keyed` (dicts where
    an element does not fit)."""
    try:
        if ids_only or keyed:
            try:
                return _DECODE_IDS(text) if ids_only else _DECODE_KEYED(text)
            except msgspec.ValidationError:
                pass
        try:
            return _DECODE_ANY(text)
        except msgspec.DecodeError as exc:
            raise ValueError(str(exc)) from None
    except RecursionError:
        raise SourceMalformed("a change in the answer is nested too deeply") from None


def _parse_changes(chunks: Iterator[bytes], url: str, ids_only: bool = False,
                   keyed: bool = False) -> Iterator[list[Any] | _LastSeq]:
    """Stream-parse a `_changes` answer: lists of the elements of `results` as they arrive, then `last_seq`.

    CouchDB and its kin write `{"results":[`, then one change per line, then `],"last_seq":...}`: in that
    common layout all complete lines of each chunk are decoded as one JSON array in C (msgspec), straight from
    the bytes. A chunk whose lines are not whole changes is cut change by change (`raw_decode`); any other layout
    goes through ijson's event stream. Memory is bounded by a chunk and one change, whatever `limit` the server
    honoured. With `ids_only`, changes come as `_Change` (id and deleted only, the rest skipped unbuilt) where
    they fit, with `keyed` as `_IdChange` (id, deleted, seq and revision), else as dicts.
    """
    buffer = b""
    chunks = iter(chunks)
    for chunk in chunks:
        buffer += chunk
        if len(buffer.lstrip()) >= 16 or b"[" in buffer:
            break
    opening = _RESULTS_OPEN_BYTES.match(buffer)
    if opening is None:
        yield from _parse_changes_generally(itertools.chain([buffer], chunks), url)
        return
    # The lines are gathered in a bytearray that starts with "[": the lines up to the last one that ends with a
    # comma, that comma turned into "]", are decoded in place (a memoryview, no copy), and the rest moves to the
    # front behind a new "[". Only that rest is searched for the closing "\n]": each byte is copied once, and the
    # searches look at the end of each chunk, not at all of it.
    buffer = bytearray(b"[") + buffer[opening.end():]
    searched = 1                        # how much of the buffer is known to hold no closing "\n]"
    at_start = True                     # nothing but whitespace after "[" so far
    closed = False
    while True:
        comma = buffer.rfind(b",\n")
        if comma > 1 and buffer[comma - 2:comma] == b"\n]":
            comma = buffer.rfind(b",\n", 0, comma - 2)   # "\n],\n" closes the results: decode up to the last change
        if comma > 0:
            buffer[comma] = 0x5D        # "]"
            try:
                with memoryview(buffer) as view:
                    items = _decode_array(view[:comma + 1], ids_only, keyed)
            except ValueError:
                buffer[comma] = 0x2C
                break                   # not one change per line: cut them one by one below
            if items:
                yield items
            del buffer[:comma + 1]
            buffer[0] = 0x5B            # "[" over the newline: the rest starts an array again
            searched = 1
        end = buffer.find(b"\n]", max(1, searched - 1))
        if end < 0 and at_start:
            rest = buffer[1:].lstrip()
            if rest.startswith(b"]"):
                end = len(buffer) - len(rest) - 1         # `[]`, `[ ]`: no results
            at_start = not rest
        if end >= 0:                    # the results close here: the last lines, then the tail
            body = bytes(buffer[1:end + 1]).strip().rstrip(b",")
            try:
                items = _decode_array(b"[" + body + b"]", ids_only, keyed) if body else []
            except ValueError:
                break                   # not one change per line: cut them one by one below
            if items:
                yield items
            closed = True
            buffer = buffer[end + 2:]
            break
        if len(buffer) > _MAX_PENDING:
            break                       # lines that never end with a comma: cut them one by one below
        searched = len(buffer)
        chunk = next(chunks, None)
        if chunk is None:
            break                       # no line layout (all on one line?), or cut short: the general cut decides
        buffer += chunk
    if not closed:
        buffer = bytes(buffer[1:])
    if not closed:
        decoder = codecs.getincrementaldecoder("utf-8")()
        text = decoder.decode(buffer)
        while True:
            items, text, closed = _cut_objects(text)
            if items:
                yield items
            if closed:
                break
            chunk = next(chunks, None)
            if chunk is None:
                raise SourceUnavailable(f"{url}: the answer is malformed or was cut short inside its results")
            text += decoder.decode(chunk)
        buffer = text.encode()
    rest = (buffer + b"".join(chunks)).strip().lstrip(b",").strip()
    try:
        tail = {} if rest == b"}" else _LOADS((b"{" + rest).decode("utf-8"))
    except RecursionError:
        raise SourceMalformed(f"{url}: the end of the answer is nested too deeply") from None
    except _NotJson as exc:
        raise SourceMalformed(f"{url}: the end of the answer is not JSON: {exc}") from None
    except ValueError:
        raise SourceUnavailable(f"{url}: the end of the answer is not JSON (cut short?): {rest[:80]!r}") from None
    if not isinstance(tail, dict) or "last_seq" not in tail:
        raise SourceUnavailable(f"{url}: the answer has no last_seq (cut short?)")
    yield _LastSeq(checked_seq(tail["last_seq"], url))


def checked_seq(seq: Any, url: str) -> Any:
    """A sequence as CouchDB and its kin write them: a non-negative integer (CouchDB 1.x, PouchDB) or a string
    (CouchDB 2+'s `N-opaque`); anything else (NaN, Infinity, a fraction, an object) is refused."""
    if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0:
        return seq
    if isinstance(seq, float) and seq.is_integer() and seq >= 0:
        return int(seq)                     # `5.0`: ijson's numbers
    if isinstance(seq, str) and 0 < len(seq) <= MAX_SEQ:
        return seq
    raise SourceMalformed(f"{url}: the answer's sequence is not a sequence: {str(seq)[:80]!r}")


def _cut_objects(text: str) -> tuple[list[Any], str, bool]:
    """The complete changes at the start of `text`, one by one -> (changes, what is left, results closed)."""
    items = []
    pos = _SKIP.match(text).end()
    while pos < len(text) and text[pos] != "]":
        try:
            item, end = _DECODE(text, pos)
        except _NotJson as exc:
            raise SourceMalformed(f"a change in the answer is not JSON: {exc}") from None
        except ValueError:
            break                                       # cut by the chunk boundary: wait for more
        except RecursionError:
            raise SourceMalformed("a change in the answer is nested too deeply") from None
        items.append(item)
        pos = _SKIP.match(text, end).end()
    if pos < len(text) and text[pos] == "]":
        return items, text[pos + 1:], True
    return items, text[pos:], False


def _parse_changes_generally(chunks: Iterator[bytes], url: str) -> Iterator[Any]:
    """Any JSON layout of a `_changes` answer, through ijson's basic events (no prefixes: their text would grow
    with the nesting). The top level must be an object with a `results` list and a `last_seq`; nesting deeper
    than `MAX_DEPTH` is refused before it is built."""
    last_seq: Any = _MISSING
    results = in_results = False
    builder: Any = None
    depth = 0                          # containers open before this event
    key: str | None = None             # the last key seen at the top level
    try:
        for event, value in ijson.basic_parse(_Reader(chunks), use_float=True):
            opens = event in ("start_map", "start_array")
            closes = event in ("end_map", "end_array")
            if closes:
                depth -= 1
            level = depth              # where this value sits: 0 the answer, 1 its fields, 2 the changes
            if opens:
                depth += 1
                if depth > MAX_DEPTH:
                    raise SourceMalformed(f"{url}: the answer is nested more than {MAX_DEPTH} levels deep")
            if builder is not None:
                builder.event(event, value)
                if closes and level == 2:
                    yield [builder.value]
                    builder = None
            elif level == 0:
                if event != "start_map" and not closes:
                    raise SourceMalformed(f"{url}: the answer is not a JSON object")
            elif level == 1:
                if event == "map_key":
                    key = value
                elif event == "start_array" and key == "results":
                    results = in_results = True
                elif event == "end_array" and in_results:
                    in_results = False
                elif not opens and not closes and key == "last_seq":
                    last_seq = value
            elif level == 2 and in_results:
                if opens:
                    builder = ijson.ObjectBuilder()
                    builder.event(event, value)
                elif not closes:
                    yield [value]                     # a change that is not an object: counted as unmapped
    except ijson.JSONError as exc:
        raise SourceUnavailable(f"{url}: the answer is not valid JSON or was cut short ({exc})") from None
    if last_seq is _MISSING:
        raise SourceUnavailable(f"{url}: the answer has no last_seq (cut short?)")
    if not results:
        raise SourceMalformed(f"{url}: the answer has no `results` list: taken as no changes, it would move the "
                              f"checkpoint past changes never read")
    yield _LastSeq(checked_seq(last_seq, url))


_MISSING = object()


@dataclass(frozen=True)
class _LastSeq:
    value: Any
