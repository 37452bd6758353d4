"""Upstream requests through a real HTTP proxy on loopback: Debian's tinyproxy, without and with Basic auth, and a
proxy that black-holes. The feed's sync, the True API client and the till's checker; the proxy's own log shows that
each request went through it. The settings themselves (URL, credentials file, environment, NO_PROXY) are tested
without a proxy at the end."""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
from pathlib import Path

import pytest
from _checker_support import MARGIN, Behaviour, FakeTrueApi, leaks, make_scan, self_signed, snapshot
from _feed_support import FeedServer, db_state, fast_identities, write_list
from _proxy_support import BlackHole, Tinyproxy, tinyproxy_binary
from click.testing import CliRunner

from lmcz_fast import Blocklist, feed, parse_code
from lmcz_fast.checker import Checker, Mode
from lmcz_fast.cli import main
from lmcz_fast.trueapi import TrueApiClient, TrueApiError
from lmcz_fast.upstream import HttpClient, ProxyAuthError, ProxyConfig, ProxyConfigError, UpstreamError

KEY = "test-key"
USER, PASSWORD = "till", "pr0xy.pass_1"  # tinyproxy's BasicAuth takes letters, digits, '-', '.', '_' only
FAST_RETRY = feed.RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, timeout=5)
CODES = fast_identities(2000, seed=41)

needs_tinyproxy = pytest.mark.skipif(tinyproxy_binary() is None,
                                     reason="tinyproxy is not installed (.ci/run installs Debian's tinyproxy)")


@pytest.fixture
def open_proxy():
    if tinyproxy_binary() is None:
        pytest.skip("tinyproxy is not installed (.ci/run installs Debian's tinyproxy)")
    with Tinyproxy() as proxy:
        yield proxy


@pytest.fixture
def auth_proxy():
    if tinyproxy_binary() is None:
        pytest.skip("tinyproxy is not installed (.ci/run installs Debian's tinyproxy)")
    with Tinyproxy(auth=(USER, PASSWORD)) as proxy:
        yield proxy


def auth_file(tmp_path: Path, user: str = USER, password: str = PASSWORD) -> Path:
    path = tmp_path / "proxy.auth"
    path.write_text(f"{user}:{password}\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def published(tmp_path: Path):
    key, pub = feed.write_keypair(tmp_path / "feed.key")
    report = feed.publish(tmp_path / "feed", key, snapshot=write_list(tmp_path / "in.txt", CODES))
    with FeedServer(tmp_path / "feed") as server:
        yield server, pub, report


@pytest.fixture(scope="module")
def scans() -> list[str]:
    rng = random.Random(17)
    return [make_scan(rng) for _ in range(8)]


@pytest.fixture
def blocklist(tmp_path, scans):
    bl = Blocklist.create(tmp_path / "db")
    bl.load([[parse_code(scans[0]).cis]])
    yield bl
    bl.close()


def run(coro):
    return asyncio.run(coro)


# ------------------------------------------------------------------------------------------------ feed sync


def test_sync_goes_through_the_proxy(tmp_path, open_proxy, published):
    server, pub, report = published
    result = feed.sync(tmp_path / "store", server.url, pub, retry=FAST_RETRY, proxy=ProxyConfig(open_proxy.url))
    assert result.action == "snapshot" and db_state(tmp_path / "store") == (1, report.set_digest)
    relayed = open_proxy.wait_for(2)
    assert relayed == [f"GET {server.url}manifest.json", f"GET {server.url}{report.written[0]}"]
    assert server.requests == ["manifest.json", report.written[0]]


def test_sync_with_proxy_credentials_from_a_file(tmp_path, auth_proxy, published):
    server, pub, report = published
    proxy = ProxyConfig.from_options(auth_proxy.url, auth_file(tmp_path))
    result = feed.sync(tmp_path / "store", server.url, pub, retry=FAST_RETRY, proxy=proxy)
    assert result.action == "snapshot" and db_state(tmp_path / "store") == (1, report.set_digest)
    assert auth_proxy.wait_for(2) == [f"GET {server.url}manifest.json", f"GET {server.url}{report.written[0]}"]


def test_sync_with_a_wrong_proxy_password_fails_clearly_and_changes_nothing(tmp_path, auth_proxy, published):
    server, pub, _ = published
    proxy = ProxyConfig.from_options(auth_proxy.url, auth_file(tmp_path, password="wrong"))
    with pytest.raises(feed.FeedUnavailable, match=r"refused the credentials of user 'till' \(HTTP 40[17]"):
        feed.sync(tmp_path / "store", server.url, pub, retry=FAST_RETRY, proxy=proxy)
    assert server.requests == []  # the proxy refused before anything reached the feed
    assert len(auth_proxy.wait_for(1)) == 1
    time.sleep(0.3)
    assert len(auth_proxy.requests()) == 1  # and it is not retried: the same credentials would fail again
    without = ProxyConfig(auth_proxy.url)
    with pytest.raises(feed.FeedUnavailable, match=r"asks for credentials .*--proxy-auth-file"):
        feed.sync(tmp_path / "store", server.url, pub, retry=FAST_RETRY, proxy=without)


def test_sync_command_with_proxy_options(tmp_path, auth_proxy, published):
    server, pub, report = published
    runner = CliRunner()
    args = ["sync", str(tmp_path / "store"), "--feed", server.url, "--public-key", str(pub), "--nice", "0",
            "--attempts", "2", "--proxy", auth_proxy.url]
    good = runner.invoke(main, [*args, "--proxy-auth-file", str(auth_file(tmp_path)), "--json"])
    assert good.exit_code == 0, good.output
    assert json.loads(good.stdout)["action"] == "snapshot"
    bad = runner.invoke(main, [*args, "--proxy-auth-file", str(auth_file(tmp_path / "..", password="nope"))])
    assert bad.exit_code == 5 and "refused the credentials" in bad.stderr and "Traceback" not in bad.output
    inline = runner.invoke(main, [*args[:-1], f"http://{USER}:secret@127.0.0.1:{auth_proxy.port}"])
    assert inline.exit_code == 2 and "--proxy-auth-file" in inline.stderr


def test_sync_takes_the_proxy_from_the_environment_unless_no_proxy(tmp_path, open_proxy, published, monkeypatch):
    server, pub, _ = published
    monkeypatch.setenv("HTTP_PROXY", open_proxy.url)
    feed.sync(tmp_path / "store", server.url, pub, retry=FAST_RETRY)
    assert len(open_proxy.wait_for(2)) == 2
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.0/8")
    feed.sync(tmp_path / "store2", server.url, pub, retry=FAST_RETRY)
    time.sleep(0.2)
    assert len(open_proxy.requests()) == 2 and len(server.requests) == 4  # the second store went direct


def test_proxy_that_black_holes_is_cut_by_the_sync_timeout(tmp_path, published):
    server, pub, _ = published
    with BlackHole() as hole:
        started = time.monotonic()
        with pytest.raises(feed.FeedUnavailable, match="gave up after 2 attempts"):
            feed.sync(tmp_path / "store", server.url, pub, proxy=ProxyConfig(hole.url),
                      retry=feed.RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02, timeout=0.3))
        assert time.monotonic() - started < 3 and server.requests == []


