"""The monitoring shipped in the package, against the real programs: the Prometheus alerting rules (promtool's unit
tests, and Debian's prometheus scraping three real `serve`s, one made stale), the Zabbix template (its items and
triggers evaluated against real answers of healthy, stale, expired and empty stores) and the Grafana dashboard
(every query names a metric `serve` exports)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

import pytest

from _daemon_support import start_on_free_port, stop_process
from _service_support import make_db, set_synced_ago

yaml = pytest.importorskip("yaml", reason="pyyaml is in the test extras")

LMCZ = shutil.which("lmcz-fast", path=os.path.dirname(sys.executable)) or shutil.which("lmcz-fast")
MONITORING = resources.files("lmcz_fast").joinpath("monitoring")
RULES = Path(str(MONITORING.joinpath("lmcz-fast.alerts.rules.yml")))
RULE_TESTS = Path(__file__).parent / "monitoring" / "lmcz-fast.alerts.test.yml"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
BLOCKED = "0104650000000010215abcdef"


class Serve:
    """A real `lmcz-fast serve` of one store on a free loopback port."""

    def __init__(self, db: Path, log: Path):
        def launch(port: int) -> subprocess.Popen:
            return subprocess.Popen([LMCZ, "serve", str(db), "--port", str(port), "--no-audit"],
                                    stdout=subprocess.DEVNULL, stderr=log.open("ab"))
        started = start_on_free_port(launch, timeout=30)
        assert started is not None, log.read_text(errors="replace")
        self.port, self.proc = started
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path: str, auth: tuple[str, str] | None = ("admin", "admin")) -> tuple[int, bytes]:
        headers = {}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url + path, headers=headers),
                                        timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def stop(self) -> None:
        stop_process(self.proc)


def _stores(tmp_path: Path) -> dict[str, Path]:
    """A healthy, a stale (last sync 3 h ago), an expired (4 days) and an empty store."""
    stores = {name: make_db(tmp_path / f"{name}.db", [BLOCKED]) for name in ("healthy", "stale", "expired")}
    set_synced_ago(stores["stale"], 3 * 3600)
    set_synced_ago(stores["expired"], 4 * 86400)
    stores["empty"] = make_db(tmp_path / "empty.db", [], load=False)
    return stores


def _exported_metric_names(serve: Serve) -> set[str]:
    """The metric names a real serve exports: from a scrape (after one failed login, so the per-till family has a
    series), plus the replication family it adds for a replicated store (its renderer, with every field set)."""
    serve.get("/api/v1/status", auth=("admin", "wrong"))
    status, body = serve.get("/metrics")
    assert status == 200
    names = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{| )", body.decode(), re.M))
    from lmcz_fast.service.metrics import _replication_lines
    fields = {"localDocCount": 1, "serverDocCount": 1, "seqLag": 0, "unmapped": 0, "timeLag": 1}
    for line in _replication_lines({"databases": {"blocked_cis": fields}}):
        if not line.startswith("#"):
            names.add(line.split("{")[0])
    from lmcz_fast.front.crosscheck import CrossCheck           # `serve --front` adds the cross-check's
    names |= {line.split("{")[0].split(" ")[0] for line in CrossCheck(None).prometheus_lines()  # type: ignore[arg-type]
              if not line.startswith("#")}
    return names | {"up"}        # Prometheus's own series of every scrape target


def _names_in(expr: str) -> set[str]:
    functions = {"count", "sum", "max", "min", "rate", "increase", "histogram_quantile", "vector", "time", "by",
                 "and", "or", "unless", "on", "ignoring", "avg", "humanizeDuration", "label_values"}
    expr = re.sub(r'"[^"]*"', '""', expr)            # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)             # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)            # ranges
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {w for w in words if w not in functions and not re.fullmatch(r"(le|instance|job|state|outcome|till)", w)}


@pytest.fixture(scope="module")
def one_serve(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("monitoring-serve")
    serve = Serve(make_db(tmp / "store.db", [BLOCKED]), tmp / "serve.log")
    yield serve
    serve.stop()


def test_the_files_ship_in_the_package_and_the_cli_says_where():
    result = subprocess.run([LMCZ, "monitoring", "--json"], capture_output=True, text=True, timeout=60)
    paths = json.loads(result.stdout)
    assert set(paths) == {"lmcz-fast.alerts.rules.yml", "lmcz-fast.zabbix.template.yaml",
                          "lmcz-fast.grafana.dashboard.json"}
    assert all(Path(p).is_file() for p in paths.values())


def test_every_grafana_and_alert_query_names_a_metric_serve_exports(one_serve):
    exported = _exported_metric_names(one_serve)
    dashboard = json.loads(MONITORING.joinpath("lmcz-fast.grafana.dashboard.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    queries += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    rules = yaml.safe_load(RULES.read_text())
    queries += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert len(queries) > 20
    unknown = {(q, name) for q in queries for name in _names_in(q)
               if name not in exported and not name.startswith("lmcz_request_duration_seconds")}
    assert not unknown, unknown
    # the check can fail: a misspelt metric is caught
    assert _names_in('rate(lmcz_codes_chekced_total{job="x"}[5m])') - exported == {"lmcz_codes_chekced_total"}


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (.ci/run installs Debian's prometheus)")
def test_alerting_rules_pass_promtool_and_their_unit_tests():
    checked = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = RULE_TESTS.read_text().replace("../../lmcz_fast/monitoring/lmcz-fast.alerts.rules.yml", str(RULES))
    local = RULE_TESTS.with_name(".run.alerts.test.yml")
    try:
        local.write_text(text)
        tested = subprocess.run([PROMTOOL, "test", "rules", str(local)], capture_output=True, text=True, timeout=120)
    finally:
        local.unlink(missing_ok=True)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout + tested.stderr, tested.stdout + tested.stderr


# ------------------------------------------------------------------------------------------------ Zabbix


def _zabbix_value(item: dict, raws: dict[str, str]) -> object:
    """An item's value as Zabbix computes it for the preprocessing steps the template uses (JSONPath of one field,
    Prometheus pattern of an unlabelled series' value)."""
    value: object = raws[item["master_item"]["key"]]
    for step in item.get("preprocessing", []):
        kind, params = step["type"], step["parameters"]
        if kind == "JSONPATH":
            assert re.fullmatch(r"\$\.[A-Za-z_]+", params[0]), params[0]
            value = json.loads(str(value))[params[0][2:]]
        elif kind == "PROMETHEUS_PATTERN":
            assert params[1] == "value", params
            found = re.search(rf"^{re.escape(params[0])} (\S+)$", str(value), re.M)
            assert found, f"{params[0]} is not in /metrics"
            value = float(found.group(1))
        else:
            raise AssertionError(f"a preprocessing step this test does not evaluate: {kind}")
    return value


