# Included by lmcz_fast/_codes.pyx (one compilation unit with it and its other .pxi files): `Parsed`, the state of one
# parse, and how a failure is recorded in it.

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
