"""Alerts for operators: a JSON POST to the ops webhook named in the config (a chat or paging
bridge), besides the log line and the Prometheus counter every alert also has. Sending never
blocks the work that raised it for long and never fails it."""

from __future__ import annotations

import logging
import time
from typing import Any

import aiohttp

log = logging.getLogger("juhe.alerts")


class OpsAlerts:
    def __init__(self, http: aiohttp.ClientSession, url: str, timeout_ms: int) -> None:
        self._http = http
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)

    async def send(self, kind: str, **detail: Any) -> bool:
        """True if the webhook took it; False if none is configured or it failed."""
        if not self._url:
            return False
        body = {"type": kind, "at": int(time.time()), "detail": detail}
        try:
            async with self._http.post(self._url, json=body, timeout=self._timeout) as response:
                return response.status < 300
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("ops alert not delivered", extra={"kind": kind, "error": str(exc)})
            return False
