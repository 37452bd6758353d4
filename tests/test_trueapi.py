"""The True API client against a real HTTP server on loopback playing CRPT's CDN and hosts."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time

import pytest
from _checker_support import GS, MARGIN, Behaviour, FakeTrueApi, leaks, make_scan, self_signed, snapshot

from lmcz_fast import parse_code
from lmcz_fast.trueapi import HostPolicy, HttpClient, TrueApiClient, TrueApiError

KEY = "test-key"


@pytest.fixture
def scans() -> list[str]:
    rng = random.Random(6)
    return [make_scan(rng) for _ in range(4)]


def run(coro):
    return asyncio.run(coro)


def test_discovery_ranks_hosts_by_health_and_sets_failing_ones_aside(scans):
    with FakeTrueApi() as cdn, FakeTrueApi() as slow, FakeTrueApi() as fast, FakeTrueApi() as sick:
        cdn.hosts = [slow.url, fast.url, sick.url]
        slow.avg_time_ms, fast.avg_time_ms, sick.health_code = 80, 5, 1

        async def go():
            client = TrueApiClient(KEY, cdn_url=cdn.url)
            ranking = await client.discover()
            answer = await client.check_codes(scans[:1])
            await client.aclose()
            return ranking, answer, client

        ranking, answer, client = run(go())
        assert [h.url for h in ranking] == [fast.url, slow.url]
        sick_state = next(h for h in client._hosts if h.url == sick.url)
        assert sick_state.aside_until > time.monotonic() + 800 and "health" in sick_state.last_error
        assert answer.host == fast.url and fast.checks == 1 and slow.checks == 0
        assert cdn.requests[0].headers["x-api-key"] == KEY


def test_check_request_shape_and_response_fields(scans):
    with FakeTrueApi() as host:
        full = parse_code(scans[0]).element_string

        async def go():
            client = TrueApiClient(KEY, hosts=[host.url], fiscal_drive_number="7281440500000001")
            try:
                return await client.check_codes([full])
            finally:
                await client.aclose()

        answer = run(go())
        request = host.requests[-1]
        assert request.method == "POST" and request.path == "/api/v4/true-api/codes/check"
        assert request.headers["x-api-key"] == KEY and request.headers["content-type"] == "application/json"
        assert b"\\u001d" in request.body and GS.encode() not in request.body
        assert request.json() == {"codes": [full], "fiscalDriveNumber": "7281440500000001"}
        assert answer.code == 0 and len(answer.req_id) == 36 and answer.req_timestamp > 1.7e12
        assert answer.codes[0]["cis"] == full.split(GS)[0] and answer.codes[0]["valid"] is True


def test_keep_alive_reuses_one_connection(scans):
    with FakeTrueApi() as cdn, FakeTrueApi() as host:
        cdn.hosts = [host.url]

        async def go():
            client = TrueApiClient(KEY, cdn_url=cdn.url)
            for _ in range(25):
                await client.check_codes(scans[:2])
            await client.aclose()
            return client

        client = run(go())
        assert host.checks == 25
        assert host.connections == 1  # the health check's connection, reused by all 25 checks
        assert client.http.connects == 2  # one to the CDN, one to the host


def test_server_closing_idle_connections_is_retried_transparently(scans):
    with FakeTrueApi() as host:
        async def go():
            client = TrueApiClient(KEY, hosts=[host.url])
            results = []
            for _ in range(5):
                results.append(await client.check_codes(scans[:1]))
                for w in list(host._writers):  # the server drops its side of every idle keep-alive connection
                    host.loop.call_soon_threadsafe(w.close)
                await asyncio.sleep(0)  # the FIN may or may not have arrived: both paths must work
            await client.aclose()
            return results

        assert len(run(go())) == 5


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [
        (Behaviour(status=503), "http"),
        (Behaviour(status=500), "http"),
        (Behaviour(status=429, retry_after="30"), "throttled"),
        (Behaviour(garbage=True), "bad_response"),
        (Behaviour(drop=True), "dropped"),
        (Behaviour(close_midway=True), "dropped"),
        (Behaviour(api_code=5000), "api"),
    ],
)
def test_failures_are_typed_and_set_the_host_aside(scans, behaviour, kind):
    with FakeTrueApi() as host:
        host.behaviour = behaviour

        async def go():
            client = TrueApiClient(KEY, hosts=[host.url])
            try:
                with pytest.raises(TrueApiError) as caught:
                    await client.check_codes(scans[:1])
            finally:
                await client.aclose()
            return caught.value, client

        error, client = run(go())
        assert error.kind == kind and error.host == host.url
        state = client._hosts[0]
        if kind == "api":
            assert state.aside_until == 0.0  # the host answered properly; the request itself was refused
        elif kind == "throttled":
            assert 25 < state.aside_until - time.monotonic() <= 30  # Retry-After honoured
        else:
            assert state.aside_until - time.monotonic() > 800


def test_failing_host_falls_through_to_the_next_within_one_call(scans):
    with FakeTrueApi() as cdn, FakeTrueApi() as best, FakeTrueApi() as second:
        cdn.hosts = [best.url, second.url]
        best.avg_time_ms, second.avg_time_ms = 1, 20
        best.behaviour = Behaviour(status=502)

        async def go():
            client = TrueApiClient(KEY, cdn_url=cdn.url)
            first = await client.check_codes(scans[:1])
            again = await client.check_codes(scans[:1])
            await client.aclose()
            return first, again

        first, again = run(go())
        assert first.host == second.url and again.host == second.url
        assert best.checks == 1 and second.checks == 2  # the failed host was not asked again


def test_slow_answer_sets_host_aside_and_all_aside_still_asks_soonest(scans):
    with FakeTrueApi() as host:
        host.behaviour = Behaviour(delay=0.15)

        async def go():
            client = TrueApiClient(KEY, hosts=[host.url], policy=HostPolicy(slow_after=0.1))
            await client.check_codes(scans[:1])
            aside = client._hosts[0].aside_until
            host.behaviour = Behaviour()
            answer = await client.check_codes(scans[:1])  # the only host, set aside, is still asked
            await client.aclose()
            return aside, answer

        aside, answer = run(go())
        assert aside > time.monotonic() + 800 and answer.code == 0 and host.checks == 2


def test_host_list_is_refreshed_in_the_background(scans):
    with FakeTrueApi() as cdn, FakeTrueApi() as host:
        cdn.hosts = [host.url]

        async def go():
            client = TrueApiClient(KEY, cdn_url=cdn.url, policy=HostPolicy(refresh_every=0.05))
            await client.check_codes(scans[:1])
            await asyncio.sleep(0.1)
            await client.check_codes(scans[:1])  # answers from the old list; refresh runs meanwhile
            await asyncio.sleep(0.05)
            await client.aclose()

        run(go())
        infos = [r for r in cdn.requests if r.path.endswith("/cdn/info")]
        assert len(infos) == 2 and host.checks == 2


def test_standalone_timeout_is_hard(scans):
    with FakeTrueApi() as host:
        host.behaviour = Behaviour(delay=10)

        async def go():
            client = TrueApiClient(KEY, hosts=[host.url])
            started = time.monotonic()
            with pytest.raises(TrueApiError) as caught:
                await client.check_codes(scans[:1], timeout=0.2)
            elapsed = time.monotonic() - started
            await client.aclose()
            return caught.value, elapsed

        error, elapsed = run(go())
        assert error.kind == "timeout" and elapsed <= 0.2 + MARGIN


def test_tls_handshake_that_never_completes_is_cut_by_the_timeout(scans):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes TCP connects; nobody ever speaks TLS
    port = silent.getsockname()[1]
    try:
        async def go():
            client = TrueApiClient(KEY, hosts=[f"https://127.0.0.1:{port}"])
            started = time.monotonic()
            with pytest.raises(TrueApiError):
                await client.check_codes(scans[:1], timeout=0.2)
            elapsed = time.monotonic() - started
            await client.aclose()
            return elapsed

        assert run(go()) <= 0.2 + MARGIN
    finally:
        silent.close()


def test_http_client_reads_chunked_and_close_delimited_bodies():
    accepted = []

    async def serve(reader, writer):
        accepted.append(writer)
        while True:
            try:
                request = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.CancelledError):   # closed, or asyncio.run's end
                writer.close()
                return
            if b"/chunked" in request:
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
                await writer.drain()
                continue
            writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil close")
            await writer.drain()
            writer.close()
            return

    async def go():
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        http = HttpClient()
        chunked = await http.request("GET", f"http://127.0.0.1:{port}/chunked")
        closing = await http.request("GET", f"http://127.0.0.1:{port}/close")
        after = await http.request("GET", f"http://127.0.0.1:{port}/chunked")
        await http.aclose()
        server.close()
        await server.wait_closed()
        return chunked, closing, after, http

    chunked, closing, after, http = run(go())
    assert chunked.body == b"hello world" and closing.body == b"until close" and after.body == b"hello world"
    # the chunked answer kept its connection for the next request; the close-delimited one was not reused
    assert http.connects == 2 and len(accepted) == 2


def test_no_threads_or_sockets_left_behind(scans):
    with FakeTrueApi() as cdn, FakeTrueApi() as host:
        cdn.hosts = [host.url]
        before = snapshot()

        async def go():
            client = TrueApiClient(KEY, cdn_url=cdn.url)
            for i in range(20):
                host.behaviour = Behaviour(drop=True) if i % 3 == 0 else Behaviour()
                try:
                    await client.check_codes(scans[:1])
                except TrueApiError:
                    pass
            await client.aclose()

        run(go())
        assert leaks(before) == ([], [])


def test_body_is_plain_json():
    client = TrueApiClient(KEY, hosts=["http://127.0.0.1:9"])
    with pytest.raises(ValueError, match="at most 100"):
        run(client.check_codes(["x"] * 101))
    assert json.dumps({"codes": [f"a{GS}b"]}) == '{"codes": ["a\\u001db"]}'


def test_failed_discovery_fails_fast_then_retries(scans):
    with FakeTrueApi() as cdn, FakeTrueApi() as host:
        cdn.api_key = "other-key"  # the CDN refuses our key: discovery fails

        async def go():
            client = TrueApiClient(KEY, cdn_url=cdn.url, policy=HostPolicy(retry_discovery=0.2))
            with pytest.raises(TrueApiError):
                await client.check_codes(scans[:1])
            started = time.monotonic()
            with pytest.raises(TrueApiError) as caught:
                await client.check_codes(scans[:1])
            fast = time.monotonic() - started
            cdn.api_key, cdn.hosts = KEY, [host.url]
            await asyncio.sleep(0.25)
            answer = await client.check_codes(scans[:1])
            await client.aclose()
            return caught.value, fast, answer

        error, fast, answer = run(go())
        assert error.kind == "no_hosts" and fast < 0.01
        assert answer.host == host.url and len([r for r in cdn.requests if r.path.endswith("/info")]) == 2


def test_tls_and_dns_path_with_keep_alive(scans, tmp_path):
    """https to `localhost` by name: DNS through the loop's resolver, TLS verified against a test CA, one
    connection reused, and no thread or socket left once the loop is closed."""
    import ssl

    cert_file, key_file = self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cafile=str(cert_file))
    reply = b'{"code":0,"description":"ok","reqId":"r","reqTimestamp":1,"codes":[{"valid":true}]}'
    connections = []

    async def serve(reader, writer):
        connections.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(reply), reply))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()      # a connection still open when asyncio.run ends is cancelled: a clean end too

    before = snapshot()

    async def go():
        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        client = TrueApiClient(KEY, hosts=[f"https://localhost:{port}"], http=HttpClient(ssl_context=client_ctx))
        answers = [await client.check_codes(scans[:1]) for _ in range(5)]
        await client.aclose()
        server.close()
        await server.wait_closed()
        return answers

    answers = run(go())  # asyncio.run shuts the default executor (the resolver's threads) down
    assert len(answers) == 5 and answers[0].req_id == "r" and len(connections) == 1
    assert leaks(before) == ([], [])
