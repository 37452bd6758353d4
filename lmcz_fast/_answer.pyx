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


cdef struct Buf:
    char* data
    Py_ssize_t size
    Py_ssize_t cap
    PyObject* obj       # the bytes object `data` is the buffer of (an answer's body), or NULL: PyMem memory


cdef inline void _init(Buf* b) noexcept:
    b.data = NULL
    b.size = b.cap = 0
    b.obj = NULL


cdef int _init_bytes(Buf* b, Py_ssize_t cap) except -1:
    """`b` written straight into a new bytes object of `cap` bytes (grown as needed, cut to size by `_take`): an
    answer's body is not copied once written (a protocol 2 answer of 128 codes is ~130 KB)."""
    cdef object obj = PyBytes_FromStringAndSize(NULL, cap)
    Py_INCREF(obj)
    b.obj = <PyObject*>obj
    b.data = PyBytes_AS_STRING(obj)
    b.size = 0
    b.cap = cap
    return 0


cdef void _free(Buf* b) noexcept:
    if b.obj != NULL:
        Py_XDECREF(b.obj)
        b.obj = NULL
    else:
        PyMem_Free(b.data)
    b.data = NULL


cdef int _grow(Buf* b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t want = b.size + extra
    cdef Py_ssize_t cap
    cdef char* data
    if want <= b.cap:
        return 0
    cap = b.cap * 2 if b.cap else 1024
    while cap < want:
        cap *= 2
    if b.obj != NULL:
        _PyBytes_Resize(&b.obj, cap)        # on failure it frees the object and sets it NULL
        b.data = PyBytes_AS_STRING(<object>b.obj)
        b.cap = cap
        return 0
    data = <char*>PyMem_Realloc(b.data, cap)
    if data == NULL:
        raise MemoryError()
    b.data = data
    b.cap = cap
    return 0


cdef inline int _raw(Buf* b, const char* text, Py_ssize_t n) except -1:
    if b.size + n > b.cap:
        _grow(b, n)
    memcpy(b.data + b.size, text, n)
    b.size += n
    return 0


cdef inline int _lit(Buf* b, const char* text) except -1:
    # strlen of a literal, inlined: the compiler folds it to a constant (a hand-written loop it did not)
    return _raw(b, text, strlen(text))


cdef int _bytes(Buf* b, bytes data) except -1:
    return _raw(b, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))


cdef int _ascii(Buf* b, str text) except -1:
    """An ASCII str as it is (what the fallback encoder or a repr returned)."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text)
    if not PyUnicode_IS_ASCII(text):
        raise ValueError("not ASCII")
    return _raw(b, <const char*>PyUnicode_DATA(text), n)


cdef inline int _digits_into(char* tmp, long long value) noexcept:
    """`value`'s decimal text at the end of `tmp` (24 bytes); returns where it starts."""
    cdef int at = 24
    cdef unsigned long long v
    cdef bint negative = value < 0
    v = <unsigned long long>(-(value + 1)) + 1 if negative else <unsigned long long>value
    while True:
        at -= 1
        tmp[at] = <char>(48 + v % 10)
        v //= 10
        if v == 0:
            break
    if negative:
        at -= 1
        tmp[at] = b'-'
    return at


cdef int _digits(Buf* b, long long value) except -1:
    cdef char tmp[24]
    cdef int at = _digits_into(tmp, value)
    return _raw(b, tmp + at, 24 - at)


cdef inline void _u4(char* out, unsigned int c) noexcept:
    out[0] = b'\\'
    out[1] = b'u'
    out[2] = HEX[(c >> 12) & 15]
    out[3] = HEX[(c >> 8) & 15]
    out[4] = HEX[(c >> 4) & 15]
    out[5] = HEX[c & 15]


cdef inline char* _escape_low(char* out, unsigned int c) noexcept:
    """A control character or DEL as `encode_basestring_ascii` escapes it (`\\n`, `\\u001d`...); returns the end."""
    out[0] = b'\\'
    if c == 8:
        out[1] = b'b'
    elif c == 12:
        out[1] = b'f'
    elif c == 10:
        out[1] = b'n'
    elif c == 13:
        out[1] = b'r'
    elif c == 9:
        out[1] = b't'
    else:
        _u4(out, c)
        return out + 6
    return out + 2


