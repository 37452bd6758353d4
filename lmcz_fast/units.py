"""systemd units for running lmcz-fast as a store's service: `serve` (the tills' Local Module) and `sync` (updates
from the signed feed), under a dedicated user, hardened, restarted when they die.

The templates ship in the package (`lmcz_fast/systemd/`); `render()` fills them in from `UnitOptions` and `install()`
writes them (units, a sysusers.d file that creates the user, a tmpfiles.d file that creates the directories). The CLI
face is `lmcz-fast systemd`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

__all__ = ["HARDENING", "UnitOptions", "install", "quote", "render"]

#: What both services run under. Each line is one systemd directive; `systemd-analyze security` scores the result.
HARDENING = """\
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
CapabilityBoundingSet=
AmbientCapabilities=
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
# Not set: MemoryDenyWriteExecute=yes (native extensions built with cffi may need writable code pages)."""

TEMPLATES = {
    "serve": "lmcz-fast-serve.service",
    "sync": "lmcz-fast-sync.service",
    "replicate": "lmcz-fast-replicate.service",
    "sysusers": "lmcz-fast.sysusers.conf",
    "tmpfiles": "lmcz-fast.tmpfiles.conf",
}

_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def quote(word: str) -> str:
    """One command-line word as systemd reads it in ExecStart=: `%` and `$` are doubled (specifiers and
    variables), and a word with spaces or quotes goes in double quotes with backslash escapes."""
    word = word.replace("%", "%%").replace("$", "$$")
    if word and _SAFE.fullmatch(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _path(value: str, what: str) -> str:
    if not PurePosixPath(value).is_absolute():
        raise ValueError(f"{what} must be an absolute path (systemd runs the unit from /): {value!r}")
    if "\n" in value:
        raise ValueError(f"{what} holds a line break: {value!r}")
    return os.path.normpath(value)


@dataclass(frozen=True)
class UnitOptions:
    """What the units say. Paths must be absolute. `feed_url`: without it the sync unit follows the feed the store
    last synced from (do the first sync by hand). `public_key`, `password_file`, `proxy_auth_file` are read by the
    service user (keep them mode 0640, group `group`)."""

    binary: str
    db: str = "/var/lib/lmcz-fast/store.db"
    user: str = "lmcz-fast"
    group: str | None = None
    audit_dir: str | None = None
    host: str = "127.0.0.1"
    port: int = 5995
    password_file: str | None = None
    feed_url: str | None = None
    public_key: str | None = "/etc/lmcz-fast/feed.pub"
    every: str = "2h"
    nice: int = 10
    proxy: str | None = None
    proxy_auth_file: str | None = None
    prefix: str = "lmcz-fast"
    replicate_source: str | None = None
    source_credentials_file: str | None = None

    @property
    def updater(self) -> str:
        """The unit that keeps the store current: `replicate` when a replication source is given, else `sync`."""
        return "replicate" if self.replicate_source else "sync"

    def checked(self) -> UnitOptions:
        for name in (self.user, self.group or self.user):
            if _NAME.fullmatch(name) is None:
                raise ValueError(f"not a system user or group name: {name!r}")
        if _NAME.fullmatch(self.prefix) is None:
            raise ValueError(f"a unit name prefix is lower-case letters, digits, '-' and '_': {self.prefix!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"not a TCP port: {self.port}")
        if not 0 <= self.nice <= 19:
            raise ValueError(f"--nice is 0..19: {self.nice}")
        for value, what in ((self.feed_url, "the feed URL"), (self.proxy, "the proxy URL"),
                            (self.replicate_source, "the replication source"),
                            (self.every, "the interval"), (self.host, "the address")):
            if value is not None and any(c.isspace() for c in value):
                raise ValueError(f"{what} holds white space: {value!r}")
        _path(self.binary, "the lmcz-fast program")
        _path(self.db, "the database")
        for value, what in ((self.audit_dir, "the audit directory"), (self.password_file, "the password file"),
                            (self.public_key, "the public key"), (self.proxy_auth_file, "the proxy credentials"),
                            (self.source_credentials_file, "the source's credentials")):
            if value is not None:
                _path(value, what)
        return self

    @property
    def audit(self) -> str:
        return os.path.normpath(self.audit_dir) if self.audit_dir else os.path.normpath(self.db) + ".audit"

    @property
    def state_dir(self) -> str:
        return os.path.dirname(os.path.normpath(self.db)) or "/"

    def writable(self) -> list[str]:
        """The directories the services write: the store's (a sync creates the store there) and the audit log's,
        when it is not inside the first."""
        paths = [self.state_dir]
        audit = self.audit
        if not (audit + "/").startswith(self.state_dir.rstrip("/") + "/"):
            paths.append(audit)
        return paths

    def unit_name(self, which: str) -> str:
        return f"{self.prefix}-{which}.service"


def _command(words: list[str]) -> str:
    return " ".join(quote(word) for word in words)


def render(options: UnitOptions) -> dict[str, str]:
    """The file name -> text of every file: the serve and sync units, the sysusers.d and tmpfiles.d files."""
    opts = options.checked()
    group = opts.group or opts.user
    serve = [opts.binary, "serve", os.path.normpath(opts.db), "--host", opts.host, "--port", str(opts.port),
             "--audit-dir", opts.audit]
    if opts.password_file:
        serve += ["--password-file", opts.password_file]
    # The unit sets the priority (Nice=) itself: the process then needs no setpriority() of its own.
    sync = [opts.binary, "sync", os.path.normpath(opts.db), "--every", opts.every, "--nice", "0"]
    feed_note = ("# No --feed was given: this unit follows the feed the store last synced from. Do the first sync\n"
                 "# by hand as the service user: lmcz-fast sync DB --feed URL --public-key KEY\n")
    if opts.feed_url:
        sync += ["--feed", opts.feed_url]
        feed_note = ""
        if opts.public_key:
            sync += ["--public-key", opts.public_key]
    replicate = [opts.binary, "replicate", os.path.normpath(opts.db), "--source", opts.replicate_source or "",
                 "--follow", "--nice", "0"]
    if opts.source_credentials_file:
        replicate += ["--credentials-file", opts.source_credentials_file]
    for command in (sync, replicate):
        if opts.proxy:
            command += ["--proxy", opts.proxy]
        if opts.proxy_auth_file:
            command += ["--proxy-auth-file", opts.proxy_auth_file]
    values = {
        "USER": opts.user,
        "GROUP": group,
        "SERVE_COMMAND": _command(serve),
        "SYNC_COMMAND": _command(sync),
        "REPLICATE_COMMAND": _command(replicate),
        "SOURCE": opts.replicate_source or "",
        "SYNC_UNIT": opts.unit_name(opts.updater),
        "EVERY": opts.every,
        "FEED_NOTE": feed_note,
        "READ_WRITE_PATHS": " ".join(quote(p) for p in opts.writable()),
        "HARDENING": HARDENING,
        "STATE_DIR": opts.state_dir,
        "TMPFILES": "\n".join(f"d {p} 0750 {opts.user} {group} -" for p in opts.writable()),
    }
    out = {}
    for which, template in TEMPLATES.items():
        if which in ("sync", "replicate") and which != opts.updater:
            continue                    # one unit keeps the store current: the feed's sync or the replication
        text = resources.files("lmcz_fast").joinpath("systemd", template).read_text(encoding="utf-8")
        name = (opts.unit_name(which) if which in ("serve", "sync", "replicate")
                else template.replace("lmcz-fast", opts.prefix))
        values["UNIT"] = name
        text = re.sub(r"@([A-Z_]+)@", lambda m: values[m.group(1)], text)
        if which in ("sync", "replicate"):
            text = text.replace("[Service]\n", f"[Service]\nNice={opts.nice}\n", 1)
        out[name] = text
    return out


def install(files: dict[str, str], unit_dir: str | os.PathLike[str], sysusers_dir: str | os.PathLike[str],
            tmpfiles_dir: str | os.PathLike[str]) -> list[Path]:
    """Write `render()`'s files (units to `unit_dir`, the user and directory files to theirs); returns the paths."""
    written = []
    for name, text in files.items():
        target = Path(sysusers_dir if name.endswith(".sysusers.conf") else
                      tmpfiles_dir if name.endswith(".tmpfiles.conf") else unit_dir)
        target.mkdir(parents=True, exist_ok=True)
        real_name = name.replace(".sysusers.conf", ".conf").replace(".tmpfiles.conf", ".conf")
        path = target / real_name
        temp = path.with_name(f".{real_name}.tmp")
        temp.write_text(text, encoding="utf-8")
        os.chmod(temp, 0o644)
        os.replace(temp, path)
        written.append(path)
    return written
