"""The hot copy of payments and refunds in Redis, for reads that must not wait on PostgreSQL.

PostgreSQL is the system of record; every committed change is copied here with the row's
version, and the copy only moves forward, so writers racing each other (or a late redelivery)
can never put an older state back.

A Redis that restarts from its append-only file may come back without its last second of
writes, so a copy can be older than its row with nothing newer on the way. Every copy therefore
records the server generation it was written under (infra.redisclient); a reader trusts only a
copy of the current generation, and otherwise reads the row and writes it back under the new one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from domain.views import payment_view, refund_view
from infra import redisclient
from infra.keys import Keys


@dataclass(frozen=True, slots=True)
class Hot:
    """Fields of a hot copy as read; `fresh` unless it was written under an earlier server
    generation (and so may have missed its latest update)."""

    values: list[bytes | None]
    fresh: bool


# KEYS[1] hash; ARGV: version, ttl, 'gen', generation, field, value, … — writes a newer version,
# or the same version again under a new generation (a copy re-warmed after a Redis restart).
_FORWARD_ONLY = """
local current = tonumber(redis.call('HGET', KEYS[1], 'ver') or '0')
local version = tonumber(ARGV[1])
if version < current then return 0 end
if version == current and redis.call('HGET', KEYS[1], 'gen') == ARGV[4] then return 0 end
redis.call('HSET', KEYS[1], 'ver', ARGV[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class HotStore:
    def __init__(self, redis: Redis, keys: Keys, public_url: str, ttl_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self._public_url = public_url
        self._ttl = ttl_s
        self._forward = redis.register_script(_FORWARD_ONLY)

    @property
    def generation(self) -> str:
        return redisclient.generation(self._redis)

    async def read(self, key: str, *fields: str) -> Hot:
        """`fields` of the copy at `key` (the first one must always be set on a copy)."""
        *values, gen = await self._redis.hmget(key, *fields, "gen")
        return Hot(values, gen is not None and gen.decode() == self.generation)

    def payment_fields(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "merchant": row["merchant_id"],
            "status": row["status"],
            "amount": str(row["amount"]),
            "currency": row["currency"],
            "channel": row.get("channel") or "",
            "refund_reserved": str(row.get("refund_reserved") or 0),
            "doc": orjson.dumps(payment_view(row, self._public_url)),
        }

    async def put_payment(self, row: Mapping[str, Any]) -> None:
        await self.put_many(payments=[row])

    async def put_refund(self, row: Mapping[str, Any]) -> None:
        await self.put_many(refunds=[row])

    async def put_many(
        self,
        payments: Sequence[Mapping[str, Any]] = (),
        refunds: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Copy committed rows in one pipelined round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for row in payments:
                await self._put(
                    pipe, self._keys.payment(row["id"]), row["version"], self.payment_fields(row)
                )
            for row in refunds:
                fields = {"merchant": row["merchant_id"], "doc": orjson.dumps(refund_view(row))}
                await self._put(pipe, self._keys.refund(row["id"]), row["version"], fields)
            await pipe.execute()

    async def _put(self, pipe: Pipeline, key: str, version: int, fields: Mapping[str, Any]) -> None:
        flat: list[Any] = ["gen", self.generation]
        for name, value in fields.items():
            flat += [name, value]
        await self._forward(keys=[key], args=[version, self._ttl, *flat], client=pipe)
