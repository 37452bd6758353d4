# Included by lmcz_fast/_codes.pyx (one compilation unit with it and its other .pxi files): what Python hands the core:
# str, bytes, bytearray or a buffer, read in place.

cdef inline object _coerce(object raw):
    """raw itself if the core can read it in place (str, bytes, bytearray), else a bytes copy of its buffer."""
    if isinstance(raw, (str, bytes, bytearray)):
        return raw
    try:
        return memoryview(raw).tobytes()
    except TypeError:
        raise TypeError(f"a marking code is str or bytes, not {type(raw).__name__}") from None


cdef inline int _text(object raw, const unsigned char** data, Py_ssize_t* n, Parsed* p) except? -100:
    """The UTF-8 bytes of raw (str, bytes or bytearray, kept alive by the caller: p.s may point into them) in
    *data, *n; 0, or an error code for a str the core cannot read (p.err_at set; -2: not valid Unicode)."""
    cdef const char* s
    if isinstance(raw, str):
        if PyUnicode_GET_LENGTH(raw) > RAW_MAX:
            p.err_at = -1
            return E_TOO_LONG
        s = _as_utf8(raw, n)
        if s == NULL:
            PyErr_Clear()
            p.err_at = -2
            return E_INVALID_UTF8
        data[0] = <const unsigned char*>s
    elif isinstance(raw, bytes):
        data[0] = <const unsigned char*>PyBytes_AS_STRING(raw)
        n[0] = PyBytes_GET_SIZE(raw)
    else:
        data[0] = <const unsigned char*>PyByteArray_AS_STRING(raw)
        n[0] = PyByteArray_GET_SIZE(raw)
    return 0


cdef inline int _run(object raw, Parsed* p, bint cis) except? -100:
    """Parse the most likely reading of raw into p; return the core's code (negative: failed, p.err_at set; -2
    there: a str that is not valid Unicode)."""
    cdef const unsigned char* data
    cdef Py_ssize_t n
    cdef int rc = _text(raw, &data, &n, p)
    if rc < 0:
        return rc
    return _primary(data, n, p, cis)


cdef inline int _run_readings(object raw, Parsed* p, const unsigned char** data, Py_ssize_t* n, int* specs,
                              unsigned char* ids, Py_ssize_t* lens) except? -100:
    """`_readings` of raw (p.cut_ok set by the caller), its bytes in *data, *n for a caller that parses a listed
    reading again; a str the core cannot read is the negative code `_run` returns for it."""
    cdef int rc = _text(raw, data, n, p)
    if rc < 0:
        return rc
    return _readings(data[0], n[0], p, specs, ids, lens)


cdef inline object _error_for(int rc, Parsed* p, object raw):
    """The CodeError of a parse that failed with rc (p.err_at set by it; -2: a str that is not valid Unicode)."""
    if p.err_at == -2:
        return _utf8_error(raw)
    return _error(rc, p.err_at)


cdef inline object _raise_for(int rc, Parsed* p, object raw):
    raise _error_for(rc, p, raw)
