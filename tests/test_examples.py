"""Every example in `--help` and in the docs works as printed: this test finds them all and runs them for real.

Where the examples come from:
- the `--help` of `lmcz-fast` and of every command and subcommand: each line of the help text (before its
  options) that starts with a command (`lmcz-fast`, `curl`, `printf`, ... optionally after `VAR=value`), with `\\`
  continuations joined;
- README.md and docs/*.md: the lines of every `sh`/`bash`/untagged code block that holds a command (a block that
  names `lmcz-fast` must consist of commands and comments only), the `ExecStart=` of every `ini` block (systemd
  units, with their `LoadCredential=`), and every `python` block.

How they run: each help text or code block is one sequence, run in order in a fresh world of its own (a temporary
folder standing for the machine's root and a working directory), with the prerequisites its commands presume made
just before the command that needs them — an input list under the name the example gives it, a loaded store, a
signing key, a published feed served where the example fetches it, a password file, an audit log written by a real
`serve`. Long-running commands (`serve`, `--every`) are started in the background, waited for until they are
ready (`serve` answers `/api/v1/status`; `sync`/`mirror` log their first successful round) and stopped with
SIGTERM, which must end them cleanly; a later command of the block (`curl`, a `sync` from a `mirror --serve`) talks
to them meanwhile. The only changes to an example's text are these, so that it runs on loopback inside the test's
folder: absolute paths under /etc, /srv, /var, /opt and /usr are put under the world's root; the hosts the docs
name are served by the test on 127.0.0.1 (HOSTS); port 5995 (and a `serve` without `--port`) gets a free port,
and `0.0.0.0:8080` a free loopback one.

An example that cannot run here is in ALLOWED with the reason; every entry there must still match an example, and
any example neither run nor allowed fails the test.
"""

from __future__ import annotations

import base64
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
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from lmcz_fast import Blocklist, feed, synth
from lmcz_fast.cli import main

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

#: The code the examples check: blocked in every list the test makes, as the docs' sample answers show it.
EXAMPLE_CIS = "0104650000000010215abcdef"

#: Examples that cannot run inside a test, each with its reason: a regular expression searched in a command's text
#: (in a python block, in any of its lines).
ALLOWED: dict[str, str] = {
    r"^LMCZ_TRUE_API_KEY=\.\.\. lmcz-fast check --lm":
        "needs a True API key and CRPT's True API hosts on the internet (the offline side is run by the other "
        "`check` examples)",
    r"^python3 -m venv \.venv && \.venv/bin/pip install \. && \.venv/bin/lmcz-fast demo$":
        "installs the package into a new virtualenv: what `.ci/run` does before this suite (and `lmcz-fast demo` "
        "itself runs here from `lmcz-fast --help`)",
    r"^python3 -m venv \.venv && \.venv/bin/pip install '\.\[test\]' && \.venv/bin/pytest$":
        "the test command itself: `.ci/run` runs it, this suite is what it runs",
    r"pytest( -p no:randomly)? benches/":
        "a benchmark command: benches/ runs as part of this suite, running it from a test would run it twice",
    r"^python benches/bench_service\.py --port":
        "the load generator of benches/bench_service.py, which that bench runs against a real `serve`",
    r"^online = TrueApiClient\(api_key":
        "needs a True API key and CRPT's hosts; tests/test_checker.py runs the same calls against a local fake",
    r"^async with Checker\(TrueApiClient\(api_key\)":
        "needs a True API key and CRPT's hosts; tests/test_checker.py runs the same calls against a local fake",
    r"^(PATH=\S+ )?(build-env|/opt/lmcz-fast)/bin/|^python3 -m venv (build-env|/opt/lmcz-fast)|^systemd-sysusers |"
    r"^systemctl ":
        "a store server's installation (a wheel built and installed without a compiler, systemd units enabled): "
        "tests/test_wheel.py and tests/test_systemd.py run these steps",
    r"^runuser -u lmcz-fast |^install -[do] ":
        "a store server's installation as root (the service user made by systemd-sysusers, files under /etc): "
        "tests/test_systemd.py checks the layout the units need, tests/test_operations.py runs each command "
        "the service runs",
    r"--proxy http://proxy\.shop\.local":
        "goes through the store's HTTP proxy: tests/test_proxy.py runs these commands through a real tinyproxy",
    r"^Blocklist\.create\(path, \*, instance_id=None\) -> Blocklist":
        "an API synopsis (signatures), not code",
    r"^bl\.status\(now: float \| None = None\) -> Status$":
        "an API synopsis (a signature), not code",
    r"^parse_code\(raw: str \| bytes, \*, cis: bool = False\) -> MarkingCode":
        "an API synopsis (signatures), not code",
}

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
COMMANDS = ("lmcz-fast", "curl", "printf", "mkdir", "python", "python3", "pytest", "cd", "pip", "auditwheel",
            "systemd-sysusers", "systemctl", "runuser", "install")
