# Included by lmcz_fast/_codes.pyx (one compilation unit with it and its other .pxi files): `MarkingCode`, and the price
# a code carries.

cdef inline str _ascii(const char* s, Py_ssize_t n):
    return PyUnicode_DecodeASCII(s, n, NULL)


cdef inline int _base80_digit(unsigned char c) noexcept nogil:
    """A tobacco pack's price character -> 0..79 (A-Z, a-z, 0-9, then the 18 signs below, in order); -1 if none."""
    cdef const char* signs = b"!\"%&'*+-./_,:;=<>?"
    cdef int k
    if 65 <= c <= 90:
        return c - 65
    if 97 <= c <= 122:
        return c - 97 + 26
    if 48 <= c <= 57:
        return c - 48 + 52
    for k in range(18):
        if <unsigned char>signs[k] == c:
            return 62 + k
    return -1


cdef long long _mrp_at(const unsigned char* s, int kind, int ntail, const unsigned short* ai_at,
                       const unsigned char* ai_len, const unsigned short* val_at,
                       const unsigned short* val_len) noexcept nogil:
    """The maximum retail price a parsed code carries (kopecks; `MarkingCode.mrp`), or -1 for none."""
    cdef int k, d
    cdef long long total = 0
    if kind == K_TOBACCO_PACK:
        for k in range(21, 25):
            d = _base80_digit(s[k])
            if d < 0:
                return -1
            total = total * 80 + d
        return total
    if kind == K_GS1:
        for k in range(ntail):
            if (ai_len[k] == 4 and s[ai_at[k]] == 56 and s[ai_at[k] + 1] == 48
                    and s[ai_at[k] + 2] == 48 and s[ai_at[k] + 3] == 53):     # "8005"
                for d in range(val_len[k]):
                    total = total * 10 + (s[val_at[k] + d] - 48)
                return total
    return -1


cdef class MarkingCode:
    """A parsed marking code. Immutable; attributes are computed from the normalised scan on access.

    Two codes are equal when they are the same code (same kind, identity and tail), whatever repairs their
    scans needed.
    """

    cdef bytes _s
    cdef int _kind
    cdef int _serial_len
    cdef int _ntail
    cdef unsigned int _repaired
    cdef unsigned short _ai_at[TAIL_MAX]
    cdef unsigned char _ai_len[TAIL_MAX]
    cdef unsigned short _val_at[TAIL_MAX]
    cdef unsigned short _val_len[TAIL_MAX]

    def __init__(self, *args, **kwargs):
        raise TypeError("MarkingCode is made by parse_code()")

    @property
    def kind(self):
        """"gs1", "tobacco_pack" (29 characters) or "tobacco_pack_cis" (its 21-character CIS)."""
        return KINDS[self._kind - 1]

    @property
    def gtin(self):
        """The 14-digit GTIN."""
        cdef const char* s = PyBytes_AS_STRING(self._s)
        return _ascii(s + 2, 14) if self._kind == K_GS1 else _ascii(s, 14)

    @property
    def serial(self):
        """The serial (AI 21 value; for a tobacco pack its 7 characters after the GTIN)."""
        cdef const char* s = PyBytes_AS_STRING(self._s)
        return _ascii(s + 18, self._serial_len) if self._kind == K_GS1 else _ascii(s + 14, 7)

    @property
    def identity(self):
        """Canonical identity: "01" + GTIN + "21" + serial, for every kind."""
        cdef const char* s = PyBytes_AS_STRING(self._s)
        if self._kind == K_GS1:
            return _ascii(s, 18 + self._serial_len)
        return "01" + _ascii(s, 14) + "21" + _ascii(s + 14, 7)

    @property
    def cis(self):
        """The CIS as CRPT prints it: the GS1 form, or a tobacco pack's first 21 characters."""
        cdef const char* s = PyBytes_AS_STRING(self._s)
        if self._kind == K_GS1:
            return _ascii(s, 18 + self._serial_len)
        return _ascii(s, 21)

    @property
    def tail(self):
        """What follows the serial, in order: AI -> value; a tobacco pack's {"price": ..., "check": ...}."""
        cdef const char* s = PyBytes_AS_STRING(self._s)
        cdef dict out = {}
        cdef int k
        if self._kind == K_TOBACCO_PACK:
            out["price"] = _ascii(s + 21, 4)
            out["check"] = _ascii(s + 25, 4)
            return out
        for k in range(self._ntail):
            out[_ascii(s + self._ai_at[k], self._ai_len[k])] = _ascii(s + self._val_at[k], self._val_len[k])
        return out

    @property
    def mrp(self):
        """The maximum retail price (kopecks) the code itself carries, or None.

        A tobacco pack: its characters 22-25, base 80 over `A-Z a-z 0-9 ! " % & ' * + - . / _ , : ; = < > ?`
        (A = 0 ... ? = 79), most significant first ("ACW." = 14630); None if one of them is outside that alphabet.
        An element string: the 6 digits of AI 8005 as kopecks (a tobacco block: the block's price); else None.
        """
        cdef long long total = _mrp_at(<const unsigned char*>PyBytes_AS_STRING(self._s), self._kind, self._ntail,
                                       self._ai_at, self._ai_len, self._val_at, self._val_len)
        return None if total < 0 else total

    @property
    def repaired(self):
        """Names of the scanner damage undone to read this code (see REPAIRS), in a fixed order."""
        cdef int k
        return tuple(REPAIRS[k] for k in range(len(REPAIRS)) if self._repaired & (1 << k))

    @property
    def element_string(self):
        """The code in canonical form: GS1 element string with GS (0x1D) before every tail AI; a tobacco pack's
        29 characters as scanned. What the online check (True API) expects as the full code."""
        cdef const char* s = PyBytes_AS_STRING(self._s)
        cdef int k
        if self._kind != K_GS1:
            return _ascii(s, PyBytes_GET_SIZE(self._s))
        parts = [_ascii(s, 18 + self._serial_len)]
        for k in range(self._ntail):
            parts.append(_ascii(s + self._ai_at[k], self._ai_len[k] + self._val_len[k]))
        return "\x1d".join(parts)

    def _key(self):
        return (self._kind, self.element_string)

    def __eq__(self, other):
        if not isinstance(other, MarkingCode):
            return NotImplemented
        return self._key() == (<MarkingCode>other)._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return (f"MarkingCode({self.cis!r}, kind={self.kind!r}, tail={self.tail!r}"
                f"{', repaired=' + repr(self.repaired) if self._repaired else ''})")

    def __reduce__(self):
        return (parse_code, (self.element_string,))
