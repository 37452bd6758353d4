# Included by lmcz_fast/_codes.pyx (one compilation unit with it and its other .pxi files): the core: a scan's bytes
# parsed (the fast path, then the normalised one), the identity written.

cdef inline int _parse_text(const unsigned char* raw, Py_ssize_t n, Parsed* p, bint cis_mode) noexcept nogil:
    return _parse_text_f(raw, n, p, cis_mode, 0)


cdef int _parse_text_f(const unsigned char* raw, Py_ssize_t n, Parsed* p, bint cis_mode, int force) noexcept nogil:
    """The core (force: see Parsed.force_serial), reading every GS placeholder made of code characters (`<GS>`, `%1D`) as text (the fast path):
    0 and p filled, or a negative E_* code with p.err_at set. R_PH_SEEN in p.repaired: such a placeholder was
    read as text, so the scan has other readings (`_readings_after` lists them)."""
    cdef Py_ssize_t lo, m, k
    cdef int rc
    cdef unsigned char c
    p.repaired = 0
    p.mapped = False
    p.cis_mode = cis_mode
    p.decoded = False
    p.ntail = 0
    p.err_at = -1
    p.force_serial = force
    if n <= 0:
        return E_EMPTY
    if n > RAW_MAX:
        return E_TOO_LONG
    m = _trim(raw, n, &lo, &p.repaired)
    p.s = raw + lo
    p.m = m
    p.base = lo
    rc = _parse_body(p)
    if rc == 0:
        return 0
    for k in range(n):
        c = raw[k]
        if c >= 0x80 or c == 92 or c == 123 or c == 91:
            break
    else:
        return rc
    # Non-ASCII, a backslash, a brace or a bracket: undo the layout and GS written as text, then parse again.
    p.repaired = 0
    p.decoded = False
    p.ntail = 0
    p.err_at = -1
    p.ph_from = PH_NONE
    p.ph_count = 0
    return _parse_normalised(raw, n, p)


cdef int _parse_normalised(const unsigned char* raw, Py_ssize_t n, Parsed* p) noexcept nogil:
    cdef Py_ssize_t lo, m
    cdef int rc = _normalise(raw, n, p)
    if rc < 0:
        return rc
    p.mapped = True
    m = _trim(p.buf, rc, &lo, &p.repaired)
    p.s = p.buf + lo
    p.m = m
    return _parse_body(p)


cdef int _parse(const unsigned char* raw, Py_ssize_t n, Parsed* p, bint cis_mode, int ph_from,
                int force=0) noexcept nogil:
    """One reading of the scan: GS placeholders made of code characters (`<GS>`, `%1D`) with ordinal ph_from and
    on are read as GS, earlier ones as text (PH_NONE: all as text, `_parse_text`). 0 and p filled, or a negative
    E_* code with p.err_at set; p.ph_count: how many such placeholders the text holds (when ph_from < PH_NONE).
    `_readings_after` tries every reading."""
    if ph_from == PH_NONE:
        return _parse_text_f(raw, n, p, cis_mode, force)
    p.repaired = 0
    p.mapped = False
    p.cis_mode = cis_mode
    p.decoded = False
    p.ntail = 0
    p.err_at = -1
    p.force_serial = force
    p.ph_from = ph_from
    p.ph_count = 0
    if n <= 0:
        return E_EMPTY
    if n > RAW_MAX:
        return E_TOO_LONG
    return _parse_normalised(raw, n, p)


cdef inline Py_ssize_t _write_identity(Parsed* p, unsigned char* out) noexcept nogil:
    cdef const unsigned char* s = p.s
    out[0] = 48
    out[1] = 49
    out[16] = 50
    out[17] = 49
    if p.kind == K_GS1:
        memcpy(out + 2, s + 2, 14)
        memcpy(out + 18, s + 18, p.serial_len)
    else:
        memcpy(out + 2, s, 14)
        memcpy(out + 18, s + 14, 7)
    return 18 + p.serial_len
