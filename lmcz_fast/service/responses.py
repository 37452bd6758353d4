"""A response and a refused request, as the protocol hands them to the HTTP stack."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any


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
