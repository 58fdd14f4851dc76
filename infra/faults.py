"""Which failures an item carries with it, and which retrying can cure.

A pool or the relay that cannot tell the two apart either loops forever on a value the database
refuses (stopping everyone's work behind it) or dead-letters good work during a short outage.
`classify` gives every exception one of three answers:

- `TRANSIENT`: the service, not the item (a connection, a timeout, a restart, a serialization
  conflict): keep the work and try again later, never dead-letter it for this.
- `DATA`: the item itself is refused (a value a column cannot hold, a check it breaks): retrying
  it changes nothing; isolate it, set it aside with its error, and let the rest go on.
- `UNKNOWN`: anything else (a bug, most likely): isolate it and give it a few tries.
"""

from __future__ import annotations

import asyncio
import enum
import logging

import aiohttp
import aiormq.exceptions
import asyncpg.exceptions as pg
import msgspec
import redis.exceptions

from adapters.base import ChannelTransientError

log = logging.getLogger("juhe.faults")


class Fault(enum.Enum):
    TRANSIENT = "transient"
    DATA = "data"
    UNKNOWN = "unknown"


_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable; also ConnectionError subclasses
    TimeoutError,
    asyncio.TimeoutError,
    pg.PostgresConnectionError,  # class 08
    pg.InterfaceError,  # the connection was closed under us
    pg.InsufficientResourcesError,  # class 53: too many connections, disk full, out of memory
    pg.OperatorInterventionError,  # class 57: shutdown, restart, statement timeout
    pg.TransactionRollbackError,  # class 40: serialization failure, deadlock
    redis.exceptions.ConnectionError,  # includes a busy (loading) server and an empty pool
    redis.exceptions.TimeoutError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiohttp.ClientConnectionError,
    ChannelTransientError,  # the channel's own outage, after the adapter's retries
)

_DATA: tuple[type[BaseException], ...] = (
    pg.DataError,  # class 22: NUL in text, numeric or datetime out of range, bad encoding
    pg.IntegrityConstraintViolationError,  # class 23: a check or key the row breaks
    pg.ProgramLimitExceededError,  # class 54: e.g. a value too large for its index
    msgspec.DecodeError,
    msgspec.ValidationError,
    UnicodeError,
    OverflowError,
    ValueError,
)


def classify(exc: BaseException) -> Fault:
    if isinstance(exc, BaseExceptionGroup):
        faults = {classify(inner) for inner in exc.exceptions}
        return faults.pop() if len(faults) == 1 else Fault.UNKNOWN
    # Data first: asyncpg's client-side encoding errors are DataErrors that are also ValueErrors,
    # and some transient classes (ConnectionError) are OSErrors, which no data class is.
    if isinstance(exc, _DATA):
        return Fault.DATA
    if isinstance(exc, _TRANSIENT):
        return Fault.TRANSIENT
    return Fault.UNKNOWN


def describe(exc: BaseException) -> str:
    """The error as recorded beside a set-aside item: its class and message, bounded."""
    return f"{type(exc).__name__}: {exc}"[:500]


class Backoff:
    """Growing pauses while a service is down, so a pool waits instead of spinning; one success
    resets it."""

    def __init__(self, first_s: float = 0.2, cap_s: float = 5.0) -> None:
        self._first = first_s
        self._cap = cap_s
        self._next = first_s

    async def wait(self, what: str, exc: BaseException) -> None:
        log.warning("service unavailable; retrying", extra={"what": what, "error": describe(exc)})
        await asyncio.sleep(self._next)
        self._next = min(self._next * 2, self._cap)

    def reset(self) -> None:
        self._next = self._first
