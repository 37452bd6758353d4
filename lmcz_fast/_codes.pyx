# cython: language_level=3, autotestdict=False, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled marking-code parser: any scan a till can produce -> the code identity (CIS) blocklists hold.

One C core (`_parse`, nogil, no Python objects) turns the UTF-8 bytes of a scan into positions inside a
normalised ASCII buffer. `cut_identity` (C, for the probe and the store's bulk paths), `identity_of` and
`parse_code` all call it, so they can never disagree. The rules, including every choice made where the public
CRPT/GS1 rules are silent, are in docs/codes.md; the short version:

* Accepted forms: a GS1 element string (`01` GTIN-14 with a verified check digit, `21` serial of 1..20 characters
  of GS1's 82-character set, then AIs such as `91`/`92`, `93`, `8005`, `17`, `10`, `3103`, `7003`); a tobacco pack's
  29 characters (GTIN + 7-character serial + 4-character price + 4-character check, no AIs); the 21-character
  tobacco CIS (GTIN + serial) CRPT prints for such packs.
* Repairs, each named in `MarkingCode.repaired`: symbology identifiers (`]d2`, `]C1`, `]Q3`, `]e0`, any `]`
  + letter + digit), leading GS standing for FNC1, trailing CR/LF (and other surrounding whitespace), a trailing GS,
  GS written as text (`\\u001d`, `\\x1d`, `{GS}`, `[GS]`, U+241D, and `<GS>`, `%1D`), text typed by a
  keyboard-wedge scanner under the Russian ЙЦУКЕН layout, a scan a till sent Base64-encoded, and GS lost by a
  keyboard wedge where the tail's structure fixes the serial's length (`cis=True` reads blocklist lines, whose
  GS-less text after AI 21 is all serial); a GS-less scan a client also cut short is refused, or with
  `readings_of(tail_cut=True)` read as every identity it can be (docs/codes.md, "A lost GS and a cut").
* A scan may have several readings (`readings_of`, `cut_readings`): `<GS>` and `%1D` are made of code characters, so
  each may be a GS or the serial's own text, and a lost GS recovered also leaves the bare CIS. Checks look up every
  reading: a code blocked under any reading is blocked.
* Refusals raise `CodeError` with a stable `.reason` (see `REASONS`) and `.position` (index of the offending
  character in the input as code points, or None).
"""

from libc.string cimport memcmp, memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_GET_LENGTH
from cpython.exc cimport PyErr_Clear

cdef extern from "Python.h":
    const char* _as_utf8 "PyUnicode_AsUTF8AndSize"(object s, Py_ssize_t* size)


cdef enum:
    RAW_MAX = 2048       # bytes looked at, at all: longer input is refused before any other work
    SCAN_MAX = 512       # characters of a normalised, trimmed scan
    SERIAL_MAX = 20
    TAIL_MAX = 12
    GS = 0x1D
    PH_NONE = 0x7FFF     # ph_from meaning: every GS placeholder made of code characters stays text
    PH_MAX = 16          # more such placeholders than this in one scan: refused (no code has that many GS)

# Negative return codes of the core; REASONS[-code - 1] is the CodeError.reason string.
cdef enum:
    E_EMPTY = -1
    E_TOO_LONG = -2
    E_INVALID_UTF8 = -3
    E_BAD_CHARACTER = -4
    E_TRUNCATED = -5
    E_BAD_GTIN_CHECK_DIGIT = -6
    E_MISSING_SERIAL = -7
    E_SERIAL_TOO_LONG = -8
    E_AMBIGUOUS_SERIAL = -9
    E_UNKNOWN_AI = -10
    E_BAD_TAIL = -11
    E_DUPLICATE_AI = -12
    E_UNKNOWN_FORMAT = -13
    E_MIXED_LAYOUT = -14

READINGS = READINGS_MAX     # the most readings of one scan (`readings_of`); a scan with more is refused

REASONS = (
    "empty",
    "too_long",
    "invalid_utf8",
    "bad_character",
    "truncated",
    "bad_gtin_check_digit",
    "missing_serial",
    "serial_too_long",
    "ambiguous_serial",
    "unknown_ai",
    "bad_tail",
    "duplicate_ai",
    "unknown_format",
    "mixed_layout",
)

_MESSAGES = {
    "empty": "the scan is empty",
    "too_long": "the scan is longer than any marking code",
    "invalid_utf8": "the scan is not valid text (malformed UTF-8 or an unpaired surrogate)",
    "bad_character": "a character that no marking code contains",
    "truncated": "the scan ends before the code is complete",
    "bad_gtin_check_digit": "the GTIN's check digit is wrong",
    "missing_serial": "no serial (AI 21) right after the GTIN",
    "serial_too_long": "the serial is longer than 20 characters and no GS ends it",
    "ambiguous_serial": "the GS after the serial is missing and the serial's length cannot be told",
    "unknown_ai": "an application identifier this parser does not know",
    "bad_tail": "a malformed value after the serial",
    "duplicate_ai": "an application identifier appears twice",
    "unknown_format": "neither a GS1 element string nor a tobacco pack code",
    "mixed_layout": "Latin and Cyrillic letters mixed: the keyboard layout cannot be undone",
}

cdef enum:
    K_GS1 = 1
    K_TOBACCO_PACK = 2
    K_TOBACCO_CIS = 3

KINDS = ("gs1", "tobacco_pack", "tobacco_pack_cis")

cdef enum:
    R_SYMBOLOGY = 1
    R_FNC1 = 2
    R_NEWLINE = 4
    R_WHITESPACE = 8
    R_TRAILING_GS = 16
    R_ESCAPED_GS = 32
    R_CYRILLIC = 64
    R_LOST_GS = 128
    R_BASE64 = 256
    R_TAIL_CUT = 512        # readings_of(tail_cut=True): the scan ends inside a tail AI after a GS; that AI is dropped
    R_PH_SEEN = 1 << 30     # not a repair: a parse loop read an ambiguous GS placeholder as code characters

REPAIRS = (
    "symbology_prefix",
    "leading_fnc1",
    "trailing_newline",
    "whitespace",
    "trailing_gs",
    "escaped_gs",
    "cyrillic_layout",
    "lost_gs",
    "base64",
    "tail_cut",
)

# Character classes.
cdef enum:
    C82 = 1       # GS1 AI encodable character set 82
    CDIGIT = 2
    CALPHA = 4
    CPH = 8       # may start a GS placeholder made of code characters (`<GS>`, `%1D`): see _ph_len
    C82F = 16     # C82 but not CPH: the parse loops test only this bit per character, and look closer when it
                  # is missing (not a code character, or maybe a placeholder), so spotting placeholders is free
    CTXT = 32     # may start GS written as text: a backslash, `{`, `[`, `<`, `%` (see _gs_forms)

cdef enum:
    AI_01 = 200001
    AI_21 = 200021
    AI_91 = 200091
    AI_92 = 200092
    AI_93 = 200093
    AI_3103 = 403103
    AI_8005 = 408005

cdef unsigned char CLS[256]
cdef unsigned char CYR[96]        # U+0400..U+045F -> the ASCII key a US layout gives at the same place
cdef unsigned char B64[256]       # Base64 character -> its 6 bits (both alphabets), 255 for others

# Serial lengths of the known product groups; used only to choose between readings of a scan without GS.
cdef inline bint _known_serial(Py_ssize_t n) noexcept nogil:
    return n == 6 or n == 7 or n == 8 or n == 13 or n == 20


cdef void _init_tables():
    cdef int i
    cdef bytes s82 = b"!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
    for i in range(256):
        CLS[i] = 0
    for i in range(len(s82)):
        CLS[<unsigned char>s82[i]] |= C82
    for i in range(48, 58):
        CLS[i] |= CDIGIT
    for i in range(65, 91):
        CLS[i] |= CALPHA
        CLS[i + 32] |= CALPHA
    CLS[60] |= CPH       # <
    CLS[37] |= CPH       # %
    for i in range(256):
        if (CLS[i] & C82) and not (CLS[i] & CPH):
            CLS[i] |= C82F
    for i in (92, 123, 91, 60, 37):
        CLS[i] |= CTXT
    for i in range(96):
        CYR[i] = 0
    cdef bytes upper = b"F<DULT:PBQRKVYJGHCNEA{WXIO}SM\">Z"     # А..Я
    cdef bytes lower = b"f,dult;pbqrkvyjghcnea[wxio]sm'.z"      # а..я
    for i in range(32):
        CYR[0x10 + i] = upper[i]
        CYR[0x30 + i] = lower[i]
    for i in range(256):
        B64[i] = 255
    cdef bytes alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    for i in range(62):
        B64[alphabet[i]] = i
    B64[b'+'] = 62
    B64[b'-'] = 62
    B64[b'/'] = 63
    B64[b'_'] = 63
    CYR[0x01] = b'~'    # Ё
    CYR[0x51] = b'`'    # ё


_init_tables()


cdef struct Parsed:
    const unsigned char* s      # the trimmed, normalised scan (into the input, or into buf)
    Py_ssize_t m
    Py_ssize_t base             # fast path: code-point index of s[0] in the input
    bint cis_mode               # the input is a CIS line: no GS means no tail
    bint decoded                # p.s was Base64-decoded (never twice)
    bint mapped                 # slow path: positions come from pos[]
    bint cut_ok                 # readings_of(tail_cut=True): a tail cut short after a GS ends the tail (R_TAIL_CUT)
    int ph_from                 # ordinal of the first ambiguous GS placeholder read as GS (PH_NONE: none)
    int ph_count                # ambiguous GS placeholders in the text (counted where the text was rewritten)
    int force_serial            # > 0: read the serial as this many characters (a listed lost-GS or cut reading)
    unsigned int x_mask         # bit S: the serial length S is another reading of this scan (a tail cut short
                                # after a lost GS, or the lost-GS pick such a cut stands beside); see _cut_tail
    int kind
    int serial_len
    int ntail
    unsigned short ai_at[TAIL_MAX]
    unsigned char ai_len[TAIL_MAX]
    unsigned short val_at[TAIL_MAX]
    unsigned short val_len[TAIL_MAX]
    unsigned int repaired
    Py_ssize_t err_at
    unsigned char buf[RAW_MAX + 1]
    unsigned short pos[RAW_MAX + 1]


cdef inline int _fail(Parsed* p, int code, Py_ssize_t i) noexcept nogil:
    """Record the failure at index i of p.s (-1: no position) and return the code."""
    if i < 0:
        p.err_at = -1
    elif p.mapped:
        p.err_at = p.pos[(p.s - p.buf) + i]
    else:
        p.err_at = p.base + i
    return code


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
    cdef int rc, k
    p.cut_ok = False
    rc = _parse_text(raw, n, &p, False)
    if rc == 0 and not (p.repaired & (R_PH_SEEN | R_LOST_GS)) and not p.x_mask:
        n_alts[0] = 0
        return _write_identity(&p, out)
    rc = _readings_after(raw, n, &p, False, rc, specs, ids, lens)
    if rc < 0:
        n_alts[0] = 0
        return rc
    memcpy(out, ids, <size_t>lens[0])
    for k in range(1, rc):
        memcpy(alts + (k - 1) * IDENTITY_MAX, ids + k * IDENTITY_MAX, <size_t>lens[k])
        alt_lens[k - 1] = lens[k]
    n_alts[0] = rc - 1
    return lens[0]


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
    cdef int rc, k
    p.cut_ok = tail_cut
    facts.kind = 0
    rc = _parse_text(raw, n, &p, False)
    if rc == 0 and not (p.repaired & (R_PH_SEEN | R_LOST_GS)) and not p.x_mask:
        n_alts[0] = 0
        _facts_of(&p, facts)
        return _write_identity(&p, out)
    rc = _readings_after(raw, n, &p, False, rc, specs, ids, lens)
    if rc < 0:
        n_alts[0] = 0
        return rc
    memcpy(out, ids, <size_t>lens[0])
    for k in range(1, rc):
        memcpy(alts + (k - 1) * IDENTITY_MAX, ids + k * IDENTITY_MAX, <size_t>lens[k])
        alt_lens[k - 1] = lens[k]
    n_alts[0] = rc - 1
    return lens[0]


# ---------------------------------------------------------------------------------------------- Python API

class CodeError(ValueError):
    """A scan that is not a valid marking code.

    `reason` is a stable machine-readable string (one of `REASONS`); `position` the index (in code points of the
    input) of the character where parsing failed, or None when no single character is to blame.
    """

    def __init__(self, reason, position=None, message=None):
        if message is None:
            message = _MESSAGES.get(reason, reason)
            if position is not None:
                message = f"{message} (at position {position})"
        super().__init__(message)
        self.reason = reason
        self.position = position

    def __reduce__(self):
        return (type(self), (self.reason, self.position, str(self)))


def reason_of(int code):
    """The `CodeError.reason` for a negative return code of `cut_identity`."""
    if -len(REASONS) <= code <= -1:
        return REASONS[-code - 1]
    raise ValueError(f"not a cut_identity error code: {code}")


_new_exception = BaseException.__new__


cdef object _make_error(object reason, object position, str message):
    err = _new_exception(CodeError, message)    # what CodeError.__init__ leaves, without a Python __init__ call
    err.reason = reason
    err.position = position
    return err


def code_error(reason, position, str message):
    """`CodeError(reason, position, message)`, the same object (`args`, `reason`, `position`) made at about half
    the cost: a batch makes one per unreadable scan it answers (`_probe.CheckBatch.errors`)."""
    return _make_error(reason, position, message)


cdef object _error(int rc, Py_ssize_t at):
    reason = REASONS[-rc - 1]
    message = _MESSAGES.get(reason, reason)
    if at < 0:
        return _make_error(reason, None, message)
    return _make_error(reason, at, f"{message} (at position {at})")


cdef object _utf8_error(object raw):
    cdef Py_ssize_t i
    for i, ch in enumerate(raw):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            return CodeError("invalid_utf8", i)
    return CodeError("invalid_utf8", None)


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


cdef inline object _raise_for(int rc, Parsed* p, object raw):
    if p.err_at == -2:
        raise _utf8_error(raw)
    raise _error(rc, p.err_at)


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


cdef inline str _ascii(const char* s, Py_ssize_t n):
    return PyUnicode_DecodeASCII(s, n, NULL)


cdef inline int _base80_digit(unsigned char c) noexcept nogil:
    """A tobacco pack's price character -> 0..79 (A-Z, a-z, 0-9, then the 18 signs below, in order); -1 if none."""
    cdef const char* signs = b"!\"%&'*+-./_,:;=<>?"
    cdef int k
    if 65 <= c <= 90:
        return c - 65
    if 97 <= c <= 122:
        return c - 97 + 26
    if 48 <= c <= 57:
        return c - 48 + 52
    for k in range(18):
        if <unsigned char>signs[k] == c:
            return 62 + k
    return -1


cdef long long _mrp_at(const unsigned char* s, int kind, int ntail, const unsigned short* ai_at,
                       const unsigned char* ai_len, const unsigned short* val_at,
                       const unsigned short* val_len) noexcept nogil:
    """The maximum retail price a parsed code carries (kopecks; `MarkingCode.mrp`), or -1 for none."""
    cdef int k, d
    cdef long long total = 0
    if kind == K_TOBACCO_PACK:
        for k in range(21, 25):
            d = _base80_digit(s[k])
            if d < 0:
                return -1
            total = total * 80 + d
        return total
    if kind == K_GS1:
        for k in range(ntail):
            if (ai_len[k] == 4 and s[ai_at[k]] == 56 and s[ai_at[k] + 1] == 48
                    and s[ai_at[k] + 2] == 48 and s[ai_at[k] + 3] == 53):     # "8005"
                for d in range(val_len[k]):
                    total = total * 10 + (s[val_at[k] + d] - 48)
                return total
    return -1


cdef class MarkingCode:
    """A parsed marking code. Immutable; attributes are computed from the normalised scan on access.

    Two codes are equal when they are the same code (same kind, identity and tail), whatever repairs their
    scans needed.
    """

    cdef bytes _s
    cdef int _kind
    cdef int _serial_len
    cdef int _ntail
    cdef unsigned int _repaired
    cdef unsigned short _ai_at[TAIL_MAX]
    cdef unsigned char _ai_len[TAIL_MAX]
    cdef unsigned short _val_at[TAIL_MAX]
    cdef unsigned short _val_len[TAIL_MAX]

    def __init__(self, *args, **kwargs):
        raise TypeError("MarkingCode is made by parse_code()")

    @property
    def kind(self):
        """"gs1", "tobacco_pack" (29 characters) or "tobacco_pack_cis" (its 21-character CIS)."""
        return KINDS[self._kind - 1]

    @property
    def gtin(self):
        """The 14-digit GTIN."""
        cdef const char* s = PyBytes_AS_STRING(self._s)
        return _ascii(s + 2, 14) if self._kind == K_GS1 else _ascii(s, 14)

    @property
    def serial(self):
        """The serial (AI 21 value; for a tobacco pack its 7 characters after the GTIN)."""
        cdef const char* s = PyBytes_AS_STRING(self._s)
        return _ascii(s + 18, self._serial_len) if self._kind == K_GS1 else _ascii(s + 14, 7)

    @property
    def identity(self):
        """Canonical identity: "01" + GTIN + "21" + serial, for every kind."""
        cdef const char* s = PyBytes_AS_STRING(self._s)
        if self._kind == K_GS1:
            return _ascii(s, 18 + self._serial_len)
        return "01" + _ascii(s, 14) + "21" + _ascii(s + 14, 7)

    @property
    def cis(self):
        """The CIS as CRPT prints it: the GS1 form, or a tobacco pack's first 21 characters."""
        cdef const char* s = PyBytes_AS_STRING(self._s)
        if self._kind == K_GS1:
            return _ascii(s, 18 + self._serial_len)
        return _ascii(s, 21)

    @property
    def tail(self):
        """What follows the serial, in order: AI -> value; a tobacco pack's {"price": ..., "check": ...}."""
        cdef const char* s = PyBytes_AS_STRING(self._s)
        cdef dict out = {}
        cdef int k
        if self._kind == K_TOBACCO_PACK:
            out["price"] = _ascii(s + 21, 4)
            out["check"] = _ascii(s + 25, 4)
            return out
        for k in range(self._ntail):
            out[_ascii(s + self._ai_at[k], self._ai_len[k])] = _ascii(s + self._val_at[k], self._val_len[k])
        return out

    @property
    def mrp(self):
        """The maximum retail price (kopecks) the code itself carries, or None.

        A tobacco pack: its characters 22-25, base 80 over `A-Z a-z 0-9 ! " % & ' * + - . / _ , : ; = < > ?`
        (A = 0 ... ? = 79), most significant first ("ACW." = 14630); None if one of them is outside that alphabet.
        An element string: the 6 digits of AI 8005 as kopecks (a tobacco block: the block's price); else None.
        """
        cdef long long total = _mrp_at(<const unsigned char*>PyBytes_AS_STRING(self._s), self._kind, self._ntail,
                                       self._ai_at, self._ai_len, self._val_at, self._val_len)
        return None if total < 0 else total

    @property
    def repaired(self):
        """Names of the scanner damage undone to read this code (see REPAIRS), in a fixed order."""
        cdef int k
        return tuple(REPAIRS[k] for k in range(len(REPAIRS)) if self._repaired & (1 << k))

    @property
    def element_string(self):
        """The code in canonical form: GS1 element string with GS (0x1D) before every tail AI; a tobacco pack's
        29 characters as scanned. What the online check (True API) expects as the full code."""
        cdef const char* s = PyBytes_AS_STRING(self._s)
        cdef int k
        if self._kind != K_GS1:
            return _ascii(s, PyBytes_GET_SIZE(self._s))
        parts = [_ascii(s, 18 + self._serial_len)]
        for k in range(self._ntail):
            parts.append(_ascii(s + self._ai_at[k], self._ai_len[k] + self._val_len[k]))
        return "\x1d".join(parts)

    def _key(self):
        return (self._kind, self.element_string)

    def __eq__(self, other):
        if not isinstance(other, MarkingCode):
            return NotImplemented
        return self._key() == (<MarkingCode>other)._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return (f"MarkingCode({self.cis!r}, kind={self.kind!r}, tail={self.tail!r}"
                f"{', repaired=' + repr(self.repaired) if self._repaired else ''})")

    def __reduce__(self):
        return (parse_code, (self.element_string,))


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
    rc = _text(raw, &data, &n, &p)
    if rc == 0:
        rc = _parse_text(data, n, &p, False)
        if rc == 0 and not (p.repaired & (R_PH_SEEN | R_LOST_GS)) and not p.x_mask:
            return (_code(&p),)
        rc = _readings_after(data, n, &p, False, rc, specs, ids, lens)
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
    keep the caller's locals alive) and costs no raise and catch. The parse is `readings_of`'s, step by step."""
    cdef Parsed p
    cdef const unsigned char* data
    cdef Py_ssize_t n
    cdef int specs[READINGS_MAX]
    cdef unsigned char ids[READINGS_MAX * IDENTITY_MAX]
    cdef Py_ssize_t lens[READINGS_MAX]
    cdef int rc
    p.cut_ok = tail_cut
    raw = _coerce(raw)
    rc = _text(raw, &data, &n, &p)
    if rc == 0:
        rc = _parse_text(data, n, &p, False)
        if rc == 0 and not (p.repaired & (R_PH_SEEN | R_LOST_GS)) and not p.x_mask:
            return None
        rc = _readings_after(data, n, &p, False, rc, specs, ids, lens)
    if rc >= 0:
        return None
    if p.err_at == -2:
        return _utf8_error(raw)
    return _error(rc, p.err_at)


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
