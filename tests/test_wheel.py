"""A store server has no compiler: the project builds a manylinux wheel (`pip wheel` + `auditwheel repair`) that
installs into a fresh virtual environment with `--only-binary :all:` (no sdist of anything, no compiler: CC is
/bin/false) and runs `lmcz-fast demo`. Slow (a build and a venv with every dependency); `.ci/run` runs it.

The wheel is built once per session by the `manylinux_wheel` fixture (tests/_wheel_support.py; conftest.py), which
tests/test_fresh_server.py shares."""

from __future__ import annotations

import os
import sys

import pytest

from _wheel_support import build_env, step


@pytest.mark.slow
def test_manylinux_wheel_installs_without_a_compiler_and_runs_the_demo(tmp_path, manylinux_wheel):
    repaired = manylinux_wheel.path
    assert "manylinux" in manylinux_wheel.auditwheel_show
    env = build_env()
    timings: dict[str, float] = dict(manylinux_wheel.timings)

    venv = tmp_path / "venv"
    # A fresh venv without pip of its own (ensurepip costs ~15 s here): this pip installs into it with --python.
    step(timings, "venv", [sys.executable, "-m", "venv", "--without-pip", str(venv)], env)
    no_compiler = {**env, "CC": "/bin/false", "CXX": "/bin/false", "LDSHARED": "/bin/false"}
    no_compiler["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    step(timings, "pip install --only-binary", [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                                                "install", "-q", "--only-binary", ":all:", str(repaired)],
         no_compiler)
    where = step(timings, "import", [str(venv / "bin" / "python"), "-c",
                                     "import lmcz_fast._probe as p, lmcz_fast; print(p.__file__)"],
                 no_compiler, cwd=tmp_path)
    assert where.stdout.strip().startswith(str(venv)), where.stdout  # the wheel's compiled module, not the tree's
    demo = step(timings, "lmcz-fast demo", [str(venv / "bin" / "lmcz-fast"), "demo", "--codes", "100000",
                                            "--probes", "20000"], no_compiler, cwd=tmp_path)
    assert "all verdicts match the generator's truth" in demo.stdout
    units = step(timings, "lmcz-fast systemd", [str(venv / "bin" / "lmcz-fast"), "systemd", "--force"],
                 no_compiler)
    assert "ProtectSystem=strict" in units.stdout  # the unit templates are in the wheel (package data)
    print("\nwheel test steps: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
          + f"; total {sum(timings.values()):.1f} s; {repaired.name}")
