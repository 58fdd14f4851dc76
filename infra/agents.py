"""The agent tree, merchants' places in it, and commission policies, in PostgreSQL.

Paths are ltree values of agent ids from the top agent down (`agt_a.agt_b.agt_c`): a subtree
is `path <@ root`, an ancestor chain is `path @> leaf`, both answered by one GiST index.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from domain.commission import AgentTerms, Mode, PricingError, check_chain
from domain.fees import Rate

Conn = asyncpg.Connection | asyncpg.Pool


class TreeError(ValueError):
    pass


async def create_agent(
    conn: asyncpg.Connection,
    *,
    agent_id: str,
    name: str,
    email: str,
    parent_id: str | None,
    status: str,
    grants: list[str],
) -> asyncpg.Record:
    row = await conn.fetchrow(
        """INSERT INTO agents (id, name, email, parent_id, path, status, grants)
           SELECT $1, $2, $3, $4,
                  CASE WHEN $4::text IS NULL THEN text2ltree($1)
                       ELSE (SELECT path FROM agents WHERE id = $4) || text2ltree($1) END,
                  $5, $6
           RETURNING *""",
        agent_id,
        name,
        email,
        parent_id,
        status,
        grants,
    )
    await bump(conn)
    return row


async def agent(conn: Conn, agent_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM agents WHERE id = $1", agent_id)


async def merchant_agents(conn: Conn, merchant_id: str) -> frozenset[str]:
    """Every agent above a merchant: whoever may see its data through the tree."""
    rows = await conn.fetch(
        """SELECT a.id FROM merchants m JOIN agents d ON d.id = m.agent_id
           JOIN agents a ON a.path @> d.path WHERE m.id = $1""",
        merchant_id,
    )
    return frozenset(r["id"] for r in rows)


async def in_subtree(conn: Conn, root_id: str, agent_id: str) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM agents r, agents a
               WHERE r.id = $1 AND a.id = $2 AND a.path <@ r.path)""",
            root_id,
            agent_id,
        )
    )


async def move_subtree(conn: asyncpg.Connection, agent_id: str, new_parent_id: str) -> int:
    """Re-hang an agent and everything below it under another agent, in one statement;
    returns how many agents moved."""
    if await in_subtree(conn, agent_id, new_parent_id):
        raise TreeError("an agent cannot move under itself or its own subtree")
    moved = await conn.fetchval(
        """WITH old AS (SELECT path FROM agents WHERE id = $1),
                new AS (SELECT path FROM agents WHERE id = $2),
                moved AS (
                    UPDATE agents a SET
                        path = new.path || subpath(a.path, nlevel(old.path) - 1),
                        parent_id = CASE WHEN a.id = $1 THEN $2 ELSE a.parent_id END
                    FROM old, new WHERE a.path <@ old.path RETURNING 1)
           SELECT count(*) FROM moved""",
        agent_id,
        new_parent_id,
    )
    await bump(conn)
    return int(moved)


async def place_merchant(conn: asyncpg.Connection, merchant_id: str, agent_id: str) -> None:
    await conn.execute("UPDATE merchants SET agent_id = $2 WHERE id = $1", merchant_id, agent_id)
    await bump(conn)


# Invitations ---------------------------------------------------------------------------------


async def create_invitation(
    conn: Conn,
    *,
    invitation_id: str,
    agent_id: str,
    digest: str,
    created_by: str,
    expires_at: datetime,
) -> asyncpg.Record:
    return await conn.fetchrow(
        """INSERT INTO agent_invitations (id, agent_id, digest, created_by, expires_at)
           VALUES ($1, $2, $3, $4, $5) RETURNING *""",
        invitation_id,
        agent_id,
        digest,
        created_by,
        expires_at,
    )


async def redeem_invitation(
    conn: asyncpg.Connection, invitation_id: str, digest: str, merchant_id: str
) -> str | None:
    """Use an invitation for this merchant, once: its agent, or None if it is unknown, used or
    expired. In the registration's transaction, so a refused registration leaves it unused."""
    return await conn.fetchval(
        """UPDATE agent_invitations SET used_at = now(), merchant_id = $3
           WHERE id = $1 AND digest = $2 AND used_at IS NULL AND expires_at > now()
           RETURNING agent_id""",
        invitation_id,
        digest,
        merchant_id,
    )


# Policies ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyInput:
    currency: str
    mode: Mode
    rate: Rate
    share_bps: int = 0
    share_fixed: int = 0
    method: str = "*"


