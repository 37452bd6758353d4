"""A real CouchDB-compatible server for the replication tests: npm's `pouchdb-server`, in memory, on loopback.

`.ci/run` installs it when npm is there; without it the tests skip and say why. It is a stand-in for CouchDB
(and for the official module's "Yenisei"), so the client under test keeps to the documented protocol only.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

POUCHDB = shutil.which("pouchdb-server")
needs_pouchdb = pytest.mark.skipif(POUCHDB is None, reason="pouchdb-server is not installed (.ci/run installs it "
                                                           "with npm when npm is present)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Couch:
    """`pouchdb-server --in-memory` on a free port, with a tiny admin client over urllib."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.auth: str | None = None

    def __enter__(self) -> Couch:
        assert POUCHDB is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "pouchdb.log", "wb")
        self.proc = subprocess.Popen([POUCHDB, "--in-memory", "--port", str(self.port), "--host", "127.0.0.1"],
                                     cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.request("GET", "/")
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("pouchdb-server did not start: " + (self.workdir / "pouchdb.log").read_text()[-2000:])

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        if self.auth:
            req.add_header("Authorization", self.auth)
        with urllib.request.urlopen(req, timeout=60) as response:
            return json.loads(response.read() or b"null")

    def create(self, *names: str) -> None:
        for name in names:
            self.request("PUT", f"/{name}")

    def drop(self, name: str) -> None:
        self.request("DELETE", f"/{name}")

    def put_docs(self, name: str, docs: list[dict[str, Any]], chunk: int = 20_000) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for start in range(0, len(docs), chunk):
            out += self.request("POST", f"/{name}/_bulk_docs", {"docs": docs[start:start + chunk]})
        return out

    def delete_docs(self, name: str, ids: list[str]) -> None:
        found = self.request("POST", f"/{name}/_all_docs", {"keys": ids})
        docs = [{"_id": row["id"], "_rev": row["value"]["rev"], "_deleted": True}
                for row in found["rows"] if "value" in row]
        self.put_docs(name, docs)

    def open_to_all(self, *names: str) -> None:
        """Readable without credentials again (no members), as a public source is."""
        for name in names:
            self.request("PUT", f"/{name}/_security", {"admins": {"names": [], "roles": []},
                                                       "members": {"names": [], "roles": []}})

    def require_auth(self, user: str, password: str, *names: str) -> None:
        """An admin and per-database members: reads then need these credentials."""
        self.request("PUT", f"/_config/admins/{user}", password)
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        for name in names:
            self.request("PUT", f"/{name}/_security", {"admins": {"names": [], "roles": []},
                                                       "members": {"names": [user], "roles": []}})


class SharedCouch:
    """One pouchdb-server for a module's tests, each test starting from a fresh source: every database of the last
    test dropped and the ones it needs made anew. Starting pouchdb-server (node) takes ~1-2 s, once per test before;
    a test that ends admin party (`require_auth`) or stops the server leaves it to no one, and the next test gets a
    new one."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.server: Couch | None = None
        self.started = 0

    def fresh(self, *names: str) -> Iterator[Couch]:
        if self.server is None or self.server.proc is None or self.server.proc.poll() is not None:
            self.started += 1
            self.server = Couch(self.workdir / f"server-{self.started}").__enter__()
        server = self.server
        for name in server.request("GET", "/_all_dbs"):
            if not name.startswith("_"):
                server.drop(name)
        server.create(*names)
        try:
            yield server
        finally:
            if server.auth is not None:
                server.__exit__()
                self.server = None

    def close(self) -> None:
        if self.server is not None:
            self.server.__exit__()
            self.server = None
