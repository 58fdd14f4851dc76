"""The hosted cashier page behind `checkout_url`: the channel's pay link and QR payload once
the order exists, then the final result. It refreshes itself while the payment is open."""

from __future__ import annotations

from html import escape

import orjson
from aiohttp import web

from domain.states import UNPAID
from domain.views import payment_view
from gateway.state import edge
from infra import store

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Pay {amount} {currency}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">{refresh}
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}}
.amount{{font-size:2rem;font-weight:600}}.status{{padding:.2rem .6rem;border-radius:1rem;
background:#eef}}.qr{{font-family:monospace;word-break:break-all;background:#f6f6f6;padding:1rem}}
a.pay{{display:inline-block;margin-top:1rem;padding:.7rem 1.4rem;background:#224;color:#fff;
border-radius:.4rem;text-decoration:none}}</style></head>
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


def render(view: dict) -> str:
    status = view["status"]
    if status in UNPAID:
        if transfer := view.get("bank_transfer"):
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
        refresh = '<meta http-equiv="refresh" content="2">'
    else:
        body = f"<p id='result'>{escape(_MESSAGES.get(status, status))}</p>"
        refresh = ""
    return _PAGE.format(
        amount=escape(view["amount"]),
        currency=escape(view["currency"]),
        order=escape(view["merchant_order_id"]),
        status=escape(status),
        body=body,
        refresh=refresh,
    )


async def checkout(request: web.Request) -> web.Response:
    e = edge(request)
    payment_id = request.match_info["id"]
    doc = await e.redis.hget(e.keys.payment(payment_id), "doc")
    if doc is not None:
        view = orjson.loads(doc)
    else:
        row = await store.fetch_payment(e.pg, payment_id)
        if row is None:
            raise web.HTTPNotFound(text="no such payment")
        view = payment_view(row, e.settings.gateway.public_url)
    return web.Response(text=render(view), content_type="text/html")
