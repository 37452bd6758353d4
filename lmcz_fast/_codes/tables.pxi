# Included by lmcz_fast/_codes.pyx (one compilation unit with it and its other .pxi files): character classes, AI codes
# and the lookup tables the parse loops read.

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
