# Included by lmcz_fast/_codes.pyx (one compilation unit with it and its other .pxi files): GS1 elements: the GTIN's
# check digit, GS placeholders, trimming, AIs and the tail after the serial.

cdef inline bint _gtin_ok(const unsigned char* g) noexcept nogil:
    cdef int k, total = 0
    for k in range(0, 13, 2):
        total += 3 * (g[k] - 48)
    for k in range(1, 13, 2):
        total += g[k] - 48
    return (10 - total % 10) % 10 == g[13] - 48


cdef inline Py_ssize_t _run82(const unsigned char* s, Py_ssize_t i, Py_ssize_t m) noexcept nogil:
    """The end of the run of code characters from s[i] that cannot start a GS placeholder (see C82F)."""
    while i < m and (CLS[s[i]] & C82F):
        i += 1
    return i


cdef inline int _ph_len(const unsigned char* s, Py_ssize_t i, Py_ssize_t m) noexcept nogil:
    """Length of a GS placeholder made of code characters at s[i]: `<GS>` (4) or `%1D` (3), letters in either case;
    0 if there is none. Such text may be a serial's own characters, so a scan holding it has two readings."""
    cdef unsigned char c = s[i]
    if c == 60:         # <GS>
        if i + 4 <= m and (s[i + 1] | 0x20) == 103 and (s[i + 2] | 0x20) == 115 and s[i + 3] == 62:
            return 4
    elif c == 37:       # %1D
        if i + 3 <= m and s[i + 1] == 49 and (s[i + 2] | 0x20) == 100:
            return 3
    return 0


cdef inline Py_ssize_t _trim(const unsigned char* s, Py_ssize_t n, Py_ssize_t* lo_out,
                             unsigned int* repaired) noexcept nogil:
    """Strip what scanners add around a code; return the remaining length, its start in *lo_out."""
    cdef Py_ssize_t lo = 0, hi = n
    cdef unsigned char c
    while hi > lo:
        c = s[hi - 1]
        if c == 10 or c == 13:
            repaired[0] |= R_NEWLINE
        elif c == 32 or c == 9:
            repaired[0] |= R_WHITESPACE
        elif c == GS:
            repaired[0] |= R_TRAILING_GS
        else:
            break
        hi -= 1
    while lo < hi and (s[lo] == 32 or s[lo] == 9 or s[lo] == 10 or s[lo] == 13):
        repaired[0] |= R_WHITESPACE
        lo += 1
    if hi - lo >= 3 and s[lo] == 93 and (CLS[s[lo + 1]] & CALPHA) and (CLS[s[lo + 2]] & CDIGIT):
        repaired[0] |= R_SYMBOLOGY
        lo += 3
    while lo < hi and s[lo] == GS:
        repaired[0] |= R_FNC1
        lo += 1
    lo_out[0] = lo
    return hi - lo


cdef inline int _ai_spec(const unsigned char* s, Py_ssize_t i, Py_ssize_t m,
                         int* ai_len, int* fixed, int* maxlen, bint* numeric) noexcept nogil:
    """Length of the AI at s[i], and its value's fixed length (0: variable, up to *maxlen). 0 if unknown.

    Fixed lengths are GS1's predefined-length AIs, the numeric fixed-format AIs (8005, 7003, ...) and CRPT's
    fixed 4-character 91 and 93.
    """
    if i + 2 > m or not (CLS[s[i]] & CDIGIT) or not (CLS[s[i + 1]] & CDIGIT):
        return 0
    cdef int a = (s[i] - 48) * 10 + (s[i + 1] - 48)
    cdef int a4 = -1
    if i + 4 <= m and (CLS[s[i + 2]] & CDIGIT) and (CLS[s[i + 3]] & CDIGIT):
        a4 = a * 100 + (s[i + 2] - 48) * 10 + (s[i + 3] - 48)
    ai_len[0] = 2
    fixed[0] = 0
    maxlen[0] = 0
    numeric[0] = True
    if a == 0:
        fixed[0] = 18
    elif a == 1 or a == 2 or a == 3:
        fixed[0] = 14
    elif a == 4:
        fixed[0] = 16
    elif 11 <= a <= 19:
        fixed[0] = 6
    elif a == 20:
        fixed[0] = 2
    elif a == 10 or a == 21 or a == 22:
        maxlen[0] = 20
        numeric[0] = False
    elif a == 23 or a == 24 or a == 25:
        if i + 3 > m or not (CLS[s[i + 2]] & CDIGIT):
            return 0
        ai_len[0] = 3
        maxlen[0] = 30
        numeric[0] = False
    elif a == 30 or a == 37:
        maxlen[0] = 8
    elif 31 <= a <= 36:
        if a4 < 0:
            return 0
        ai_len[0] = 4
        fixed[0] = 6
    elif a == 39:
        if a4 < 0:
            return 0
        ai_len[0] = 4
        maxlen[0] = 18
    elif 40 <= a <= 42:
        if i + 3 > m or not (CLS[s[i + 2]] & CDIGIT):
            return 0
        ai_len[0] = 3
        if a == 41:
            fixed[0] = 13
        else:
            maxlen[0] = 30
            numeric[0] = False
    elif a == 43 or a == 70 or a == 72 or (80 <= a <= 82):
        if a4 < 0:
            return 0
        ai_len[0] = 4
        if a4 == 7003:
            fixed[0] = 10
        elif a4 == 7006 or a4 == 8005:
            fixed[0] = 6
        elif a4 == 7001:
            fixed[0] = 13
        elif a4 == 8001:
            fixed[0] = 14
        elif a4 == 8006 or a4 == 8017 or a4 == 8018 or a4 == 8026:
            fixed[0] = 18
        else:
            maxlen[0] = 90 if a >= 80 else 70
            numeric[0] = False
    elif a == 71:
        if i + 3 > m or not (CLS[s[i + 2]] & CDIGIT):
            return 0
        ai_len[0] = 3
        maxlen[0] = 20
        numeric[0] = False
    elif a == 91 or a == 93:
        fixed[0] = 4
        numeric[0] = False
    elif 90 <= a <= 99:
        maxlen[0] = 90
        numeric[0] = False
    else:
        return 0
    return 1


