"""The world tests/test_examples.py runs an example in: a temporary root and working directory, the prerequisites
its commands presume (input lists, stores, keys, feeds served where the docs name them, passwords, audit logs),
commands rewritten to run on loopback, daemons started, waited for and stopped, and each command's outcome judged."""

from __future__ import annotations

import csv
import gzip
import http.server
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lmcz_fast import Blocklist, feed, synth

from _examples_found import EXAMPLE_CIS
from _examples_running import (Daemon, _FlatFiles, _free_port, _http, _judge, _listening, _parse, _program, _wait_http,
                                _wait_log)

#: Hosts the docs name, and what the test serves there on loopback. A chain's mirror serves the publisher's files
#: byte for byte, so a mirror host the example does not start itself gets the feed's directory.
HOSTS = [
    (r"https?://feed\.example(?=/)", "feed"),
    (r"https?://mirror\.shop\.local:8080(?=/)", "mirror:8080"),
    (r"https?://mirror\.local:8080(?=/)", "mirror:8080"),
    (r"https?://mirror\.shop\.local(?=/)", "mirror"),
    # a CouchDB-compatible replication source: pouchdb-server, started by the test (tests/_couch_support.py)
    (r"https?://(?:127\.0\.0\.1|hq\.chain\.local|lm-server\.shop\.local):5984(?=/|\s|$|\")", "couch"),
]
_REROOT = re.compile(r"(?<![\w.:/-])/(etc|srv|var|opt|usr|run)/")


# ------------------------------------------------------------------------------------------------ the world


ONCE = {"lmcz-fast demo"}
_PASSED: dict[str, str] = {}


