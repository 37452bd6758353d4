# lmcz_fast/_probe.pyx, included: one attached version (_Attached), its overlay and the prefilter test.

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
