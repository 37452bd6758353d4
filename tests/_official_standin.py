"""A stand-in for CRPT's official Local Module (ЛМ ЧЗ), for the tests only: a small asyncio HTTP/1.1 server on
loopback speaking both of its protocols as far as they are documented (docs/protocol.md), with fault switches.

The official module cannot be installed here; this speaks its documented shapes so that the front
(`serve --front URL`, lmcz_fast/front/) can be tested against real sockets, a real process and a real `kill -9`.

What it answers (docs/protocol.md, "Protocol 1", "Protocol 2", "The sold register"):

- `GET /api/v{1,2}/status`: `version`, `status`, `serviceUrl`, `operationMode`, `name`, `lastUpdate`, `lastSync`
  (Unix ms), `inst`, `inn`, `dbVersion`, `requiresDownload`; v1 adds `replicationStatus`, v2 `dbState`. No
  credentials needed (as the module's own, the zabbix template relies on it).
- `POST /api/v{1,2}/init {"token": ...}`: HTTP 200, body `1` (LM 1.4.1 as one vendor page shows it); the token is
  recorded (`calls`), and the status goes to `ready`.
- `GET /api/v1/cis/check?cis=`, `GET|POST /api/v1/cis/outCheck` (`{"cis_list": ["<code>", ...]}`): one flat
  envelope `code`, `description`, `reqId`, `reqTimestamp`, `inst`, `version`, `isCheckedOffline`, `codes[]`.
- `/api/v2/cis/check`, `/api/v2/cis/outCheck` (`cis_list` of strings or `{"cis", "pg"}`): `{"results": [envelope
  per code]}`.
- `POST /api/v{1,2}/cis/sell` -> 201 `{"results": [{"success", "cis"}]}`, `POST .../cis/return` -> 200; both recorded
  in order (`calls`); `GET /api/v2/cis/sold?skip=&limit=` -> `{"total_count", "cis_list"}`.
- Not ready: HTTP 400 with `errorCode` 4045 (`not_configured`, `initialization`) or 4050 (`sync_error`).
- HTTP Basic (`admin:admin` unless told otherwise) and `Authorization: Token <token>` when given one.

Its data: a blocklist given to it (CIS identities and GTINs), in memory; or read from a CouchDB-compatible server
(`couch=URL`: pouchdb-server in the tests), databases `blocked_cis` and `blocked_gtin` with one document per entry
whose `_id` is the CIS or the GTIN (our guess of a layout the official one does not publish), re-read on `reload`.

Fault switches (`Faults`), settable at runtime through `POST /_standin/control` (JSON of the fields to change) or,
in process, `StandIn.set(...)`; they apply to checks and init (`sold_fault` to sell and return):

- `fault`: "" (none), "hang" (read the request, never answer), "5xx" (500), "reset" (send part of the head, then
  reset the connection), "malformed" (200 with a body that is not JSON), "4045", "4050" (HTTP 400 refusals);
- `delay_ms`: answer that much later (slow);
- `flip`: CIS identities whose `isBlocked` it answers the other way round (answers that disagree with a replica);
- `state`: "ready", "initialization", "sync_error", "not_configured" (status; a check refused 4045/4050 unless
  ready);
- `sold_fault`: like `fault`, for sell and return only (to test a durable outbox against a module that is down).

`GET /_standin/calls` answers what it received: `checks` (count), `sold` (every sell/return in order: `{"kind",
"cis_list"}`), `inits` (tokens), `auth_failures`, and `last_check_body` (the bytes of its last 200 check answer,
as UTF-8 text: a front must pass them on unchanged).

Run it in a subprocess (so that it can be `kill -9`'d):
    python tests/_official_standin.py --port 0 --blocked CIS ... --port-file FILE
or in process: `with StandIn(blocked=[...]) as lm: lm.url ...; lm.set(fault="hang")`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import httptools

try:
    from lmcz_fast._codes import CodeError, parse_code
except ImportError:  # pragma: no cover - run without the package: identities are the raw codes
    parse_code = None  # type: ignore[assignment]
    CodeError = ValueError  # type: ignore[assignment,misc]

FAULTS = ("", "hang", "5xx", "reset", "malformed", "4045", "4050")
STATES = ("ready", "initialization", "sync_error", "not_configured")
CONTROL = "/_standin/"


@dataclass
class Faults:
    """What the stand-in does wrong now (see the module's docstring)."""

    fault: str = ""
    delay_ms: float = 0.0
    flip: list[str] = field(default_factory=list)
    state: str = "ready"
    sold_fault: str = ""

    def update(self, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            if name not in self.__dataclass_fields__:
                raise ValueError(f"no such switch: {name}")
            if name in ("fault", "sold_fault") and value not in FAULTS:
                raise ValueError(f"{name} must be one of {FAULTS}")
            if name == "state" and value not in STATES:
                raise ValueError(f"state must be one of {STATES}")
            if name == "delay_ms":
                value = float(value)
            if name == "flip":
                value = [str(v) for v in value]
            setattr(self, name, value)


def identity(raw: str) -> tuple[str, str]:
    """`(cis, gtin)` of a scan: the code's identity (GTIN + serial) and GTIN as our parser reads them, else the raw
    scan and its digits 3..16 (the module's own parsing is not public; the stand-in only needs to be consistent)."""
    if parse_code is not None:
        try:
            code = parse_code(raw)
            return code.identity, code.gtin
        except (CodeError, ValueError, TypeError):
            pass
    return raw, raw[2:16] if raw.startswith("01") else ""


class Data:
    """The stand-in's database: blocked CIS identities and GTINs, the sold register, a version that changes on
    every reload."""

    def __init__(self, blocked: Iterable[str] = (), gtins: Iterable[str] = (), couch: str | None = None) -> None:
        self.blocked = {identity(c)[0] for c in blocked}
        self.gtins = set(gtins)
        self.couch = couch.rstrip("/") if couch else None
        self.sold: dict[str, float] = {}
        self.version = str(uuid.uuid4())
        self.db_version = 1
        self.synced_at = time.time()
        if self.couch:
            self.reload()

    def reload(self) -> None:
        """Re-read the lists from the CouchDB-compatible database (when there is one): a new version."""
        if self.couch:
            self.blocked = set(self._ids("blocked_cis"))
            self.gtins = set(self._ids("blocked_gtin"))
        self.version = str(uuid.uuid4())
        self.db_version += 1
        self.synced_at = time.time()

    def _ids(self, db: str) -> list[str]:
        try:
            with urllib.request.urlopen(f"{self.couch}/{db}/_all_docs", timeout=30) as answer:
                rows = json.loads(answer.read())["rows"]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise
        return [row["id"] for row in rows if not row["id"].startswith("_design/")]

    def is_blocked(self, cis: str, gtin: str) -> bool:
        return cis in self.blocked or gtin in self.gtins


class StandIn:
    """The stand-in server. In process: `start()` runs it on its own thread and event loop (`with StandIn(...)`);
    `serve_forever()` runs it on the caller's thread (the subprocess entry point)."""

    def __init__(self, blocked: Iterable[str] = (), *, gtins: Iterable[str] = (), couch: str | None = None,
                 port: int = 0, host: str = "127.0.0.1", user: str = "admin", password: str = "admin",
                 token: str | None = None, inst: str | None = None, faults: dict[str, Any] | None = None) -> None:
        self.data = Data(blocked, gtins, couch)
        self.faults = Faults()
        if faults:
            self.faults.update(faults)
        self.host = host
        self.port = port
        self.inst = inst or str(uuid.uuid4())
        self.inn = "7700000000"
        self._basic = b"Basic " + base64.b64encode(f"{user}:{password}".encode())
        self._token = None if token is None else b"Token " + token.encode()
        self.calls: dict[str, Any] = {"checks": 0, "codes": 0, "sold": [], "inits": [], "auth_failures": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._hung: list[asyncio.Transport] = []
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- running ---------------------------------------------------------------------------------------------

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        self._server = await self._loop.create_server(lambda: _Conn(self), sock=sock)

    def start(self) -> StandIn:
        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._start())
            self._ready.set()
            try:
                loop.run_forever()
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="official-standin", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the stand-in did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        def halt() -> None:
            if self._server is not None:
                self._server.close()
            for transport in self._hung:
                transport.abort()
            loop.stop()

        loop.call_soon_threadsafe(halt)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self, port_file: str | None = None) -> None:
        async def main() -> None:
            await self._start()
            if port_file:
                tmp = port_file + ".tmp"
                with open(tmp, "w") as fh:
                    fh.write(str(self.port))
                os.replace(tmp, port_file)
            print(f"official stand-in on {self.url}", flush=True)
            stop = asyncio.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
            await stop.wait()

        asyncio.run(main())

    # -- the switches, in process ----------------------------------------------------------------------------

    def set(self, **changes: Any) -> None:
        """Change fault switches (see `Faults`); `reload=True` re-reads the database."""
        reload = changes.pop("reload", False)
        self.faults.update(changes)
        if reload:
            self.data.reload()

    def received(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.calls))

    # -- answering -------------------------------------------------------------------------------------------

    def authorised(self, header: bytes | None) -> bool:
        if header is None:
            return False
        header = header.strip()
        return header == self._basic or (self._token is not None and header == self._token)

    def status_json(self, protocol: int) -> dict[str, Any]:
        data = self.data
        ready = self.faults.state == "ready"
        synced = int(data.synced_at * 1000) if self.faults.state != "not_configured" else 0
        out: dict[str, Any] = {
            "version": "2.6.0-standin", "status": self.faults.state, "serviceUrl": "https://rsapi.crpt.ru",
            "operationMode": "active", "name": "standin", "lastUpdate": synced, "lastSync": synced,
            "inst": self.inst, "inn": self.inn, "dbVersion": str(data.db_version),
            "requiresDownload": not ready and self.faults.state != "sync_error",
        }
        if protocol == 1:
            out["replicationStatus"] = {
                name: {"localDocCount": count, "serverDocCount": count, "timeLag": 0}
                for name, count in (("cis", 0), ("blocked_cis", len(data.blocked)),
                                    ("blocked_gtin", len(data.gtins)), ("blocked_series", 0))}
        else:
            out["dbState"] = {"blocked_cis": {"docCount": len(data.blocked)},
                              "blocked_gtin": {"docCount": len(data.gtins)}, "min_price": {"docCount": 0}}
        return out

    def code_json(self, raw: str, pg: int | None) -> dict[str, Any]:
        cis, gtin = identity(raw)
        blocked = self.data.is_blocked(cis, gtin)
        if cis in self.faults.flip:
            blocked = not blocked
        return {"cis": cis, "printView": cis, "gtin": gtin, "groupIds": [] if pg is None else [pg],
                "found": True, "valid": True, "verified": True, "realizable": True, "utilised": True,
                "sold": cis in self.data.sold, "isBlocked": blocked, "ogvs": [], "isGreyGtin": False,
                "mrp": None, "smp": None}

    def envelope(self, codes: list[dict[str, Any]]) -> dict[str, Any]:
        return {"code": 0, "description": "ok", "reqId": str(uuid.uuid4()), "reqTimestamp": int(time.time() * 1000),
                "inst": self.inst, "version": self.data.version, "isCheckedOffline": True, "codes": codes}

    def refusal(self) -> tuple[int, dict[str, Any]] | None:
        state = self.faults.state
        if state == "ready":
            return None
        number = 4050 if state == "sync_error" else 4045
        return 400, {"code": number, "errorCode": number, "description": f"the module is not ready: {state}",
                     "status": state}

    def check(self, protocol: int, method: bytes, query: str, body: bytes) -> tuple[int, Any]:
        if method == b"POST" and body:
            try:
                data = json.loads(body)
            except ValueError:
                return 400, {"code": 400, "description": "bad json"}
            items = data.get("cis_list") if isinstance(data, dict) else None
        else:
            items = [unquote(v) for part in query.split("&") if part.startswith("cis=")
                     for v in [part[4:]]] if query else []
        if not isinstance(items, list) or not items:
            return 400, {"code": 400, "description": "no codes"}
        refused = self.refusal()
        if refused is not None:
            return refused
        self.calls["checks"] += 1
        self.calls["codes"] += len(items)
        pairs = [(item["cis"], item.get("pg")) if isinstance(item, dict) else (str(item), None) for item in items]
        if protocol == 1:
            return 200, self.envelope([self.code_json(raw, None) for raw, _ in pairs])
        return 200, {"results": [self.envelope([self.code_json(raw, pg)]) for raw, pg in pairs]}

    def sold(self, kind: str, body: bytes) -> tuple[int, Any]:
        try:
            items = json.loads(body).get("cis_list")
        except (ValueError, AttributeError):
            items = None
        if not isinstance(items, list):
            return 400, {"code": 400, "description": 'expected {"cis_list": [...]}'}
        codes = [identity(item["cis"] if isinstance(item, dict) else str(item))[0] for item in items]
        self.calls["sold"].append({"kind": kind, "cis_list": codes})
        for cis in codes:
            if kind == "sell":
                self.data.sold[cis] = time.time()
            else:
                self.data.sold.pop(cis, None)
        return (201 if kind == "sell" else 200), {"results": [{"success": True, "cis": c} for c in codes]}

    def route(self, method: bytes, path: str, query: str, body: bytes,
              authorization: bytes | None) -> tuple[int, Any, str]:
        """`(status, payload, which fault switch applies)`; the payload is JSON, or bytes sent as they are."""
        lower = path.rstrip("/").lower()
        if lower.startswith(CONTROL.rstrip("/")):
            return self.control(lower[len(CONTROL):], body) + ("",)
        if not lower.startswith(("/api/v1/", "/api/v2/")):
            return 404, {"code": 404, "description": "not found"}, ""
        protocol = 1 if lower.startswith("/api/v1/") else 2
        name = lower[len("/api/v1/"):]
        if name == "status":
            return 200, self.status_json(protocol), ""
        if not self.authorised(authorization):
            self.calls["auth_failures"] += 1
            return 401, {"code": 401, "description": "unauthorized"}, ""
        if name in ("cis/check", "cis/outcheck"):
            return self.check(protocol, method, query, body) + (self.faults.fault,)
        if name in ("cis/sell", "cis/return") and method == b"POST":
            return self.sold(name[4:], body) + (self.faults.sold_fault,)
        if name == "cis/sold":
            args = parse_qs(query)
            skip = int(args.get("skip", ["0"])[0])
            limit = min(int(args.get("limit", ["1000"])[0]), 1000)
            codes = sorted(self.data.sold)
            return 200, {"total_count": len(codes), "cis_list": codes[skip:skip + limit]}, ""
        if name == "init" and method == b"POST":
            try:
                token = json.loads(body).get("token")
            except (ValueError, AttributeError):
                token = None
            if not isinstance(token, str) or not token:
                return 400, {"code": 400, "description": 'expected {"token": "..."}'}, ""
            self.calls["inits"].append(token)
            if self.faults.state != "ready":
                self.faults.state = "ready"
                self.data.synced_at = time.time()
            return 200, b"1", self.faults.fault
        return 404, {"code": 404, "description": "not found"}, ""

    def control(self, what: str, body: bytes) -> tuple[int, Any]:
        if what == "calls":
            return 200, self.calls
        if what == "faults":
            return 200, asdict(self.faults)
        if what == "control":
            try:
                self.set(**json.loads(body or b"{}"))
            except (ValueError, TypeError) as exc:
                return 400, {"error": str(exc)}
            return 200, asdict(self.faults)
        return 404, {"error": "no such control"}


