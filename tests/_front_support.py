"""The service in front of the official module's stand-in (tests/_official_standin.py), in a thread of the test
process: `FrontServer` is `ServerThread` with a `Front` attached on its event loop (as `serve --front` does)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from _service_support import Client, ServerThread

from lmcz_fast.front import Front, FrontConfig


class FrontServer(ServerThread):
    def __init__(self, db: Path, official_url: str, *, deadline_ms: float = 300, state_dir: Path | None = None,
                 credentials_file: Path | None = None, **kwargs: Any) -> None:
        super().__init__(db, **kwargs)
        self.front_config = FrontConfig.build(official_url, None if credentials_file is None else
                                              str(credentials_file), deadline_ms,
                                              None if state_dir is None else str(state_dir))
        self.front: Front | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.front = Front(self.front_config)
        self.front.start(self.loop)
        self.app.attach_front(self.front)
        super()._run()


def check(client: Client, codes: list[str], protocol: int = 1) -> tuple[int, dict[str, str], Any]:
    items: list[Any] = codes
    return client.request("POST", f"/api/v{protocol}/cis/outCheck", json.dumps({"cis_list": items}),
                          {"Content-Type": "application/json"})


def blocked_of(protocol: int, payload: Any) -> list[bool]:
    if protocol == 1:
        return [c["isBlocked"] for c in payload["codes"]]
    return [c["isBlocked"] for r in payload["results"] for c in r["codes"]]