async def set_policy(
    conn: asyncpg.Connection,
    agent_id: str,
    policy: PolicyInput,
    effective_from: datetime,
    set_by: str,
) -> int:
    """A new version of the agent's policy for this method and currency; returns its version."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('juhe.commission_policies.' || $1))", agent_id
    )
    version = await conn.fetchval(
        """INSERT INTO commission_policies (agent_id, currency, mode, rate_bps, rate_fixed,
                                            share_bps, share_fixed, effective_from, version,
                                            set_by, method)
           SELECT $1, $2, $3, $4, $5, $6, $7, $8, coalesce(max(version), 0) + 1, $9, $10
           FROM commission_policies WHERE agent_id = $1 AND currency = $2 AND method = $10
           RETURNING version""",
        agent_id,
        policy.currency,
        policy.mode.value,
        policy.rate.bps,
        policy.rate.fixed,
        policy.share_bps,
        policy.share_fixed,
        effective_from,
        set_by,
        policy.method,
    )
    await bump(conn)
    return int(version)


# The most specific policy wins (method and currency before either alone before '*'), then
# the newest in force.
_MOST_SPECIFIC = "(method = '*')::int + (currency = '*')::int, effective_from DESC, version DESC"


async def policy_in_force(
    conn: Conn, agent_id: str, currency: str, method: str = "*", at: datetime | None = None
) -> asyncpg.Record | None:
    """The policy in force at `at` (now by default) for this currency and method."""
    return await conn.fetchrow(
        f"""SELECT * FROM commission_policies
            WHERE agent_id = $1 AND currency IN ($2, '*') AND method IN ($3, '*')
              AND effective_from <= coalesce($4, now())
            ORDER BY {_MOST_SPECIFIC} LIMIT 1""",
        agent_id,
        currency,
        method,
        at,
    )


async def check_merchant_price(
    conn: Conn, agent_id: str, currencies: list[str], price: Rate
) -> None:
    """Raise PricingError if the price is below the agent's own rate for any currency."""
    for currency in currencies:
        policy = await policy_in_force(conn, agent_id, currency)
        if policy is not None:
            try:
                check_chain([terms_of(policy)], price)
            except PricingError as exc:
                raise PricingError(f"{currency}: {exc}") from None


def terms_of(row: asyncpg.Record) -> AgentTerms:
    return AgentTerms(
        agent_id=row["agent_id"],
        rate=Rate(row["rate_bps"], row["rate_fixed"]),
        mode=Mode(row["mode"]),
        share_bps=row["share_bps"],
        share_fixed=row["share_fixed"],
    )


_CHAINS = f"""
SELECT k.merchant_id, k.currency, k.method, a.id AS agent_id, nlevel(a.path) AS depth, p.*
FROM unnest($1::text[], $2::text[], $3::text[]) AS k(merchant_id, currency, method)
JOIN merchants m ON m.id = k.merchant_id
JOIN agents d ON d.id = m.agent_id
JOIN agents a ON a.path @> d.path
JOIN LATERAL (
    SELECT mode, rate_bps, rate_fixed, share_bps, share_fixed
    FROM commission_policies
    WHERE agent_id = a.id AND currency IN (k.currency, '*') AND method IN (k.method, '*')
      AND effective_from <= now()
    ORDER BY {_MOST_SPECIFIC} LIMIT 1
) p ON true
ORDER BY k.merchant_id, k.currency, k.method, depth
"""


class ChainCache:
    """Merchants' agent chains with the policies in force, per currency, for the ledger.

    Every tree or policy change bumps one counter in the same transaction; a batch checks the
    counter (one tiny query) and drops the cache when it moved, so a change is in force for the
    next batch in every process. A policy that takes effect later bounds how long an entry
    lives. Agents without a policy for the currency take no part (their parent's mark-up spans
    down to the next agent that has one).
    """

    def __init__(self) -> None:
        self._version = -1
        self._chains: dict[tuple[str, str, str], tuple[AgentTerms, ...]] = {}
        self._until = 0.0

    async def chains(
        self, conn: Conn, wanted: set[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], tuple[AgentTerms, ...]]:
        """Chains by (merchant, currency, payment method or '*')."""
        if not wanted:
            return {}
        version, next_change = await conn.fetchrow(
            """SELECT (SELECT version FROM agents_version),
                      (SELECT extract(epoch FROM min(effective_from)) FROM commission_policies
                       WHERE effective_from > now())"""
        )
        if version != self._version or time.time() >= self._until:
            self._version, self._chains = version, {}
            self._until = float(next_change) if next_change is not None else float("inf")
        missing = wanted - self._chains.keys()
        if missing:
            keys = sorted(missing)
            columns = [[k[n] for k in keys] for n in range(3)]
            found: dict[tuple[str, str, str], list[AgentTerms]] = {}
            for row in await conn.fetch(_CHAINS, *columns):
                key = (row["merchant_id"], row["currency"], row["method"])
                found.setdefault(key, []).append(terms_of(row))
            for key in missing:
                self._chains[key] = tuple(found.get(key, ()))
        return {key: self._chains[key] for key in wanted}


async def bump(conn: asyncpg.Connection) -> None:
    await conn.execute("UPDATE agents_version SET version = version + 1")
