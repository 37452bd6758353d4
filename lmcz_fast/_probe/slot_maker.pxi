# lmcz_fast/_probe.pyx, included: SlotMaker (slotted objects built field by field).

@cython.final
cdef class SlotMaker:
    """Makes instances of a plain slotted class (a ``@dataclass(slots=True)`` with no ``__post_init__``) from one
    value per field, in ``names`` order, slot by slot as its ``__init__`` would set them: what a till's every offline
    scan builds twice (``checker.CodeVerdict``, ``checker.TillVerdict``) without the generated ``__init__``'s cost.
    Every field must be given (defaults are the caller's business)."""
    cdef object cls
    cdef tuple names
    cdef Py_ssize_t n
    cdef Py_ssize_t at[24]

    def __cinit__(self, kind, names):
        cdef Py_ssize_t i
        names = tuple(names)
        if not isinstance(kind, type) or kind.__new__ is not object.__new__ or "__dict__" in kind.__dict__ \
                or getattr(kind, "__post_init__", None) is not None:
            raise TypeError(f"{kind!r}: only a plain slotted class without __post_init__")
        if not 0 < len(names) <= 24:
            raise ValueError("from 1 to 24 fields")
        for i, name in enumerate(names):
            descr = kind.__dict__.get(name)
            if descr is None or not lmcz_has_descr_set(<PyObject*>descr):
                raise TypeError(f"{kind!r}.{name} is not a slot of it")
            self.at[i] = lmcz_slot_offset(<PyObject*>descr, <PyObject*>kind)
            if self.at[i] < 0:
                raise TypeError(f"{kind!r}.{name} is not a writable object slot of it")
        self.cls = kind
        self.names = names
        self.n = len(names)

    def __call__(self, *values):
        cdef Py_ssize_t i
        if PyTuple_GET_SIZE(values) != self.n:
            raise TypeError(f"{self.cls.__name__} takes {self.n} values, got {len(values)}")
        obj = lmcz_alloc(<PyObject*>self.cls)
        for i in range(self.n):
            lmcz_put_slot(<PyObject*>obj, self.at[i], PyTuple_GET_ITEM(values, i))
        return obj
