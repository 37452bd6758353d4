# cython: language_level=3, embedsignature=True, auto_pickle=False, cdivision=True
"""Hashing and probing core: XXH3-64, a zero-copy reader of Roaring's portable format, and ``ProbeBase``.

Everything a till asks millions of times a day runs here without touching a Python object: the scan's UTF-8
bytes are cut to the canonical identity (``_codes.cut_identity``), hashed with XXH3-64 (seed 0, default secret,
implemented from the public xxHash specification), and the low 32 bits are probed in a Roaring bitmap that
lives in someone else's buffer (the LMDB memory map). Only a prefilter hit calls back into Python, to the
subclass's exact ``_confirm``.

Per process, attaching a prefilter builds one derived table (65536 entries of 16 bytes, 1 MiB): for each high
16-bit key, where its container is, its kind and size, and a 64-bit summary of which 1024-value ranges it
occupies. A probe is one load of that entry, which alone answers ~80 % of absent keys at 900k codes, and at
most one container search. The serialization itself is never copied.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.exc cimport PyErr_Clear
from cpython.array cimport array as c_array, resize as array_resize
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t, INT64_MAX, INT64_MIN
from libc.stdlib cimport calloc, free
from libc.string cimport memcmp, memcpy, memset

from lmcz_fast._codes cimport (IDENTITY_MAX, READINGS_MAX, CodeFacts, cut_check, cut_cis_identity, cut_identity,
                              cut_readings)

import array as _py_array

from lmcz_fast import _codes as _codes_mod

cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    bint PyUnicode_Check(object o)
    bint PyBytes_Check(object o)
    bint PyByteArray_Check(object o)
    bint PyList_CheckExact(object o)
    bint PyTuple_CheckExact(object o)
    Py_ssize_t PyList_GET_SIZE(object o)
    Py_ssize_t PyTuple_GET_SIZE(object o)
    PyObject* PyList_GET_ITEM(object o, Py_ssize_t i)
    PyObject* PyTuple_GET_ITEM(object o, Py_ssize_t i)
    const char* _utf8_or_null "PyUnicode_AsUTF8AndSize"(object o, Py_ssize_t* size)
    str PyUnicode_DecodeASCII(const char* s, Py_ssize_t size, const char* errors)
    void PyObject_GC_UnTrack(void* op)


# Small C primitives the algorithms are written with: little-endian unaligned loads (the memory map gives no
# alignment guarantee), the 64x64->128 multiply XXH3 folds, software prefetch, and the coarse monotonic clock.
cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #include <time.h>

    /* GCC's -Warray-bounds follows the inlined short-input XXH3 branches into 38-byte identity buffers and
       warns about reads on paths the length tests exclude; every read here is bounded by its length check. */
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC diagnostic ignored "-Warray-bounds"
    #pragma GCC diagnostic ignored "-Wstringop-overread"
    #endif

    /* What this code assumes of the machine, checked where it is compiled rather than found out in an answer
       (docs/platforms.md): 8-bit bytes, a 64-bit address space (built and tested on x86_64 and aarch64 only),
       and a byte order the compiler states. Byte order itself is handled: every multi-byte read of stored or
       hashed bytes goes through lmcz_r16/r32/r64 below (memcpy, so any alignment; a byte swap on a big-endian
       machine). `char` signedness (signed on x86_64, unsigned on aarch64) is not relied on: the byte loops use
       unsigned char / uint8_t throughout. */
    #include <limits.h>
    #if CHAR_BIT != 8
    #error "lmcz-fast's compiled core needs 8-bit bytes"
    #endif
    #if !defined(__SIZEOF_POINTER__) || __SIZEOF_POINTER__ != 8 || UINTPTR_MAX != 0xFFFFFFFFFFFFFFFFu
    #error "lmcz-fast's compiled core is built and tested on 64-bit machines only (x86_64, aarch64); see docs/platforms.md"
    #endif
    #if !defined(__BYTE_ORDER__) || (__BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__ && __BYTE_ORDER__ != __ORDER_BIG_ENDIAN__)
    #error "the compiler does not say this machine's byte order (__BYTE_ORDER__)"
    #endif
    #if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #define LMCZ_BIG_ENDIAN 1
    #else
    #define LMCZ_BIG_ENDIAN 0
    #endif

    static inline uint64_t lmcz_r64(const void* p) {
        uint64_t v; memcpy(&v, p, 8);
    #if LMCZ_BIG_ENDIAN
        v = __builtin_bswap64(v);
    #endif
        return v;
    }
    static inline uint32_t lmcz_r32(const void* p) {
        uint32_t v; memcpy(&v, p, 4);
    #if LMCZ_BIG_ENDIAN
        v = __builtin_bswap32(v);
    #endif
        return v;
    }
    static inline uint32_t lmcz_r16(const void* p) {
        uint16_t v; memcpy(&v, p, 2);
    #if LMCZ_BIG_ENDIAN
        v = __builtin_bswap16(v);
    #endif
        return v;
    }
    static inline uint64_t lmcz_bswap64(uint64_t x) { return __builtin_bswap64(x); }
    static inline uint32_t lmcz_bswap32(uint32_t x) { return __builtin_bswap32(x); }
    static inline uint64_t lmcz_rotl64(uint64_t x, unsigned r) { return (x << r) | (x >> (64 - r)); }

    /* Full 64x64 -> 128-bit product, folded to 64 bits by XOR of its halves: with the compiler's 128-bit
       integers where it has them (x86_64 and aarch64 both do), else in 32-bit halves. Both paths are compiled
       everywhere and compared in the tests (lmcz_platform_paths, tests/test_platform.py). */
    static inline uint64_t lmcz_mul_fold_halves(uint64_t a, uint64_t b) {
        uint64_t al = a & 0xFFFFFFFFu, ah = a >> 32, bl = b & 0xFFFFFFFFu, bh = b >> 32;
        uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
        uint64_t mid = (ll >> 32) + (lh & 0xFFFFFFFFu) + (hl & 0xFFFFFFFFu);
        uint64_t lo = (mid << 32) | (ll & 0xFFFFFFFFu);
        uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
        return lo ^ hi;
    }
    #if defined(__SIZEOF_INT128__)
    #define LMCZ_INT128 1
    static inline uint64_t lmcz_mul_fold(uint64_t a, uint64_t b) {
        __uint128_t p = (__uint128_t)a * b;
        return (uint64_t)p ^ (uint64_t)(p >> 64);
    }
    #else
    #define LMCZ_INT128 0
    static inline uint64_t lmcz_mul_fold(uint64_t a, uint64_t b) { return lmcz_mul_fold_halves(a, b); }
    #endif

    #if defined(__GNUC__) || defined(__clang__)
    #define LMCZ_PREFETCH 1
    #else
    #define LMCZ_PREFETCH 0
    #endif

    #if defined(__GNUC__) || defined(__clang__)
    #define lmcz_prefetch(p) __builtin_prefetch((const void*)(p), 0, 3)
    #else
    #define lmcz_prefetch(p) ((void)(p))
    #endif

    #ifndef CLOCK_MONOTONIC_COARSE
    #define CLOCK_MONOTONIC_COARSE CLOCK_MONOTONIC
    #endif
    static inline int64_t lmcz_now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        return (int64_t)ts.tv_sec * 1000000000LL + (int64_t)ts.tv_nsec;
    }

    /* XXH3's default 192-byte secret (kSecret), as listed in the xxHash specification. */
    static const uint8_t lmcz_xxh3_secret[192] = {
      0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
      0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
      0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
      0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
      0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
      0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
      0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
      0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
      0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
      0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
      0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
      0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
    };

    /* Prefetch the container lines a probe of `v` reads: an array's first and last bytes (2 lines at most for
       the ~14-value arrays of a 900k prefilter), a bitset's word. Written branch-free: GCC 12 drops
       __builtin_prefetch calls inside a switch. */
    static inline void lmcz_prefetch_container(const uint8_t* c, int bitset, uint32_t n, uint32_t v) {
        const uint8_t* second = bitset ? c + (((v & 0xFFFFu) >> 6) << 3) : c + 2 * (size_t)n - 1;
        lmcz_prefetch(c);
        lmcz_prefetch(second);
    }

    /* Roaring container searches. Branch-free lower bounds (the compiler turns the ternaries into cmov), so a
       probe costs the container's cache miss and a handful of cycles. */
    static inline int lmcz_array_contains(const uint8_t* c, uint32_t n, uint32_t x) {
        while (n > 1) {
            uint32_t half = n >> 1;
            c = (lmcz_r16(c + 2 * half) <= x) ? c + 2 * half : c;
            n -= half;
        }
        return lmcz_r16(c) == x;
    }
    static inline int lmcz_run_contains(const uint8_t* c, uint32_t n, uint32_t x) {
        if (lmcz_r16(c) > x) return 0;
        while (n > 1) {
            uint32_t half = n >> 1;
            c = (lmcz_r16(c + 4 * half) <= x) ? c + 4 * half : c;
            n -= half;
        }
        return x - lmcz_r16(c) <= lmcz_r16(c + 2);
    }
    static inline int lmcz_u32_contains(const uint8_t* a, size_t n, uint32_t x) {
        if (n == 0) return 0;
        while (n > 1) {
            size_t half = n >> 1;
            a = (lmcz_r32(a + 4 * half) <= x) ? a + 4 * half : a;
            n -= half;
        }
        return lmcz_r32(a) == x;
    }
    static inline int lmcz_u64_contains(const uint8_t* a, size_t n, uint64_t x) {
        if (n == 0) return 0;
        while (n > 1) {
            size_t half = n >> 1;
            a = (lmcz_r64(a + 8 * half) <= x) ? a + 8 * half : a;
            n -= half;
        }
        return lmcz_r64(a) == x;
    }
    """
    uint64_t lmcz_r64(const void* p) noexcept nogil
    uint32_t lmcz_r32(const void* p) noexcept nogil
    uint32_t lmcz_r16(const void* p) noexcept nogil
    uint64_t lmcz_bswap64(uint64_t x) noexcept nogil
    uint32_t lmcz_bswap32(uint32_t x) noexcept nogil
    uint64_t lmcz_rotl64(uint64_t x, unsigned r) noexcept nogil
    uint64_t lmcz_mul_fold(uint64_t a, uint64_t b) noexcept nogil
    uint64_t lmcz_mul_fold_halves(uint64_t a, uint64_t b) noexcept nogil
    bint LMCZ_BIG_ENDIAN
    bint LMCZ_INT128
    bint LMCZ_PREFETCH
    void lmcz_prefetch(const void* p) noexcept nogil
    int64_t lmcz_now_ns() noexcept nogil
    const uint8_t* lmcz_xxh3_secret
    bint lmcz_array_contains(const uint8_t* c, uint32_t n, uint32_t x) noexcept nogil
    bint lmcz_run_contains(const uint8_t* c, uint32_t n, uint32_t x) noexcept nogil
    bint lmcz_u64_contains(const uint8_t* a, size_t n, uint64_t x) noexcept nogil
    bint lmcz_u32_contains(const uint8_t* a, size_t n, uint32_t x) noexcept nogil
    int __builtin_popcountll(unsigned long long x) noexcept nogil
    void lmcz_prefetch_container(const uint8_t* c, bint bitset, uint32_t n, uint32_t v) noexcept nogil


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


# --------------------------------------------------------------------------------------------------------------
# Roaring portable format, read in place
# --------------------------------------------------------------------------------------------------------------

cdef enum:
    SERIAL_COOKIE_NO_RUNCONTAINER = 12346
    SERIAL_COOKIE = 12347
    NO_OFFSET_THRESHOLD = 4
    MAX_CONTAINERS = 65536
    ARRAY_MAX = 4096
    BITSET_BYTES = 8192
    KIND_NONE = 0
    KIND_ARRAY = 1
    KIND_BITSET = 2
    KIND_RUN = 3


cdef struct Entry:
    uint64_t summary    # bit i: the container holds a value in [1024 i, 1024 i + 1023]; 0 when absent
    uint32_t offset     # of the container's values (runs: of the first pair) from the buffer's start
    uint16_t kind
    uint16_t n          # array: cardinality; run: number of runs; bitset: unused