_COMMAND = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:\S*/)?(?:" + "|".join(map(re.escape, COMMANDS)) + r")(?:\s|$)")
_REROOT = re.compile(r"(?<![\w.:/-])/(etc|srv|var|opt|usr|run)/")


# ------------------------------------------------------------------------------------------------ finding examples


@dataclass(frozen=True)
class Example:
    where: str  # "lmcz-fast serve --help" or "docs/service.md:17"
    kind: str  # "sh", "unit" or "python"
    commands: tuple[str, ...]
    credentials: tuple[tuple[str, str], ...] = ()  # a unit's LoadCredential= (id, path)


def _joined(lines: list[str]) -> list[str]:
    out: list[str] = []
    carry = ""
    for line in lines:
        stripped = line.strip()
        if stripped.endswith("\\"):
            carry += stripped[:-1].rstrip() + " "
            continue
        out.append((carry + stripped).strip())
        carry = ""
    if carry:
        out.append(carry.strip())
    return out


def _commands_in_help(text: str) -> list[str]:
    body = text.split("\nOptions:", 1)[0]
    return [line for line in _joined(body.splitlines()) if _COMMAND.match(line)]


def _walk(group: click.Group, path: tuple[str, ...] = ()):
    yield path, group
    for name in sorted(group.commands):
        command = group.commands[name]
        if isinstance(command, click.Group):
            yield from _walk(command, (*path, name))
        else:
            yield (*path, name), command


