"""`serve`'s options for running in front of the official module (docs/front.md): `--front URL`,
`--front-credentials-file`, `--front-deadline`, `--front-state-dir`; one decorator and the config they make."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:   # the front (asyncio, its connection pool) loads when `serve --front` runs
    from ..front import FrontConfig

#: The front's deadline (front.DEFAULT_DEADLINE_MS) as `serve --help` shows it, stated here so that every other
#: command starts without loading the front; tests/test_cli_startup.py checks that it is the front's own.
DEFAULT_DEADLINE_MS = 300

F = TypeVar("F", bound=Callable[..., Any])


def front_options(command: F) -> F:
    """Add the front's options to a click command (they arrive as `front`, `front_credentials_file`,
    `front_deadline`, `front_state_dir`)."""
    options = [
        click.option("--front", "front", metavar="URL", default=None, envvar="LMCZ_FAST_FRONT",
                     help="Serve in front of the official Local Module listening at URL (moved off 5995, e.g. "
                          "http://127.0.0.1:5996): every check is forwarded and its answer given to the till as "
                          "it is; when it does not answer in time, or fails, the local store answers "
                          "(docs/front.md). No credentials in the URL. Env: LMCZ_FAST_FRONT."),
        click.option("--front-credentials-file", type=click.Path(dir_okay=False), default=None,
                     envvar="LMCZ_FAST_FRONT_CREDENTIALS_FILE",
                     help="File whose first line is the official module's `user:password` (its installer's "
                          "admin user) or a token [default: admin:admin, the installer's default]. "
                          "Env: LMCZ_FAST_FRONT_CREDENTIALS_FILE."),
        click.option("--front-deadline", type=click.FloatRange(1, 60000), default=DEFAULT_DEADLINE_MS,
                     show_default=True, metavar="MS",
                     help="How long a check waits for the official module before the local store answers."),
        click.option("--front-state-dir", type=click.Path(file_okay=False), default=None,
                     help="Where the front keeps the participant token of a forwarded init (mode 0600) and the "
                          "official module's last-known inst [default: DB.front next to the database]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def front_config(db: str, front: str | None, front_credentials_file: str | None, front_deadline: float,
                 front_state_dir: str | None) -> FrontConfig | None:
    """The `FrontConfig` of `serve`'s front options, None without `--front`; a click error in words."""
    if front is None:
        for name, value in (("--front-credentials-file", front_credentials_file),
                            ("--front-state-dir", front_state_dir)):
            if value is not None:
                raise click.UsageError(f"{name} is given without --front URL")
        return None
    from ..front import FrontConfig, FrontConfigError

    try:
        return FrontConfig.build(front, front_credentials_file, front_deadline,
                                 front_state_dir or os.path.normpath(db) + ".front")
    except FrontConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--front") from None
