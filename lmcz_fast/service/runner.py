"""`serve` in the foreground: open the store and the audit log, run the server until a signal, drain, flush."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from .api import LocalModule
from .config import DEFAULT_PASSWORD, ServiceConfig
from .http import Server

log = logging.getLogger("lmcz_fast.service")


def install_uvloop() -> bool:
    """Use uvloop's event loop when it is installed (measured faster; see docs/service.md)."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def run(
    db_path: str | os.PathLike[str],
    config: ServiceConfig,
    *,
    audit_dir: str | os.PathLike[str] | None = None,
    retention_days: int = 100,
    flush_interval: float = 0.5,
    use_uvloop: bool = True,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Serve in the foreground until SIGTERM or SIGINT, then drain connections and flush the audit log."""
    from ..audit import AuditLog
    from ..store import Blocklist

    if use_uvloop:
        install_uvloop()
    blocklist = Blocklist.open(db_path)
    if config.sold_expire_days is not None:
        seconds = config.sold_expire_days * 86400.0
        if blocklist.sold.expire_after() != seconds:
            blocklist.sold.set_expire_after(seconds)
            log.info("sales are remembered %g days", config.sold_expire_days)
    audit = AuditLog(audit_dir, retention_days=retention_days, flush_interval=flush_interval) if audit_dir else None
    app = LocalModule(blocklist, config, audit=audit)
    server = Server(app)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        status, lm = app.current_status()
        log.info("serving %s on http://%s:%d (status %s, version %d, %d codes, %d gtins; auth %s; audit %s)",
                 db_path, config.host, server.port, lm, status.version, status.codes, status.gtins,
                 f"user {config.user!r}" if config.auth else "OFF", audit_dir or "OFF")
        if config.auth and config.password == DEFAULT_PASSWORD:
            log.warning("using the default password; set one with --password-file")
        if ready is not None:
            ready(server.port or 0)
        await stop.wait()
        log.info("shutting down: draining %d connections", len(server.connections))
        await server.close()

    try:
        asyncio.run(main())
    finally:
        app.stop_writer()
        if audit is not None:
            audit.close()
            log.info("audit log flushed and closed")
        blocklist.close()

