# Included by lmcz_fast/_codes.pyx (one compilation unit with it and its other .pxi files): the forms of a code: a GS1
# element string, a tobacco pack, its CIS.

cdef int _parse_gs1(Parsed* p) noexcept nogil:
    cdef const unsigned char* s = p.s
    cdef unsigned int xm
    cdef Py_ssize_t m = p.m, i, seg_end, L, S, smax, chosen
    cdef int count, plausible, plausible_s
    cdef bint has_gs, bare_known
    for i in range(2, 16 if m > 16 else m):
        if not (CLS[s[i]] & CDIGIT):
            return _fail(p, E_BAD_CHARACTER if not (CLS[s[i]] & C82) else E_UNKNOWN_FORMAT, i)
    if m < 16:
        return _fail(p, E_TRUNCATED, m)
    if not _gtin_ok(s + 2):
        return _fail(p, E_BAD_GTIN_CHECK_DIGIT, 15)
    if m < 18 or s[16] != 50 or s[17] != 49:       # "21"
        return _fail(p, E_MISSING_SERIAL, 16 if m >= 18 else m)
    i = _run82(s, 18, m)
    while i < m and s[i] != GS:
        if not (CLS[s[i]] & C82):
            return _fail(p, E_BAD_CHARACTER, i)
        if _ph_len(s, i, m):               # a code character that may start a GS placeholder
            p.repaired |= R_PH_SEEN
        i = _run82(s, i + 1, m)
    seg_end = i
    L = seg_end - 18
    has_gs = seg_end < m
    if L == 0:
        return _fail(p, E_MISSING_SERIAL, 18)
    p.kind = K_GS1
    if p.force_serial:
        return _forced(p, p.force_serial, seg_end, has_gs)
    if has_gs and L <= SERIAL_MAX and _known_serial(L):
        p.serial_len = <int>L
        return _parse_tail(p, seg_end, 0, False)
    if not has_gs and L <= SERIAL_MAX and L < 7:
        p.serial_len = <int>L      # too short to hide a tail
        p.ntail = 0
        return 0
    if not has_gs and L <= SERIAL_MAX and p.cis_mode:
        p.serial_len = <int>L      # a CIS line: no tail unless a GS starts one
        p.ntail = 0
        return 0
    # A GS is missing after the serial (or the scan is a bare CIS): list the readings the structure allows.
    count = 0
    plausible = 0
    plausible_s = 0
    chosen = 0
    bare_known = False
    if L <= SERIAL_MAX:
        count = 1
        chosen = L
        bare_known = _known_serial(L)
    smax = SERIAL_MAX if L - 6 > SERIAL_MAX else L - 6
    for S in range(1, smax + 1):
        if _parse_tail(p, 18 + S, seg_end, True) == 0:
            count += 1
            chosen = S
            if _known_serial(S) and _known_tail(p):
                plausible += 1
                plausible_s = <int>S
    # A group's serial followed by the start of a group's tail that the scan's end cut short (a lost GS and a client
    # that cuts codes to 31 characters): another reading, and when the lost-GS rule found nothing of a group's
    # length, the likeliest one. Blocklist lines (cis_mode) keep their rule.
    xm = 0
    if not p.cis_mode:
        for S in range(6, 21 if L > 21 else L):
            if _known_serial(S) and _cut_tail(s, 18 + S, m):
                xm |= 1u << S
    if count == 0:
        if xm:
            if not p.cut_ok:
                return _fail(p, E_TRUNCATED, m)
            return _cut_reading(p, xm, 0, seg_end, has_gs)
        if L > SERIAL_MAX:
            return _fail(p, E_SERIAL_TOO_LONG, 18 + SERIAL_MAX)
        return _fail(p, E_BAD_TAIL, seg_end)
    if count > 1:
        # Several readings. One with a product group's serial length and tail wins; a scanner reads a DataMatrix,
        # which always carries a tail, so it also beats the bare reading (parse blocklist lines with cis=True,
        # where the bare reading is the right one). Else a bare reading of a group's length wins over tails no
        # group uses. Anything else is refused.
        if plausible == 1:
            chosen = plausible_s
        elif plausible == 0 and bare_known:
            chosen = L
        else:
            return _fail(p, E_AMBIGUOUS_SERIAL, 18)
    if xm:
        if not _known_serial(chosen):
            # The only reading has no group's serial length, a group's serial with a cut tail fits: a cut scan.
            if not p.cut_ok:
                return _fail(p, E_TRUNCATED, m)
            return _cut_reading(p, xm, 1u << chosen, seg_end, has_gs)
        p.x_mask = xm       # the cut readings stand beside this one (readings_of, cut_readings)
    p.serial_len = <int>chosen
    if chosen == L:
        if has_gs:
            return _parse_tail(p, seg_end, 0, False)
        p.ntail = 0
        return 0
    p.repaired |= R_LOST_GS
    return _parse_tail(p, 18 + chosen, seg_end, True)