# ------------------------------------------------------------------------------------------------ True API


def test_true_api_check_goes_through_the_proxy(open_proxy, scans):
    with FakeTrueApi(KEY) as host:
        async def go():
            client = TrueApiClient(KEY, hosts=[host.url], proxy=ProxyConfig(open_proxy.url))
            try:
                return [await client.check_codes([parse_code(s).element_string]) for s in scans[:2]]
            finally:
                await client.aclose()

        answers = run(go())
    assert [a.code for a in answers] == [0, 0] and host.checks == 2
    assert open_proxy.wait_for(2) == [f"POST {host.url}/api/v4/true-api/codes/check"] * 2
    assert all(r.headers.get("via", "").endswith("tinyproxy (tinyproxy/1.11.1)") or "tinyproxy" in
               r.headers.get("via", "") for r in host.requests)


def tls_true_api(tmp_path, status: bytes = b"200 OK"):
    """A True API host over TLS on 127.0.0.1 (a test CA); returns (start coroutine, client TLS context)."""
    cert_file, key_file = self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    reply = b'{"code":0,"description":"ok","reqId":"r","reqTimestamp":1,"codes":[{"valid":true}]}'
    if not status.startswith(b"200"):
        reply = b'{"code":401,"description":"bad X-API-KEY"}'

    async def serve(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s" % (status, len(reply), reply))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()      # a connection still open when asyncio.run ends is cancelled: a clean end too

    async def start():
        return await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)

    return start, ssl.create_default_context(cafile=str(cert_file))


def test_true_api_with_proxy_auth_and_a_wrong_password(tmp_path, auth_proxy, scans):
    """The True API is https: the proxy's refusal comes as the answer to CONNECT, before any request is sent."""
    start, client_ctx = tls_true_api(tmp_path)
    code = parse_code(scans[0]).element_string

    async def go(password):
        server = await start()
        port = server.sockets[0].getsockname()[1]
        proxy = ProxyConfig.from_options(auth_proxy.url, auth_file(tmp_path, password=password))
        client = TrueApiClient(KEY, hosts=[f"https://localhost:{port}"],
                               http=HttpClient(proxy=proxy, ssl_context=client_ctx))
        try:
            return await client.check_codes([code])
        except TrueApiError as exc:
            return exc, client._hosts[0].aside_until
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    good = run(go(PASSWORD))
    error, aside = run(go("bad"))
    assert good.code == 0
    assert error.kind == "proxy_auth" and error.status in (401, 407) and "refused the credentials" in str(error)
    assert aside == 0.0  # the host did nothing wrong: it is not set aside
    assert [r.split()[0] for r in auth_proxy.wait_for(2)] == ["CONNECT", "CONNECT"]


