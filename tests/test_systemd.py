"""The shipped systemd units: rendered from the package's templates, checked by `systemd-analyze verify` (Debian's
systemd; it needs the ExecStart program to exist, so the units point at the installed lmcz-fast), hardened, and
with command lines the CLI accepts."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from lmcz_fast.cli import main
from lmcz_fast.units import UnitOptions, install, quote, reachability_problems, readability_problems, render

LMCZ = shutil.which("lmcz-fast", path=os.path.dirname(sys.executable)) or shutil.which("lmcz-fast")
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (.ci/run installs "
                                                           "Debian's systemd package)")


#: A program every user may run, outside the directories the units' sandbox hides (the system's shell).
REACHABLE = os.path.realpath("/bin/sh")


def options(**kw) -> UnitOptions:
    assert LMCZ is not None
    return UnitOptions(binary=os.path.abspath(LMCZ), **kw)


def directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out.setdefault(name, []).append(value)
    return out


def verify(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, "verify", *map(str, paths)], capture_output=True, text=True, timeout=60)


def our_complaints(result: subprocess.CompletedProcess[str], paths: list[Path]) -> list[str]:
    names = {p.name for p in paths}
    return [line for line in (result.stdout + result.stderr).splitlines() if any(n in line for n in names)]


@needs_analyze
def test_units_pass_systemd_analyze_verify(tmp_path):
    files = render(options(feed_url="https://feed.example/lmcz/", proxy="http://proxy.shop.local:3128",
                           proxy_auth_file="/etc/lmcz-fast/proxy.auth", password_file="/etc/lmcz-fast/password"))
    written = install(files, tmp_path / "units", tmp_path / "sysusers", tmp_path / "tmpfiles")
    units = [p for p in written if p.suffix in (".service", ".timer")]
    assert sorted(p.name for p in units) == ["lmcz-fast-serve.service", "lmcz-fast-sold-export.service",
                                             "lmcz-fast-sold-export.timer", "lmcz-fast-sync.service"]
    result = verify(units)
    assert result.returncode == 0 and our_complaints(result, units) == [], result.stdout + result.stderr


@needs_analyze
def test_verify_would_catch_a_broken_unit(tmp_path):
    """The check above can fail: a misspelt directive, a bad value or a missing program is reported."""
    text = render(options())["lmcz-fast-serve.service"]
    broken = tmp_path / "lmcz-fast-serve.service"
    broken.write_text(text.replace("ProtectSystem=strict", "ProtectSystem=stricter")
                      .replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    complaints = our_complaints(verify([broken]), [broken])
    assert any("protect system" in c.lower() for c in complaints) and any("NoNewPrivilege" in c for c in complaints)
    missing = tmp_path / "lmcz-fast-sync.service"
    missing.write_text(render(UnitOptions(binary="/nonexistent/lmcz-fast"))["lmcz-fast-sync.service"])
    result = verify([missing])
    assert result.returncode != 0 and "not executable" in result.stdout + result.stderr


def test_hardening_user_paths_and_restart(tmp_path):
    files = render(options(db="/srv/lmcz/store.db", audit_dir="/var/log/lmcz-fast/audit", user="lmcz",
                           feed_url="https://feed.example/"))
    for name in ("lmcz-fast-serve.service", "lmcz-fast-sync.service"):
        d = directives(files[name])
        assert d["User"] == ["lmcz"] and d["Group"] == ["lmcz"] and d["Restart"] == ["always"]
        assert d["ReadWritePaths"] == ["/srv/lmcz /var/log/lmcz-fast/audit"]
        for key, value in (("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"), ("PrivateTmp", "yes"),
                           ("ProtectHome", "yes"), ("CapabilityBoundingSet", ""), ("AmbientCapabilities", ""),
                           ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
                           ("WantedBy", "multi-user.target")):
            assert d[key] == [value], (name, key)
    serve = directives(files["lmcz-fast-serve.service"])
    # serve speaks sd_notify (READY=1 once listening) and reloads its password file on SIGHUP
    assert serve["Type"] == ["notify"] and serve["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert directives(files["lmcz-fast-sync.service"])["Type"] == ["simple"]
    sync = directives(files["lmcz-fast-sync.service"])
    assert sync["Nice"] == ["10"] and "--nice 0" in sync["ExecStart"][0]
    assert files["lmcz-fast.sysusers.conf"].splitlines()[-1] == \
        'u lmcz - "lmcz-fast blocklist service" /srv/lmcz -'
    assert files["lmcz-fast.tmpfiles.conf"].splitlines()[-2:] == [
        "d /srv/lmcz 0750 lmcz lmcz -", "d /var/log/lmcz-fast/audit 0750 lmcz lmcz -"]
    # the audit log inside the store's directory needs no second writable path
    assert directives(render(options())["lmcz-fast-serve.service"])["ReadWritePaths"] == ["/var/lib/lmcz-fast"]


def test_exec_start_command_lines_are_accepted_by_the_cli(tmp_path):
    files = render(options(feed_url="https://feed.example/", proxy="http://proxy.local:3128",
                           proxy_auth_file="/etc/lmcz-fast/proxy.auth", password_file="/etc/lmcz-fast/password"))
    for name in ("lmcz-fast-serve.service", "lmcz-fast-sync.service", "lmcz-fast-sold-export.service"):
        words = shlex.split(directives(files[name])["ExecStart"][0])
        assert words[0] == os.path.abspath(LMCZ)
        result = CliRunner().invoke(main, [*words[1:], "--help"])  # an unknown option would fail to parse
        assert result.exit_code == 0, (name, result.output)


def test_quoting_of_odd_paths():
    assert quote("/var/lib/lmcz-fast/store.db") == "/var/lib/lmcz-fast/store.db"
    assert quote("/srv/my store/db") == '"/srv/my store/db"'
    assert quote("/srv/100%/db") == "/srv/100%%/db"  # % starts a specifier in unit files
    assert quote('/srv/a"b$c') == '"/srv/a\\"b$$c"'
    text = render(options(db="/srv/my store/db.lmdb"))["lmcz-fast-serve.service"]
    assert 'serve "/srv/my store/db.lmdb" ' in text and 'ReadWritePaths="/srv/my store"' in text


def test_bad_options_are_refused_with_the_cause():
    with pytest.raises(ValueError, match="absolute path"):
        render(options(db="store.db"))
    with pytest.raises(ValueError, match="user or group name"):
        render(options(user="Root Admin"))
    result = CliRunner().invoke(main, ["systemd", "--db", "relative/store.db"])
    assert result.exit_code == 2 and "absolute path" in result.stderr and "Traceback" not in result.output


def test_systemd_command_prints_and_installs(tmp_path):
    printed = CliRunner().invoke(main, ["systemd", "--feed", "https://feed.example/", "--bin", LMCZ, "--force"])
    assert printed.exit_code == 0 and "# ---- lmcz-fast-serve.service" in printed.stdout
    assert f"ExecStart={os.path.abspath(LMCZ)} sync /var/lib/lmcz-fast/store.db --every 2h" in printed.stdout
    args = ["systemd", "--install", str(tmp_path / "units"), "--sysusers-dir", str(tmp_path / "users"),
            "--tmpfiles-dir", str(tmp_path / "dirs"), "--prefix", "lmcz-test", "--bin", REACHABLE]
    installed = CliRunner().invoke(main, args)
    assert installed.exit_code == 0, installed.output
    assert sorted(p.name for p in (tmp_path / "units").iterdir()) == [
        "lmcz-test-serve.service", "lmcz-test-sold-export.service", "lmcz-test-sold-export.timer",
        "lmcz-test-sync.service"]
    assert (tmp_path / "users" / "lmcz-test.conf").exists() and (tmp_path / "dirs" / "lmcz-test.conf").exists()
    assert "Wants=lmcz-test-sync.service" in (tmp_path / "units" / "lmcz-test-serve.service").read_text()
    assert ("systemctl enable --now lmcz-test-sync.service lmcz-test-serve.service lmcz-test-sold-export.timer"
            in installed.stdout)


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is not installed")
def test_sysusers_file_creates_the_user(tmp_path):
    conf = tmp_path / "lmcz-fast.conf"
    conf.write_text(render(options())["lmcz-fast.sysusers.conf"])
    result = subprocess.run(["systemd-sysusers", "--dry-run", f"--root={tmp_path / 'root'}", str(conf)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "Creating user 'lmcz-fast'" in result.stdout + result.stderr


@needs_analyze
def test_a_replicating_store_gets_a_replicate_unit(tmp_path):
    files = render(options(replicate_source="http://127.0.0.1:5984", source_credentials_file="/etc/lmcz-fast/couch.cred",
                           proxy="http://proxy.shop.local:3128", password_file="/etc/lmcz-fast/password"))
    assert "lmcz-fast-sync.service" not in files           # one unit keeps the store current
    replicate = directives(files["lmcz-fast-replicate.service"])
    words = shlex.split(replicate["ExecStart"][0])
    assert words[1:5] == ["replicate", "/var/lib/lmcz-fast/store.db", "--source", "http://127.0.0.1:5984"]
    assert "--follow" in words and "--credentials-file" in words and replicate["Nice"] == ["10"]
    result = CliRunner().invoke(main, [*words[1:], "--help"])
    assert result.exit_code == 0, result.output
    assert directives(files["lmcz-fast-serve.service"])["Wants"] == ["lmcz-fast-replicate.service"]
    written = install(files, tmp_path / "units", tmp_path / "sysusers", tmp_path / "tmpfiles")
    units = [p for p in written if p.suffix == ".service"]
    result = verify(units)
    assert result.returncode == 0 and our_complaints(result, units) == [], result.stdout + result.stderr


def _script(path: Path, interpreter: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{interpreter}\nprint('lmcz-fast')\n")
    path.chmod(0o755)
    return path


def test_a_program_the_service_cannot_reach_is_refused(tmp_path):
    """A venv in a home directory (ProtectHome=yes), under /tmp (PrivateTmp=yes) or behind a directory of mode 0700
    passes `systemd-analyze verify` but can never start: `lmcz-fast systemd` refuses it, `--force` warns loudly."""
    assert reachability_problems(UnitOptions(binary=REACHABLE)) == []
    in_tmp = _script(tmp_path / "venv" / "bin" / "lmcz-fast", REACHABLE)
    problems = reachability_problems(UnitOptions(binary=str(in_tmp)))
    assert any("PrivateTmp=yes" in p for p in problems), problems
    # a script whose interpreter lives in a home directory
    in_home = "/" + "root/.venv/bin/python3"      # root's home (spelt so: not a path of the machine that wrote it)
    home = _script(tmp_path / "other" / "lmcz-fast", in_home)
    assert any(f"its interpreter {in_home} is under /root, which ProtectHome=yes" in p
               for p in reachability_problems(UnitOptions(binary=str(home)))), home
    # mode bits along the way, for a user that does not exist yet (made later by systemd-sysusers)
    base = Path(tempfile.mkdtemp(prefix="lmcz-reach-"))   # pytest's own temporary root is mode 0700 itself
    try:
        base.chmod(0o755)
        closed = base / "closed"
        _script(closed / "bin" / "lmcz-fast", REACHABLE)
        closed.chmod(0o700)
        problems = reachability_problems(UnitOptions(binary=str(closed / "bin" / "lmcz-fast"),
                                                     user="lmcz-nobody-here"))
        closed.chmod(0o755)
        opened = reachability_problems(UnitOptions(binary=str(closed / "bin" / "lmcz-fast"),
                                                   user="lmcz-nobody-here"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert not any("cannot enter" in p for p in opened), opened
    assert any(f"cannot enter {closed}" in p and "drwx------" in p for p in problems), problems
    refused = CliRunner().invoke(main, ["systemd", "--bin", str(in_tmp)])
    assert refused.exit_code == 2 and "PrivateTmp=yes" in refused.stderr and "/opt/lmcz-fast" in refused.stderr
    assert "ExecStart" not in refused.stdout
    forced = CliRunner().invoke(main, ["systemd", "--bin", str(in_tmp), "--force"])
    assert forced.exit_code == 0 and "WARNING" in forced.stderr and "WILL FAIL TO START" in forced.stderr
    assert f"ExecStart={in_tmp} serve" in forced.stdout


@needs_analyze
def test_the_daily_sold_export_timer_verifies_and_its_command_keeps_n_exports(tmp_path):
    files = render(options(sold_keep=3))
    timer = directives(files["lmcz-fast-sold-export.timer"])
    assert timer["OnCalendar"] == ["daily"] and timer["Unit"] == ["lmcz-fast-sold-export.service"]
    service = directives(files["lmcz-fast-sold-export.service"])
    words = shlex.split(service["ExecStart"][0])
    assert words[1:] == ["sold", "export", "/var/lib/lmcz-fast/store.db", "--to-dir",
                         "/var/lib/lmcz-fast/sold-export", "--keep", "3"]
    assert service["ReadWritePaths"] == ["/var/lib/lmcz-fast"] and service["Type"] == ["oneshot"]
    written = install(files, tmp_path / "units", tmp_path / "sysusers", tmp_path / "tmpfiles")
    units = [p for p in written if p.name.startswith("lmcz-fast-sold-export")]
    result = verify(units)
    assert result.returncode == 0 and our_complaints(result, units) == [], result.stdout + result.stderr
    # the command itself, on a real store, four "days" running: the newest three stay
    from lmcz_fast import Blocklist
    db = tmp_path / "store.db"
    with Blocklist.create(db) as bl:
        bl.sold.record(["0104650000000010215abcdef"])
    exports = tmp_path / "sold-export"
    exports.mkdir()
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        (exports / f"sold-{day}.jsonl").write_text("{}\n")
    ran = subprocess.run([LMCZ, "sold", "export", str(db), "--to-dir", str(exports), "--keep", "3"],
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    names = sorted(p.name for p in exports.iterdir())
    assert len(names) == 3 and "sold-2026-01-01.jsonl" not in names and not any(n.endswith(".part") for n in names)
    newest = exports / names[-1]
    assert '"count": 1' in newest.read_text().splitlines()[0]


@needs_analyze
def test_the_serve_unit_learns_the_front(tmp_path):
    """`lmcz-fast systemd --front URL ...` (docs/front.md): the serve unit runs `serve --front` with the official
    module's login file and deadline; the command parses and the units verify; credentials in the URL are refused."""
    files = render(options(front="http://127.0.0.1:5996", front_credentials_file="/etc/lmcz-fast/lm-admin",
                           front_deadline=250, password_file="/etc/lmcz-fast/password"))
    words = shlex.split(directives(files["lmcz-fast-serve.service"])["ExecStart"][0])
    at = words.index("--front")
    assert words[at:at + 6] == ["--front", "http://127.0.0.1:5996", "--front-credentials-file",
                                "/etc/lmcz-fast/lm-admin", "--front-deadline", "250"]
    result = CliRunner().invoke(main, [*words[1:], "--help"])
    assert result.exit_code == 0, result.output
    written = install(files, tmp_path / "units", tmp_path / "sysusers", tmp_path / "tmpfiles")
    units = [p for p in written if p.suffix == ".service"]
    result = verify(units)
    assert result.returncode == 0 and our_complaints(result, units) == [], result.stdout + result.stderr
    with pytest.raises(ValueError, match="credentials"):
        render(options(front="http://admin:admin@127.0.0.1:5996"))
    printed = CliRunner().invoke(main, ["systemd", "--bin", LMCZ, "--force", "--front", "http://127.0.0.1:5996"])
    assert printed.exit_code == 0 and "--front http://127.0.0.1:5996" in printed.stdout


