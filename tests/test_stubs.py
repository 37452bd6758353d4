"""The .pyi stubs of the compiled modules say what the modules really export (mypy.stubtest)."""

from __future__ import annotations

import os
import subprocess
import sys

import lmcz_fast

COMPILED = ("lmcz_fast._codes", "lmcz_fast._probe", "lmcz_fast._bulk", "lmcz_fast._answer")


def test_stubs_ship_with_the_package():
    folder = os.path.dirname(lmcz_fast.__file__)
    for module in COMPILED:
        assert os.path.exists(os.path.join(folder, module.split(".")[1] + ".pyi")), module
    assert os.path.exists(os.path.join(folder, "py.typed"))


def test_stubtest_agrees_with_the_compiled_modules(tmp_path):
    env = dict(os.environ, MYPYPATH="")
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "--ignore-missing-stub", *COMPILED],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
