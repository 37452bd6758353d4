# lmcz_fast/_probe.pyx, included: what the compiled check reads besides the prefilter: tables, sold filter,
# VerdictContext.

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
    """Index of ``x`` in the sorted ``a[0:n]`` (native uint64, no duplicates), or -1. Branch-free lower bound (the
    compiler makes the ternary a cmov): a GTIN looked up per code costs no mispredicted branches."""
    cdef const uint64_t* base = a
    cdef Py_ssize_t half
    if n <= 0:
        return -1
    while n > 1:
        half = n >> 1
        base = base + half if base[half] <= x else base
        n -= half
    return (base - a) if base[0] == x else -1


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
    confirmed in the register itself (``store/sold/``). It only grows: a return or a purge leaves a hit that
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
