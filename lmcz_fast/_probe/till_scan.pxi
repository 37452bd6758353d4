# lmcz_fast/_probe.pyx, included: the till-side checker's offline-only scan, whole (TillScan; owned by the checker,
# lmcz_fast/checker/offline.py builds it).

from cpython.dict cimport PyDict_Copy
from cpython.weakref cimport PyWeakref_GetObject, PyWeakref_NewRef

cdef extern from *:
    """
    /* time.monotonic() as CPython reads it (CLOCK_MONOTONIC, nanoseconds over 1e9). */
    static inline double lmcz_monotonic_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)((int64_t)ts.tv_sec * 1000000000LL + (int64_t)ts.tv_nsec) / 1e9;
    }
    /* The object in the slot at `offset` of `obj` (borrowed; NULL when the slot is empty). */
    static inline PyObject* lmcz_slot_ref(PyObject* obj, Py_ssize_t offset) {
        return *(PyObject**)((char*)obj + offset);
    }
    """
    double lmcz_monotonic_s() noexcept nogil
    PyObject* lmcz_slot_ref(PyObject* obj, Py_ssize_t offset) noexcept

# --------------------------------------------------------------------------------------------------------------
# The offline-only scan of a till-side Checker, whole (lmcz_fast/checker/offline.py builds it)
# --------------------------------------------------------------------------------------------------------------

cdef inline object _slot_of(object obj, Py_ssize_t offset):
    cdef PyObject* ref = lmcz_slot_ref(<PyObject*>obj, offset)
    if ref == NULL:
        raise AttributeError("a Verdict slot is empty")
    return <object>ref


cdef Py_ssize_t _offset_in(object cls, str name) except -1:
    descr = cls.__dict__.get(name)
    if descr is None or not lmcz_has_descr_set(<PyObject*>descr):
        raise TypeError(f"{cls!r}.{name} is not a slot of it")
    cdef Py_ssize_t at = lmcz_slot_offset(<PyObject*>descr, <PyObject*>cls)
    if at < 0:
        raise TypeError(f"{cls!r}.{name} is not a writable object slot of it")
    return at


_TILL_CODE_FIELDS = ("raw", "code", "cis", "gtin", "decision", "mode", "reasons", "notes", "tags", "online", "offline")
_TILL_VERDICT_FIELDS = ("decision", "mode", "codes", "elapsed", "deadline", "online_error", "offline_error")


