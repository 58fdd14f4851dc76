"""Schemathesis against a running node, from its own OpenAPI document: every operation with
generated (valid and invalid) input, unauthenticated, as a platform superuser and as a merchant
signing its requests. No answer may be a server error, break its documented schema, use a
status code the document does not list, or carry another content type.

The node is the test's own: a superuser's generated requests change channels, settings and
users, which no other test should have to live with. Examples per operation are bounded so the
run stays within about a minute."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import hypothesis
import pytest
import pytest_asyncio
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from domain.access import Realm
from gateway.client import signed_headers
from infra.merchants import create_merchant
from tests.portal import make_user
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")
EXAMPLES = 20
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


class Signed(requests.auth.AuthBase):
    """A merchant's request signature over the exact bytes sent."""

    def __init__(self, key_id: str, secret: str) -> None:
        self.key_id, self.secret = key_id, secret

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body or b""
        raw = body.encode() if isinstance(body, str) else body
        r.headers.update(signed_headers(self.key_id, self.secret, r.method or "", r.path_url, raw))
        return r


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fuzzed() -> AsyncIterator[tuple[Stack, dict[str, requests.Session]]]:
    stack = Stack("fuzz")
    try:
        await stack.start()
        assert stack.pg is not None
        async with aiohttp.ClientSession() as http:
            admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
        shop = await create_merchant(
            stack.pg,
            stack.box,
            name="fuzzed",
            notify_url="http://127.0.0.1:9/",
            currencies=["USD"],
            fee_bps=250,
        )
        sessions = {name: requests.Session() for name in ("anonymous", "superuser", "merchant")}
        sessions["superuser"].headers["Authorization"] = f"Bearer {admin.access}"
        sessions["merchant"].auth = Signed(shop.key_id, shop.secret)
        yield stack, sessions
    finally:
        await stack.stop()


def fuzz_operation(operation: Any, session: requests.Session, failures: list[str]) -> None:
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy())
    def run(case: Any) -> None:
        response = case.call(session=session, timeout=10)
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:  # each failure is collected, the run goes on
            failures.append(f"{operation.label}: {response.status_code} {exc}"[:1500])

    run()


def fuzz(url: str, session: requests.Session) -> list[str]:
    schema = schemathesis.openapi.from_url(url + "/api/v1/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        fuzz_operation(result.ok(), session, failures)
    return failures


@pytest.mark.parametrize("caller", ["anonymous", "superuser", "merchant"])
async def test_no_server_error_and_no_schema_violation(fuzzed, caller: str) -> None:
    stack, sessions = fuzzed
    failures = await asyncio.to_thread(fuzz, stack.url, sessions[caller])
    assert not failures, "\n\n".join(failures[:15]) + f"\n\n({len(failures)} in all)"
