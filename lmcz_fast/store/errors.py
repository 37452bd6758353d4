"""The store's typed errors. Each is raised before commit: a store that raised is unchanged."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .records import LoadReport


class StoreError(Exception):
    """Base of every error the store raises on purpose (bad path, read-only handle, corrupt metadata)."""


class NoListError(StoreError):
    """The store has never held a list (version 0: created, never loaded or synced). Nothing it could answer would
    mean "may be sold", so it answers nothing: every check raises this, as `serve` answers 4045."""


class VersionError(StoreError):
    """A delta does not start at the version the store holds; nothing was changed."""

    def __init__(self, message: str, *, current: int, expected: int | None) -> None:
        super().__init__(message)
        self.current = current
        self.expected = expected


class DigestMismatchError(StoreError):
    """A write would leave the store with another set digest than the caller expected; nothing was changed."""

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class LoadError(StoreError):
    """A strict load met bad lines and was refused; nothing was changed. `.report` says which."""

    def __init__(self, message: str, report: LoadReport) -> None:
        super().__init__(message)
        self.report = report



class DiskFullError(StoreError):
    """The filesystem holding the store (or a download) has no room; the write was not committed.

    `.path` is where the write went, `.free_bytes` what the filesystem had left for it when it failed.
    """

    def __init__(self, message: str, *, path: str, free_bytes: int | None) -> None:
        super().__init__(message)
        self.path = path
        self.free_bytes = free_bytes


class MapFullError(StoreError):
    """The database reached the size of its memory map; the write was not committed."""