@cython.final
cdef class TillScan:
    """One scan of an offline-only ``Checker`` over an in-process store, whole, in one compiled call: the store's
    check (the probe's compiled pass when the store is a plain ``ProbeBase``), the offline refusal table, tag 1265,
    the ``CodeVerdict`` and the ``TillVerdict``; Python only where something rare needs it (the offline status
    re-read every ``status_every`` seconds, a new database version's ``&Inst=...&Ver=...``, a price that earns a
    reason or needs the code's group, a sold or blocked code with a price, a store that is not a plain probe).

    Built by ``lmcz_fast.checker.offline`` from the checker's own pieces, which decide everything the compiled
    path does not: ``code_of``/``till_of`` (``SlotMaker`` of ``CodeVerdict``/``TillVerdict`` over
    ``_TILL_CODE_FIELDS``/``_TILL_VERDICT_FIELDS``), ``table`` (the offline table's ``(reasons, decision)`` for
    ``sold << 2 | blocked << 1 | grey``, no price), ``tags`` (1262-1264 and key 1265), ``errors`` (what sends a
    scan to the checker's general path, ``_receipt_of_one(raw, price, pg)``), ``decided(reasons)`` (the decision
    of reasons the Python table gave) and ``sold_of(bl, verdict)`` (``sold`` of a verdict that is not the store's
    own ``Verdict``). Of the checker (held weakly: a checker nobody holds goes, and its store with it, at once, as
    before it had a compiled scan) it reads ``_status``, ``status_every`` and ``deadline`` per scan, and calls
    ``_offline_status()`` (the status, when its cache is older than ``status_every``), ``_version_part(verdict)``
    (tag 1265's version part, once per version) and ``_verdict_reasons(bl, verdict, raw, price, pg, sold)`` (the
    Python table, for a price that earns a reason or needs the code's group).
    """
    cdef object owner           # weakref.ref(checker)
    cdef object bl
    cdef ProbeBase probe
    cdef object vtype
    cdef Py_ssize_t v_blocked, v_cis, v_gtin, v_inst, v_ver, v_mrp, v_smp, v_grey, v_sold
    cdef SlotMaker code_of
    cdef SlotMaker till_of
    cdef tuple table
    cdef object mode
    cdef object sell
    cdef object no_online
    cdef dict tags
    cdef object key_1265
    cdef object errors
    cdef object decided
    cdef object sold_of
    cdef object inst
    cdef object ver
    cdef str tail

    def __cinit__(self, checker, bl, SlotMaker code_of not None, SlotMaker till_of not None, tuple table not None,
                  mode, sell, dict tags not None, no_online, errors, decided, sold_of):
        if len(table) != 8:
            raise ValueError("the table holds the 8 (reasons, decision) of sold, blocked, grey")
        if code_of.names != _TILL_CODE_FIELDS or till_of.names != _TILL_VERDICT_FIELDS:
            raise ValueError("code_of and till_of fill the fields of _TILL_CODE_FIELDS and _TILL_VERDICT_FIELDS")
        if 1265 not in tags:
            raise ValueError("tags holds key 1265 (its value is replaced per scan)")
        if _verdict_type is None:
            raise RuntimeError("no Verdict class registered (lmcz_fast.store registers it on import)")
        self.owner = PyWeakref_NewRef(checker, None)
        self.bl = bl
        self.probe = bl if isinstance(bl, ProbeBase) and type(bl).check is ProbeBase.check else None
        self.vtype = _verdict_type
        self.v_blocked = _offset_in(_verdict_type, "blocked")
        self.v_cis = _offset_in(_verdict_type, "cis")
        self.v_gtin = _offset_in(_verdict_type, "gtin")
        self.v_inst = _offset_in(_verdict_type, "instance_id")
        self.v_ver = _offset_in(_verdict_type, "db_version")
        self.v_mrp = _offset_in(_verdict_type, "mrp")
        self.v_smp = _offset_in(_verdict_type, "smp")
        self.v_grey = _offset_in(_verdict_type, "grey_gtin")
        self.v_sold = _offset_in(_verdict_type, "sold")
        self.code_of = code_of
        self.till_of = till_of
        self.table = table
        self.mode = mode
        self.sell = sell
        self.no_online = no_online
        self.tags = tags
        self.key_1265 = next(k for k in tags if k == 1265)
        self.errors = errors
        self.decided = decided
        self.sold_of = sold_of
        self.inst = self.ver = self.tail = None

    cdef object _store_verdict(self, object raw, object pg):
        """The store's ``check(raw)`` / ``check(raw, pg=pg)``, through the probe's compiled pass when it can."""
        cdef ProbeBase probe = self.probe
        if probe is None or not (pg is None or type(pg) is int):
            return self.bl.check(raw) if pg is None else self.bl.check(raw, pg=pg)
        try:
            return probe._check_one(raw, pg, False)
        except NotAttachedError:
            probe._check_detached()
        return probe._check_one(raw, pg, False)

    cdef bint _price_is_fine(self, object price, object pg, object mrp, object smp) except -1:
        """Whether a sale price earns no reason by the price rows (``rules.price_reasons``) whatever the group a
        caller's ``pg`` of None would prove: True only when neither the tobacco rule nor the other groups' would
        refuse (else the Python table decides, with the group)."""
        cdef bint below_smp = smp is not None and price < smp
        cdef bint tobacco = (mrp is not None and price != mrp) or below_smp
        cdef bint other = below_smp or (mrp is not None and price < mrp)
        if pg is None:
            return not tobacco and not other
        return not (tobacco if pg == 3 else other)

    def check(self, raw, price, pg):
        """``Checker.check(raw, price=price, pg=pg)`` of an offline-only checker (price and pg checked by it)."""
        cdef double started = lmcz_monotonic_s()
        cdef bint sold, blocked, grey, own
        cdef PyObject* owner = PyWeakref_GetObject(self.owner)
        if owner == NULL or owner == <PyObject*>None:
            raise ReferenceError("the Checker of this scan is gone")
        cdef object checker = <object>owner
        cdef object verdict, status, notes, reasons, decision, inst, ver, cis, gtin, text, code, till
        cdef dict tags
        cached = checker._status
        if cached is not None and started - (<tuple?>cached)[0] < checker.status_every:
            status = (<tuple>cached)[1]
        else:
            status = checker._offline_status()
        if status is None:
            notes = ()
        elif status.failure is not None:
            return checker._receipt_of_one(raw, price, pg)
        else:
            notes = status.notes
        try:
            verdict = self._store_verdict(raw, pg)
        except self.errors:
            return checker._receipt_of_one(raw, price, pg)
        own = type(verdict) is self.vtype
        if own:
            sold = _slot_of(verdict, self.v_sold) is True
            blocked = _slot_of(verdict, self.v_blocked) is True
            grey = _slot_of(verdict, self.v_grey) is True
            if price is None:
                reasons, decision = <tuple>self.table[sold << 2 | blocked << 1 | grey]
            elif not sold and not blocked and self._price_is_fine(price, pg, _slot_of(verdict, self.v_mrp),
                                                                  _slot_of(verdict, self.v_smp)):
                reasons, decision = (), self.sell
            else:
                reasons = checker._verdict_reasons(self.bl, verdict, raw, price, pg, sold)
                decision = self.decided(reasons)
            cis = _slot_of(verdict, self.v_cis)
            gtin = _slot_of(verdict, self.v_gtin)
            inst = _slot_of(verdict, self.v_inst)
            ver = _slot_of(verdict, self.v_ver)
        else:
            sold = self.sold_of(self.bl, verdict)
            if sold or verdict.blocked or price is not None:
                reasons = checker._verdict_reasons(self.bl, verdict, raw, price, pg, sold)
                decision = self.decided(reasons)
            else:
                reasons, decision = (), self.sell
            cis = verdict.cis
            gtin = verdict.gtin
            inst = verdict.instance_id
            ver = verdict.db_version
        if self.tail is None or not ((self.inst is inst or self.inst == inst) and
                                     (self.ver is ver or self.ver == ver)):
            tail = checker._version_part(verdict)
            self.inst, self.ver, self.tail = inst, ver, tail
        tags = PyDict_Copy(self.tags)
        tags[self.key_1265] = _tag_1265(self.tail)
        if type(raw) is str:
            text = raw
        elif isinstance(raw, (bytes, bytearray)):
            text = raw.decode("utf-8", "surrogateescape")
        else:
            text = raw
        code = lmcz_alloc(<PyObject*>self.code_of.cls)
        _put(code, self.code_of, 0, text)
        _put(code, self.code_of, 1, None)
        _put(code, self.code_of, 2, cis)
        _put(code, self.code_of, 3, gtin)
        _put(code, self.code_of, 4, decision)
        _put(code, self.code_of, 5, self.mode)
        _put(code, self.code_of, 6, reasons)
        _put(code, self.code_of, 7, notes)
        _put(code, self.code_of, 8, tags)
        _put(code, self.code_of, 9, None)
        _put(code, self.code_of, 10, verdict)
        codes = (code,)
        deadline = checker.deadline
        till = lmcz_alloc(<PyObject*>self.till_of.cls)
        _put(till, self.till_of, 0, decision)
        _put(till, self.till_of, 1, self.mode)
        _put(till, self.till_of, 2, codes)
        _put(till, self.till_of, 3, lmcz_monotonic_s() - started)
        _put(till, self.till_of, 4, deadline)
        _put(till, self.till_of, 5, self.no_online)
        _put(till, self.till_of, 6, None)
        return till


cdef inline void _put(object obj, SlotMaker maker, Py_ssize_t i, object value) noexcept:
    lmcz_put_slot(<PyObject*>obj, maker.at[i], <PyObject*>value)
