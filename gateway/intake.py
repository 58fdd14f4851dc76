"""Writing intents to Redis: each create or callback is one atomic Lua call (one round trip).

A create checks the idempotency record and the merchant-order guard, writes the hot copy the
next GET reads, appends the intent to its stream and stores the response to replay, all or
nothing. A callback is appended only the first time its (channel, event id) is seen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, WatchError

from config.settings import Gateway
from infra import redisclient
from infra.keys import CALLBACKS_STREAM, TASKS_STREAM, Keys
from infra.redispipe import RedisPipe

_CREATE = """
local has_idem = ARGV[1] == '1'
if has_idem then
  local prior = redis.call('HMGET', KEYS[1], 'fp', 'status', 'body')
  if prior[1] then return {1, prior[1], prior[2], prior[3]} end
end
local existing = redis.call('GET', KEYS[2])
if existing then return {2, existing} end
redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[4])
redis.call('HSET', KEYS[3], 'ver', 1, 'merchant', ARGV[6], 'status', 'pending',
           'amount', ARGV[7], 'currency', ARGV[8], 'channel', '', 'refund_reserved', '0',
           'doc', ARGV[9], 'intent', ARGV[10], 'gen', ARGV[11])
redis.call('EXPIRE', KEYS[3], ARGV[4])
local entry = redis.call('XADD', KEYS[4], '*', 'd', ARGV[10])
if has_idem then
  redis.call('HSET', KEYS[1], 'fp', ARGV[2], 'status', '201', 'body', ARGV[9])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return {0, entry}
"""

# KEYS[1] idempotency hash; ARGV fp, ttl, in-progress ttl → {0} taken now, or the stored
# {1, fp, status, body}; status "0" marks a request still running.
_CLAIM = """
local prior = redis.call('HMGET', KEYS[1], 'fp', 'status', 'body')
if prior[1] then return {1, prior[1], prior[2], prior[3] or ''} end
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'status', '0')
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {0}
"""
_IN_PROGRESS_TTL_S = 60

# KEYS[1] a seen-marker, KEYS[2] a stream; ARGV ttl, entry → 1 appended / 0 seen before.
_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('XADD', KEYS[2], '*', 'd', ARGV[2])
  return 1
end
return 0
"""


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


@dataclass(frozen=True, slots=True)
class RefundPlan:
    refund_id: str
    merchant_id: str
    reserved: int  # the payment's reserved refund total once this refund is taken
    doc: bytes
    intent: bytes


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    body: bytes
    fresh: bool = False  # this request did the work (not a replay of an earlier answer)


class IdempotencyConflict(Exception):
    pass


class RequestInProgress(Exception):
    """The same Idempotency-Key is being served by a request that has not finished."""


class DuplicateOrder(Exception):
    def __init__(self, payment_id: str) -> None:
        super().__init__(payment_id)
        self.payment_id = payment_id


class Scripts:
    """Lua scripts called by SHA over the gateway's pipelined connection.

    After a Redis restart lost the scripts, a call answers NOSCRIPT: it did not run, so loading
    the script and calling again cannot run a create twice.
    """

    def __init__(self, pipe: RedisPipe, sources: dict[str, str]) -> None:
        self._pipe = pipe
        self._sources = sources
        self._sha = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in sources.items()}

    async def call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        command = ("EVALSHA", self._sha[script], len(keys), *keys, *args)
        try:
            return await self._pipe.call(*command)
        except NoScriptError:
            await self._pipe.call("SCRIPT", "LOAD", self._sources[script])
            return await self._pipe.call(*command)