cdef int _inner(Buf* b, str text) except -1:
    """`text` JSON-escaped as `json.encoder.encode_basestring_ascii` does, without the quotes."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text)
    cdef Py_ssize_t i
    cdef int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef unsigned int c, v
    cdef char* out
    cdef const unsigned char* ascii
    if PyUnicode_IS_ASCII(text):        # one byte a character, none above 127: the usual text, read as bytes
        _grow(b, n * 6)
        ascii = <const unsigned char*>data
        out = b.data + b.size
        for i in range(n):
            c = ascii[i]
            if 32 <= c <= 126 and c != 34 and c != 92:
                out[0] = <char>c
                out += 1
            elif c == 34 or c == 92:
                out[0] = b'\\'
                out[1] = <char>c
                out += 2
            else:
                out = _escape_low(out, c)
        b.size = out - b.data
        return 0
    _grow(b, n * 12)
    out = b.data + b.size
    for i in range(n):
        c = PyUnicode_READ(kind, data, i)
        if 32 <= c <= 126 and c != 34 and c != 92:
            out[0] = <char>c
            out += 1
            continue
        out[0] = b'\\'
        if c == 34:
            out[1] = b'"'
        elif c == 92:
            out[1] = b'\\'
        elif c == 8:
            out[1] = b'b'
        elif c == 12:
            out[1] = b'f'
        elif c == 10:
            out[1] = b'n'
        elif c == 13:
            out[1] = b'r'
        elif c == 9:
            out[1] = b't'
        elif c >= 0x10000:
            v = c - 0x10000
            _u4(out, 0xd800 | ((v >> 10) & 0x3ff))
            _u4(out + 6, 0xdc00 | (v & 0x3ff))
            out += 12
            continue
        else:
            _u4(out, c)
            out += 6
            continue
        out += 2
    b.size = out - b.data
    return 0


cdef inline char* _ascii_into(char* out, const unsigned char* data, Py_ssize_t n) noexcept:
    """ASCII bytes as a JSON string at `out` (room for `6 * n + 2` bytes), escaped as `_inner` escapes the same
    text; returns the end."""
    cdef Py_ssize_t i
    cdef unsigned int c
    out[0] = b'"'
    out += 1
    for i in range(n):
        c = data[i]
        if 32 <= c <= 126 and c != 34 and c != 92:
            out[0] = <char>c
            out += 1
        elif c == 34 or c == 92:
            out[0] = b'\\'
            out[1] = <char>c
            out += 2
        else:
            _u4(out, c)
            out += 6
    out[0] = b'"'
    return out + 1


cdef int _ascii_str(Buf* b, const unsigned char* data, Py_ssize_t n) except -1:
    """ASCII bytes as a JSON string, escaped as `_inner` escapes the same text."""
    _grow(b, n * 6 + 2)
    b.size = _ascii_into(b.data + b.size, data, n) - b.data
    return 0


cdef inline char* _put(char* out, const char* text) noexcept:
    """A literal at `out` (its length folded by the compiler); returns the end."""
    cdef size_t n = strlen(text)
    memcpy(out, text, n)
    return out + n


cdef inline char* _put_bool(char* out, bint value) noexcept:
    if value:
        return _put(out, b"true")
    return _put(out, b"false")


cdef inline char* _put_price(char* out, bint has, long long value) noexcept:
    """A price in kopecks, or null."""
    cdef char tmp[24]
    cdef int at
    if not has:
        return _put(out, b"null")
    at = _digits_into(tmp, value)
    memcpy(out, tmp + at, 24 - at)
    return out + 24 - at


cdef inline int _str(Buf* b, str text) except -1:
    _raw(b, b'"', 1)
    _inner(b, text)
    return _raw(b, b'"', 1)


cdef int _float(Buf* b, object value) except -1:
    cdef double d = PyFloat_AS_DOUBLE(value)
    if not isfinite(d):
        if d != d:
            return _lit(b, b"NaN")
        return _lit(b, b"Infinity" if d > 0 else b"-Infinity")
    return _ascii(b, repr(value))


cdef int _value(Buf* b, object value) except -1:
    """Any value as the Python encoder writes it: the usual types here, the rest through that encoder."""
    cdef int overflow = 0
    cdef long long number
    if value is None:
        return _raw(b, b"null", 4)
    if value is True:
        return _raw(b, b"true", 4)
    if value is False:
        return _raw(b, b"false", 5)
    if PyUnicode_Check(value):
        return _str(b, value)
    if PyLong_CheckExact(value):
        number = PyLong_AsLongLongAndOverflow(value, &overflow)
        if not overflow:
            return _digits(b, number)
    elif PyFloat_CheckExact(value):
        return _float(b, value)
    return _ascii(b, _FALLBACK(value))


cdef inline int _bool(Buf* b, bint value) except -1:
    if value:
        return _raw(b, b"true", 4)
    return _raw(b, b"false", 5)


cdef bytes _take(Buf* b):
    """What `b` holds, as bytes: its own object cut to size (`_init_bytes`), else a copy."""
    cdef bytes out
    if b.obj == NULL:
        return PyBytes_FromStringAndSize(b.data, b.size)
    _PyBytes_Resize(&b.obj, b.size)
    out = <bytes>b.obj
    Py_XDECREF(b.obj)
    b.obj = NULL
    b.data = NULL
    b.cap = b.size = 0
    return out


cdef str _take_text(Buf* b):
    return PyUnicode_DecodeASCII(b.data, b.size, NULL)


cdef class Envelope:
    """What one check request's answer says around its codes, worked out by the service: `reqId`, `reqTimestamp`,
    the instance's and the version's UUIDs (`inst`, `version`), `dbFreshness`, whether `isGreyGtin` answers from
    the grey list, and for the audit log the client (as its JSON text, None: no audit), what its lines end with
    (`,"a":...` of a token's label, or "") and the tag its outcomes carry (`audit_tag`, "" for none: a fronted
    check answered locally records `"o":"local:<reason>"` for ok, `"o":"<outcome> local:<reason>"` otherwise, as
    `AuditLog.record` is told by service/fronting.py)."""

    cdef readonly str req_id
    cdef readonly long long req_ms
    cdef readonly str inst
    cdef readonly str version
    cdef readonly str freshness
    cdef readonly bint grey
    cdef readonly object audit_client
    cdef readonly str audit_tail
    cdef readonly str audit_tag

    def __init__(self, str req_id, long long req_ms, str inst, str version, str freshness, bint grey,
                 audit_client=None, str audit_tail="", str audit_tag=""):
        self.req_id = req_id
        self.req_ms = req_ms
        self.inst = inst
        self.version = version
        self.freshness = freshness
        self.grey = grey
        self.audit_client = audit_client
        self.audit_tail = audit_tail
        self.audit_tag = audit_tag or ""


cdef class Answers:
    """The compiled encoder of the check answers of both protocols (one per service).

    `unreadable_type`: the class of a scan answered as unreadable (`service.answers.Unreadable`: `index`, `raw`,
    `reason`, `message`); every other item is a `Verdict`. `error_unreadable`: the `errorCode` of its entry."""

    cdef object unreadable_type
    cdef long long error_unreadable
    cdef bytes unreadable_head
    cdef object last_age
    cdef bytes last_age_json
    cdef double last_age_rounded
    cdef bint last_age_near
    cdef object last_version
    cdef bytes last_version_json
    cdef object audit_version
    cdef bytes audit_version_text
    cdef object last_freshness
    cdef bytes last_freshness_json
    cdef object piece_inst
    cdef object piece_version
    cdef bytes piece_head
    cdef bytes piece_tag
    cdef long long ms_value
    cdef char ms_text[24]
    cdef Py_ssize_t ms_len
    cdef Py_ssize_t cis_at
    cdef Py_ssize_t cis_size

    def __init__(self, unreadable_type, long long error_unreadable):
        self.unreadable_type = unreadable_type
        self.error_unreadable = error_unreadable
        self.last_age = None
        self.last_age_json = b"null"
        self.last_age_near = False
        self.ms_value = -1
        self.ms_len = 0

    cdef int _age(self, Buf* b, object age) except -1:
        """`dbAge`: None, or the age rounded to the millisecond (`round(age, 3)`), remembered for the next code.

        An age within 0.49 ms of the last one's rounded value (of the same sign, not zero, below 1e9 s) rounds to
        that same value: the decimal of three places nearest to it is the one the last age rounded to (it is
        less than half a step away, the double of that decimal adding at most 6e-8 at 1e9 s), so its text is
        reused without `round` and `repr` (each request of a one-code check has an age of its own)."""
        cdef object last = self.last_age
        cdef double d, r
        cdef Buf tmp
        if age is None:
            return _raw(b, b"null", 4)
        if age is last:
            return _bytes(b, self.last_age_json)
        if PyFloat_CheckExact(age):
            d = PyFloat_AS_DOUBLE(age)
            r = self.last_age_rounded
            if self.last_age_near and fabs(d - r) < 0.00049 and signbit(d) == signbit(r):
                self.last_age = age
                return _bytes(b, self.last_age_json)
            if PyFloat_CheckExact(last) and d == PyFloat_AS_DOUBLE(last) and signbit(d) == signbit(
                    PyFloat_AS_DOUBLE(last)):
                return _bytes(b, self.last_age_json)
        _init(&tmp)
        try:
            rounded = round(age, 3)
            _value(&tmp, rounded)
            self.last_age_json = _take(&tmp)
        finally:
            _free(&tmp)
        self.last_age = age
        self.last_age_near = False
        if PyFloat_CheckExact(age) and PyFloat_CheckExact(rounded):
            r = PyFloat_AS_DOUBLE(rounded)
            self.last_age_rounded = r
            self.last_age_near = isfinite(r) and r != 0.0 and fabs(r) < 1e9
        return _bytes(b, self.last_age_json)

    cdef int _code(self, Buf* b, object v, object pg, bint grey) except -1:
        """One code's entry (`answers.code_json`)."""
        cdef object block = v.block
        cdef object cis = v.cis
        cdef object authority
        _raw(b, b'{"cis":', 7)
        _value(b, cis)
        _raw(b, b',"printView":', 13)
        _value(b, cis)
        _raw(b, b',"gtin":', 8)
        _value(b, v.gtin)
        if pg is None:
            _lit(b, b',"groupIds":[]')
        else:
            _lit(b, b',"groupIds":[')
            _value(b, pg)
            _raw(b, b"]", 1)
        _lit(b, b',"found":true,"valid":true,"verified":true,"realizable":true,"utilised":true,"sold":')
        _value(b, v.sold)
        _lit(b, b',"isBlocked":')
        _value(b, v.blocked)
        if block is None:
            _lit(b, b',"ogvs":[],"isGreyGtin":')
        else:
            authority = block.authority
            if authority:
                _lit(b, b',"ogvs":[')
                _value(b, authority)
                _lit(b, b'],"isGreyGtin":')
            else:
                _lit(b, b',"ogvs":[],"isGreyGtin":')
        _value(b, v.grey_gtin if grey else False)
        _lit(b, b',"mrp":')
        _value(b, v.mrp)
        _lit(b, b',"smp":')
        _value(b, v.smp)
        if block is None:
            return _lit(b, b',"block":null}')
        _lit(b, b',"block":{"authority":')
        _value(b, block.authority)
        _lit(b, b',"reason":')
        _value(b, block.reason)
        _lit(b, b',"since":')
        _value(b, block.since)
        _lit(b, b',"scope":')
        _value(b, block.scope)
        return _lit(b, b'}}')

    cdef int _unreadable(self, Buf* b, object item, object pg) except -1:
        """The entry of a scan that could not be read (`answers.unreadable_json`)."""
        cdef object raw = item.raw
        _raw(b, b'{"cis":', 7)
        _value(b, raw)
        _raw(b, b',"printView":', 13)
        _value(b, raw)
        if pg is None:
            _lit(b, b',"gtin":"","groupIds":[]')
        else:
            _lit(b, b',"gtin":"","groupIds":[')
            _value(b, pg)
            _raw(b, b"]", 1)
        _lit(b, b',"found":false,"valid":false,"verified":false,"realizable":false,"utilised":false,'
                b'"sold":false,"isBlocked":true,"ogvs":[],"isGreyGtin":false,"mrp":null,"smp":null,"block":null,'
                b'"errorCode":')
        _digits(b, self.error_unreadable)
        _lit(b, b',"message":')
        _value(b, item.message)
        _lit(b, b',"error":"invalid_code","reason":')
        _value(b, item.reason)
        return _raw(b, b"}", 1)

    cdef int _pieces(self, long long req_ms, str inst, str version) except -1:
        """The parts of an envelope that depend on the instance and version only (written once while they stay the
        same objects: protocol 2 writes them for every code, and every request of a version shares them), and
        the request's time as text (`ms_text`, once per millisecond)."""
        cdef Buf tmp
        cdef char digits[24]
        cdef int at
        if req_ms != self.ms_value or self.ms_len == 0:
            at = _digits_into(digits, req_ms)
            memcpy(self.ms_text, digits + at, 24 - at)
            self.ms_len = 24 - at
            self.ms_value = req_ms
        if self.piece_inst is inst and self.piece_version is version and self.piece_head is not None:
            return 0
        _init(&tmp)
        try:
            _lit(&tmp, b',"inst":')
            _str(&tmp, inst)
            _lit(&tmp, b',"version":')
            _str(&tmp, version)
            _lit(&tmp, b',"isCheckedOffline":true,"codes":[')
            self.piece_head = _take(&tmp)
            tmp.size = 0
            _lit(&tmp, b'&Inst=')
            _inner(&tmp, inst)
            _lit(&tmp, b'&Ver=')
            _inner(&tmp, version)
            _lit(&tmp, b'","dbVersion":')
            self.piece_tag = _take(&tmp)
        finally:
            _free(&tmp)
        self.piece_inst, self.piece_version = inst, version
        return 0

    cdef inline int _piece_head(self, Buf* b, long long req_ms, str inst, str version) except -1:
        """`,"reqTimestamp":...` to `"codes":[` (`_pieces`)."""
        self._pieces(req_ms, inst, version)
        _raw(b, b',"reqTimestamp":', 16)
        _raw(b, self.ms_text, self.ms_len)
        return _bytes(b, self.piece_head)

    cdef int _head(self, Buf* b, str req_id, long long req_ms, str inst, str version) except -1:
        """`reqId` to `isCheckedOffline`, after `"code":...,"description":...`."""
        _lit(b, b',"reqId":')
        _str(b, req_id)
        return self._piece_head(b, req_ms, inst, version)

    cdef int _head_id(self, Buf* b, const char* rid, long long req_ms, str inst, str version) except -1:
        """`_head` of a generated request id (`_uuid4`'s 36 characters: nothing to escape)."""
        _lit(b, b',"reqId":"')
        _raw(b, rid, 36)
        _raw(b, b'"', 1)
        return self._piece_head(b, req_ms, inst, version)

    cdef int _tail(self, Buf* b, str req_id, long long req_ms, str inst, str version, object db_version,
                   object db_age, str freshness) except -1:
        """From the end of `codes` to `dbFreshness` (the envelope's last official field), without the `}`."""
        _lit(b, b'],"tag1265":"UUID=')
        _inner(b, req_id)
        return self._tail_rest(b, req_ms, inst, version, db_version, db_age, freshness)

    cdef int _tail_id(self, Buf* b, const char* rid, long long req_ms, str inst, str version, object db_version,
                      object db_age, str freshness) except -1:
        """`_tail` of a generated request id (`_uuid4`'s 36 characters: nothing to escape)."""
        _lit(b, b'],"tag1265":"UUID=')
        _raw(b, rid, 36)
        return self._tail_rest(b, req_ms, inst, version, db_version, db_age, freshness)

    cdef int _tail_rest(self, Buf* b, long long req_ms, str inst, str version, object db_version, object db_age,
                        str freshness) except -1:
        """`_tail` after the request id of tag 1265."""
        cdef Buf tmp
        self._pieces(req_ms, inst, version)
        _raw(b, b'&Time=', 6)
        _raw(b, self.ms_text, self.ms_len)
        _bytes(b, self.piece_tag)
        if not (db_version is self.last_version and self.last_version_json is not None):
            _init(&tmp)
            try:
                _str(&tmp, str(db_version))
                self.last_version_json = _take(&tmp)
            finally:
                _free(&tmp)
            self.last_version = db_version
        _bytes(b, self.last_version_json)
        _lit(b, b',"dbAge":')
        self._age(b, db_age)
        _lit(b, b',"dbFreshness":')
        if freshness is not self.last_freshness or self.last_freshness_json is None:
            _init(&tmp)
            try:
                _str(&tmp, freshness)
                self.last_freshness_json = _take(&tmp)
            finally:
                _free(&tmp)
            self.last_freshness = freshness
        return _bytes(b, self.last_freshness_json)

    cdef int _audit_line(self, Buf* a, Envelope head, str req_id, object version, const char* outcome) except -1:
        """An audit line up to its codes: `{"t":...,"id":...,"c":...,"v":...,"o":...,"k":[` (`audit._format`)."""
        _lit(a, b'{"t":')
        _digits(a, head.req_ms)
        _lit(a, b',"id":"')
        _ascii(a, req_id)
        return self._audit_rest(a, head, version, outcome)

    cdef int _audit_line_id(self, Buf* a, Envelope head, const char* rid, object version,
                            const char* outcome) except -1:
        """`_audit_line` of a generated request id (`_uuid4`'s 36 characters)."""
        _lit(a, b'{"t":')
        _digits(a, head.req_ms)
        _lit(a, b',"id":"')
        _raw(a, rid, 36)
        return self._audit_rest(a, head, version, outcome)

    cdef int _audit_rest(self, Buf* a, Envelope head, object version, const char* outcome) except -1:
        _lit(a, b'","c":')
        _ascii(a, head.audit_client)
        _lit(a, b',"v":')
        if version is None:
            _raw(a, b"null", 4)
        else:
            if version is not self.audit_version or self.audit_version_text is None:
                self.audit_version_text = str(version).encode("ascii")
                self.audit_version = version
            _bytes(a, self.audit_version_text)
        _lit(a, b',"o":"')
        if head.audit_tag:
            if strcmp(outcome, b"ok") != 0:
                _lit(a, outcome)
                _raw(a, b" ", 1)
            _ascii(a, head.audit_tag)
        else:
            _lit(a, outcome)
        return _lit(a, b'","k":[')

    cdef int _audit_end(self, Buf* a, Envelope head) except -1:
        _raw(a, b"]", 1)
        _ascii(a, head.audit_tail)
        return _raw(a, b"}\n", 2)

    cdef int _audit_code(self, Buf* a, object item, bint unreadable) except -1:
        """One `[cis, 1|0]` (a checked code) or `[raw[:64], null]` (an unreadable scan) of an audit line."""
        _raw(a, b"[", 1)
        if unreadable:
            _value(a, item.raw[:64])
            return _lit(a, b",null]")
        _value(a, item.cis)
        if item.blocked:
            return _lit(a, b",1]")
        return _lit(a, b",0]")

    cdef int _fast(self, Buf* b, _Batch v, Py_ssize_t j, object pg, bint grey) except -1:
        """One free code's entry from its batch's arrays, as `_code` writes its `Verdict`: room made once, then
        written with no check per field (but `groupIds`' value, an object)."""
        cdef int f = v.flags[j]
        cdef const unsigned char* cis = v.cis + j * CIS_STRIDE
        cdef Py_ssize_t n = v.cis_len[j]
        cdef Py_ssize_t at, size
        cdef char* out
        # the fields, two CIS and a GTIN of 6 bytes a character at most, two prices of 20 digits
        _grow(b, 360 + 12 * n + 6 * GTIN_STRIDE)
        out = _put(b.data + b.size, b'{"cis":')
        at = out - b.data
        out = _ascii_into(out, cis, n)
        size = out - b.data - at
        out = _put(out, b',"printView":')
        memcpy(out, b.data + at, size)          # the JSON text just written
        out += size
        self.cis_at, self.cis_size = at, size       # for `_fast_audit`
        out = _put(out, b',"gtin":')
        out = _ascii_into(out, v.gtin + j * GTIN_STRIDE, GTIN_STRIDE)
        if pg is None:
            out = _put(out, b',"groupIds":[]')
        else:
            out = _put(out, b',"groupIds":[')
            b.size = out - b.data
            _value(b, pg)
            _raw(b, b"]", 1)
            _grow(b, 300)
            out = b.data + b.size
        out = _put(out, b',"found":true,"valid":true,"verified":true,"realizable":true,"utilised":true,"sold":')
        out = _put_bool(out, f & F_SOLD)
        out = _put(out, b',"isBlocked":')
        out = _put_bool(out, f & F_BLOCKED)
        out = _put(out, b',"ogvs":[],"isGreyGtin":')
        out = _put_bool(out, grey and (f & F_GREY))
        out = _put(out, b',"mrp":')
        out = _put_price(out, f & F_HAS_MRP, v.mrp[j])
        out = _put(out, b',"smp":')
        out = _put_price(out, f & F_HAS_SMP, v.smp[j])
        out = _put(out, b',"block":null}')
        b.size = out - b.data
        return 0

    cdef int _fast_audit(self, Buf* a, Buf* b, _Batch v, Py_ssize_t j) except -1:
        """A free code's `[cis, 1|0]`, its CIS the JSON text `_fast` last wrote into `b` (the same escaping)."""
        _raw(a, b"[", 1)
        _raw(a, b.data + self.cis_at, self.cis_size)
        if v.flags[j] & F_BLOCKED:
            return _lit(a, b",1]")
        return _lit(a, b",0]")

    cdef tuple _first(self, list batches, _Batch v):
        """`(db_version, db_age, instance_id)` of the first code checked (not unreadable) of `batches`."""
        cdef Py_ssize_t j
        cdef object item
        for batch in batches:
            v.set(batch)
            for j in range(v.n):
                if v.flags[j] & F_UNREADABLE:
                    continue
                item = v.item(j)
                if item is None:
                    return v.db_version, v.db_age, v.instance_id
                return item.db_version, item.db_age, item.instance_id
        raise ValueError("no code of the request was checked")

    cdef int _v1_open(self, Buf* b, Buf* a, Py_ssize_t n, Py_ssize_t unread, Envelope head, object db_version,
                      bint audit) except -1:
        """Protocol 1's envelope up to its codes and, with `audit`, the audit line up to its codes (`v1`,
        `v1_batches`)."""
        _grow(b, 600 * n + 600)
        if unread:
            _lit(b, b'{"code":0,"description":"ok; ')
            _digits(b, unread)
            _lit(b, b' of ')
            _digits(b, n)
            _lit(b, b' codes could not be read (their entries: errorCode ')
            _digits(b, self.error_unreadable)
            _lit(b, b', isBlocked true)"')
        else:
            _lit(b, b'{"code":0,"description":"ok"')
        self._head(b, head.req_id, head.req_ms, head.inst, head.version)
        if audit:
            _grow(a, 80 * n + 200)
            self._audit_line(a, head, head.req_id, db_version, b"partial" if unread else b"ok")
        return 0

    cdef tuple _v1_close(self, Buf* b, Buf* a, Py_ssize_t unread, Envelope head, object db_version, object db_age,
                         bint audit):
        """Protocol 1's envelope after its codes, and the audit line's end: `(body, audit_line or None)`."""
        self._tail(b, head.req_id, head.req_ms, head.inst, head.version, db_version, db_age, head.freshness)
        if unread:
            _lit(b, b',"unreadable":')
            _digits(b, unread)
        _raw(b, b"}", 1)
        line = None
        if audit:
            self._audit_end(a, head)
            line = _take_text(a)
        return _take(b), line

    cdef tuple _v2_parts(self, Envelope head, object db_version, object db_age):
        """What protocol 2 writes around each free code of a batch of `head`'s instance and version, but its
        request id (`_head_id`, `_tail_id`, `_audit_line_id`, `_audit_end`), written once per batch:
        `(after the id in the head, after the id in tag 1265 to the envelope's end, the audit line up to the id,
        after it up to the code, after the code)`."""
        cdef Buf tmp
        cdef Py_ssize_t at
        cdef list out = []
        _init(&tmp)
        try:
            _raw(&tmp, b'"', 1)
            self._piece_head(&tmp, head.req_ms, head.inst, head.version)
            out.append(_take(&tmp))
            tmp.size = 0
            self._tail_rest(&tmp, head.req_ms, head.inst, head.version, db_version, db_age, head.freshness)
            _raw(&tmp, b"}", 1)
            out.append(_take(&tmp))
            tmp.size = 0
            _lit(&tmp, b'{"t":')
            _digits(&tmp, head.req_ms)
            _lit(&tmp, b',"id":"')
            out.append(_take(&tmp))
            tmp.size = 0
            if head.audit_client is not None:
                self._audit_rest(&tmp, head, db_version, b"ok")
                out.append(_take(&tmp))
                tmp.size = 0
                self._audit_end(&tmp, head)
                out.append(_take(&tmp))
            else:
                out += [b"", b""]
        finally:
            _free(&tmp)
        return tuple(out)

    def v1_batches(self, list batches, dict unreadable, Envelope head):
        """`v1` of the compiled verdicts of a request's scans, in order (`_probe.CheckBatch`es of one version),
        `unreadable` the unreadable item of each scan a batch flags so, by its index in the request. Returns
        `(body, audit_line or None, checked, blocked)`."""
        cdef _Batch v = _Batch()
        cdef Py_ssize_t i = 0, j, n = 0, unread = len(unreadable), checked = 0, blocked = 0
        cdef bint audit = head.audit_client is not None
        cdef object item
        cdef int f
        cdef Buf b, a
        for batch in batches:
            n += len(batch)
        db_version, db_age, _ = self._first(batches, v)
        _init(&b)
        _init(&a)
        try:
            _init_bytes(&b, 600 * n + 600)
            self._v1_open(&b, &a, n, unread, head, db_version, audit)
            for batch in batches:
                v.set(batch)
                for j in range(v.n):
                    if i:
                        _raw(&b, b",", 1)
                        if audit:
                            _raw(&a, b",", 1)
                    f = v.flags[j]
                    if f & F_UNREADABLE:
                        item = unreadable[i]
                        self._unreadable(&b, item, None)
                        if audit:
                            self._audit_code(&a, item, True)
                    else:
                        item = v.item(j)
                        checked += 1
                        if item is None:
                            self._fast(&b, v, j, None, head.grey)
                            blocked += (f & F_BLOCKED) != 0
                            if audit:
                                self._fast_audit(&a, &b, v, j)
                        else:
                            self._code(&b, item, None, head.grey)
                            blocked += bool(item.blocked)
                            if audit:
                                self._audit_code(&a, item, False)
                    i += 1
            body, line = self._v1_close(&b, &a, unread, head, db_version, db_age, audit)
            return body, line, checked, blocked
        finally:
            _free(&b)
            _free(&a)

    def v2_batches(self, list batches, dict unreadable, list pgs, bytes ids, Envelope head, object db_version,
                   object uuids):
        """`v2` of the compiled verdicts of a request's scans (`batches` and `unreadable` as `v1_batches`')."""
        cdef _Batch v = _Batch()
        cdef Py_ssize_t i = 0, j, n = 0, checked = 0, blocked = 0
        cdef bint audit = head.audit_client is not None
        cdef const unsigned char* rnd
        cdef char rid_text[36]
        cdef str rid, inst, version
        cdef object item, pg, seen_instance, seen_version, item_version, item_age, item_instance
        cdef tuple parts
        cdef bytes p_head, p_tail, p_line, p_rest, p_end
        cdef int f
        cdef Buf b, a
        for batch in batches:
            n += len(batch)
        if PyBytes_GET_SIZE(ids) < 16 * (n - 1) or PyList_GET_SIZE(pgs) != n:
            raise ValueError("ids needs 16 bytes for each code after the first, pgs one entry per code")
        known_version, known_age, seen_instance = self._first(batches, v)
        seen_version = known_version
        rnd = <const unsigned char*>PyBytes_AS_STRING(ids)
        _init(&b)
        _init(&a)
        try:
            _init_bytes(&b, 1100 * n + 100)
            if audit:
                _grow(&a, 200 * n + 100)
            _lit(&b, b'{"results":[')
            for batch in batches:
                v.set(batch)
                # a free code of the batch's own instance and version: its envelope is these parts and its id
                parts = (self._v2_parts(head, v.db_version, v.db_age)
                         if v.instance_id == seen_instance and v.db_version == seen_version else None)
                if parts is not None:
                    p_head, p_tail, p_line, p_rest, p_end = parts
                for j in range(v.n):
                    pg = <object>PyList_GET_ITEM(pgs, i)
                    f = v.flags[j]
                    item = None if f & F_UNREADABLE else v.item(j)
                    if i and item is None and parts is not None and not f & F_UNREADABLE:
                        _raw(&b, b",", 1)
                        _uuid4(rid_text, rnd + 16 * (i - 1))
                        i += 1
                        _raw(&b, b'{"code":0,"description":"ok","reqId":"', 38)
                        _raw(&b, rid_text, 36)
                        _bytes(&b, p_head)
                        self._fast(&b, v, j, pg, head.grey)
                        blocked += (f & F_BLOCKED) != 0
                        _raw(&b, b'],"tag1265":"UUID=', 18)
                        _raw(&b, rid_text, 36)
                        _bytes(&b, p_tail)
                        checked += 1
                        if audit:
                            _bytes(&a, p_line)
                            _raw(&a, rid_text, 36)
                            _bytes(&a, p_rest)
                            self._fast_audit(&a, &b, v, j)
                            _bytes(&a, p_end)
                        continue
                    if i:
                        _raw(&b, b",", 1)
                        _uuid4(rid_text, rnd + 16 * (i - 1))
                        # a free code's envelope writes the id's text as it is; the others take it as a str
                        rid = None if item is None and not f & F_UNREADABLE else PyUnicode_DecodeASCII(rid_text,
                                                                                                       36, NULL)
                    else:
                        rid = head.req_id
                    i += 1
                    if f & F_UNREADABLE:
                        item = unreadable[i - 1]
                        _lit(&b, b'{"code":')
                        _digits(&b, self.error_unreadable)
                        _lit(&b, b',"description":')
                        _value(&b, item.message)
                        self._head(&b, rid, head.req_ms, head.inst, head.version)
                        self._unreadable(&b, item, pg)
                        self._tail(&b, rid, head.req_ms, head.inst, head.version, known_version, known_age,
                                   head.freshness)
                        _lit(&b, b',"error":"invalid_code","errorCode":')
                        _digits(&b, self.error_unreadable)
                        _lit(&b, b',"reason":')
                        _value(&b, item.reason)
                        _raw(&b, b"}", 1)
                        if audit:
                            self._audit_line(&a, head, rid, db_version, b"invalid_code")
                            self._audit_code(&a, item, True)
                            self._audit_end(&a, head)
                        continue
                    if item is None:
                        item_version, item_age, item_instance = v.db_version, v.db_age, v.instance_id
                    else:
                        item_version, item_age, item_instance = item.db_version, item.db_age, item.instance_id
                    if item_instance == seen_instance and item_version == seen_version:
                        inst, version = head.inst, head.version
                    else:
                        inst, version = uuids(item_instance, item_version)
                    _lit(&b, b'{"code":0,"description":"ok"')
                    if rid is None:
                        self._head_id(&b, rid_text, head.req_ms, inst, version)
                    else:
                        self._head(&b, rid, head.req_ms, inst, version)
                    if item is None:
                        self._fast(&b, v, j, pg, head.grey)
                        blocked += (f & F_BLOCKED) != 0
                    else:
                        self._code(&b, item, pg, head.grey)
                        blocked += bool(item.blocked)
                    if rid is None:
                        self._tail_id(&b, rid_text, head.req_ms, inst, version, item_version, item_age,
                                      head.freshness)
                    else:
                        self._tail(&b, rid, head.req_ms, inst, version, item_version, item_age, head.freshness)
                    _raw(&b, b"}", 1)
                    checked += 1
                    if audit:
                        if rid is None:
                            self._audit_line_id(&a, head, rid_text, item_version, b"ok")
                        else:
                            self._audit_line(&a, head, rid, item_version, b"ok")
                        if item is None:
                            self._fast_audit(&a, &b, v, j)
                        else:
                            self._audit_code(&a, item, False)
                        self._audit_end(&a, head)
            _lit(&b, b"]}")
            return _take(&b), _take_text(&a) if audit else "", checked, blocked
        finally:
            _free(&b)
            _free(&a)

    def v1(self, list answers, Envelope head):
        """Protocol 1's answer to a check: `(body, audit_line or None, checked, blocked)`; `answers` holds a
        `Verdict` or an unreadable item per scan, at least one a `Verdict` (`checks.Checks._check_steps`)."""
        cdef Py_ssize_t n = PyList_GET_SIZE(answers)
        cdef Py_ssize_t i, unread = 0, checked = 0, blocked = 0
        cdef object item, first = None
        cdef object kind = self.unreadable_type
        cdef bint audit = head.audit_client is not None
        cdef bint bad
        cdef Buf b, a
        _init(&b)
        _init(&a)
        for i in range(n):
            item = <object>PyList_GET_ITEM(answers, i)
            if type(item) is kind:
                unread += 1
            elif first is None:
                first = item
        if first is None:
            raise ValueError("no code of the request was checked")
        try:
            self._v1_open(&b, &a, n, unread, head, first.db_version, audit)
            for i in range(n):
                item = <object>PyList_GET_ITEM(answers, i)
                if i:
                    _raw(&b, b",", 1)
                    if audit:
                        _raw(&a, b",", 1)
                bad = type(item) is kind
                if bad:
                    self._unreadable(&b, item, None)
                else:
                    self._code(&b, item, None, head.grey)
                    checked += 1
                    blocked += bool(item.blocked)
                if audit:
                    self._audit_code(&a, item, bad)
            body, line = self._v1_close(&b, &a, unread, head, first.db_version, first.db_age, audit)
            return body, line, checked, blocked
        finally:
            _free(&b)
            _free(&a)

    def v2(self, list answers, list pgs, bytes ids, Envelope head, object db_version, object uuids):
        """Protocol 2's answer to a check, one envelope per code: `(body, audit_lines or "", checked, blocked)`.

        `pgs`: the product group each item named (or None); `ids`: 16 random bytes for each code after the first,
        its `reqId` (a UUID version 4, as `uuid.uuid4()` makes of 16 bytes of `os.urandom`; the first answers
        under `head.req_id`); `db_version`: the version that answered (an unreadable scan's audit
        line names it); `uuids(instance_id, db_version)`: `(inst, version)` for a verdict of another instance or
        version than `head`'s (`head.inst`/`head.version` are the first checked code's)."""
        cdef Py_ssize_t n = PyList_GET_SIZE(answers)
        cdef Py_ssize_t i, checked = 0, blocked = 0
        cdef object item, known = None, pg
        cdef object kind = self.unreadable_type
        cdef bint audit = head.audit_client is not None
        cdef const unsigned char* rnd
        cdef char rid_text[36]
        cdef str rid, inst, version
        cdef object seen_instance, seen_version
        cdef Buf b, a
        if PyBytes_GET_SIZE(ids) < 16 * (n - 1) or PyList_GET_SIZE(pgs) != n:
            raise ValueError("ids needs 16 bytes for each code after the first, pgs one entry per code")
        for i in range(n):
            item = <object>PyList_GET_ITEM(answers, i)
            if type(item) is not kind:
                known = item
                break
        if known is None:
            raise ValueError("no code of the request was checked")
        seen_instance, seen_version = known.instance_id, known.db_version
        rnd = <const unsigned char*>PyBytes_AS_STRING(ids)
        _init(&b)
        _init(&a)
        try:
            _grow(&b, 1100 * n + 100)
            if audit:
                _grow(&a, 200 * n + 100)
            _lit(&b, b'{"results":[')
            for i in range(n):
                item = <object>PyList_GET_ITEM(answers, i)
                pg = <object>PyList_GET_ITEM(pgs, i)
                if i:
                    _raw(&b, b",", 1)
                    _uuid4(rid_text, rnd + 16 * (i - 1))
                    rid = PyUnicode_DecodeASCII(rid_text, 36, NULL)
                else:
                    rid = head.req_id
                if type(item) is kind:
                    inst, version = head.inst, head.version
                    _lit(&b, b'{"code":')
                    _digits(&b, self.error_unreadable)
                    _lit(&b, b',"description":')
                    _value(&b, item.message)
                    self._head(&b, rid, head.req_ms, inst, version)
                    self._unreadable(&b, item, pg)
                    self._tail(&b, rid, head.req_ms, inst, version, known.db_version, known.db_age, head.freshness)
                    _lit(&b, b',"error":"invalid_code","errorCode":')
                    _digits(&b, self.error_unreadable)
                    _lit(&b, b',"reason":')
                    _value(&b, item.reason)
                    _raw(&b, b"}", 1)
                    if audit:
                        self._audit_line(&a, head, rid, db_version, b"invalid_code")
                        self._audit_code(&a, item, True)
                        self._audit_end(&a, head)
                    continue
                if item.instance_id == seen_instance and item.db_version == seen_version:
                    inst, version = head.inst, head.version
                else:
                    inst, version = uuids(item.instance_id, item.db_version)
                _lit(&b, b'{"code":0,"description":"ok"')
                self._head(&b, rid, head.req_ms, inst, version)
                self._code(&b, item, pg, head.grey)
                self._tail(&b, rid, head.req_ms, inst, version, item.db_version, item.db_age, head.freshness)
                _raw(&b, b"}", 1)
                checked += 1
                blocked += bool(item.blocked)
                if audit:
                    self._audit_line(&a, head, rid, item.db_version, b"ok")
                    self._audit_code(&a, item, False)
                    self._audit_end(&a, head)
            _lit(&b, b"]}")
            return _take(&b), _take_text(&a) if audit else "", checked, blocked
        finally:
            _free(&b)
            _free(&a)


