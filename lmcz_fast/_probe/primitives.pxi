# lmcz_fast/_probe.pyx, included: the C primitives the algorithms are written with (loads, multiply-fold, prefetch, clocks, container searches).

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
