"""Stripe card payments through PaymentIntents (and localstripe, which speaks the same API)."""

from adapters.stripe.adapter import StripeAdapter

__all__ = ["StripeAdapter"]
