# lmcz_fast/_probe.pyx, included: XXH3-64 and the identity hash and prefilter key.

# --------------------------------------------------------------------------------------------------------------
# XXH3-64, seed 0, default secret (xxHash specification, "XXH3 Algorithm Description")
# --------------------------------------------------------------------------------------------------------------

cdef enum:
    SECRET_SIZE = 192
    STRIPE_LEN = 64
    STRIPES_PER_BLOCK = 16     # (SECRET_SIZE - STRIPE_LEN) / 8
    BLOCK_LEN = 1024           # STRIPE_LEN * STRIPES_PER_BLOCK

cdef uint64_t P32_1 = 0x9E3779B1U
cdef uint64_t P32_2 = 0x85EBCA77U
cdef uint64_t P32_3 = 0xC2B2AE3DU
cdef uint64_t P64_1 = 0x9E3779B185EBCA87ULL
cdef uint64_t P64_2 = 0xC2B2AE3D27D4EB4FULL
cdef uint64_t P64_3 = 0x165667B19E3779F9ULL
cdef uint64_t P64_4 = 0x85EBCA77C2B2AE63ULL
cdef uint64_t P64_5 = 0x27D4EB2F165667C5ULL


cdef inline uint64_t _avalanche(uint64_t x) noexcept nogil:
    x ^= x >> 37
    x *= 0x165667919E3779F9ULL      # PRIME_MX1
    x ^= x >> 32
    return x


cdef inline uint64_t _avalanche_xxh64(uint64_t x) noexcept nogil:
    x ^= x >> 33
    x *= 0xC2B2AE3D27D4EB4FULL      # PRIME64_2
    x ^= x >> 29
    x *= 0x165667B19E3779F9ULL      # PRIME64_3
    x ^= x >> 32
    return x


cdef inline uint64_t _mix16(const uint8_t* data, const uint8_t* secret) noexcept nogil:
    return lmcz_mul_fold(lmcz_r64(data) ^ lmcz_r64(secret), lmcz_r64(data + 8) ^ lmcz_r64(secret + 8))


cdef inline uint64_t _xxh3_0to16(const uint8_t* p, size_t n) noexcept nogil:
    cdef const uint8_t* s = lmcz_xxh3_secret
    cdef uint32_t combined
    cdef uint64_t v, lo, hi
    if n > 8:
        lo = lmcz_r64(p) ^ (lmcz_r64(s + 24) ^ lmcz_r64(s + 32))
        hi = lmcz_r64(p + n - 8) ^ (lmcz_r64(s + 40) ^ lmcz_r64(s + 48))
        return _avalanche(<uint64_t>n + lmcz_bswap64(lo) + hi + lmcz_mul_fold(lo, hi))
    if n >= 4:
        v = (<uint64_t>lmcz_r32(p + n - 4) | (<uint64_t>lmcz_r32(p) << 32)) ^ (lmcz_r64(s + 8) ^ lmcz_r64(s + 16))
        v ^= lmcz_rotl64(v, 49) ^ lmcz_rotl64(v, 24)
        v *= 0x9FB21C651E98DF25ULL  # PRIME_MX2
        v ^= (v >> 35) + <uint64_t>n
        v *= 0x9FB21C651E98DF25ULL
        v ^= v >> 28
        return v
    if n > 0:
        combined = (<uint32_t>p[n - 1]) | (<uint32_t>n << 8) | (<uint32_t>p[0] << 16) | (<uint32_t>p[n >> 1] << 24)
        return _avalanche_xxh64(<uint64_t>(lmcz_r32(s) ^ lmcz_r32(s + 4)) ^ <uint64_t>combined)
    return _avalanche_xxh64(lmcz_r64(s + 56) ^ lmcz_r64(s + 64))


cdef inline uint64_t _xxh3_17to128(const uint8_t* p, size_t n) noexcept nogil:
    cdef const uint8_t* s = lmcz_xxh3_secret
    cdef uint64_t acc = <uint64_t>n * 0x9E3779B185EBCA87ULL   # PRIME64_1
    if n > 32:
        if n > 64:
            if n > 96:
                acc += _mix16(p + 48, s + 96)
                acc += _mix16(p + n - 64, s + 112)
            acc += _mix16(p + 32, s + 64)
            acc += _mix16(p + n - 48, s + 80)
        acc += _mix16(p + 16, s + 32)
        acc += _mix16(p + n - 32, s + 48)
    acc += _mix16(p, s)
    acc += _mix16(p + n - 16, s + 16)
    return _avalanche(acc)


cdef uint64_t _xxh3_129to240(const uint8_t* p, size_t n) noexcept nogil:
    cdef const uint8_t* s = lmcz_xxh3_secret
    cdef uint64_t acc = <uint64_t>n * 0x9E3779B185EBCA87ULL
    cdef size_t i, chunks = n >> 4
    for i in range(8):
        acc += _mix16(p + 16 * i, s + 16 * i)
    acc = _avalanche(acc)
    for i in range(8, chunks):
        acc += _mix16(p + 16 * i, s + 16 * (i - 8) + 3)
    acc += _mix16(p + n - 16, s + 119)
    return _avalanche(acc)