cdef class _Batch:
    """The C view of one `_probe.CheckBatch` (its arrays' data), taken once per batch."""

    cdef object batch
    cdef Py_ssize_t n
    cdef const unsigned char* flags
    cdef const long long* mrp
    cdef const long long* smp
    cdef const unsigned char* cis
    cdef const unsigned char* cis_len
    cdef const unsigned char* gtin
    cdef dict verdicts
    cdef object db_version
    cdef object db_age
    cdef object instance_id

    cdef set(self, object batch):
        """View `batch` (nothing to do if it is the one viewed: `_first` took the first batch already)."""
        if batch is self.batch:
            return
        cdef carray.array flags = batch.flags
        cdef carray.array mrp = batch.mrp
        cdef carray.array smp = batch.smp
        cdef carray.array cis_len = batch.cis_len
        self.batch = batch
        self.n = len(batch)
        if (len(flags) < self.n or len(mrp) < self.n or len(smp) < self.n or len(cis_len) < self.n
                or len(batch.cis) < self.n * CIS_STRIDE or len(batch.gtin) < self.n * GTIN_STRIDE):
            raise ValueError("a CheckBatch shorter than its length")
        self.flags = flags.data.as_uchars
        self.mrp = <const long long*>mrp.data.as_voidptr
        self.smp = <const long long*>smp.data.as_voidptr
        self.cis = <const unsigned char*>PyByteArray_AS_STRING(batch.cis)
        self.cis_len = cis_len.data.as_uchars
        self.gtin = <const unsigned char*>PyByteArray_AS_STRING(batch.gtin)
        self.verdicts = batch.verdicts
        self.db_version = batch.db_version
        self.db_age = batch.db_age
        self.instance_id = batch.instance_id

    cdef object item(self, Py_ssize_t j):
        """Code `j` as a `Verdict` when the batch has one for it (the exact path; a blocked or sold code the fast
        path should never leave without one is built by the batch), else None: written from the arrays."""
        cdef int f = self.flags[j]
        if f & F_EXACT:
            return self.verdicts[j]
        if f & (F_BLOCKED | F_SOLD):
            return self.batch.verdict(j)
        return None


