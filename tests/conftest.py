"""Shared test setup.

Tests import the installed package (pytest runs with --import-mode=importlib, so the repository root is not on
sys.path). Only this folder is added, so the `_*_support.py` helper modules can be imported by name.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Child Python processes started by tests (readers, servers, killed syncs) must import the installed package too,
# not the source tree that `python -c` would find in the current directory.
os.environ["PYTHONSAFEPATH"] = "1"


def pytest_report_header(config):
    import lmcz_fast

    return f"lmcz_fast imported from {os.path.dirname(lmcz_fast.__file__)}"
