"""A client of a Local Module (the official one or `lmcz-fast serve`) over HTTP: `POST .../cis/outCheck`,
protocol 1 or 2."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..upstream import HttpClient, ProxyConfig


class LocalModuleError(Exception):
    """The Local Module (official or `lmcz-fast serve`) gave no usable answer.

    `kind`: "not_ready" (HTTP 400, errorCode 4045), "sync_error" (errorCode 4050: no sync within the offline limit,
    `offline_limit` when the module says it), "auth"
    (401/403), "http" (another status), "bad_response", "connect", "dropped".
    """

    def __init__(self, kind: str, message: str, *, error_code: int | None = None, status: int | None = None,
                 offline_limit: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.error_code = error_code
        self.status = status
        self.offline_limit = offline_limit     # seconds, when the module says its limit (lmcz-fast serve does)


class LocalModuleClient:
    """A client of the Local Module's `POST /api/v1/cis/outCheck` (`{"cis_list": [...]}`).

    `url` may carry the Basic-auth credentials (`http://admin:secret@127.0.0.1:5995`); otherwise `user`/`password`
    (the programmer's guide's examples use admin:admin). `client_id` is sent as `X-ClientId` (the fiscal drive
    number), as tills do. The Local Module is on the store's own network: requests go direct unless `proxy` says
    otherwise (a proxy from the environment is meant for the internet, not for 127.0.0.1). With
    `path="/api/v2/cis/outCheck"` it speaks the second protocol: each code goes as `{"cis", "pg"}` and the
    `results` envelopes of the answer are read back as one flat answer (the first envelope's `reqId`/
    `reqTimestamp`/`inst`/`version`, every envelope's `codes` in order).
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:5995",
        *,
        user: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        path: str = "/api/v1/cis/outCheck",
        http: HttpClient | None = None,
        proxy: ProxyConfig | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not a Local Module URL: {url!r}")
        netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        self.url = urlunsplit((parts.scheme, netloc, "", "", "")).rstrip("/")
        user = user if user is not None else (parts.username or "admin")
        password = password if password is not None else (parts.password or "admin")
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.client_id = client_id
        self.path = path
        self.http = http or HttpClient(proxy=proxy if proxy is not None else ProxyConfig.direct())

    def __repr__(self) -> str:
        return f"LocalModuleClient({self.url!r})"

    @property
    def protocol(self) -> int:
        return 2 if "/api/v2/" in self.path else 1

    async def check_codes(self, codes: Sequence[str], pgs: Sequence[int | None] | None = None) -> dict[str, Any]:
        headers = {"Authorization": self._auth, "Content-Type": "application/json", "Accept": "application/json"}
        if self.client_id:
            headers["X-ClientId"] = self.client_id
        items: list[Any] = list(codes)
        if self.protocol == 2:
            groups = list(pgs) if pgs is not None else [None] * len(items)
            items = [{"cis": c} if g is None else {"cis": c, "pg": g} for c, g in zip(items, groups)]
        body = json.dumps({"cis_list": items}, separators=(",", ":")).encode()
        try:
            response = await self.http.request("POST", self.url + self.path, headers=headers, body=body)
        except (ConnectionError, OSError) as exc:
            raise LocalModuleError("connect", f"{self.url}: {exc!r}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status in (401, 403):
            raise LocalModuleError("auth", f"{self.url} refused the credentials (HTTP {response.status})",
                                   status=response.status)
        if response.status != 200:
            error_code = payload.get("errorCode") if isinstance(payload, Mapping) else None
            kind = {4045: "not_ready", 4050: "sync_error"}.get(error_code, "http")  # type: ignore[arg-type]
            limit = payload.get("offlineLimit") if isinstance(payload, Mapping) else None
            raise LocalModuleError(kind, f"{self.url} answered HTTP {response.status}: {response.body[:160]!r}",
                                   error_code=error_code, status=response.status,
                                   offline_limit=float(limit) if isinstance(limit, (int, float)) and limit > 0
                                   else None)
        if self.protocol == 2 and isinstance(payload, Mapping) and isinstance(payload.get("results"), list):
            payload = _flatten_v2(payload["results"])
        if not isinstance(payload, Mapping) or not isinstance(payload.get("codes"), list):
            raise LocalModuleError("bad_response", f"{self.url} answered something that is not an outCheck "
                                   f"response: {response.body[:160]!r}")
        if payload.get("code", 0) not in (0, None):
            raise LocalModuleError("http", f"{self.url} answered code {payload.get('code')}: "
                                   f"{payload.get('description')}")
        return dict(payload)

    async def aclose(self) -> None:
        await self.http.aclose()


def _flatten_v2(results: list[Any]) -> dict[str, Any] | None:
    """A protocol-2 answer (`{"results": [envelope, ...]}`) as one v1-shaped answer, or None if malformed."""
    envelopes = [e for e in results if isinstance(e, Mapping)]
    if not envelopes or len(envelopes) != len(results) or not all(isinstance(e.get("codes"), list)
                                                                     for e in envelopes):
        return None
    bad = next((e for e in envelopes if e.get("code", 0) not in (0, None)), None)
    flat = dict(bad if bad is not None else envelopes[0])
    flat["codes"] = [code for e in envelopes for code in e["codes"]]
    return flat
