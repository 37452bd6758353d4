"""Every configuration snippet of the docs, run as printed against the real program (tests/test_examples.py does
the same for commands): `nginx` blocks inside a server block of Debian's nginx, `tinyproxy` blocks as tinyproxy's
configuration file, `ini` blocks that are systemd units through `systemd-analyze verify`. Only what cannot run here
is changed: a listening port becomes a free loopback one, absolute paths under /srv, /var and /etc move into the
test's folder, and tinyproxy's log and pid files go there too. A missing program skips, saying which."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from _daemon_support import start_on_free_port, stop_process
from _nginx_support import MISSING, NGINX, nginx_command, nginx_main

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LMCZ = shutil.which("lmcz-fast", path=os.path.dirname(sys.executable)) or shutil.which("lmcz-fast")
_REROOT = re.compile(r"(?<![\w.:/-])/(etc|srv|var|opt)/")


def blocks(tag: str) -> list[tuple[str, str]]:
    """(where, text) of every ```TAG block of the docs."""
    found = []
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        inside, start, body = False, 0, []
        for number, line in enumerate(lines, start=1):
            if not inside and line.strip() == f"```{tag}":
                inside, start, body = True, number, []
            elif inside and line.strip() == "```":
                found.append((f"{path.relative_to(REPO).as_posix()}:{start}", "\n".join(body) + "\n"))
                inside = False
            elif inside:
                body.append(line)
    return found


def reroot(text: str, root: Path) -> str:
    return _REROOT.sub(lambda m: f"{root}/{m.group(1)}/", text)