cdef void _uuid4(char* out, const unsigned char* raw) noexcept:
    """The text of `uuid.UUID(bytes=raw[:16], version=4)`: 8-4-4-4-12 lowercase hex, version and variant set."""
    cdef int i, at = 0
    cdef unsigned char byte
    for i in range(16):
        byte = raw[i]
        if i == 6:
            byte = (byte & 0x0f) | 0x40
        elif i == 8:
            byte = (byte & 0x3f) | 0x80
        if i == 4 or i == 6 or i == 8 or i == 10:
            out[at] = b'-'
            at += 1
        out[at] = HEX[byte >> 4]
        out[at + 1] = HEX[byte & 15]
        at += 2


def request_id(bytes raw):
    """`str(uuid.UUID(bytes=raw, version=4))` for 16 bytes: what `uuid.uuid4()` is, of `os.urandom(16)`."""
    cdef char text[36]
    if PyBytes_GET_SIZE(raw) != 16:
        raise ValueError("a request id takes 16 bytes")
    _uuid4(text, <const unsigned char*>PyBytes_AS_STRING(raw))
    return PyUnicode_DecodeASCII(text, 36, NULL)


def too_long(list raws, Py_ssize_t max_len):
    """The indexes of the str items of `raws` longer than `max_len` characters (refused unread, as before)."""
    cdef Py_ssize_t i
    cdef object raw
    out = []
    for i in range(PyList_GET_SIZE(raws)):
        raw = <object>PyList_GET_ITEM(raws, i)
        if PyUnicode_Check(raw) and PyUnicode_GET_LENGTH(raw) > max_len:
            out.append(i)
    return out


