"""The audit hash chain (domain/audit.py) and what it stores (domain/redaction.py)."""

from __future__ import annotations

from typing import Any

from domain import audit
from domain.redaction import mask_text, redact


def chain(n: int) -> list[dict[str, Any]]:
    records, prev = [], audit.GENESIS
    for seq in range(1, n + 1):
        record = {
            "seq": seq,
            "at_us": 1_700_000_000_000_000 + seq,
            "actor": "user:usr_1",
            "actor_realm": "platform",
            "action": "user.roles",
            "target": f"user:usr_{seq}",
            "before": audit.prepare({"roles": ["a"]}),
            "after": audit.prepare({"roles": ["b"], "password": "hunter2"}),
            "ip": "10.0.0.1",
            "request_id": f"req_{seq}",
            "prev_hash": prev,
        }
        record["hash"] = audit.link(prev, record)
        prev = record["hash"]
        records.append(record)
    return records


def test_a_whole_chain_verifies() -> None:
    assert audit.first_broken(chain(20)) is None


def test_an_edited_record_breaks_the_chain_where_it_was_edited() -> None:
    records = chain(20)
    records[7]["after"] = {"roles": ["platform_admin"]}
    assert audit.first_broken(records) == 8


def test_a_recomputed_hash_still_breaks_the_next_link() -> None:
    records = chain(20)
    records[7]["target"] = "user:someone_else"
    records[7]["hash"] = audit.link(records[7]["prev_hash"], records[7])
    assert audit.first_broken(records) == 9


def test_removed_and_reordered_records_are_found() -> None:
    records = chain(10)
    assert audit.first_broken(records[:4] + records[5:]) == 5
    swapped = [*records[:2], records[3], records[2], *records[4:]]
    assert audit.first_broken(swapped) == 3


def test_secrets_are_masked_before_they_are_hashed() -> None:
    assert chain(1)[0]["after"] == {"roles": ["b"], "password": "***"}


def test_card_and_bank_numbers_keep_only_their_last_four() -> None:
    assert mask_text("card 4111 1111 1111 1111 declined") == "card ***1111 declined"
    assert mask_text("order 2026-11-26 amount 12.34") == "order 2026-11-26 amount 12.34"
    assert redact("card_number", "4111111111111111") == "***1111"
    assert redact("bank_account", "DE89 3704 0044 0532 0130 00") == "***3000"
    assert redact("notes", {"iban": "DE89370400440532013000", "refresh_token": "rt_x.y"}) == {
        "iban": "***3000",
        "refresh_token": "***",
    }
