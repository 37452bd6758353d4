# lmcz_fast/_probe.pyx, included: raw scans cut to identities, bulk keys and hashes.

# --------------------------------------------------------------------------------------------------------------
# Raw scans
# --------------------------------------------------------------------------------------------------------------

CodeError = _codes_mod.CodeError
_reason_of = _codes_mod.reason_of
_reading_error = _codes_mod.reading_error
_new_code_error = _codes_mod.code_error
cdef Py_ssize_t _E_TOO_LONG = -1 - _codes_mod.REASONS.index("too_long")
cdef Py_ssize_t _E_INVALID_UTF8 = -1 - _codes_mod.REASONS.index("invalid_utf8")
cdef Py_ssize_t _RAW_MAX = 2048     # _codes' RAW_MAX: a longer str is refused before it is encoded


cdef object _code_error(Py_ssize_t code, object raw, Py_ssize_t index, bint cis=False):
    """The ``CodeError`` for a scan ``cut_identity`` refused with ``code``: the parser's own (with the
    position), and for a batch item (``index`` >= 0) the index in the message and as ``.index``."""
    try:
        _codes_mod.parse_code(raw, cis=cis)
    except CodeError as exc:
        err = exc
    else:
        err = CodeError(_reason_of(code))
    if index >= 0:
        err = CodeError(err.reason, err.position, f"item {index}: {err}")
        err.index = index
    return err


cdef inline Py_ssize_t _cut_text(const unsigned char* s, Py_ssize_t n, uint8_t* out, uint8_t* alts,
                                 Py_ssize_t* alt_lens, int* n_alts, bint cis) noexcept nogil:
    """Cut a scan (or with ``cis`` a CIS line, one reading); for a scan, also its other readings when ``alts`` is
    given (room for READINGS_MAX - 1 identities, lengths in ``alt_lens``, how many in ``n_alts``).

    The parser decides what a scan can mean (``_codes.cut_readings``): a GS placeholder such as ``<GS>`` read as GS
    and as serial text, a lost GS recovered and the bare CIS. A check looks every reading up (as
    ``Blocklist.check`` does with ``readings_of``): the scan is blocked when any reading is.
    """
    if cis:
        return cut_cis_identity(s, n, out)
    if alts == NULL:
        return cut_identity(s, n, out)      # the most likely reading only (bulk cuts of scans)
    return cut_readings(s, n, out, alts, alt_lens, n_alts)


cdef inline Py_ssize_t _cut(object raw, uint8_t* out, uint8_t* alts=NULL, Py_ssize_t* alt_lens=NULL,
                            int* n_alts=NULL, bint cis=False) except? -0x7FFFFFFF:
    """Cut ``raw`` (str, bytes, bytearray or any buffer) to its identity in ``out``; < 0 is a reason code.
    Without ``cis``, ``alts``, ``alt_lens`` and ``n_alts`` receive the other readings (see ``_cut_text``)."""
    cdef const char* s
    cdef Py_ssize_t n, r
    cdef Py_buffer view
    if PyUnicode_Check(raw):
        if PyUnicode_IS_COMPACT_ASCII(raw):
            s = <const char*>PyUnicode_DATA(raw)
            n = PyUnicode_GET_LENGTH(raw)
        else:
            if PyUnicode_GET_LENGTH(raw) > _RAW_MAX:
                return _E_TOO_LONG
            s = _utf8_or_null(raw, &n)
            if s == NULL:
                PyErr_Clear()
                return _E_INVALID_UTF8
        return _cut_text(<const unsigned char*>s, n, out, alts, alt_lens, n_alts, cis)
    if PyBytes_Check(raw):
        return _cut_text(<const unsigned char*>PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), out, alts, alt_lens,
                         n_alts, cis)
    if PyByteArray_Check(raw):
        return _cut_text(<const unsigned char*>PyByteArray_AS_STRING(raw), PyByteArray_GET_SIZE(raw), out, alts,
                         alt_lens, n_alts, cis)
    try:
        PyObject_GetBuffer(raw, &view, PyBUF_SIMPLE)
    except TypeError:
        raise TypeError(f"a marking code must be str or bytes-like, not {type(raw).__name__}") from None
    try:
        r = _cut_text(<const unsigned char*>view.buf, view.len, out, alts, alt_lens, n_alts, cis)
    finally:
        PyBuffer_Release(&view)
    return r


def keys_and_hashes(raws, *, bint cis=True):
    """Cut every input for a bulk load: ``(keys, prefilter_keys, errors)``.

    ``keys`` are the packed LMDB keys and ``prefilter_keys`` (``array('I')``) their prefilter keys, in input
    order, for the valid inputs only; ``errors`` lists ``(index, reason, message)`` for the invalid ones.
    Inputs are read as blocklist lines (``cis=True``, ``cut_cis_identity``: a GS-less text after AI 21 is all
    serial); ``cis=False`` reads them as till scans (``cut_identity``).
    """
    cdef uint8_t ident[IDENTITY_MAX]
    cdef Py_ssize_t i = 0, r, count = 0, cap
    cdef list keys = []
    cdef list errors = []
    cdef c_array hashes = _py_array.array("I")
    if hasattr(raws, "__len__"):
        cap = len(raws)
    else:
        cap = 1024
    array_resize(hashes, cap)
    for raw in raws:
        r = _cut(raw, ident, NULL, NULL, NULL, cis)
        if r < 0:
            err = _code_error(r, raw, -1, cis)
            errors.append((i, err.reason, str(err)))
        else:
            if count == cap:
                cap = cap * 2 + 1024
                array_resize(hashes, cap)
            hashes.data.as_uints[count] = _identity_key(ident, <size_t>r)
            count += 1
            keys.append(_pack(ident, r))
        i += 1
    array_resize(hashes, count)
    return keys, hashes, errors