class Intake:
    def __init__(self, redis: Redis, pipe: RedisPipe, keys: Keys, settings: Gateway) -> None:
        self.redis = redis
        self.pipe = pipe
        self.keys = keys
        self.settings = settings
        self._scripts = Scripts(pipe, {"create": _CREATE, "once": _ONCE})
        self._claim = redis.register_script(_CLAIM)

    @staticmethod
    def _replay(reply: list[bytes], fp: str) -> Replay:
        if reply[1].decode() != fp:
            raise IdempotencyConflict
        return Replay(int(reply[2]), reply[3])

    async def create_payment(
        self,
        *,
        merchant_id: str,
        idempotency_key: str | None,
        fp: str,
        payment_id: str,
        merchant_order_id: str,
        amount: int,
        currency: str,
        doc: bytes,
        intent: bytes,
    ) -> Replay | None:
        """None when the intent was written; a Replay of the first answer for a repeated key."""
        keys = self.keys
        reply = await self._scripts.call(
            "create",
            [
                keys.idempotency(merchant_id, idempotency_key or ""),
                keys.merchant_order(merchant_id, merchant_order_id),
                keys.payment(payment_id),
                keys.stream("payments"),
            ],
            [
                "1" if idempotency_key else "0",
                fp,
                self.settings.idempotency_ttl_s,
                self.settings.hot_ttl_s,
                payment_id,
                merchant_id,
                str(amount),
                currency,
                doc,
                intent,
                self.pipe.generation,
            ],
        )
        if reply[0] == 1:
            return self._replay(reply, fp)
        if reply[0] == 2:
            raise DuplicateOrder(reply[1].decode())
        return None

    async def replicated(self, replicas: int, timeout_ms: int) -> bool:
        """Whether every write made so far (this request's included) reached `replicas`
        replicas: WAIT on the connection that made the writes."""
        return int(await self.pipe.call("WAIT", replicas, timeout_ms)) >= replicas

    async def callback(self, channel: str, event_id: str, payload: bytes) -> bool:
        """True if this event is new and now on the stream; False for a duplicate."""
        return bool(
            await self._scripts.call(
                "once",
                [self.keys.callback_seen(channel, event_id), self.keys.stream(CALLBACKS_STREAM)],
                [self.settings.callback_dedupe_ttl_s, payload],
            )
        )

    async def hand_over(self, token: str, payload: bytes) -> bool:
        """A channel task (encoded) on its way to the channel pool, once per `token`: the same
        card submitted twice (a double click) is sent once."""
        return bool(
            await self._scripts.call(
                "once",
                [self.keys.task_sent(token), self.keys.stream(TASKS_STREAM)],
                [self.settings.callback_dedupe_ttl_s, payload],
            )
        )

    async def claim(self, merchant_id: str, key: str | None, fp: str) -> Replay | None:
        """Before a non-create request with an Idempotency-Key runs: the stored answer if the key
        was used (conflict if the body differs), else the key is taken for this request so a
        concurrent duplicate gets `RequestInProgress` instead of running twice."""
        if not key:
            return None
        reply = await self._claim(
            keys=[self.keys.idempotency(merchant_id, key)],
            args=[fp, self.settings.idempotency_ttl_s, _IN_PROGRESS_TTL_S],
        )
        if reply[0] == 0:
            return None
        if reply[2] == b"0":
            if reply[1].decode() != fp:
                raise IdempotencyConflict
            raise RequestInProgress
        return self._replay(reply, fp)

    async def settle(
        self, merchant_id: str, key: str | None, fp: str, answer: Replay | None
    ) -> None:
        """After it ran: keep the answer to replay, or (None, the request failed) free the key
        so the client can try again."""
        if not key:
            return
        name = self.keys.idempotency(merchant_id, key)
        if answer is None:
            await self.redis.delete(name)
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(name, mapping={"fp": fp, "status": answer.status, "body": answer.body})
            pipe.expire(name, self.settings.idempotency_ttl_s)
            await pipe.execute()

    async def create_refund(
        self,
        *,
        scope: str,
        idempotency_key: str | None,
        fp: str,
        payment_id: str,
        plan: Callable[[dict[bytes, bytes]], RefundPlan],
    ) -> Replay:
        """Reserve the refund against the hot payment and enqueue it, atomically (WATCH/MULTI,
        retried on a concurrent change); return the answer, first or replayed. `plan` sees the
        payment's hot fields and raises to refuse. The amount check here answers fast; the
        binding check is the database's."""
        payment_key = self.keys.payment(payment_id)
        idem_key = self.keys.idempotency(scope, idempotency_key or "-")
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(payment_key, idem_key)
                    if idempotency_key:
                        prior = await pipe.hmget(idem_key, "fp", "status", "body")
                        if prior[0] is not None:
                            return self._replay([b"", *prior], fp)
                    decided = plan(await pipe.hgetall(payment_key))
                    pipe.multi()
                    pipe.hset(payment_key, "refund_reserved", str(decided.reserved))
                    refund_key = self.keys.refund(decided.refund_id)
                    pipe.hset(
                        refund_key,
                        mapping={
                            "ver": 1,
                            "merchant": decided.merchant_id,
                            "doc": decided.doc,
                            "gen": redisclient.generation(self.redis),
                        },
                    )
                    pipe.expire(refund_key, self.settings.hot_ttl_s)
                    pipe.xadd(self.keys.stream("refunds"), {"d": decided.intent})
                    if idempotency_key:
                        pipe.hset(idem_key, mapping={"fp": fp, "status": 201, "body": decided.doc})
                        pipe.expire(idem_key, self.settings.idempotency_ttl_s)
                    await pipe.execute()
                    return Replay(201, decided.doc, fresh=True)
                except WatchError:
                    continue
