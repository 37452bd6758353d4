"""systemd units for running lmcz-fast as a store's service: `serve` (the tills' Local Module) and `sync` (updates
from the signed feed), under a dedicated user, hardened, restarted when they die.

The templates ship in the package (`lmcz_fast/systemd/`); `render()` fills them in from `UnitOptions` and `install()`
writes them (units, a sysusers.d file that creates the user, a tmpfiles.d file that creates the directories). The CLI
face is `lmcz-fast systemd`.
"""

from __future__ import annotations

import os
import pwd
import grp
import re
import stat
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

__all__ = ["HARDENING", "UnitOptions", "install", "quote", "reachability_problems", "readability_problems",
           "render"]

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
    "sold-export": "lmcz-fast-sold-export.service",
    "sold-export-timer": "lmcz-fast-sold-export.timer",
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
    #: the replicate unit's `--mapping FILE` (docs/replication.md), read by the service user; None: the built-in.
    replicate_mapping: str | None = None
    sold_keep: int = 30
    #: `serve --front URL` (docs/front.md): the official module moved to this URL, its login in this file.
    front: str | None = None
    front_credentials_file: str | None = None
    front_deadline: float | None = None
    #: serve's --organisations file (several organisations, one module), or None.
    organisations_file: str | None = None

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
        if self.front is not None and "@" in self.front.split("//", 1)[-1].split("/", 1)[0]:
            raise ValueError("the front URL must not hold credentials: give --front-credentials-file")
        if self.front is None and (self.front_credentials_file or self.front_deadline is not None):
            raise ValueError("--front-credentials-file and --front-deadline need --front URL")
        if self.replicate_mapping is not None and not self.replicate_source:
            raise ValueError("--replicate-mapping needs --replicate-source URL (the mapping is the replicate unit's)")
        if self.sold_keep < 1:
            raise ValueError(f"--sold-keep is 1 or more: {self.sold_keep}")
        if not 0 <= self.nice <= 19:
            raise ValueError(f"--nice is 0..19: {self.nice}")
        for value, what in ((self.feed_url, "the feed URL"), (self.proxy, "the proxy URL"),
                            (self.replicate_source, "the replication source"), (self.front, "the front URL"),
                            (self.every, "the interval"), (self.host, "the address")):
            if value is not None and any(c.isspace() for c in value):
                raise ValueError(f"{what} holds white space: {value!r}")
        _path(self.binary, "the lmcz-fast program")
        _path(self.db, "the database")
        if self.organisations_file is not None and self.password_file is not None:
            raise ValueError("--organisations and --password-file do not go together: each organisation's "
                             "password_file is in the organisations file")
        for value, what in ((self.audit_dir, "the audit directory"), (self.password_file, "the password file"),
                            (self.organisations_file, "the organisations file"),
                            (self.public_key, "the public key"), (self.proxy_auth_file, "the proxy credentials"),
                            (self.source_credentials_file, "the source's credentials"),
                            (self.replicate_mapping, "the mapping file"),
                            (self.front_credentials_file, "the official module's credentials")):
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
        if which == "sold-export-timer":
            return f"{self.prefix}-sold-export.timer"
        return f"{self.prefix}-{which}.service"

    @property
    def sold_dir(self) -> str:
        """Where the daily sold-register exports go: beside the store, in the directory the units may write."""
        return os.path.join(self.state_dir, "sold-export")


def _command(words: list[str]) -> str:
    return " ".join(quote(word) for word in words)