GOOD_MAPPING = """\
[codes]
database = "marks"
code = "payload.mark"

[gtins]
database = "blocked_gtin"
"""


@needs_analyze
def test_the_replicate_unit_takes_a_mapping_file(tmp_path):
    """`lmcz-fast systemd --replicate-source URL --replicate-mapping FILE`: the replicate unit runs `replicate
    --mapping FILE` (the command parses, the units verify); a malformed file is refused now with the error `replicate
    --mapping` gives (not at the unit's every start), and so is a file the service user could not read under the
    sandbox (--force: a warning); the option without --replicate-source is refused."""
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(GOOD_MAPPING)
    files = render(options(replicate_source="http://127.0.0.1:5984", replicate_mapping=str(mapping),
                           source_credentials_file="/etc/lmcz-fast/couch.cred"))
    words = shlex.split(directives(files["lmcz-fast-replicate.service"])["ExecStart"][0])
    assert words[words.index("--mapping") + 1] == str(mapping)
    result = CliRunner().invoke(main, [*words[1:], "--help"])
    assert result.exit_code == 0, result.output
    written = install(files, tmp_path / "units", tmp_path / "sysusers", tmp_path / "tmpfiles")
    units = [p for p in written if p.suffix == ".service"]
    result = verify(units)
    assert result.returncode == 0 and our_complaints(result, units) == [], result.stdout + result.stderr
    with pytest.raises(ValueError, match="--replicate-source"):
        render(options(replicate_mapping=str(mapping)))
    with pytest.raises(ValueError, match="absolute path"):
        render(options(replicate_source="http://127.0.0.1:5984", replicate_mapping="mapping.toml"))

    base = ["systemd", "--bin", REACHABLE, "--replicate-source", "http://127.0.0.1:5984"]
    # a malformed mapping: the same error as `replicate --mapping`, exit 2, nothing printed or written; --force
    # does not let it through
    broken = tmp_path / "broken.toml"
    broken.write_text('[codes]\ndatabase = "marks"\ncolumn = "cis"\n')
    replicated = CliRunner().invoke(main, ["replicate", str(tmp_path / "store.db"), "--source",
                                           "http://127.0.0.1:5984", "--mapping", str(broken)])
    said = [line for line in replicated.stderr.splitlines() if line.startswith("Error: ")]
    assert replicated.exit_code == 2 and len(said) == 1 and "unknown key codes.column" in said[0], replicated.output
    for extra in ([], ["--force"]):
        refused = CliRunner().invoke(main, [*base, "--replicate-mapping", str(broken), *extra,
                                            "--install", str(tmp_path / "refused")])
        assert refused.exit_code == 2 and said[0] in refused.stderr.splitlines(), refused.output
        assert not (tmp_path / "refused").exists()
    missing = CliRunner().invoke(main, [*base, "--replicate-mapping", str(tmp_path / "none.toml")])
    assert missing.exit_code == 2 and "cannot read the mapping file" in missing.stderr

    # a good one where the service cannot read it (pytest's temporary directory is under /tmp: PrivateTmp=yes)
    refused = CliRunner().invoke(main, [*base, "--replicate-mapping", str(mapping)])
    assert refused.exit_code == 2 and "ExecStart" not in refused.stdout, refused.output
    assert f"the mapping file {mapping} is under /tmp, which PrivateTmp=yes" in refused.stderr
    assert "/etc/lmcz-fast/mapping.toml" in refused.stderr and "--bin" not in refused.stderr
    forced = CliRunner().invoke(main, [*base, "--replicate-mapping", str(mapping), "--force"])
    assert forced.exit_code == 0 and "WILL FAIL TO START" in forced.stderr
    assert f"--mapping {mapping}" in forced.stdout


