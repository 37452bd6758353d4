"""What the front keeps on disk beside the store: the participant token a till's `init` carried (readable by the
service user only, never logged or shown) and the official module's last-known `inst` and `version` (so that a
restart while the module is down still answers with its `inst`).

Both are written whole (a temporary file, fsync, rename), so a crash leaves the old file or the new one.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from typing import Any

log = logging.getLogger("lmcz_fast.front")

TOKEN_FILE = "participant-token"
LAST_KNOWN_FILE = "official.json"
#: Seconds between two writes of a changed `version` (an `inst` change is written at once).
VERSION_WRITE_EVERY = 60.0


def _write_private(path: str, data: bytes) -> None:
    """`data` into `path`, whole, created with mode 0600 (the token must never be readable by others, not even for
    a moment: the temporary file is made 0600 before a byte is written)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    try:
        dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class FrontState:
    """The front's state directory (made mode 0700 when missing). Without one (`None`) nothing is kept on disk:
    the token and the last-known `inst` live in memory only."""

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        self.directory = None if directory is None else os.fspath(directory)
        self._token: str | None = None
        self.last_known: dict[str, Any] = {}
        self._written_at = 0.0
        if self.directory is not None:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            self._token = self._read_token()
            self.last_known = self._read_last_known()

    # -- the participant token -------------------------------------------------------------------------------

    @property
    def token_path(self) -> str | None:
        return None if self.directory is None else os.path.join(self.directory, TOKEN_FILE)

    def token(self) -> str | None:
        """The participant token the last forwarded `init` carried, or None."""
        return self._token

    def save_token(self, token: str) -> None:
        if token == self._token:
            return
        self._token = token
        path = self.token_path
        if path is not None:
            _write_private(path, token.encode("utf-8") + b"\n")
            log.info("participant token kept in %s (mode 0600)", path)

    def _read_token(self) -> str | None:
        path = self.token_path
        assert path is not None
        try:
            with open(path, encoding="utf-8") as fh:
                mode = os.fstat(fh.fileno()).st_mode
                token = fh.readline().strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("the kept participant token %s cannot be read: %s", path, exc)
            return None
        if stat.S_IMODE(mode) & 0o077:
            os.chmod(path, 0o600)
            log.warning("the kept participant token %s was readable by others (mode %04o): made 0600", path,
                        stat.S_IMODE(mode))
        return token or None

    # -- the module's last-known inst and version ---------------------------------------------------------------

    def remember(self, inst: str, version: str, moment: float) -> None:
        """Keep the module's `inst`/`version`: written to disk when `inst` changes, and when `version` changes at
        most once a minute (a module that sent a new `version` with every answer must not cost a disk write per
        check on the event loop)."""
        known = self.last_known
        if known.get("inst") == inst and known.get("version") == version:
            known["at"] = moment
            return
        same_inst = known.get("inst") == inst
        written = self._written_at
        self.last_known = {"inst": inst, "version": version, "at": moment}
        if same_inst and moment - written < VERSION_WRITE_EVERY:
            return
        self._written_at = moment
        if self.directory is not None:
            try:
                _write_private(os.path.join(self.directory, LAST_KNOWN_FILE),
                               json.dumps(self.last_known).encode())
            except OSError as exc:
                log.warning("cannot keep the official module's inst/version in %s: %s", self.directory, exc)

    def _read_last_known(self) -> dict[str, Any]:
        assert self.directory is not None
        try:
            with open(os.path.join(self.directory, LAST_KNOWN_FILE), encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("the official module's last-known inst in %s cannot be read (%s): learnt again from its "
                        "next answer", self.directory, exc)
            return {}
        if not isinstance(data, dict) or not isinstance(data.get("inst"), str):
            return {}
        return data
