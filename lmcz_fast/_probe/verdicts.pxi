# lmcz_fast/_probe.pyx, included: Verdicts built slot by slot, CheckBatch, the check's cut and errors.

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
        # The list is out of the cyclic collector's sight while it is filled: every Verdict allocated counts
        # towards a young collection, and each of those (one per ~700 codes) would walk the whole half-filled list.
        # Nothing in it can form a cycle meanwhile (Verdicts are untracked, see _build_verdict).
        PyObject_GC_UnTrack(<PyObject*>out)
        try:
            for i in range(self.n):
                v = self._verdict(i)
                Py_INCREF(v)
                PyList_SET_ITEM(out, i, v)
        finally:
            PyObject_GC_Track(<PyObject*>out)
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


# Empty arrays of each type code a batch holds: `clone` makes a new one of a given size straight from the array
# type (no call of `array.array` through the module, no resize after).
cdef c_array _ARRAY_B = _py_array.array("B")
cdef c_array _ARRAY_Q = _py_array.array("q")


cdef bytearray _zeroed_bytearray(Py_ssize_t size):
    """`bytearray(size)` without the call through the type."""
    cdef bytearray out = PyByteArray_FromStringAndSize(NULL, size)
    if size:
        memset(PyByteArray_AS_STRING(out), 0, <size_t>size)
    return out


cdef CheckBatch _new_batch(Py_ssize_t total):
    """An empty batch of `total` codes, every array zeroed (as the arrays `array.array` and `bytearray` make)."""
    cdef CheckBatch b = CheckBatch.__new__(CheckBatch)
    b.n = total
    b.flags = array_clone(_ARRAY_B, total, True)
    b.mrp = array_clone(_ARRAY_Q, total, True)
    b.smp = array_clone(_ARRAY_Q, total, True)
    b.cis_len = array_clone(_ARRAY_B, total, True)
    b.identity_len = array_clone(_ARRAY_B, total, True)
    b.cis = _zeroed_bytearray(total * IDENTITY_MAX)
    b.identity = _zeroed_bytearray(total * IDENTITY_MAX)
    b.gtin = _zeroed_bytearray(total * 14)
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
