"""`lmcz-fast` starts light: importing the CLI (what every command, `--version` and `--help` pay before anything
else) loads neither the HTTP client (httpx), nor the cryptography, nor the service, nor the till's checker; each
command loads what it needs when it runs. A till script runs `lmcz-fast lookup` often, and the suite starts
`lmcz-fast` hundreds of times: before this, every start paid ~0.5 s of CPU for modules most commands never use.

The CLI states a few library defaults itself, so that their options' help needs no heavy import; they are checked
here against the library's own."""

from __future__ import annotations

import json
import subprocess
import sys

#: What importing the CLI must not load (top-level packages, or modules of ours and everything under them).
HEAVY = ("httpx", "httpcore", "anyio", "cryptography", "lmcz_fast.service", "lmcz_fast.checker", "lmcz_fast.front",
         "lmcz_fast.trueapi", "lmcz_fast.upstream", "lmcz_fast.feed.syncing", "lmcz_fast.replicate.source")


def _loaded_after(statement: str) -> list[str]:
    """The heavy modules in `sys.modules` of a fresh interpreter after `statement`."""
    probe = (f"import json, sys\n{statement}\n"
             f"heavy = {HEAVY!r}\n"
             "print(json.dumps(sorted({h for h in heavy for m in sys.modules if m == h or m.startswith(h + '.')})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def test_importing_the_cli_loads_no_http_client_cryptography_or_service() -> None:
    assert _loaded_after("import lmcz_fast.cli") == []


def test_the_library_face_loads_no_http_client_or_cryptography() -> None:
    """A till daemon that only uses `Blocklist` does not pay for the feed, the service or the HTTP client."""
    assert _loaded_after("import lmcz_fast\nlmcz_fast.Blocklist") == []


def test_the_check_sees_a_heavy_import() -> None:
    """The probe can fail: a command's own imports (as `sync` makes them when it runs) are seen."""
    loaded = _loaded_after("import lmcz_fast.cli\nfrom lmcz_fast.feed import sync")
    assert {"httpx", "cryptography", "lmcz_fast.upstream", "lmcz_fast.feed.syncing"} <= set(loaded)
    assert "lmcz_fast.service" in _loaded_after("import lmcz_fast.cli\nfrom lmcz_fast import service")


def test_the_defaults_the_cli_states_are_the_librarys() -> None:
    from lmcz_fast import checker, front, service, trueapi
    from lmcz_fast.cli import front as cli_front
    from lmcz_fast.cli import serve as cli_serve
    from lmcz_fast.cli import till as cli_till

    for name in ("DEFAULT_HOST", "DEFAULT_PORT", "DEFAULT_USER", "DEFAULT_PASSWORD", "DEFAULT_MAX_BODY",
                 "DEFAULT_MAX_CODES", "DEFAULT_KEEPALIVE_TIMEOUT"):
        assert getattr(cli_serve, name) == getattr(service, name), name
    assert cli_front.DEFAULT_DEADLINE_MS == front.DEFAULT_DEADLINE_MS
    assert cli_till.CDN_URL == trueapi.CDN_URL
    assert cli_till.MAX_RECEIPT_CODES == checker.MAX_RECEIPT_CODES


def test_the_lazy_packages_answer_every_public_name() -> None:
    """feed/ and replicate/ load their files on first use (PEP 562): every name of `__all__` (and the ones the CLI
    reads) is still there, and an unknown one is an AttributeError."""
    import pytest

    from lmcz_fast import feed, replicate

    for package, extra in ((feed, ()), (replicate, ("DEFAULT_BATCH", "DEFAULT_SETTLE", "KINDS", "ProxyConfig",
                                                      "DbReport"))):
        for name in (*package.__all__, *extra):
            assert getattr(package, name) is not None, (package.__name__, name)
            assert name in dir(package)
        with pytest.raises(AttributeError):
            package.no_such_name  # noqa: B018
