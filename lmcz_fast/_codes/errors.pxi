# Included by lmcz_fast/_codes.pyx (one compilation unit with it and its other .pxi files): `CodeError`, and errors made
# without a Python __init__ call.

class CodeError(ValueError):
    """A scan that is not a valid marking code.

    `reason` is a stable machine-readable string (one of `REASONS`); `position` the index (in code points of the
    input) of the character where parsing failed, or None when no single character is to blame.
    """

    def __init__(self, reason, position=None, message=None):
        if message is None:
            message = _MESSAGES.get(reason, reason)
            if position is not None:
                message = f"{message} (at position {position})"
        super().__init__(message)
        self.reason = reason
        self.position = position

    def __reduce__(self):
        return (type(self), (self.reason, self.position, str(self)))


def reason_of(int code):
    """The `CodeError.reason` for a negative return code of `cut_identity`."""
    if -len(REASONS) <= code <= -1:
        return REASONS[-code - 1]
    raise ValueError(f"not a cut_identity error code: {code}")


_new_exception = BaseException.__new__


cdef object _make_error(object reason, object position, str message):
    err = _new_exception(CodeError, message)    # what CodeError.__init__ leaves, without a Python __init__ call
    err.reason = reason
    err.position = position
    return err


def code_error(reason, position, str message):
    """`CodeError(reason, position, message)`, the same object (`args`, `reason`, `position`) made at about half
    the cost: a batch makes one per unreadable scan it answers (`_probe.CheckBatch.errors`)."""
    return _make_error(reason, position, message)


cdef object _error(int rc, Py_ssize_t at):
    reason = REASONS[-rc - 1]
    message = _MESSAGES.get(reason, reason)
    if at < 0:
        return _make_error(reason, None, message)
    return _make_error(reason, at, f"{message} (at position {at})")


cdef object _utf8_error(object raw):
    cdef Py_ssize_t i
    for i, ch in enumerate(raw):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            return CodeError("invalid_utf8", i)
    return CodeError("invalid_utf8", None)
