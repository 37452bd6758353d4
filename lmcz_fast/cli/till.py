"""`lmcz-fast check`: what a till does with a scan — online first, offline within the deadline — from a shell."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from urllib.parse import urlsplit

from ..store import Blocklist, StoreError
from .upstream import proxy_config, proxy_options

if TYPE_CHECKING:   # the checker and the True API client (httpx) load when `check` runs
    from ..checker import LocalModuleClient, TillVerdict

#: The True API's CDN (trueapi.CDN_URL) and a receipt's most codes (checker.MAX_RECEIPT_CODES) as `check --help`
#: shows them, stated here so that every other command starts without loading the HTTP client;
#: tests/test_cli_startup.py checks that they are the library's own.
CDN_URL = "https://cdn.crpt.ru"
MAX_RECEIPT_CODES = 128

EXIT_SELL = 0
EXIT_REFUSE = 1
EXIT_CANNOT_CHECK = 3
EXIT_SETUP = 4

def _scans(codes: tuple[str, ...]) -> Iterator[str]:
    """The scans as given: GS written as text (`<GS>`, `\\x1d`, ...) is the parser's to read, as on every surface."""
    for code in codes:
        if code == "-":
            for line in sys.stdin:
                line = line.rstrip("\r\n")
                if line:
                    yield line
        else:
            yield code


def _print(verdict: TillVerdict, lang: str) -> None:
    from ..checker import Decision

    colour = {Decision.SELL: "green", Decision.REFUSE: "red", Decision.CANNOT_CHECK: "yellow"}
    for code in verdict.codes:
        label = click.style(f"{code.decision.value.upper():12}", fg=colour[code.decision], bold=True)
        mode = code.mode.value if code.mode else "-"
        click.echo(f"{label} {mode:7} {code.cis or code.raw[:31]:33} {code.message(lang)}")
        if code.tag_1265:
            click.echo(f"{'':21} tag 1265: {code.tag_1265}")
    summary = f"{verdict.decision.value} ({verdict.mode.value if verdict.mode else 'not checked'}) in " \
              f"{verdict.elapsed * 1000:.1f} ms, deadline {verdict.deadline:g} s"
    if verdict.online_error:
        summary += f"; online: {verdict.online_error}"
    if verdict.offline_error:
        summary += f"; offline: {verdict.offline_error}"
    click.echo(summary, err=True)


