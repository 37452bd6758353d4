# C-level contract of the hashing/probing core. See docs/ARCHITECTURE.md ("Native contracts").
from libc.stdint cimport uint64_t

cdef uint64_t xxh3_64(const void* data, size_t n) noexcept nogil
