"""The public shape of payments and refunds, built from a stored row or a fresh intent.

One function per object, so the gateway's first answer, the hot copy in Redis, webhooks and
database reads can never disagree on a field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from domain.fx import Conversion, format_rate
from domain.money import format_amount
from domain.settlement import TOTALS


def unix(value: datetime | float | int) -> int:
    return int(value.timestamp()) if isinstance(value, datetime) else int(value)


def payment_view(p: Mapping[str, Any], public_url: str) -> dict[str, Any]:
    currency = p["currency"]
    refunded = int(p.get("refunded_amount") or 0)
    return {
        "id": p["id"],
        "object": "payment",
        "status": p["status"],
        "amount": format_amount(int(p["amount"]), currency),
        "currency": currency,
        "method": p.get("method"),
        "merchant_order_id": p["merchant_order_id"],
        "description": p.get("description"),
        "metadata": _json_field(p.get("metadata")),
        "channel": p.get("channel"),
        "pay_url": p.get("pay_url"),
        "qr_payload": p.get("qr_payload"),
        "bank_transfer": _json_field(p.get("bank_transfer")),
        "crypto": _crypto_view(p.get("crypto")),
        "checkout_url": f"{public_url}/checkout/{p['id']}",
        "amount_refunded": format_amount(refunded, currency),
        "failure_code": p.get("failure_code"),
        "failure_message": p.get("failure_message"),
        "created": unix(p["created_at"]),
        "expires_at": unix(p["expires_at"]),
        "fx": _fx_view(p.get("fx"), currency),
        "risk": _risk_view(p.get("risk")),
    }


def _json_field(stored: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """A jsonb column as the database gives it (text) or as already parsed."""
    if not stored:
        return None
    return orjson.loads(stored) if isinstance(stored, str) else stored


def _risk_view(stored: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """The decision and why, without what it keeps for backtests and shadow comparisons."""
    doc = _json_field(stored)
    if doc is None:
        return None
    return {k: v for k, v in doc.items() if k not in ("facts", "shadow")}


def _crypto_view(stored: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """A crypto deposit: where to send how much, and the watcher's progress on it (`state`
    awaiting → processing with confirmations → confirmed)."""
    doc = _json_field(stored)
    if doc is None:
        return None
    asset = doc["asset"]
    return {
        "network": doc["network"],
        "asset": asset,
        "address": doc["address"],
        "amount": format_amount(int(doc["amount"]), asset),
        "token_contract": doc.get("token"),
        "uri": doc["uri"],
        "state": doc.get("state", "awaiting"),
        "amount_received": format_amount(int(doc.get("received_minor", 0)), asset),
        "confirmations": doc.get("confirmations", 0),
        "confirmations_required": doc.get("confirmations_required"),
    }


def _fx_view(stored: str | dict[str, Any] | None, currency: str) -> dict[str, Any] | None:
    """The locked quote a payment is charged at, when its channel takes another currency."""
    doc = _json_field(stored)
    if doc is None:
        return None
    conversion = Conversion.from_doc(doc)
    return {
        "to_currency": conversion.target,
        "converted_amount": format_amount(conversion.converted, conversion.target),
        "rate": format_rate(conversion.rate),
        "mid_rate": format_rate(conversion.mid),
        "spread_bps": conversion.spread_bps,
        "quote_expires_at": int(conversion.expires_at),
    }


def refund_view(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "object": "refund",
        "payment_id": r["payment_id"],
        "status": r["status"],
        "amount": format_amount(int(r["amount"]), r["currency"]),
        "currency": r["currency"],
        "reason": r.get("reason"),
        "destination": r.get("destination"),
        "failure_code": r.get("failure_code"),
        "failure_message": r.get("failure_message"),
        "created": unix(r["created_at"]),
    }


def statement_view(r: Mapping[str, Any]) -> dict[str, Any]:
    """A settlement statement as the API and the `settlement.closed` webhook show it."""
    c = r["currency"]
    return {
        "id": r["id"],
        "object": "settlement",
        "entity_id": r["entity_id"],
        "entity_kind": r["entity_kind"],
        "currency": c,
        "cycle": r["cycle"],
        "period_start": unix(r["period_start"]),
        "period_end": unix(r["period_end"]),
        "status": r["status"],
        **{name: format_amount(int(r[name]), c) for name in (*TOTALS, "net")},
        "carried_from": r["carried_from"],
        "line_count": r["line_count"],
        "created": unix(r["created_at"]),
    }
