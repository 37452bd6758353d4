"""A response and a refused request, as the protocol hands them to the HTTP stack."""

from __future__ import annotations

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