def _run(*args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LMCZ, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def _publish(feed_dir: Path, work: Path) -> Path:
    listing = work / "blocked.txt"
    listing.write_text("0104650000000010215abcdef\n04650000000027\n")
    assert _run("keygen", work / "feed.key").returncode == 0
    published = _run("publish", feed_dir, "--key", work / "feed.key", "--snapshot", listing)
    assert published.returncode == 0, published.stderr
    return work / "feed.pub"


def test_the_docs_have_the_snippets_this_test_runs():
    assert any("manifest.json" in text for _, text in blocks("nginx")), "docs/feed.md's nginx block"
    assert blocks("tinyproxy"), "docs/operations.md's tinyproxy block"


@pytest.mark.skipif(NGINX is None, reason=MISSING)
@pytest.mark.parametrize("where,snippet", blocks("nginx"))
def test_nginx_snippet_serves_the_feed_as_printed(tmp_path, where, snippet):
    root = tmp_path / "root"
    served = re.search(r"alias\s+(/\S+?)/?;", snippet)
    assert served, f"{where}: the snippet serves no directory"
    feed_dir = Path(reroot(served.group(1), root))
    feed_dir.mkdir(parents=True)
    public_key = _publish(feed_dir, tmp_path)
    prefix = re.search(r"location\s+(/\S*/)\s*\{", snippet).group(1)
    work = Path(tempfile.mkdtemp(prefix="lmcz-doc-nginx-"))
    (work / "default-root").mkdir()
    conf = work / "nginx.conf"
    body = "\n".join("        " + line for line in reroot(snippet, root).splitlines())

    def launch(port: int) -> subprocess.Popen:
        conf.write_text(nginx_main(work, port, f"        root {work}/default-root;\n{body}"))
        return subprocess.Popen(nginx_command(NGINX, work, conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = start_on_free_port(launch)
    try:
        assert started is not None, (work / "error.log").read_text(errors="replace")
        port, proc = started
        base = f"http://127.0.0.1:{port}{prefix}"
        with urllib.request.urlopen(base + "manifest.json", timeout=10) as response:
            assert response.status == 200 and response.headers.get("Cache-Control") == "no-cache", where
        snapshot = next(p.name for p in feed_dir.iterdir() if p.name.startswith("snapshot-"))
        with urllib.request.urlopen(base + snapshot, timeout=10) as response:
            assert response.status == 200 and response.headers.get("Cache-Control") is None
        synced = _run("sync", tmp_path / "store.db", "--feed", base, "--public-key", public_key)
        assert synced.returncode == 0, synced.stderr
    finally:
        if started is not None:
            stop_process(started[1])
        shutil.rmtree(work, ignore_errors=True)


TINYPROXY = shutil.which("tinyproxy") or shutil.which("tinyproxy", path="/usr/bin:/usr/sbin:/usr/local/bin")


@pytest.mark.skipif(TINYPROXY is None, reason="tinyproxy is not installed (.ci/run installs Debian's tinyproxy)")
@pytest.mark.parametrize("where,snippet", blocks("tinyproxy"))
def test_tinyproxy_snippet_carries_a_sync_as_printed(tmp_path, where, snippet):
    import http.server
    import threading
    feed_dir = tmp_path / "feed"
    public_key = _publish(feed_dir, tmp_path)
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(feed_dir))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    auth = re.search(r"^BasicAuth\s+(\S+)\s+(\S+)", snippet, re.M)
    conf = tmp_path / "tinyproxy.conf"

    def launch(port: int) -> subprocess.Popen:
        text = re.sub(r"^Port\s+\d+", f"Port {port}", snippet, flags=re.M)
        text = re.sub(r"^Listen\s+\S+", "Listen 127.0.0.1", text, flags=re.M)
        conf.write_text(text + f'LogFile "{tmp_path}/tinyproxy.log"\nPidFile "{tmp_path}/tinyproxy.pid"\n')
        return subprocess.Popen([TINYPROXY, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    started = start_on_free_port(launch)
    try:
        assert started is not None, where
        port, proc = started
        feed = f"http://127.0.0.1:{server.server_address[1]}/"
        env_free = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        without = subprocess.run([LMCZ, "sync", str(tmp_path / "a.db"), "--feed", feed, "--public-key",
                                  str(public_key), "--proxy", f"http://127.0.0.1:{port}", "--attempts", "1"],
                                 capture_output=True, text=True, timeout=120, env=env_free)
        if auth:
            assert without.returncode == 5 and "407" in without.stderr, without.stderr
        credentials = tmp_path / "proxy.auth"
        credentials.write_text(f"{auth.group(1)}:{auth.group(2)}\n" if auth else "x:y\n")
        synced = subprocess.run([LMCZ, "sync", str(tmp_path / "b.db"), "--feed", feed, "--public-key",
                                 str(public_key), "--proxy", f"http://127.0.0.1:{port}", "--proxy-auth-file",
                                 str(credentials)], capture_output=True, text=True, timeout=120, env=env_free)
        assert synced.returncode == 0, synced.stderr
        assert "GET" in (tmp_path / "tinyproxy.log").read_text(errors="replace")
    finally:
        if started is not None:
            stop_process(started[1])
        server.shutdown()
        server.server_close()


ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("where,snippet", [b for b in blocks("ini") if "[Service]" in b[1] or "[Timer]" in b[1]])
def test_unit_snippets_pass_systemd_analyze_verify(tmp_path, where, snippet):
    name = re.search(r"^# (\S+\.(?:service|timer))", snippet, re.M)
    assert name, f"{where}: a unit snippet starts with a comment naming its file"
    text = snippet.replace("/opt/lmcz-fast/bin/lmcz-fast", LMCZ)       # verify needs the program to exist
    path = tmp_path / name.group(1)
    path.write_text(text)
    result = subprocess.run([ANALYZE, "verify", str(path)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if path.name in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


def test_unit_snippets_are_what_lmcz_fast_systemd_writes():
    from lmcz_fast.units import UnitOptions, render
    rendered = render(UnitOptions(binary="/opt/lmcz-fast/bin/lmcz-fast"))
    units = [b for b in blocks("ini") if "[Service]" in b[1] or "[Timer]" in b[1]]
    assert units, "docs/operations.md shows the sold-export timer"
    for where, snippet in units:
        name = re.search(r"^# (\S+\.(?:service|timer))", snippet, re.M).group(1)
        assert rendered.get(name) == snippet, f"{where} differs from what `lmcz-fast systemd` writes for {name}"
