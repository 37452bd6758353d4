# cython: language_level=3, autotestdict=False, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled marking-code parser: any scan a till can produce -> the code identity (CIS) blocklists hold.

One C core (`_parse`, nogil, no Python objects) turns the UTF-8 bytes of a scan into positions inside a
normalised ASCII buffer. `cut_identity` (C, for the probe and the store's bulk paths), `identity_of` and
`parse_code` all call it, so they can never disagree. The rules, including every choice made where the public
CRPT/GS1 rules are silent, are in docs/codes.md; the short version:

* Accepted forms: a GS1 element string (`01` GTIN-14 with a verified check digit, `21` serial of 1..20 characters
  of GS1's 82-character set, then AIs such as `91`/`92`, `93`, `8005`, `17`, `10`, `3103`, `7003`); a tobacco pack's
  29 characters (GTIN + 7-character serial + 4-character price + 4-character check, no AIs); the 21-character
  tobacco CIS (GTIN + serial) CRPT prints for such packs.
* Repairs, each named in `MarkingCode.repaired`: symbology identifiers (`]d2`, `]C1`, `]Q3`, `]e0`, any `]`
  + letter + digit), leading GS standing for FNC1, trailing CR/LF (and other surrounding whitespace), a trailing GS,
  GS written as text (`\\u001d`, `\\x1d`, `{GS}`, `[GS]`, U+241D, and `<GS>`, `%1D`), text typed by a
  keyboard-wedge scanner under the Russian ЙЦУКЕН layout, a scan a till sent Base64-encoded, and GS lost by a
  keyboard wedge where the tail's structure fixes the serial's length (`cis=True` reads blocklist lines, whose
  GS-less text after AI 21 is all serial); a GS-less scan a client also cut short is refused, or with
  `readings_of(tail_cut=True)` read as every identity it can be (docs/codes.md, "A lost GS and a cut").
* A scan may have several readings (`readings_of`, `cut_readings`): `<GS>` and `%1D` are made of code characters, so
  each may be a GS or the serial's own text, and a lost GS recovered also leaves the bare CIS. Checks look up every
  reading: a code blocked under any reading is blocked.
* Refusals raise `CodeError` with a stable `.reason` (see `REASONS`) and `.position` (index of the offending
  character in the input as code points, or None).
"""

from libc.string cimport memcmp, memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_GET_LENGTH
from cpython.exc cimport PyErr_Clear

cdef extern from "Python.h":
    const char* _as_utf8 "PyUnicode_AsUTF8AndSize"(object s, Py_ssize_t* size)


# One compilation unit (the parse loops inline across parts): its parts, one job each, are included from _codes/.
include "_codes/constants.pxi"
include "_codes/tables.pxi"
include "_codes/state.pxi"
include "_codes/elements.pxi"
include "_codes/lost_gs.pxi"
include "_codes/forms.pxi"
include "_codes/repairs.pxi"
include "_codes/core.pxi"
include "_codes/readings.pxi"
include "_codes/c_api.pxi"

# ---------------------------------------------------------------------------------------------- Python API

include "_codes/errors.pxi"
include "_codes/input.pxi"
include "_codes/marking_code.pxi"
include "_codes/python_api.pxi"