def _trigger_fires(expression: str, values: dict[str, object], macros: dict[str, str]) -> bool:
    found = re.fullmatch(r'last\(/lmcz-fast by HTTP/([a-z._]+)\)(=|<>|>|<)("[^"]*"|\{\$[A-Z.]+\}|-?[0-9.]+)',
                         expression)
    assert found, f"a trigger expression this test does not evaluate: {expression}"
    key, op, operand = found.groups()
    value = values[key]
    if operand.startswith("{$"):
        operand = macros[operand]
    target: object = operand.strip('"') if operand.startswith('"') else float(operand)
    if isinstance(target, float):
        value = float(value)  # type: ignore[arg-type]
    return {"=": value == target, "<>": value != target, ">": value > target, "<": value < target}[op]  # type: ignore[operator]


def test_zabbix_template_items_and_triggers_on_healthy_stale_expired_and_empty_stores(tmp_path):
    template = yaml.safe_load(MONITORING.joinpath("lmcz-fast.zabbix.template.yaml").read_text())
    assert template["zabbix_export"]["version"] == "6.0"
    (tmpl,) = template["zabbix_export"]["templates"]
    macros = {m["macro"]: m["value"] for m in tmpl["macros"]}
    items = tmpl["items"]
    masters = {i["key"]: i for i in items if i["type"] == "HTTP_AGENT"}
    fired: dict[str, set[str]] = {}
    serves = {name: Serve(db, tmp_path / f"{name}.log") for name, db in _stores(tmp_path).items()}
    try:
        for name, serve in serves.items():
            raws = {}
            for key, item in masters.items():
                url = item["url"].replace("{$LMCZ.URL}", serve.url)
                auth = None
                if item.get("authtype") == "BASIC":
                    auth = (macros[item["username"]], macros[item["password"]])
                status, body = serve.get(url[len(serve.url):], auth=auth)
                assert status == 200, (name, key, body[:200])
                raws[key] = body.decode()
            values = {i["key"]: _zabbix_value(i, raws) for i in items if i["type"] == "DEPENDENT"}
            assert values["lmcz.freshness"] == name.replace("healthy", "ready"), (name, values)
            fired[name] = {t["name"] for i in items for t in i.get("triggers", [])
                           if _trigger_fires(t["expression"], values, macros)}
    finally:
        for serve in serves.values():
            serve.stop()
    assert fired["healthy"] == set()
    assert fired["stale"] == {"lmcz-fast: blocklist STALE on {HOST.NAME}"}
    assert fired["expired"] == {"lmcz-fast: blocklist EXPIRED on {HOST.NAME}: offline checks refused (4050)",
                                "lmcz-fast: no successful sync on {HOST.NAME} for over {$LMCZ.SYNC.MAX.AGE} s"}
    assert fired["empty"] == {"lmcz-fast: no blocklist loaded on {HOST.NAME}: checks refused (4045)"}


