# Part of lmcz_fast/_answer.pyx (included): request ids (`uuid.uuid4()`'s text of 16 random bytes), scans too long.

cdef void _uuid4(char* out, const unsigned char* raw) noexcept:
    """The text of `uuid.UUID(bytes=raw[:16], version=4)`: 8-4-4-4-12 lowercase hex, version and variant set."""
    cdef int i, at = 0
    cdef unsigned char byte
    for i in range(16):
        byte = raw[i]
        if i == 6:
            byte = (byte & 0x0f) | 0x40
        elif i == 8:
            byte = (byte & 0x3f) | 0x80
        if i == 4 or i == 6 or i == 8 or i == 10:
            out[at] = b'-'
            at += 1
        out[at] = HEX[byte >> 4]
        out[at + 1] = HEX[byte & 15]
        at += 2


def request_id(bytes raw):
    """`str(uuid.UUID(bytes=raw, version=4))` for 16 bytes: what `uuid.uuid4()` is, of `os.urandom(16)`."""
    cdef char text[36]
    if PyBytes_GET_SIZE(raw) != 16:
        raise ValueError("a request id takes 16 bytes")
    _uuid4(text, <const unsigned char*>PyBytes_AS_STRING(raw))
    return PyUnicode_DecodeASCII(text, 36, NULL)


def too_long(list raws, Py_ssize_t max_len):
    """The indexes of the str items of `raws` longer than `max_len` characters (refused unread, as before)."""
    cdef Py_ssize_t i
    cdef object raw
    out = []
    for i in range(PyList_GET_SIZE(raws)):
        raw = <object>PyList_GET_ITEM(raws, i)
        if PyUnicode_Check(raw) and PyUnicode_GET_LENGTH(raw) > max_len:
            out.append(i)
    return out