cdef struct RIndex:
    const uint8_t* base
    Py_ssize_t size
    const Entry* table  # MAX_CONTAINERS entries, indexed by the high 16 bits of a value (owned or stored)
    uint32_t containers
    uint64_t cardinality
    # The overlay a delta writes instead of the base (``ProbeBase._attach``: sorted LE uint32 arrays): a value is
    # in the set when it is in ``added``, or in the base and not in ``removed``. ``overlay`` is False for an
    # empty one (no pointer is read then), ``filter`` is a bitset over the top ``32 - filter_shift`` bits of the
    # added values, so most misses of the base are answered by one bit.
    bint overlay
    const uint8_t* added
    uint32_t n_added
    const uint8_t* removed
    uint32_t n_removed
    const uint8_t* filter
    uint32_t filter_shift


cdef inline void rindex_prefetch_container(const RIndex* ix, Entry e, uint32_t v) noexcept nogil:
    if (e.summary >> ((v & 0xFFFF) >> 10)) & 1:
        lmcz_prefetch_container(ix.base + e.offset, e.kind == KIND_BITSET, e.n, v)


cdef inline bint rindex_base_contains(const RIndex* ix, Entry e, uint32_t v) noexcept nogil:
    cdef uint32_t lo = v & 0xFFFF
    cdef const uint8_t* c = ix.base + e.offset
    if not ((e.summary >> (lo >> 10)) & 1):
        return False
    if e.kind == KIND_ARRAY:
        return lmcz_array_contains(c, e.n, lo)
    if e.kind == KIND_BITSET:
        return (lmcz_r64(c + ((lo >> 6) << 3)) >> (lo & 63)) & 1
    if e.kind == KIND_RUN:
        return lmcz_run_contains(c, e.n, lo)
    return False


cdef bint rindex_overlay(const RIndex* ix, bint base_hit, uint32_t v) noexcept nogil:
    """The answer for ``v`` once the overlay is applied to the base's (kept out of line: the hot path with an
    empty overlay is one flag test)."""
    cdef uint32_t bit
    if base_hit:
        return not (ix.n_removed and lmcz_u32_contains(ix.removed, ix.n_removed, v))
    if ix.n_added == 0:
        return False
    bit = v >> ix.filter_shift
    if not ((ix.filter[bit >> 3] >> (bit & 7)) & 1):
        return False
    return lmcz_u32_contains(ix.added, ix.n_added, v)


cdef inline bint rindex_contains_entry(const RIndex* ix, Entry e, uint32_t v) noexcept nogil:
    cdef bint hit = rindex_base_contains(ix, e, v)
    if not ix.overlay:
        return hit
    return rindex_overlay(ix, hit, v)


cdef inline bint rindex_contains(const RIndex* ix, uint32_t v) noexcept nogil:
    return rindex_contains_entry(ix, ix.table[v >> 16], v)


cdef int _corrupt(str what) except -1:
    raise ValueError(f"corrupt Roaring bitmap: {what}")