# ------------------------------------------------------------------------------------------------ Prometheus


@pytest.mark.slow
@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed (.ci/run installs Debian's prometheus)")
def test_prometheus_scraping_three_stores_fires_stale_for_the_stale_one_only(tmp_path):
    """The shipped rules, with their `for:` waits cut to 0 s (the expressions as shipped), loaded by a real
    prometheus scraping three real serves every second; one store is made stale while it runs."""
    dbs = [make_db(tmp_path / f"shop-{n}.db", [BLOCKED]) for n in range(3)]
    serves = [Serve(db, tmp_path / f"shop-{n}.log") for n, db in enumerate(dbs)]
    rules = tmp_path / "rules.yml"
    rules.write_text(re.sub(r"^(\s+)for: \S+$", r"\1for: 0s", RULES.read_text(), flags=re.M))
    config = tmp_path / "prometheus.yml"
    targets = [f"127.0.0.1:{s.port}" for s in serves]
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "lmcz", "basic_auth": {"username": "admin", "password": "admin"},
                            "static_configs": [{"targets": targets}]}],
    }))
    log = tmp_path / "prometheus.log"

    def launch(port: int) -> subprocess.Popen:
        return subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                                stderr=log.open("ab"))
    started = None
    try:
        started = start_on_free_port(launch, timeout=60)
        assert started is not None, log.read_text(errors="replace")[-3000:]
        port = started[0]

        def alerts() -> list[dict]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=10) as response:
                return json.loads(response.read())["data"]["alerts"]

        def wait(condition, what: str, seconds: float = 60.0):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    got = condition()
                except (urllib.error.URLError, OSError):   # 503 while prometheus starts
                    got = None
                if got:
                    return got
                time.sleep(0.5)
            pytest.fail(f"{what} within {seconds} s; alerts: {alerts()}; log: {log.read_text()[-2000:]}")

        def healthy_scrapes() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?query=lmcz_db_state", timeout=10) as r:
                return len(json.loads(r.read())["data"]["result"]) == 3 * 4
        wait(healthy_scrapes, "all three stores scraped")
        assert not [a for a in alerts() if a["labels"]["alertname"] == "LmczStoreStale"]
        set_synced_ago(dbs[1], 3 * 3600)
        firing = wait(lambda: [a for a in alerts() if a["labels"]["alertname"] == "LmczStoreStale"
                               and a["state"] == "firing"], "LmczStoreStale firing")
        assert {a["labels"]["instance"] for a in firing} == {targets[1]}
        time.sleep(3)                                          # a few more evaluations: still only that one
        stale = {a["labels"]["instance"] for a in alerts() if a["labels"]["alertname"] == "LmczStoreStale"}
        assert stale == {targets[1]}
        assert not [a for a in alerts() if a["labels"]["alertname"] in ("LmczStoreExpired", "LmczStoreEmpty",
                                                                         "LmczStoreDown")]
    finally:
        if started is not None:
            stop_process(started[1])
        for serve in serves:
            serve.stop()
