"""Build the compiled core. Everything else about the package lives in pyproject.toml.

Set LMCZ_FAST_DEBUG=1 to compile with bounds and wraparound checks back on (and without optimisation),
for chasing a crash in the native code.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("LMCZ_FAST_DEBUG", "") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}

# Loop heads aligned to 32 bytes: the parser's byte loops then run at the same speed whatever unrelated code moves
# around them (measured: up to 15 % between two builds of the same loops without it).
compile_args = ["-O0", "-g"] if DEBUG else ["-O3", "-falign-loops=32"]

extensions = [
    Extension(name, [f"{name.replace('.', '/')}.pyx"], extra_compile_args=compile_args)
    for name in ("lmcz_fast._codes", "lmcz_fast._probe", "lmcz_fast._bulk", "lmcz_fast._answer")
]

# The modules compile side by side (build_ext --parallel): a build under emulation (tests/test_arm64.py)
# spends minutes in the C compiler.
setup(ext_modules=cythonize(extensions, compiler_directives=directives),
      options={"build_ext": {"parallel": min(4, os.cpu_count() or 1)}})
