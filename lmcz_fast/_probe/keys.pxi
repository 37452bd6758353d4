# lmcz_fast/_probe.pyx, included: canonical identities and packed LMDB keys.

# --------------------------------------------------------------------------------------------------------------
# Identities and packed LMDB keys
# --------------------------------------------------------------------------------------------------------------

cdef enum:
    GTIN_DIGITS = 14
    SERIAL_AT = 18
    SERIAL_MAX = 20
    KEY_GTIN_BYTES = 6

# GS1 AI encodable character set 82 (the serial's alphabet).
cdef bint _CSET82[256]
for _c in "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz":
    _CSET82[ord(_c)] = True


cdef inline uint64_t _gtin_value(const uint8_t* ident) noexcept nogil:
    """The GTIN of a canonical identity (bytes 2..15, known to be digits) as an integer."""
    cdef uint64_t g = 0
    cdef int i
    for i in range(2, 2 + GTIN_DIGITS):
        g = g * 10 + (ident[i] - 48)
    return g


cdef bint _is_canonical(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    if n < SERIAL_AT + 1 or n > IDENTITY_MAX:
        return False
    if p[0] != 48 or p[1] != 49 or p[16] != 50 or p[17] != 49:
        return False
    for i in range(2, 2 + GTIN_DIGITS):
        if p[i] < 48 or p[i] > 57:
            return False
    for i in range(SERIAL_AT, n):
        if not _CSET82[p[i]]:
            return False
    return True


cdef inline object _pack(const uint8_t* ident, Py_ssize_t n):
    """Packed LMDB key: the GTIN as a 6-byte big-endian integer, then the serial bytes."""
    cdef uint8_t out[KEY_GTIN_BYTES + SERIAL_MAX]
    cdef uint64_t g = _gtin_value(ident)
    cdef int i
    for i in range(KEY_GTIN_BYTES):
        out[KEY_GTIN_BYTES - 1 - i] = <uint8_t>(g >> (8 * i))
    memcpy(out + KEY_GTIN_BYTES, ident + SERIAL_AT, n - SERIAL_AT)
    return PyBytes_FromStringAndSize(<char*>out, KEY_GTIN_BYTES + n - SERIAL_AT)


def pack_identity(identity) -> bytes:
    """Packed LMDB key of a canonical identity (``b"01" + gtin + b"21" + serial``)."""
    cdef Py_buffer view
    if isinstance(identity, str):
        identity = (<str>identity).encode("ascii", "replace")
    PyObject_GetBuffer(identity, &view, PyBUF_SIMPLE)
    try:
        if not _is_canonical(<const uint8_t*>view.buf, view.len):
            raise ValueError(f"not a canonical identity: {bytes(identity)!r}")
        return _pack(<const uint8_t*>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


def unpack_key(key) -> str:
    """Canonical identity (as ``str``) of a packed LMDB key."""
    cdef Py_buffer view
    cdef uint64_t g = 0
    cdef const uint8_t* p
    cdef Py_ssize_t i
    PyObject_GetBuffer(key, &view, PyBUF_SIMPLE)
    try:
        p = <const uint8_t*>view.buf
        if view.len < KEY_GTIN_BYTES + 1 or view.len > KEY_GTIN_BYTES + SERIAL_MAX:
            raise ValueError(f"packed key of {view.len} bytes (expected 7..26)")
        for i in range(KEY_GTIN_BYTES):
            g = (g << 8) | p[i]
        if g >= 100000000000000ULL:
            raise ValueError(f"packed key holds GTIN {g}, more than 14 digits")
        for i in range(KEY_GTIN_BYTES, view.len):
            if not _CSET82[p[i]]:
                raise ValueError(f"packed key's serial has byte {p[i]:#04x} outside GS1 set 82")
        serial = PyBytes_FromStringAndSize(<const char*>p + KEY_GTIN_BYTES, view.len - KEY_GTIN_BYTES)
    finally:
        PyBuffer_Release(&view)
    return f"01{g:014d}21{serial.decode('ascii')}"
