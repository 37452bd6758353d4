"""The purge's clock: the time by which the sold register deletes expired sales, which never runs ahead of the time
that really elapsed (a clock set years ahead by mistake must not delete a sale; see the package's "Time")."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("lmcz_fast.store")

#: How far the wall clock may run ahead of the monotonic clock, between two purges, before it counts as a jump.
JUMP_SLACK = 60.0


class PurgeClock:
    """The wall clock as the purge of one register handle reads it (`now`). Its state (when the wall clock last
    agreed with the monotonic one, whether a jump was logged) is its own."""

    def __init__(self) -> None:
        self._anchor: tuple[float, float] | None = None   # (wall, monotonic) when the purge's clock last agreed
        self._jump_logged = False

    def now(self) -> float:
        """The wall clock, unless it jumped ahead since the last purge of this handle: then the time that really
        elapsed since (monotonic), so that a clock set years ahead by mistake deletes nothing it should not."""
        wall, mono = time.time(), time.monotonic()
        anchor = self._anchor
        if anchor is not None:
            bound = anchor[0] + (mono - anchor[1]) + JUMP_SLACK
            if wall > bound:
                if not self._jump_logged:
                    self._jump_logged = True
                    log.warning("the clock jumped %.0f s ahead of the time that elapsed: the sold register's purge "
                                "counts the time that really elapsed until this process restarts (a sale is never "
                                "deleted by a clock set ahead by mistake)", wall - bound + JUMP_SLACK)
                return bound - JUMP_SLACK
        self._anchor = (wall, mono)
        return wall