def test_a_servers_401_through_the_tunnel_is_not_taken_for_the_proxy(tmp_path, auth_proxy, scans):
    """Inside a CONNECT tunnel the answer is the server's: its 401 (a bad API key) is an HTTP error of the host."""
    start, client_ctx = tls_true_api(tmp_path, status=b"401 Unauthorized")

    async def go():
        server = await start()
        port = server.sockets[0].getsockname()[1]
        proxy = ProxyConfig.from_options(auth_proxy.url, auth_file(tmp_path))
        client = TrueApiClient(KEY, hosts=[f"https://localhost:{port}"],
                               http=HttpClient(proxy=proxy, ssl_context=client_ctx))
        try:
            with pytest.raises(TrueApiError) as caught:
                await client.check_codes([parse_code(scans[0]).element_string])
            return caught.value
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    error = run(go())
    assert error.kind == "http" and error.status == 401 and "proxy" not in str(error)


def test_true_api_over_tls_is_tunnelled_with_connect(tmp_path, auth_proxy, scans):
    start, client_ctx = tls_true_api(tmp_path)

    async def go():
        server = await start()
        port = server.sockets[0].getsockname()[1]
        http = HttpClient(proxy=ProxyConfig.from_options(auth_proxy.url, auth_file(tmp_path)),
                          ssl_context=client_ctx)
        client = TrueApiClient(KEY, hosts=[f"https://localhost:{port}"], http=http)
        answers = [await client.check_codes([parse_code(scans[0]).element_string]) for _ in range(3)]
        await client.aclose()
        server.close()
        await server.wait_closed()
        return port, answers, http.connects

    port, answers, connects = run(go())
    assert [a.req_id for a in answers] == ["r"] * 3
    assert auth_proxy.wait_for(1) == [f"CONNECT localhost:{port}"]  # one tunnel, kept alive for all three
    assert connects == 1


# ------------------------------------------------------------------------------------------------ the checker


def test_checker_answers_offline_at_the_deadline_when_the_proxy_black_holes(scans, blocklist):
    deadline = 0.3
    with FakeTrueApi(KEY) as host:
        hole = BlackHole().__enter__()
        before = snapshot()
        try:
            online = TrueApiClient(KEY, hosts=[host.url], proxy=ProxyConfig(hole.url))
            with Checker(online, blocklist, deadline=deadline, late_grace=0.2) as checker:
                for scan in scans[:3]:
                    started = time.monotonic()
                    verdict = checker.check(scan)
                    elapsed = time.monotonic() - started
                    assert verdict.mode is Mode.OFFLINE and deadline <= elapsed <= deadline + MARGIN
                assert checker.check(scans[0]).decision.value == "refuse"  # blocked offline

            async def go():
                out = []
                client = TrueApiClient(KEY, hosts=[host.url], proxy=ProxyConfig(hole.url))
                async with Checker(client, blocklist, deadline=deadline, late_grace=0.2) as checker:
                    for scan in scans[3:5]:
                        started = time.monotonic()
                        verdict = await checker.check_async(scan)
                        out.append((verdict.mode, time.monotonic() - started))
                return out

            for mode, elapsed in run(go()):
                assert mode is Mode.OFFLINE and deadline <= elapsed <= deadline + MARGIN
            assert hole.accepted and host.checks == 0
        finally:
            hole.__exit__(None, None, None)  # its own (server-side) sockets go; the checker's must be gone already
        assert leaks(before) == ([], [])


def test_checker_through_tinyproxy_online_and_with_a_silent_upstream(tmp_path, auth_proxy, scans, blocklist):
    proxy = ProxyConfig.from_options(auth_proxy.url, auth_file(tmp_path))
    with FakeTrueApi(KEY) as host:
        with Checker(TrueApiClient(KEY, hosts=[host.url], proxy=proxy), blocklist, deadline=1.0) as checker:
            online = checker.check(scans[2])
        host.behaviour = Behaviour(delay=10)  # the proxy relays, the upstream never answers in time
        deadline = 0.3
        with Checker(TrueApiClient(KEY, hosts=[host.url], proxy=proxy), blocklist, deadline=deadline,
                     late_grace=0.1) as checker:
            started = time.monotonic()
            late = checker.check(scans[3])
            elapsed = time.monotonic() - started
    assert online.mode is Mode.ONLINE and online.sell and online.tag_1265.startswith("UUID=")
    assert late.mode is Mode.OFFLINE and late.sell and deadline <= elapsed <= deadline + MARGIN
    assert auth_proxy.wait_for(2)[:2] == [f"POST {host.url}/api/v4/true-api/codes/check"] * 2


