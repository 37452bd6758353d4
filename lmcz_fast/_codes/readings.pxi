# Included by lmcz_fast/_codes.pyx (one compilation unit with it and its other .pxi files): every reading of one scan,
# the most likely first.

# A reading is (placeholder variant, CIS mode, forced serial length), kept as one int:
# (variant * 2 + cis) * 32 + serial length (0: the parser's own choice).
cdef inline int _spec(int ph_from, bint cis, int force=0) noexcept nogil:
    return (ph_from * 2 + (1 if cis else 0)) * 32 + force


cdef inline int _parse_spec(const unsigned char* raw, Py_ssize_t n, Parsed* p, int spec) noexcept nogil:
    return _parse(raw, n, p, (spec >> 5) & 1, spec >> 6, spec & 31)


cdef int _add_alts(const unsigned char* raw, Py_ssize_t n, Parsed* p, int v, int count, int* specs,
                   unsigned char* ids, Py_ssize_t* lens) noexcept nogil:
    """After the reading of variant v in p: its bare CIS if it was split at a lost GS, then the serial lengths in
    p.x_mask (a tail cut short after a lost GS, see _cut_tail). The new count, or -1 when there are too many."""
    cdef unsigned int mask = p.x_mask
    cdef int S
    if (p.repaired & R_LOST_GS) and _parse(raw, n, p, True, v) == 0:
        count = _add_reading(p, _spec(v, True), count, specs, ids, lens)
        if count < 0:
            return count
    S = 1
    while mask >> S:
        if (mask >> S) & 1 and _parse(raw, n, p, False, v, S) == 0:
            count = _add_reading(p, _spec(v, False, S), count, specs, ids, lens)
            if count < 0:
                return count
        S += 1
    return count


cdef int _add_reading(Parsed* p, int spec, int count, int* specs, unsigned char* ids,
                      Py_ssize_t* lens) noexcept nogil:
    """List p's identity as reading `spec` unless an earlier reading has it; the new count, or -1 when full."""
    cdef unsigned char tmp[IDENTITY_MAX]
    cdef Py_ssize_t n = _write_identity(p, tmp)
    cdef int k
    for k in range(count):
        if lens[k] == n and memcmp(ids + k * IDENTITY_MAX, tmp, <size_t>n) == 0:
            return count
    if count == READINGS_MAX:
        return -1
    memcpy(ids + count * IDENTITY_MAX, tmp, <size_t>n)
    lens[count] = n
    specs[count] = spec
    return count + 1


cdef int _readings_after(const unsigned char* raw, Py_ssize_t n, Parsed* p, bint cis, int rc, int* specs,
                         unsigned char* ids, Py_ssize_t* lens) noexcept nogil:
    """Every reading of a scan that parses, the most likely first, each identity once; p holds the all-text
    reading's parse (`_parse(raw, n, p, cis, PH_NONE)`), whose result is rc. Returns how many readings (>= 1),
    or the negative error code of the most likely reading (p.err_at set). p is left in an unspecified state.

    A scan has several readings when it holds GS placeholders made of code characters (`<GS>`, `%1D`): with K of
    them, the placeholders from the v-th on are GS and the earlier ones serial text, for v = 0..K (v = K: all
    text). A GS ends the serial, so these are all the serials the text can hold. Most likely first: all GS, then
    fewer, then none. Each reading the parser split at a lost GS also has its bare-CIS reading (cis mode: all of
    the text after AI 21 is the serial), listed after it. A CIS line (cis) has one reading, the first that parses
    in the order: all text, all GS, fewer GS.
    """
    cdef int rc0, K, v, i, last, count = 0, err_rc
    cdef Py_ssize_t err_at
    if rc == 0 and (cis or not (p.repaired & R_PH_SEEN)):
        count = _add_reading(p, _spec(PH_NONE, cis), 0, specs, ids, lens)
        if not cis and ((p.repaired & R_LOST_GS) or p.x_mask):
            count = _add_alts(raw, n, p, PH_NONE, count, specs, ids, lens)
            if count < 0:
                return _fail(p, E_AMBIGUOUS_SERIAL, -1)
        return count
    rc0 = _parse(raw, n, p, cis, 0)
    K = p.ph_count
    if K > PH_MAX:
        return _fail(p, E_AMBIGUOUS_SERIAL, -1)
    err_rc = rc0
    err_at = p.err_at
    if K == 0:
        last = 1        # the all-text reading failed: only GS written as text inside Base64 may still read
    elif cis:
        last = K        # all GS, fewer GS (the all-text reading failed, or it would have been taken)
    else:
        last = K + 1    # all GS, fewer GS, then all text
    for i in range(last):
        v = i if i < K or K == 0 else PH_NONE
        if i > 0:
            rc0 = _parse(raw, n, p, cis, v)
        if rc0 < 0:
            continue
        count = _add_reading(p, _spec(v, cis), count, specs, ids, lens)
        if count < 0:
            return _fail(p, E_AMBIGUOUS_SERIAL, -1)
        if cis:
            return count
        if (p.repaired & R_LOST_GS) or p.x_mask:
            count = _add_alts(raw, n, p, v, count, specs, ids, lens)
            if count < 0:
                return _fail(p, E_AMBIGUOUS_SERIAL, -1)
    if count == 0:
        p.err_at = err_at
        return err_rc
    return count