cdef inline int _ai_code(const unsigned char* s, int at, int n) noexcept nogil:
    cdef int v = 0, k
    for k in range(n):
        v = v * 10 + (s[at + k] - 48)
    return v + n * 100000     # keeps AIs of different lengths apart: "10" -> 200010, "240" -> 300240


cdef inline bint _ai_cut(const unsigned char* s, Py_ssize_t i, Py_ssize_t m) noexcept nogil:
    """Whether s[i:m] (1 to 3 digits, ending the scan) can be the start of an AI the scan's end cut short."""
    cdef Py_ssize_t k
    if m - i > 3:
        return False
    for k in range(i, m):
        if not (CLS[s[k]] & CDIGIT):
            return False
    return True


cdef int _parse_tail(Parsed* p, Py_ssize_t i, Py_ssize_t strict_until, bint recovering) noexcept nogil:
    """Parse AIs from s[i] to the end into p's tail arrays.

    AIs that start before strict_until sit where a GS was lost: they must have a fixed length (or be a 92 of
    exactly 44 or 88 characters ending the lost-GS stretch). When recovering, failures are just "not this
    reading" and the 91/92 pair must be complete.
    """
    cdef const unsigned char* s = p.s
    cdef Py_ssize_t m = p.m, v, e
    cdef int n = 0, ai_len, fixed, maxlen, k, code, c91 = 0, c92 = 0
    cdef bint numeric
    cdef int codes[TAIL_MAX]
    while i < m:
        if s[i] == GS:
            i += 1
            continue
        if not _ai_spec(s, i, m, &ai_len, &fixed, &maxlen, &numeric):
            if p.cut_ok and not recovering and _ai_cut(s, i, m):
                p.repaired |= R_TAIL_CUT
                break
            return _fail(p, E_UNKNOWN_AI, i)
        if n == TAIL_MAX:
            return _fail(p, E_BAD_TAIL, i)
        v = i + ai_len
        code = _ai_code(s, i, ai_len)
        if code == AI_01 or code == AI_21:
            return _fail(p, E_DUPLICATE_AI, i)
        for k in range(n):
            if codes[k] == code:
                return _fail(p, E_DUPLICATE_AI, i)
        if fixed:
            e = v + fixed
            if e > m:
                if p.cut_ok and not recovering:
                    p.repaired |= R_TAIL_CUT       # the scan ends inside this value: it is dropped, not guessed
                    break
                return _fail(p, E_TRUNCATED, m)
            if numeric:
                for k in range(v, e):
                    if not (CLS[s[k]] & CDIGIT):
                        return _fail(p, E_BAD_TAIL if (CLS[s[k]] & C82) or s[k] == GS else E_BAD_CHARACTER, k)
            else:
                for k in range(v, e):
                    if not (CLS[s[k]] & C82F):
                        if not (CLS[s[k]] & C82):
                            return _fail(p, E_BAD_TAIL if s[k] == GS else E_BAD_CHARACTER, k)
                        if _ph_len(s, k, m):
                            p.repaired |= R_PH_SEEN
        else:
            e = v
            if numeric:
                while e < m and (CLS[s[e]] & CDIGIT):
                    e += 1
            else:
                e = _run82(s, v, m)
                while e < m and (CLS[s[e]] & CPH):      # a code character that may start a GS placeholder
                    if _ph_len(s, e, m):
                        p.repaired |= R_PH_SEEN
                    e = _run82(s, e + 1, m)
            if e < m and s[e] != GS:
                return _fail(p, E_BAD_TAIL if (CLS[s[e]] & C82) else E_BAD_CHARACTER, e)
            if i < strict_until:
                if not (code == AI_92 and (e - v == 44 or e - v == 88)):
                    return _fail(p, E_BAD_TAIL, i)
            if e == v or e - v > maxlen:
                return _fail(p, E_BAD_TAIL, i)
        if code == AI_91:
            c91 = 1
        elif code == AI_92:
            c92 = 1
        codes[n] = code
        p.ai_at[n] = <unsigned short>i
        p.ai_len[n] = <unsigned char>ai_len
        p.val_at[n] = <unsigned short>v
        p.val_len[n] = <unsigned short>(e - v)
        n += 1
        i = e
    if recovering and c91 != c92:
        return _fail(p, E_BAD_TAIL, m)
    p.ntail = n
    return 0


cdef inline bint _known_tail(Parsed* p) noexcept nogil:
    """Whether the parsed tail is one CRPT's product groups use: 91+92, 93, 93+3103, 3103+93, 8005+93."""
    cdef int a0, a1
    if p.ntail == 0 or p.ntail > 2:
        return False
    a0 = _ai_code(p.s, p.ai_at[0], p.ai_len[0])
    if p.ntail == 1:
        return a0 == AI_93
    a1 = _ai_code(p.s, p.ai_at[1], p.ai_len[1])
    return ((a0 == AI_91 and a1 == AI_92) or (a0 == AI_93 and a1 == AI_3103) or (a0 == AI_3103 and a1 == AI_93)
            or (a0 == AI_8005 and a1 == AI_93))
