# Part of lmcz_fast/_answer.pyx (included): the writing primitives. A growable buffer (`Buf`, or a bytes object
# written in place) and JSON text written into it as `json.JSONEncoder(ensure_ascii=True)` writes it.

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
        b.data = NULL                       # on failure the object is freed and set NULL: nothing left to free
        _PyBytes_Resize(&b.obj, cap)
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
    b.data = NULL                           # (as in `_grow`)
    _PyBytes_Resize(&b.obj, b.size)
    out = <bytes>b.obj
    Py_XDECREF(b.obj)
    b.obj = NULL
    b.data = NULL
    b.cap = b.size = 0
    return out


cdef str _take_text(Buf* b):
    return PyUnicode_DecodeASCII(b.data, b.size, NULL)
