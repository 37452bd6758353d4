# Part of lmcz_fast/_answer.pyx (included): `_Batch`, the C view of one `_probe.CheckBatch`.

cdef class _Batch:
    """The C view of one `_probe.CheckBatch` (its arrays' data), taken once per batch."""

    cdef object batch
    cdef Py_ssize_t n
    cdef const unsigned char* flags
    cdef const long long* mrp
    cdef const long long* smp
    cdef const unsigned char* cis
    cdef const unsigned char* cis_len
    cdef const unsigned char* gtin
    cdef dict verdicts
    cdef object db_version
    cdef object db_age
    cdef object instance_id

    cdef set(self, object batch):
        """View `batch` (nothing to do if it is the one viewed: `_first` took the first batch already)."""
        if batch is self.batch:
            return
        cdef carray.array flags = batch.flags
        cdef carray.array mrp = batch.mrp
        cdef carray.array smp = batch.smp
        cdef carray.array cis_len = batch.cis_len
        self.batch = batch
        self.n = len(batch)
        if (len(flags) < self.n or len(mrp) < self.n or len(smp) < self.n or len(cis_len) < self.n
                or len(batch.cis) < self.n * CIS_STRIDE or len(batch.gtin) < self.n * GTIN_STRIDE):
            raise ValueError("a CheckBatch shorter than its length")
        self.flags = flags.data.as_uchars
        self.mrp = <const long long*>mrp.data.as_voidptr
        self.smp = <const long long*>smp.data.as_voidptr
        self.cis = <const unsigned char*>PyByteArray_AS_STRING(batch.cis)
        self.cis_len = cis_len.data.as_uchars
        self.gtin = <const unsigned char*>PyByteArray_AS_STRING(batch.gtin)
        self.verdicts = batch.verdicts
        self.db_version = batch.db_version
        self.db_age = batch.db_age
        self.instance_id = batch.instance_id

    cdef object item(self, Py_ssize_t j):
        """Code `j` as a `Verdict` when the batch has one for it (the exact path; a blocked or sold code the fast
        path should never leave without one is built by the batch), else None: written from the arrays."""
        cdef int f = self.flags[j]
        if f & F_EXACT:
            return self.verdicts[j]
        if f & (F_BLOCKED | F_SOLD):
            return self.batch.verdict(j)
        return None
