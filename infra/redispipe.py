"""One Redis connection that pipelines by event-loop tick: the gateway's hot path.

Every command issued during one tick is packed by hiredis and goes out in a single write at the
end of the tick; hiredis's reader parses the replies and hands them to the waiting futures in
order. On the create and callback paths redis-py's pipeline machinery (a task per flush, a retry
wrapper and a timeout context per reply) cost about 15 % of the gateway's CPU.

Because every write goes over this one connection, a `WAIT` sent on it covers all of them,
which is what `replicated` durability needs (WAIT counts only its own connection's writes).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from infra import redisclient

CONNECT_TIMEOUT_S = 5.0


def _reply_error(error: hiredis.ReplyError) -> Exception:
    message = str(error)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)


class RedisPipe(asyncio.Protocol):
    """Commands from any number of coroutines, answered in order on one connection.

    A lost connection fails every unanswered command with redis-py's ConnectionError (whether
    it ran is unknown, as with any client); the next command connects again.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
        self._parts = parts
        where = {"path": parts.path} if parts.scheme == "unix" else {}
        self._address = redisclient.address(
            where or {"host": parts.hostname or "127.0.0.1", "port": parts.port or 6379}
        )
        self._transport: asyncio.Transport | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._outgoing: list[bytes] = []
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._reader = hiredis.Reader()
        self._closed = False

    def call(self, *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self._closed:
            future.set_exception(RedisConnectionError("the Redis pipe is closed"))
            return future
        if not self._outgoing:
            loop.call_soon(self._send)
        self._outgoing.append(hiredis.pack_command(args))
        self._waiting.append(future)
        return future

    def _send(self) -> None:
        if self._transport is None:
            if self._connecting is None:
                self._connecting = asyncio.ensure_future(self._connect())
            return
        if self._outgoing:
            self._transport.write(b"".join(self._outgoing))
            self._outgoing = []

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        parts = self._parts
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                if parts.scheme == "unix":
                    await loop.create_unix_connection(lambda: self, parts.path)
                else:
                    await loop.create_connection(
                        lambda: self,
                        parts.hostname or "127.0.0.1",
                        parts.port or 6379,
                        ssl=ssl.create_default_context() if parts.scheme == "rediss" else None,
                    )
        except (OSError, TimeoutError) as exc:
            self._fail_all(RedisConnectionError(f"cannot connect to Redis: {exc}"))
        finally:
            self._connecting = None

    def _handshake(self) -> list[tuple[Any, ...]]:
        parts, commands = self._parts, []
        if parts.password:
            user = unquote(parts.username) if parts.username else "default"
            commands.append(("AUTH", user, unquote(parts.password)))
        db = parts.path.strip("/") if parts.scheme != "unix" else ""
        if db and db != "0":
            commands.append(("SELECT", int(db)))
        commands.append(("INFO", "server"))
        return commands

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._reader = hiredis.Reader()
        # The handshake goes first; its replies are checked like any other command's.
        loop = asyncio.get_running_loop()
        handshake = self._handshake()
        for command in reversed(handshake):
            future = loop.create_future()
            future.add_done_callback(self._check_handshake)
            if command[0] == "INFO":
                future.add_done_callback(self._learn_generation)
            self._waiting.appendleft(future)
            self._outgoing.insert(0, hiredis.pack_command(command))
        self._send()

    def _learn_generation(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            redisclient.learn_generation(self._address, future.result())

    @property
    def generation(self) -> str:
        """The server's generation as of this process's latest connection (infra.redisclient)."""
        return redisclient.generation_at(self._address)

    def _check_handshake(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None and self._transport:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                future = self._waiting.popleft()
                if future.done():
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(_reply_error(reply))
                else:
                    future.set_result(reply)
        except hiredis.ProtocolError as exc:
            self._fail_all(RedisConnectionError(f"Redis protocol error: {exc}"))
            if self._transport:
                self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail_all(RedisConnectionError(f"lost the Redis connection: {exc or 'closed'}"))

    def _fail_all(self, error: Exception) -> None:
        waiting, self._waiting, self._outgoing = self._waiting, deque(), []
        for future in waiting:
            if not future.done():
                future.set_exception(error)

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._transport is not None:
            self._transport.close()
        self._fail_all(RedisConnectionError("the Redis pipe is closed"))
