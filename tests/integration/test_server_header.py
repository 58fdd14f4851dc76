"""Every response of the gateway and the simulator names the server only (`Server: juhe`), never
the Python and aiohttp versions (issue 12)."""

from __future__ import annotations

import asyncio
import secrets
from urllib.parse import urlsplit

import aiohttp
import pytest

from infra.httpserver import SERVER_NAME
from tests.conftest import Receiver
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_no_response_names_versions(stack: Stack, http: aiohttp.ClientSession) -> None:
    simulator = f"http://{stack.settings.simulator.host}:{stack.settings.simulator.port}"
    for method, url, body, status in (
        ("GET", stack.url + "/healthz", None, 200),
        ("GET", stack.url + "/api/v1/openapi.json", None, 200),
        ("GET", stack.url + "/api/v1/auth/me", None, 401),
        ("POST", stack.url + "/api/v1/auth/login", b"{", 400),
        ("GET", stack.url + "/api/v1/payments/pay_nope", None, 401),
        ("GET", stack.url + "/no/such/route", None, 404),
        ("DELETE", stack.url + "/healthz", None, 405),
        ("GET", simulator + "/_sim/health", None, 200),
        ("GET", simulator + "/no/such/route", None, 404),
    ):
        async with http.request(method, url, data=body) as response:
            assert response.status == status, (url, response.status)
            assert response.headers.getall("Server") == [SERVER_NAME], url
            said = " ".join(f"{k}: {v}" for k, v in response.headers.items()).lower()
            assert "aiohttp" not in said and "python" not in said, (url, said)


async def test_a_request_that_never_reaches_the_app_names_no_versions(stack: Stack) -> None:
    """A malformed header is answered by aiohttp's parser, before any handler or signal."""
    url = urlsplit(stack.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n")
        await writer.drain()
        head = (await asyncio.wait_for(reader.read(4096), 10)).decode(errors="replace")
    finally:
        writer.close()
    assert head.startswith("HTTP/1.") and " 400 " in head.split("\r\n", 1)[0], head
    assert f"Server: {SERVER_NAME}\r\n" in head, head
    assert "aiohttp" not in head.lower(), head


async def test_juhes_own_requests_name_no_versions(merchant, receiver: Receiver) -> None:
    """Webhooks (and channel calls, from the same sessions) say `User-Agent: juhe` only."""
    _, created = await merchant.create_payment(
        amount="1.00", currency="USD", merchant_order_id="ua-" + secrets.token_hex(4)
    )
    await receiver.wait_for(merchant.merchant_id, lambda e: e["data"]["id"] == created["id"])
    assert receiver.user_agents == {SERVER_NAME}
