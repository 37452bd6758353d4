# Part of lmcz_fast/_answer.pyx (included): the parts of an answer `Answers` writes (an entry per code, a free
# code's from its batch; the envelope's head and tail; the audit line's parts), each a function of the encoder
# (`self`: what it remembers across codes and requests).

cdef int _age(Answers self, Buf* b, object age) except -1:
    """`dbAge`: None, or the age rounded to the millisecond (`round(age, 3)`), remembered for the next code.

    An age within 0.49 ms of the last one's rounded value (of the same sign, not zero, below 1e9 s) rounds to
    that same value: the decimal of three places nearest to it is the one the last age rounded to (it is
    less than half a step away, the double of that decimal adding at most 6e-8 at 1e9 s), so its text is
    reused without `round` and `repr` (each request of a one-code check has an age of its own)."""
    cdef object last = self.last_age
    cdef double d, r
    cdef Buf tmp
    if age is None:
        return _raw(b, b"null", 4)
    if age is last:
        return _bytes(b, self.last_age_json)
    if PyFloat_CheckExact(age):
        d = PyFloat_AS_DOUBLE(age)
        r = self.last_age_rounded
        if self.last_age_near and fabs(d - r) < 0.00049 and signbit(d) == signbit(r):
            self.last_age = age
            return _bytes(b, self.last_age_json)
        if PyFloat_CheckExact(last) and d == PyFloat_AS_DOUBLE(last) and signbit(d) == signbit(
                PyFloat_AS_DOUBLE(last)):
            return _bytes(b, self.last_age_json)
    _init(&tmp)
    try:
        rounded = round(age, 3)
        _value(&tmp, rounded)
        self.last_age_json = _take(&tmp)
    finally:
        _free(&tmp)
    self.last_age = age
    self.last_age_near = False
    if PyFloat_CheckExact(age) and PyFloat_CheckExact(rounded):
        r = PyFloat_AS_DOUBLE(rounded)
        self.last_age_rounded = r
        self.last_age_near = isfinite(r) and r != 0.0 and fabs(r) < 1e9
    return _bytes(b, self.last_age_json)


cdef int _code(Answers self, Buf* b, object v, object pg, bint grey) except -1:
    """One code's entry (`answers.code_json`)."""
    cdef object block = v.block
    cdef object cis = v.cis
    cdef object authority
    _raw(b, b'{"cis":', 7)
    _value(b, cis)
    _raw(b, b',"printView":', 13)
    _value(b, cis)
    _raw(b, b',"gtin":', 8)
    _value(b, v.gtin)
    if pg is None:
        _lit(b, b',"groupIds":[]')
    else:
        _lit(b, b',"groupIds":[')
        _value(b, pg)
        _raw(b, b"]", 1)
    _lit(b, b',"found":true,"valid":true,"verified":true,"realizable":true,"utilised":true,"sold":')
    _value(b, v.sold)
    _lit(b, b',"isBlocked":')
    _value(b, v.blocked)
    if block is None:
        _lit(b, b',"ogvs":[],"isGreyGtin":')
    else:
        authority = block.authority
        if authority:
            _lit(b, b',"ogvs":[')
            _value(b, authority)
            _lit(b, b'],"isGreyGtin":')
        else:
            _lit(b, b',"ogvs":[],"isGreyGtin":')
    _value(b, v.grey_gtin if grey else False)
    _lit(b, b',"mrp":')
    _value(b, v.mrp)
    _lit(b, b',"smp":')
    _value(b, v.smp)
    if block is None:
        return _lit(b, b',"block":null}')
    _lit(b, b',"block":{"authority":')
    _value(b, block.authority)
    _lit(b, b',"reason":')
    _value(b, block.reason)
    _lit(b, b',"since":')
    _value(b, block.since)
    _lit(b, b',"scope":')
    _value(b, block.scope)
    return _lit(b, b'}}')


cdef int _unreadable(Answers self, Buf* b, object item, object pg) except -1:
    """The entry of a scan that could not be read (`answers.unreadable_json`)."""
    cdef object raw = item.raw
    _raw(b, b'{"cis":', 7)
    _value(b, raw)
    _raw(b, b',"printView":', 13)
    _value(b, raw)
    if pg is None:
        _lit(b, b',"gtin":"","groupIds":[]')
    else:
        _lit(b, b',"gtin":"","groupIds":[')
        _value(b, pg)
        _raw(b, b"]", 1)
    _lit(b, b',"found":false,"valid":false,"verified":false,"realizable":false,"utilised":false,'
            b'"sold":false,"isBlocked":true,"ogvs":[],"isGreyGtin":false,"mrp":null,"smp":null,"block":null,'
            b'"errorCode":')
    _digits(b, self.error_unreadable)
    _lit(b, b',"message":')
    _value(b, item.message)
    _lit(b, b',"error":"invalid_code","reason":')
    _value(b, item.reason)
    return _raw(b, b"}", 1)


