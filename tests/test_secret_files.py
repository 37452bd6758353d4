"""Password files as operators write them (issue 18, minor): a UTF-8 BOM, a CR, trailing spaces are not part of the
password, and a file other users can read or change gets a warning. Against the real `serve`."""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

import pytest
from _raw_http import _connect, _read_response
from _service_support import USER, ServeProcess, make_db

from lmcz_fast.secret_files import first_line
from lmcz_fast.upstream import read_auth_file


def _status(port: int, user: str, password: str) -> int:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    with _connect(port) as sock:
        sock.sendall(f"GET /api/v1/status HTTP/1.1\r\nHost: lm\r\nAuthorization: Basic {token}\r\n\r\n".encode())
        return _read_response(sock, bytearray())[0]


@pytest.mark.parametrize("content", [b"\xef\xbb\xbfs3cret-Pa55\n", b"s3cret-Pa55  \r\n", b"s3cret-Pa55\t \n",
                                     b"\xef\xbb\xbfs3cret-Pa55 \r\nsecond line\n"])
def test_the_password_is_the_line_as_meant(tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "password"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with caplog.at_level(logging.WARNING):
        assert first_line(path, "password file") == "s3cret-Pa55"
    assert not caplog.records


def test_leading_spaces_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text(" s3cret\n")
    os.chmod(path, 0o600)
    assert first_line(path) == " s3cret"


@pytest.mark.parametrize("mode,warned", [(0o600, False), (0o400, False), (0o640, True), (0o644, True),
                                         (0o666, True), (0o602, True)])
def test_a_file_others_may_read_or_change_is_warned_about(tmp_path: Path, mode: int, warned: bool,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "password"
    path.write_text("s3cret\n")
    os.chmod(path, mode)
    with caplog.at_level(logging.WARNING):
        first_line(path, "password file")
    messages = [r.getMessage() for r in caplog.records]
    assert bool(messages) == warned, messages
    if warned:
        assert f"{stat.S_IMODE(mode):04o}" in messages[0] and "chmod 600" in messages[0]


def test_proxy_credentials_file_is_read_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "proxy"
    path.write_bytes(b"\xef\xbb\xbfuser:pa:ss  \r\n")
    os.chmod(path, 0o600)
    assert read_auth_file(path) == ("user", "pa:ss")


def test_serve_takes_the_password_without_bom_and_spaces_and_warns_of_a_world_writable_file(tmp_path: Path) -> None:
    """Before: the BOM and the trailing spaces were part of the password, so the till's right password got 401,
    and a world-writable password file (anyone could set the password) went unremarked."""
    db = make_db(tmp_path / "store.db", [])
    path = tmp_path / "password"
    path.write_bytes(b"\xef\xbb\xbfs3cret-Pa55  \r\n")
    os.chmod(path, 0o666)
    with ServeProcess(db, password_file=path) as serve:
        assert _status(serve.port, USER, "s3cret-Pa55") == 200
        assert _status(serve.port, USER, "s3cret-Pa55  ") == 401
        assert any("password file" in line and "0666" in line for line in serve.log), "".join(serve.log)
