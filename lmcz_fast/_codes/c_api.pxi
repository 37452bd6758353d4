# Included by lmcz_fast/_codes.pyx (one compilation unit with it and its other .pxi files): the C contract of _codes.pxd
# (cut_identity, cut_readings, cut_check), for _probe and the bulk paths.

cdef Py_ssize_t cut_identity(const unsigned char* raw, Py_ssize_t n, unsigned char* out) noexcept nogil:
    cdef Parsed p
    cdef int rc
    p.cut_ok = False
    rc = _primary(raw, n, &p, False)
    if rc < 0:
        return rc
    return _write_identity(&p, out)


cdef Py_ssize_t cut_cis_identity(const unsigned char* raw, Py_ssize_t n, unsigned char* out) noexcept nogil:
    cdef Parsed p
    cdef int rc
    p.cut_ok = False
    rc = _primary(raw, n, &p, True)
    if rc < 0:
        return rc
    return _write_identity(&p, out)


cdef Py_ssize_t cut_readings(const unsigned char* raw, Py_ssize_t n, unsigned char* out, unsigned char* alts,
                             Py_ssize_t* alt_lens, int* n_alts) noexcept nogil:
    cdef Parsed p
    cdef int specs[READINGS_MAX]
    cdef unsigned char ids[READINGS_MAX * IDENTITY_MAX]
    cdef Py_ssize_t lens[READINGS_MAX]
    cdef int rc
    p.cut_ok = False
    rc = _readings(raw, n, &p, specs, ids, lens)
    if rc == 0:
        n_alts[0] = 0
        return _write_identity(&p, out)
    if rc < 0:
        n_alts[0] = 0
        return rc
    return _put_readings(rc, ids, lens, out, alts, alt_lens, n_alts)


cdef inline void _facts_of(Parsed* p, CodeFacts* facts) noexcept nogil:
    """What a verdict needs of a parsed code besides its identity: its kind, its CIS as CRPT prints it, its mrp."""
    cdef const unsigned char* s = p.s
    facts.kind = p.kind
    if p.kind == K_GS1:
        facts.cis_len = 18 + p.serial_len
    else:
        facts.cis_len = 21
    memcpy(facts.cis, s, <size_t>facts.cis_len)
    facts.mrp = _mrp_at(s, p.kind, p.ntail, p.ai_at, p.ai_len, p.val_at, p.val_len)


cdef Py_ssize_t cut_check(const unsigned char* raw, Py_ssize_t n, unsigned char* out, unsigned char* alts,
                          Py_ssize_t* alt_lens, int* n_alts, bint tail_cut, CodeFacts* facts) noexcept nogil:
    cdef Parsed p
    cdef int specs[READINGS_MAX]
    cdef unsigned char ids[READINGS_MAX * IDENTITY_MAX]
    cdef Py_ssize_t lens[READINGS_MAX]
    cdef int rc
    p.cut_ok = tail_cut
    facts.kind = 0
    rc = _readings(raw, n, &p, specs, ids, lens)
    if rc == 0:
        n_alts[0] = 0
        _facts_of(&p, facts)
        return _write_identity(&p, out)
    if rc < 0:
        n_alts[0] = 0
        return rc
    return _put_readings(rc, ids, lens, out, alts, alt_lens, n_alts)
