# lmcz_fast/_probe.pyx, included: ProbeBase, the hot path.

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
        return _is_blocked_many(self, raws)

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
        cdef Entry e
        if n < 0:
            raise _check_error(n, raw, tail_cut, -1)
        self._ready()
        a = self._cur
        # One XXH3-64 of the identity: its low 32 bits are the prefilter key, the whole of it the sold filter's hash.
        # Hashed first and both lines prefetched (the index entry, the sold slot): their cache misses then arrive
        # while the context and the clock are read, instead of one after the other in the probe below.
        h = _identity_hash(ident, n)
        lmcz_prefetch(&a.st.ix.table[<uint32_t>h >> 16])
        ctx = self._context(a)
        if ctx.sold is not None:
            ctx.sold.prefetch(h if h != 0 else 1)
        now = lmcz_wall_s()
        if n_alts or facts.kind == 0:
            return ctx.slow(_pinned(a), raw, pg, tail_cut, now)
        # The Verdict's strings and the tables' answer need no probe: made while the index entry arrives, then
        # the minimum price looked up while its container does.
        identity = _ascii_str(ident, n)
        cis = identity if facts.kind == 1 else _ascii_str(facts.cis, facts.cis_len)
        gtin = _ascii_str(ident + 2, 14)
        serial = _ascii_str(ident + SERIAL_AT, n - SERIAL_AT)
        e = a.st.ix.table[<uint32_t>h >> 16]
        rindex_prefetch_container(&a.st.ix, e, <uint32_t>h)
        if ctx.tables is not None:
            smp = ctx.tables.answer(_gtin_value(ident), _group_of(pg, facts.kind), &grey)
        hit = rindex_contains_entry(&a.st.ix, e, <uint32_t>h) or (
            a.st.n_gtins != 0 and lmcz_u64_contains(a.st.gtins, a.st.n_gtins, _gtin_value(ident)))
        block = ctx.block_of(PyBytes_FromStringAndSize(<const char*>ident, n)) if hit else None
        sold = ctx.sold is not None and ctx.sold.has(h if h != 0 else 1) and \
            ctx.sold_of(PyBytes_FromStringAndSize(<const char*>ident, n), now)
        return _build_verdict(block, cis, gtin, serial, identity, ctx.db_version, ctx.db_updated_at, ctx.age(now),
                              ctx.instance_id, None if facts.mrp < 0 else facts.mrp, None if smp < 0 else smp, grey,
                              sold)

    def _check_batch(self, raws, pgs=None, bint tail_cut=False, bint strict=False):
        """The full verdicts of ``raws`` as a ``CheckBatch``, every one from the one version this call takes.

        ``pgs``: None, or one product group id (checked by the caller) or None per scan. An unreadable scan is
        flagged ``CHECK_UNREADABLE`` with its ``CodeError`` (naming its index) in ``errors``; with ``strict`` the
        first one is raised instead, before anything is looked up. First every scan is cut and hashed (prefetching
        each key's index entry), then every index entry is loaded (prefetching its container), then each code is
        tested and its fields filled: the lines a code needs have had the other codes' work to arrive.
        """
        return _check_pass(self, raws, pgs, tail_cut, strict, False)

    def _check_many(self, raws, pgs=None):
        """``self._check_batch(raws, pgs, strict=True).verdict_list()`` (``check_many``: a ``Verdict`` per code,
        the first bad scan raised) in the same compiled pass, each free code's ``Verdict`` built as its code is
        tested instead of going through the batch's arrays."""
        return _check_pass(self, raws, pgs, False, True, True)

cdef ProbeBase _pinned(_Attached a):
    """A probe answering from attachment ``a`` only (for the exact path of a call that took ``a``)."""
    cdef ProbeBase p = ProbeBase.__new__(ProbeBase)
    p._cur = a
    p._st = &a.st
    p._set_deadlines(1e300)
    return p
