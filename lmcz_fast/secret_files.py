"""Reading a secret from a file (serve's `--password-file`, a proxy's `--proxy-auth-file`): its first line, as an
operator means it, and a warning when other users may read or change it.

Editors and `echo` add what is not part of a password: a UTF-8 byte order mark (Windows Notepad), a CR before the
line end (a file written on Windows), trailing spaces or tabs. They are removed: a password that a till cannot type
back (`admin ` with the space) would otherwise lock every till out with a 401 nobody can explain. Leading spaces are
kept (rarely an accident, and possibly meant).

A file that users other than its owner may read (group or others) or write is worth a warning, not a refusal
(services are often run by a dedicated user with the file group-readable on purpose): it is logged once per read,
naming the file, its mode and the `chmod` that fixes it.
"""

from __future__ import annotations

import logging
import os
import stat

log = logging.getLogger("lmcz_fast")


def first_line(path: str | os.PathLike[str], what: str = "secret file") -> str:
    """The first line of `path` without a BOM, its line end and trailing spaces or tabs. Raises `OSError` (cannot
    be read) or `UnicodeDecodeError` (not UTF-8); warns (log) when group or others may read or write it."""
    with open(path, encoding="utf-8-sig") as fh:
        mode = os.fstat(fh.fileno()).st_mode
        line = fh.readline()
    line = line.rstrip("\r\n").rstrip(" \t\r")
    warn_if_open(path, mode, what)
    return line


def warn_if_open(path: str | os.PathLike[str], mode: int, what: str) -> bool:
    """Log a warning when a regular file of mode `mode` may be written by others, or read by group or others."""
    if not stat.S_ISREG(mode):
        return False
    if mode & stat.S_IWOTH:
        problem = "anyone on this machine can change it"
    elif mode & (stat.S_IWGRP | stat.S_IROTH):
        problem = "other users can " + ("change" if mode & stat.S_IWGRP else "read") + " it"
    elif mode & stat.S_IRGRP:
        problem = "its group can read it"
    else:
        return False
    log.warning("the %s %s has mode %04o: %s; make it readable by its owner only (chmod 600 %s)", what,
                os.fspath(path), stat.S_IMODE(mode), problem, os.fspath(path))
    return True
