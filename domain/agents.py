"""Agents' onboarding states and what a parent lets an agent do with its own children."""

from __future__ import annotations

from enum import StrEnum


class AgentStatus(StrEnum):
    SUBMITTED = "submitted"
    UNDER_REVIEW = "under_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    ACTIVE = "active"
    SUSPENDED = "suspended"


# Review is the platform's; suspending and reactivating may also be a parent's (with the grant).
_NEXT: dict[AgentStatus, frozenset[AgentStatus]] = {
    AgentStatus.SUBMITTED: frozenset({AgentStatus.UNDER_REVIEW}),
    AgentStatus.UNDER_REVIEW: frozenset({AgentStatus.APPROVED, AgentStatus.REJECTED}),
    AgentStatus.APPROVED: frozenset({AgentStatus.ACTIVE}),
    AgentStatus.REJECTED: frozenset(),
    AgentStatus.ACTIVE: frozenset({AgentStatus.SUSPENDED}),
    AgentStatus.SUSPENDED: frozenset({AgentStatus.ACTIVE}),
}
REVIEW_STEPS = frozenset({AgentStatus.UNDER_REVIEW, AgentStatus.APPROVED, AgentStatus.REJECTED})


def can_move(current: AgentStatus, target: AgentStatus) -> bool:
    return target in _NEXT[current]


class Grant(StrEnum):
    """Set by a parent on its child: what the child may do with the child's own children."""

    OPEN_CHILDREN = "open_children"  # open sub-agents and place merchants under itself
    SUSPEND_CHILDREN = "suspend_children"
    VIEW_CHILDREN = "view_children"  # see its children's data (merchants, payments, commissions)
    SET_RATES = "set_rates"


ALL_GRANTS = frozenset(Grant)
