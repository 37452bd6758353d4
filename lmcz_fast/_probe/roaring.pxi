# lmcz_fast/_probe.pyx, included: Roaring's portable format read in place, the stored index, RoaringView.

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
