"""The hosted cashier page behind `checkout_url`: the channel's pay link and QR payload once
the order exists, then the final result. It refreshes itself while the payment is open.

Its one script is the device id (`assets/device.js`, served from here so that the policy
allows scripts from this origin only, never inline): the card form sends the id with the
customer's card, and merchants' own checkout pages load the same file for
`customer.device_id`."""

from __future__ import annotations

import time
from html import escape
from pathlib import Path
from typing import Annotated

import msgspec
import orjson
import segno
from aiohttp import web
from msgspec import Meta

from adapters.base import CardConfirming
from domain.messages import ChannelTask, encode
from domain.risk.lists import Kind, ListName
from domain.states import UNPAID, PaymentStatus
from domain.views import payment_view
from gateway.errors import invalid
from gateway.schemas import DeviceId
from gateway.state import REQUEST_ID, decode, edge, json_answer
from infra import store

# The page's one stylesheet, inline: the Content-Security-Policy allows exactly this text, by
# its hash (infra.httpserver.protect), and no other style or any script.
STYLE = """body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}
.amount{font-size:2rem;font-weight:600}.status{padding:.2rem .6rem;border-radius:1rem;
background:#eef}.qr{font-family:monospace;word-break:break-all;background:#f6f6f6;padding:1rem}
a.pay{display:inline-block;margin-top:1rem;padding:.7rem 1.4rem;background:#224;color:#fff;
border-radius:.4rem;text-decoration:none}"""
DEVICE_SCRIPT = (Path(__file__).parent / "assets" / "device.js").read_bytes()
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Pay {amount} {currency}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">{head}
<style>{style}</style></head>
<body><p>Order {order}</p><p class="amount">{amount} {currency}</p>
<p>Status: <span class="status" id="status">{status}</span></p>{body}</body></html>"""

_MESSAGES = {
    "succeeded": "Payment received. Thank you.",
    "failed": "The payment failed.",
    "expired": "This payment has expired.",
    "canceled": "This payment was canceled.",
    "rejected": "This payment could not be accepted.",
    "refunded": "This payment was refunded.",
    "partially_refunded": "Payment received; part of it was refunded.",
}


def qr_image(uri: str) -> str:
    """The wallet URI as an inline SVG QR code: drawn with presentation attributes only, so
    the page's policy (no script, no style but its own) holds, and nothing is fetched."""
    return segno.make(uri, error="m").svg_inline(scale=4)


def render(view: dict, card: bool = False) -> str:
    """`card`: the payment's channel takes the customer's card on this page (its browser
    library tokenises the card and the token is posted to `/checkout/{id}/card`)."""
    status = view["status"]
    if status in UNPAID:
        if card and status == PaymentStatus.AWAITING_PAYMENT:
            body = (
                f'<form id="card" data-submit="/checkout/{escape(view["id"])}/card">'
                '<p>Pay by card</p><div id="card-element"></div>'
                '<input type="hidden" name="device_id" value="">'
                '<button class="pay" type="submit">Pay</button></form>'
            )
        elif crypto := view.get("crypto"):
            seen = (
                f'<p id="confirmations">Seen on the chain: {crypto["confirmations"]} of '
                f"{crypto['confirmations_required']} confirmations</p>"
                if crypto["state"] == "processing"
                else ""
            )
            body = (
                f"<p>Send exactly {escape(crypto['amount'])} {escape(crypto['asset'])} "
                f"({escape(crypto['network'])}) to:</p>"
                f'<p class="qr" id="address">{escape(crypto["address"])}</p>'
                f'<p id="qr-image">{qr_image(crypto["uri"])}</p>'
                f'<a class="pay" id="pay" href="{escape(crypto["uri"])}">Open in wallet</a>{seen}'
            )
        elif transfer := view.get("bank_transfer"):
            body = (
                "<p>Transfer the amount to:</p>"
                f'<p class="qr" id="transfer">bank {escape(transfer["bank_code"])}, account '
                f"{escape(transfer['account_number'])}, reference "
                f"{escape(transfer['reference'])}</p>"
            )
        elif view.get("pay_url"):
            scan = (
                f'<p>Or scan:</p><p class="qr" id="qr">{escape(view["qr_payload"])}</p>'
                if view.get("qr_payload")
                else ""
            )
            body = f'<a class="pay" id="pay" href="{escape(view["pay_url"])}">Pay now</a>{scan}'
        else:
            body = "<p>Preparing your payment…</p>"
        # a card form is not reloaded under the customer's typing; it loads the device id
        head = (
            '<script src="/checkout/device.js" defer></script>'
            if card and status == PaymentStatus.AWAITING_PAYMENT
            else '<meta http-equiv="refresh" content="2">'
        )
    else:
        body = f"<p id='result'>{escape(_MESSAGES.get(status, status))}</p>"
        head = ""
    return _PAGE.format(
        amount=escape(view["amount"]),
        currency=escape(view["currency"]),
        order=escape(view["merchant_order_id"]),
        status=escape(status),
        body=body,
        head=head,
        style=STYLE,
    )


async def _view(request: web.Request) -> dict | None:
    e = edge(request)
    payment_id = request.match_info["id"]
    hot = await e.hot.read(e.keys.payment(payment_id), "doc")
    row = None if hot.fresh else await store.fetch_payment(e.pg, payment_id)
    if row is None:
        return None if hot.values[0] is None else orjson.loads(hot.values[0])
    return payment_view(row, e.settings.gateway.public_url)


async def checkout(request: web.Request) -> web.Response:
    view = await _view(request)
    if view is None:
        raise web.HTTPNotFound(text="no such payment")
    adapter = edge(request).channels.adapter(view.get("channel") or "")
    return web.Response(
        text=render(view, card=isinstance(adapter, CardConfirming)), content_type="text/html"
    )


async def device_script(_: web.Request) -> web.Response:
    return web.Response(
        body=DEVICE_SCRIPT,
        content_type="text/javascript",
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=3600"},
    )


class CardSubmission(msgspec.Struct, forbid_unknown_fields=True):
    # what the channel's browser library made of the card: a token, never the card number
    payment_method: Annotated[str, Meta(pattern=r"^pm_[A-Za-z0-9_]{1,250}$")]
    device_id: DeviceId | None = None  # a blocked device cannot pay


async def submit_card(request: web.Request) -> web.Response:
    """The customer's card for a payment on a card channel, from the cashier page. Answered
    202 once it is on its way to the channel; the payment's status tells the outcome."""
    e = edge(request)
    card = decode(await request.read(), CardSubmission)
    view = await _view(request)
    if view is None:
        raise invalid("resource_missing", "no such payment", "id", status=404)
    if view["status"] != PaymentStatus.AWAITING_PAYMENT:
        raise invalid(
            "payment_not_awaiting_card",
            f"the payment is {view['status']}, not awaiting the customer's card",
            status=409,
        )
    channel = view["channel"]
    if not isinstance(e.channels.adapter(channel), CardConfirming):
        raise invalid("card_not_accepted", "this payment's channel takes no card here", status=409)
    if card.device_id and any(
        hit.list is ListName.BLOCK
        for hit in e.risk.book.lists.hits({Kind.DEVICE: [card.device_id]}, time.time())
    ):
        raise invalid("device_blocked", "payments from this device are refused", "device_id", 403)
    task = ChannelTask(
        kind="confirm",
        id=view["id"],
        channel=channel,
        payment_method=card.payment_method,
        request_id=request[REQUEST_ID],
    )
    await e.intake.hand_over(f"card:{view['id']}:{card.payment_method}", encode(task))
    return json_answer({"object": "card_submission", "payment_id": view["id"]}, 202)