cdef inline void _accumulate(uint64_t* acc, const uint8_t* stripe, const uint8_t* secret) noexcept nogil:
    cdef int i
    cdef uint64_t lane, v
    for i in range(8):
        lane = lmcz_r64(stripe + 8 * i)
        v = lane ^ lmcz_r64(secret + 8 * i)
        acc[i ^ 1] += lane
        acc[i] += (v & 0xFFFFFFFFULL) * (v >> 32)


cdef uint64_t _xxh3_long(const uint8_t* p, size_t n) noexcept nogil:
    cdef const uint8_t* s = lmcz_xxh3_secret
    cdef uint64_t acc[8]
    cdef size_t b, k, blocks = (n - 1) // BLOCK_LEN, stripes
    cdef const uint8_t* blk
    cdef uint64_t result
    cdef int i
    acc[0] = P32_3
    acc[1] = P64_1
    acc[2] = P64_2
    acc[3] = P64_3
    acc[4] = P64_4
    acc[5] = P32_2
    acc[6] = P64_5
    acc[7] = P32_1
    for b in range(blocks):
        blk = p + b * BLOCK_LEN
        for k in range(<size_t>STRIPES_PER_BLOCK):
            _accumulate(acc, blk + k * STRIPE_LEN, s + 8 * k)
        for i in range(8):
            acc[i] ^= acc[i] >> 47
            acc[i] ^= lmcz_r64(s + SECRET_SIZE - STRIPE_LEN + 8 * i)
            acc[i] *= P32_1
    blk = p + blocks * BLOCK_LEN
    stripes = ((n - 1) - blocks * BLOCK_LEN) // STRIPE_LEN
    for k in range(stripes):
        _accumulate(acc, blk + k * STRIPE_LEN, s + 8 * k)
    _accumulate(acc, p + n - STRIPE_LEN, s + SECRET_SIZE - STRIPE_LEN - 7)
    result = <uint64_t>n * P64_1
    for i in range(4):
        result += lmcz_mul_fold(acc[2 * i] ^ lmcz_r64(s + 11 + 16 * i), acc[2 * i + 1] ^ lmcz_r64(s + 19 + 16 * i))
    return _avalanche(result)


cdef uint64_t xxh3_64(const void* data, size_t n) noexcept nogil:
    """XXH3-64 of ``n`` bytes at ``data`` with seed 0 and the default secret."""
    cdef const uint8_t* p = <const uint8_t*>data
    if n <= 16:
        return _xxh3_0to16(p, n)
    if n <= 128:
        return _xxh3_17to128(p, n)
    if n <= 240:
        return _xxh3_129to240(p, n)
    return _xxh3_long(p, n)


cdef inline uint64_t _identity_hash(const uint8_t* p, size_t n) noexcept nogil:
    """XXH3-64 of an identity (at most IDENTITY_MAX bytes), inlined for the hot paths: ``xxh3_64(p, n)``."""
    if n <= 16:
        return _xxh3_0to16(p, n)
    return _xxh3_17to128(p, n)


cdef inline uint32_t _identity_key(const uint8_t* p, size_t n) noexcept nogil:
    """Prefilter key of an identity: the low 32 bits of its XXH3-64."""
    return <uint32_t>_identity_hash(p, n)


# What the compiled core was built with (docs/platforms.md): the byte order the compiler stated, whether XXH3's
# 64x64->128 multiply uses 128-bit integers, whether prefetch hints are compiled in, the pointer width.
PLATFORM = {"big_endian": bool(LMCZ_BIG_ENDIAN), "int128": bool(LMCZ_INT128), "prefetch": bool(LMCZ_PREFETCH),
            "pointer_bits": 8 * sizeof(void*)}


def _mul_fold(uint64_t a, uint64_t b) -> tuple:
    """(XXH3's multiply-fold as this build does it, the same in 32-bit halves): both paths, for the tests."""
    return lmcz_mul_fold(a, b), lmcz_mul_fold_halves(a, b)


def _read_u64(data, Py_ssize_t offset) -> int:
    """The probe's 8-byte read (``lmcz_r64``) at ``offset`` of ``data``, at any alignment: for the tests."""
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if offset < 0 or offset + 8 > view.len:
            raise ValueError(f"8 bytes at {offset} of a {view.len}-byte buffer")
        return lmcz_r64(<const uint8_t*>view.buf + offset)
    finally:
        PyBuffer_Release(&view)


@cython.binding(False)
@cython.always_allow_keywords(False)
def xxh3_64_intdigest(data) -> int:
    """XXH3-64 (seed 0) of a bytes-like object, equal to ``xxhash.xxh3_64_intdigest(data)``."""
    cdef Py_buffer view
    cdef uint64_t h
    if PyBytes_Check(data):
        return xxh3_64(PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data))
    if isinstance(data, str):
        raise TypeError("xxh3_64_intdigest() takes bytes-like data, not str; encode it first")
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        h = xxh3_64(view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)
    return h


def prefilter_key(identity) -> int:
    """The prefilter key of a canonical identity: the low 32 bits of its XXH3-64."""
    cdef Py_buffer view
    cdef uint32_t k
    if isinstance(identity, str):
        identity = (<str>identity).encode("ascii")
    PyObject_GetBuffer(identity, &view, PyBUF_SIMPLE)
    try:
        k = <uint32_t>xxh3_64(view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)
    return k
