"""Who a request is: HTTP Basic, or `Authorization: Token <token>` (`serve --token-file`), judged in one place.

`Credentials.authenticate(header)` answers "basic:<user>", "token:<label>" or None (missing, wrong, expired).
`LocalModule.admit` (api/) adds the route's rule (status answers without credentials) and is what `handle` and
the HTTP layer call. Secrets are compared in constant time: the Basic header against the one expected (then user
and password each, for a header encoded differently), a token against every configured token, all of them every
time, so the time taken says nothing about which one came close. Nothing here logs a secret.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import time
from collections.abc import Callable

from .config import Token
from .metrics import OncePer

log = logging.getLogger("lmcz_fast.service")


class Credentials:
    """The accepted credentials: one Basic user and password, and any number of tokens (each with an optional
    expiry). Replaced whole on SIGHUP (`set_password`, `set_tokens`); not thread-safe (one event loop owns it)."""

    def __init__(self, user: str, password: str, tokens: tuple[Token, ...] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self.user = user
        self.clock = clock
        self.tokens: tuple[Token, ...] = ()
        self._expected = b""
        self._password = b""
        self._basic_label = f"basic:{user}"
        self._expired_log = OncePer(log, 60.0)
        self.set_password(password)
        self.set_tokens(tokens)

    def set_password(self, password: str) -> None:
        self._password = password.encode()
        self._expected = b"Basic " + base64.b64encode(f"{self.user}:{password}".encode())

    def set_tokens(self, tokens: tuple[Token, ...]) -> None:
        self.tokens = tuple(tokens)

    def authenticate(self, header: bytes | None) -> str | None:
        """Who an `Authorization` header is: "basic:<user>" or "token:<label>"; None when missing, wrong or
        expired (a token past its expiry is refused like a wrong one, and logged by its label at most once a
        minute)."""
        if header is None:
            return None
        if hmac.compare_digest(header, self._expected):
            return self._basic_label
        scheme, _, value = header.strip().partition(b" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == b"token":
            return self._token(value)
        if scheme != b"basic":
            return None
        try:
            user, sep, password = base64.b64decode(value, validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return None
        ok_user = hmac.compare_digest(user, self.user.encode())
        ok_password = hmac.compare_digest(password, self._password)
        return self._basic_label if sep and ok_user and ok_password else None

    def _token(self, value: bytes) -> str | None:
        found: Token | None = None
        for token in self.tokens:
            if hmac.compare_digest(value, token.secret) and found is None:
                found = token
        if found is None or not value:
            return None
        if found.expires_at is not None and self.clock() > found.expires_at:
            self._expired_log.warning("refused token %r: expired at %s", found.label,
                                      time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(found.expires_at)))
            return None
        return "token:" + found.label
