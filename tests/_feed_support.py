"""Helpers for the feed tests and the delta benchmark: fast seeded codes, a real loopback HTTP server with
scripted failures, nginx serving a directory as a chain would, an independent manifest re-signer, and the state
of a database as seen from outside.

The re-signer builds the canonical JSON and the Ed25519 signature with `json` and `cryptography` directly,
not with lmcz_fast.feed, so the tests check the published format against the spec in docs/feed.md.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import random
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _daemon_support import start_on_free_port, stop_process
from _nginx_support import MISSING, NGINX, nginx_command, nginx_main
from _store_support import gtin_with_check
from cryptography.hazmat.primitives import serialization

from lmcz_fast import feed
from lmcz_fast.store import Blocklist



def signing_context(fmt: str) -> bytes:
    """docs/feed.md: each format signs under its own prefix, `<format> manifest\\n`."""
    return f"{fmt} manifest\n".encode("ascii")
_SERIAL_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!\"%&'()*+,-./:;<=>?_"
_SERIAL_TABLE = bytes(_SERIAL_CHARS[i % len(_SERIAL_CHARS)] for i in range(256))


def fast_identities(count: int, seed: int = 1, serial_len: int = 13, gtins: int = 500) -> list[str]:
    """`count` distinct canonical identities, quickly (900k in about a second): random serials over a few GTINs."""
    rng = random.Random(seed)
    pool = [gtin_with_check(f"046{rng.randrange(10 ** 10):010d}") for _ in range(gtins)]
    out: set[str] = set()
    while len(out) < count:
        need = count - len(out)
        blob = rng.randbytes(need * serial_len).translate(_SERIAL_TABLE).decode("ascii")
        for i in range(need):
            out.add(f"01{pool[rng.randrange(gtins)]}21{blob[i * serial_len:(i + 1) * serial_len]}")
    return sorted(out)


def write_list(path: Path, identities: list[str], gtins: list[str] = ()) -> str:
    path.write_text("".join(f"{line}\n" for line in (*gtins, *identities)))
    return str(path)


def publish_set(feed_dir: Path, key: Path, identities: list[str], gtins: list[str] = (), **kwargs):
    source = feed_dir.parent / f"input-{random.random()}.txt"
    try:
        return feed.publish(feed_dir, key, snapshot=write_list(source, identities, list(gtins)), **kwargs)
    finally:
        source.unlink()


def full_state(db: Path) -> tuple[int, str, float | None]:
    with Blocklist.open(db) as bl:
        info = bl.info()
        return info["version"], info["set_digest"], info.get("last_sync_at")


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def _newest(fd: Path, prefix: str) -> Path:
    return sorted(fd.glob(f"{prefix}-*.txt.gz"))[-1]


def db_state(path: Any) -> tuple[int, str]:
    """(version, set digest) of the database at `path`, opened fresh read-only."""
    from lmcz_fast.store import Blocklist

    with Blocklist.open(path) as bl:
        info = bl.info()
        return info["version"], info["set_digest"]


def content_digest(path: Any) -> str:
    """The digest recomputed from the stored codes themselves, not the metadata field."""
    from lmcz_fast.store import Blocklist, set_digest_of

    with Blocklist.open(path) as bl:
        return set_digest_of(bl.iter_identities(), bl.iter_gtins(), bl.iter_records())


def resign(feed_dir: Path, private_key_pem: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit the signed body of `feed_dir`'s manifest and sign it again with the given key (JCS + Ed25519)."""
    path = Path(feed_dir) / "manifest.json"
    envelope = json.loads(path.read_bytes())
    edit(envelope["signed"])
    key = serialization.load_pem_private_key(Path(private_key_pem).read_bytes(), password=None)
    canonical = json.dumps(envelope["signed"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    context = signing_context(envelope["signed"].get("feed", envelope["format"]))
    envelope["format"] = envelope["signed"].get("feed", envelope["format"])
    envelope["signature"] = base64.b64encode(key.sign(context + canonical.encode())).decode()
    path.write_text(json.dumps(envelope, indent=1))


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        name = self.path.lstrip("/")
        with self.server.lock:
            self.server.requests.append(name)
            fail = self.server.fail_left > 0
            if fail:
                self.server.fail_left -= 1
            cut = not fail and self.server.truncate_left > 0 and name != "manifest.json"
            if cut:
                self.server.truncate_left -= 1
        if fail:
            self.send_response(self.server.fail_status)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if cut:
            body = (Path(self.directory) / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    lock: threading.Lock
    requests: list[str]
    fail_left: int
    fail_status: int
    truncate_left: int


class FeedServer:
    """Python's http.server on 127.0.0.1 (a free port) serving `directory`, in a thread, for one `with` block.

    `fail_first` requests get `fail_status` (503 by default); after them, `truncate_first` file transfers stop
    halfway (the full Content-Length is announced, then the connection closes).
    """

    def __init__(self, directory: Path, *, fail_first: int = 0, fail_status: int = 503, truncate_first: int = 0):
        handler = functools.partial(_Handler, directory=str(directory))
        self.server = _Server(("127.0.0.1", 0), handler)
        self.server.lock = threading.Lock()
        self.server.requests = []
        self.server.fail_left = fail_first
        self.server.fail_status = fail_status
        self.server.truncate_left = truncate_first
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def requests(self) -> list[str]:
        with self.server.lock:
            return list(self.server.requests)

    def __enter__(self) -> FeedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class NginxServer:
    """Debian's nginx serving `directory` as plain static files on 127.0.0.1 (a free port), for one `with` block:
    the way a chain would publish its mirror. It runs in the foreground without a master process, so it keeps the
    test's user and needs no system directories. `requests` lists the paths served, from its access log."""

    def __init__(self, directory: Path):
        if NGINX is None:
            raise FileNotFoundError(MISSING)
        self.binary = NGINX
        self.root = Path(directory).resolve()
        self.work = Path(tempfile.mkdtemp(prefix="lmcz-nginx-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def requests(self) -> list[str]:
        log = self.work / "access.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [line.split()[0].lstrip("/") for line in lines]

    def __enter__(self) -> NginxServer:
        conf = self.work / "nginx.conf"

        def launch(port: int) -> subprocess.Popen[bytes]:
            self.port = port
            conf.write_text(nginx_main(self.work, port, f"        root {self.root};\n        location / {{ }}",
                                       log_format="$uri $status $body_bytes_sent",
                                       default_type="application/octet-stream"))
            self.proc = subprocess.Popen(nginx_command(self.binary, self.work, conf), stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
            return self.proc

        if start_on_free_port(launch, stop=lambda _proc: self._stop()) is not None:
            return self
        raise RuntimeError(f"nginx did not start: {(self.work / 'error.log').read_text(errors='replace')[-2000:]}")

    def _stop(self) -> None:
        stop_process(self.proc)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def __exit__(self, *exc: object) -> None:
        self._stop()
        shutil.rmtree(self.work, ignore_errors=True)
