# C-level contract of the scan parser, shared with _probe and the store's bulk paths.
# See docs/ARCHITECTURE.md ("Native contracts").

cdef enum:
    IDENTITY_MAX = 38
    READINGS_MAX = 4        # the most readings of one scan (see cut_readings)

# The most likely identity of a till's scan (see docs/codes.md); a scan whose GS was lost and whose tail a client cut
# short, with no reading of a group's serial length but the cut one, is refused (truncated): see cut_readings.
cdef Py_ssize_t cut_identity(const unsigned char* raw, Py_ssize_t n, unsigned char* out) noexcept nogil

# The same for a CIS line (blocklist entry, printed CIS): with no GS in it, everything after AI 21 is the serial
# (no lost-GS recovery), so a 13-character serial that happens to contain "93" is never cut short.
cdef Py_ssize_t cut_cis_identity(const unsigned char* raw, Py_ssize_t n, unsigned char* out) noexcept nogil

# Every identity a scan can be read as (see docs/codes.md, "One reading, or several"): the most likely one, which is
# what cut_identity writes, into out and its length returned (or a negative reason code, as cut_identity); the
# others, if any, into alts (room for READINGS_MAX - 1 identities of IDENTITY_MAX bytes each), their lengths in
# alt_lens and their number in *n_alts. A check must look them all up: the scan is blocked if any reading is. The
# others include, after a lost GS, a group's serial followed by the start of a tail the scan's end cut short.
cdef Py_ssize_t cut_readings(const unsigned char* raw, Py_ssize_t n, unsigned char* out, unsigned char* alts,
                             Py_ssize_t* alt_lens, int* n_alts) noexcept nogil

# What a check needs of a code besides its identity (`cut_check`): kind (1 gs1, 2 tobacco pack, 3 a pack's CIS; 0
# when not filled), the CIS as CRPT prints it (`MarkingCode.cis`) and the mrp the code carries (-1: none).
cdef struct CodeFacts:
    int kind
    int cis_len
    long long mrp
    unsigned char cis[IDENTITY_MAX]

# `cut_readings` with `readings_of`'s tail_cut, and for a scan of one reading (*n_alts == 0) its facts; a scan of
# several readings leaves facts.kind 0 (the caller answers it through `readings_of`).
cdef Py_ssize_t cut_check(const unsigned char* raw, Py_ssize_t n, unsigned char* out, unsigned char* alts,
                          Py_ssize_t* alt_lens, int* n_alts, bint tail_cut, CodeFacts* facts) noexcept nogil
