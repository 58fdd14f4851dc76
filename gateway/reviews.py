"""The platform's reviewer lists: merchants and agents by status, with a search, for the people
who approve onboarding (and the admin portal's queues)."""

from __future__ import annotations

from aiohttp import web

from domain.access import PLATFORM_OWNED
from gateway.access import identify, require
from gateway.agents import agent_view
from gateway.merchants import MERCHANT_SQL, merchant_view
from gateway.state import edge, known_cursor, page_answer, page_limit


def _like(request: web.Request) -> str | None:
    q = request.query.get("q")
    return (
        None
        if q is None
        else "%" + q.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"
    )


async def list_merchants(request: web.Request) -> web.Response:
    e = edge(request)
    who = (await identify(request, b"")).principal
    await require(request, who, "merchants:read", PLATFORM_OWNED)
    limit = page_limit(request, 20)
    after = await known_cursor(request, e.pg, "SELECT 1 FROM merchants WHERE id = $1")
    rows = await e.pg.fetch(
        MERCHANT_SQL
        + """ WHERE ($1::text IS NULL OR m.status = $1)
                AND ($2::text IS NULL OR m.name ILIKE $2 OR m.email ILIKE $2)
                AND ($3::text IS NULL OR m.agent_id = $3)
                AND ($4::text IS NULL OR m.id < $4)
              ORDER BY m.id DESC LIMIT $5""",
        request.query.get("status"),
        _like(request),
        request.query.get("agent_id"),
        after,
        limit + 1,
    )
    return page_answer(rows, limit, merchant_view)


async def list_agents(request: web.Request) -> web.Response:
    e = edge(request)
    who = (await identify(request, b"")).principal
    await require(request, who, "agents:read", PLATFORM_OWNED)
    limit = page_limit(request, 20)
    after = await known_cursor(request, e.pg, "SELECT 1 FROM agents WHERE id = $1")
    rows = await e.pg.fetch(
        """SELECT * FROM agents
           WHERE ($1::text IS NULL OR status = $1)
             AND ($2::text IS NULL OR name ILIKE $2 OR email ILIKE $2)
             AND ($3::text IS NULL OR id < $3)
           ORDER BY id DESC LIMIT $4""",
        request.query.get("status"),
        _like(request),
        after,
        limit + 1,
    )
    return page_answer(rows, limit, agent_view)
