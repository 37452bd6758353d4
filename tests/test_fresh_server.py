"""A fresh Debian machine from nothing to `serve` and `sync` under systemd-analyze-verified units, following
docs/operations.md ("From a bare Debian server ...") literally: the commands are read out of the doc, so a step that
stops working as printed fails here.

systemd cannot boot here, so `systemctl` is the one step not run: the units `lmcz-fast systemd` wrote are checked by
`systemd-analyze verify`, and their ExecStart= lines run as the unit's user (`setpriv`, with the unit's umask, an
empty environment but PATH, working directory /) against the unit's paths.

What the test changes in the doc's commands, and why (nothing else):
- paths: `/opt/lmcz-fast`, `/etc/lmcz-fast`, `/var/lib/lmcz-fast` get a suffix unique to the run (a machine that
  runs the tests may hold a real install; the test removes its own directories at the end). So `lmcz-fast systemd`
  also gets `--db` (its default is the doc's store path), and `--install` the test's folders for the units, the
  sysusers.d and the tmpfiles.d files instead of /etc/systemd/system, /etc/sysusers.d and /etc/tmpfiles.d; then
  `systemd-sysusers` and `systemd-tmpfiles --create` are given those two files.
- the feed `https://feed.example/lmcz/` is a feed published by the test on loopback (tests/_feed_support.py),
  `feed.pub` its key; the proxy `http://proxy.shop.local:3128` is Debian's tinyproxy on loopback with Basic auth
  (tests/_proxy_support.py), whose `user:password` the test writes into proxy.auth as the doc's editor step would;
- serve's port 5995 is a free loopback port.
The user `lmcz-fast` that `systemd-sysusers` makes stays (as on a real server). Marked slow: the wheel build (shared
with tests/test_wheel.py through the `manylinux_wheel` fixture) and a venv with pip take one to three minutes."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _daemon_support import start_on_free_port, stop_process
from _http_support import basic_auth, call
from _feed_support import FeedServer
from _proxy_support import Tinyproxy, tinyproxy_binary
from _wheel_support import build_env, step

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "operations.md"
SECTION = "## From a bare Debian server"
SYSTEM_PYTHON = "/usr/bin/python3"
#: root's PATH on a fresh Debian: `python3` is the system's, not the one running the tests
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DOC_FEED, DOC_PROXY = "https://feed.example/lmcz/", "http://proxy.shop.local:3128"
PROXY_USER, PROXY_PASSWORD = "shop", "a-long-password"
TILLS_PASSWORD = "till-password-" + "x" * 8
BLOCKED_FIRST, BLOCKED_LATER = "0104650000000010215abcdef", "0104650000000027215ghijklm"
USER = "lmcz-fast"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (it installs under /opt, /etc, /var/lib and runs commands as the service user)"
    for tool in ("systemd-analyze", "systemd-sysusers", "systemd-tmpfiles", "runuser", "setpriv", "install"):
        if shutil.which(tool, path=ROOT_PATH) is None:
            return f"{tool} is not installed (.ci/run installs Debian's systemd and util-linux)"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no {SYSTEM_PYTHON} (Debian's python3)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import ensurepip, venv, sys; print(sys.version_info[:2])"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"{SYSTEM_PYTHON} has no venv/ensurepip (Debian: apt install python3-venv)"
    if probe.stdout.strip() != str(sys.version_info[:2]):
        return (f"{SYSTEM_PYTHON} is Python {probe.stdout.strip()}, the wheel would be built for "
                f"{sys.version_info[:2]} (the doc builds it with the Python the stores run)")
    if tinyproxy_binary() is None:
        return "tinyproxy is not installed (.ci/run installs Debian's tinyproxy): the doc's commands use a proxy"
    return None


def doc_commands() -> list[str]:
    """The shell commands of the doc's section, in order: backslash-continued lines joined, blank lines dropped."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + 1)
    section = text[start:end if end > 0 else len(text)]
    commands: list[str] = []
    for block in re.findall(r"^```(?:sh)?\n(.*?)^```", section, flags=re.M | re.S):
        pending = ""
        for line in block.splitlines():
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command = (pending + line).strip()
            pending = ""
            if command and not command.startswith("#"):
                commands.append(re.sub(r"\s+", " ", command))
    return commands


def _get(port: int, path: str, password: str, body: bytes | None = None) -> tuple[int, bytes]:
    return call(port, path, basic_auth("admin", password), body)


def _blocked(port: int, code: str) -> bool | None:
    status, body = _get(port, "/api/v1/cis/outCheck", TILLS_PASSWORD, json.dumps({"cis_list": [code]}).encode())
    assert status in (200, 400), (status, body)
    return json.loads(body)["codes"][0]["isBlocked"] if status == 200 else None


