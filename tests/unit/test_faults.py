"""Which failures retrying can cure (infra.faults): the classification every pool, the relay
and the edge rely on to keep work during an outage and set aside only what is really bad."""

from __future__ import annotations

import asyncpg.exceptions as pg
import msgspec
import pytest
import redis.exceptions

from adapters.base import ChannelTransientError
from infra.faults import Fault, classify


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(),
        TimeoutError(),
        pg.ConnectionDoesNotExistError("gone"),
        pg.CannotConnectNowError("starting up"),
        pg.AdminShutdownError("terminating"),
        pg.TooManyConnectionsError("too many"),
        pg.SerializationError("conflict"),
        pg.DeadlockDetectedError("deadlock"),
        pg.InterfaceError("closed"),
        redis.exceptions.ConnectionError("down"),
        redis.exceptions.BusyLoadingError("loading"),
        redis.exceptions.TimeoutError(),
        ChannelTransientError("channel_unavailable", "sim: 503"),
        ExceptionGroup("all down", [TimeoutError(), ConnectionResetError()]),
    ],
)
def test_service_failures_are_transient(exc: BaseException) -> None:
    assert classify(exc) is Fault.TRANSIENT


@pytest.mark.parametrize(
    "exc",
    [
        pg.CharacterNotInRepertoireError("invalid byte sequence for encoding UTF8: 0x00"),
        pg.NumericValueOutOfRangeError("out of range"),
        pg.DatetimeFieldOverflowError("out of range"),
        pg.CheckViolationError("check"),
        pg.ProgramLimitExceededError("index row size"),
        pg.DataError("invalid input for query argument $1"),
        msgspec.DecodeError("truncated"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        OverflowError("date value out of range"),
        ExceptionGroup("one bad", [pg.CheckViolationError("check")]),
    ],
)
def test_an_items_own_faults_are_data(exc: BaseException) -> None:
    assert classify(exc) is Fault.DATA


def test_anything_else_is_unknown() -> None:
    assert classify(KeyError("bug")) is Fault.UNKNOWN
    assert classify(ExceptionGroup("mixed", [TimeoutError(), KeyError("x")])) is Fault.UNKNOWN