cdef int rindex_build(RIndex* ix, Entry* t, const uint8_t* p, Py_ssize_t size) except -1:
    """Validate a whole portable serialization at ``p`` and fill ``ix``, with ``t`` (allocated) as its table.

    Every offset stored in the table has been checked against ``size`` together with the extent of its
    container, so probing can never read outside the buffer, whatever the buffer held.
    """
    cdef uint32_t cookie, n = 0, i, key, prev_key = 0, card, runs, r, start, length, prev_end = 0
    cdef Py_ssize_t pos = 0, desc, offs, runbits = 0, need
    cdef bint has_runs = False, has_offsets = False, is_run
    cdef uint64_t total = 0, ones, summary, word
    cdef uint64_t ALL_ONES = 0xFFFFFFFFFFFFFFFFULL
    cdef const uint8_t* c
    memset(t, 0, MAX_CONTAINERS * sizeof(Entry))
    memset(ix, 0, sizeof(RIndex))
    ix.table = t
    ix.base = p
    ix.size = size
    ix.containers = 0
    ix.cardinality = 0
    if size > 0xFFFFFFFF:
        _corrupt("larger than 4 GiB")
    if size < 4:
        _corrupt(f"{size} bytes is shorter than the 4-byte cookie")
    cookie = lmcz_r32(p)
    if (cookie & 0xFFFF) == SERIAL_COOKIE:
        has_runs = True
        n = (cookie >> 16) + 1
        runbits = 4
        pos = 4 + (n + 7) // 8
        has_offsets = n >= NO_OFFSET_THRESHOLD
    elif cookie == SERIAL_COOKIE_NO_RUNCONTAINER:
        has_runs = False
        if size < 8:
            _corrupt("truncated container count")
        n = lmcz_r32(p + 4)
        if n > MAX_CONTAINERS:
            _corrupt(f"{n} containers (at most {MAX_CONTAINERS})")
        pos = 8
        has_offsets = True
    else:
        _corrupt(f"unknown cookie {cookie & 0xFFFF}")
    desc = pos
    pos += 4 * <Py_ssize_t>n
    offs = pos
    if has_offsets:
        pos += 4 * <Py_ssize_t>n
    if pos > size:
        _corrupt(f"truncated header ({size} bytes, header needs {pos})")
    for i in range(n):
        key = lmcz_r16(p + desc + 4 * i)
        card = lmcz_r16(p + desc + 4 * i + 2) + 1
        if i > 0 and key <= prev_key:
            _corrupt(f"container keys not strictly increasing at container {i}")
        prev_key = key
        if has_offsets and lmcz_r32(p + offs + 4 * i) != <uint32_t>pos:
            _corrupt(f"offset of container {i} is {lmcz_r32(p + offs + 4 * i)}, expected {pos}")
        is_run = has_runs and ((p[runbits + (i >> 3)] >> (i & 7)) & 1)
        summary = 0
        if is_run:
            if pos + 2 > size:
                _corrupt(f"truncated run container {i}")
            runs = lmcz_r16(p + pos)
            pos += 2
            need = 4 * <Py_ssize_t>runs
            if runs == 0 or pos + need > size:
                _corrupt(f"run container {i} with {runs} runs does not fit")
            c = p + pos
            ones = 0
            for r in range(runs):
                start = lmcz_r16(c + 4 * r)
                length = lmcz_r16(c + 4 * r + 2)
                if start + length > 0xFFFF:
                    _corrupt(f"run container {i} has a run past 65535")
                if r > 0 and start <= prev_end:
                    _corrupt(f"run container {i} has overlapping or unsorted runs")
                prev_end = start + length
                ones += length + 1
                summary |= (ALL_ONES >> (63 - (prev_end >> 10))) & (ALL_ONES << (start >> 10))
            if ones != card:
                _corrupt(f"run container {i} holds {ones} values, header says {card}")
            t[key].summary = summary
            t[key].offset = <uint32_t>pos
            t[key].kind = KIND_RUN
            t[key].n = <uint16_t>runs
            pos += need
        elif card <= ARRAY_MAX:
            need = 2 * <Py_ssize_t>card
            if pos + need > size:
                _corrupt(f"truncated array container {i}")
            c = p + pos
            summary = (<uint64_t>1) << (lmcz_r16(c) >> 10)
            for r in range(1, card):
                if lmcz_r16(c + 2 * r) <= lmcz_r16(c + 2 * r - 2):
                    _corrupt(f"array container {i} not strictly increasing")
                summary |= (<uint64_t>1) << (lmcz_r16(c + 2 * r) >> 10)
            t[key].summary = summary
            t[key].offset = <uint32_t>pos
            t[key].kind = KIND_ARRAY
            t[key].n = <uint16_t>card
            pos += need
        else:
            if pos + BITSET_BYTES > size:
                _corrupt(f"truncated bitset container {i}")
            c = p + pos
            ones = 0
            for r in range(BITSET_BYTES // 8):
                word = lmcz_r64(c + 8 * r)
                ones += <uint64_t>__builtin_popcountll(word)
                if word:
                    summary |= (<uint64_t>1) << (r >> 4)
            if ones != card:
                _corrupt(f"bitset container {i} holds {ones} values, header says {card}")
            t[key].summary = summary
            t[key].offset = <uint32_t>pos
            t[key].kind = KIND_BITSET
            pos += BITSET_BYTES
        total += card
    if pos != size:
        _corrupt(f"{size - pos} trailing bytes after the last container")
    ix.containers = n
    ix.cardinality = total
    return 0


cdef Entry* _table_alloc() except NULL:
    cdef Entry* t = <Entry*>calloc(MAX_CONTAINERS, sizeof(Entry))
    if t == NULL:
        raise MemoryError()
    return t


INDEX_NBYTES = MAX_CONTAINERS * sizeof(Entry)


# A stored index: the table ``rindex_build`` derives, written by the writer next to the prefilter in the same
# transaction, so that a reader switching to a new version only checks it (bounds of every entry, no pass over
# the containers' values) instead of deriving it again inside a till's call. Native byte order and layout: the
# magic read back as a number and the entry size both differ on a machine that would read it otherwise.
cdef struct IndexHeader:
    uint64_t magic
    uint64_t prefilter_size
    uint64_t cardinality
    uint32_t containers
    uint32_t entry_bytes

cdef uint64_t INDEX_MAGIC = 0x3158495A434D4C00ULL   # b"\0LMCZIX1" read as a little-endian number
STORED_INDEX_NBYTES = sizeof(IndexHeader) + MAX_CONTAINERS * sizeof(Entry)


def build_index(prefilter) -> bytes:
    """Validate a prefilter (Roaring portable bytes) in full and return its stored index (``ProbeBase._attach``).

    ``ValueError`` when the prefilter is corrupt.
    """
    cdef Py_buffer view
    cdef RIndex ix
    cdef IndexHeader header
    cdef Entry* table = _table_alloc()
    cdef char* out_data
    try:
        PyObject_GetBuffer(prefilter, &view, PyBUF_SIMPLE)
        try:
            rindex_build(&ix, table, <const uint8_t*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
        header.magic = INDEX_MAGIC
        header.prefilter_size = <uint64_t>ix.size
        header.cardinality = ix.cardinality
        header.containers = ix.containers
        header.entry_bytes = sizeof(Entry)
        out = PyBytes_FromStringAndSize(NULL, sizeof(IndexHeader) + MAX_CONTAINERS * sizeof(Entry))
        out_data = PyBytes_AS_STRING(out)
        memcpy(out_data, &header, sizeof(IndexHeader))
        memcpy(out_data + sizeof(IndexHeader), table, MAX_CONTAINERS * sizeof(Entry))
        return out
    finally:
        free(table)


cdef int rindex_check_header(const uint8_t* index, Py_ssize_t index_size, Py_ssize_t size,
                             IndexHeader* header) except -1:
    if index_size != <Py_ssize_t>(sizeof(IndexHeader) + MAX_CONTAINERS * sizeof(Entry)):
        raise ValueError(f"stored prefilter index of {index_size} bytes; expected {STORED_INDEX_NBYTES}")
    memcpy(header, index, sizeof(IndexHeader))
    if header.magic != INDEX_MAGIC or header.entry_bytes != sizeof(Entry):
        raise ValueError("stored prefilter index was not written by this build (magic, byte order or layout)")
    if header.prefilter_size != <uint64_t>size:
        raise ValueError(f"stored prefilter index describes a {header.prefilter_size}-byte prefilter, "
                         f"the prefilter has {size}")
    return 0


cdef int rindex_adopt(RIndex* ix, const Entry* table, const IndexHeader* header, const uint8_t* p,
                      Py_ssize_t size) except -1:
    """Use a stored table for the prefilter at ``p`` after checking each entry's kind and extent against
    ``size``: whatever the table holds, a probe then reads only inside the prefilter (answers from a tampered
    table may be wrong, but never a read out of bounds). One pass over 1 MiB, no pass over the values."""
    cdef uint32_t present = 0
    cdef int k
    cdef uint64_t extent
    cdef Entry e
    for k in range(MAX_CONTAINERS):
        e = table[k]
        if e.kind == KIND_NONE:
            if e.summary:
                raise ValueError(f"stored prefilter index: empty entry {k} has a summary")
            continue
        present += 1
        if e.kind == KIND_ARRAY:
            if e.n == 0 or e.n > ARRAY_MAX:
                raise ValueError(f"stored prefilter index: array entry {k} holds {e.n} values")
            extent = 2 * <uint64_t>e.n
        elif e.kind == KIND_BITSET:
            extent = BITSET_BYTES
        elif e.kind == KIND_RUN:
            if e.n == 0:
                raise ValueError(f"stored prefilter index: run entry {k} has no runs")
            extent = 4 * <uint64_t>e.n
        else:
            raise ValueError(f"stored prefilter index: entry {k} has unknown kind {e.kind}")
        if <uint64_t>e.offset + extent > <uint64_t>size:
            raise ValueError(f"stored prefilter index: entry {k} reaches past the prefilter's end")
    if present != header.containers:
        raise ValueError(f"stored prefilter index: {present} entries, header says {header.containers}")
    memset(ix, 0, sizeof(RIndex))
    ix.base = p
    ix.size = size
    ix.table = table
    ix.containers = header.containers
    ix.cardinality = header.cardinality
    return 0


@cython.final
cdef class RoaringView:
    """A read-only, zero-copy view of a Roaring bitmap in its portable serialization (``BitMap.serialize()``).

    The whole structure is validated on construction (``ValueError`` when corrupt or truncated); the exporter's
    buffer is held, so a ``bytearray`` cannot be resized and an ``mmap`` cannot be closed under the view.
    """
    cdef Py_buffer _view
    cdef bint _held
    cdef RIndex _ix
    cdef Entry* _table

    def __cinit__(self, buffer):
        self._table = _table_alloc()
        PyObject_GetBuffer(buffer, &self._view, PyBUF_SIMPLE)
        self._held = True
        rindex_build(&self._ix, self._table, <const uint8_t*>self._view.buf, self._view.len)

    def __dealloc__(self):
        if self._held:
            PyBuffer_Release(&self._view)
            self._held = False
        free(self._table)
        self._table = NULL
        self._ix.table = NULL

    def __contains__(self, value):
        if not isinstance(value, int) or value < 0 or value > 0xFFFFFFFF:
            return False
        return rindex_contains(&self._ix, <uint32_t>value)

    def __len__(self):
        return self._ix.cardinality

    @property
    def containers(self) -> int:
        """Number of containers (distinct high 16-bit keys)."""
        return self._ix.containers

    @property
    def nbytes(self) -> int:
        """Size of the serialization viewed."""
        return self._ix.size


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


# --------------------------------------------------------------------------------------------------------------
# Raw scans
# --------------------------------------------------------------------------------------------------------------

CodeError = _codes_mod.CodeError
_reason_of = _codes_mod.reason_of
_reading_error = _codes_mod.reading_error
_new_code_error = _codes_mod.code_error
cdef Py_ssize_t _E_TOO_LONG = -1 - _codes_mod.REASONS.index("too_long")
cdef Py_ssize_t _E_INVALID_UTF8 = -1 - _codes_mod.REASONS.index("invalid_utf8")
cdef Py_ssize_t _RAW_MAX = 2048     # _codes' RAW_MAX: a longer str is refused before it is encoded


cdef object _code_error(Py_ssize_t code, object raw, Py_ssize_t index, bint cis=False):
    """The ``CodeError`` for a scan ``cut_identity`` refused with ``code``: the parser's own (with the
    position), and for a batch item (``index`` >= 0) the index in the message and as ``.index``."""
    try:
        _codes_mod.parse_code(raw, cis=cis)
    except CodeError as exc:
        err = exc
    else:
        err = CodeError(_reason_of(code))
    if index >= 0:
        err = CodeError(err.reason, err.position, f"item {index}: {err}")
        err.index = index
    return err


cdef inline Py_ssize_t _cut_text(const unsigned char* s, Py_ssize_t n, uint8_t* out, uint8_t* alts,
                                 Py_ssize_t* alt_lens, int* n_alts, bint cis) noexcept nogil:
    """Cut a scan (or with ``cis`` a CIS line, one reading); for a scan, also its other readings when ``alts`` is
    given (room for READINGS_MAX - 1 identities, lengths in ``alt_lens``, how many in ``n_alts``).

    The parser decides what a scan can mean (``_codes.cut_readings``): a GS placeholder such as ``<GS>`` read as GS
    and as serial text, a lost GS recovered and the bare CIS. A check looks every reading up (as
    ``Blocklist.check`` does with ``readings_of``): the scan is blocked when any reading is.
    """
    if cis:
        return cut_cis_identity(s, n, out)
    if alts == NULL:
        return cut_identity(s, n, out)      # the most likely reading only (bulk cuts of scans)
    return cut_readings(s, n, out, alts, alt_lens, n_alts)


cdef inline Py_ssize_t _cut(object raw, uint8_t* out, uint8_t* alts=NULL, Py_ssize_t* alt_lens=NULL,
                            int* n_alts=NULL, bint cis=False) except? -0x7FFFFFFF:
    """Cut ``raw`` (str, bytes, bytearray or any buffer) to its identity in ``out``; < 0 is a reason code.
    Without ``cis``, ``alts``, ``alt_lens`` and ``n_alts`` receive the other readings (see ``_cut_text``)."""
    cdef const char* s
    cdef Py_ssize_t n, r
    cdef Py_buffer view
    if PyUnicode_Check(raw):
        if PyUnicode_IS_COMPACT_ASCII(raw):
            s = <const char*>PyUnicode_DATA(raw)
            n = PyUnicode_GET_LENGTH(raw)
        else:
            if PyUnicode_GET_LENGTH(raw) > _RAW_MAX:
                return _E_TOO_LONG
            s = _utf8_or_null(raw, &n)
            if s == NULL:
                PyErr_Clear()
                return _E_INVALID_UTF8
        return _cut_text(<const unsigned char*>s, n, out, alts, alt_lens, n_alts, cis)
    if PyBytes_Check(raw):
        return _cut_text(<const unsigned char*>PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), out, alts, alt_lens,
                         n_alts, cis)
    if PyByteArray_Check(raw):
        return _cut_text(<const unsigned char*>PyByteArray_AS_STRING(raw), PyByteArray_GET_SIZE(raw), out, alts,
                         alt_lens, n_alts, cis)
    try:
        PyObject_GetBuffer(raw, &view, PyBUF_SIMPLE)
    except TypeError:
        raise TypeError(f"a marking code must be str or bytes-like, not {type(raw).__name__}") from None
    try:
        r = _cut_text(<const unsigned char*>view.buf, view.len, out, alts, alt_lens, n_alts, cis)
    finally:
        PyBuffer_Release(&view)
    return r


def keys_and_hashes(raws, *, bint cis=True):
    """Cut every input for a bulk load: ``(keys, prefilter_keys, errors)``.

    ``keys`` are the packed LMDB keys and ``prefilter_keys`` (``array('I')``) their prefilter keys, in input
    order, for the valid inputs only; ``errors`` lists ``(index, reason, message)`` for the invalid ones.
    Inputs are read as blocklist lines (``cis=True``, ``cut_cis_identity``: a GS-less text after AI 21 is all
    serial); ``cis=False`` reads them as till scans (``cut_identity``).
    """
    cdef uint8_t ident[IDENTITY_MAX]
    cdef Py_ssize_t i = 0, r, count = 0, cap
    cdef list keys = []
    cdef list errors = []
    cdef c_array hashes = _py_array.array("I")
    if hasattr(raws, "__len__"):
        cap = len(raws)
    else:
        cap = 1024
    array_resize(hashes, cap)
    for raw in raws:
        r = _cut(raw, ident, NULL, NULL, NULL, cis)
        if r < 0:
            err = _code_error(r, raw, -1, cis)
            errors.append((i, err.reason, str(err)))
        else:
            if count == cap:
                cap = cap * 2 + 1024
                array_resize(hashes, cap)
            hashes.data.as_uints[count] = _identity_key(ident, <size_t>r)
            count += 1
            keys.append(_pack(ident, r))
        i += 1
    array_resize(hashes, count)
    return keys, hashes, errors


# --------------------------------------------------------------------------------------------------------------
# Full verdicts: the tables and the sold register as the compiled check reads them
# --------------------------------------------------------------------------------------------------------------

cdef extern from *:
    """
    static inline double lmcz_wall_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }
    static inline int lmcz_has_descr_set(PyObject* descr) {
        return Py_TYPE(descr)->tp_descr_set != NULL;
    }
    #include "structmember.h"
    /* The byte offset of the object slot a `__slots__` member descriptor stands for, or -1 when `descr` is not
       a writable object slot of `type` (then the compiled check does not build that type itself). */
    static Py_ssize_t lmcz_slot_offset(PyObject* descr, PyObject* type) {
        PyMemberDef* m;
        if (!PyObject_TypeCheck(descr, &PyMemberDescr_Type)) return -1;
        if (((PyDescrObject*)descr)->d_type != (PyTypeObject*)type) return -1;
        m = ((PyMemberDescrObject*)descr)->d_member;
        if (m->type != T_OBJECT_EX || (m->flags & READONLY)) return -1;
        if (m->offset < (Py_ssize_t)sizeof(PyObject) || m->offset + (Py_ssize_t)sizeof(PyObject*)
                > ((PyTypeObject*)type)->tp_basicsize) return -1;
        return m->offset;
    }
    /* A new instance of `type` with every slot empty (what object.__new__ makes), to fill with lmcz_put_slot. */
    static inline PyObject* lmcz_alloc(PyObject* type) {
        return ((PyTypeObject*)type)->tp_alloc((PyTypeObject*)type, 0);
    }
    /* Store a new reference to `value` in the empty slot at `offset` of `obj` (steals nothing). */
    static inline void lmcz_put_slot(PyObject* obj, Py_ssize_t offset, PyObject* value) {
        Py_INCREF(value);
        *(PyObject**)((char*)obj + offset) = value;
    }
    /* An ASCII str of n bytes at p (the caller knows they are ASCII: canonical identities, GTINs, CIS). */
    static inline PyObject* lmcz_ascii(const void* p, Py_ssize_t n) {
        PyObject* s = PyUnicode_New(n, 127);
        if (s != NULL) memcpy(PyUnicode_DATA(s), p, (size_t)n);
        return s;
    }
    """
    double lmcz_wall_s() noexcept nogil
    bint lmcz_has_descr_set(PyObject* descr) noexcept
    Py_ssize_t lmcz_slot_offset(PyObject* descr, PyObject* type) noexcept
    object lmcz_alloc(PyObject* type)
    void lmcz_put_slot(PyObject* obj, Py_ssize_t offset, PyObject* value) noexcept
    str lmcz_ascii(const void* p, Py_ssize_t n)


cdef inline Py_ssize_t _search_u64(const uint64_t* a, Py_ssize_t n, uint64_t x) noexcept nogil:
    """Index of ``x`` in the sorted ``a[0:n]``, or -1."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < n and a[lo] == x else -1


@cython.final
cdef class VerdictTables:
    """One version's minimum prices and grey GTINs as the compiled check reads them: sorted arrays built from the
    store's in-memory copy of its tables (``store.prices.TableCopy``: GTIN -> (its own minimum price or None,
    grey), product group -> price), answering exactly what ``prices.tables_answer`` answers."""
    cdef uint64_t* gtins
    cdef int64_t* prices        # -1: the GTIN has no minimum price of its own
    cdef uint8_t* grey
    cdef Py_ssize_t n
    cdef uint64_t* groups
    cdef int64_t* group_prices
    cdef Py_ssize_t n_groups

    def __cinit__(self, gtins, groups):
        cdef Py_ssize_t i
        rows = sorted((int(g), value[0], value[1]) for g, value in gtins.items())
        pairs = sorted((int(g), int(p)) for g, p in groups.items())
        self.n = len(rows)
        self.n_groups = len(pairs)
        self.gtins = <uint64_t*>calloc(self.n + 1, sizeof(uint64_t))
        self.prices = <int64_t*>calloc(self.n + 1, sizeof(int64_t))
        self.grey = <uint8_t*>calloc(self.n + 1, sizeof(uint8_t))
        self.groups = <uint64_t*>calloc(self.n_groups + 1, sizeof(uint64_t))
        self.group_prices = <int64_t*>calloc(self.n_groups + 1, sizeof(int64_t))
        if (self.gtins == NULL or self.prices == NULL or self.grey == NULL or self.groups == NULL
                or self.group_prices == NULL):
            raise MemoryError()
        for i in range(self.n):
            g, price, grey = rows[i]
            if not 0 <= g < 100000000000000:
                raise ValueError(f"a table GTIN must have 14 digits, not {g!r}")
            if price is not None and not 0 <= price <= INT64_MAX:
                raise ValueError(f"a minimum price is 0..2**63-1 kopecks, not {price!r}")
            self.gtins[i] = g
            self.prices[i] = -1 if price is None else price
            self.grey[i] = bool(grey)
        for i in range(self.n_groups):
            g, price = pairs[i]
            if not 1 <= g <= 0xFFFF or not 0 <= price <= INT64_MAX:
                raise ValueError(f"bad group price {g!r}: {price!r}")
            self.groups[i] = g
            self.group_prices[i] = price

    def __dealloc__(self):
        free(self.gtins)
        free(self.prices)
        free(self.grey)
        free(self.groups)
        free(self.group_prices)

    cdef inline int64_t answer(self, uint64_t gtin, int group, bint* grey) noexcept nogil:
        """The minimum price (-1: none) for a code of ``gtin`` in product group ``group`` (-1: none known), and in
        ``grey`` whether the GTIN is grey."""
        cdef Py_ssize_t i
        cdef int64_t smp = -1
        grey[0] = False
        if self.n:
            i = _search_u64(self.gtins, self.n, gtin)
            if i >= 0:
                smp = self.prices[i]
                grey[0] = self.grey[i]
        if smp < 0 and self.n_groups and group >= 0:
            i = _search_u64(self.groups, self.n_groups, <uint64_t>group)
            if i >= 0:
                smp = self.group_prices[i]
        return smp

    def lookup(self, gtin, pg=None):
        """``(smp, grey)`` for a GTIN (14 digits) and a product group or None (tests)."""
        cdef bint grey
        cdef int64_t smp = self.answer(<uint64_t>int(gtin), -1 if pg is None else int(pg), &grey)
        return (None if smp < 0 else smp), grey

    def __len__(self):
        return self.n + self.n_groups


cdef inline uint64_t _sold_hash(const uint8_t* ident, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = xxh3_64(ident, <size_t>n)
    return h if h != 0 else 1       # 0 marks an empty slot


@cython.final
cdef class SoldFilter:
    """A superset of the identities in a sold register: an open-addressing set of their XXH3-64 hashes.

    A miss proves a code is not in the register; a hit (a sold code, a removed one, a hash collision) is
    confirmed in the register itself (``store/sold.py``). It only grows: a return or a purge leaves a hit that
    the confirmation answers, so one filter serves every later version it was brought up to date with
    (``store.sold_filter``)."""
    cdef uint64_t* slots
    cdef size_t mask
    cdef size_t count

    def __cinit__(self, Py_ssize_t expected=0):
        cdef size_t cap = 64
        while cap < <size_t>(2 * expected + 2):
            cap <<= 1
        self.slots = <uint64_t*>calloc(cap, sizeof(uint64_t))
        if self.slots == NULL:
            raise MemoryError()
        self.mask = cap - 1
        self.count = 0

    def __dealloc__(self):
        free(self.slots)

    cdef int _insert(self, uint64_t h) except -1:
        cdef size_t i, cap, k
        cdef uint64_t* old
        cdef uint64_t* grown
        if 2 * (self.count + 1) > self.mask + 1:
            cap = 2 * (self.mask + 1)
            grown = <uint64_t*>calloc(cap, sizeof(uint64_t))
            if grown == NULL:
                raise MemoryError()
            old = self.slots
            for k in range(self.mask + 1):
                if old[k]:
                    i = old[k] & (cap - 1)
                    while grown[i]:
                        i = (i + 1) & (cap - 1)
                    grown[i] = old[k]
            self.slots = grown
            self.mask = cap - 1
            free(old)
        i = h & self.mask
        while self.slots[i]:
            if self.slots[i] == h:
                return 0
            i = (i + 1) & self.mask
        self.slots[i] = h
        self.count += 1
        return 0

    cdef inline void prefetch(self, uint64_t h) noexcept nogil:
        lmcz_prefetch(&self.slots[h & self.mask])

    cdef inline bint has(self, uint64_t h) noexcept nogil:
        cdef size_t i = h & self.mask
        while self.slots[i]:
            if self.slots[i] == h:
                return True
            i = (i + 1) & self.mask
        return False

    def add(self, identity):
        """Add one identity (canonical, bytes-like)."""
        cdef Py_buffer view
        PyObject_GetBuffer(identity, &view, PyBUF_SIMPLE)
        try:
            self._insert(_sold_hash(<const uint8_t*>view.buf, view.len))
        finally:
            PyBuffer_Release(&view)

    def add_keys(self, keys, Py_ssize_t skip=0):
        """Add the identity at ``key[skip:]`` of each bytes-like key (``skip=8``: the sold register's time index);
        returns how many keys were read."""
        cdef Py_buffer view
        cdef Py_ssize_t count = 0
        if skip < 0:
            raise ValueError("skip must be >= 0")
        for key in keys:
            PyObject_GetBuffer(key, &view, PyBUF_SIMPLE)
            try:
                if view.len > skip:
                    self._insert(_sold_hash(<const uint8_t*>view.buf + skip, view.len - skip))
            finally:
                PyBuffer_Release(&view)
            count += 1
        return count

    def __contains__(self, identity):
        cdef Py_buffer view
        cdef bint hit
        if isinstance(identity, str):
            identity = (<str>identity).encode("ascii")
        PyObject_GetBuffer(identity, &view, PyBUF_SIMPLE)
        try:
            hit = self.has(_sold_hash(<const uint8_t*>view.buf, view.len))
        finally:
            PyBuffer_Release(&view)
        return hit

    def __len__(self):
        return self.count


@cython.final
cdef class VerdictContext:
    """What the compiled check needs of one version besides its prefilter (``reading.Reading.verdict_context``):
    its tables (None: empty), its sold filter (None: the register is empty in that version), the metadata a
    ``Verdict`` names, and the version's exact answers for what the compiled pass cannot decide alone:
    ``block_of(identity: bytes) -> Block | None`` for a prefilter hit (the code's or its GTIN's block, or None
    for a false hit), ``sold_of(identity: bytes, now) -> bool`` for a sold-filter hit (in the register and not
    expired), and ``slow(probe, raw, pg, tail_cut, now) -> Verdict``, the whole Python verdict of a scan that
    reads several ways (rare)."""
    cdef VerdictTables tables
    cdef SoldFilter sold
    cdef object db_version
    cdef object db_updated_at
    cdef object instance_id
    cdef double reference
    cdef bint has_reference
    cdef object slow
    cdef object block_of
    cdef object sold_of

    def __cinit__(self, VerdictTables tables, SoldFilter sold, db_version, db_updated_at, reference, instance_id,
                  slow, block_of, sold_of):
        self.tables = tables if tables is not None and len(tables) else None
        self.sold = sold if sold is not None and len(sold) else None
        self.db_version = db_version
        self.db_updated_at = db_updated_at
        self.instance_id = instance_id
        self.has_reference = reference is not None
        self.reference = float(reference) if reference is not None else 0.0
        self.slow = slow
        self.block_of = block_of
        self.sold_of = sold_of

    cdef inline object age(self, double now):
        if not self.has_reference:
            return None
        return max(0.0, now - self.reference)


# The `Verdict` class the compiled check builds (store/records.py registers it: this layer imports nothing above
# it), and the member descriptors of its slots in `_VERDICT_FIELDS` order.
cdef object _group_check = None


def _register_group_check(fn):
    """The store's product-group check (``tables.check_group``), for a ``pg`` that is not a plain int 1..65535."""
    global _group_check
    _group_check = fn


_VERDICT_FIELDS = ("blocked", "cis", "gtin", "serial", "identity", "block", "db_version", "db_updated_at", "db_age",
                   "instance_id", "mrp", "smp", "grey_gtin", "sold")
cdef object _verdict_type = None
cdef list _verdict_slots = []
cdef Py_ssize_t _verdict_at[14]      # each field's slot offset in a Verdict
cdef object _TRUE = True
cdef object _FALSE = False


def _register_verdict(cls):
    """Make the compiled check build instances of ``cls`` (a frozen dataclass with ``__slots__`` holding exactly
    the fields of ``_VERDICT_FIELDS``), as its own ``__init__`` would."""
    global _verdict_type, _verdict_slots
    slots = []
    fields = getattr(cls, "__dataclass_fields__", None)
    if fields is None or tuple(fields) != _VERDICT_FIELDS:
        raise TypeError(f"{cls!r} is not a dataclass of the fields {_VERDICT_FIELDS}")
    for name in _VERDICT_FIELDS:
        descr = cls.__dict__.get(name)
        if descr is None or type(descr).__name__ != "member_descriptor" or not lmcz_has_descr_set(<PyObject*>descr):
            raise TypeError(f"{cls!r}.{name} is not a slot")
        slots.append(descr)
    if getattr(cls, "__post_init__", None) is not None:
        raise TypeError(f"{cls!r} has a __post_init__ the compiled check would not run")
    if not isinstance(cls, type) or cls.__new__ is not object.__new__ or hasattr(cls, "__dict__") and \
            "__dict__" in cls.__dict__:
        raise TypeError(f"{cls!r}: the compiled check builds only plain slotted instances")
    for i in range(14):
        _verdict_at[i] = lmcz_slot_offset(<PyObject*>slots[i], <PyObject*>cls)
        if _verdict_at[i] < 0:
            raise TypeError(f"{cls!r}.{_VERDICT_FIELDS[i]} is not a writable object slot of it")
    _verdict_type = cls
    _verdict_slots = slots


cdef inline str _ascii_str(const uint8_t* p, Py_ssize_t n):
    return lmcz_ascii(p, n)


cdef object _build_verdict(object block, str cis, str gtin, str serial, str identity, object db_version,
                           object db_updated_at, object db_age, object instance_id, object mrp, object smp,
                           bint grey, bint sold):
    """A Verdict of these fields, slot by slot (as its frozen dataclass __init__ would set them)."""
    cdef PyObject* v
    if _verdict_type is None:
        raise RuntimeError("no Verdict class registered (lmcz_fast.store registers it on import)")
    obj = lmcz_alloc(<PyObject*>_verdict_type)
    v = <PyObject*>obj
    lmcz_put_slot(v, _verdict_at[0], <PyObject*>(_FALSE if block is None else _TRUE))
    lmcz_put_slot(v, _verdict_at[1], <PyObject*>cis)
    lmcz_put_slot(v, _verdict_at[2], <PyObject*>gtin)
    lmcz_put_slot(v, _verdict_at[3], <PyObject*>serial)
    lmcz_put_slot(v, _verdict_at[4], <PyObject*>identity)
    lmcz_put_slot(v, _verdict_at[5], <PyObject*>block)
    lmcz_put_slot(v, _verdict_at[6], <PyObject*>db_version)
    lmcz_put_slot(v, _verdict_at[7], <PyObject*>db_updated_at)
    lmcz_put_slot(v, _verdict_at[8], <PyObject*>db_age)
    lmcz_put_slot(v, _verdict_at[9], <PyObject*>instance_id)
    lmcz_put_slot(v, _verdict_at[10], <PyObject*>mrp)
    lmcz_put_slot(v, _verdict_at[11], <PyObject*>smp)
    lmcz_put_slot(v, _verdict_at[12], <PyObject*>(_TRUE if grey else _FALSE))
    lmcz_put_slot(v, _verdict_at[13], <PyObject*>(_TRUE if sold else _FALSE))
    # Its fields are strs, numbers, bools, None and a Block of strs: it can never be part of a reference cycle,
    # so the cyclic collector need not track it (as CPython untracks tuples of such values). A receipt's or a
    # request's thousands of verdicts then cost no collector passes.
    PyObject_GC_UnTrack(v)
    return obj


cdef object _fast_verdict(const uint8_t* ident, Py_ssize_t n, const CodeFacts* facts, VerdictContext ctx,
                          double now, int64_t smp, bint grey, object block, bint sold):
    """The Verdict of a scan of one reading, from the compiled pass (``block``, ``sold``: its exact answers)."""
    identity = _ascii_str(ident, n)
    cis = identity if facts.kind == 1 else _ascii_str(facts.cis, facts.cis_len)
    return _build_verdict(block, cis, _ascii_str(ident + 2, 14), _ascii_str(ident + SERIAL_AT, n - SERIAL_AT),
                          identity, ctx.db_version, ctx.db_updated_at, ctx.age(now), ctx.instance_id,
                          None if facts.mrp < 0 else facts.mrp, None if smp < 0 else smp, grey, sold)


# Per-code flags of a `CheckBatch` (`CheckBatch.flags[i]`).
cdef enum:
    F_BLOCKED = 1
    F_SOLD = 2
    F_GREY = 4
    F_HAS_MRP = 8
    F_HAS_SMP = 16
    F_UNREADABLE = 32
    F_EXACT = 64

CHECK_BLOCKED = F_BLOCKED
CHECK_SOLD = F_SOLD
CHECK_GREY = F_GREY
CHECK_HAS_MRP = F_HAS_MRP
CHECK_HAS_SMP = F_HAS_SMP
CHECK_UNREADABLE = F_UNREADABLE
CHECK_EXACT = F_EXACT
CHECK_STRIDE = IDENTITY_MAX
GTIN_STRIDE = 14


@cython.final
cdef class CheckBatch:
    """The full verdicts of a list of scans, from one version, in compact arrays (``ProbeBase._check_batch``;
    ``Snapshot.check_batch`` is the public door). For code ``i``:

    - ``flags[i]`` (``array('B')``): ``CHECK_BLOCKED``, ``CHECK_SOLD``, ``CHECK_GREY`` (the GTIN is grey),
      ``CHECK_HAS_MRP``/``CHECK_HAS_SMP`` (``mrp[i]``/``smp[i]`` hold a price; else the field is None),
      ``CHECK_UNREADABLE`` (not a marking code: ``errors[i]`` is its ``CodeError``, every other field is empty),
      ``CHECK_EXACT`` (``verdicts[i]`` is its ``Verdict``: a code that is blocked, for its ``block`` details, or
      sold, or that reads several ways; the arrays hold the same values);
    - ``mrp[i]``, ``smp[i]`` (``array('q')``, kopecks; 0 when the flag says none);
    - ``cis[i*CHECK_STRIDE : i*CHECK_STRIDE + cis_len[i]]`` (bytearray, ASCII): the CIS as CRPT prints it;
    - ``identity[i*CHECK_STRIDE : ... + identity_len[i]]``: the canonical identity;
    - ``gtin[i*GTIN_STRIDE : (i+1)*GTIN_STRIDE]``: the 14-digit GTIN.

    Once per batch: ``db_version``, ``db_updated_at``, ``db_age``, ``instance_id`` (as every ``Verdict`` of it
    carries). ``verdict(i)`` builds code ``i``'s ``Verdict`` (raises its ``CodeError`` when unreadable). No Python
    object is made per free code: only unreadable, blocked, sold and several-reading codes have entries in
    ``errors``/``verdicts``.
    """
    cdef readonly c_array flags
    cdef readonly c_array mrp
    cdef readonly c_array smp
    cdef readonly bytearray cis
    cdef readonly c_array cis_len
    cdef readonly bytearray identity
    cdef readonly c_array identity_len
    cdef readonly bytearray gtin
    cdef readonly dict verdicts
    cdef readonly dict errors
    cdef readonly object db_version
    cdef readonly object db_updated_at
    cdef readonly object db_age
    cdef readonly object instance_id
    cdef Py_ssize_t n

    def __init__(self, *args, **kwargs):
        raise TypeError("a CheckBatch is made by Snapshot.check_batch()")

    def __len__(self):
        return self.n

    def verdict_list(self):
        """``[self.verdict(i) for i in range(len(self))]`` (``check_many``), built in one compiled loop."""
        cdef Py_ssize_t i
        cdef list out = PyList_New(self.n)
        for i in range(self.n):
            v = self._verdict(i)
            Py_INCREF(v)
            PyList_SET_ITEM(out, i, v)
        return out

    def verdict(self, Py_ssize_t i):
        """Code ``i``'s ``Verdict``, equal to what ``check`` answers for it (its ``CodeError`` if unreadable)."""
        return self._verdict(i)

    cdef object _verdict(self, Py_ssize_t i):
        cdef uint8_t f
        cdef const uint8_t* idp
        cdef const uint8_t* cp
        cdef Py_ssize_t n, cn
        if not 0 <= i < self.n:
            raise IndexError(f"code {i} of a batch of {self.n}")
        f = self.flags.data.as_uchars[i]
        if f & F_UNREADABLE:
            raise self.errors[i]
        if f & F_EXACT:
            return self.verdicts[i]
        idp = <const uint8_t*>PyByteArray_AS_STRING(self.identity) + i * IDENTITY_MAX
        cp = <const uint8_t*>PyByteArray_AS_STRING(self.cis) + i * IDENTITY_MAX
        n = self.identity_len.data.as_uchars[i]
        cn = self.cis_len.data.as_uchars[i]
        identity = _ascii_str(idp, n)
        cis = identity if cn == n and memcmp(cp, idp, <size_t>n) == 0 else _ascii_str(cp, cn)
        return _build_verdict(None, cis, _ascii_str(idp + 2, 14),
                              _ascii_str(idp + SERIAL_AT, n - SERIAL_AT), identity, self.db_version,
                              self.db_updated_at, self.db_age, self.instance_id,
                              self.mrp.data.as_longlongs[i] if f & F_HAS_MRP else None,
                              self.smp.data.as_longlongs[i] if f & F_HAS_SMP else None, f & F_GREY, f & F_SOLD)


cdef CheckBatch _new_batch(Py_ssize_t total):
    cdef CheckBatch b = CheckBatch.__new__(CheckBatch)
    b.n = total
    b.flags = _py_array.array("B")
    array_resize(b.flags, total)
    b.mrp = _py_array.array("q")
    array_resize(b.mrp, total)
    b.smp = _py_array.array("q")
    array_resize(b.smp, total)
    b.cis_len = _py_array.array("B")
    array_resize(b.cis_len, total)
    b.identity_len = _py_array.array("B")
    array_resize(b.identity_len, total)
    if total:
        memset(b.flags.data.as_uchars, 0, <size_t>total)
        memset(b.mrp.data.as_voidptr, 0, <size_t>total * 8)
        memset(b.smp.data.as_voidptr, 0, <size_t>total * 8)
        memset(b.cis_len.data.as_uchars, 0, <size_t>total)
        memset(b.identity_len.data.as_uchars, 0, <size_t>total)
    b.cis = bytearray(total * IDENTITY_MAX)
    b.identity = bytearray(total * IDENTITY_MAX)
    b.gtin = bytearray(total * 14)
    b.verdicts = {}
    b.errors = {}
    return b


cdef int _fill_exact(CheckBatch b, Py_ssize_t i, object v) except -1:
    """Code ``i`` of ``b`` from a ``Verdict`` of the exact path."""
    cdef uint8_t f = F_EXACT
    cdef bytes cis = v.cis.encode("ascii")
    cdef bytes identity = v.identity.encode("ascii")
    cdef bytes gtin = v.gtin.encode("ascii")
    if len(cis) > IDENTITY_MAX or len(identity) > IDENTITY_MAX or len(gtin) != 14:
        raise ValueError(f"verdict of unexpected shape: {v!r}")
    if v.blocked:
        f |= F_BLOCKED
    if v.sold:
        f |= F_SOLD
    if v.grey_gtin:
        f |= F_GREY
    if v.mrp is not None:
        f |= F_HAS_MRP
        b.mrp.data.as_longlongs[i] = v.mrp
    if v.smp is not None:
        f |= F_HAS_SMP
        b.smp.data.as_longlongs[i] = v.smp
    b.flags.data.as_uchars[i] = f
    memcpy(PyByteArray_AS_STRING(b.cis) + i * IDENTITY_MAX, PyBytes_AS_STRING(cis), len(cis))
    b.cis_len.data.as_uchars[i] = <uint8_t>len(cis)
    memcpy(PyByteArray_AS_STRING(b.identity) + i * IDENTITY_MAX, PyBytes_AS_STRING(identity), len(identity))
    b.identity_len.data.as_uchars[i] = <uint8_t>len(identity)
    memcpy(PyByteArray_AS_STRING(b.gtin) + i * 14, PyBytes_AS_STRING(gtin), 14)
    b.verdicts[i] = v
    return 0


cdef inline int _group_of(object pg, int kind) except? -2:
    """The product group whose minimum price applies: the caller's, else the one a tobacco form proves (3)."""
    if pg is None:
        return 3 if kind != 1 else -1
    return <int>pg


cdef inline Py_ssize_t _cut_check(object raw, uint8_t* out, uint8_t* alts, Py_ssize_t* alt_lens, int* n_alts,
                                  bint tail_cut, CodeFacts* facts) except? -0x7FFFFFFF:
    """``_cut`` for a check: the most likely identity in ``out``, the others in ``alts``, ``facts`` for a scan of
    one reading (``_codes.cut_check``); < 0 is a reason code. TypeError for what is not text or bytes."""
    cdef const char* s
    cdef Py_ssize_t n, r
    cdef Py_buffer view
    n_alts[0] = 0
    facts.kind = 0
    if PyUnicode_Check(raw):
        if PyUnicode_IS_COMPACT_ASCII(raw):
            s = <const char*>PyUnicode_DATA(raw)
            n = PyUnicode_GET_LENGTH(raw)
        else:
            if PyUnicode_GET_LENGTH(raw) > _RAW_MAX:
                return _E_TOO_LONG
            s = _utf8_or_null(raw, &n)
            if s == NULL:
                PyErr_Clear()
                return _E_INVALID_UTF8
        return cut_check(<const unsigned char*>s, n, out, alts, alt_lens, n_alts, tail_cut, facts)
    if PyBytes_Check(raw):
        return cut_check(<const unsigned char*>PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), out, alts, alt_lens,
                         n_alts, tail_cut, facts)
    if PyByteArray_Check(raw):
        return cut_check(<const unsigned char*>PyByteArray_AS_STRING(raw), PyByteArray_GET_SIZE(raw), out, alts,
                         alt_lens, n_alts, tail_cut, facts)
    try:
        PyObject_GetBuffer(raw, &view, PyBUF_SIMPLE)
    except TypeError:
        raise TypeError(f"a marking code is str or bytes, not {type(raw).__name__}") from None
    try:
        r = cut_check(<const unsigned char*>view.buf, view.len, out, alts, alt_lens, n_alts, tail_cut, facts)
    finally:
        PyBuffer_Release(&view)
    return r


