# C-level contract of the scan parser, shared with _probe and the store's bulk paths.
# See docs/ARCHITECTURE.md ("Native contracts").

cdef enum:
    IDENTITY_MAX = 38

cdef Py_ssize_t cut_identity(const unsigned char* raw, Py_ssize_t n, unsigned char* out) noexcept nogil
