"""`lmcz-fast monitoring`: where the shipped monitoring files are (alerting rules, Zabbix template, dashboard)."""

from __future__ import annotations

import json
from importlib import resources

import click

FILES = {
    "lmcz-fast.alerts.rules.yml": "Prometheus alerting rules (rule_files: in prometheus.yml)",
    "lmcz-fast.zabbix.template.yaml": "Zabbix template, export format 6.0 (Data collection > Templates > Import)",
    "lmcz-fast.grafana.dashboard.json": "Grafana dashboard over the Prometheus metrics (Dashboards > Import)",
}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print name -> path as JSON.")
@click.option("--show", type=click.Choice(sorted(FILES)), default=None, help="Print one file's content.")
def monitoring(as_json: bool, show: str | None) -> None:
    """Print where the monitoring files shipped with lmcz-fast are (or one file's content).

    \b
    They watch every store's `serve` (GET /metrics, GET /api/v1/status): stale, expired and empty stores, no
    successful sync for hours, failed logins by till, the sold-register queue and replication lag.
    Examples:
      lmcz-fast monitoring
      lmcz-fast monitoring --show lmcz-fast.alerts.rules.yml
    """
    folder = resources.files("lmcz_fast").joinpath("monitoring")
    if show is not None:
        click.echo(folder.joinpath(show).read_text(encoding="utf-8"), nl=False)
        return
    paths = {name: str(folder.joinpath(name)) for name in FILES}
    if as_json:
        click.echo(json.dumps(paths, indent=1))
        return
    for name, what in FILES.items():
        click.echo(f"{paths[name]}\n    {what}")


def register(group: click.Group) -> None:
    group.add_command(monitoring)
