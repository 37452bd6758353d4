# Included by lmcz_fast/_codes.pyx (one compilation unit with it and its other .pxi files): the Python entry points:
# identity_of, parse_code, readings_of, reading_error.

def identity_of(raw, *, bint cis=False):
    """The canonical identity bytes (`01` + GTIN + `21` + serial) of a scan; raises CodeError.

    Byte for byte what `cut_identity` writes (`cut_cis_identity` with cis=True): the bulk paths use this.
    """
    cdef Parsed p
    cdef unsigned char out[IDENTITY_MAX]
    cdef int rc
    p.cut_ok = False
    raw = _coerce(raw)
    rc = _run(raw, &p, cis)
    if rc < 0:
        _raise_for(rc, &p, raw)
    return PyBytes_FromStringAndSize(<char*>out, _write_identity(&p, out))


def parse_code(raw, *, bint cis=False):
    """Parse what a scanner or till sent (str or bytes) into a MarkingCode; raises CodeError.

    cis=True reads a CIS line (a blocklist entry, a printed CIS): without a GS, everything after AI 21 is the
    serial. By default a GS-less scan is read as a scanner's, whose GS may be lost (see docs/codes.md).
    """
    cdef Parsed p
    cdef int rc
    p.cut_ok = False
    raw = _coerce(raw)
    rc = _run(raw, &p, cis)
    if rc < 0:
        _raise_for(rc, &p, raw)
    return _code(&p)


cdef MarkingCode _code(Parsed* p):
    cdef MarkingCode mc = MarkingCode.__new__(MarkingCode)
    cdef Py_ssize_t k
    mc._s = PyBytes_FromStringAndSize(<const char*>p.s, p.m)
    mc._kind = p.kind
    mc._serial_len = p.serial_len
    mc._ntail = p.ntail
    mc._repaired = p.repaired & ~R_PH_SEEN
    for k in range(p.ntail):
        mc._ai_at[k] = p.ai_at[k]
        mc._ai_len[k] = p.ai_len[k]
        mc._val_at[k] = p.val_at[k]
        mc._val_len[k] = p.val_len[k]
    return mc


def readings_of(raw, *, bint tail_cut=False):
    """Every code a scan can be read as, the most likely first (that is `parse_code(raw)`); raises CodeError.

    `tail_cut=True` (the service's checks) also reads a scan whose end cut a tail AI short after a GS (a client
    that cuts every code to 31 characters cuts a beer code inside `93`, a tobacco block inside `8005`): the serial
    ended at that GS, so the identity is whole; the cut AI is dropped (not guessed) and `repaired` names
    `tail_cut`. Without a GS before the cut (a lost GS) the scan is refused as before (docs/codes.md).

    Usually one. A scan holding a GS placeholder made of code characters (`<GS>`, `%1D`) is also read with the
    placeholder as serial text, a scan the parser split at a lost GS also as its bare CIS (everything after
    AI 21 as the serial), and a GS-less scan whose end may have cut a tail short also as a group's serial before
    that tail (without the flag such a scan is refused when no other reading has a group's serial length; with it,
    that cut reading comes first: docs/codes.md, "A lost GS and a cut"). A check must look up every reading: the code is blocked when any reading is. At most
    `READINGS_MAX` readings; a scan with more is refused (`ambiguous_serial`). See docs/codes.md.
    """
    cdef Parsed p
    cdef const unsigned char* data
    cdef Py_ssize_t n
    cdef int specs[READINGS_MAX]
    cdef unsigned char ids[READINGS_MAX * IDENTITY_MAX]
    cdef Py_ssize_t lens[READINGS_MAX]
    cdef int rc, k
    p.cut_ok = tail_cut
    raw = _coerce(raw)
    rc = _run_readings(raw, &p, &data, &n, specs, ids, lens)
    if rc == 0:
        return (_code(&p),)
    if rc < 0:
        _raise_for(rc, &p, raw)
    out = []
    for k in range(rc):
        _parse_spec(data, n, &p, specs[k])
        out.append(_code(&p))
    return tuple(out)


def reading_error(raw, *, bint tail_cut=False):
    """The `CodeError` `readings_of(raw, tail_cut=tail_cut)` raises, made but not raised, or None when the scan
    reads. A batch keeps its unreadable scans' errors: one never raised carries no traceback (whose frames would
    keep the caller's locals alive) and costs no raise and catch. The parse is `readings_of`'s own path
    (`_run_readings`)."""
    cdef Parsed p
    cdef const unsigned char* data
    cdef Py_ssize_t n
    cdef int specs[READINGS_MAX]
    cdef unsigned char ids[READINGS_MAX * IDENTITY_MAX]
    cdef Py_ssize_t lens[READINGS_MAX]
    cdef int rc
    p.cut_ok = tail_cut
    raw = _coerce(raw)
    rc = _run_readings(raw, &p, &data, &n, specs, ids, lens)
    if rc >= 0:
        return None
    return _error_for(rc, &p, raw)


def _cut_repeatedly(raw, Py_ssize_t repeat, *, bint cis=False):
    """Run cut_identity (cut_cis_identity with cis=True) `repeat` times on one scan, with no Python in the loop; for
    benches measuring its cost and tests reaching the C entry points.

    Returns the identity bytes (or raises CodeError), so a bench can assert what it timed.
    """
    cdef bytes data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), r, got = 0
    cdef unsigned char out[IDENTITY_MAX]
    with nogil:
        if cis:
            for r in range(repeat):
                got = cut_cis_identity(s, n, out)
        else:
            for r in range(repeat):
                got = cut_identity(s, n, out)
    if got < 0:
        raise _error(<int>got, -1)
    return PyBytes_FromStringAndSize(<char*>out, got)
