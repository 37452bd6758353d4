# Part of lmcz_fast/_answer.pyx (included): `cis_list`, a check request's body read in compiled code.

#: The bytes a JSON string's text holds as they are (32-127 but the quote and the backslash): one load a byte in
#: `cis_list`'s loops instead of four comparisons.
cdef unsigned char _PLAIN[256]


cdef void _fill_plain() noexcept:
    cdef int c
    for c in range(256):
        _PLAIN[c] = 32 <= c <= 127 and c != 34 and c != 92


_fill_plain()


cdef inline bint _ws(unsigned char c) noexcept:
    return c == 32 or c == 10 or c == 13 or c == 9


cdef inline int _hex(unsigned char c) noexcept:
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


cdef inline str _ascii_text(const char* data, Py_ssize_t n):
    """A str of `n` characters known to be ASCII (0-127): made and filled, with no decoder's scan."""
    cdef str out = PyUnicode_New(n, 127)
    memcpy(PyUnicode_DATA(out), data, n)
    return out


def cis_list(bytes body):
    """The codes of a check request's body when it is exactly `{"cis_list": ["<code>", ...]}` in ASCII (JSON
    whitespace anywhere between tokens, the escapes `\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX` below U+0080 in
    the strings): the list of str `json.loads(body)["cis_list"]` is, read without a dict or the decoder's
    machinery. Anything else (another key, a non-string item, a non-ASCII byte or escape, a malformed body)
    gives None: the caller then decodes it with `json` as before, with the same answers and the same errors."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(body)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
    cdef Py_ssize_t i = 0, start, k, size
    cdef unsigned char c
    cdef int d, code
    cdef list out
    cdef char* text
    while i < n and _ws(p[i]):
        i += 1
    if i >= n or p[i] != b'{':
        return None
    i += 1
    while i < n and _ws(p[i]):
        i += 1
    if n - i < 10 or memcmp(p + i, b'"cis_list"', 10) != 0:
        return None
    i += 10
    while i < n and _ws(p[i]):
        i += 1
    if i >= n or p[i] != b':':
        return None
    i += 1
    while i < n and _ws(p[i]):
        i += 1
    if i >= n or p[i] != b'[':
        return None
    i += 1
    out = []
    # every string's text, unescaped, goes here in turn: never longer than the body it comes from
    text = <char*>PyMem_Malloc(n + 1)
    if text == NULL:
        raise MemoryError()
    try:
        while i < n and _ws(p[i]):
            i += 1
        if i < n and p[i] == b']':
            i += 1
        else:
            while True:
                if i >= n or p[i] != b'"':
                    return None
                i += 1
                start = i
                while i < n and _PLAIN[p[i]]:
                    i += 1
                if i < n and p[i] == b'"':         # no escape: the text as it is
                    out.append(_ascii_text(<const char*>p + start, i - start))
                else:
                    size = i - start
                    memcpy(text, p + start, size)
                    while True:
                        # a run of plain characters, copied in a tight loop; then one escape (or the end)
                        while i < n and _PLAIN[p[i]]:
                            text[size] = <char>p[i]
                            size += 1
                            i += 1
                        if i >= n:
                            return None
                        c = p[i]
                        if c == b'"':
                            break
                        if c == b'\\':
                            if i + 1 >= n:
                                return None
                            c = p[i + 1]
                            if c == b'u':
                                if i + 6 > n:
                                    return None
                                code = 0
                                for k in range(2, 6):
                                    d = _hex(p[i + k])
                                    if d < 0:
                                        return None
                                    code = code * 16 + d
                                if code > 127:
                                    return None
                                c = <unsigned char>code
                                i += 6
                            else:
                                if c == b'"' or c == b'\\' or c == b'/':
                                    pass
                                elif c == b'b':
                                    c = 8
                                elif c == b'f':
                                    c = 12
                                elif c == b'n':
                                    c = 10
                                elif c == b'r':
                                    c = 13
                                elif c == b't':
                                    c = 9
                                else:
                                    return None
                                i += 2
                        elif 32 <= c <= 127:
                            i += 1
                        else:
                            return None
                        text[size] = <char>c
                        size += 1
                    out.append(_ascii_text(text, size))
                i += 1          # the closing quote
                while i < n and _ws(p[i]):
                    i += 1
                if i < n and p[i] == b',':
                    i += 1
                    while i < n and _ws(p[i]):
                        i += 1
                    continue
                if i < n and p[i] == b']':
                    i += 1
                    break
                return None
    finally:
        PyMem_Free(text)
    while i < n and _ws(p[i]):
        i += 1
    if i >= n or p[i] != b'}':
        return None
    i += 1
    while i < n and _ws(p[i]):
        i += 1
    if i != n:
        return None
    return out
