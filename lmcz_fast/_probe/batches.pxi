# lmcz_fast/_probe.pyx, included: ProbeBase's batch passes (is_blocked_many, check_batch and check_many).

cdef list _is_blocked_many(ProbeBase self, raws):
    """``ProbeBase.is_blocked_many``: scans in blocks, two blocks in flight (see its docstring)."""
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


cdef object _check_pass(ProbeBase self, raws, pgs, bint tail_cut, bint strict, bint as_verdicts):
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
    # Not zeroed (a receipt's worth of codes is written once and read once): every entry is written before it is
    # read, for each code that is not flagged unreadable (the flags are zeroed).
    facts = <CodeFacts*>malloc((total + 1) * sizeof(CodeFacts))
    keys = <uint32_t*>malloc((total + 1) * sizeof(uint32_t))
    sold_hashes = <uint64_t*>malloc((total + 1) * sizeof(uint64_t))
    multi = <uint8_t*>malloc((total + 1) * sizeof(uint8_t))
    try:
        if facts == NULL or keys == NULL or multi == NULL or sold_hashes == NULL:
            raise MemoryError()
        if as_verdicts:
            scratch = <uint8_t*>malloc((total + 1) * (IDENTITY_MAX + 2))
            if scratch == NULL:
                raise MemoryError()
            idp = scratch
            id_lens = scratch + (total + 1) * IDENTITY_MAX
            flags = id_lens + total + 1
            memset(flags, 0, <size_t>total + 1)
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
