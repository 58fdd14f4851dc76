"""Onboarding: the review every merchant and agent goes through before it may do business."""

from __future__ import annotations

from enum import StrEnum


class Onboarding(StrEnum):
    SUBMITTED = "submitted"
    UNDER_REVIEW = "under_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    ACTIVE = "active"
    SUSPENDED = "suspended"


# Review is the platform's; suspending and reactivating may also be a parent agent's.
_NEXT: dict[Onboarding, frozenset[Onboarding]] = {
    Onboarding.SUBMITTED: frozenset({Onboarding.UNDER_REVIEW}),
    Onboarding.UNDER_REVIEW: frozenset({Onboarding.APPROVED, Onboarding.REJECTED}),
    Onboarding.APPROVED: frozenset({Onboarding.ACTIVE}),
    Onboarding.REJECTED: frozenset(),
    Onboarding.ACTIVE: frozenset({Onboarding.SUSPENDED}),
    Onboarding.SUSPENDED: frozenset({Onboarding.ACTIVE}),
}
REVIEW_STEPS = frozenset({Onboarding.UNDER_REVIEW, Onboarding.APPROVED, Onboarding.REJECTED})


def can_move(current: Onboarding, target: Onboarding) -> bool:
    return target in _NEXT[current]


def platform_only(current: Onboarding, target: Onboarding) -> bool:
    """Review decisions and the first activation are the platform's to make."""
    return target in REVIEW_STEPS or current is Onboarding.APPROVED