class _Conn(asyncio.Protocol):
    """One connection: requests parsed with llhttp, answered in order (a hung one holds those behind it)."""

    def __init__(self, app: StandIn) -> None:
        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.body: list[bytes] = []
        self.authorization: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.task = asyncio.get_running_loop().create_task(self._work())

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization":
            self.authorization = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        parsed = httptools.parse_url(self.url)
        self.queue.put_nowait((self.parser.get_method(), parsed.path.decode("latin-1"),
                               (parsed.query or b"").decode("latin-1"), b"".join(self.body), self.authorization,
                               self.parser.should_keep_alive()))

    async def _work(self) -> None:
        while True:
            method, path, query, body, authorization, keep_alive = await self.queue.get()
            status, payload, switch = self.app.route(method, path, query, body, authorization)
            if switch == "hang":
                if self.transport is not None:
                    self.app._hung.append(self.transport)
                return            # never answers on this connection again
            delay = self.app.faults.delay_ms if path.lower().startswith("/api/") else 0
            if delay:
                await asyncio.sleep(delay / 1000.0)
            transport = self.transport
            if transport is None:
                return
            if switch == "reset":
                transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n"
                                b"\r\n{\"code\":0,\"desc")
                sock = transport.get_extra_info("socket")
                if sock is not None:   # RST, not FIN: the client sees its connection reset mid-answer
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                transport.abort()
                return
            if switch == "5xx":
                status, payload = 500, {"code": 500, "description": "internal server error"}
            elif switch == "malformed":
                status, payload = 200, b'{"code":0,"description":"ok","codes":[{"cis":'
            elif switch in ("4045", "4050"):
                number = int(switch)
                status, payload = 400, {"code": number, "errorCode": number,
                                        "description": "the module is not ready",
                                        "status": "sync_error" if number == 4050 else "initialization"}
            raw = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
            if status == 200 and "/cis/" in path.lower() and "check" in path.lower():
                self.app.calls["last_check_body"] = raw.decode("utf-8")
            head = (f"HTTP/1.1 {status} {'OK' if status < 300 else 'Error'}\r\n"
                    f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(raw)}\r\n"
                    + ("" if keep_alive else "Connection: close\r\n")
                    + ("WWW-Authenticate: Basic realm=\"regime\"\r\n" if status == 401 else "") + "\r\n")
            transport.write(head.encode() + raw)
            if not keep_alive:
                transport.close()
                return


