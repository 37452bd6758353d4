"""The status page (`GET /` on serve): what a person in the store reads, checked over HTTP and in a real browser.

The browser test starts the real server and Debian's headless Chromium (`.ci/run` installs it when it can), loads
the page as a person would (credentials in the URL, JavaScript irrelevant: the page has none), reads the DOM that
Chromium built, and saves a screenshot per database state under `test-artefacts/` at the repository root. A stale
and an expired database must look different from a ready one: the banner's colour is read off the screenshot.
"""

from __future__ import annotations

import html.parser
import os
import random
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from _service_support import PASSWORD, USER, ServerThread, auth_header, make_db, make_identity, make_scan

from lmcz_fast.service import LocalModule, ServiceConfig
from lmcz_fast.service.page import MAX_REFUSALS, Activity
from lmcz_fast.store import Blocklist

HOUR = 3600.0


class _Dom(html.parser.HTMLParser):
    """Elements by id (their text) and the attributes of <body>, from the page's HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.body: dict[str, str] = {}
        self.classes: dict[str, str] = {}
        self.tags: list[tuple[str, dict[str, str]]] = []
        self._open: list[tuple[str | None, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attributes))
        if tag == "body":
            self.body = attributes
        if tag in ("meta", "br", "img", "link", "input"):
            return
        ident = attributes.get("id")
        if ident:
            self.classes[ident] = attributes.get("class", "")
        self._open.append((ident, []))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("meta", "br", "img", "link", "input") or not self._open:
            return
        ident, parts = self._open.pop()
        text = "".join(parts)
        if ident:
            self.by_id[ident] = " ".join(text.split())
        if self._open:
            self._open[-1][1].append(text)

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1][1].append(data)


def dom_of(text: str) -> _Dom:
    parser = _Dom()
    parser.feed(text)
    return parser


def _blocked_db(tmp_path: Path, name: str, synced_ago: float | None, load: bool = True) -> tuple[Path, list[str]]:
    rng = random.Random(name)
    blocked = [make_identity(rng) for _ in range(40)]
    return make_db(tmp_path / name, blocked, synced_ago=synced_ago, load=load), blocked


# -- over HTTP ---------------------------------------------------------------------------------------------------


def test_page_needs_the_api_credentials_and_speaks_russian_and_english(tmp_path):
    db, _ = _blocked_db(tmp_path, "db", 60.0)
    with ServerThread(db) as server:
        client = server.client()
        status, _, _ = client.request("GET", "/", auth=False)
        assert status == 401
        status, headers, ru = client.request("GET", "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert "Кассы могут продавать" in ru and '<html lang="ru">' in ru
        status, _, en = client.request("GET", "/?lang=en")
        assert "Tills can sell" in en and '<html lang="en">' in en
        # Self-contained: no script, nothing loaded from anywhere, refreshes by itself.
        for page in (ru, en):
            assert "<script" not in page.lower()
            assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
            assert "url(" not in page and "@import" not in page
            assert '<meta http-equiv="refresh"' in page


def test_page_shows_tills_refusals_and_figures(tmp_path):
    db, blocked = _blocked_db(tmp_path, "db", 60.0)
    rng = random.Random(7)
    free = make_identity(rng)
    with ServerThread(db) as server:
        client = server.client()
        for _ in range(3):
            client.check([make_scan(blocked[0], rng), free], headers={"X-ClientId": "0000000000012345"})
        client.check([free])                                   # no X-ClientId: named by address
        client.check(["not a code"], headers={"X-ClientId": "0000000000012345"})
        status, _, page = client.request("GET", "/?lang=en")
    assert status == 200
    dom = dom_of(page)
    assert dom.body["data-state"] == "ready"
    assert dom.by_id["db-version"] == "1"
    assert dom.by_id["count-blocked_codes"] == "40"
    tills = dom.by_id["tills"]
    assert "0000000000012345" in tills and "127.0.0.1" in tills
    # 4 requests and 7 codes from the named till; the request without X-ClientId (an operator's curl?) is listed
    # apart, as another client, not as a till.
    rows = re.findall(r'<tr class="till"><td>([^<]*)</td><td>[^<]*</td><td>(\d+)</td><td>(\d+)</td>', page)
    assert rows == [("0000000000012345", "4", "7")]
    others = re.findall(r'<tr class="other"><td>([^<]*)</td><td>[^<]*</td><td>(\d+)</td><td>(\d+)</td>', page)
    assert others == [("127.0.0.1", "1", "1")] and "not tills?" in tills
    refusals = dom.by_id["refusals"]
    assert blocked[0] in refusals and "blocked" in refusals
    assert "not a code" in refusals and "invalid code" in refusals


def test_page_escapes_what_tills_send(tmp_path):
    db, _ = _blocked_db(tmp_path, "db", 60.0)
    with ServerThread(db) as server:
        client = server.client()
        client.check(["<script>alert(1)</script>"], headers={"X-ClientId": "<b>till</b>"})
        _, _, page = client.request("GET", "/")
    assert "<script>alert(1)</script>" not in page and "<b>till</b>" not in page
    assert "&lt;script&gt;" in page and "&lt;b&gt;till&lt;/b&gt;" in page


def test_page_warns_about_the_default_password_on_the_network(tmp_path):
    db, _ = _blocked_db(tmp_path, "db", 60.0)
    auth = auth_header("admin", "admin").encode()
    with Blocklist.open(db) as bl:
        for host, warned in (("0.0.0.0", True), ("192.0.2.10", True), ("127.0.0.1", False), ("::1", False)):
            app = LocalModule(bl, ServiceConfig(host=host, user="admin", password="admin"))
            response = app.handle(b"GET", b"/", b"lang=en", b"", auth, None, None)
            assert response.status == 200
            assert ("admin:admin" in response.body.decode()) == warned, host
            assert bool(app.warnings()) == warned, host


def test_activity_is_bounded_and_counts_the_rate():
    now = [1000.0]
    activity = Activity(lambda: now[0])
    for i in range(MAX_REFUSALS + 5):
        activity.refused(f"code{i}", "blocked")
    assert len(activity.refusals) == MAX_REFUSALS and activity.refusals[-1].code == f"code{MAX_REFUSALS + 4}"
    for second in range(30):
        now[0] = 1000.0 + second
        for _ in range(6):
            activity.request("till", None)
    now[0] = 1030.0
    assert activity.rate() == pytest.approx(30 * 6 / 60)
    now[0] = 1100.0                               # a minute and more of silence
    assert activity.rate() == 0.0
    assert activity.tills["id:till"].requests == 180


# -- in a real browser --------------------------------------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = _chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs "
                                                             "Debian's chromium when it runs as root)")


def _browser(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def _png_pixel(path: Path, x: int, y: int) -> tuple[int, int, int]:
    """The RGB of one pixel of an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    assert header is not None
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    channels = 3 if colour == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    previous = bytearray(stride)
    for row in range(y + 1):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                predictor = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                line[i] = (line[i] + predictor) & 0xFF
        previous = line
    return tuple(previous[x * channels:x * channels + 3])  # type: ignore[return-value]


