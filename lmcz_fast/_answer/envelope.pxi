# Part of lmcz_fast/_answer.pyx (included): `Envelope`, what one check request's answer says around its codes.

cdef class Envelope:
    """What one check request's answer says around its codes, worked out by the service: `reqId`, `reqTimestamp`,
    the instance's and the version's UUIDs (`inst`, `version`), `dbFreshness`, whether `isGreyGtin` answers from
    the grey list, and for the audit log the client (as its JSON text, None: no audit), what its lines end with
    (`,"a":...` of a token's label, or "") and the tag its outcomes carry (`audit_tag`, "" for none: a fronted
    check answered locally records `"o":"local:<reason>"` for ok, `"o":"<outcome> local:<reason>"` otherwise, as
    `AuditLog.record` is told by service/fronting.py)."""

    cdef readonly str req_id
    cdef readonly long long req_ms
    cdef readonly str inst
    cdef readonly str version
    cdef readonly str freshness
    cdef readonly bint grey
    cdef readonly object audit_client
    cdef readonly str audit_tail
    cdef readonly str audit_tag

    def __init__(self, str req_id, long long req_ms, str inst, str version, str freshness, bint grey,
                 audit_client=None, str audit_tail="", str audit_tag=""):
        self.req_id = req_id
        self.req_ms = req_ms
        self.inst = inst
        self.version = version
        self.freshness = freshness
        self.grey = grey
        self.audit_client = audit_client
        self.audit_tail = audit_tail
        self.audit_tag = audit_tag or ""