@dataclass
class World:
    tmp: Path
    where: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    servers: dict[str, http.server.ThreadingHTTPServer] = field(default_factory=dict)
    daemons: list[Daemon] = field(default_factory=list)
    changes_made: int = 0
    log: list[str] = field(default_factory=list)
    couch: Any = None

    def __post_init__(self) -> None:
        self.root = self.tmp / "root"
        self.cwd = self.tmp / "work"
        for folder in ("etc", "srv", "var/lib", "var/log", "opt", "usr/local/bin", "run"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir()
        self.program = _program()
        self.bin = self.tmp / "bin"
        self.bin.mkdir()
        (self.bin / "lmcz-fast").symlink_to(self.program)
        for where in ("usr/local/bin", "opt/lmcz/bin"):  # where the units say the program is installed
            (self.root / where).mkdir(parents=True, exist_ok=True)
            (self.root / where / "lmcz-fast").symlink_to(self.program)
        blocked, scans, _, truth = synth.blocklist_and_probes(3000, 400, seed=11)
        self.blocked = [EXAMPLE_CIS, *blocked]
        self.spare = [c for c in synth.cis_list(400, seed=12) if c not in set(self.blocked)]
        self.scan_blocked = scans[truth.index(True)]
        self.scan_free = scans[truth.index(False)]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LMCZ_")}
        # the shell variables the examples use: $SCAN/$SCAN1 a till's scan of a blocked code, $SCAN2 of a free one,
        # $CIS a code that is not blocked yet
        self.env.update(PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}", SCAN=self.scan_blocked,
                        SCAN1=self.scan_blocked, SCAN2=self.scan_free, CIS=self.spare[-20], PYTHONSAFEPATH="1")

    # -- rewriting an example to run on loopback inside the world

    def port(self, key: str) -> int:
        if key not in self.ports:
            self.ports[key] = _free_port()
        return self.ports[key]

    def rewrite(self, command: str) -> str:
        text = command
        for pattern, key in HOSTS:
            text = re.sub(pattern, lambda _m, key=key: f"http://127.0.0.1:{self.port(key)}", text)
        text = text.replace("0.0.0.0:8080", f"127.0.0.1:{self.port('mirror:8080')}")
        text = re.sub(r"(127\.0\.0\.1:|--port )5995\b", lambda m: f"{m.group(1)}{self.port('lm')}", text)
        text = _REROOT.sub(lambda m: f"{self.root}/{m.group(1)}/", text)
        argv = self.argv(text)
        if argv and argv[0] == "serve" and "--port" not in argv:
            text = re.sub(r"(\s+#\s.*)?$", lambda m: f" --port {self.port('lm')}" + (m.group(1) or ""), text,
                          count=1)
        return text

    @staticmethod
    def stages(text: str) -> list[list[str] | None]:
        """Each stage of a command line (split at `|`, `&&`, `||`, `;`): its lmcz-fast arguments, or None for
        another program."""
        out: list[list[str] | None] = []
        for stage in re.split(r"\s(?:\|\||&&|\||;)\s", text):
            words = shlex.split(stage, comments=True)
            while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
                words = words[1:]
            out.append(words[1:] if words and words[0].endswith("lmcz-fast") else None)
        return out

    @classmethod
    def argv(cls, text: str) -> list[str] | None:
        """The lmcz-fast arguments of the command line's last stage (what it runs and waits for), or None."""
        return cls.stages(text)[-1]

    def path(self, name: str) -> Path:
        return Path(name) if os.path.isabs(name) else self.cwd / name

    # -- prerequisites, made just before the command that needs them

    def ensure_input(self, name: str) -> None:
        path = self.path(name)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        base = path.name
        if "changes" in base:
            adds = self.spare[self.changes_made * 20:(self.changes_made + 1) * 20]
            removes = self.blocked[1 + self.changes_made * 20:1 + (self.changes_made + 1) * 20]
            self.changes_made += 1
            data = "".join(f"+{c}\n" for c in adds) + "".join(f"-{c}\n" for c in removes)
        elif "price" in base:
            # a minimum-price table: the GTINs of the first blocked codes, and the tobacco group
            gtins = sorted({code[2:16] for code in self.blocked[:5]})
            data = "gtin,pg,price\n" + "".join(f"{g},,{10000 + i}\n" for i, g in enumerate(gtins)) + ",3,12000\n"
        elif "grey" in base:
            data = "".join(f"{g}\n" for g in sorted({code[2:16] for code in self.blocked[5:8]}))
        elif re.search(r"\.csv(\.gz)?$", base):
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["cis", "authority", "reason"])
            writer.writerows([code, "FNS", "recall"] for code in self.blocked)
            data = out.getvalue()
        elif re.search(r"\.txt(\.gz)?$", base):
            data = "".join(f"{c}\n" for c in self.blocked)
        else:
            raise AssertionError(f"the example needs an input file {name} this test does not know how to make")
        raw = data.encode()
        path.write_bytes(gzip.compress(raw) if base.endswith(".gz") else raw)
        self.log.append(f"made {name}")

    def ensure_store(self, db: str) -> None:
        path = self.path(db)
        if (path / "data.mdb").exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with Blocklist.create(path) as bl:
            bl.load([self.blocked], block={"authority": "FNS", "reason": "recall"})
        self.log.append(f"loaded {db}")

    def ensure_key(self, key: str) -> Path:
        path = self.path(key)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            feed.write_keypair(path)
            self.log.append(f"made key {key}")
        return path

    def ensure_published(self, feed_dir: Path, key: Path) -> None:
        if (feed_dir / "manifest.json").exists():
            return
        listing = self.tmp / "publish-list.txt"
        listing.write_text("".join(f"{c}\n" for c in self.blocked))
        feed.publish(feed_dir, key, snapshot=str(listing))
        changes = self.tmp / "publish-changes.txt"
        changes.write_text("".join(f"+{c}\n" for c in self.spare[-10:]) + f"-{self.blocked[-1]}\n")
        feed.publish(feed_dir, key, delta=str(changes))
        self.log.append(f"published a feed (2 versions) in {feed_dir}")

    def serve_files(self, key: str, directory: Path) -> None:
        """Serve `directory` at the host `key` stands for, unless something (an example's daemon) listens there."""
        port = self.port(key)
        if key in self.servers or _listening(port):
            return
        handler = lambda *a, **k: _FlatFiles(*a, directory=str(directory), **k)  # noqa: E731
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers[key] = server

    def ensure_feed_at(self, url: str, public_key: str | None) -> None:
        key_name = next((k for k, p in self.ports.items() if url.startswith(f"http://127.0.0.1:{p}/")), None)
        feed_dir = self.root / "srv" / "feed"
        if key_name is None:  # a local directory or file:// feed
            feed_dir = self.path(url.removeprefix("file://"))
        if not (feed_dir / "manifest.json").exists():
            assert public_key, f"the example syncs from {url} without --public-key"
            pub = self.path(public_key)
            private = pub.with_suffix(".key")
            if not pub.exists():
                self.ensure_key(str(private))
            assert private.exists(), f"the feed for {public_key} needs its private key at {private}"
            self.ensure_published(feed_dir, private)
        if key_name is not None:
            self.serve_files(key_name, feed_dir)

    def ensure_synced(self, db: str) -> None:
        path = self.path(db)
        if (path / "data.mdb").exists():
            with Blocklist.open(path) as bl:
                if bl.get_meta("feed_url"):
                    return
        url = f"http://127.0.0.1:{self.port('feed')}/"
        self.ensure_feed_at(url, "feed.pub")
        path.parent.mkdir(parents=True, exist_ok=True)
        feed.sync(path, url, self.path("feed.pub"))
        self.log.append(f"synced {db} from the feed")

    def ensure_password(self, name: str) -> None:
        path = self.path(name)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("a-long-password\n")
            self.log.append(f"made password file {name}")

    def ensure_front_credentials(self, name: str) -> None:
        """The official module's login for `serve --front` (the module itself is not there: the front answers
        from the local store, which is what the example's serve must still do)."""
        path = self.path(name)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("admin:a-long-password\n")
            self.log.append(f"made the official module's credentials file {name}")

    def ensure_tokens(self, name: str) -> None:
        path = self.path(name)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("5f0c6a52-8f9e-4a39-9d39-1b2c3d4e5f60 2099-12-31 till 1\n")
            self.log.append(f"made token file {name}")

    def ensure_organisations(self, name: str) -> None:
        """An organisations file of one organisation whose tills log in as admin:admin (what the test's readiness
        check sends), its password file beside it."""
        path = self.path(name)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.parent / "organisation-1.password").write_text("admin\n")
            path.write_text('[[organisation]]\ninn = "7701234567"\nname = "Example"\nuser = "admin"\n'
                            'password_file = "organisation-1.password"\n')
            self.log.append(f"made organisations file {name}")

    def ensure_audit(self, directory: str, db: str | None) -> None:
        path = self.path(directory)
        if path.is_dir() and any(path.iterdir()):
            return
        if db is None:  # DB.audit is DB's (serve's default); another folder: a store beside it
            db = directory[: -len(".audit")] if directory.endswith(".audit") else str(Path(directory).parent /
                                                                                        "store.db")
        self.ensure_store(db)
        port = _free_port()
        process = subprocess.Popen([self.program, "serve", str(self.path(db)), "--port", str(port), "--audit-dir",
                                    str(path), "--audit-flush", "0.05"], cwd=self.cwd, env=self.env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            _wait_http(f"http://127.0.0.1:{port}/api/v1/status", ("admin", "admin"), process)
            body = json.dumps({"cis_list": [EXAMPLE_CIS]}).encode()
            status, _ = _http(f"http://127.0.0.1:{port}/api/v1/cis/outCheck", ("admin", "admin"), body)
            assert status == 200
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            assert process.wait(timeout=30) == 0, process.stderr.read()
        self.log.append(f"served one check of {db} to write the audit log {directory}")

    def ensure_couch(self, credentials_file: str | None) -> None:
        """The replication source the example names: pouchdb-server on loopback, holding the world's list."""
        from _couch_support import POUCHDB, Couch

        if self.couch is None:
            if POUCHDB is None:
                pytest.skip("pouchdb-server is not installed (.ci/run installs it with npm)")
            self.couch = Couch(self.tmp / "couch", port=self.port("couch")).__enter__()
            self.couch.create("blocked_cis", "blocked_gtin", "min_price")
            self.couch.put_docs("blocked_cis", [{"_id": code} for code in self.blocked])
            self.log.append("started pouchdb-server with blocked_cis, blocked_gtin, min_price")
        if credentials_file and not self.path(credentials_file).exists():
            path = self.path(credentials_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("replicator:a-long-password\n")
            self.couch.require_auth("replicator", "a-long-password", "blocked_cis", "blocked_gtin", "min_price")
            self.log.append(f"made credentials file {credentials_file} (an admin of the source)")
            self.couch_private = True
        elif not credentials_file and getattr(self, "couch_private", False):
            # an example without credentials names a source that needs none: the source is public again
            self.couch.open_to_all("blocked_cis", "blocked_gtin", "min_price")
            self.couch_private = False
            self.log.append("the source needs no credentials for this example")

    def prepare(self, argv: list[str]) -> None:
        name, opts = _parse(argv)
        if name == "replicate":
            self.ensure_couch(opts.get("credentials_file"))
        if name in ("load", "prices load", "grey load"):
            for source in opts.get("sources", ()):
                self.ensure_input(source)
        if name in ("prices list", "grey list"):
            self.ensure_store(opts["db"])
        if name in ("lookup", "info", "status", "delta", "serve", "compact", "adopt", "guard"):
            self.ensure_store(opts["db"])
        if name == "adopt":
            self.ensure_feed_at(opts["feed_url"], opts.get("public_key"))
        if name == "delta":
            self.ensure_input(opts["file"])
        if name == "serve" and opts.get("password_file"):
            self.ensure_password(opts["password_file"])
        if name == "serve" and opts.get("token_file"):
            self.ensure_tokens(opts["token_file"])
        if name == "serve" and opts.get("front_credentials_file"):
            self.ensure_front_credentials(opts["front_credentials_file"])
        if name == "serve" and opts.get("organisations_file"):
            self.ensure_organisations(opts["organisations_file"])
        if name == "check" and opts.get("db"):
            self.ensure_store(opts["db"])
        if name == "sync":
            if opts.get("feed_url"):
                self.ensure_feed_at(opts["feed_url"], opts.get("public_key"))
            else:
                self.ensure_synced(opts["db"])
        if name == "mirror":
            self.ensure_feed_at(opts["feed_url"], opts.get("public_key"))
        if name == "publish":
            key = self.ensure_key(opts["key_path"])
            for source in opts.get("snapshots", ()):
                self.ensure_input(source)
            if opts.get("delta_path"):
                self.ensure_input(opts["delta_path"])
            for source in (*opts.get("price_files", ()), *opts.get("grey_files", ())):
                self.ensure_input(source)
            if opts.get("from_store"):
                self.ensure_store(opts["from_store"])
            if not opts.get("snapshots"):
                self.ensure_published(self.path(opts["feed_dir"]), key)
        if name == "audit export":
            self.ensure_audit(opts.get("audit_dir") or opts["db"] + ".audit", opts.get("db"))
        if name.startswith("sold ") and opts.get("db"):
            self.ensure_store(opts["db"])
        if name == "sold import":
            self.ensure_sold_export(opts["source"], opts["db"], same_instance=not opts.get("force"))

    def ensure_sold_export(self, source: str, db: str, *, same_instance: bool) -> None:
        """A register export to import: of `db` itself, or (for --force) of another store, with one sale."""
        path = self.path(source)
        if path.exists():
            return
        origin = self.path(db) if same_instance else self.tmp / "another-store.db"
        if not (origin / "data.mdb").exists():
            Blocklist.create(origin).close()
        with Blocklist.open(origin) as bl:
            bl.record_sold([self.spare[0]])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(line + "\n" for line in bl.sold.export_lines()))
        self.log.append(f"exported the sold register of {'this store' if same_instance else 'another store'} "
                        f"to {source}")

    # -- running

    def run(self, command: str) -> None:
        if command in ONCE and command in _PASSED:
            self.log.append(f"$ {command}\n  -> passed already in this run ({_PASSED[command]}): not run twice")
            return
        text = self.rewrite(command)
        argv = self.argv(text)
        for stage in self.stages(text):
            if stage is not None:
                self.prepare(stage)
        if command.startswith("curl ") and shutil.which("curl") is None:
            pytest.skip("curl is not installed here (.ci/run installs it)")
        if argv is not None and (argv[0] == "serve" or "--every" in argv or "--follow" in argv):
            self.start(command, text, argv)
            return
        result = subprocess.run(["bash", "-c", text], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                                timeout=180)
        self.log.append(f"$ {text}\n  -> rc {result.returncode}")
        _judge(command, argv, result.returncode, result.stdout, result.stderr)
        _PASSED.setdefault(command, self.where)

    def start(self, command: str, text: str, argv: list[str]) -> None:
        name = argv[0]
        for daemon in [d for d in self.daemons if d.name == name]:  # a new one of the same kind replaces it
            self.stop(daemon)
        number = len(self.log)
        out, err = self.tmp / f"daemon-{number}.out", self.tmp / f"daemon-{number}.err"
        with open(out, "wb") as o, open(err, "wb") as e:
            process = subprocess.Popen(["bash", "-c", "exec " + text], cwd=self.cwd, env=self.env, stdout=o,
                                       stderr=e, start_new_session=True)
        daemon = Daemon(command, name, process, out, err)
        self.daemons.append(daemon)
        self.log.append(f"$ {text} &")
        _, opts = _parse(argv)
        if name == "serve":
            user = opts.get("user") or "admin"
            password = "admin"
            if opts.get("password_file"):
                password = self.path(opts["password_file"]).read_text().splitlines()[0]
            elif "CREDENTIALS_DIRECTORY" in self.env and "${CREDENTIALS_DIRECTORY}" in command:
                password = Path(self.env["CREDENTIALS_DIRECTORY"], "password").read_text().splitlines()[0]
            port = int(opts.get("port") or 0)
            status, payload = _wait_http(f"http://127.0.0.1:{port}/api/v1/status", (user, password), process,
                                         err)
            assert status == 200 and int(payload.get("dbVersion", 0)) >= 1, (command, status, payload)
        else:
            words = {"mirror": "mirror ok", "replicate": "replicate ok"}.get(name, "sync ok")
            _wait_log(err, words, process, command)
            if opts.get("serve_address"):
                port = int(opts["serve_address"].rsplit(":", 1)[1])
                status, payload = _wait_http(f"http://127.0.0.1:{port}/manifest.json", None, process, err)
                assert status == 200 and "signed" in payload, (command, status)

    def stop(self, daemon: Daemon) -> None:
        if daemon.process.poll() is None:
            os.killpg(daemon.process.pid, signal.SIGTERM)
            try:
                rc = daemon.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.process.pid, signal.SIGKILL)
                daemon.process.wait()
                raise AssertionError(f"{daemon.command}: still running 30 s after SIGTERM")
        else:
            rc = daemon.process.returncode
        self.daemons.remove(daemon)
        err = daemon.err.read_text(errors="replace")
        assert rc == 0, f"{daemon.command}: exit {rc} (SIGTERM must end it cleanly)\n{err[-3000:]}"
        assert "Traceback" not in err, f"{daemon.command}:\n{err[-3000:]}"

    def close(self) -> None:
        if self.couch is not None:
            self.couch.__exit__()
        errors = []
        for daemon in list(self.daemons):
            try:
                self.stop(daemon)
            except AssertionError as exc:
                errors.append(str(exc))
            finally:
                if daemon.process.poll() is None:
                    os.killpg(daemon.process.pid, signal.SIGKILL)
                    daemon.process.wait()
        for server in self.servers.values():
            server.shutdown()
            server.server_close()
        assert not errors, "\n".join(errors)
