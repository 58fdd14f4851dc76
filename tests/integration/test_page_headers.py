"""What the gateway and the simulator tell browsers (infra/httpserver.py `protect`): pages are
never framed, cached or sent with a referrer, run no script and take no style but their own
stylesheet; API answers are not cached or sniffed."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Mapping

import aiohttp
import pytest

from tests.conftest import wait_status
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


def assert_page_protected(page: str, headers: Mapping[str, str], own_scripts: bool = False) -> None:
    """`own_scripts`: the gateway's pages may load scripts it serves itself, never inline."""
    assert headers["Content-Type"].startswith("text/html")
    directives = (d.partition(" ") for d in headers["Content-Security-Policy"].split("; "))
    policy = {name: value for name, _, value in directives}
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy.get("script-src") == ("'self'" if own_scripts else None)
    assert "'unsafe-inline'" not in policy["style-src"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    # The page's styles are exactly what the policy allows: one <style>, no style attributes.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert all(re.fullmatch(r' src="/[^"]+" defer', a) and not b for a, b in scripts), page
    assert " style=" not in page, page
    (css,) = re.findall(r"<style>(.*?)</style>", page, re.S)
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert policy["style-src"] == f"'sha256-{digest}'"


async def test_the_cashier_page_and_api_answers_carry_the_browser_protections(
    stack: Stack, merchant, http: aiohttp.ClientSession
) -> None:
    status, created = await merchant.create_payment(
        amount="4.56", currency="USD", merchant_order_id="csp-" + secrets.token_hex(4)
    )
    assert status == 201
    async with http.get(created["checkout_url"]) as response:
        assert response.status == 200
        assert_page_protected(await response.text(), response.headers, own_scripts=True)
    async with http.get(stack.url + "/checkout/device.js") as response:
        assert response.status == 200 and response.content_type == "text/javascript"
        assert response.headers["Cache-Control"] == "public, max-age=3600"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "juheDevice" in await response.text()
    async with http.get(stack.url + "/api/v1/payments/pay_nope") as response:
        assert response.status == 401 and response.content_type == "application/json"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
        assert "Content-Security-Policy" not in response.headers
    payment = await wait_status(merchant, created["id"], {"awaiting_payment"})
    # the simulator's pay page, where the customer pays
    async with http.get(payment["pay_url"]) as response:
        assert response.status == 200
        assert_page_protected(await response.text(), response.headers)