cdef int _pieces(Answers self, long long req_ms, str inst, str version) except -1:
    """The parts of an envelope that depend on the instance and version only (written once while they stay the
    same objects: protocol 2 writes them for every code, and every request of a version shares them), and
    the request's time as text (`ms_text`, once per millisecond)."""
    cdef Buf tmp
    cdef char digits[24]
    cdef int at
    if req_ms != self.ms_value or self.ms_len == 0:
        at = _digits_into(digits, req_ms)
        memcpy(self.ms_text, digits + at, 24 - at)
        self.ms_len = 24 - at
        self.ms_value = req_ms
    if self.piece_inst is inst and self.piece_version is version and self.piece_head is not None:
        return 0
    _init(&tmp)
    try:
        _lit(&tmp, b',"inst":')
        _str(&tmp, inst)
        _lit(&tmp, b',"version":')
        _str(&tmp, version)
        _lit(&tmp, b',"isCheckedOffline":true,"codes":[')
        self.piece_head = _take(&tmp)
        tmp.size = 0
        _lit(&tmp, b'&Inst=')
        _inner(&tmp, inst)
        _lit(&tmp, b'&Ver=')
        _inner(&tmp, version)
        _lit(&tmp, b'","dbVersion":')
        self.piece_tag = _take(&tmp)
    finally:
        _free(&tmp)
    self.piece_inst, self.piece_version = inst, version
    return 0


cdef inline int _piece_head(Answers self, Buf* b, long long req_ms, str inst, str version) except -1:
    """`,"reqTimestamp":...` to `"codes":[` (`_pieces`)."""
    _pieces(self, req_ms, inst, version)
    _raw(b, b',"reqTimestamp":', 16)
    _raw(b, self.ms_text, self.ms_len)
    return _bytes(b, self.piece_head)


cdef int _head(Answers self, Buf* b, str req_id, long long req_ms, str inst, str version) except -1:
    """`reqId` to `isCheckedOffline`, after `"code":...,"description":...`."""
    _lit(b, b',"reqId":')
    _str(b, req_id)
    return _piece_head(self, b, req_ms, inst, version)


cdef int _head_id(Answers self, Buf* b, const char* rid, long long req_ms, str inst, str version) except -1:
    """`_head` of a generated request id (`_uuid4`'s 36 characters: nothing to escape)."""
    _lit(b, b',"reqId":"')
    _raw(b, rid, 36)
    _raw(b, b'"', 1)
    return _piece_head(self, b, req_ms, inst, version)


cdef int _tail(Answers self, Buf* b, str req_id, long long req_ms, str inst, str version, object db_version,
               object db_age, str freshness) except -1:
    """From the end of `codes` to `dbFreshness` (the envelope's last official field), without the `}`."""
    _lit(b, b'],"tag1265":"UUID=')
    _inner(b, req_id)
    return _tail_rest(self, b, req_ms, inst, version, db_version, db_age, freshness)


cdef int _tail_id(Answers self, Buf* b, const char* rid, long long req_ms, str inst, str version, object db_version,
                  object db_age, str freshness) except -1:
    """`_tail` of a generated request id (`_uuid4`'s 36 characters: nothing to escape)."""
    _lit(b, b'],"tag1265":"UUID=')
    _raw(b, rid, 36)
    return _tail_rest(self, b, req_ms, inst, version, db_version, db_age, freshness)


cdef int _tail_rest(Answers self, Buf* b, long long req_ms, str inst, str version, object db_version, object db_age,
                    str freshness) except -1:
    """`_tail` after the request id of tag 1265."""
    cdef Buf tmp
    _pieces(self, req_ms, inst, version)
    _raw(b, b'&Time=', 6)
    _raw(b, self.ms_text, self.ms_len)
    _bytes(b, self.piece_tag)
    if not (db_version is self.last_version and self.last_version_json is not None):
        _init(&tmp)
        try:
            _str(&tmp, str(db_version))
            self.last_version_json = _take(&tmp)
        finally:
            _free(&tmp)
        self.last_version = db_version
    _bytes(b, self.last_version_json)
    _lit(b, b',"dbAge":')
    _age(self, b, db_age)
    _lit(b, b',"dbFreshness":')
    if freshness is not self.last_freshness or self.last_freshness_json is None:
        _init(&tmp)
        try:
            _str(&tmp, freshness)
            self.last_freshness_json = _take(&tmp)
        finally:
            _free(&tmp)
        self.last_freshness = freshness
    return _bytes(b, self.last_freshness_json)


