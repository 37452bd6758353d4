"""Several organisations' test helpers (`serve --organisations FILE`): the file, a till of one organisation, a POST."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _service_support import Client, auth_header

JSON = {"Content-Type": "application/json"}


def inn_of(number: int) -> str:
    return f"77{number:08d}"


def write_organisations(directory: Path, count: int, *, first: int = 0, extra: str = "") -> Path:
    """An organisations file of `count` organisations (INN 77000000NN, user uNN, password pw-NN), its secret files
    beside it (mode 600)."""
    directory.mkdir(parents=True, exist_ok=True)
    tables = []
    for number in range(first, first + count):
        secret = directory / f"password-{number}"
        secret.write_text(f"pw-{number}\n")
        secret.chmod(0o600)
        tables.append(f'[[organisation]]\ninn = "{inn_of(number)}"\nname = "Организация {number}"\nuser = "u{number}"\n'
                      f'password_file = "password-{number}"\n{extra if number == first else ""}\n')
    path = directory / "organisations.toml"
    path.write_text("".join(tables), encoding="utf-8")
    return path


def org_client(port: int, number: int) -> Client:
    return Client(port, auth=auth_header(f"u{number}", f"pw-{number}"))


def post(client: Client, path: str, payload: Any) -> tuple[int, Any]:
    status, _, body = client.request("POST", path, json.dumps(payload), JSON)
    return status, body
