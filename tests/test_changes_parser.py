"""The `_changes` stream parser against `json.loads` of the whole answer, over layouts and chunk boundaries.

CouchDB writes one change per line; other servers (and proxies that re-encode) may write one line, pretty-print, put
the commas first or end lines with CRLF. Whatever the layout and wherever the chunks are cut, the parser must give
exactly the changes and the `last_seq` that a plain JSON decode of the whole answer gives: a change it dropped would
be a blocked code left out of the store.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmcz_fast.replicate import SourceUnavailable
from lmcz_fast.replicate.config import SourceMalformed
from lmcz_fast.replicate import ReplicationConfig
from lmcz_fast.replicate.changes import _IdChange, _LastSeq, _parse_changes
from lmcz_fast.replicate.mapping import _Batch, _map_change, _map_keyed
from lmcz_fast.replicate.replicator import _anchor_of
from lmcz_fast.synth import cis_list

ids = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40),
    st.from_regex(r"01[0-9]{14}21[!-~]{6,13}", fullmatch=True),
)
changes = st.lists(st.fixed_dictionaries(
    {"seq": st.integers(1, 10**9), "id": ids, "changes": st.just([{"rev": "1-abc"}])},
    optional={"deleted": st.booleans(), "doc": st.fixed_dictionaries({"_id": ids, "n": st.integers()})},
), max_size=40)


def _layout(results: list[dict], last_seq: object, style: str) -> bytes:
    lines = [json.dumps(change, separators=(",", ":"), ensure_ascii=False) for change in results]
    tail = json.dumps(last_seq)
    if style == "couchdb":
        text = '{"results":[\n' + ",\n".join(lines) + '\n],\n"last_seq":' + tail + "}\n"
    elif style == "no final newline":
        text = '{"results":[\n' + ",\n".join(lines) + '\n],"last_seq":' + tail + "}"
    elif style == "one line":
        text = json.dumps({"results": results, "last_seq": last_seq}, ensure_ascii=False)
    elif style == "pretty":
        text = json.dumps({"results": results, "last_seq": last_seq}, indent=2)
    elif style == "commas first":
        text = '{"results":[\n' + "\n,".join(lines) + '\n],"last_seq":' + tail + "}\n"
    elif style == "crlf":
        text = '{"results":[\r\n' + ",\r\n".join(lines) + '\r\n],"last_seq":' + tail + "}\r\n"
    else:
        text = '{ "results" : [ ' + " , ".join(lines) + ' ] , "last_seq" : ' + tail + " }"
    return text.encode()


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:]) if b > a]


def _plain(item: object) -> tuple[str, bool]:
    if isinstance(item, dict):
        return item["id"], item.get("deleted") is True
    return item.id, item.deleted is True


@settings(max_examples=300, deadline=None)
@given(changes, st.one_of(st.integers(0, 10**9), st.text(min_size=1, max_size=20)),
       st.sampled_from(["couchdb", "no final newline", "one line", "pretty", "commas first", "crlf", "spaced"]),
       st.lists(st.integers(0, 10**6), max_size=12), st.sampled_from(["dicts", "ids", "keyed"]))
def test_parser_gives_what_json_gives(results, last_seq, style, cuts, shape):
    data = _layout(results, last_seq, style)
    out = list(_parse_changes(iter(_chunks(data, cuts)), "http://source/db/_changes", ids_only=shape == "ids",
                              keyed=shape == "keyed"))
    assert isinstance(out[-1], _LastSeq) and out[-1].value == json.loads(data)["last_seq"]
    got = [item for items in out[:-1] for item in items]
    assert [_plain(item) for item in got] == [(c["id"], c.get("deleted") is True) for c in results]
    if shape == "dicts":
        assert got == results
    elif shape == "keyed":        # what an increment's checkpoint is anchored on: the sequence and the revision
        assert [(_field(item, "seq"), _rev(item)) for item in got] == [(c["seq"], "1-abc") for c in results]


def _field(item: object, name: str) -> object:
    return item.get(name) if isinstance(item, dict) else getattr(item, name)


def _rev(item: object) -> object:
    return item["changes"][0]["rev"] if isinstance(item, dict) else item.rev


def test_keyed_changes_that_do_not_fit_come_as_dicts_and_are_read_alike():
    """A change whose fields are not what CouchDB writes (a string for `deleted`, a fractional sequence) is not
    forced into the keyed shape: it comes as a dict, mapped as before, and each list the parser yields holds one
    shape (the replicator picks its mapping by the list's first item)."""
    for odd in ('{"seq":1,"id":"a","deleted":"yes","changes":[{"rev":"1-a"}]}', '{"seq":1.5,"id":"a","changes":[]}',
                '{"seq":1,"id":"a","changes":["1-a"]}', '{"seq":1,"changes":[]}'):
        data = ('{"results":[\n{"seq":0,"id":"b","changes":[{"rev":"1-b"}]},\n' + odd + '\n],"last_seq":1}\n').encode()
        out = list(_parse_changes(iter([data]), "u", keyed=True))
        assert all(len({type(item) for item in items}) == 1 for items in out[:-1])
        assert type(out[-2][-1]) is dict and out[-2][-1]["seq"] in (1, 1.5)


@settings(max_examples=100, deadline=None)
@given(changes.filter(bool), st.sampled_from(["couchdb", "one line", "pretty", "commas first"]),
       st.lists(st.integers(0, 10**6), max_size=6), st.data())
def test_an_answer_cut_short_is_refused_never_taken_as_complete(results, style, cuts, data):
    whole = _layout(results, 7, style)
    end = data.draw(st.integers(0, len(whole) - len(whole.rstrip()[-1:]) - 1), label="cut at")
    short = whole[:end]
    try:
        out = list(_parse_changes(iter(_chunks(short, cuts)), "http://source/db/_changes"))
    except SourceUnavailable:
        return
    # A prefix that still decodes to a whole answer is one that only lost trailing whitespace or the final "}".
    assert isinstance(out[-1], _LastSeq) and out[-1].value == 7
    assert [item for items in out[:-1] for item in items] == results


def test_a_big_page_with_commas_first_is_decoded_on_the_way():
    results = [{"seq": i, "id": f"doc{i}", "changes": [{"rev": "1-a"}]} for i in range(50_000)]
    data = _layout(results, 50_000, "commas first")
    out = list(_parse_changes(iter(_chunks(data, list(range(0, len(data), 65536)))), "u", ids_only=True))
    assert sum(len(items) for items in out[:-1]) == 50_000
    assert max(len(items) for items in out[:-1]) < 50_000       # decoded on the way, not held to the end


@pytest.mark.parametrize("tail", [b"", b'{"results":[', b'{"results":[\n{"seq":1,"id":"a","changes":[]}'])
def test_truncated_answers_are_errors(tail):
    with pytest.raises(SourceUnavailable):
        list(_parse_changes(iter([tail]), "u"))


@pytest.mark.parametrize("answer", [
    b'{"last_seq": 5}',                                   # no results at all (issue 18, item 3)
    b'{"results": null, "last_seq": 5}',
    b'{"results": {}, "last_seq": 5}',
    b'{"results": "changes", "last_seq": 5}',
    b'{"results": {"id": "a"}, "last_seq": 5}',
])
def test_an_answer_without_a_results_list_is_refused_not_taken_as_no_changes(answer):
    """Taken as "no changes", such an answer would move the checkpoint past changes never read."""
    with pytest.raises(SourceMalformed, match="no `results` list"):
        list(_parse_changes(iter([answer]), "u"))


@pytest.mark.parametrize("answer", [
    b'{"results":[],"last_seq":NaN}',                     # issue 18, item 7: a traceback before
    b'{"results":[],"last_seq":Infinity}',
    b'{"results":[],"last_seq":-Infinity}',
    b'{"results": [], "last_seq": NaN}',
    b'{"results":[\n{"id":"a","seq":NaN,"changes":[]}\n],"last_seq":1}',
    b'{"results":[],"last_seq":1.5}',
    b'{"results":[],"last_seq":-3}',
    b'{"results":[],"last_seq":{"n":1}}',
    b'{"results":[],"last_seq":""}',
    b'[{"results":[],"last_seq":1}]',
])
def test_a_sequence_or_a_value_that_is_not_json_is_refused(answer):
    with pytest.raises(SourceMalformed):
        list(_parse_changes(iter([answer]), "u"))


@pytest.mark.parametrize("layout", ["lines", "one line", "tail"])
def test_deep_nesting_is_refused_in_bounded_memory(layout):
    """100,000 levels: refused with a typed error, not a RecursionError, and never built (ijson's prefixes
    would grow with the depth: gigabytes)."""
    deep = b"[" * 100_000 + b"]" * 100_000
    answer = {"lines": b'{"results":[\n{"id":"a","x":' + deep + b'}\n],"last_seq":1}',
              "one line": b'{"results": [ {"id":"a","x":' + deep + b'}], "last_seq":1}',
              "tail": b'{"results":[\n],"other":' + deep + b',"last_seq":1}'}[layout]
    with pytest.raises(SourceMalformed, match="nested"):
        list(_parse_changes(iter([answer[i:i + 65536] for i in range(0, len(answer), 65536)]), "u"))


code_ids = st.one_of(
    st.sampled_from(cis_list(8, seed=3) + ["04606203084623", "4606203084623", "_design/views", "not a code"]),
    ids,
)
keyed_changes = st.lists(st.fixed_dictionaries(
    {"seq": st.integers(1, 10**9), "id": code_ids, "changes": st.just([{"rev": "1-abc"}])},
    optional={"deleted": st.booleans()},
), max_size=30)


@settings(max_examples=200, deadline=None)
@given(keyed_changes, st.sampled_from(["codes", "gtins"]))
def test_a_keyed_page_maps_as_its_dicts_do(results, kind):
    """An increment of records keyed by the id maps the same from `_IdChange`s as from dicts: the same records
    to add, the same documents deleted, the same unmapped ones, the same anchor for the checkpoint."""
    data = _layout(results, 7, "couchdb")
    keyed = [c for items in _parse_changes(iter([data]), "u", keyed=True) if not isinstance(items, _LastSeq)
             for c in items]
    mapping = ReplicationConfig(source="http://source", databases={kind: "db"}).mapping
    fast, plain = _Batch(kind), _Batch(kind)
    assert all(type(c) is _IdChange for c in keyed)
    _map_keyed(keyed, fast)
    for change in results:
        _map_change(change, plain, mapping)
    assert (fast.add, fast.remove, fast.unmapped, fast.changes) == \
        (plain.add, plain.remove, plain.unmapped, plain.changes)
    assert _anchor_of(keyed) == _anchor_of(results)