def test_check_command_with_proxy_options(tmp_path, auth_proxy, scans, blocklist):
    blocklist.close()
    with FakeTrueApi(KEY) as host:
        result = CliRunner().invoke(main, [
            "check", "--db", str(tmp_path / "db"), "--host", host.url, "--proxy", auth_proxy.url,
            "--proxy-auth-file", str(auth_file(tmp_path)), "--json", scans[4]], env={"LMCZ_TRUE_API_KEY": KEY})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mode"] == "online"
    assert auth_proxy.wait_for(1) == [f"POST {host.url}/api/v4/true-api/codes/check"]


# ------------------------------------------------------------------------------------------------ settings


def test_proxy_url_on_the_command_line_must_not_carry_a_password(tmp_path):
    with pytest.raises(ProxyConfigError, match="--proxy-auth-file"):
        ProxyConfig.from_options("http://user:secret@proxy.local:3128")
    assert ProxyConfig.from_options("proxy.local:3128").url == "http://proxy.local:3128"
    with pytest.raises(ProxyConfigError, match="http://HOST:PORT"):
        ProxyConfig.from_options("socks5://proxy.local:1080")
    with pytest.raises(ProxyConfigError, match="cannot read"):
        ProxyConfig.from_options("http://proxy.local:3128", tmp_path / "missing")
    (tmp_path / "bad").write_text("no colon here\n")
    with pytest.raises(ProxyConfigError, match="user:password"):
        ProxyConfig.from_options("http://proxy.local:3128", tmp_path / "bad")
    config = ProxyConfig.from_options("http://proxy.local:3128", auth_file(tmp_path, password="pa:ss word"))
    assert (config.username, config.password) == (USER, "pa:ss word")  # only the first ':' separates
    assert "pa:ss" not in repr(config) and "pa:ss" not in config.describe()


def test_routes_from_settings_and_environment():
    env = {"https_proxy": "http://u:p%40ss@secure.proxy:8443", "HTTP_PROXY": "plain.proxy:3128",
           "NO_PROXY": "internal.example, .corp.local,10.0.0.0/8,[::1],mirror.shop:8080"}
    cfg = ProxyConfig()
    assert cfg.route("https://cdn.crpt.ru/x", env).url == "http://secure.proxy:8443"
    assert cfg.route("https://cdn.crpt.ru/x", env).auth == ("u", "p@ss")
    assert cfg.route("http://feed.example/", env).url == "http://plain.proxy:3128"
    for direct in ("http://internal.example/", "http://a.internal.example/", "http://feed.corp.local/",
                   "http://10.1.2.3:81/", "http://[::1]:5995/", "http://mirror.shop:8080/"):
        assert cfg.route(direct, env) is None, direct
    assert cfg.route("http://mirror.shop:8081/", env) is not None  # the NO_PROXY entry names another port
    assert cfg.route("http://notinternal.example/", env) is not None
    explicit = ProxyConfig("http://explicit:3128", username="a", password="b")
    assert explicit.route("https://cdn.crpt.ru/", env).auth == ("a", "b")
    assert explicit.route("http://10.9.9.9/", env) is None  # NO_PROXY applies to an explicit proxy too
    assert ProxyConfig.direct().route("https://cdn.crpt.ru/", env) is None
    assert ProxyConfig().route("https://cdn.crpt.ru/", {}) is None
    assert ProxyConfig().route("https://cdn.crpt.ru/", {"no_proxy": "*", "https_proxy": "x:1"}) is None
    assert ProxyConfig().route("https://cdn.crpt.ru/", {"ALL_PROXY": "http://all:1"}).url == "http://all:1"
    with_file = ProxyConfig(username="f", password="g")  # credentials from a file, proxy from the environment
    assert with_file.route("http://feed.example/", env).auth == ("f", "g")


def test_connection_refused_by_the_proxy_is_a_proxy_error():
    with BlackHole() as hole:
        port = hole.port
    async def go():
        http = HttpClient(proxy=ProxyConfig(f"http://127.0.0.1:{port}"))
        try:
            await http.request("GET", "http://127.0.0.1:9/x")
        finally:
            await http.aclose()

    with pytest.raises(UpstreamError) as caught:
        run(go())
    assert caught.value.phase == "proxy" and "through the proxy http://127.0.0.1:" in str(caught.value)
    assert not isinstance(caught.value, ProxyAuthError)
