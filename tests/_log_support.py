"""Taking one logger's messages in a test, at the logger itself."""

from __future__ import annotations

import logging


class Logged(logging.Handler):
    """The messages of one logger, taken at the logger itself: `sync` run in this process (CliRunner) stops its
    loggers from propagating to the root, where pytest's caplog listens."""

    def __init__(self, name: str, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.logger = logging.getLogger(name)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.messages)

    def __enter__(self) -> Logged:
        self.saved = self.logger.level
        self.logger.setLevel(min(self.level, self.saved or logging.WARNING))
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.saved)
