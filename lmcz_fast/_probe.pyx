# cython: language_level=3, embedsignature=True, auto_pickle=False, cdivision=True
"""Hashing and probing core: XXH3-64, a zero-copy reader of Roaring's portable format, and ``ProbeBase``.

Everything a till asks millions of times a day runs here without touching a Python object: the scan's UTF-8
bytes are cut to the canonical identity (``_codes.cut_identity``), hashed with XXH3-64 (seed 0, default secret,
implemented from the public xxHash specification), and the low 32 bits are probed in a Roaring bitmap that
lives in someone else's buffer (the LMDB memory map). Only a prefilter hit calls back into Python, to the
subclass's exact ``_confirm``.

Per process, attaching a prefilter builds one derived table (65536 entries of 16 bytes, 1 MiB): for each high
16-bit key, where its container is, its kind and size, and a 64-bit summary of which 1024-value ranges it
occupies. A probe is one load of that entry, which alone answers ~80 % of absent keys at 900k codes, and at
most one container search. The serialization itself is never copied.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.exc cimport PyErr_Clear
from cpython.array cimport array as c_array, clone as array_clone, resize as array_resize
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t, INT64_MAX, INT64_MIN
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy, memset

from lmcz_fast._codes cimport (IDENTITY_MAX, READINGS_MAX, CodeFacts, cut_check, cut_cis_identity, cut_identity,
                              cut_readings)

import array as _py_array

from lmcz_fast import _codes as _codes_mod

cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    bint PyUnicode_Check(object o)
    bint PyBytes_Check(object o)
    bint PyByteArray_Check(object o)
    bint PyList_CheckExact(object o)
    bint PyTuple_CheckExact(object o)
    Py_ssize_t PyList_GET_SIZE(object o)
    Py_ssize_t PyTuple_GET_SIZE(object o)
    PyObject* PyList_GET_ITEM(object o, Py_ssize_t i)
    PyObject* PyTuple_GET_ITEM(object o, Py_ssize_t i)
    const char* _utf8_or_null "PyUnicode_AsUTF8AndSize"(object o, Py_ssize_t* size)
    str PyUnicode_DecodeASCII(const char* s, Py_ssize_t size, const char* errors)
    void PyObject_GC_UnTrack(void* op)
    void PyObject_GC_Track(void* op)


# The module's parts, by job (lmcz_fast/_probe/, included here: the hot paths stay one compilation unit).
include "_probe/primitives.pxi"
include "_probe/xxh3.pxi"
include "_probe/roaring.pxi"
include "_probe/keys.pxi"
include "_probe/scans.pxi"
include "_probe/check_inputs.pxi"
include "_probe/verdicts.pxi"
include "_probe/attached.pxi"
include "_probe/probe.pxi"
include "_probe/batches.pxi"
include "_probe/tag_1265.pxi"
include "_probe/slot_maker.pxi"
include "_probe/till_scan.pxi"
