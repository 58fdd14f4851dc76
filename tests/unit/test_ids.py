"""Object ids (domain/ids.py)."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.ids import new_id, random_hex

CROCKFORD = set("0123456789abcdefghjkmnpqrstvwxyz")


def _body(value: str, prefix: str) -> str:
    assert value.startswith(prefix + "_")
    return value[len(prefix) + 1 :]


@pytest.mark.parametrize("prefix", ["pay", "re", "evt", "mch"])
def test_prefix_length_and_alphabet(prefix: str) -> None:
    body = _body(new_id(prefix), prefix)
    assert len(body) == 26
    assert set(body) <= CROCKFORD
    assert not set(body) & set("ilou")


def test_alphabet_is_crockford_lowercase() -> None:
    assert len(CROCKFORD) == 32


@given(st.integers(min_value=0, max_value=2**48 - 1))
def test_fixed_length_for_any_time(now_ms: int) -> None:
    body = _body(new_id("pay", now_ms=now_ms), "pay")
    assert len(body) == 26
    assert set(body) <= CROCKFORD


def test_time_prefix_encodes_milliseconds() -> None:
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    now_ms = 1_700_000_000_123
    body = _body(new_id("pay", now_ms=now_ms), "pay")
    value = 0
    for ch in body:
        value = value * 32 + alphabet.index(ch)
    assert value >> 80 == now_ms


def test_default_time_is_now() -> None:
    before = time.time_ns() // 1_000_000
    value = new_id("pay")
    after = time.time_ns() // 1_000_000
    assert _body(new_id("pay", now_ms=before), "pay")[:10] <= _body(value, "pay")[:10]
    assert _body(value, "pay")[:10] <= _body(new_id("pay", now_ms=after), "pay")[:10]


def test_sortable_by_time() -> None:
    start = 1_700_000_000_000
    ids = [new_id("pay", now_ms=start + step * 7) for step in range(2_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


@given(
    st.integers(min_value=0, max_value=2**48 - 2),
    st.integers(min_value=1, max_value=2**20),
)
def test_later_millisecond_sorts_after(earlier: int, gap: int) -> None:
    later = min(earlier + gap, 2**48 - 1)
    assert new_id("x", now_ms=earlier) < new_id("x", now_ms=later)


def test_unique_over_10k() -> None:
    same_ms = [new_id("pay", now_ms=1_700_000_000_000) for _ in range(10_000)]
    assert len(set(same_ms)) == 10_000
    live = [new_id("pay") for _ in range(10_000)]
    assert len(set(live)) == 10_000


def test_a_forked_child_never_repeats_the_parents_random_bits() -> None:
    new_id("pay")  # the parent now holds a partly used block of random bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, " ".join(new_id("pay", now_ms=0) for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 4096).decode().split()
    parent = [new_id("pay", now_ms=0) for _ in range(5)]
    assert len(child) == 5
    assert not set(child) & set(parent)


def test_random_hex_length_and_freshness() -> None:
    values = {random_hex(8) for _ in range(2000)}
    assert len(values) == 2000
    assert all(len(v) == 16 and int(v, 16) >= 0 for v in values)
