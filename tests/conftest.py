"""Shared test setup.

Tests import the installed package (pytest runs with --import-mode=importlib, so the repository root is not on
sys.path). Only this folder is added, so the `_*_support.py` helper modules can be imported by name.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Child Python processes started by tests (readers, servers, killed syncs) must import the installed package too,
# not the source tree that `python -c` would find in the current directory.
os.environ["PYTHONSAFEPATH"] = "1"

# Upstream requests honour the proxy environment variables (lmcz_fast.upstream). The tests talk to servers on
# loopback and must not be sent to whatever proxy the machine running them has configured; the proxy tests set
# the variables they need themselves (monkeypatch).
for _name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
              "NO_PROXY"):
    os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def manylinux_wheel(tmp_path_factory):
    """The manylinux wheel of this checkout, built once per session (tests/_wheel_support.py)."""
    from _wheel_support import build_manylinux_wheel

    return build_manylinux_wheel(tmp_path_factory.mktemp("wheel-build"))


if os.environ.get("LMCZ_EMULATED"):
    # Under qemu-user emulation (tests/test_arm64.py) a Python step runs ~10x slower: hypothesis's per-example
    # deadline and its too-slow health check would time the emulator, not the code. The examples are the same.
    from hypothesis import HealthCheck, settings

    settings.register_profile("emulated", deadline=None, suppress_health_check=[HealthCheck.too_slow],
                              max_examples=25)
    settings.load_profile("emulated")

    def pytest_collection_modifyitems(items):
        """Under emulation each hypothesis test runs a quarter of its own example count (at least 10): the full
        counts run natively, and the emulated run (tests/test_arm64.py) must fit CI's time."""
        for item in items:
            test = getattr(item, "obj", None)
            own = getattr(test, "_hypothesis_internal_use_settings", None)
            if own is not None and hasattr(test, "hypothesis"):
                test._hypothesis_internal_use_settings = settings(own, max_examples=max(10, own.max_examples // 4))
            case = getattr(item, "cls", None)
            own = getattr(case, "settings", None)
            if isinstance(own, settings) and not getattr(case, "_lmcz_emulated_examples", False):
                case.settings = settings(own, max_examples=max(10, own.max_examples // 4))
                case._lmcz_emulated_examples = True


def pytest_report_header(config):
    import lmcz_fast

    return f"lmcz_fast imported from {os.path.dirname(lmcz_fast.__file__)}"


@pytest.fixture(autouse=True)
def _cpu_priority_unchanged():
    """`sync`/`mirror` lower their process's CPU priority; a test running them in this process must pass
    `--nice 0`, or every later test and benchmark would run reniced."""
    before = os.nice(0)
    yield
    assert os.nice(0) == before, "a test lowered the test process's CPU priority (run sync/mirror with --nice 0)"
