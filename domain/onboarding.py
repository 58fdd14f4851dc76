"""Onboarding: the review every merchant and agent goes through before it may do business."""

from __future__ import annotations

from enum import StrEnum

from domain.access import Realm


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


def opened_status(opener: Realm, agents_open_active: bool) -> Onboarding:
    """What a sub-agent or merchant opened through the tree starts as. The platform is the
    reviewer, so what it opens is active; what an agent opens goes through the same review as
    an application (issue 12: it took payments at once), unless the platform lets agents
    activate what they open (`agent_opens_active`)."""
    if opener is Realm.PLATFORM or agents_open_active:
        return Onboarding.ACTIVE
    return Onboarding.SUBMITTED


class ReferralRefused(Exception):
    def __init__(self, code: str, message: str, param: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def referring_agent(named: str | None, invitation: bool, invited_by: str | None) -> str | None:
    """The agent a merchant applies under: only one that invited it (issue 12: anyone could
    register under any agent). `named` is the application's agent_id, `invitation` whether it
    carries one, `invited_by` the agent of that invitation if it is valid (unused, unexpired)."""
    if not invitation:
        if named is not None:
            raise ReferralRefused(
                "invitation_required",
                "applying under an agent takes that agent's invitation",
                "agent_id",
            )
        return None
    if invited_by is None or named not in (None, invited_by):
        raise ReferralRefused(
            "invalid_invitation",
            "the invitation is unknown, used, expired or another agent's",
            "invitation",
        )
    return invited_by
