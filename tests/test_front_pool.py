"""The front's pool on its own (lmcz_fast/front/pool.py), against the stand-in in this process: `Pool.call`, the
callback way the tills' checks take (issue 21: no task per check). Each call ends once, by its answer, its failure
or its deadline; a connection cut off by the deadline is never reused; a full pool queues the call and its deadline
still holds; the slots of finished calls all come back."""

from __future__ import annotations

import asyncio
import json
import socket

from _official_standin import StandIn

from lmcz_fast.front.config import parse_credentials, parse_url
from lmcz_fast.front.pool import Answer, Pool, PoolError

CODE = "0104600439930110215abcdefghijkl"


def _run(url: str, size: int, scenario):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        pool = Pool(parse_url(url), parse_credentials("admin:admin"), size)
        try:
            return await scenario(pool)
        finally:
            pool.close()

    return asyncio.run(main())


def _request(pool: Pool) -> bytes:
    return pool.request_bytes(b"GET", b"/api/v1/cis/check", b"cis=" + CODE.encode(), b"", None, b"9999078900001234")


async def _call(pool: Pool, seconds: float) -> tuple[Answer | None, Exception | None]:
    done: asyncio.Future[tuple[Answer | None, Exception | None]] = asyncio.get_running_loop().create_future()
    calls = []

    def callback(answer: Answer | None, error: Exception | None) -> None:
        calls.append(1)
        done.set_result((answer, error))

    pool.call(_request(pool), seconds, callback)
    result = await done
    await asyncio.sleep(0.05)                  # a second callback (deadline after answer) would come now
    assert len(calls) == 1
    return result


def test_a_call_is_answered_on_a_kept_alive_connection() -> None:
    with StandIn(blocked=[CODE]) as lm:
        async def scenario(pool: Pool):  # type: ignore[no-untyped-def]
            results = [await _call(pool, 5.0) for _ in range(3)]
            return results, pool.opened_total, pool.open, len(pool.idle)

        results, opened, open_now, idle = _run(lm.url, 4, scenario)
    for answer, error in results:
        assert error is None and answer is not None and answer.status == 200
        assert json.loads(answer.body)["codes"][0]["isBlocked"] is True
    assert (opened, open_now, idle) == (1, 1, 1)          # one connection, reused, back in the pool


def test_the_deadline_cuts_a_hung_call_and_its_connection_is_not_reused() -> None:
    with StandIn() as lm:
        lm.set(fault="hang")

        async def scenario(pool: Pool):  # type: ignore[no-untyped-def]
            loop = asyncio.get_running_loop()
            started = loop.time()
            answer, error = await _call(pool, 0.2)
            took = loop.time() - started - 0.05
            await asyncio.sleep(0.05)
            return answer, error, took, pool.open, len(pool.idle)

        answer, error, took, open_now, idle = _run(lm.url, 2, scenario)
    assert answer is None and isinstance(error, TimeoutError)
    assert 0.19 <= took < 2.0
    assert (open_now, idle) == (0, 0)                    # cut off mid-answer: closed, its slot free


def test_a_full_pool_queues_the_call_and_its_deadline_holds() -> None:
    with StandIn() as lm:
        lm.set(delay_ms=400)

        async def scenario(pool: Pool):  # type: ignore[no-untyped-def]
            first = asyncio.ensure_future(_call(pool, 5.0))
            await asyncio.sleep(0.05)
            second = await _call(pool, 0.1)          # the only connection is busy: waits, then its deadline
            return await first, second, pool.open

        first, second, open_now = _run(lm.url, 1, scenario)
    assert first[1] is None and first[0] is not None and first[0].status == 200
    assert second[0] is None and isinstance(second[1], TimeoutError)
    assert open_now == 1


def test_nothing_listening_is_refused_at_once() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]            # bound, not listening: connections are refused

        async def scenario(pool: Pool):  # type: ignore[no-untyped-def]
            result = await _call(pool, 5.0)
            return result, pool.open

        (answer, error), open_now = _run(f"http://127.0.0.1:{port}", 2, scenario)
    assert answer is None and isinstance(error, PoolError) and error.reason == "refused"
    assert open_now == 0


def test_each_call_keeps_its_own_deadline_under_the_one_timer() -> None:
    """A long deadline first, then a short one: the short one ends at its own deadline (the timer is armed again
    for it), the long one gets its answer; many calls that finished leave the heap as the timer passes."""
    with StandIn() as lm:
        lm.set(delay_ms=1000)

        async def scenario(pool: Pool):  # type: ignore[no-untyped-def]
            loop = asyncio.get_running_loop()
            slow = asyncio.ensure_future(_call(pool, 5.0))
            await asyncio.sleep(0.02)
            started = loop.time()
            short = await _call(pool, 0.1)
            took = loop.time() - started - 0.05
            first = await slow
            lm.set(delay_ms=0)
            for _ in range(20):
                await _call(pool, 0.15)
            await asyncio.sleep(0.3)
            return first, short, took, len(pool._deadlines), pool._timer

        first, short, took, left, timer = _run(lm.url, 4, scenario)
    assert first[1] is None and first[0] is not None and first[0].status == 200
    assert short[0] is None and isinstance(short[1], TimeoutError)
    assert 0.09 <= took < 0.8                      # its own 100 ms, not the slow call's 5 s nor the 1 s answer
    assert left == 0 and timer is None             # every call's deadline passed: the heap is empty, no timer


def test_the_answer_decoder_is_json_loads_exactly() -> None:
    """`decode_json` (the forwarder's judge of the module's answer) takes and refuses exactly what `json.loads`
    does, with the same values: a malformed answer must fall back to our own, a good one must not. Hand-picked
    edges, then random damage to a check answer."""
    import random

    from lmcz_fast.front.forwarder import decode_json

    answer = json.dumps({"code": 0, "reqId": "r", "inst": "i", "codes": [
        {"cis": "0104600439930110215abc\u001d91AAAA", "isBlocked": True, "mrp": 12.5, "groupIds": [1], "smp": None,
         "sold": False}]}).encode()
    bodies = [b'{"a":1}', b'{"a":1} \n\r\t', b'{"a":1} x', b'{"a":1}{}', b"{", b'{"a":}', b'{"a":NaN}',
              b'{"a":"\xff"}', b'\xef\xbb\xbf{"a":1}', b"{\x00", b"[1]", b' {"a":1}', b'{"a":1,}', b"{}", b"",
              b'{"a":1e999}', b'{"a":"\\ud800"}', b'{"a":1}\x00', b'{"a":"\x1d"}', b'{"a":"\xed\xa0\x80"}', answer]
    rng = random.Random(21)
    for _ in range(3000):
        damaged = bytearray(answer)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(damaged) + 1)
            roll = rng.random()
            if roll < 0.4:
                del damaged[at:at + 1]
            elif roll < 0.8:
                damaged.insert(at, rng.choice(b'{}[]",:0123456789 \t\nabeflnrstu.-+\\\x00\xff'))
            else:
                del damaged[at:]
        bodies.append(bytes(damaged))
    for body in bodies:
        try:
            expected: object = ("ok", json.loads(body))
        except ValueError as exc:
            expected = ("refused", type(exc))
        try:
            got: object = ("ok", decode_json(body))
        except ValueError as exc:
            got = ("refused", type(exc))
        assert repr(got) == repr(expected), body