def _exec_start(unit: Path) -> list[str]:
    lines = [line for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1, (unit, lines)
    return shlex.split(lines[0][len("ExecStart="):])


def _as_service_user(words: list[str], log: Path) -> subprocess.Popen:
    """An ExecStart= line as systemd would start it, as far as it can here: the unit's user and group, UMask=0027,
    working directory /, an environment of PATH alone. `setpriv` execs the command (runuser would stay its parent and
    answer SIGTERM by killing it), so the signal `systemctl stop` sends reaches the program itself."""
    with log.open("ab") as out:
        return subprocess.Popen(["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups", "--", *words],
                                cwd="/", env={"PATH": ROOT_PATH}, umask=0o027,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


def _publish(lmcz: list[str], feed_dir: Path, key: Path, codes: list[str], work: Path) -> None:
    listing = work / "blocked.txt"
    listing.write_text("".join(f"{code}\n" for code in codes))
    published = subprocess.run([*lmcz, "publish", str(feed_dir), "--key", str(key), "--snapshot", str(listing)],
                               capture_output=True, text=True, timeout=120)
    assert published.returncode == 0, published.stderr


@pytest.mark.slow
def test_a_fresh_debian_server_runs_serve_and_sync_following_the_doc(tmp_path, manylinux_wheel):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    started_at = time.monotonic()
    commands = doc_commands()
    tag = f"-e2e-{secrets.token_hex(4)}"
    opt, etc, var = f"/opt/lmcz-fast{tag}", f"/etc/lmcz-fast{tag}", f"/var/lib/lmcz-fast{tag}"
    mine = [Path(opt), Path(etc), Path(var)]
    assert not any(p.exists() for p in mine)
    units, sysusers, tmpfiles = tmp_path / "units", tmp_path / "sysusers.d", tmp_path / "tmpfiles.d"

    # The build machine's part (the doc's wheel section): the wheel and its dependencies in `wheelhouse/`.
    work = tmp_path / "work"          # the directory root works in on the server: wheelhouse/ and feed.pub
    house = work / "wheelhouse"
    house.mkdir(parents=True)
    shutil.copy(manylinux_wheel.path, house)
    timings: dict[str, float] = {}
    step(timings, "pip download (the wheel's dependencies)",
         [sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:", "-d", str(house),
          str(house / manylinux_wheel.path.name)], build_env())

    # The chain's feed (published by the build venv's lmcz-fast) and the stores' proxy.
    lmcz = [str(Path(sys.executable).parent / "lmcz-fast")]
    feed_dir = tmp_path / "feed"
    assert subprocess.run([*lmcz, "keygen", str(tmp_path / "feed.key")], capture_output=True).returncode == 0
    shutil.copy(tmp_path / "feed.pub", work / "feed.pub")
    _publish(lmcz, feed_dir, tmp_path / "feed.key", [BLOCKED_FIRST], tmp_path)

    def adapt(command: str, feed_url: str, proxy_url: str) -> str:
        command = re.sub(r"(?<![\w.-])(/opt|/etc|/var/lib)/lmcz-fast(?=[/\s]|$)", lambda m: m.group(0) + tag,
                         command)
        command = command.replace(DOC_FEED, feed_url).replace(DOC_PROXY, proxy_url)
        if re.search(r"bin/lmcz-fast systemd .*--install$", command):
            command += (f" {units} --sysusers-dir {sysusers} --tmpfiles-dir {tmpfiles} --db {var}/store.db")
        if command == "systemd-sysusers && systemd-tmpfiles --create":
            command = (f"systemd-sysusers {sysusers}/lmcz-fast.conf && "
                       f"systemd-tmpfiles --create {tmpfiles}/lmcz-fast.conf")
        return command

    ran: list[str] = []
    serve = sync = None
    env = {"PATH": ROOT_PATH, "LANG": "C.UTF-8", "HOME": "/root"}
    try:
        with FeedServer(feed_dir) as feed, Tinyproxy(auth=(PROXY_USER, PROXY_PASSWORD)) as proxy:
            for command in commands:
                if command.startswith("systemctl "):
                    # systemd cannot run here: the units it would start are checked and run below
                    for unit in re.findall(r"lmcz-fast-[\w-]+\.(?:service|timer)", command):
                        assert (units / unit).exists(), (command, unit)
                    continue
                actual = adapt(command, feed.url, proxy.url)
                result = subprocess.run(actual, shell=True, cwd=work, env=env, capture_output=True, text=True,
                                        timeout=600)
                assert result.returncode == 0, f"the doc's step failed as printed:\n{command}\nran as: {actual}\n" \
                                               f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
                ran.append(command)
                bare = command.split(" #")[0].strip()          # the install lines end with a comment
                if bare.startswith("install ") and bare.endswith("/password"):
                    Path(f"{etc}/password").write_text(TILLS_PASSWORD + "\n")   # "typed into an editor"
                if bare.startswith("install ") and bare.endswith("/proxy.auth"):
                    Path(f"{etc}/proxy.auth").write_text(f"{PROXY_USER}:{PROXY_PASSWORD}\n")

            # Every step of the doc's path was there and ran (a reworded doc must be re-read by this test).
            kinds = ["-m venv", "pip install", "lmcz-fast systemd", "systemd-sysusers", "install -d", "feed.pub",
                     "/password", "/proxy.auth", "runuser -u lmcz-fast"]
            assert all(any(k in c for c in ran) for k in kinds), (kinds, ran)
            for path, mode in ((opt, 0o755), (etc, 0o750), (var, 0o750)):
                assert Path(path).stat().st_mode & 0o777 == mode, path
            for name in ("feed.pub", "password", "proxy.auth"):
                st = Path(etc, name).stat()
                assert st.st_mode & 0o777 == 0o640 and st.st_uid == 0, name
            store = Path(var, "store.db")
            assert store.exists() and store.stat().st_uid == Path(var).stat().st_uid != 0   # the service user's
            assert any(r.startswith("GET http://127.0.0.1") for r in proxy.requests()), proxy.log[-2000:]

            # The units: verified by systemd-analyze (ExecStart= exists, User= exists, every directive known).
            written = sorted(p for p in units.iterdir() if p.suffix in (".service", ".timer"))
            assert {p.name for p in written} >= {"lmcz-fast-serve.service", "lmcz-fast-sync.service",
                                                 "lmcz-fast-sold-export.timer"}
            verified = subprocess.run(["systemd-analyze", "verify", *map(str, written)], capture_output=True,
                                      text=True, timeout=120, env=env)
            complaints = [line for line in (verified.stdout + verified.stderr).splitlines()
                          if any(p.name in line for p in written)]
            assert verified.returncode == 0 and complaints == [], verified.stdout + verified.stderr
            serve_words = _exec_start(units / "lmcz-fast-serve.service")
            sync_words = _exec_start(units / "lmcz-fast-sync.service")
            assert serve_words[0] == f"{opt}/bin/lmcz-fast" and f"{var}/store.db" in serve_words
            assert "--every" in sync_words and feed.url in sync_words and proxy.url in sync_words

            # serve, as the unit starts it (its port made a free one), answers the tills from the first sync's list
            at = serve_words.index("--port") + 1

            def launch(port: int) -> subprocess.Popen:
                nonlocal serve
                serve = _as_service_user([*serve_words[:at], str(port), *serve_words[at + 1:]], tmp_path / "serve.log")
                return serve
            started = start_on_free_port(launch, timeout=60)
            assert started is not None, (tmp_path / "serve.log").read_text(errors="replace")
            port = started[0]
            assert _blocked(port, BLOCKED_FIRST) is True and _blocked(port, BLOCKED_LATER) is False
            assert _get(port, "/api/v1/status", "wrong")[0] == 401     # the password file is the one read

            # sync, as the unit starts it, takes the chain's next version; serve answers it without a restart
            _publish(lmcz, feed_dir, tmp_path / "feed.key", [BLOCKED_FIRST, BLOCKED_LATER], tmp_path)
            sync = _as_service_user(sync_words, tmp_path / "sync.log")
            deadline = time.monotonic() + 90
            while _blocked(port, BLOCKED_LATER) is not True:
                assert sync.poll() is None and time.monotonic() < deadline, \
                    (tmp_path / "sync.log").read_text(errors="replace")
                time.sleep(0.3)
            assert serve.poll() is None

            # systemctl stop: SIGTERM to each (KillSignal=SIGTERM), which they end cleanly on
            for proc in (sync, serve):
                proc.terminate()
                assert proc.wait(timeout=60) == 0, (tmp_path / "serve.log").read_text(errors="replace") + \
                    (tmp_path / "sync.log").read_text(errors="replace")
            assert Path(var, "store.db.audit").is_dir()     # serve's audit log, in the unit's writable path
    finally:
        for proc in (sync, serve):
            stop_process(proc)
        for path in mine:
            shutil.rmtree(path, ignore_errors=True)
    print(f"\nfresh server: {time.monotonic() - started_at:.1f} s after the wheel "
          f"(wheel build {sum(manylinux_wheel.timings.values()):.1f} s)")
