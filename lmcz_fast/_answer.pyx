# cython: language_level=3
"""A check's whole answer in one compiled pass: verdicts in, the JSON body's bytes and the audit log's lines out.

The service's check answers (`/api/v1` and `/api/v2` `cis/check`, `cis/outCheck`) were built as a dict per code, an
envelope dict, then `json.JSONEncoder.encode` of the lot, and the audit record as a tuple per code formatted again
by the audit writer: ~3 us a code on protocol 1 and ~10 us on protocol 2 (a UUID, a tag 1265 and an envelope per
code). Here the same bytes are written straight into one buffer: the fields in the order the Python encoder wrote
them (`service/answers.py` keeps it, the reference the tests compare against), strings escaped exactly as
`json.JSONEncoder(ensure_ascii=True)` escapes them, integers as `int.__repr__`, floats as `float.__repr__`, and any
other value (a block's detail a source sent as a list, say) through that same encoder. The audit lines are written
in the same pass, as `audit._format` writes them (its JSON escaping is the same), and queued whole
(`AuditLog.record_lines`).

The codes come either as `Verdict` objects (`v1`, `v2`) or as the compiled verdicts of `_probe.CheckBatch`es
(`v1_batches`, `v2_batches`): a free code is then written from the batch's arrays, with no Python object made for
it. Of lmcz_fast only `_probe` is imported (its flags); the service hands in the rest (`Answers(unreadable_type,
...)`).
"""

from cpython cimport array as carray
from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE, _PyBytes_Resize
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.unicode cimport PyUnicode_Check, PyUnicode_DecodeASCII
from libc.math cimport fabs, isfinite, signbit
from libc.string cimport memcmp, memcpy, strcmp, strlen

import json

from . import _probe

#: The flags of a compiled verdict (`_probe.CheckBatch.flags`) and the strides of its byte fields.
cdef int F_BLOCKED = _probe.CHECK_BLOCKED
cdef int F_SOLD = _probe.CHECK_SOLD
cdef int F_GREY = _probe.CHECK_GREY
cdef int F_HAS_MRP = _probe.CHECK_HAS_MRP
cdef int F_HAS_SMP = _probe.CHECK_HAS_SMP
cdef int F_UNREADABLE = _probe.CHECK_UNREADABLE
cdef int F_EXACT = _probe.CHECK_EXACT
cdef Py_ssize_t CIS_STRIDE = _probe.CHECK_STRIDE
cdef Py_ssize_t GTIN_STRIDE = _probe.GTIN_STRIDE

cdef extern from "Python.h":
    int PyUnicode_IS_ASCII(object text)
    void* PyUnicode_DATA(object text)
    int PyUnicode_KIND(object text)
    Py_UCS4 PyUnicode_READ(int kind, void* data, Py_ssize_t index)
    Py_ssize_t PyUnicode_GET_LENGTH(object text)
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)

#: The encoder every answer was sent with (service/responses.py `encode_json`): what a value of another type than
#: str, int, float, bool or None goes through, so that it is written as before.
_FALLBACK = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode

cdef const char* HEX = b"0123456789abcdef"

include "_answer/buffer.pxi"
include "_answer/envelope.pxi"
include "_answer/answers.pxi"
include "_answer/entries.pxi"
include "_answer/batch.pxi"
include "_answer/ids.pxi"
include "_answer/body.pxi"


def json_text(value):
    """`value` as the service's JSON encoder writes it (a str, int, float, bool, None, or anything it encodes)."""
    cdef Buf b
    _init(&b)
    try:
        _value(&b, value)
        return _take_text(&b)
    finally:
        _free(&b)
