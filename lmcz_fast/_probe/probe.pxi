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
        return self._batch(raws, pgs, tail_cut, strict, False)

    def _check_many(self, raws, pgs=None):
        """``self._check_batch(raws, pgs, strict=True).verdict_list()`` (``check_many``: a ``Verdict`` per code,
        the first bad scan raised) in the same compiled pass, each free code's ``Verdict`` built as its code is
        tested instead of going through the batch's arrays."""
        return self._batch(raws, pgs, False, True, True)

    @cython.final
    cdef object _batch(self, raws, pgs, bint tail_cut, bint strict, bint as_verdicts):
        """``_check_batch`` (a ``CheckBatch``), or with ``as_verdicts`` (and ``strict``) the list of the codes'
        ``Verdict``s, equal to its ``verdict_list()``."""
        cdef Py_ssize_t total, i, n
        cdef uint8_t alts[(READINGS_MAX - 1) * IDENTITY_MAX]
        cdef Py_ssize_t alt_lens[READINGS_MAX - 1]
        cdef int n_alts = 0
        cdef CodeFacts* facts = NULL
        cdef uint32_t* keys = NULL
        cdef uint64_t* sold_hashes = NULL
        cdef uint8_t* multi = NULL
        cdef uint8_t* scratch = NULL        # with as_verdicts: the identities, their lengths and the flags
        cdef uint8_t* idp
        cdef uint8_t* flags
        cdef uint8_t* id_lens
        cdef uint8_t f
        cdef CheckBatch b = None
        cdef list out = None
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
        facts = <CodeFacts*>calloc(total + 1, sizeof(CodeFacts))
        keys = <uint32_t*>calloc(total + 1, sizeof(uint32_t))
        sold_hashes = <uint64_t*>calloc(total + 1, sizeof(uint64_t))
        multi = <uint8_t*>calloc(total + 1, sizeof(uint8_t))
        try:
            if facts == NULL or keys == NULL or multi == NULL or sold_hashes == NULL:
                raise MemoryError()
            if as_verdicts:
                scratch = <uint8_t*>calloc(total + 1, IDENTITY_MAX + 2)
                if scratch == NULL:
                    raise MemoryError()
                idp = scratch
                id_lens = scratch + (total + 1) * IDENTITY_MAX
                flags = id_lens + total + 1
                out = PyList_New(total)
                # Out of the cyclic collector's sight while it is filled (as verdict_list's): nothing in it can
                # form a cycle, and a young collection per ~700 Verdicts would walk the half-filled list.
                PyObject_GC_UnTrack(<PyObject*>out)
            else:
                b = _new_batch(total)
                idp = <uint8_t*>PyByteArray_AS_STRING(b.identity)
                id_lens = b.identity_len.data.as_uchars
                flags = b.flags.data.as_uchars
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
                    flags[i] = F_UNREADABLE
                    continue
                id_lens[i] = <uint8_t>n
                multi[i] = n_alts != 0 or facts[i].kind == 0
            if groups is not None and len(groups) != total:
                raise ValueError(f"pgs holds {len(groups)} entries for {total} scans: one (or None) per scan")
            self._ready()
            a = self._cur
            st = &a.st
            table = st.ix.table
            ctx = self._context(a)
            now = lmcz_wall_s()
            db_age = ctx.age(now)
            if not as_verdicts:
                b.db_version = ctx.db_version
                b.db_updated_at = ctx.db_updated_at
                b.db_age = db_age
                b.instance_id = ctx.instance_id
            # In blocks of BATCH codes, two in flight: block k is hashed (prefetching its index entries and sold
            # slots), block k-1 is tested and filled, then block k's entries are loaded (prefetching containers).
            start = 0
            prev = -1
            while True:
                end = start + BATCH if start + BATCH < total else total
                for i in range(start, end):
                    if not flags[i]:
                        # One XXH3-64: the low 32 bits are the prefilter key, the whole the sold filter's hash.
                        h = _identity_hash(idp + i * IDENTITY_MAX, id_lens[i])
                        keys[i] = <uint32_t>h
                        lmcz_prefetch(&table[keys[i] >> 16])
                        if ctx.sold is not None:
                            sold_hashes[i] = h if h != 0 else 1
                            ctx.sold.prefetch(sold_hashes[i])
                for i in range(prev, start if prev >= 0 else prev):
                    if flags[i]:
                        continue
                    n = id_lens[i]
                    pg = groups[i] if groups is not None else None
                    if multi[i]:
                        if pinned is None:
                            pinned = _pinned(a)
                        v = ctx.slow(pinned, seq[i], pg, tail_cut, now)
                        if as_verdicts:
                            Py_INCREF(v)
                            PyList_SET_ITEM(out, i, v)
                        else:
                            _fill_exact(b, i, v)
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
                            v = _fast_verdict(idp + i * IDENTITY_MAX, n, &facts[i], ctx, now, smp, grey, block, sold)
                            if as_verdicts:
                                Py_INCREF(v)
                                PyList_SET_ITEM(out, i, v)
                            else:
                                _fill_exact(b, i, v)
                            continue
                    smp = -1
                    grey = False
                    if ctx.tables is not None:
                        smp = ctx.tables.answer(_gtin_value(idp + i * IDENTITY_MAX), _group_of(pg, facts[i].kind),
                                                &grey)
                    if as_verdicts:
                        # What CheckBatch._verdict builds from the arrays, made from the code's own fields.
                        identity = _ascii_str(idp + i * IDENTITY_MAX, n)
                        v = _build_verdict(None, identity if facts[i].kind == 1 else
                                           _ascii_str(facts[i].cis, facts[i].cis_len),
                                           _ascii_str(idp + i * IDENTITY_MAX + 2, 14),
                                           _ascii_str(idp + i * IDENTITY_MAX + SERIAL_AT, n - SERIAL_AT), identity,
                                           ctx.db_version, ctx.db_updated_at, db_age, ctx.instance_id,
                                           None if facts[i].mrp < 0 else facts[i].mrp, None if smp < 0 else smp,
                                           grey, False)
                        Py_INCREF(v)
                        PyList_SET_ITEM(out, i, v)
                        continue
                    f = 0
                    if facts[i].mrp >= 0:
                        f |= F_HAS_MRP
                        b.mrp.data.as_longlongs[i] = facts[i].mrp
                    if smp >= 0:
                        f |= F_HAS_SMP
                        b.smp.data.as_longlongs[i] = smp
                    if grey:
                        f |= F_GREY
                    flags[i] = f
                    memcpy(PyByteArray_AS_STRING(b.cis) + i * IDENTITY_MAX, facts[i].cis, <size_t>facts[i].cis_len)
                    b.cis_len.data.as_uchars[i] = <uint8_t>facts[i].cis_len
                    memcpy(PyByteArray_AS_STRING(b.gtin) + i * 14, idp + i * IDENTITY_MAX + 2, 14)
                if start >= total:
                    break
                for i in range(start, end):
                    if not flags[i]:
                        ents[i - start] = table[keys[i] >> 16]
                        rindex_prefetch_container(&st.ix, ents[i - start], keys[i])
                prev = start
                start = end
        finally:
            free(facts)
            free(keys)
            free(sold_hashes)
            free(multi)
            free(scratch)
            if out is not None:
                PyObject_GC_Track(<PyObject*>out)
        return out if as_verdicts else b


cdef ProbeBase _pinned(_Attached a):
    """A probe answering from attachment ``a`` only (for the exact path of a call that took ``a``)."""
    cdef ProbeBase p = ProbeBase.__new__(ProbeBase)
    p._cur = a
    p._st = &a.st
    p._set_deadlines(1e300)
    return p
