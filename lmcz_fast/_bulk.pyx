# cython: language_level=3
"""Bulk preparation of a full load, in compiled code.

A full load of 900k codes must beat SQLite's bulk insert, and the Python way of preparing it (`sorted()` of
900k `bytes`, a `Counter` of the prefilter keys, a digest over every key) costs more than LMDB's own writing.
Here each packed key is reduced once to a 64-bit big-endian prefix (the packed GTIN and the first two serial
characters) and ordered with a stable LSD radix sort; only keys sharing a prefix are compared with `memcmp`.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE, PyList_New, PyList_SET_ITEM
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport Py_INCREF
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset

from ._probe cimport xxh3_64

cdef extern from *:
    void __builtin_prefetch(const void* address) nogil

import array

cdef enum:
    RADIX_BITS = 16
    RADIX_SIZE = 1 << RADIX_BITS
    DIGEST_KEY_MAX = 64


cdef inline uint64_t _prefix(const unsigned char* data, Py_ssize_t size) noexcept nogil:
    cdef uint64_t value = 0
    cdef Py_ssize_t i
    for i in range(8):
        value = (value << 8) | (data[i] if i < size else 0)
    return value


cdef inline int _compare_keys(const unsigned char* a, Py_ssize_t na, const unsigned char* b,
                              Py_ssize_t nb) noexcept nogil:
    cdef int c = memcmp(a, b, na if na < nb else nb)
    if c != 0:
        return c
    return (na > nb) - (na < nb)


cdef void _radix_sort(uint64_t* prefix, uint32_t* index, uint64_t* prefix_tmp, uint32_t* index_tmp,
                      Py_ssize_t n, Py_ssize_t* counts) noexcept nogil:
    """Stable LSD radix sort of (prefix, index) pairs by prefix, 16 bits a pass."""
    cdef int shift = -RADIX_BITS
    cdef Py_ssize_t i, total, c
    cdef unsigned int digit
    cdef uint64_t* swap_prefix
    cdef uint32_t* swap_index
    while shift + RADIX_BITS < 64:
        shift += RADIX_BITS
        memset(counts, 0, RADIX_SIZE * sizeof(Py_ssize_t))
        for i in range(n):
            counts[(prefix[i] >> shift) & (RADIX_SIZE - 1)] += 1
        if counts[(prefix[0] >> shift) & (RADIX_SIZE - 1)] == n:
            continue
        total = 0
        for i in range(RADIX_SIZE):
            c = counts[i]
            counts[i] = total
            total += c
        for i in range(n):
            digit = (prefix[i] >> shift) & (RADIX_SIZE - 1)
            prefix_tmp[counts[digit]] = prefix[i]
            index_tmp[counts[digit]] = index[i]
            counts[digit] += 1
        memcpy(prefix, prefix_tmp, n * sizeof(uint64_t))
        memcpy(index, index_tmp, n * sizeof(uint32_t))


def prepare_full_load(list keys, hashes):
    """Order `keys` (packed identities) for an append-mode load, with what the load writes beside them.

    `hashes[i]` is the prefilter key of `keys[i]`. Returns `(order, unique_keys, sorted_hashes, shared, digest)`:
    `order` (`array('q')`) indexes each distinct key once, in byte order (of duplicates, the last occurrence);
    `unique_keys` is the list of those keys; `sorted_hashes` (`array('I')`) their prefilter keys in ascending
    order (a fast way to build the Roaring bitmap); `shared` maps each prefilter key that several distinct keys
    share onto how many do; `digest` is `set_digest`'s two 64-bit sums over the distinct keys (see
    `store.set_digest_of`).
    """
    cdef Py_ssize_t n = PyList_GET_SIZE(keys)
    cdef const uint32_t[::1] hash_view = hashes
    if hash_view.shape[0] != n:
        raise ValueError(f"{n} keys but {hash_view.shape[0]} hashes")
    if n >= 0xFFFFFFFF:
        raise ValueError("too many keys for one load")
    cdef Py_ssize_t size = n if n > 0 else 1
    cdef uint64_t* prefix = <uint64_t*>PyMem_Malloc(size * sizeof(uint64_t))
    cdef uint64_t* prefix_tmp = <uint64_t*>PyMem_Malloc(size * sizeof(uint64_t))
    cdef uint32_t* index = <uint32_t*>PyMem_Malloc(size * sizeof(uint32_t))
    cdef uint32_t* index_tmp = <uint32_t*>PyMem_Malloc(size * sizeof(uint32_t))
    cdef const unsigned char** data = <const unsigned char**>PyMem_Malloc(size * sizeof(void*))
    cdef Py_ssize_t* sizes = <Py_ssize_t*>PyMem_Malloc(size * sizeof(Py_ssize_t))
    cdef Py_ssize_t* counts = <Py_ssize_t*>PyMem_Malloc(RADIX_SIZE * sizeof(Py_ssize_t))
    cdef Py_ssize_t i, j, start, run, kept = 0
    cdef uint32_t moving_index
    cdef uint64_t sum_a = 0, sum_b = 0
    cdef unsigned char salted[DIGEST_KEY_MAX + 1]
    cdef object item
    cdef int64_t[::1] order_view
    cdef uint32_t[::1] sorted_view
    try:
        if (prefix == NULL or prefix_tmp == NULL or index == NULL or index_tmp == NULL or data == NULL
                or sizes == NULL or counts == NULL):
            raise MemoryError()
        for i in range(n):
            item = <object>PyList_GET_ITEM(keys, i)
            if not PyBytes_Check(item):
                raise TypeError(f"keys[{i}] is {type(item).__name__}, not bytes")
            data[i] = <const unsigned char*>PyBytes_AS_STRING(item)
            sizes[i] = PyBytes_GET_SIZE(item)
            if sizes[i] > DIGEST_KEY_MAX:
                raise ValueError(f"keys[{i}] is {sizes[i]} bytes; packed identities are at most {DIGEST_KEY_MAX}")
            prefix[i] = _prefix(data[i], sizes[i])
            index[i] = <uint32_t>i
            # The digest is summed here, in input order, while the key is in cache (in key order each key would
            # be a cache miss); the duplicates found below are taken off again.
            sum_a += xxh3_64(data[i], sizes[i])
            memcpy(salted, data[i], sizes[i])
            salted[sizes[i]] = 1
            sum_b += xxh3_64(salted, sizes[i] + 1)
        with nogil:
            if n > 1:
                _radix_sort(prefix, index, prefix_tmp, index_tmp, n, counts)
            start = 0
            while start < n:
                run = 1
                while start + run < n and prefix[start + run] == prefix[start]:
                    run += 1
                for i in range(start + 1, start + run):
                    moving_index = index[i]
                    j = i - 1
                    while j >= start and _compare_keys(data[index[j]], sizes[index[j]], data[moving_index],
                                                       sizes[moving_index]) > 0:
                        index[j + 1] = index[j]
                        j -= 1
                    index[j + 1] = moving_index
                start += run
            for i in range(n):
                if i + 1 < n and prefix[i] == prefix[i + 1] and _compare_keys(
                        data[index[i]], sizes[index[i]], data[index[i + 1]], sizes[index[i + 1]]) == 0:
                    j = sizes[index[i]]
                    sum_a -= xxh3_64(data[index[i]], j)
                    memcpy(salted, data[index[i]], j)
                    salted[j] = 1
                    sum_b -= xxh3_64(salted, j + 1)
                    continue
                index[kept] = index[i]
                kept += 1
        order = array.array("q", bytes(8 * kept))
        sorted_hashes = array.array("I", bytes(4 * kept))
        order_view = order
        sorted_view = sorted_hashes
        unique_keys = PyList_New(kept)
        # New key objects, made in key order: the load's writer then walks memory in the order it was allocated
        # instead of jumping to each input key (a cache miss a key). The reads of the inputs are prefetched.
        for i in range(kept):
            order_view[i] = index[i]
            if i + 16 < kept:
                __builtin_prefetch(data[index[i + 16]])
            item = PyBytes_FromStringAndSize(<const char*>data[index[i]], sizes[index[i]])
            Py_INCREF(item)
            PyList_SET_ITEM(unique_keys, i, item)
        with nogil:
            for i in range(kept):
                prefix[i] = hash_view[index[i]]
                index_tmp[i] = <uint32_t>prefix[i]
            if kept > 1:
                _radix_sort(prefix, index_tmp, prefix_tmp, index, kept, counts)
        shared = {}
        start = 0
        while start < kept:
            sorted_view[start] = <uint32_t>prefix[start]
            run = 1
            while start + run < kept and prefix[start + run] == prefix[start]:
                sorted_view[start + run] = <uint32_t>prefix[start]
                run += 1
            if run > 1:
                shared[<uint32_t>prefix[start]] = run
            start += run
        return order, unique_keys, sorted_hashes, shared, (sum_a, sum_b)
    finally:
        PyMem_Free(prefix)
        PyMem_Free(prefix_tmp)
        PyMem_Free(index)
        PyMem_Free(index_tmp)
        PyMem_Free(data)
        PyMem_Free(sizes)
        PyMem_Free(counts)



def digest_sums(list keys, bytes prefix=b""):
    """`set_digest`'s two sums mod 2**64 over `keys` (bytes), each hashed with `prefix` in front: the sum of
    XXH3-64(prefix + key) and the sum of XXH3-64(prefix + key + b"\\x01") (see `store.set_digest_of`)."""
    cdef Py_ssize_t n = PyList_GET_SIZE(keys), i, size
    cdef Py_ssize_t plen = PyBytes_GET_SIZE(prefix)
    cdef uint64_t sum_a = 0, sum_b = 0
    cdef unsigned char salted[DIGEST_KEY_MAX + 1]
    cdef object item
    if plen > DIGEST_KEY_MAX:
        raise ValueError(f"a digest prefix of {plen} bytes is too long")
    memcpy(salted, PyBytes_AS_STRING(prefix), plen)
    for i in range(n):
        item = <object>PyList_GET_ITEM(keys, i)
        if not PyBytes_Check(item):
            raise TypeError(f"keys[{i}] is {type(item).__name__}, not bytes")
        size = PyBytes_GET_SIZE(item)
        if plen + size > DIGEST_KEY_MAX:
            raise ValueError(f"keys[{i}] is {size} bytes; packed identities are at most {DIGEST_KEY_MAX - plen}")
        memcpy(salted + plen, PyBytes_AS_STRING(item), size)
        sum_a += xxh3_64(salted, plen + size)
        salted[plen + size] = 1
        sum_b += xxh3_64(salted, plen + size + 1)
    return sum_a, sum_b
