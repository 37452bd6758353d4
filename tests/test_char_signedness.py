"""The compiled core assumes nothing of plain `char`'s signedness (issue 25, docs/platforms.md).

`char` is signed on x86_64 and unsigned on aarch64 (and on ARM and PowerPC generally): a byte loop that reads
through a plain `char` and asks `c < 0` (meaning "not ASCII"), or indexes a table with it, gives one answer on one
and another on the other. The arm64 test (tests/test_arm64.py) finds such a thing only under emulation, slowly;
here the compiled modules are built natively with the other signedness (`-funsigned-char` on x86_64,
`-fsigned-char` on an ARM machine) and the tests of the compiled parts are run against that build. The same
sources must give the same answers: the parser's non-ASCII paths (Russian layout, Cyrillic, bytes >= 0x80), XXH3,
the Roaring reader, the probe, the bulk sort.

Marked slow and arm64: it is part of the platform step `.ci/run` runs after the suite (`pytest -m arm64`), and
like the arm64 test runs only with LMCZ_ARM64=1 (the default in `.ci/run`; LMCZ_ARM64=0 opts out). ~1-2 min:
`pip wheel` (native, -O3) and ~250 tests.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from _wheel_support import ROOT, build_env, step

# The tests of the compiled parts: they run against the other-signedness build.
COMPILED = (
    "tests/test_codes.py",          # the parser: every byte >= 0x80 path (Cyrillic layouts, Base64, UTF-8)
    "tests/test_xxh3.py",           # XXH3-64 against python-xxhash (inputs of every byte value)
    "tests/test_platform.py",       # reads at every alignment, both multiply paths
    "tests/test_roaring_view.py",   # the Roaring reader against pyroaring
    "tests/test_probe.py",          # keys, the stored index, batch scans
    "tests/test_bulk.py",           # the radix sort of keys (bytes >= 0x80 in keys), hashes against xxhash
)


def other_signedness() -> str:
    """The compiler flag that gives plain `char` the signedness this machine's ABI does not."""
    return "-funsigned-char" if platform.machine() in ("x86_64", "AMD64", "i386", "i686") else "-fsigned-char"


@pytest.mark.slow
@pytest.mark.arm64
def test_the_compiled_core_answers_the_same_with_char_of_the_other_signedness(tmp_path: Path) -> None:
    if os.environ.get("LMCZ_ARM64") != "1":
        pytest.skip("part of the platform step (`.ci/run` runs it after the suite); set LMCZ_ARM64=1")
    if not (ROOT / "setup.py").exists():
        pytest.skip("the source tree is not next to the tests (installed tests only)")
    flag = other_signedness()
    env = {**build_env(), "CFLAGS": f"{os.environ.get('CFLAGS', '')} {flag}".strip()}
    timings: dict[str, float] = {}
    built = step(timings, f"pip wheel ({flag})",
                 [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", str(ROOT), "-w", str(tmp_path / "dist")],
                 env, timeout=1800)
    # Every C compile of the build took the flag (setuptools puts CFLAGS on each compiler command line).
    log = built.stdout + built.stderr   # pip -v passes the build's output on stderr
    compiles = [line for line in log.splitlines() if " -c lmcz_fast/_" in line and ".c -o " in line]
    assert len(compiles) >= 3, log[-3000:]
    assert all(flag in line for line in compiles), [line for line in compiles if flag not in line]
    wheels = list((tmp_path / "dist").glob("lmcz_fast-*.whl"))
    assert len(wheels) == 1, wheels
    site = tmp_path / "site"
    zipfile.ZipFile(wheels[0]).extractall(site)

    # The tests import the package from the unpacked wheel (PYTHONPATH comes before the installed package).
    run_env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import lmcz_fast._codes as c, lmcz_fast._probe as p, "
                            "lmcz_fast._bulk as b; print(c.__file__, p.__file__, b.__file__)"],
                           capture_output=True, text=True, env=run_env, cwd=tmp_path, check=True).stdout.split()
    assert all(path.startswith(str(site)) for path in where), where
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly",
                          "-m", "not slow", *COMPILED],
                         capture_output=True, text=True, env=run_env, cwd=ROOT, timeout=1800)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    print(f"\n{flag} build: {summary}; " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    assert run.returncode == 0, f"the compiled core differs with {flag}:\n{run.stdout[-8000:]}\n{run.stderr[-2000:]}"
    assert str(site) in run.stdout, "the tests did not import the other-signedness build"   # pytest's header
    assert " passed" in summary and "failed" not in summary, run.stdout[-3000:]