cdef inline bint _ws(unsigned char c) noexcept:
    return c == 32 or c == 10 or c == 13 or c == 9


cdef inline int _hex(unsigned char c) noexcept:
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


cdef inline str _ascii_text(const char* data, Py_ssize_t n):
    """A str of `n` characters known to be ASCII (0-127): made and filled, with no decoder's scan."""
    cdef str out = PyUnicode_New(n, 127)
    memcpy(PyUnicode_DATA(out), data, n)
    return out


def cis_list(bytes body):
    """The codes of a check request's body when it is exactly `{"cis_list": ["<code>", ...]}` in ASCII (JSON
    whitespace anywhere between tokens, the escapes `\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX` below U+0080 in
    the strings): the list of str `json.loads(body)["cis_list"]` is, read without a dict or the decoder's
    machinery. Anything else (another key, a non-string item, a non-ASCII byte or escape, a malformed body)
    gives None: the caller then decodes it with `json` as before, with the same answers and the same errors."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(body)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
    cdef Py_ssize_t i = 0, start, k, size
    cdef unsigned char c
    cdef int d, code
    cdef list out
    cdef char* text
    while i < n and _ws(p[i]):
        i += 1
    if i >= n or p[i] != b'{':
        return None
    i += 1
    while i < n and _ws(p[i]):
        i += 1
    if n - i < 10 or memcmp(p + i, b'"cis_list"', 10) != 0:
        return None
    i += 10
    while i < n and _ws(p[i]):
        i += 1
    if i >= n or p[i] != b':':
        return None
    i += 1
    while i < n and _ws(p[i]):
        i += 1
    if i >= n or p[i] != b'[':
        return None
    i += 1
    out = []
    # every string's text, unescaped, goes here in turn: never longer than the body it comes from
    text = <char*>PyMem_Malloc(n + 1)
    if text == NULL:
        raise MemoryError()
    try:
        while i < n and _ws(p[i]):
            i += 1
        if i < n and p[i] == b']':
            i += 1
        else:
            while True:
                if i >= n or p[i] != b'"':
                    return None
                i += 1
                start = i
                while i < n and p[i] != b'"' and p[i] != b'\\' and 32 <= p[i] <= 127:
                    i += 1
                if i < n and p[i] == b'"':         # no escape: the text as it is
                    out.append(_ascii_text(<const char*>p + start, i - start))
                else:
                    size = i - start
                    memcpy(text, p + start, size)
                    while True:
                        # a run of plain characters, copied in a tight loop; then one escape (or the end)
                        while i < n and p[i] != b'"' and p[i] != b'\\' and 32 <= p[i] <= 127:
                            text[size] = <char>p[i]
                            size += 1
                            i += 1
                        if i >= n:
                            return None
                        c = p[i]
                        if c == b'"':
                            break
                        if c == b'\\':
                            if i + 1 >= n:
                                return None
                            c = p[i + 1]
                            if c == b'u':
                                if i + 6 > n:
                                    return None
                                code = 0
                                for k in range(2, 6):
                                    d = _hex(p[i + k])
                                    if d < 0:
                                        return None
                                    code = code * 16 + d
                                if code > 127:
                                    return None
                                c = <unsigned char>code
                                i += 6
                            else:
                                if c == b'"' or c == b'\\' or c == b'/':
                                    pass
                                elif c == b'b':
                                    c = 8
                                elif c == b'f':
                                    c = 12
                                elif c == b'n':
                                    c = 10
                                elif c == b'r':
                                    c = 13
                                elif c == b't':
                                    c = 9
                                else:
                                    return None
                                i += 2
                        elif 32 <= c <= 127:
                            i += 1
                        else:
                            return None
                        text[size] = <char>c
                        size += 1
                    out.append(_ascii_text(text, size))
                i += 1          # the closing quote
                while i < n and _ws(p[i]):
                    i += 1
                if i < n and p[i] == b',':
                    i += 1
                    while i < n and _ws(p[i]):
                        i += 1
                    continue
                if i < n and p[i] == b']':
                    i += 1
                    break
                return None
    finally:
        PyMem_Free(text)
    while i < n and _ws(p[i]):
        i += 1
    if i >= n or p[i] != b'}':
        return None
    i += 1
    while i < n and _ws(p[i]):
        i += 1
    if i != n:
        return None
    return out


def json_text(value):
    """`value` as the service's JSON encoder writes it (a str, int, float, bool, None, or anything it encodes)."""
    cdef Buf b
    _init(&b)
    try:
        _value(&b, value)
        return _take_text(&b)
    finally:
        _free(&b)
