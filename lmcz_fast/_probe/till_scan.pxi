# Included by lmcz_fast/_probe.pyx (one compilation unit with the probe): the till-side checker's compiled pieces
# (lmcz_fast/checker). Owned by the checker; it uses the probe's own helpers (lmcz_alloc, lmcz_put_slot, ...).

# --------------------------------------------------------------------------------------------------------------
# Tag 1265 of an offline check answered in this process (the till-side checker, every scan)
# --------------------------------------------------------------------------------------------------------------

import random as _random_mod

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

cdef object _getrandbits = _random_mod.getrandbits
cdef const char* _HEX = b"0123456789abcdef"


cdef inline void _hex_nibbles(char* out, uint64_t v, int count, int skip) noexcept nogil:
    """``count`` hex digits of ``v`` after its first ``skip`` ones (most significant first)."""
    cdef int k
    for k in range(count):
        out[k] = _HEX[(v >> (60 - 4 * (skip + k))) & 15]


def offline_tag_1265(str tail not None):
    """``UUID=<request id>&Time=<Unix ms>`` followed by ``tail`` (the version's ``&Inst=...&Ver=...``): the text of
    fiscal tag 1265 for one offline check answered in this process, as ``receipt.tag_1265(receipt.request_id(),
    int(time.time() * 1000), inst, ver)`` makes it, in one compiled step. The request id is a random UUID version
    4, variant RFC 4122, in its canonical text; its bits come from the ``random`` module's generator (which Python
    reseeds in a forked child, so two workers never share a sequence)."""
    cdef uint64_t hi = <uint64_t>_getrandbits(64)
    cdef uint64_t lo = <uint64_t>_getrandbits(64)
    cdef char head[5 + 36 + 6 + 20]
    cdef char digits[20]
    cdef int64_t ms = lmcz_wall_ms()
    cdef int nd = 0, k
    cdef Py_ssize_t n, tn
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


@cython.final
cdef class SlotMaker:
    """Makes instances of a plain slotted class (a ``@dataclass(slots=True)`` with no ``__post_init__``) from one
    value per field, in ``names`` order, slot by slot as its ``__init__`` would set them: what a till's every offline
    scan builds twice (``checker.CodeVerdict``, ``checker.TillVerdict``) without the generated ``__init__``'s cost.
    Every field must be given (defaults are the caller's business)."""
    cdef object cls
    cdef Py_ssize_t n
    cdef Py_ssize_t at[24]

    def __cinit__(self, kind, names):
        cdef Py_ssize_t i
        names = tuple(names)
        if not isinstance(kind, type) or kind.__new__ is not object.__new__ or "__dict__" in kind.__dict__ \
                or getattr(kind, "__post_init__", None) is not None:
            raise TypeError(f"{kind!r}: only a plain slotted class without __post_init__")
        if not 0 < len(names) <= 24:
            raise ValueError("from 1 to 24 fields")
        for i, name in enumerate(names):
            descr = kind.__dict__.get(name)
            if descr is None or not lmcz_has_descr_set(<PyObject*>descr):
                raise TypeError(f"{kind!r}.{name} is not a slot of it")
            self.at[i] = lmcz_slot_offset(<PyObject*>descr, <PyObject*>kind)
            if self.at[i] < 0:
                raise TypeError(f"{kind!r}.{name} is not a writable object slot of it")
        self.cls = kind
        self.n = len(names)

    def __call__(self, *values):
        cdef Py_ssize_t i
        if PyTuple_GET_SIZE(values) != self.n:
            raise TypeError(f"{self.cls.__name__} takes {self.n} values, got {len(values)}")
        obj = lmcz_alloc(<PyObject*>self.cls)
        for i in range(self.n):
            lmcz_put_slot(<PyObject*>obj, self.at[i], PyTuple_GET_ITEM(values, i))
        return obj