cdef object _check_error(Py_ssize_t code, object raw, bint tail_cut, Py_ssize_t index):
    """The ``CodeError`` ``check`` raises for a scan refused with ``code``: ``readings_of``'s own (the reason and
    position the Python parser gives), and for a batch item the index in the message and as ``.index``, and
    ``check``'s own error for the scan alone as ``.alone`` (a service answers each scan in its own entry with it).
    Made without a raise (``reading_error``): a batch keeps its errors, and one raised would keep its traceback."""
    err = _reading_error(raw, tail_cut=tail_cut)
    if err is None:
        err = CodeError(_reason_of(code))
    if index >= 0:
        alone = err
        err = _new_code_error(alone.reason, alone.position, f"item {index}: {alone}")
        err.index = index
        err.alone = alone
    return err


# --------------------------------------------------------------------------------------------------------------
# ProbeBase
# --------------------------------------------------------------------------------------------------------------

class NotAttachedError(RuntimeError):
    """The probe has no prefilter attached (never opened, closed, or a failed re-attach)."""


cdef enum:
    BATCH = 32


cdef struct AState:
    RIndex ix
    const uint8_t* gtins
    size_t n_gtins


@cython.final
@cython.internal
cdef class _Attached:
    """One attached version: its held buffers, its index, its blocked-GTIN array and the ``owner`` it belongs to
    (the store's read transaction, kept alive with it). Never changed once made: a renewal makes a new one, and a
    call that took this one answers from it to its end, whatever another thread attaches meanwhile."""
    cdef AState st
    cdef Entry* own_table           # the derived table when no stored index is used (freed with this object)
    cdef _Attached table_owner      # the attachment whose derived table this one reuses (the same version)
    cdef Py_buffer pf_view
    cdef Py_buffer gt_view
    cdef Py_buffer ix_view
    cdef Py_buffer ad_view          # the overlay's added and removed keys (sorted LE uint32), when given
    cdef Py_buffer rm_view
    cdef uint8_t* filter            # the bitset over the added keys' top bits (freed with this object)
    cdef bint held
    cdef bint ix_held
    cdef bint ad_held
    cdef bint rm_held
    cdef bint empty
    cdef object version
    cdef object owner
    cdef object ctx                 # the owner's VerdictContext, once a full check asked for it

    def __dealloc__(self):
        # The buffers go before the owner (Cython clears the object fields after this): the views never
        # outlive the transaction whose pages they point at.
        if self.held:
            PyBuffer_Release(&self.pf_view)
            PyBuffer_Release(&self.gt_view)
            self.held = False
        if self.ix_held:
            PyBuffer_Release(&self.ix_view)
            self.ix_held = False
        if self.ad_held:
            PyBuffer_Release(&self.ad_view)
            self.ad_held = False
        if self.rm_held:
            PyBuffer_Release(&self.rm_view)
            self.rm_held = False
        free(self.filter)
        self.filter = NULL
        free(self.own_table)
        self.own_table = NULL


