"""The audit log's one error."""

from __future__ import annotations

class AuditError(Exception):
    """The audit directory cannot be used, or an export was asked for something impossible."""
