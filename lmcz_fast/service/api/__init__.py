"""The official Local Module's API over a `Blocklist`: one parsed request in, one `Response` out, no I/O
(`LocalModule`, module.py: the dispatcher, who may call what, the parts; endpoints.py: its own endpoints)."""

from __future__ import annotations

from .module import CHECK_SLICE, LocalModule, clock_behind_text

__all__ = ["CHECK_SLICE", "LocalModule", "clock_behind_text"]