def test_a_mapping_file_the_service_user_cannot_read_is_named():
    """The mapping file's mode bits and directories, for a user that does not exist yet (made by sysusers.d later:
    only "other" bits let it in), and a file anyone may read outside the hidden directories (no problem)."""
    assert readability_problems(UnitOptions(binary=REACHABLE, replicate_source="http://127.0.0.1:5984",
                                            replicate_mapping=REACHABLE)) == []
    assert readability_problems(UnitOptions(binary=REACHABLE)) == []
    base = Path(tempfile.mkdtemp(prefix="lmcz-mapping-"))
    try:
        base.chmod(0o755)
        mapping = base / "etc" / "mapping.toml"
        mapping.parent.mkdir()
        mapping.write_text(GOOD_MAPPING)

        def problems() -> list[str]:
            return readability_problems(UnitOptions(binary=REACHABLE, replicate_source="http://127.0.0.1:5984",
                                                    replicate_mapping=str(mapping), user="lmcz-nobody-here"))

        mapping.chmod(0o600)
        private = problems()
        mapping.chmod(0o644)
        mapping.parent.chmod(0o700)
        closed = problems()
        mapping.parent.chmod(0o755)
        readable = problems()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert any(f"may not read {mapping}" in p and "-rw-------" in p for p in private), private
    assert any(f"cannot enter {mapping.parent}" in p for p in closed), closed
    assert not any("may not read" in p or "cannot enter" in p for p in readable), readable
    assert any("PrivateTmp=yes" in p for p in readable), readable     # mkdtemp is under /tmp
