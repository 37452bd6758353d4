# Part of lmcz_fast/_answer.pyx (included): `Answers`, the encoder of both protocols' check answers and their audit
# lines.

cdef class Answers:
    """The compiled encoder of the check answers of both protocols (one per service).

    `unreadable_type`: the class of a scan answered as unreadable (`service.answers.Unreadable`: `index`, `raw`,
    `reason`, `message`); every other item is a `Verdict`. `error_unreadable`: the `errorCode` of its entry."""

    cdef object unreadable_type
    cdef long long error_unreadable
    cdef bytes unreadable_head
    cdef object last_age
    cdef bytes last_age_json
    cdef double last_age_rounded
    cdef bint last_age_near
    cdef object last_version
    cdef bytes last_version_json
    cdef object audit_version
    cdef bytes audit_version_text
    cdef object last_freshness
    cdef bytes last_freshness_json
    cdef object piece_inst
    cdef object piece_version
    cdef bytes piece_head
    cdef bytes piece_tag
    cdef long long ms_value
    cdef char ms_text[24]
    cdef Py_ssize_t ms_len
    cdef Py_ssize_t cis_at
    cdef Py_ssize_t cis_size

    def __init__(self, unreadable_type, long long error_unreadable):
        self.unreadable_type = unreadable_type
        self.error_unreadable = error_unreadable
        self.last_age = None
        self.last_age_json = b"null"
        self.last_age_near = False
        self.ms_value = -1
        self.ms_len = 0

    cdef int _age(self, Buf* b, object age) except -1:
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

    cdef int _code(self, Buf* b, object v, object pg, bint grey) except -1:
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

    cdef int _unreadable(self, Buf* b, object item, object pg) except -1:
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

    cdef int _pieces(self, long long req_ms, str inst, str version) except -1:
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

    cdef inline int _piece_head(self, Buf* b, long long req_ms, str inst, str version) except -1:
        """`,"reqTimestamp":...` to `"codes":[` (`_pieces`)."""
        self._pieces(req_ms, inst, version)
        _raw(b, b',"reqTimestamp":', 16)
        _raw(b, self.ms_text, self.ms_len)
        return _bytes(b, self.piece_head)

    cdef int _head(self, Buf* b, str req_id, long long req_ms, str inst, str version) except -1:
        """`reqId` to `isCheckedOffline`, after `"code":...,"description":...`."""
        _lit(b, b',"reqId":')
        _str(b, req_id)
        return self._piece_head(b, req_ms, inst, version)

    cdef int _head_id(self, Buf* b, const char* rid, long long req_ms, str inst, str version) except -1:
        """`_head` of a generated request id (`_uuid4`'s 36 characters: nothing to escape)."""
        _lit(b, b',"reqId":"')
        _raw(b, rid, 36)
        _raw(b, b'"', 1)
        return self._piece_head(b, req_ms, inst, version)

    cdef int _tail(self, Buf* b, str req_id, long long req_ms, str inst, str version, object db_version,
                   object db_age, str freshness) except -1:
        """From the end of `codes` to `dbFreshness` (the envelope's last official field), without the `}`."""
        _lit(b, b'],"tag1265":"UUID=')
        _inner(b, req_id)
        return self._tail_rest(b, req_ms, inst, version, db_version, db_age, freshness)

    cdef int _tail_id(self, Buf* b, const char* rid, long long req_ms, str inst, str version, object db_version,
                      object db_age, str freshness) except -1:
        """`_tail` of a generated request id (`_uuid4`'s 36 characters: nothing to escape)."""
        _lit(b, b'],"tag1265":"UUID=')
        _raw(b, rid, 36)
        return self._tail_rest(b, req_ms, inst, version, db_version, db_age, freshness)

    cdef int _tail_rest(self, Buf* b, long long req_ms, str inst, str version, object db_version, object db_age,
                        str freshness) except -1:
        """`_tail` after the request id of tag 1265."""
        cdef Buf tmp
        self._pieces(req_ms, inst, version)
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
        self._age(b, db_age)
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

    cdef int _audit_line(self, Buf* a, Envelope head, str req_id, object version, const char* outcome) except -1:
        """An audit line up to its codes: `{"t":...,"id":...,"c":...,"v":...,"o":...,"k":[` (`audit._format`)."""
        _lit(a, b'{"t":')
        _digits(a, head.req_ms)
        _lit(a, b',"id":"')
        _ascii(a, req_id)
        return self._audit_rest(a, head, version, outcome)

    cdef int _audit_line_id(self, Buf* a, Envelope head, const char* rid, object version,
                            const char* outcome) except -1:
        """`_audit_line` of a generated request id (`_uuid4`'s 36 characters)."""
        _lit(a, b'{"t":')
        _digits(a, head.req_ms)
        _lit(a, b',"id":"')
        _raw(a, rid, 36)
        return self._audit_rest(a, head, version, outcome)

    cdef int _audit_rest(self, Buf* a, Envelope head, object version, const char* outcome) except -1:
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

    cdef int _audit_end(self, Buf* a, Envelope head) except -1:
        _raw(a, b"]", 1)
        _ascii(a, head.audit_tail)
        return _raw(a, b"}\n", 2)

    cdef int _audit_code(self, Buf* a, object item, bint unreadable) except -1:
        """One `[cis, 1|0]` (a checked code) or `[raw[:64], null]` (an unreadable scan) of an audit line."""
        _raw(a, b"[", 1)
        if unreadable:
            _value(a, item.raw[:64])
            return _lit(a, b",null]")
        _value(a, item.cis)
        if item.blocked:
            return _lit(a, b",1]")
        return _lit(a, b",0]")

    cdef int _fast(self, Buf* b, _Batch v, Py_ssize_t j, object pg, bint grey) except -1:
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

    cdef int _fast_audit(self, Buf* a, Buf* b, _Batch v, Py_ssize_t j) except -1:
        """A free code's `[cis, 1|0]`, its CIS the JSON text `_fast` last wrote into `b` (the same escaping)."""
        _raw(a, b"[", 1)
        _raw(a, b.data + self.cis_at, self.cis_size)
        if v.flags[j] & F_BLOCKED:
            return _lit(a, b",1]")
        return _lit(a, b",0]")

    cdef tuple _first(self, list batches, _Batch v):
        """`(db_version, db_age, instance_id)` of the first code checked (not unreadable) of `batches`."""
        cdef Py_ssize_t j
        cdef object item
        for batch in batches:
            v.set(batch)
            for j in range(v.n):
                if v.flags[j] & F_UNREADABLE:
                    continue
                item = v.item(j)
                if item is None:
                    return v.db_version, v.db_age, v.instance_id
                return item.db_version, item.db_age, item.instance_id
        raise ValueError("no code of the request was checked")

    cdef int _v1_open(self, Buf* b, Buf* a, Py_ssize_t n, Py_ssize_t unread, Envelope head, object db_version,
                      bint audit) except -1:
        """Protocol 1's envelope up to its codes and, with `audit`, the audit line up to its codes (`v1`,
        `v1_batches`)."""
        _grow(b, 600 * n + 600)
        if unread:
            _lit(b, b'{"code":0,"description":"ok; ')
            _digits(b, unread)
            _lit(b, b' of ')
            _digits(b, n)
            _lit(b, b' codes could not be read (their entries: errorCode ')
            _digits(b, self.error_unreadable)
            _lit(b, b', isBlocked true)"')
        else:
            _lit(b, b'{"code":0,"description":"ok"')
        self._head(b, head.req_id, head.req_ms, head.inst, head.version)
        if audit:
            _grow(a, 80 * n + 200)
            self._audit_line(a, head, head.req_id, db_version, b"partial" if unread else b"ok")
        return 0

    cdef tuple _v1_close(self, Buf* b, Buf* a, Py_ssize_t unread, Envelope head, object db_version, object db_age,
                         bint audit):
        """Protocol 1's envelope after its codes, and the audit line's end: `(body, audit_line or None)`."""
        self._tail(b, head.req_id, head.req_ms, head.inst, head.version, db_version, db_age, head.freshness)
        if unread:
            _lit(b, b',"unreadable":')
            _digits(b, unread)
        _raw(b, b"}", 1)
        line = None
        if audit:
            self._audit_end(a, head)
            line = _take_text(a)
        return _take(b), line

    cdef tuple _v2_parts(self, Envelope head, object db_version, object db_age):
        """What protocol 2 writes around each free code of a batch of `head`'s instance and version, but its
        request id (`_head_id`, `_tail_id`, `_audit_line_id`, `_audit_end`), written once per batch:
        `(after the id in the head, after the id in tag 1265 to the envelope's end, the audit line up to the id,
        after it up to the code, after the code)`."""
        cdef Buf tmp
        cdef Py_ssize_t at
        cdef list out = []
        _init(&tmp)
        try:
            _raw(&tmp, b'"', 1)
            self._piece_head(&tmp, head.req_ms, head.inst, head.version)
            out.append(_take(&tmp))
            tmp.size = 0
            self._tail_rest(&tmp, head.req_ms, head.inst, head.version, db_version, db_age, head.freshness)
            _raw(&tmp, b"}", 1)
            out.append(_take(&tmp))
            tmp.size = 0
            _lit(&tmp, b'{"t":')
            _digits(&tmp, head.req_ms)
            _lit(&tmp, b',"id":"')
            out.append(_take(&tmp))
            tmp.size = 0
            if head.audit_client is not None:
                self._audit_rest(&tmp, head, db_version, b"ok")
                out.append(_take(&tmp))
                tmp.size = 0
                self._audit_end(&tmp, head)
                out.append(_take(&tmp))
            else:
                out += [b"", b""]
        finally:
            _free(&tmp)
        return tuple(out)

    def v1_batches(self, list batches, dict unreadable, Envelope head):
        """`v1` of the compiled verdicts of a request's scans, in order (`_probe.CheckBatch`es of one version),
        `unreadable` the unreadable item of each scan a batch flags so, by its index in the request. Returns
        `(body, audit_line or None, checked, blocked)`."""
        cdef _Batch v = _Batch()
        cdef Py_ssize_t i = 0, j, n = 0, unread = len(unreadable), checked = 0, blocked = 0
        cdef bint audit = head.audit_client is not None
        cdef object item
        cdef int f
        cdef Buf b, a
        for batch in batches:
            n += len(batch)
        db_version, db_age, _ = self._first(batches, v)
        _init(&b)
        _init(&a)
        try:
            _init_bytes(&b, 600 * n + 600)
            self._v1_open(&b, &a, n, unread, head, db_version, audit)
            for batch in batches:
                v.set(batch)
                for j in range(v.n):
                    if i:
                        _raw(&b, b",", 1)
                        if audit:
                            _raw(&a, b",", 1)
                    f = v.flags[j]
                    if f & F_UNREADABLE:
                        item = unreadable[i]
                        self._unreadable(&b, item, None)
                        if audit:
                            self._audit_code(&a, item, True)
                    else:
                        item = v.item(j)
                        checked += 1
                        if item is None:
                            self._fast(&b, v, j, None, head.grey)
                            blocked += (f & F_BLOCKED) != 0
                            if audit:
                                self._fast_audit(&a, &b, v, j)
                        else:
                            self._code(&b, item, None, head.grey)
                            blocked += bool(item.blocked)
                            if audit:
                                self._audit_code(&a, item, False)
                    i += 1
            body, line = self._v1_close(&b, &a, unread, head, db_version, db_age, audit)
            return body, line, checked, blocked
        finally:
            _free(&b)
            _free(&a)

    def v2_batches(self, list batches, dict unreadable, list pgs, bytes ids, Envelope head, object db_version,
                   object uuids):
        """`v2` of the compiled verdicts of a request's scans (`batches` and `unreadable` as `v1_batches`')."""
        cdef _Batch v = _Batch()
        cdef Py_ssize_t i = 0, j, n = 0, checked = 0, blocked = 0
        cdef bint audit = head.audit_client is not None
        cdef const unsigned char* rnd
        cdef char rid_text[36]
        cdef str rid, inst, version
        cdef object item, pg, seen_instance, seen_version, item_version, item_age, item_instance
        cdef tuple parts
        cdef bytes p_head, p_tail, p_line, p_rest, p_end
        cdef int f
        cdef Buf b, a
        for batch in batches:
            n += len(batch)
        if PyBytes_GET_SIZE(ids) < 16 * (n - 1) or PyList_GET_SIZE(pgs) != n:
            raise ValueError("ids needs 16 bytes for each code after the first, pgs one entry per code")
        known_version, known_age, seen_instance = self._first(batches, v)
        seen_version = known_version
        rnd = <const unsigned char*>PyBytes_AS_STRING(ids)
        _init(&b)
        _init(&a)
        try:
            _init_bytes(&b, 1100 * n + 100)
            if audit:
                _grow(&a, 200 * n + 100)
            _lit(&b, b'{"results":[')
            for batch in batches:
                v.set(batch)
                # a free code of the batch's own instance and version: its envelope is these parts and its id
                parts = (self._v2_parts(head, v.db_version, v.db_age)
                         if v.instance_id == seen_instance and v.db_version == seen_version else None)
                if parts is not None:
                    p_head, p_tail, p_line, p_rest, p_end = parts
                for j in range(v.n):
                    pg = <object>PyList_GET_ITEM(pgs, i)
                    f = v.flags[j]
                    item = None if f & F_UNREADABLE else v.item(j)
                    if i and item is None and parts is not None and not f & F_UNREADABLE:
                        _raw(&b, b",", 1)
                        _uuid4(rid_text, rnd + 16 * (i - 1))
                        i += 1
                        _raw(&b, b'{"code":0,"description":"ok","reqId":"', 38)
                        _raw(&b, rid_text, 36)
                        _bytes(&b, p_head)
                        self._fast(&b, v, j, pg, head.grey)
                        blocked += (f & F_BLOCKED) != 0
                        _raw(&b, b'],"tag1265":"UUID=', 18)
                        _raw(&b, rid_text, 36)
                        _bytes(&b, p_tail)
                        checked += 1
                        if audit:
                            _bytes(&a, p_line)
                            _raw(&a, rid_text, 36)
                            _bytes(&a, p_rest)
                            self._fast_audit(&a, &b, v, j)
                            _bytes(&a, p_end)
                        continue
                    if i:
                        _raw(&b, b",", 1)
                        _uuid4(rid_text, rnd + 16 * (i - 1))
                        # a free code's envelope writes the id's text as it is; the others take it as a str
                        rid = None if item is None and not f & F_UNREADABLE else PyUnicode_DecodeASCII(rid_text,
                                                                                                       36, NULL)
                    else:
                        rid = head.req_id
                    i += 1
                    if f & F_UNREADABLE:
                        item = unreadable[i - 1]
                        _lit(&b, b'{"code":')
                        _digits(&b, self.error_unreadable)
                        _lit(&b, b',"description":')
                        _value(&b, item.message)
                        self._head(&b, rid, head.req_ms, head.inst, head.version)
                        self._unreadable(&b, item, pg)
                        self._tail(&b, rid, head.req_ms, head.inst, head.version, known_version, known_age,
                                   head.freshness)
                        _lit(&b, b',"error":"invalid_code","errorCode":')
                        _digits(&b, self.error_unreadable)
                        _lit(&b, b',"reason":')
                        _value(&b, item.reason)
                        _raw(&b, b"}", 1)
                        if audit:
                            self._audit_line(&a, head, rid, db_version, b"invalid_code")
                            self._audit_code(&a, item, True)
                            self._audit_end(&a, head)
                        continue
                    if item is None:
                        item_version, item_age, item_instance = v.db_version, v.db_age, v.instance_id
                    else:
                        item_version, item_age, item_instance = item.db_version, item.db_age, item.instance_id
                    if item_instance == seen_instance and item_version == seen_version:
                        inst, version = head.inst, head.version
                    else:
                        inst, version = uuids(item_instance, item_version)
                    _lit(&b, b'{"code":0,"description":"ok"')
                    if rid is None:
                        self._head_id(&b, rid_text, head.req_ms, inst, version)
                    else:
                        self._head(&b, rid, head.req_ms, inst, version)
                    if item is None:
                        self._fast(&b, v, j, pg, head.grey)
                        blocked += (f & F_BLOCKED) != 0
                    else:
                        self._code(&b, item, pg, head.grey)
                        blocked += bool(item.blocked)
                    if rid is None:
                        self._tail_id(&b, rid_text, head.req_ms, inst, version, item_version, item_age,
                                      head.freshness)
                    else:
                        self._tail(&b, rid, head.req_ms, inst, version, item_version, item_age, head.freshness)
                    _raw(&b, b"}", 1)
                    checked += 1
                    if audit:
                        if rid is None:
                            self._audit_line_id(&a, head, rid_text, item_version, b"ok")
                        else:
                            self._audit_line(&a, head, rid, item_version, b"ok")
                        if item is None:
                            self._fast_audit(&a, &b, v, j)
                        else:
                            self._audit_code(&a, item, False)
                        self._audit_end(&a, head)
            _lit(&b, b"]}")
            return _take(&b), _take_text(&a) if audit else "", checked, blocked
        finally:
            _free(&b)
            _free(&a)

    def v1(self, list answers, Envelope head):
        """Protocol 1's answer to a check: `(body, audit_line or None, checked, blocked)`; `answers` holds a
        `Verdict` or an unreadable item per scan, at least one a `Verdict` (`checks.Checks._check_steps`)."""
        cdef Py_ssize_t n = PyList_GET_SIZE(answers)
        cdef Py_ssize_t i, unread = 0, checked = 0, blocked = 0
        cdef object item, first = None
        cdef object kind = self.unreadable_type
        cdef bint audit = head.audit_client is not None
        cdef bint bad
        cdef Buf b, a
        _init(&b)
        _init(&a)
        for i in range(n):
            item = <object>PyList_GET_ITEM(answers, i)
            if type(item) is kind:
                unread += 1
            elif first is None:
                first = item
        if first is None:
            raise ValueError("no code of the request was checked")
        try:
            self._v1_open(&b, &a, n, unread, head, first.db_version, audit)
            for i in range(n):
                item = <object>PyList_GET_ITEM(answers, i)
                if i:
                    _raw(&b, b",", 1)
                    if audit:
                        _raw(&a, b",", 1)
                bad = type(item) is kind
                if bad:
                    self._unreadable(&b, item, None)
                else:
                    self._code(&b, item, None, head.grey)
                    checked += 1
                    blocked += bool(item.blocked)
                if audit:
                    self._audit_code(&a, item, bad)
            body, line = self._v1_close(&b, &a, unread, head, first.db_version, first.db_age, audit)
            return body, line, checked, blocked
        finally:
            _free(&b)
            _free(&a)

    def v2(self, list answers, list pgs, bytes ids, Envelope head, object db_version, object uuids):
        """Protocol 2's answer to a check, one envelope per code: `(body, audit_lines or "", checked, blocked)`.

        `pgs`: the product group each item named (or None); `ids`: 16 random bytes for each code after the first,
        its `reqId` (a UUID version 4, as `uuid.uuid4()` makes of 16 bytes of `os.urandom`; the first answers
        under `head.req_id`); `db_version`: the version that answered (an unreadable scan's audit
        line names it); `uuids(instance_id, db_version)`: `(inst, version)` for a verdict of another instance or
        version than `head`'s (`head.inst`/`head.version` are the first checked code's)."""
        cdef Py_ssize_t n = PyList_GET_SIZE(answers)
        cdef Py_ssize_t i, checked = 0, blocked = 0
        cdef object item, known = None, pg
        cdef object kind = self.unreadable_type
        cdef bint audit = head.audit_client is not None
        cdef const unsigned char* rnd
        cdef char rid_text[36]
        cdef str rid, inst, version
        cdef object seen_instance, seen_version
        cdef Buf b, a
        if PyBytes_GET_SIZE(ids) < 16 * (n - 1) or PyList_GET_SIZE(pgs) != n:
            raise ValueError("ids needs 16 bytes for each code after the first, pgs one entry per code")
        for i in range(n):
            item = <object>PyList_GET_ITEM(answers, i)
            if type(item) is not kind:
                known = item
                break
        if known is None:
            raise ValueError("no code of the request was checked")
        seen_instance, seen_version = known.instance_id, known.db_version
        rnd = <const unsigned char*>PyBytes_AS_STRING(ids)
        _init(&b)
        _init(&a)
        try:
            _grow(&b, 1100 * n + 100)
            if audit:
                _grow(&a, 200 * n + 100)
            _lit(&b, b'{"results":[')
            for i in range(n):
                item = <object>PyList_GET_ITEM(answers, i)
                pg = <object>PyList_GET_ITEM(pgs, i)
                if i:
                    _raw(&b, b",", 1)
                    _uuid4(rid_text, rnd + 16 * (i - 1))
                    rid = PyUnicode_DecodeASCII(rid_text, 36, NULL)
                else:
                    rid = head.req_id
                if type(item) is kind:
                    inst, version = head.inst, head.version
                    _lit(&b, b'{"code":')
                    _digits(&b, self.error_unreadable)
                    _lit(&b, b',"description":')
                    _value(&b, item.message)
                    self._head(&b, rid, head.req_ms, inst, version)
                    self._unreadable(&b, item, pg)
                    self._tail(&b, rid, head.req_ms, inst, version, known.db_version, known.db_age, head.freshness)
                    _lit(&b, b',"error":"invalid_code","errorCode":')
                    _digits(&b, self.error_unreadable)
                    _lit(&b, b',"reason":')
                    _value(&b, item.reason)
                    _raw(&b, b"}", 1)
                    if audit:
                        self._audit_line(&a, head, rid, db_version, b"invalid_code")
                        self._audit_code(&a, item, True)
                        self._audit_end(&a, head)
                    continue
                if item.instance_id == seen_instance and item.db_version == seen_version:
                    inst, version = head.inst, head.version
                else:
                    inst, version = uuids(item.instance_id, item.db_version)
                _lit(&b, b'{"code":0,"description":"ok"')
                self._head(&b, rid, head.req_ms, inst, version)
                self._code(&b, item, pg, head.grey)
                self._tail(&b, rid, head.req_ms, inst, version, item.db_version, item.db_age, head.freshness)
                _raw(&b, b"}", 1)
                checked += 1
                blocked += bool(item.blocked)
                if audit:
                    self._audit_line(&a, head, rid, item.db_version, b"ok")
                    self._audit_code(&a, item, False)
                    self._audit_end(&a, head)
            _lit(&b, b"]}")
            return _take(&b), _take_text(&a) if audit else "", checked, blocked
        finally:
            _free(&b)
            _free(&a)