def render(options: UnitOptions) -> dict[str, str]:
    """The file name -> text of every file: the serve and sync (or replicate) units, the daily sold-register export
    (a service and its timer), the sysusers.d and tmpfiles.d files."""
    opts = options.checked()
    group = opts.group or opts.user
    serve = [opts.binary, "serve", os.path.normpath(opts.db), "--host", opts.host, "--port", str(opts.port),
             "--audit-dir", opts.audit]
    if opts.password_file:
        serve += ["--password-file", opts.password_file]
    if opts.front:
        serve += ["--front", opts.front]
        if opts.front_credentials_file:
            serve += ["--front-credentials-file", opts.front_credentials_file]
        if opts.front_deadline is not None:
            serve += ["--front-deadline", f"{opts.front_deadline:g}"]
    if opts.organisations_file:
        serve += ["--organisations", opts.organisations_file]
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
    if opts.replicate_mapping:
        replicate += ["--mapping", os.path.normpath(opts.replicate_mapping)]
    for command in (sync, replicate):
        if opts.proxy:
            command += ["--proxy", opts.proxy]
        if opts.proxy_auth_file:
            command += ["--proxy-auth-file", opts.proxy_auth_file]
    sold = [opts.binary, "sold", "export", os.path.normpath(opts.db), "--to-dir", opts.sold_dir, "--keep",
            str(opts.sold_keep)]
    values = {
        "SOLD_EXPORT_COMMAND": _command(sold),
        "SOLD_KEEP": str(opts.sold_keep),
        "SOLD_UNIT": opts.unit_name("sold-export"),
        "TIMER": opts.unit_name("sold-export-timer"),
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
        name = (opts.unit_name(which) if which in ("serve", "sync", "replicate", "sold-export", "sold-export-timer")
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


#: Where the units' sandbox hides files from the service: ProtectHome=yes makes these empty and unreadable ...
HIDDEN_BY_PROTECT_HOME = ("/home", "/root", "/run/user")
#: ... and PrivateTmp=yes gives the service its own, empty /tmp and /var/tmp.
HIDDEN_BY_PRIVATE_TMP = ("/tmp", "/var/tmp")


def _under(path: str, roots: tuple[str, ...]) -> str | None:
    for root in roots:
        if path == root or path.startswith(root + "/"):
            return root
    return None


def _hidden(what: str, path: str) -> list[str]:
    """`path` (as the unit names it) lies where the units' sandbox hides it from the service."""
    problems = []
    for roots, why in ((HIDDEN_BY_PROTECT_HOME, "which ProtectHome=yes hides from the service"),
                       (HIDDEN_BY_PRIVATE_TMP, "which PrivateTmp=yes replaces with an empty directory for the "
                                               "service")):
        hidden = _under(path, roots)
        if hidden:
            problems.append(f"{what} {path} is under {hidden}, {why}")
    return problems


def _interpreter(program: str) -> str | None:
    """The interpreter named on the program's `#!` line (a console script's Python), if it has one."""
    try:
        with open(program, "rb") as fh:
            first = fh.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    if not words:
        return None
    if os.path.basename(words[0]) == "env" and len(words) > 1:   # #!/usr/bin/env python3: found on PATH
        return None
    return words[0]


def _identity(user: str, group: str) -> tuple[int | None, set[int]]:
    """The service user's uid and groups if the user exists here already (else None: it is made later by
    systemd-sysusers, owns nothing and is in no group but its own, which nothing belongs to yet)."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        gids: set[int] = set()
        try:
            gids.add(grp.getgrnam(group).gr_gid)
        except KeyError:
            pass
        return None, gids
    gids = {entry.pw_gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)}
    try:
        gids.add(grp.getgrnam(group).gr_gid)
    except KeyError:
        pass
    return entry.pw_uid, gids


def _may(st: os.stat_result, uid: int | None, gids: set[int], bits: int) -> bool:
    """Whether the user (uid, gids) has the permission `bits` (a combination of 4 read, 1 execute) on `st`."""
    if uid == 0:
        return True
    if uid is not None and st.st_uid == uid:
        have = (st.st_mode >> 6) & 7
    elif st.st_gid in gids:
        have = (st.st_mode >> 3) & 7
    else:
        have = st.st_mode & 7
    return have & bits == bits


def _walk(path: str, uid: int | None, gids: set[int], what: str, need: int) -> list[str]:
    """What stops the user from reaching `path` (every directory searchable, the file itself `need`), following
    symbolic links as the kernel does."""
    problems: list[str] = []
    seen = 0
    todo = path
    while True:
        seen += 1
        if seen > 40:
            return [f"{what} {path}: too many symbolic links"]
        current = "/"
        parts = [p for p in todo.split("/") if p]
        for i, part in enumerate(parts):
            directory = current
            try:
                dst = os.stat(directory)
            except OSError as exc:
                return [f"{what} {path}: cannot look at {directory}: {exc.strerror}"]
            if not _may(dst, uid, gids, 1):
                who = "the service user"
                return [f"{what} {path}: {who} cannot enter {directory} (mode {stat.filemode(dst.st_mode)}, "
                        f"owner uid {dst.st_uid}, group gid {dst.st_gid})"]
            candidate = os.path.join(current, part)
            if os.path.islink(candidate):
                target = os.readlink(candidate)
                rest = "/".join(parts[i + 1:])
                joined = os.path.join(current if not target.startswith("/") else "/", target)
                todo = os.path.normpath(os.path.join(joined, rest)) if rest else os.path.normpath(joined)
                break
            current = candidate
        else:
            try:
                fst = os.stat(current)
            except OSError as exc:
                return [f"{what} {path}: {exc.strerror}"]
            if not _may(fst, uid, gids, need):
                return [f"{what} {path}: the service user may not {'run' if need & 1 else 'read'} {current} "
                        f"(mode {stat.filemode(fst.st_mode)}, owner uid {fst.st_uid}, group gid {fst.st_gid})"]
            hidden = _under(current, HIDDEN_BY_PROTECT_HOME)
            if hidden and current != path:
                problems.append(f"{what} {path} is {current}, under {hidden}, which ProtectHome=yes hides from "
                                f"the service")
            hidden = _under(current, HIDDEN_BY_PRIVATE_TMP)
            if hidden and current != path:
                problems.append(f"{what} {path} is {current}, under {hidden}, which PrivateTmp=yes replaces "
                                f"with an empty directory for the service")
            return problems


def reachability_problems(options: UnitOptions) -> list[str]:
    """Why the service user could not start the units' program under their sandbox, in words (empty: it can).

    Checked for the program and the interpreter on its `#!` line (a venv's python and what its link points at):
    under /home, /root or /run/user (ProtectHome=yes hides them), under /tmp or /var/tmp (PrivateTmp=yes), or
    a directory on the way the user may not enter, or a file it may not run. `systemd-analyze verify` misses all
    of these: it runs as root outside the sandbox."""
    opts = options.checked()
    uid, gids = _identity(opts.user, opts.group or opts.user)
    problems: list[str] = []
    programs = [("the lmcz-fast program", opts.binary)]
    interpreter = _interpreter(opts.binary)
    if interpreter is not None:
        programs.append(("its interpreter", interpreter))
    for what, path in programs:
        path = os.path.normpath(path)
        problems += _hidden(what, path)
        if not os.path.exists(path):
            problems.append(f"{what} {path} does not exist")
            continue
        problems += _walk(path, uid, gids, what, 1 if what == "its interpreter" else 5)
    seen: set[str] = set()
    return [p for p in problems if not (p in seen or seen.add(p))]


def readability_problems(options: UnitOptions) -> list[str]:
    """Why the service user could not read the files the units read and `lmcz-fast systemd` checks, in words
    (empty: it can): today the replicate unit's mapping file (`--replicate-mapping`), which `replicate` reads at
    every start. The same checks as for the program: hidden by ProtectHome=yes or PrivateTmp=yes, a directory on
    the way the user may not enter, a file it may not read (checked for the user as sysusers.d makes it when it
    does not exist yet: then only the file's "other" bits, or its group's if that group exists, let it read)."""
    opts = options.checked()
    files = [("the mapping file", opts.replicate_mapping)]
    uid, gids = _identity(opts.user, opts.group or opts.user)
    problems: list[str] = []
    for what, path in files:
        if path is None:
            continue
        path = os.path.normpath(path)
        problems += _hidden(what, path)
        if not os.path.exists(path):
            problems.append(f"{what} {path} does not exist")
            continue
        problems += _walk(path, uid, gids, what, 4)
    return problems
