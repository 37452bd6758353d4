# Included by lmcz_fast/_codes.pyx (one compilation unit with it and its other .pxi files): a scan whose GS was lost (or
# whose tail was cut short): where its serial may end.

# The tails CRPT's groups use (see _known_tail), as (AI, value length) in order, for _cut_tail: 0 ends a pattern; a
# value length of 88 is the variable 92 (44 or 88 characters when complete), always last.
cdef const char* _TAIL_AI[5][2]
cdef int _TAIL_LEN[5][2]
_TAIL_AI[0][0] = b"91"
_TAIL_LEN[0][0] = 4
_TAIL_AI[0][1] = b"92"
_TAIL_LEN[0][1] = 88
_TAIL_AI[1][0] = b"93"
_TAIL_LEN[1][0] = 4
_TAIL_AI[1][1] = NULL
_TAIL_LEN[1][1] = 0
_TAIL_AI[2][0] = b"93"
_TAIL_LEN[2][0] = 4
_TAIL_AI[2][1] = b"3103"
_TAIL_LEN[2][1] = 6
_TAIL_AI[3][0] = b"3103"
_TAIL_LEN[3][0] = 6
_TAIL_AI[3][1] = b"93"
_TAIL_LEN[3][1] = 4
_TAIL_AI[4][0] = b"8005"
_TAIL_LEN[4][0] = 6
_TAIL_AI[4][1] = b"93"
_TAIL_LEN[4][1] = 4


cdef inline int _sep_len(const unsigned char* s, Py_ssize_t j, Py_ssize_t m) noexcept nogil:
    """At s[j]: 1 for a GS, the length of `<GS>` / `%1D` text (either case), -1 for a start of that text the scan's
    end cut short (`<`, `<G`, `<GS`, `%`, `%1`), 0 for anything else."""
    cdef Py_ssize_t r = m - j
    if s[j] == GS:
        return 1
    if s[j] == 60:
        if r >= 4:
            return 4 if (s[j + 1] | 0x20) == 103 and (s[j + 2] | 0x20) == 115 and s[j + 3] == 62 else 0
        if (r < 2 or (s[j + 1] | 0x20) == 103) and (r < 3 or (s[j + 2] | 0x20) == 115):
            return -1
    elif s[j] == 37:
        if r >= 3:
            return 3 if s[j + 1] == 49 and (s[j + 2] | 0x20) == 100 else 0
        if r < 2 or s[j + 1] == 49:
            return -1
    return 0


cdef bint _cut_tail(const unsigned char* s, Py_ssize_t i, Py_ssize_t m) noexcept nogil:
    """Whether s[i:m] (not empty) is a tail CRPT's groups use cut short by the scan's end: a proper start of one of
    the _TAIL_AI patterns that is not itself a whole one, with an optional GS (or `<GS>` / `%1D` text, itself maybe
    cut) before each AI. The scan then is a code whose GS after the serial was lost and which a client cut short."""
    cdef int pat, k, sl, al, vl, q
    cdef Py_ssize_t j, e
    cdef const char* ai
    cdef unsigned char c = s[i]
    # Quick refusals: a tail starts with 9 (91, 93), 3 (3103), 8 (8005) or a GS (as text: < or %); and no cut tail is
    # longer than 91 + 92 with its longest signature short of one character, plus two separators.
    if not (c == 57 or c == 51 or c == 56 or c == GS or c == 60 or c == 37) or m - i > 2 + 4 + 2 + 87 + 8:
        return False
    for pat in range(5):
        j = i
        for k in range(2):
            ai = _TAIL_AI[pat][k]
            if ai == NULL:
                break
            if j < m:
                sl = _sep_len(s, j, m)
                if sl < 0:
                    return True
                j += sl
            if j >= m:
                if k == 0:
                    if j > i:
                        return True     # the scan ends right after the GS that ended the serial
                    break
                if pat == 2:
                    break               # 93 alone is whole (the milk tail), not a cut 93 + 3103
                return True             # a first AI whole, the second cut off
            al = 4 if ai[2] != 0 else 2
            q = 0
            while q < al and j + q < m and s[j + q] == <unsigned char>ai[q]:
                q += 1
            if j + q >= m and q < al:
                return True             # the scan ends inside the AI's digits
            if q < al:
                break
            j += al
            vl = _TAIL_LEN[pat][k]
            if vl == 88:                # the 92 signature: the rest of the scan, shorter than 88 and not 44
                if m - j >= 88 or m - j == 44:
                    break               # (a whole 92 is a split the lost-GS search reads itself)
                e = j
                while e < m and (CLS[s[e]] & C82):
                    e += 1
                return e == m
            e = j
            while e < m and e < j + vl and (CLS[s[e]] & (CDIGIT if vl == 6 else C82)):
                e += 1
            if e >= m and e < j + vl:
                return True             # the scan ends inside the value
            if e < j + vl:
                break
            j = e
        # pattern exhausted with characters left, or a mismatch: try the next one
    return False


cdef int _forced(Parsed* p, Py_ssize_t S, Py_ssize_t seg_end, bint has_gs) noexcept nogil:
    """Read the serial as its first S characters (a reading _parse_gs1 listed in x_mask): the bare serial, a split
    at a lost GS whose tail parses whole, or else a tail cut short after a lost GS (dropped: `lost_gs`, `tail_cut`)."""
    p.serial_len = <int>S
    if S == seg_end - 18:
        if has_gs:
            return _parse_tail(p, seg_end, 0, False)
        p.ntail = 0
        return 0
    if _parse_tail(p, 18 + S, seg_end, True) == 0:
        p.repaired |= R_LOST_GS
        return 0
    p.ntail = 0
    p.repaired |= R_LOST_GS | R_TAIL_CUT
    return 0


cdef int _cut_reading(Parsed* p, unsigned int xm, unsigned int other, Py_ssize_t seg_end, bint has_gs) noexcept nogil:
    """tail_cut: the first cut reading of xm (the shortest serial) as this reading; the others, and `other` (the
    lost-GS rule's own pick), listed in x_mask as further readings."""
    cdef int S = 6
    while not (xm & (1u << S)):
        S += 1
    p.x_mask = (xm | other) & ~(1u << S)
    p.repaired |= R_LOST_GS | R_TAIL_CUT
    p.serial_len = S
    p.ntail = 0
    return 0
