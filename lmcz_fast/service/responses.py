"""A response and a refused request, as the protocol hands them to the HTTP stack."""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

#: Compact JSON, as every answer is sent.
encode_json = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode

#: The standard reason phrase of every registered status code: `HTTP/1.1 201 Created`, never a made-up one.
#: (RFC 9110 renamed 413 "Payload Too Large" to "Content Too Large"; Python 3.11 still has the old name.)
REASONS: dict[int, bytes] = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
REASONS[413] = b"Content Too Large"


def reason(status: int) -> bytes:
    """The reason phrase of `status`: the registered one, else the class's ("Client Error" for an unregistered 4xx)."""
    found = REASONS.get(status)
    if found is not None:
        return found
    return {1: b"Informational", 2: b"Success", 3: b"Redirection", 4: b"Client Error"}.get(status // 100,
                                                                                           b"Server Error")


class HttpError(Exception):
    """A request the service refuses: HTTP status, a stable slug, a sentence, and extra JSON fields."""

    def __init__(self, status: int, error: str, description: str, /, **extra: Any) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.extra = extra


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    headers: bytes = b""
    content_type: bytes = b"application/json; charset=utf-8"
    close: bool = False


def error(status: int, error: str, description: str, /, **extra: Any) -> HttpError:
    return HttpError(status, error, description, **extra)


class Steps:
    """An answer worked out in slices on the event loop (a check of many codes), so that no request holds it for
    long: `slices` yields between slices and returns the `Response`. The HTTP stack calls `step()` in turn with
    other connections' work, and `close()`s it if the client hangs up first."""

    __slots__ = ("slices",)

    def __init__(self, slices: Generator[None, None, Response]) -> None:
        self.slices = slices

    def step(self) -> Response | None:
        """Work one slice; the `Response` once done, else None."""
        try:
            next(self.slices)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        return None

    def run(self) -> Response:
        """Work every slice at once."""
        while True:
            response = self.step()
            if response is not None:
                return response

    def close(self) -> None:
        self.slices.close()


class Deferred:
    """A response that is not ready yet: a durable write is in flight (a sale waits for its commit).

    The protocol returns it in place of a `Response`; the HTTP stack writes it, in request order, once `resolve` is
    called (on the event loop's thread).
    """

    __slots__ = ("response", "_callback", "endpoint", "started")

    def __init__(self, endpoint: str = "other", started: float = 0.0) -> None:
        self.response: Response | None = None
        self._callback: Callable[[], None] | None = None
        self.endpoint = endpoint
        self.started = started

    def resolve(self, response: Response) -> None:
        self.response = response
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()

    def on_resolved(self, callback: Callable[[], None]) -> None:
        """Call `callback` once resolved (now, if it already is). One callback: the connection that waits."""
        if self.response is not None:
            callback()
        else:
            self._callback = callback
