# C-level contract of the scan parser, shared with _probe and the store's bulk paths.
# See docs/ARCHITECTURE.md ("Native contracts").

cdef enum:
    IDENTITY_MAX = 38

cdef Py_ssize_t cut_identity(const unsigned char* raw, Py_ssize_t n, unsigned char* out) noexcept nogil

# The same for a CIS line (blocklist entry, printed CIS): with no GS in it, everything after AI 21 is the serial
# (no lost-GS recovery), so a 13-character serial that happens to contain "93" is never cut short.
cdef Py_ssize_t cut_cis_identity(const unsigned char* raw, Py_ssize_t n, unsigned char* out) noexcept nogil
