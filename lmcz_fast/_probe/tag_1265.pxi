# lmcz_fast/_probe.pyx, included: tag 1265 of an offline check.

# --------------------------------------------------------------------------------------------------------------
# Tag 1265 of an offline check answered in this process (the till-side checker, every scan)
# --------------------------------------------------------------------------------------------------------------

import os as _os_mod

cdef extern from *:
    """
    static inline int64_t lmcz_wall_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + (int64_t)(ts.tv_nsec / 1000000);
    }
    """
    int64_t lmcz_wall_ms() noexcept nogil

cdef extern from "Python.h":
    object _new_ascii "PyUnicode_New"(Py_ssize_t size, uint32_t maxchar)

cdef object _urandom = _os_mod.urandom
cdef const char* _HEX = b"0123456789abcdef"

# Request ids' random bits: xoshiro256** (Blackman and Vigna), seeded from os.urandom on first use and again in a
# forked child, so two workers never share ids and an application's `random.seed(...)` never repeats them; two steps
# per id instead of two Python calls.
cdef uint64_t _id_state[4]
cdef bint _id_seeded = False


def _reseed_ids():
    """Seed the request ids' generator again on next use (a forked child must not repeat its parent's ids)."""
    global _id_seeded
    _id_seeded = False


if hasattr(_os_mod, "register_at_fork"):
    _os_mod.register_at_fork(after_in_child=_reseed_ids)


cdef int _seed_ids() except -1:
    global _id_seeded
    cdef bytes seed = _urandom(32)
    memcpy(_id_state, PyBytes_AS_STRING(seed), 32)
    if (_id_state[0] | _id_state[1] | _id_state[2] | _id_state[3]) == 0:
        _id_state[0] = 1                                            # the one state xoshiro cannot leave
    _id_seeded = True
    return 0


cdef inline uint64_t _rotl(uint64_t x, int k) noexcept nogil:
    return (x << k) | (x >> (64 - k))


cdef inline uint64_t _id_bits() noexcept nogil:
    cdef uint64_t out = _rotl(_id_state[1] * 5, 7) * 9
    cdef uint64_t t = _id_state[1] << 17
    _id_state[2] ^= _id_state[0]
    _id_state[3] ^= _id_state[1]
    _id_state[1] ^= _id_state[2]
    _id_state[0] ^= _id_state[3]
    _id_state[2] ^= t
    _id_state[3] = _rotl(_id_state[3], 45)
    return out


cdef inline void _hex_nibbles(char* out, uint64_t v, int count, int skip) noexcept nogil:
    """``count`` hex digits of ``v`` after its first ``skip`` ones (most significant first)."""
    cdef int k
    for k in range(count):
        out[k] = _HEX[(v >> (60 - 4 * (skip + k))) & 15]


def offline_tag_1265(str tail not None):
    """``UUID=<request id>&Time=<Unix ms>`` followed by ``tail`` (the version's ``&Inst=...&Ver=...``): the text of
    fiscal tag 1265 for one offline check answered in this process, as ``receipt.tag_1265(receipt.request_id(),
    int(time.time() * 1000), inst, ver)`` makes it, in one compiled step. The request id is a random UUID version
    4, variant RFC 4122, in its canonical text; its bits come from a xoshiro256** generator seeded from
    ``os.urandom`` (and again in a forked child, so two workers never share a sequence)."""
    return _tag_1265(tail)


cdef str _tag_1265(str tail):
    cdef uint64_t hi, lo
    cdef char head[5 + 36 + 6 + 20]
    cdef char digits[20]
    cdef int64_t ms = lmcz_wall_ms()
    cdef int nd = 0, k
    cdef Py_ssize_t n, tn
    if not _id_seeded:
        _seed_ids()
    hi = _id_bits()
    lo = _id_bits()
    hi = (hi & ~(<uint64_t>0xF << 12)) | (<uint64_t>0x4 << 12)       # version 4: hex digit 12 is "4"
    lo = (lo & ~(<uint64_t>0x3 << 62)) | (<uint64_t>0x2 << 62)       # variant RFC 4122: digit 16 is 8, 9, a or b
    memcpy(head, b"UUID=", 5)
    _hex_nibbles(head + 5, hi, 8, 0)
    head[13] = 45   # "-"
    _hex_nibbles(head + 14, hi, 4, 8)
    head[18] = 45
    _hex_nibbles(head + 19, hi, 4, 12)
    head[23] = 45
    _hex_nibbles(head + 24, lo, 4, 0)
    head[28] = 45
    _hex_nibbles(head + 29, lo, 12, 4)
    memcpy(head + 41, b"&Time=", 6)
    if ms < 0:
        ms = 0
    while True:
        digits[nd] = <char>(48 + ms % 10)
        nd += 1
        ms //= 10
        if ms == 0:
            break
    for k in range(nd):
        head[47 + k] = digits[nd - 1 - k]
    n = 47 + nd
    if not PyUnicode_IS_COMPACT_ASCII(tail):
        return PyUnicode_DecodeASCII(head, n, NULL) + tail
    tn = PyUnicode_GET_LENGTH(tail)
    out = _new_ascii(n + tn, 127)
    memcpy(<char*>PyUnicode_DATA(out), head, <size_t>n)
    memcpy(<char*>PyUnicode_DATA(out) + n, PyUnicode_DATA(tail), <size_t>tn)
    return out