def _artefacts(request: pytest.FixtureRequest) -> Path:
    folder = Path(os.environ.get("LMCZ_TEST_ARTEFACTS") or request.config.rootpath / "test-artefacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


STATES = {
    # state: (last sync how long ago, load a list?, banner colour in the page's CSS)
    "ready": (60.0, True, (0x1E, 0x7B, 0x34)),
    "stale": (3 * HOUR, True, (0xB3, 0x6B, 0x00)),
    "expired": (80 * HOUR, True, (0xB3, 0x14, 0x1D)),
    "empty": (None, False, (0x5B, 0x2A, 0x86)),
}


@needs_chromium
def test_page_in_chromium_tells_ready_stale_expired_and_empty_apart(tmp_path, request):
    artefacts = _artefacts(request)
    colours = {}
    for state, (synced_ago, load, colour) in STATES.items():
        db, blocked = _blocked_db(tmp_path, state, synced_ago, load)
        with ServerThread(db) as server:
            rng = random.Random(state)
            server.client().check([make_scan(blocked[0], rng)], headers={"X-ClientId": "till-7"})
            url = f"http://{USER}:{PASSWORD}@127.0.0.1:{server.port}/?lang=en"
            dumped = _browser(["--dump-dom", url], tmp_path / f"profile-{state}")
            assert dumped.returncode == 0, dumped.stderr[-2000:]
            shot = artefacts / f"status-page-{state}.png"
            taken = _browser(["--window-size=1000,900", f"--screenshot={shot}", url],
                             tmp_path / f"profile-{state}-shot")
            assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
        dom = dom_of(dumped.stdout)
        assert dom.body["data-state"] == state, state
        assert "till-7" in dom.by_id["tills"]
        assert dom.classes["state"] == f"banner state-{state}"
        if load:
            assert dom.by_id["db-version"] == "1" and dom.by_id["count-blocked_codes"] == "40"
            assert dom.by_id["source"] == "https://feed.example/lm"
            expires = dom.by_id["expires"]
            assert ("will be refused from" in expires) == (state in ("ready", "stale")), expires
            assert ("refused since" in expires) == (state == "expired"), expires
        else:
            assert dom.by_id["db-version"] == "0" and "never been loaded" in dom.by_id["expires"]
        if state == "ready":
            assert blocked[0] in dom.by_id["refusals"]
        else:                                          # stale still serves; expired and empty refuse
            refusals = dom.by_id["refusals"]
            assert ("blocked" in refusals) == (state == "stale"), refusals
        # The banner, 30 px in from the top left of the page, in the state's own colour.
        pixel = _png_pixel(shot, 40, 30)
        assert all(abs(a - b) <= 6 for a, b in zip(pixel, colour)), (state, pixel, colour)
        colours[state] = pixel
    assert len(set(colours.values())) == len(STATES), colours


def test_page_for_staff_separators_counts_reasons_in_russian_and_failing_tills(tmp_path):
    rng = random.Random(22)
    blocked = [make_identity(rng) for _ in range(1500)]
    db = make_db(tmp_path / "big.db", blocked)
    prices = tmp_path / "prices.csv"
    prices.write_text("gtin,price\n04650000000010,10000\n04650000000027,20000\n")
    with Blocklist.open(db, readonly=False) as bl:
        bl.load_prices([str(prices)])
        bl.sold.record([make_identity(rng)])
        bl.mark_synced()
    with ServerThread(db) as server:
        client = server.client()
        client.check([make_scan(blocked[0], rng)], headers={"X-ClientId": "0000000000077777"})
        # a manager's browser: the first request carries no credentials and gets the 401 challenge
        status, _, _ = client.request("GET", "/", auth=False)
        assert status == 401
        # a till with the wrong password, twice
        wrong = {"Authorization": auth_header(USER, "not-the-password"), "X-ClientId": "0000000000099999"}
        for _ in range(2):
            status, _, _ = client.request("GET", "/api/v1/status", headers=wrong, auth=False)
            assert status == 401
        _, _, metrics = client.request("GET", "/metrics")
        _, _, ru = client.request("GET", "/")
        _, _, en = client.request("GET", "/?lang=en")
    assert "lmcz_auth_failures_total 2" in metrics           # the challenge is not a failed login
    assert 'lmcz_auth_failures_by_till_total{till="0000000000099999",by="client-id"} 2' in metrics
    ru_dom, en_dom = dom_of(ru), dom_of(en)
    assert 'id="count-blocked_codes">1\u202f500<' in ru and en_dom.by_id["count-blocked_codes"] == "1,500"
    assert en_dom.by_id["count-min_prices"] == "2" and en_dom.by_id["count-sold"] == "1"
    assert en_dom.by_id["count-grey_gtins"] == "0"
    assert "заблокирован" in ru_dom.by_id["refusals"] and "blocked" not in ru_dom.by_id["refusals"]
    failing = re.findall(r'<tr class="failing"><td>([^<]*)</td><td>(\d+)</td>', ru)
    assert failing == [("0000000000099999", "2")]
    assert "127.0.0.1" not in ru_dom.by_id["failing"]         # the browser's challenge is not listed


def test_stale_and_expired_pages_say_why_and_what_to_do(tmp_path):
    db, _ = _blocked_db(tmp_path, "db", 3 * 3600.0)
    with ServerThread(db) as server:
        client = server.client()
        _, _, en = client.request("GET", "/?lang=en")
        assert "sync service is probably not running" in dom_of(en).by_id["why-text"]
        assert "systemctl status lmcz-fast-sync" in dom_of(en).by_id["todo"]
        with Blocklist.open(db, readonly=False) as bl:
            bl.set_meta(sync_last_error="FeedUnavailable: https://feed.example/manifest.json: HTTP 503",
                        sync_last_error_at=1796730715.0)
        __import__("time").sleep(0.3)                       # the server's reader sees the new version
        _, _, ru = client.request("GET", "/")
        why = dom_of(ru).by_id["why-text"]
        assert "Последняя синхронизация не удалась" in why and "HTTP 503" in why
        set_to_expired = 4 * 86400.0
        with Blocklist.open(db, readonly=False) as bl:
            bl.mark_synced(at=__import__("time").time() - set_to_expired)
        __import__("time").sleep(0.3)
        _, _, ru = client.request("GET", "/")
        assert "Срочно восстановите синхронизацию" in dom_of(ru).by_id["todo"]


def test_sync_records_the_failed_rounds_error_for_the_page(tmp_path):
    db, _ = _blocked_db(tmp_path, "db", 60.0)
    from lmcz_fast.cli.feed import _record_round
    with Blocklist.open(db, readonly=False) as bl:
        _record_round(bl, "FeedUnavailable: no answer")
        assert bl.get_meta("sync_last_error") == "FeedUnavailable: no answer" and bl.get_meta("sync_last_error_at")
        _record_round(bl, None)
        assert bl.get_meta("sync_last_error") is None


def test_page_login_and_timezone_of_serve(tmp_path):
    import base64
    import shutil as _shutil
    import sys
    import urllib.error
    import urllib.request
    from _daemon_support import start_on_free_port, stop_process
    lmcz = _shutil.which("lmcz-fast", path=os.path.dirname(sys.executable)) or _shutil.which("lmcz-fast")
    db, _ = _blocked_db(tmp_path, "db", 60.0)
    (tmp_path / "page.pw").write_text("manager-secret\n")
    log = tmp_path / "serve.log"

    def launch(port: int) -> subprocess.Popen:
        return subprocess.Popen([lmcz, "serve", str(db), "--port", str(port), "--no-audit", "--page-password-file",
                                 str(tmp_path / "page.pw"), "--timezone", "Asia/Yekaterinburg"],
                                stdout=subprocess.DEVNULL, stderr=log.open("ab"))
    started = start_on_free_port(launch, timeout=30)
    assert started is not None, log.read_text()
    port, proc = started

    def get(path: str, user: str, password: str) -> tuple[int, str]:
        header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": header})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
    try:
        status, page = get("/?lang=en", "page", "manager-secret")
        assert status == 200 and "Tills can sell" in page
        assert "+05" in dom_of(page).by_id["last-sync"]              # Yekaterinburg time, not UTC
        assert get("/api/v1/status", "page", "manager-secret")[0] == 401   # the page login opens the page only
        assert get("/api/v1/status", "admin", "admin")[0] == 200
    finally:
        stop_process(proc)
    bad = subprocess.run([lmcz, "serve", str(db), "--timezone", "Mars/Olympus"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "unknown time zone" in bad.stderr