#: At most this many keys in each half of an overlay (the writer folds it into the base long before).
OVERLAY_MAX = 1 << 24


cdef uint32_t _check_keys(const Py_buffer* view, str what) except? 0xFFFFFFFF:
    """An overlay half: its count ``n`` (LE uint32), then ``n`` LE uint32 keys strictly ascending, then padding
    (the writer keeps the value's size steady, so its pages are reused); returns ``n``."""
    cdef const uint8_t* p = <const uint8_t*>view.buf
    cdef Py_ssize_t i, n
    if view.len == 0:
        return 0
    if view.len < 4:
        raise ValueError(f"prefilter overlay: {what} keys of {view.len} bytes, shorter than their count")
    n = lmcz_r32(p)
    if n > OVERLAY_MAX or 4 + 4 * n > view.len:
        raise ValueError(f"prefilter overlay: {n} {what} keys do not fit in {view.len} bytes (at most "
                         f"{OVERLAY_MAX})")
    p += 4
    for i in range(1, n):
        if lmcz_r32(p + 4 * i) <= lmcz_r32(p + 4 * i - 4):
            raise ValueError(f"prefilter overlay: {what} keys not strictly ascending at item {i}")
    return <uint32_t>n


cdef int _attach_overlay(_Attached a, object added, object removed) except -1:
    """Set ``a``'s overlay from its two buffers (None or empty: no overlay), validated in full (O(n), small)."""
    cdef uint32_t bits_log = 12, i, bit
    cdef const uint8_t* p
    a.st.ix.overlay = False
    a.st.ix.n_added = 0
    a.st.ix.n_removed = 0
    a.st.ix.added = NULL
    a.st.ix.removed = NULL
    a.st.ix.filter = NULL
    if added is not None:
        PyObject_GetBuffer(added, &a.ad_view, PyBUF_SIMPLE)
        a.ad_held = True
        a.st.ix.n_added = _check_keys(&a.ad_view, "added")
        a.st.ix.added = <const uint8_t*>a.ad_view.buf + 4
    if removed is not None:
        PyObject_GetBuffer(removed, &a.rm_view, PyBUF_SIMPLE)
        a.rm_held = True
        a.st.ix.n_removed = _check_keys(&a.rm_view, "removed")
        a.st.ix.removed = <const uint8_t*>a.rm_view.buf + 4
    if a.st.ix.n_added:
        # ~1/16 of the bits set at most: a miss of the base passes the filter ~6 % of the time, or less.
        while bits_log < 20 and (<uint64_t>1 << bits_log) < 16 * <uint64_t>a.st.ix.n_added:
            bits_log += 1
        a.filter = <uint8_t*>calloc((<size_t>1 << bits_log) // 8, 1)
        if a.filter == NULL:
            raise MemoryError()
        a.st.ix.filter_shift = 32 - bits_log
        p = a.st.ix.added
        for i in range(a.st.ix.n_added):
            bit = lmcz_r32(p + 4 * i) >> a.st.ix.filter_shift
            a.filter[bit >> 3] |= <uint8_t>(1 << (bit & 7))
        a.st.ix.filter = a.filter
    a.st.ix.overlay = a.st.ix.n_added != 0 or a.st.ix.n_removed != 0
    return 0


cdef inline bint _state_hit(const AState* st, const uint8_t* ident, Py_ssize_t n) noexcept:
    """Prefilter: the identity's key is in the bitmap, or its GTIN is in the blocked-GTIN array."""
    if rindex_contains(&st.ix, _identity_key(ident, <size_t>n)):
        return True
    return st.n_gtins != 0 and lmcz_u64_contains(st.gtins, st.n_gtins, _gtin_value(ident))


cdef class ProbeBase:
    """Compiled hot path of ``Blocklist``: cut, hash, probe the attached prefilter, confirm hits in Python.

    A subclass provides ``_renew()`` (called by the first call after the refresh deadline; it must call
    ``_attach`` again, ``_keep``, or ``_detach``) and the exact lookup of a prefilter hit, ``_confirm(identity:
    bytes) -> bool``: the attachment's ``owner``'s when one was given to ``_attach`` (so a hit is confirmed in
    the very version that was probed), else the probe's own. The buffers given to ``_attach`` are held
    (``PyObject_GetBuffer``) for as long as anything answers from that attachment.

    One call, one version: a call renews (if due) before it starts and never inside. ``is_blocked_many`` takes
    the attached version once and answers every item from it, even if a ``_confirm`` callback lets another
    thread renew or re-attach meanwhile.
    """
    cdef _Attached _cur             # the attached version, or None
    cdef const AState* _st          # &_cur.st, or NULL when nothing is attached
    cdef int64_t _deadline          # fast-path gate: a call before it neither renews nor refuses
    cdef int64_t _renew_ns          # a call at or after this renews first
    cdef int64_t _interval_ns

    def __cinit__(self):
        self._cur = None
        self._st = NULL
        self._deadline = INT64_MIN
        self._renew_ns = INT64_MAX
        self._interval_ns = INT64_MAX

    @cython.final
    cdef void _release(self) noexcept:
        self._cur = None
        self._st = NULL

    @cython.final
    cdef void _set_deadlines(self, double interval) noexcept:
        if interval * 1e9 >= <double>INT64_MAX / 2:
            self._interval_ns = INT64_MAX
            self._renew_ns = INT64_MAX
        else:
            self._interval_ns = <int64_t>(interval * 1e9)
            self._renew_ns = lmcz_now_ns() + self._interval_ns
        # A version without a list never takes the fast path: every call goes on to `_refuse_empty`.
        self._deadline = INT64_MIN if self._cur is None or self._cur.empty else self._renew_ns

    def _attach(self, prefilter, gtins, refresh_interval=0.25, version=None, index=None, bint verify=True,
                owner=None, bint empty=False, added=None, removed=None):
        """Attach a prefilter (Roaring portable bytes) and a blocked-GTIN array (sorted LE uint64).

        ``index`` is the prefilter's stored index (``build_index``), or None to derive one here. With
        ``verify`` the prefilter is validated in full and a given index must equal the one derived from it (a
        reader does this once, on opening); without, a given index is only checked entry by entry against the
        prefilter's bounds, which is what lets a reader switch to a new version in well under a millisecond.
        On any error the probe ends up detached and ``ValueError`` is raised.
        ``refresh_interval`` (seconds, >= 0; ``math.inf`` for never) sets when ``_renew`` is next called.
        If ``version`` equals the attached one and the prefilter has the same length, the earlier validation
        is reused (the buffers may have moved: the index is relative to the prefilter's start).
        ``owner`` is kept alive with this attachment, and its ``_confirm`` confirms the hits probed in it.
        ``empty`` marks a version that holds no list: calls then raise through ``_refuse_empty`` instead of
        answering, while renewals still look for a list as usual.
        ``added`` and ``removed`` are the prefilter's overlay (each a LE uint32 count, that many sorted LE uint32
        keys and padding; validated here; None or empty: none):
        the set probed is the prefilter plus ``added`` minus ``removed``, as a delta wrote it without rewriting
        the prefilter.
        """
        cdef bint has_index = index is not None
        cdef const uint8_t* g
        cdef const Entry* stored
        cdef IndexHeader header
        cdef Entry* scratch
        cdef Py_ssize_t i
        cdef double interval = refresh_interval
        cdef _Attached old = self._cur
        cdef _Attached a
        cdef bint reuse
        if not (interval >= 0):
            raise ValueError(f"refresh_interval must be >= 0, not {refresh_interval!r}")
        a = _Attached.__new__(_Attached)
        PyObject_GetBuffer(prefilter, &a.pf_view, PyBUF_SIMPLE)
        try:
            PyObject_GetBuffer(gtins, &a.gt_view, PyBUF_SIMPLE)
        except BaseException:
            PyBuffer_Release(&a.pf_view)
            raise
        a.held = True
        if has_index:
            PyObject_GetBuffer(index, &a.ix_view, PyBUF_SIMPLE)
            a.ix_held = True
        reuse = (old is not None and version is not None and version == old.version
                 and a.pf_view.len == old.st.ix.size and has_index == old.ix_held)
        self._release()     # from here on, an error leaves the probe detached (`a` lets its buffers go)
        if a.gt_view.len % 8:
            raise ValueError(f"blocked-GTIN array of {a.gt_view.len} bytes is not a whole number of uint64")
        g = <const uint8_t*>a.gt_view.buf
        for i in range(1, a.gt_view.len // 8):
            if lmcz_r64(g + 8 * i) < lmcz_r64(g + 8 * i - 8):
                raise ValueError(f"blocked-GTIN array not sorted at item {i}")
        if has_index:
            rindex_check_header(<const uint8_t*>a.ix_view.buf, a.ix_view.len, a.pf_view.len, &header)
            stored = <const Entry*>(<const uint8_t*>a.ix_view.buf + sizeof(IndexHeader))
            if (<size_t>stored) % sizeof(uint64_t):
                raise ValueError("stored prefilter index is not 8-byte aligned in its buffer")
            if reuse:
                a.st.ix = old.st.ix
                a.st.ix.base = <const uint8_t*>a.pf_view.buf
                a.st.ix.table = stored
            elif verify:
                scratch = _table_alloc()
                try:
                    rindex_build(&a.st.ix, scratch, <const uint8_t*>a.pf_view.buf, a.pf_view.len)
                    if (header.containers != a.st.ix.containers or header.cardinality != a.st.ix.cardinality
                            or memcmp(stored, scratch, MAX_CONTAINERS * sizeof(Entry)) != 0):
                        raise ValueError("stored prefilter index does not match the prefilter")
                finally:
                    free(scratch)
                a.st.ix.table = stored      # equal to the table just validated: no bounds pass needed
            else:
                rindex_adopt(&a.st.ix, stored, &header, <const uint8_t*>a.pf_view.buf, a.pf_view.len)
        elif reuse:
            a.st.ix = old.st.ix
            a.st.ix.base = <const uint8_t*>a.pf_view.buf
            a.table_owner = old if old.own_table != NULL else old.table_owner
        else:
            a.own_table = _table_alloc()
            rindex_build(&a.st.ix, a.own_table, <const uint8_t*>a.pf_view.buf, a.pf_view.len)
        _attach_overlay(a, added, removed)
        a.st.gtins = <const uint8_t*>a.gt_view.buf
        a.st.n_gtins = <size_t>(a.gt_view.len // 8)
        a.version = version
        a.owner = owner
        a.empty = empty
        self._cur = a
        self._st = &a.st
        self._set_deadlines(interval)

    def _detach(self):
        """Let go of the attached version; until the next ``_attach`` every probe raises ``NotAttachedError``.

        A call still answering from it (in another thread, inside a ``_confirm``) raises ``NotAttachedError``
        when that callback returns."""
        self._release()

    def _adopt(self, ProbeBase source not None):
        """Answer from ``source``'s attached version from now on, and never renew (a snapshot of one version)."""
        if source._st == NULL:
            raise NotAttachedError("no blocklist attached to this probe (closed, or never opened)")
        self._cur = source._cur
        self._st = &self._cur.st
        self._set_deadlines(float("inf"))

    def _keep(self, refresh_interval=0.25):
        """The attached version is still the newest: answer from it for another ``refresh_interval`` seconds."""
        cdef double interval = refresh_interval
        if not (interval >= 0):
            raise ValueError(f"refresh_interval must be >= 0, not {refresh_interval!r}")
        if self._st != NULL:
            self._set_deadlines(interval)

    def _expire(self):
        """Renew before the next call (a commit made through this handle must be seen by its next call)."""
        if self._st != NULL:
            self._deadline = INT64_MIN
            self._renew_ns = INT64_MIN

    def _refuse_empty(self):
        """Called instead of answering from a version attached as ``empty``; a subclass raises its own error."""
        raise NotAttachedError("the attached version holds no list: nothing was ever loaded")

    @property
    def _attached_info(self):
        """``(containers, cardinality, gtins)`` of the attached prefilter, or None (tests, ``info()``)."""
        if self._st == NULL:
            return None
        return (self._st.ix.containers, self._st.ix.cardinality + self._st.ix.n_added - self._st.ix.n_removed,
                self._st.n_gtins)

    @property
    def _index_nbytes(self) -> int:
        """Private memory of the derived index: 1 MiB when derived here, 0 when a stored index is used."""
        if self._cur is None or (self._cur.own_table == NULL and self._cur.table_owner is None):
            return 0
        return MAX_CONTAINERS * sizeof(Entry)

    @cython.final
    cdef int _ready(self) except -1:
        """Before a call: renew past the deadline; fail if nothing is attached or the version holds no list."""
        cdef int64_t now
        if self._st != NULL:
            now = lmcz_now_ns()
            if now < self._deadline:
                return 0
            if now >= self._renew_ns:
                self._renew()
        if self._st == NULL:
            raise NotAttachedError("no blocklist attached to this probe (closed, or never opened)")
        if self._cur.empty:
            self._refuse_empty()
            raise NotAttachedError("the attached version holds no list: nothing was ever loaded")
        return 0

    @cython.final
    cdef bint _confirm_hit(self, _Attached a, const uint8_t* ident, Py_ssize_t n) except -1:
        """The exact answer for a prefilter hit in ``a``, from ``a``'s owner (the version that was probed)."""
        owner = a.owner
        identity = PyBytes_FromStringAndSize(<const char*>ident, n)
        result = bool((self if owner is None else owner)._confirm(identity))
        if self._st == NULL:
            raise NotAttachedError("the blocklist was closed during the call")
        return result

    @cython.always_allow_keywords(False)
    def is_blocked(self, raw):
        """Whether ``raw`` (a scan, str or bytes) is blocked. Invalid scans raise ``CodeError``.

        A scan with several readings (``_codes.readings_of``: a ``<GS>`` that may be GS or serial text, a lost GS)
        is blocked when any reading is; every reading is looked up in the same version."""
        cdef uint8_t ident[IDENTITY_MAX]
        cdef uint8_t alts[(READINGS_MAX - 1) * IDENTITY_MAX]
        cdef Py_ssize_t alt_lens[READINGS_MAX - 1]
        cdef int n_alts, k
        cdef bint alt_hit = False
        cdef Py_ssize_t n = _cut(raw, ident, alts, alt_lens, &n_alts)
        cdef const AState* st
        cdef _Attached a
        if n < 0:
            raise _code_error(n, raw, -1)
        self._ready()
        st = self._st
        if not _state_hit(st, ident, n):
            for k in range(n_alts):
                if rindex_contains(&st.ix, _identity_key(&alts[k * IDENTITY_MAX], <size_t>alt_lens[k])):
                    alt_hit = True
                    break
            if not alt_hit:
                return False
        # A prefilter hit: Python runs from here (another thread may renew), so hold this version to the end.
        a = self._cur
        if _state_hit(&a.st, ident, n) and self._confirm_hit(a, ident, n):
            return True
        for k in range(n_alts):
            if rindex_contains(&a.st.ix, _identity_key(&alts[k * IDENTITY_MAX], <size_t>alt_lens[k])) and \
                    self._confirm_hit(a, &alts[k * IDENTITY_MAX], alt_lens[k]):
                return True
        return False

    @cython.always_allow_keywords(False)
    def _maybe(self, identity):
        """Prefilter answer for a canonical identity (no cut, no confirmation, no renewal)."""
        cdef Py_buffer view
        cdef bint hit
        cdef const AState* st = self._st
        if st == NULL:
            raise NotAttachedError("no blocklist attached to this probe (closed, or never opened)")
        PyObject_GetBuffer(identity, &view, PyBUF_SIMPLE)
        try:
            hit = rindex_contains(&st.ix, <uint32_t>xxh3_64(view.buf, <size_t>view.len))
            if not hit and st.n_gtins and _is_canonical(<const uint8_t*>view.buf, view.len):
                hit = lmcz_u64_contains(st.gtins, st.n_gtins, _gtin_value(<const uint8_t*>view.buf))
        finally:
            PyBuffer_Release(&view)
        return hit

    @cython.always_allow_keywords(False)
    def _maybe_key(self, key):
        """Prefilter answer for a raw 32-bit prefilter key (tests and diagnostics; no renewal)."""
        if self._st == NULL:
            raise NotAttachedError("no blocklist attached to this probe (closed, or never opened)")
        if not 0 <= key <= 0xFFFFFFFF:
            raise ValueError(f"a prefilter key is a 32-bit unsigned integer, not {key!r}")
        return rindex_contains(&self._st.ix, <uint32_t>key)

    @cython.always_allow_keywords(False)
    def is_blocked_many(self, raws):
        """``[self.is_blocked(r) for r in raws]``, software-pipelined, every answer from one version. A bad scan
        raises ``CodeError`` naming its index (also ``.index``).

        The call renews (if due) once, before the first item, and then answers every item from the version it
        took, whatever a ``_confirm`` callback or another thread attaches meanwhile: all or nothing.
        Scans go in blocks of 32, two blocks in flight: block k is cut and hashed (prefetching each key's index
        entry), block k-1 is compared, then block k's entries are loaded (prefetching each container), so every
        load of the index and of a container has had a stage of other work to arrive.
        """
        cdef uint8_t ids[2 * BATCH * IDENTITY_MAX]
        cdef uint8_t alts[2 * BATCH * (READINGS_MAX - 1) * IDENTITY_MAX]      # other readings of a scan (rare)
        cdef Py_ssize_t alt_lens[2 * BATCH * (READINGS_MAX - 1)]
        cdef int n_alts[2 * BATCH]
        cdef bint alt_hits[BATCH]
        cdef Py_ssize_t lens[2 * BATCH]
        cdef uint32_t keys[2 * BATCH]
        cdef Entry ents[2 * BATCH]
        cdef bint hits[BATCH]
        cdef Py_ssize_t ms[2]
        cdef Py_ssize_t starts[2]
        cdef Py_ssize_t total, start = 0, m, j, r, b, nxt, ai
        cdef int cur = 0, prev = 1, k
        cdef PyObject* item
        cdef bint is_list, any_hit
        cdef _Attached a = None
        cdef const RIndex* ix
        cdef const Entry* table
        cdef const AState* st
        cdef list out
        if PyList_CheckExact(raws) or PyTuple_CheckExact(raws):
            seq = raws
        else:
            seq = list(raws)
        is_list = PyList_CheckExact(seq)
        total = PyList_GET_SIZE(seq) if is_list else PyTuple_GET_SIZE(seq)
        out = PyList_New(total)
        ms[0] = 0
        ms[1] = 0
        while True:
            m = total - start
            if m > BATCH:
                m = BATCH
            if m > 0:
                # Stage A: cut block `cur`; prefetch the next block's scan objects (scattered on the heap).
                b = cur * BATCH
                nxt = total - start - m
                if nxt > BATCH:
                    nxt = BATCH
                if is_list and start + m + nxt > PyList_GET_SIZE(seq):
                    nxt = 0
                for j in range(start + m, start + m + nxt):
                    item = PyList_GET_ITEM(seq, j) if is_list else PyTuple_GET_ITEM(seq, j)
                    lmcz_prefetch(item)
                    lmcz_prefetch(<const char*>item + 64)
                    lmcz_prefetch(<const char*>item + 128)
                for j in range(m):
                    if is_list:
                        if start + j >= PyList_GET_SIZE(seq):
                            raise RuntimeError("the list of scans changed size during is_blocked_many")
                        obj = <object>PyList_GET_ITEM(seq, start + j)
                    else:
                        obj = <object>PyTuple_GET_ITEM(seq, start + j)
                    r = _cut(obj, &ids[(b + j) * IDENTITY_MAX], &alts[(b + j) * (READINGS_MAX - 1) * IDENTITY_MAX],
                             &alt_lens[(b + j) * (READINGS_MAX - 1)], &n_alts[b + j])
                    if r < 0:
                        raise _code_error(r, obj, start + j)
                    lens[b + j] = r
                if a is None:
                    # Before the first probe (after the first block's cut, so a bad scan there is named as such):
                    # renew if due, then take the one version this call answers from.
                    self._ready()
                    a = self._cur
                    st = &a.st
                    ix = &st.ix
                    table = ix.table
                # Hash in a loop of its own, once the cut's byte stores have left the store buffer (reading them
                # back at once stalls store-to-load forwarding); prefetch each key's index entry. A prefetch never
                # faults.
                for j in range(b, b + m):
                    keys[j] = _identity_key(&ids[j * IDENTITY_MAX], <size_t>lens[j])
                    lmcz_prefetch(&table[keys[j] >> 16])
                ms[cur] = m
                starts[cur] = start
                start += m
            elif ms[prev] == 0:
                break
            if ms[prev] > 0:
                # Stage C: compare block `prev`, whose containers were prefetched a whole stage A ago.
                b = prev * BATCH
                any_hit = False
                for j in range(ms[prev]):
                    hits[j] = rindex_contains_entry(ix, ents[b + j], keys[b + j])
                    any_hit |= hits[j]
                if st.n_gtins:
                    for j in range(ms[prev]):
                        if not hits[j] and lmcz_u64_contains(st.gtins, st.n_gtins,
                                                             _gtin_value(&ids[(b + j) * IDENTITY_MAX])):
                            hits[j] = True
                            any_hit = True
                for j in range(ms[prev]):
                    alt_hits[j] = False
                    for k in range(n_alts[b + j]):
                        ai = (b + j) * (READINGS_MAX - 1) + k
                        if rindex_contains(ix, _identity_key(&alts[ai * IDENTITY_MAX], <size_t>alt_lens[ai])):
                            alt_hits[j] = True
                    any_hit |= alt_hits[j]
                if not any_hit:
                    for j in range(ms[prev]):
                        Py_INCREF(False)
                        PyList_SET_ITEM(out, starts[prev] + j, False)
                else:
                    for j in range(ms[prev]):
                        res = self._confirm_hit(a, &ids[(b + j) * IDENTITY_MAX], lens[b + j]) if hits[j] else False
                        if not res and alt_hits[j]:
                            for k in range(n_alts[b + j]):
                                ai = (b + j) * (READINGS_MAX - 1) + k
                                if self._confirm_hit(a, &alts[ai * IDENTITY_MAX], alt_lens[ai]):
                                    res = True
                                    break
                        Py_INCREF(res)
                        PyList_SET_ITEM(out, starts[prev] + j, res)
                ms[prev] = 0
            if ms[cur] > 0:
                # Stage B: load block `cur`'s entries, prefetch their containers (from the same version).
                b = cur * BATCH
                for j in range(b, b + ms[cur]):
                    ents[j] = table[keys[j] >> 16]
                    rindex_prefetch_container(ix, ents[j], keys[j])
            cur, prev = prev, cur
        if is_list and PyList_GET_SIZE(seq) != total:
            raise RuntimeError("the list of scans changed size during is_blocked_many")
        return out

    @cython.final
    cdef VerdictContext _context(self, _Attached a):
        """The compiled check's view of attachment ``a``'s version, from its owner (a ``Reading``), built once."""
        ctx = a.ctx
        if ctx is not None:
            return <VerdictContext>ctx
        owner = a.owner
        if owner is None:
            raise NotAttachedError("this probe's version has no reading to give a full verdict from")
        ctx = owner.verdict_ctx
        if ctx is None:
            ctx = owner.verdict_context()
        a.ctx = <VerdictContext?>ctx
        return <VerdictContext>ctx

    def check(self, raw, pg=None, *, bint tail_cut=False):
        """Parse a scan and say whether it is blocked, with why and the database version that said so.

        The ``Verdict`` also says whether the code is in the sold register (``sold``) and carries the prices a till
        compares a sale with: ``mrp`` (from the code itself), ``smp`` (the minimum price of the GTIN, else of
        product group ``pg`` -- given by the caller, or a tobacco pack's own group 3) and ``grey_gtin``, all from the
        one version this call answers from (a snapshot's, or the blocklist's current one). ``tail_cut=True`` also
        answers a scan whose end cut a tail AI short after a GS, for its whole identity (``readings_of``; the
        service's checks, docs/codes.md). Raises ``CodeError`` for anything that is not a marking code,
        ``RecordError`` (a ``ValueError``) for a ``pg`` that is not a product group id, and ``NoListError`` if the
        store never held a list. One compiled pass (``_check``).
        """
        if pg is not None and not (type(pg) is int and 1 <= <object>pg <= 0xFFFF):
            _group_check(pg)
        try:
            return self._check_one(raw, pg, tail_cut)
        except NotAttachedError:
            self._check_detached()
        return self._check_one(raw, pg, tail_cut)

    def _check_detached(self):
        """Called when ``check`` finds nothing attached: raise the subclass's own error, or attach again (then
        ``check`` tries once more)."""
        raise NotAttachedError("no blocklist attached to this probe (closed, or never opened)")

    @cython.always_allow_keywords(False)
    def _check(self, raw, pg=None, bint tail_cut=False):
        """``check`` without the group check and the detached hook (tests, benches)."""
        return self._check_one(raw, pg, tail_cut)

    @cython.final
    cdef object _check_one(self, object raw, object pg, bint tail_cut):
        """The full ``Verdict`` of one scan (``check``): cut, probe, the sold filter
        and the tables in one compiled pass over the version this call takes; the exact Python path
        (``VerdictContext.slow``) only for a prefilter hit, a sold-filter hit or a scan of several readings.
        ``pg``: a product group id the caller checked, or None. Bad scans raise ``readings_of``'s ``CodeError``."""
        cdef uint8_t ident[IDENTITY_MAX]
        cdef uint8_t alts[(READINGS_MAX - 1) * IDENTITY_MAX]
        cdef Py_ssize_t alt_lens[READINGS_MAX - 1]
        cdef int n_alts = 0
        cdef CodeFacts facts
        cdef Py_ssize_t n = _cut_check(raw, ident, alts, alt_lens, &n_alts, tail_cut, &facts)
        cdef VerdictContext ctx
        cdef _Attached a
        cdef int64_t smp = -1
        cdef bint grey = False, sold, hit
        cdef uint64_t h
        cdef double now
        if n < 0:
            raise _check_error(n, raw, tail_cut, -1)
        self._ready()
        a = self._cur
        ctx = self._context(a)
        now = lmcz_wall_s()
        if n_alts or facts.kind == 0:
            return ctx.slow(_pinned(a), raw, pg, tail_cut, now)
        # One XXH3-64 of the identity: its low 32 bits are the prefilter key, the whole of it the sold filter's hash.
        h = _identity_hash(ident, n)
        hit = rindex_contains(&a.st.ix, <uint32_t>h) or (
            a.st.n_gtins != 0 and lmcz_u64_contains(a.st.gtins, a.st.n_gtins, _gtin_value(ident)))
        block = ctx.block_of(PyBytes_FromStringAndSize(<const char*>ident, n)) if hit else None
        sold = ctx.sold is not None and ctx.sold.has(h if h != 0 else 1) and \
            ctx.sold_of(PyBytes_FromStringAndSize(<const char*>ident, n), now)
        if ctx.tables is not None:
            smp = ctx.tables.answer(_gtin_value(ident), _group_of(pg, facts.kind), &grey)
        return _fast_verdict(ident, n, &facts, ctx, now, smp, grey, block, sold)

    def _check_batch(self, raws, pgs=None, bint tail_cut=False, bint strict=False):
        """The full verdicts of ``raws`` as a ``CheckBatch``, every one from the one version this call takes.

        ``pgs``: None, or one product group id (checked by the caller) or None per scan. An unreadable scan is
        flagged ``CHECK_UNREADABLE`` with its ``CodeError`` (naming its index) in ``errors``; with ``strict`` the
        first one is raised instead, before anything is looked up. First every scan is cut and hashed (prefetching
        each key's index entry), then every index entry is loaded (prefetching its container), then each code is
        tested and its fields filled: the lines a code needs have had the other codes' work to arrive.
        """
        cdef Py_ssize_t total, i, n
        cdef uint8_t alts[(READINGS_MAX - 1) * IDENTITY_MAX]
        cdef Py_ssize_t alt_lens[READINGS_MAX - 1]
        cdef int n_alts = 0
        cdef CodeFacts* facts = NULL
        cdef uint32_t* keys = NULL
        cdef uint64_t* sold_hashes = NULL
        cdef uint8_t* multi = NULL
        cdef uint8_t* idp
        cdef uint8_t f
        cdef CheckBatch b
        cdef VerdictContext ctx
        cdef _Attached a
        cdef const AState* st
        cdef const Entry* table
        cdef Entry ents[BATCH]
        cdef Py_ssize_t start, end, prev
        cdef int64_t smp
        cdef bint grey, hit, sold_hit, sold
        cdef uint64_t h
        cdef double now
        cdef ProbeBase pinned = None
        seq = raws if PyList_CheckExact(raws) or PyTuple_CheckExact(raws) else list(raws)
        total = len(seq)
        groups = None if pgs is None else pgs if PyList_CheckExact(pgs) or PyTuple_CheckExact(pgs) else list(pgs)
        b = _new_batch(total)
        facts = <CodeFacts*>calloc(total + 1, sizeof(CodeFacts))
        keys = <uint32_t*>calloc(total + 1, sizeof(uint32_t))
        sold_hashes = <uint64_t*>calloc(total + 1, sizeof(uint64_t))
        multi = <uint8_t*>calloc(total + 1, sizeof(uint8_t))
        try:
            if facts == NULL or keys == NULL or multi == NULL or sold_hashes == NULL:
                raise MemoryError()
            idp = <uint8_t*>PyByteArray_AS_STRING(b.identity)
            for i in range(total):
                item = seq[i]
                try:
                    n = _cut_check(item, idp + i * IDENTITY_MAX, alts, alt_lens, &n_alts, tail_cut, &facts[i])
                except TypeError:
                    err = CodeError("not_a_string", None, f"item {i} is {type(item).__name__}, not a string")
                    err.index = i
                    n = 0
                else:
                    err = _check_error(n, item, tail_cut, i) if n < 0 else None
                if err is not None:
                    if strict:
                        raise err
                    b.errors[i] = err
                    b.flags.data.as_uchars[i] = F_UNREADABLE
                    continue
                b.identity_len.data.as_uchars[i] = <uint8_t>n
                multi[i] = n_alts != 0 or facts[i].kind == 0
            if groups is not None and len(groups) != total:
                raise ValueError(f"pgs holds {len(groups)} entries for {total} scans: one (or None) per scan")
            self._ready()
            a = self._cur
            st = &a.st
            table = st.ix.table
            ctx = self._context(a)
            now = lmcz_wall_s()
            b.db_version = ctx.db_version
            b.db_updated_at = ctx.db_updated_at
            b.db_age = ctx.age(now)
            b.instance_id = ctx.instance_id
            # In blocks of BATCH codes, two in flight: block k is hashed (prefetching its index entries and sold
            # slots), block k-1 is tested and filled, then block k's entries are loaded (prefetching containers).
            start = 0
            prev = -1
            while True:
                end = start + BATCH if start + BATCH < total else total
                for i in range(start, end):
                    if not b.flags.data.as_uchars[i]:
                        # One XXH3-64: the low 32 bits are the prefilter key, the whole the sold filter's hash.
                        h = _identity_hash(idp + i * IDENTITY_MAX, b.identity_len.data.as_uchars[i])
                        keys[i] = <uint32_t>h
                        lmcz_prefetch(&table[keys[i] >> 16])
                        if ctx.sold is not None:
                            sold_hashes[i] = h if h != 0 else 1
                            ctx.sold.prefetch(sold_hashes[i])
                for i in range(prev, start if prev >= 0 else prev):
                    if b.flags.data.as_uchars[i]:
                        continue
                    n = b.identity_len.data.as_uchars[i]
                    pg = groups[i] if groups is not None else None
                    if multi[i]:
                        if pinned is None:
                            pinned = _pinned(a)
                        _fill_exact(b, i, ctx.slow(pinned, seq[i], pg, tail_cut, now))
                        continue
                    hit = (rindex_contains_entry(&st.ix, ents[i - prev], keys[i])
                           or (st.n_gtins != 0 and lmcz_u64_contains(st.gtins, st.n_gtins,
                                                                     _gtin_value(idp + i * IDENTITY_MAX))))
                    sold_hit = ctx.sold is not None and ctx.sold.has(sold_hashes[i])
                    if hit or sold_hit:
                        block = ctx.block_of(PyBytes_FromStringAndSize(<const char*>idp + i * IDENTITY_MAX, n)) \
                            if hit else None
                        sold = sold_hit and ctx.sold_of(
                            PyBytes_FromStringAndSize(<const char*>idp + i * IDENTITY_MAX, n), now)
                        if block is not None or sold:
                            smp = -1
                            grey = False
                            if ctx.tables is not None:
                                smp = ctx.tables.answer(_gtin_value(idp + i * IDENTITY_MAX),
                                                        _group_of(pg, facts[i].kind), &grey)
                            _fill_exact(b, i, _fast_verdict(idp + i * IDENTITY_MAX, n, &facts[i], ctx, now, smp,
                                                            grey, block, sold))
                            continue
                    f = 0
                    if facts[i].mrp >= 0:
                        f |= F_HAS_MRP
                        b.mrp.data.as_longlongs[i] = facts[i].mrp
                    if ctx.tables is not None:
                        smp = ctx.tables.answer(_gtin_value(idp + i * IDENTITY_MAX), _group_of(pg, facts[i].kind),
                                                &grey)
                        if smp >= 0:
                            f |= F_HAS_SMP
                            b.smp.data.as_longlongs[i] = smp
                        if grey:
                            f |= F_GREY
                    b.flags.data.as_uchars[i] = f
                    memcpy(PyByteArray_AS_STRING(b.cis) + i * IDENTITY_MAX, facts[i].cis, <size_t>facts[i].cis_len)
                    b.cis_len.data.as_uchars[i] = <uint8_t>facts[i].cis_len
                    memcpy(PyByteArray_AS_STRING(b.gtin) + i * 14, idp + i * IDENTITY_MAX + 2, 14)
                if start >= total:
                    break
                for i in range(start, end):
                    if not b.flags.data.as_uchars[i]:
                        ents[i - start] = table[keys[i] >> 16]
                        rindex_prefetch_container(&st.ix, ents[i - start], keys[i])
                prev = start
                start = end
        finally:
            free(facts)
            free(keys)
            free(sold_hashes)
            free(multi)
        return b


cdef ProbeBase _pinned(_Attached a):
    """A probe answering from attachment ``a`` only (for the exact path of a call that took ``a``)."""
    cdef ProbeBase p = ProbeBase.__new__(ProbeBase)
    p._cur = a
    p._st = &a.st
    p._set_deadlines(1e300)
    return p


# The module's parts, by job (lmcz_fast/_probe/, included here: the hot paths stay one compilation unit).
include "_probe/tag_1265.pxi"
include "_probe/slot_maker.pxi"
include "_probe/till_scan.pxi"