def help_examples() -> list[Example]:
    runner = CliRunner()
    examples = []
    for path, _ in _walk(main):
        result = runner.invoke(main, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, (path, result.output)
        commands = _commands_in_help(result.output)
        if commands:
            examples.append(Example(" ".join(("lmcz-fast", *path, "--help")), "sh", tuple(commands)))
    return examples


def _blocks(path: Path):
    lines = path.read_text(encoding="utf-8").splitlines()
    start = None
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            if start is None:
                start, tag, body = number, line.strip()[3:].strip(), []
            else:
                yield start, tag, body
                start = None
        elif start is not None:
            body.append(line)


def doc_examples() -> list[Example]:
    examples = []
    for path in DOCS:
        name = path.relative_to(REPO).as_posix()
        for number, tag, body in _blocks(path):
            where = f"{name}:{number}"
            if tag == "python":
                examples.append(Example(where, "python", ("\n".join(body),)))
            elif tag == "ini":
                starts = [line.split("=", 1)[1].strip() for line in body if line.startswith("ExecStart=")]
                creds = tuple(tuple(line.split("=", 1)[1].strip().split(":", 1)) for line in body
                              if line.startswith("LoadCredential="))
                examples.extend(Example(where, "unit", (command,), creds) for command in starts)
            elif tag in ("", "sh", "bash", "console", "shell"):
                lines = [line for line in _joined(body) if line and not line.startswith("#")]
                commands = [line for line in lines if _COMMAND.match(line)]
                if not commands and not any(re.search(r"\blmcz-fast\s+[a-z-]", line) for line in lines):
                    continue  # a file's content or a tree of the sources, not commands
                stray = [line for line in lines if not _COMMAND.match(line)]
                assert not stray, f"{where}: a command block with lines that are not commands: {stray}"
                examples.append(Example(where, "sh", tuple(commands)))
    return examples


def _allowance(text: str) -> str | None:
    for pattern, reason in ALLOWED.items():
        if re.search(pattern, text, re.M):
            return reason
    return None


EXAMPLES = help_examples() + doc_examples()


# ------------------------------------------------------------------------------------------------ the world


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class _FlatFiles(http.server.SimpleHTTPRequestHandler):
    """Serves a feed directory's files under any path prefix (`/`, `/lmcz/`, `/feed/`), as a CDN path would."""

    def translate_path(self, path: str) -> str:
        name = path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        return os.path.join(self.directory, name)

    def log_message(self, format: str, *args) -> None:
        pass


def _program() -> str:
    beside = Path(sys.executable).with_name("lmcz-fast")
    found = str(beside) if beside.exists() else shutil.which("lmcz-fast")
    assert found, "the lmcz-fast command is not installed next to this Python (pip install '.[test]')"
    return found


@dataclass
class Daemon:
    command: str
    name: str  # the lmcz-fast subcommand
    process: subprocess.Popen
    out: Path
    err: Path


#: Commands that need nothing from the world and change nothing in it, slow enough to run only once per session
#: when several examples print them (`lmcz-fast --help` and `lmcz-fast demo --help` both show the demo).
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


def _parse(argv: list[str]) -> tuple[str, dict]:
    """The subcommand and its options and arguments as written (no conversion, no check that files exist)."""
    command: click.Command = main
    names: list[str] = []
    args = list(argv)
    while isinstance(command, click.Group):
        ctx = click.Context(command, info_name=names[-1] if names else "lmcz-fast")
        _, rest, _ = command.make_parser(ctx).parse_args(args)
        if not rest:
            return " ".join(names) or "--help", {}
        names.append(rest[0])
        command, args = command.commands[rest[0]], rest[1:]
    ctx = click.Context(command, info_name=names[-1])
    opts, _, _ = command.make_parser(ctx).parse_args(args)
    given = {k: v for k, v in opts.items() if isinstance(v, (str, int, float, list, tuple))}  # not click's UNSET
    return " ".join(names), given


def _http(url: str, auth: tuple[str, str] | None, body: bytes | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _wait_http(url: str, auth, process: subprocess.Popen, err: Path | None = None) -> tuple[int, dict]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            detail = err.read_text(errors="replace") if err else ""
            raise AssertionError(f"exited with {process.returncode} before answering {url}\n{detail[-3000:]}")
        try:
            return _http(url, auth)
        except (OSError, ValueError):
            time.sleep(0.1)
    raise AssertionError(f"no answer at {url} within 30 s")


def _wait_log(err: Path, words: str, process: subprocess.Popen, command: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = err.read_text(errors="replace")
        if "FAILED" in text or "Traceback" in text:
            raise AssertionError(f"{command}:\n{text[-3000:]}")
        if words in text:
            return
        if process.poll() is not None:
            raise AssertionError(f"{command}: exited with {process.returncode}\n{text[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"{command}: no {words!r} within 60 s")


def _judge(command: str, argv: list[str] | None, rc: int, out: str, err: str) -> None:
    """Did the command do what its example says? Exit 0, or 1 for a check that found a blocked code (documented);
    no traceback, no error; curl got a JSON answer with code 0."""
    shown = f"{command}\n  rc {rc}\n  stdout: {out[-2000:]}\n  stderr: {err[-2000:]}"
    assert "Traceback" not in err and "Traceback" not in out, shown
    name = _parse(argv)[0] if argv is not None else command.split()[0]
    if name in ("lookup", "check") and rc == 1:
        assert re.search(r"BLOCKED|REFUSE|\"blocked\": true", out), shown
    else:
        assert rc == 0, shown
    assert "error:" not in err.lower(), shown
    if name in ("lookup", "check"):
        assert "INVALID" not in out and "cannot_check" not in out.lower(), shown
    if name == "curl":
        payload = json.loads(out)
        assert payload.get("code") == 0, shown
        if "/cis/" in command:
            assert [c["isBlocked"] for c in payload["codes"]] == [True], shown


def _python_inputs(code: str) -> list[str]:
    return re.findall(r"""["']([\w./-]+\.(?:csv|txt)(?:\.gz)?)["']""", code)


# ------------------------------------------------------------------------------------------------ the tests


def _runnable() -> list[Example]:
    return [e for e in EXAMPLES if any(_allowance(c) is None for c in e.commands)]


@pytest.mark.parametrize("example", _runnable(), ids=lambda e: e.where)
def test_example_works_as_printed(example: Example, tmp_path: Path, monkeypatch) -> None:
    world = World(tmp_path, example.where)
    try:
        if example.kind == "python":
            code = example.commands[0]
            for name in _python_inputs(code):
                world.ensure_input(name)
            monkeypatch.chdir(world.cwd)
            names = {"scan": world.scan_blocked, "scans": [world.scan_blocked, world.scan_free]}
            exec(compile(code, example.where, "exec"), names)
            if "verdict" in names:
                assert names["verdict"].blocked and names["verdict"].cis is not None
            return
        if example.kind == "unit":
            credentials = world.tmp / "credentials"
            credentials.mkdir()
            for ident, source in example.credentials:
                source_path = world.rewrite(source)
                world.ensure_password(source_path)
                shutil.copy(source_path, credentials / ident)
            world.env["CREDENTIALS_DIRECTORY"] = str(credentials)
        for command in example.commands:
            allowed = _allowance(command)
            if allowed is None:
                world.run(command)
    except AssertionError as exc:
        raise AssertionError(f"{example.where}: {exc}\n-- what ran:\n" + "\n".join(world.log)) from None
    finally:
        world.close()


def test_examples_are_found_where_the_docs_and_help_have_them() -> None:
    """The extraction itself: a finder that found nothing would make the test above pass vacuously."""
    wheres = {e.where for e in EXAMPLES}
    for help_text in ("lmcz-fast --help", "lmcz-fast serve --help", "lmcz-fast sync --help",
                      "lmcz-fast audit export --help", "lmcz-fast check --help", "lmcz-fast load --help"):
        assert help_text in wheres
    every = [c for e in EXAMPLES for c in e.commands]
    assert any(c.startswith("curl -u admin:admin") and "outCheck" in c for c in every)
    assert any(c.startswith("curl -u till:a-long-password") for c in every)
    # systemd units are generated by `lmcz-fast systemd` (its ExecStart lines are checked by tests/test_systemd.py)
    assert "lmcz-fast systemd --help" in wheres
    assert sum(e.kind == "python" for e in EXAMPLES) >= 4
    assert len(every) >= 40


def test_every_allowance_names_an_example_and_a_reason() -> None:
    used = {pattern for pattern in ALLOWED for e in EXAMPLES for c in e.commands if re.search(pattern, c, re.M)}
    assert set(ALLOWED) - used == set(), "ALLOWED entries that match no example any more"
    assert all(len(reason) > 20 for reason in ALLOWED.values())
    assert len(ALLOWED) <= 14, "the allow-list is for examples that cannot run here, not a way around this test"


def test_marking_codes_in_docs_and_help_are_valid() -> None:
    """The codes the docs and help print must parse as written: a GTIN with a wrong check digit made the curl
    example refused."""
    texts = {p.relative_to(REPO).as_posix(): p.read_text(encoding="utf-8") for p in DOCS}
    runner = CliRunner()
    for path, _ in _walk(main):
        texts[" ".join(("lmcz-fast", *path, "--help"))] = runner.invoke(main, [*path, "--help"]).output
    bad = []
    for where, text in texts.items():
        gtins = re.findall(r"(?<![\d])01(\d{14})21", text) + re.findall(r"(?m)^[+-]?(\d{14})$", text)
        bad += [f"{where}: GTIN {g}" for g in gtins if synth.gtin_check_digit(g[:13]) != g[13]]
    assert not bad, "codes in the docs or help with a wrong GTIN check digit:\n" + "\n".join(bad)
    assert len(texts) > 10
