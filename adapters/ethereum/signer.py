"""The adapter's side of the hot-wallet signer (signer/): asks it to sign a transfer, and
which address its wallet is. The signer answers 422 with a code for what it will not sign."""

from __future__ import annotations

from typing import Any

import aiohttp

from adapters.base import ChannelTransientError


class SignerRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class SignerClient:
    def __init__(self, url: str, token: str, session: aiohttp.ClientSession) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.session = session
        self._wallet: str | None = None

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            async with self.session.request(
                method, self.url + path, json=body, headers=self.headers
            ) as response:
                answer = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise ChannelTransientError(
                "signer_unavailable", f"the signer did not answer ({type(exc).__name__})"
            ) from exc
        if status == 200:
            return answer
        if status in (400, 401, 422):
            error = answer.get("error", {}) if isinstance(answer, dict) else {}
            raise SignerRefused(error.get("code", "signer_refused"), error.get("message", ""))
        raise ChannelTransientError("signer_unavailable", f"the signer answered {status}")

    async def wallet(self) -> str:
        """The hot wallet's address, asked once."""
        if self._wallet is None:
            self._wallet = str((await self._call("GET", "/v1/address"))["address"])
        return self._wallet

    async def sign(self, transfer: dict[str, Any]) -> tuple[str, str]:
        """(raw transaction, hash) of the transfer, signed."""
        answer = await self._call("POST", "/v1/transfers", transfer)
        return str(answer["raw"]), str(answer["hash"])

    async def sweep(self, sweep: dict[str, Any]) -> tuple[str, str]:
        """(raw transaction, hash) of a deposit's tokens to the hot wallet, signed with the
        deposit's key (which only the signer derives)."""
        answer = await self._call("POST", "/v1/sweeps", sweep)
        return str(answer["raw"]), str(answer["hash"])