cdef int _audit_line(Answers self, Buf* a, Envelope head, str req_id, object version, const char* outcome) except -1:
    """An audit line up to its codes: `{"t":...,"id":...,"c":...,"v":...,"o":...,"k":[` (`audit._format`)."""
    _lit(a, b'{"t":')
    _digits(a, head.req_ms)
    _lit(a, b',"id":"')
    _ascii(a, req_id)
    return _audit_rest(self, a, head, version, outcome)


cdef int _audit_line_id(Answers self, Buf* a, Envelope head, const char* rid, object version,
                        const char* outcome) except -1:
    """`_audit_line` of a generated request id (`_uuid4`'s 36 characters)."""
    _lit(a, b'{"t":')
    _digits(a, head.req_ms)
    _lit(a, b',"id":"')
    _raw(a, rid, 36)
    return _audit_rest(self, a, head, version, outcome)


cdef int _audit_rest(Answers self, Buf* a, Envelope head, object version, const char* outcome) except -1:
    _lit(a, b'","c":')
    _ascii(a, head.audit_client)
    _lit(a, b',"v":')
    if version is None:
        _raw(a, b"null", 4)
    else:
        if version is not self.audit_version or self.audit_version_text is None:
            self.audit_version_text = str(version).encode("ascii")
            self.audit_version = version
        _bytes(a, self.audit_version_text)
    _lit(a, b',"o":"')
    if head.audit_tag:
        if strcmp(outcome, b"ok") != 0:
            _lit(a, outcome)
            _raw(a, b" ", 1)
        _ascii(a, head.audit_tag)
    else:
        _lit(a, outcome)
    return _lit(a, b'","k":[')


cdef int _audit_end(Answers self, Buf* a, Envelope head) except -1:
    _raw(a, b"]", 1)
    _ascii(a, head.audit_tail)
    return _raw(a, b"}\n", 2)


cdef int _audit_code(Answers self, Buf* a, object item, bint unreadable) except -1:
    """One `[cis, 1|0]` (a checked code) or `[raw[:64], null]` (an unreadable scan) of an audit line."""
    _raw(a, b"[", 1)
    if unreadable:
        _value(a, item.raw[:64])
        return _lit(a, b",null]")
    _value(a, item.cis)
    if item.blocked:
        return _lit(a, b",1]")
    return _lit(a, b",0]")


cdef int _fast(Answers self, Buf* b, _Batch v, Py_ssize_t j, object pg, bint grey) except -1:
    """One free code's entry from its batch's arrays, as `_code` writes its `Verdict`: room made once, then
    written with no check per field (but `groupIds`' value, an object)."""
    cdef int f = v.flags[j]
    cdef const unsigned char* cis = v.cis + j * CIS_STRIDE
    cdef Py_ssize_t n = v.cis_len[j]
    cdef Py_ssize_t at, size
    cdef char* out
    # the fields, two CIS and a GTIN of 6 bytes a character at most, two prices of 20 digits
    _grow(b, 360 + 12 * n + 6 * GTIN_STRIDE)
    out = _put(b.data + b.size, b'{"cis":')
    at = out - b.data
    out = _ascii_into(out, cis, n)
    size = out - b.data - at
    out = _put(out, b',"printView":')
    memcpy(out, b.data + at, size)          # the JSON text just written
    out += size
    self.cis_at, self.cis_size = at, size       # for `_fast_audit`
    out = _put(out, b',"gtin":')
    out = _ascii_into(out, v.gtin + j * GTIN_STRIDE, GTIN_STRIDE)
    if pg is None:
        out = _put(out, b',"groupIds":[]')
    else:
        out = _put(out, b',"groupIds":[')
        b.size = out - b.data
        _value(b, pg)
        _raw(b, b"]", 1)
        _grow(b, 300)
        out = b.data + b.size
    out = _put(out, b',"found":true,"valid":true,"verified":true,"realizable":true,"utilised":true,"sold":')
    out = _put_bool(out, f & F_SOLD)
    out = _put(out, b',"isBlocked":')
    out = _put_bool(out, f & F_BLOCKED)
    out = _put(out, b',"ogvs":[],"isGreyGtin":')
    out = _put_bool(out, grey and (f & F_GREY))
    out = _put(out, b',"mrp":')
    out = _put_price(out, f & F_HAS_MRP, v.mrp[j])
    out = _put(out, b',"smp":')
    out = _put_price(out, f & F_HAS_SMP, v.smp[j])
    out = _put(out, b',"block":null}')
    b.size = out - b.data
    return 0


cdef int _fast_audit(Answers self, Buf* a, Buf* b, _Batch v, Py_ssize_t j) except -1:
    """A free code's `[cis, 1|0]`, its CIS the JSON text `_fast` last wrote into `b` (the same escaping)."""
    _raw(a, b"[", 1)
    _raw(a, b.data + self.cis_at, self.cis_size)
    if v.flags[j] & F_BLOCKED:
        return _lit(a, b",1]")
    return _lit(a, b",0]")
