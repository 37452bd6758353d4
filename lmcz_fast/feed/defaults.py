"""The publisher's defaults, in a file that imports nothing: `lmcz-fast publish --help` shows them without loading
the cryptography (publishing.py re-exports them)."""

from __future__ import annotations

#: How many deltas a feed keeps (`publish --keep-deltas`); older ones are pruned.
DEFAULT_KEEP_DELTAS = 48
#: A manifest stops being acceptable this long after it was signed. The publisher re-signs (a "heartbeat"
#: `publish` without input) well within it; a mirror or attacker replaying the last manifest forever can therefore
#: keep a store "ready" for at most this long.
DEFAULT_VALID_FOR = 24 * 3600
