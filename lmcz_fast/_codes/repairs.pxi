# Included by lmcz_fast/_codes.pyx (one compilation unit with it and its other .pxi files): scanner damage undone before
# a parse: GS written as text, Base64, the Cyrillic layout, UTF-8.

cdef inline bint _only_prefix(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """Whether s[:n] is only what may come before a code: whitespace, a symbology identifier, GS (FNC1)."""
    cdef Py_ssize_t i = 0
    while i < n and (s[i] == 32 or s[i] == 9 or s[i] == 10 or s[i] == 13):
        i += 1
    if i + 3 <= n and s[i] == 93 and (CLS[s[i + 1]] & CALPHA) and (CLS[s[i + 2]] & CDIGIT):
        i += 3
    while i < n and s[i] == GS:
        i += 1
    return i == n


cdef Py_ssize_t _gs_forms(Parsed* p, Py_ssize_t d, Py_ssize_t j, unsigned int* repaired) noexcept nogil:
    """Turn GS written as text in p.buf[d:d+j] (positions in p.pos, p.pos[d+j] the end) into GS, in place; return
    the new length.

    Always: `\\u001d` and `\\x1d` (letters and hex digits in either case, one backslash or two as in JSON encoded
    twice), `{GS}` and `[GS]` (either case): a backslash, brace or bracket is no code character, so this text can
    mean nothing else. Made of code characters, `<GS>` and `%1D` (either case) may be a serial's own text: they are
    counted in p.ph_count, in order, and those from ordinal p.ph_from on become GS; earlier ones stay text. Before
    the code (nothing but whitespace, a symbology identifier and GS ahead) they are FNC1: always GS, not counted.
    """
    cdef Py_ssize_t r = d, w, end = d + j, k
    cdef unsigned char c
    cdef int ln
    cdef bint keep
    while r < end and not (CLS[p.buf[r]] & CTXT):
        r += 1
    w = r
    while r < end:
        c = p.buf[r]
        ln = 0
        keep = False
        if not (CLS[c] & CTXT):
            pass
        elif c == 92:                                  # \u001d, \x1d, \\u001d, \\x1d
            k = r + 1
            if k < end and p.buf[k] == 92:
                k += 1
            if k + 5 <= end and (p.buf[k] | 0x20) == 117 and p.buf[k + 1] == 48 and p.buf[k + 2] == 48 \
                    and p.buf[k + 3] == 49 and (p.buf[k + 4] | 0x20) == 100:
                ln = <int>(k + 5 - r)
            elif k + 3 <= end and (p.buf[k] | 0x20) == 120 and p.buf[k + 1] == 49 and (p.buf[k + 2] | 0x20) == 100:
                ln = <int>(k + 3 - r)
        elif c == 123 or c == 91:                    # {GS}, [GS]
            if r + 4 <= end and (p.buf[r + 1] | 0x20) == 103 and (p.buf[r + 2] | 0x20) == 115 \
                    and p.buf[r + 3] == (125 if c == 123 else 93):
                ln = 4
        elif CLS[c] & CPH:                           # <GS>, %1D: GS, or the serial's own characters
            ln = _ph_len(p.buf, r, end)
            if ln and not _only_prefix(p.buf + d, w - d):   # before the code it can only be FNC1
                keep = p.ph_count < p.ph_from
                p.ph_count += 1
        if ln and not keep:
            p.buf[w] = GS
            p.pos[w] = p.pos[r]
            repaired[0] |= R_ESCAPED_GS
            w += 1
            r += ln
            continue
        if ln == 0:
            ln = 1
        for k in range(ln):                          # a placeholder kept as text is copied whole
            p.buf[w] = p.buf[r]
            p.pos[w] = p.pos[r]
            w += 1
            r += 1
    p.pos[w] = p.pos[end]
    return w - d


cdef bint _unbase64(Parsed* p) noexcept nogil:
    """Some tills send the scan Base64-encoded. If p.s is Base64 (standard or URL-safe alphabet, padded or not) of
    ASCII text that starts like a code once trimmed, point p.s at that text, decoded into a part of p.buf that
    p.s does not use (positions: the Base64 character each byte ends in). Else leave p as it was.

    Only tried on a scan that starts with a letter or punctuation, which no marking code does as it stands
    (element strings and tobacco packs start with a digit).
    """
    cdef const unsigned char* s = p.s
    cdef Py_ssize_t m = p.m, end = p.m, r, w = 0, lo, n
    cdef Py_ssize_t d = 0       # where the decoded text goes in p.buf; p.s (m <= SCAN_MAX) is at one end or neither
    cdef unsigned int acc = 0, v
    cdef int bits = 0
    cdef unsigned short at
    cdef unsigned int repaired = p.repaired
    cdef int ph_count
    cdef bint mapped = p.mapped
    if p.mapped and s - p.buf <= SCAN_MAX:
        d = RAW_MAX - SCAN_MAX
    while end > 0 and s[end - 1] == 61:        # '=' padding
        end -= 1
    if m < 8 or m - end > 2 or (m != end and m % 4 != 0) or end % 4 == 1:
        return False
    for r in range(end):
        v = B64[s[r]]
        if v > 63:
            return False
        acc = ((acc << 6) | v) & 0xFFFFFF
        bits += 6
        if bits >= 8:
            bits -= 8
            at = p.pos[(s - p.buf) + r] if p.mapped else <unsigned short>(p.base + r)
            p.buf[d + w] = <unsigned char>((acc >> bits) & 0xFF)
            if p.buf[d + w] >= 0x80:
                return False
            p.pos[d + w] = at
            w += 1
    if acc & ((1u << bits) - 1):
        return False
    p.pos[d + w] = p.pos[d + w - 1] + 1
    ph_count = p.ph_count
    if mapped:
        # GS written as text inside the Base64, as outside it; not on the fast path, where such text makes the
        # parse fail (a backslash, brace or bracket) or marks the scan as having other readings (R_PH_SEEN).
        w = _gs_forms(p, d, w, &repaired)
    n = _trim(p.buf + d, w, &lo, &repaired)
    if n == 0 or not (CLS[p.buf[d + lo]] & CDIGIT):
        p.ph_count = ph_count
        return False
    p.decoded = True
    p.mapped = True
    p.repaired = repaired | R_BASE64
    p.s = p.buf + d + lo
    p.m = n
    return True


cdef inline int _utf8_len(const unsigned char* s, Py_ssize_t k, Py_ssize_t n) noexcept nogil:
    """Length of a well-formed UTF-8 sequence at s[k], or 0."""
    cdef unsigned char c = s[k]
    cdef int need, j
    cdef unsigned int cp
    if c < 0xC2:
        return 0
    if c < 0xE0:
        need = 2
        cp = c & 0x1F
    elif c < 0xF0:
        need = 3
        cp = c & 0x0F
    elif c < 0xF5:
        need = 4
        cp = c & 0x07
    else:
        return 0
    if k + need > n:
        return 0
    for j in range(1, need):
        if (s[k + j] & 0xC0) != 0x80:
            return 0
        cp = (cp << 6) | (s[k + j] & 0x3F)
    if (need == 3 and (cp < 0x800 or (0xD800 <= cp <= 0xDFFF))) or (need == 4 and (cp < 0x10000 or cp > 0x10FFFF)):
        return 0
    return need


cdef int _normalise(const unsigned char* raw, Py_ssize_t n, Parsed* p) noexcept nogil:
    """Slow path: undo the Russian layout and GS written as text into p.buf, with positions in p.pos."""
    cdef Py_ssize_t k = 0, j = 0, ci = 0
    cdef bint ru = False
    cdef unsigned char c
    cdef int ln
    cdef unsigned int cp
    for k in range(n - 1):
        if (raw[k] == 0xD0 or raw[k] == 0xD1) and (raw[k + 1] & 0xC0) == 0x80:
            ru = True
            break
    k = 0
    while k < n:
        c = raw[k]
        if c < 0x80:
            if ru:
                if CLS[c] & CALPHA:
                    p.err_at = ci
                    return E_MIXED_LAYOUT
                # The Russian layout's punctuation, back to the US key that typed it.
                if c == 46:
                    c = 47          # . <- /
                elif c == 44:
                    c = 63          # , <- ?
                elif c == 63:
                    c = 38          # ? <- &
                elif c == 34:
                    c = 64          # " <- @
                elif c == 59:
                    c = 36          # ; <- $
                elif c == 58:
                    c = 94          # : <- ^
                elif c == 47:
                    c = 124         # / <- |
            p.buf[j] = c
            p.pos[j] = <unsigned short>ci
            j += 1
            k += 1
            ci += 1
            continue
        ln = _utf8_len(raw, k, n)
        if ln == 0:
            p.err_at = ci
            return E_INVALID_UTF8
        if ln == 2:
            cp = ((c & 0x1F) << 6) | (raw[k + 1] & 0x3F)
            if 0x400 <= cp < 0x460 and CYR[cp - 0x400]:
                p.buf[j] = CYR[cp - 0x400]
                p.pos[j] = <unsigned short>ci
                p.repaired |= R_CYRILLIC
                j += 1
                k += 2
                ci += 1
                continue
        elif ln == 3 and c == 0xE2 and raw[k + 1] == 0x90 and raw[k + 2] == 0x9D:
            p.buf[j] = GS               # U+241D SYMBOL FOR GROUP SEPARATOR, what some tools show and copy for GS
            p.pos[j] = <unsigned short>ci
            p.repaired |= R_ESCAPED_GS
            j += 1
            k += 3
            ci += 1
            continue
        p.err_at = ci
        return E_BAD_CHARACTER
    p.pos[j] = <unsigned short>ci
    return <int>_gs_forms(p, 0, j, &p.repaired)