class _SetupErrorsExit4(click.Command):
    """`check` promises exit 4 for a setup error (a missing database, nothing to check against, conflicting or
    unknown options): a till's script reads 2 as nothing in particular, so click's usage errors exit 4 here too."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.exit_code = EXIT_SETUP
            raise

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            exc.exit_code = EXIT_SETUP
            raise


@click.command(cls=_SetupErrorsExit4)
@click.argument("codes", nargs=-1, required=True)
@click.option("--db", type=click.Path(file_okay=False, exists=True), default=None,
              help="Offline check against this lmcz-fast database, in-process.")
@click.option("--lm", "lm_url", metavar="URL", default=None, envvar="LMCZ_FAST_LM",
              help="Offline check through a Local Module over HTTP (the official one or `lmcz-fast serve`), "
                   "e.g. http://127.0.0.1:5995; its user and password come from --lm-auth-file (a password in the "
                   "URL is refused: any user of the machine sees command lines in `ps`).")
@click.option("--lm-auth-file", metavar="FILE", default=None, envvar="LMCZ_FAST_LM_AUTH_FILE",
              help="File whose first line is the Local Module's user:password [default: admin:admin, the "
                   "official guide's]. Env: LMCZ_FAST_LM_AUTH_FILE.")
@click.option("--api-key", envvar="LMCZ_TRUE_API_KEY", default=None,
              help="True API key (X-API-KEY) for the online check. Without it the check is offline only. "
                   "[env: LMCZ_TRUE_API_KEY]")
@click.option("--cdn", default=CDN_URL, show_default=True, help="CDN to discover True API hosts from.")
@click.option("--host", "hosts", multiple=True, metavar="URL",
              help="True API host to ask (repeatable); skips CDN discovery.")
@click.option("--fiscal-drive", default=None, metavar="NUMBER",
              help="Fiscal drive number, sent as fiscalDriveNumber online and X-ClientId to the Local Module.")
@click.option("--deadline", type=click.FloatRange(min=0.01), default=1.5, show_default=True,
              help="Seconds to wait for the online answer before deciding offline (hard).")
@click.option("--price", "prices", multiple=True, type=click.IntRange(min=0), metavar="KOPECKS",
              help="The sale price of each code, in order (repeat once per code): checked against the price in "
                   "the code (mrp) and the minimum price (smp).")
@click.option("--pg", "pgs", multiple=True, type=click.IntRange(1, 0xFFFF), metavar="ID",
              help="The product group of each code (repeat once per code, or once for all), e.g. 3 for tobacco; "
                   "a 29-character tobacco pack needs none.")
@click.option("--each", is_flag=True,
              help=f"Check every code on its own instead of as one receipt (a receipt takes at most "
                   f"{MAX_RECEIPT_CODES} codes).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON (messages in Russian and English).")
@click.option("--lang", type=click.Choice(["ru", "en"]), default="ru", show_default=True,
              help="Language of the cashier messages.")
@proxy_options
@click.option("-v", "--verbose", is_flag=True, help="Log host discovery, set-aside hosts and late answers.")
def check(codes: tuple[str, ...], db: str | None, lm_url: str | None, lm_auth_file: str | None, api_key: str | None, cdn: str,
          hosts: tuple[str, ...], fiscal_drive: str | None, deadline: float, prices: tuple[int, ...],
          pgs: tuple[int, ...], each: bool, as_json: bool, lang: str, proxy_url: str | None,
          proxy_auth_file: str | None, verbose: bool) -> None:
    """Check marking codes as a till does: online (True API) first; if no answer within --deadline, offline.

    \b
    CODES are scans as the scanner gives them; GS may be written as <GS>, {GS}, [GS], \\x1d or \\u001d (the parser
    reads them as every surface does, docs/codes.md); '-' reads one scan per line from stdin. By default all CODES
    are one receipt (one online request, at most 128 codes).

    \b
    Decisions: sell, refuse (with the reason for the cashier), cannot_check (neither side could answer).
    Exit status: 0 all sell, 1 something refused, 3 something could not be checked, 4 setup error (no
    database, nothing to check against, a wrong option).

    \b
    Examples:
      lmcz-fast check --db store.db "0104601234567893215Mvb<GS>93Abcd"
      lmcz-fast check --db store.db '04600439931256aB3!x_-ACW.Ck12' --price 14630    # a pack at 146.30
      LMCZ_TRUE_API_KEY=... lmcz-fast check --lm http://127.0.0.1:5995 --lm-auth-file /etc/lmcz-fast/lm.auth \\
          --fiscal-drive 7281440500000001 -
      LMCZ_TRUE_API_KEY=... lmcz-fast check --db store.db --proxy http://proxy.shop.local:3128 \\
          --proxy-auth-file /etc/lmcz-fast/proxy.auth "0104601234567893215Mvb<GS>93Abcd"
    The proxy carries the online check only; the Local Module (--lm) is asked directly.
    """
    from ..checker import Checker, Decision, PriceError, ReceiptTooLarge
    from ..trueapi import TrueApiClient

    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    if db and lm_url:
        raise click.UsageError("give either --db or --lm for the offline side, not both")
    if not (db or lm_url or api_key):
        raise click.UsageError("nothing to check against: give --api-key (online), --db or --lm (offline)")
    proxy = proxy_config(proxy_url, proxy_auth_file)
    online = None
    if api_key:
        online = TrueApiClient(api_key, cdn_url=cdn, hosts=list(hosts) or None, fiscal_drive_number=fiscal_drive,
                               proxy=proxy)
    offline: Blocklist | LocalModuleClient | None = None
    if lm_url:
        offline = _local_module(lm_url, lm_auth_file, fiscal_drive)
    elif lm_auth_file:
        raise click.UsageError("--lm-auth-file goes with --lm")
    if db:
        try:
            offline = Blocklist.open(db)
        except StoreError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(EXIT_SETUP)
    scans = list(_scans(codes))
    if not scans:
        raise click.UsageError("no codes given")
    if prices and len(prices) != len(scans):
        raise click.UsageError(f"give one --price per code: {len(scans)} codes, {len(prices)} prices")
    if pgs and len(pgs) not in (1, len(scans)):
        raise click.UsageError(f"give one --pg per code, or one for all: {len(scans)} codes, {len(pgs)} groups")
    price_of: list[int | None] = [*prices] if prices else [None] * len(scans)
    pg_of: list[int | None] = [*pgs] * (len(scans) if len(pgs) == 1 else 1) if pgs else [None] * len(scans)
    verdicts: list[TillVerdict] = []
    try:
        with Checker(online, offline, deadline=deadline, fiscal_drive_number=fiscal_drive) as checker:
            if each:
                verdicts = [checker.check(scan, price=price, pg=pg) for scan, price, pg in zip(scans, price_of, pg_of)]
            else:
                verdicts = [checker.check_receipt(scans, prices=price_of, pgs=pg_of)]
    except ReceiptTooLarge as exc:
        click.secho(f"error: {exc} (or use --each)", fg="red", err=True)
        sys.exit(EXIT_SETUP)
    except PriceError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_SETUP)
    finally:
        if isinstance(offline, Blocklist):
            offline.close()
    if as_json:
        payload = [v.to_dict() for v in verdicts]
        click.echo(json.dumps(payload if each else payload[0], ensure_ascii=False, indent=2))
    else:
        for verdict in verdicts:
            _print(verdict, lang)
    decisions = {v.decision for v in verdicts}
    sys.exit(EXIT_REFUSE if Decision.REFUSE in decisions else
             EXIT_CANNOT_CHECK if Decision.CANNOT_CHECK in decisions else EXIT_SELL)


def _local_module(url: str, auth_file: str | None, client_id: str | None) -> LocalModuleClient:
    """The Local Module client of --lm, with the credentials of --lm-auth-file; credentials in the URL refused."""
    from ..checker import LocalModuleClient

    try:
        parts = urlsplit(url)
        parts.port
    except ValueError:
        raise click.BadParameter(f"not a Local Module URL: {url!r}", param_hint="--lm") from None
    if parts.username is not None or parts.password is not None:
        raise click.BadParameter("credentials in the URL are refused (any user of the machine sees command lines "
                                 "in `ps`): put user:password in a file and give --lm-auth-file FILE",
                                 param_hint="--lm")
    user = password = None
    if auth_file is not None:
        try:
            with open(auth_file, encoding="utf-8") as fh:
                line = fh.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(f"cannot read {auth_file}: {getattr(exc, 'strerror', None) or exc}",
                                     param_hint="--lm-auth-file") from None
        user, sep, password = line.partition(":")
        if not sep or not user:
            raise click.BadParameter(f"the first line of {auth_file} must be user:password",
                                     param_hint="--lm-auth-file")
    try:
        return LocalModuleClient(url, user=user, password=password, client_id=client_id)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--lm") from None


def register(group: click.Group) -> None:
    group.add_command(check)