# -- a stand-in in another process, for kill -9 --------------------------------------------------------------------


class StandInProcess:
    """`python tests/_official_standin.py` in a subprocess on a free port; `set`/`received` through its control
    endpoint; `kill()` sends SIGKILL; `restart()` starts it again on the same port (its sold register and counters
    start empty, as a restarted module's memory would; give it `couch=` for data that outlives it)."""

    def __init__(self, workdir: str | os.PathLike[str], *args: str, port: int = 0) -> None:
        self.workdir = os.fspath(workdir)
        self.args = list(args)
        self.port = port
        self.proc: Any = None

    def start(self) -> StandInProcess:
        import subprocess

        os.makedirs(self.workdir, exist_ok=True)
        port_file = os.path.join(self.workdir, "standin.port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        log = open(os.path.join(self.workdir, "standin.log"), "ab")
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--port", str(self.port),
                                      "--port-file", port_file, *self.args], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the stand-in did not start: " + self.log()[-2000:])
            time.sleep(0.02)
        with open(port_file) as fh:
            self.port = int(fh.read())
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            with open(os.path.join(self.workdir, "standin.log"), encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def _control(self, what: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + CONTROL + what, data=data, method="POST" if data else "GET",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def set(self, **changes: Any) -> Any:
        return self._control("control", changes)

    def received(self) -> dict[str, Any]:
        return self._control("calls")  # type: ignore[no-any-return]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> StandInProcess:
        self.kill()
        return self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> StandInProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A stand-in for the official Local Module, for tests only.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port-file", help="write the port it listens on here once it does")
    parser.add_argument("--blocked", nargs="*", default=[], help="blocked codes (CIS or full codes)")
    parser.add_argument("--blocked-file", help="a file of blocked codes, one a line")
    parser.add_argument("--gtin", nargs="*", default=[], help="blocked GTINs")
    parser.add_argument("--couch", help="a CouchDB-compatible server holding blocked_cis / blocked_gtin")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--token", help="also accept Authorization: Token <token>")
    parser.add_argument("--inst", help="its instance UUID (default: a new one)")
    parser.add_argument("--faults", default="{}", help="initial fault switches, JSON")
    args = parser.parse_args(argv)
    blocked = list(args.blocked)
    if args.blocked_file:
        with open(args.blocked_file, encoding="utf-8") as fh:
            blocked += [line.strip() for line in fh if line.strip()]
    StandIn(blocked, gtins=args.gtin, couch=args.couch, port=args.port, host=args.host, user=args.user,
            password=args.password, token=args.token, inst=args.inst,
            faults=json.loads(args.faults)).serve_forever(args.port_file)


if __name__ == "__main__":
    main()
