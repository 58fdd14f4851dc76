"""localstripe (a fake but stateful Stripe API) as a child process on a free port, for tests.

localstripe pickles its whole store to the fixed path /tmp/localstripe.pickle on every write,
which would mix the state of parallel test runs; so it is started through the launcher at the
bottom of this file (``python -m tests.localstripe --port N``), which turns that dump into a
no-op and always starts from scratch.

What differs from real Stripe, as far as our tests care: any ``sk_…`` key is accepted,
Idempotency-Key is ignored, there is no search API, ``description`` is refused on a payment
intent, and webhooks go to every endpoint registered through `LocalStripe.add_webhook`, about
1 s after the event and never retried.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

from tests.stack import free_port

ROOT = Path(__file__).resolve().parent.parent
STARTUP_S = 20.0

VISA = "4242424242424242"  # charged successfully
DECLINED = "4000000000000341"  # charge declined (card_declined) in localstripe and at Stripe
THREE_D_SECURE = "4000002500003155"  # needs authentication: the intent stays requires_action
# Stripe's generic decline card; localstripe declines it only when attached to a customer, so
# an intent confirmed with it succeeds there.
DECLINED_ON_ATTACH = "4000000000000002"


class LocalStripe:
    """``async with LocalStripe() as stripe:`` runs localstripe until the block ends."""

    def __init__(self, secret_key: str = "sk_test_juhe_localstripe") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret_key = secret_key
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __aexit__
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        # A file, not a pipe: nobody reads localstripe's access log while it runs, and a full
        # pipe would block it.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.localstripe", "--port", str(self.port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._session = aiohttp.ClientSession()
        try:
            await self._wait_ready()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._process is not None:
            self._process.terminate()
            try:
                await asyncio.to_thread(self._process.wait, 5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                await asyncio.to_thread(self._process.wait)
            self._process = None
        self._log.close()

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret_key}"}

    def log(self) -> str:
        """What localstripe has printed so far (its access log), for failure messages."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    async def add_webhook(self, name: str, url: str, secret: str) -> None:
        """Have every event POSTed to `url`, signed with `secret` (``Stripe-Signature``)."""
        await self.post(f"/_config/webhooks/{name}", {"url": url, "secret": secret})

    async def card_payment_method(
        self, number: str = VISA, exp_month: int = 12, exp_year: int = 2034, cvc: str = "123"
    ) -> str:
        """A ``pm_…`` id for a card, made as the customer's browser would (Stripe.js)."""
        created = await self.post(
            "/v1/payment_methods",
            {
                "type": "card",
                "card[number]": number,
                "card[exp_month]": str(exp_month),
                "card[exp_year]": str(exp_year),
                "card[cvc]": cvc,
            },
        )
        return str(created["id"])

    async def flush(self) -> None:
        """Forget every object (webhook registrations stay)."""
        async with self._client.delete(f"{self.url}/_config/data") as resp:
            resp.raise_for_status()

    @property
    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("LocalStripe is not running; use it as `async with`")
        return self._session

    async def post(self, path: str, form: dict[str, str]) -> dict[str, Any]:
        """POST a form as our secret key; the JSON answer ({} if none). Fails on 4xx/5xx."""
        async with self._client.post(f"{self.url}{path}", data=form, headers=self.auth) as resp:
            return await self._answer(path, resp)

    async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """GET as our secret key: what localstripe holds, to check an adapter's effects."""
        async with self._client.get(f"{self.url}{path}", params=params, headers=self.auth) as resp:
            return await self._answer(path, resp)

    @staticmethod
    async def _answer(path: str, resp: aiohttp.ClientResponse) -> dict[str, Any]:
        if resp.status >= 400:
            raise AssertionError(f"localstripe {path}: {resp.status} {await resp.text()}")
        if resp.content_type != "application/json":
            return {}
        answer: dict[str, Any] = await resp.json()
        return answer

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"localstripe exited at startup:\n{self.log()}")
            try:
                async with self._client.get(f"{self.url}/v1/balance", headers=self.auth) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"localstripe did not answer within {STARTUP_S} s:\n{self.log()}")


def _serve(port: int) -> None:
    """Run localstripe in this process with its store kept in memory only."""
    from localstripe import resources, server

    def keep_in_memory(self: resources.Store) -> None:
        """Replaces the dump to /tmp/localstripe.pickle that parallel runs would share."""

    resources.Store.dump_to_disk = keep_in_memory  # type: ignore[method-assign]
    sys.argv = ["localstripe", "--port", str(port), "--from-scratch"]
    server.start()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    _serve(parser.parse_args().port)
