"""`serve` in the foreground: open the store and the audit log, run the server until a signal, drain, flush."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
from collections.abc import Callable

from ..front import Front
from ..front.watch import FrontWatch, watch_front
from .api import LocalModule
from .config import DEFAULT_PASSWORD, AuditOptions, ServiceConfig, Token
from .http import Server

log = logging.getLogger("lmcz_fast.service")


def settle_garbage_collector() -> None:
    """Move everything built at start (modules, the store, the app) out of the collector's sight.

    A full collection walks every tracked object; with ~40k of them from start-up alone it held the event loop for
    5-20 ms, the worst stall of a paced load. Frozen, they are never walked again; what a full collection walks is
    then only what was made since (connections), and the per-request objects die young (reference counting)."""
    gc.collect()
    gc.freeze()


def install_uvloop() -> bool:
    """Use uvloop's event loop when it is installed (measured faster; see docs/service.md)."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def notify(state: str) -> bool:
    """Tell systemd about the service (`READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=...`): sd_notify(3).

    Does nothing outside a `Type=notify` unit (no NOTIFY_SOCKET). Returns whether a message was sent.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]          # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", os.environ.get("NOTIFY_SOCKET"), exc)
        return False


async def learn_inst(front: Front) -> None:
    """Ask the official module's status for its `inst` at start, so that answers given while it does not answer
    checks carry it from the first one on (its check answers keep it current afterwards)."""
    import json

    try:
        answer = await front.forward(b"GET", b"/api/v1/status", None, b"", None, None, deadline=5.0)
        payload = json.loads(answer.body) if answer.status == 200 else None
    except Exception as exc:  # noqa: BLE001 - any failure: learnt from its first check answer instead
        log.warning("the official module at %s does not answer its status (%s): its inst is learnt from its "
                    "first check answer", front.config.target.url, getattr(exc, "reason", None) or exc)
        return
    if isinstance(payload, dict) and front.inst is None:
        front.learn({"inst": payload.get("inst")})


def auth_words(config: ServiceConfig) -> str:
    """Who may call the service, for the start-up line (no secret)."""
    if not config.auth:
        return "OFF"
    if config.organisations:
        return f"{len(config.organisations)} organisations ({', '.join(o.inn for o in config.organisations)})"
    return f"user {config.user!r}" + (f" and {len(config.tokens)} tokens" if config.tokens else "")


def reload_organisations(app: LocalModule, path: str) -> bool:
    """SIGHUP: read the organisations file again and serve what it says from the next request on (connections
    stay open); a file that cannot be used leaves the old organisations in force, said in one error line."""
    from .organisations import read_organisations

    try:
        summary = app.set_organisations(read_organisations(path))
    except Exception as exc:
        log.error("SIGHUP: the organisations file %s was NOT taken, the previous organisations stay in force: %s",
                  path, exc)
        return False
    log.info("SIGHUP: organisations reloaded from %s: %s; open connections kept", path, summary)
    return True


def run(
    db_path: str | os.PathLike[str],
    config: ServiceConfig,
    *,
    audit: AuditOptions | None = None,
    use_uvloop: bool = True,
    ready: Callable[[int], None] | None = None,
    password: Callable[[], str] | None = None,
    tokens: Callable[[], tuple[Token, ...]] | None = None,
    page_credentials: tuple[str, str] | None = None,
) -> None:
    """Serve in the foreground until SIGTERM or SIGINT, then drain connections and flush the audit log.

    SIGHUP calls `password()` and `tokens()` (serve reads its --password-file and --token-file again) and takes
    the new credentials for the next requests without closing a connection; what cannot be read leaves the old
    in force. `page_credentials` (user, password) open the status page (GET /) only, read-only. `config.front`: serve
    in front of the official module (`serve --front`, service/fronting.py), with the cross-check, outbox and
    watchdog `config.front_watch` asks for (lmcz_fast/front/watch.py).
    Under systemd (`Type=notify`) readiness, reloads and the shutdown are reported with sd_notify.
    """
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
    audit_log = (AuditLog(audit.directory, retention_days=audit.retention_days, flush_interval=audit.flush_interval)
                 if audit is not None else None)
    app = LocalModule(blocklist, config, audit=audit_log)
    if page_credentials is not None:
        app.set_page_credentials(*page_credentials)
    server = Server(app)
    watches: list[FrontWatch] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def reload() -> None:
            notify("RELOADING=1")
            if config.organisations_file is not None:
                reload_organisations(app, config.organisations_file)
            try:
                if password is not None:
                    app.set_password(password())
                    log.info("SIGHUP: password reloaded; open connections kept")
                elif tokens is None and config.organisations_file is None:
                    log.info("SIGHUP: nothing to reload (no --password-file, no --token-file)")
            except Exception as exc:
                log.error("SIGHUP: password not reloaded, the old one stays in force: %s", exc)
            try:
                if tokens is not None:
                    app.set_tokens(tokens())
                    log.info("SIGHUP: tokens reloaded (%d); open connections kept", len(app.config.tokens))
            except Exception as exc:
                log.error("SIGHUP: tokens not reloaded, the old ones stay in force: %s", exc)
            notify("READY=1")

        loop.add_signal_handler(signal.SIGHUP, reload)
        front = config.front
        if front is not None:
            forwarder = Front(front)
            forwarder.start(loop)
            app.attach_front(forwarder)
            log.info("in front of the official module at %s (deadline %g ms, %s credentials%s)", front.target.url,
                     front.deadline * 1000, front.credentials.kind,
                     "" if forwarder.inst is None else f"; its last-known inst {forwarder.inst}")
            loop.create_task(learn_inst(forwarder))
            if config.front_watch is not None:
                watches.append(watch_front(blocklist, forwarder, config.front_watch))
                app.attach_front_watch(watches[0])
        await server.start()
        for watch in watches:
            watch.start(loop)
        status, lm = app.current_status()
        settle_garbage_collector()
        log.info("serving %s on http://%s:%d (status %s, version %d, %d codes, %d gtins; auth %s; audit %s)",
                 db_path, config.host, server.port, lm, status.version, status.codes, status.gtins,
                 auth_words(config), audit.directory if audit is not None else "OFF")
        for warning in app.warnings():
            log.warning("WARNING: %s", warning.upper() if "admin:admin" in warning else warning)
        if config.auth and not config.organisations and config.password == DEFAULT_PASSWORD and not app.warnings():
            log.warning("using the default password; set one with --password-file")
        if ready is not None:
            ready(server.port or 0)
        notify(f"READY=1\nSTATUS=serving version {status.version} on port {server.port} ({lm})")
        await stop.wait()
        notify("STOPPING=1")
        log.info("shutting down: draining %d connections", len(server.connections))
        await server.close()
        if app.fronting is not None:
            await app.fronting.close()

    try:
        asyncio.run(main())
    finally:
        for watch in watches:
            watch.stop()
        app.stop_writer()
        if audit_log is not None:
            audit_log.close()
            log.info("audit log flushed and closed")
        blocklist.close()