cdef inline int _readings(const unsigned char* raw, Py_ssize_t n, Parsed* p, int* specs, unsigned char* ids,
                          Py_ssize_t* lens) noexcept nogil:
    """Every reading of a scan (p.cut_ok set by the caller): the one path of readings_of, reading_error,
    cut_readings and cut_check. 0 when the scan has one reading, left parsed in p (the fast path: nothing listed);
    else how many readings `_readings_after` listed in specs, ids and lens (>= 1), or a negative error code
    (p.err_at set)."""
    cdef int rc = _parse_text(raw, n, p, False)
    if rc == 0 and not (p.repaired & (R_PH_SEEN | R_LOST_GS)) and not p.x_mask:
        return 0
    return _readings_after(raw, n, p, False, rc, specs, ids, lens)


cdef inline Py_ssize_t _put_readings(int count, const unsigned char* ids, const Py_ssize_t* lens, unsigned char* out,
                                     unsigned char* alts, Py_ssize_t* alt_lens, int* n_alts) noexcept nogil:
    """The `count` readings `_readings` listed, as cut_readings hands them out: the first into out (its length
    returned), the others into alts and alt_lens, their number in *n_alts."""
    cdef int k
    memcpy(out, ids, <size_t>lens[0])
    for k in range(1, count):
        memcpy(alts + (k - 1) * IDENTITY_MAX, ids + k * IDENTITY_MAX, <size_t>lens[k])
        alt_lens[k - 1] = lens[k]
    n_alts[0] = count - 1
    return lens[0]


cdef inline int _primary(const unsigned char* raw, Py_ssize_t n, Parsed* p, bint cis) noexcept nogil:
    """Parse the most likely reading of raw into p: 0, or the negative error code (p.err_at set)."""
    cdef int rc = _parse_text(raw, n, p, cis)
    if rc == 0 and (cis or not (p.repaired & R_PH_SEEN)):
        return 0
    return _primary_after(raw, n, p, cis, rc)


cdef int _primary_after(const unsigned char* raw, Py_ssize_t n, Parsed* p, bint cis, int rc) noexcept nogil:
    """_primary's rare part: the all-text reading (in p, result rc) failed or held a GS placeholder."""
    cdef int specs[READINGS_MAX]
    cdef unsigned char ids[READINGS_MAX * IDENTITY_MAX]
    cdef Py_ssize_t lens[READINGS_MAX]
    rc = _readings_after(raw, n, p, cis, rc, specs, ids, lens)
    if rc < 0:
        return rc
    return _parse_spec(raw, n, p, specs[0])