cdef int _parse_tobacco(Parsed* p) noexcept nogil:
    """A 29-character pack code or its 21-character CIS: 1 if it reads as one, 0 if it is not that shape (no
    14 leading digits), or a negative code for a tobacco-shaped scan that is broken."""
    cdef const unsigned char* s = p.s
    cdef Py_ssize_t k
    for k in range(14):
        if not (CLS[s[k]] & CDIGIT):
            return 0
    # No look for GS placeholders here: a pack read as one is exactly 21 or 29 code characters, and with a
    # placeholder made GS it is no other code: not a pack (another length, or trailing placeholders trimmed to the
    # same pack's CIS), not an element string (its first 16 characters are the ones _gs1_head refused, or hold
    # the GS).
    for k in range(14, p.m):
        if not (CLS[s[k]] & C82):
            return 0 if s[k] == GS else _fail(p, E_BAD_CHARACTER, k)
    if not _gtin_ok(s):
        return _fail(p, E_BAD_GTIN_CHECK_DIGIT, 13)
    p.serial_len = 7
    if p.m == 29:
        p.kind = K_TOBACCO_PACK
        p.ntail = 2
        p.ai_at[0] = 21
        p.ai_len[0] = 0
        p.val_at[0] = 21
        p.val_len[0] = 4
        p.ai_at[1] = 25
        p.ai_len[1] = 0
        p.val_at[1] = 25
        p.val_len[1] = 4
    else:
        p.kind = K_TOBACCO_CIS
        p.ntail = 0
    return 1


cdef inline bint _gs1_head(const unsigned char* s) noexcept nogil:
    """Whether s (at least 16 characters) starts "01" + a GTIN with a valid check digit."""
    cdef int k
    if s[0] != 48 or s[1] != 49:
        return False
    for k in range(2, 16):
        if not (CLS[s[k]] & CDIGIT):
            return False
    return _gtin_ok(s + 2)


cdef int _parse_body(Parsed* p) noexcept nogil:
    cdef const unsigned char* s = p.s
    cdef Py_ssize_t m = p.m
    cdef int rc
    p.x_mask = 0
    if m == 0:
        return _fail(p, E_EMPTY, -1)
    if m > SCAN_MAX:
        return _fail(p, E_TOO_LONG, -1)
    # A 29/21-character run whose first 14 characters are a valid GTIN is a tobacco pack (or its CIS), unless it
    # starts like an element string ("01" + a valid GTIN), the likelier reading then: a tobacco GTIN starting
    # "01" whose characters 3..16 also pass the check digit is a 1-in-10 coincidence on a rare import.
    if (m == 29 or m == 21) and not _gs1_head(s):
        rc = _parse_tobacco(p)
        if rc == 1:
            return 0
        if rc < 0 and not (s[0] == 48 and s[1] == 49):
            return rc
    if m < 2 or s[0] != 48 or s[1] != 49:
        if not (CLS[s[0]] & C82):
            return _fail(p, E_BAD_CHARACTER, 0)
        if not (CLS[s[0]] & CDIGIT) and not p.decoded and _unbase64(p):
            return _parse_body(p)
        return _fail(p, E_UNKNOWN_FORMAT, 0)
    return _parse_gs1(p)
