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
        _head(self, b, head.req_id, head.req_ms, head.inst, head.version)
        if audit:
            _grow(a, 80 * n + 200)
            _audit_line(self, a, head, head.req_id, db_version, b"partial" if unread else b"ok")
        return 0

    cdef tuple _v1_close(self, Buf* b, Buf* a, Py_ssize_t unread, Envelope head, object db_version, object db_age,
                         bint audit):
        """Protocol 1's envelope after its codes, and the audit line's end: `(body, audit_line or None)`."""
        _tail(self, b, head.req_id, head.req_ms, head.inst, head.version, db_version, db_age, head.freshness)
        if unread:
            _lit(b, b',"unreadable":')
            _digits(b, unread)
        _raw(b, b"}", 1)
        line = None
        if audit:
            _audit_end(self, a, head)
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
            _piece_head(self, &tmp, head.req_ms, head.inst, head.version)
            out.append(_take(&tmp))
            tmp.size = 0
            _tail_rest(self, &tmp, head.req_ms, head.inst, head.version, db_version, db_age, head.freshness)
            _raw(&tmp, b"}", 1)
            out.append(_take(&tmp))
            tmp.size = 0
            _lit(&tmp, b'{"t":')
            _digits(&tmp, head.req_ms)
            _lit(&tmp, b',"id":"')
            out.append(_take(&tmp))
            tmp.size = 0
            if head.audit_client is not None:
                _audit_rest(self, &tmp, head, db_version, b"ok")
                out.append(_take(&tmp))
                tmp.size = 0
                _audit_end(self, &tmp, head)
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
                        _unreadable(self, &b, item, None)
                        if audit:
                            _audit_code(self, &a, item, True)
                    else:
                        item = v.item(j)
                        checked += 1
                        if item is None:
                            _fast(self, &b, v, j, None, head.grey)
                            blocked += (f & F_BLOCKED) != 0
                            if audit:
                                _fast_audit(self, &a, &b, v, j)
                        else:
                            _code(self, &b, item, None, head.grey)
                            blocked += bool(item.blocked)
                            if audit:
                                _audit_code(self, &a, item, False)
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
                        _fast(self, &b, v, j, pg, head.grey)
                        blocked += (f & F_BLOCKED) != 0
                        _raw(&b, b'],"tag1265":"UUID=', 18)
                        _raw(&b, rid_text, 36)
                        _bytes(&b, p_tail)
                        checked += 1
                        if audit:
                            _bytes(&a, p_line)
                            _raw(&a, rid_text, 36)
                            _bytes(&a, p_rest)
                            _fast_audit(self, &a, &b, v, j)
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
                        _head(self, &b, rid, head.req_ms, head.inst, head.version)
                        _unreadable(self, &b, item, pg)
                        _tail(self, &b, rid, head.req_ms, head.inst, head.version, known_version, known_age,
                                   head.freshness)
                        _lit(&b, b',"error":"invalid_code","errorCode":')
                        _digits(&b, self.error_unreadable)
                        _lit(&b, b',"reason":')
                        _value(&b, item.reason)
                        _raw(&b, b"}", 1)
                        if audit:
                            _audit_line(self, &a, head, rid, db_version, b"invalid_code")
                            _audit_code(self, &a, item, True)
                            _audit_end(self, &a, head)
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
                        _head_id(self, &b, rid_text, head.req_ms, inst, version)
                    else:
                        _head(self, &b, rid, head.req_ms, inst, version)
                    if item is None:
                        _fast(self, &b, v, j, pg, head.grey)
                        blocked += (f & F_BLOCKED) != 0
                    else:
                        _code(self, &b, item, pg, head.grey)
                        blocked += bool(item.blocked)
                    if rid is None:
                        _tail_id(self, &b, rid_text, head.req_ms, inst, version, item_version, item_age,
                                      head.freshness)
                    else:
                        _tail(self, &b, rid, head.req_ms, inst, version, item_version, item_age, head.freshness)
                    _raw(&b, b"}", 1)
                    checked += 1
                    if audit:
                        if rid is None:
                            _audit_line_id(self, &a, head, rid_text, item_version, b"ok")
                        else:
                            _audit_line(self, &a, head, rid, item_version, b"ok")
                        if item is None:
                            _fast_audit(self, &a, &b, v, j)
                        else:
                            _audit_code(self, &a, item, False)
                        _audit_end(self, &a, head)
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
                    _unreadable(self, &b, item, None)
                else:
                    _code(self, &b, item, None, head.grey)
                    checked += 1
                    blocked += bool(item.blocked)
                if audit:
                    _audit_code(self, &a, item, bad)
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
                    _head(self, &b, rid, head.req_ms, inst, version)
                    _unreadable(self, &b, item, pg)
                    _tail(self, &b, rid, head.req_ms, inst, version, known.db_version, known.db_age, head.freshness)
                    _lit(&b, b',"error":"invalid_code","errorCode":')
                    _digits(&b, self.error_unreadable)
                    _lit(&b, b',"reason":')
                    _value(&b, item.reason)
                    _raw(&b, b"}", 1)
                    if audit:
                        _audit_line(self, &a, head, rid, db_version, b"invalid_code")
                        _audit_code(self, &a, item, True)
                        _audit_end(self, &a, head)
                    continue
                if item.instance_id == seen_instance and item.db_version == seen_version:
                    inst, version = head.inst, head.version
                else:
                    inst, version = uuids(item.instance_id, item.db_version)
                _lit(&b, b'{"code":0,"description":"ok"')
                _head(self, &b, rid, head.req_ms, inst, version)
                _code(self, &b, item, pg, head.grey)
                _tail(self, &b, rid, head.req_ms, inst, version, item.db_version, item.db_age, head.freshness)
                _raw(&b, b"}", 1)
                checked += 1
                blocked += bool(item.blocked)
                if audit:
                    _audit_line(self, &a, head, rid, item.db_version, b"ok")
                    _audit_code(self, &a, item, False)
                    _audit_end(self, &a, head)
            _lit(&b, b"]}")
            return _take(&b), _take_text(&a) if audit else "", checked, blocked
        finally:
            _free(&b)
            _free(&a)
