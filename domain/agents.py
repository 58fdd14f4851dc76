"""What a parent lets an agent do with its own children, and who may change money terms."""

from __future__ import annotations

from enum import StrEnum

from domain.access import Denied, Principal, Realm


class Grant(StrEnum):
    """Set by a parent on its child: what the child may do with the child's own children."""

    OPEN_CHILDREN = "open_children"  # open sub-agents and place merchants under itself
    SUSPEND_CHILDREN = "suspend_children"
    VIEW_CHILDREN = "view_children"  # see its children's data (merchants, payments, commissions)
    SET_RATES = "set_rates"


ALL_GRANTS = frozenset(Grant)


def check_grant(who: Principal, grant: Grant) -> None:
    """An agent acts on what lies below it only with the grant its parent gave it for that;
    the platform needs none (its permissions are checked by `authorize`)."""
    if who.realm is Realm.AGENT and grant not in who.grants:
        raise Denied("grant_missing", f"your parent has not granted you {grant.value}")


def check_pricing(who: Principal, *, own_rate: bool = False) -> None:
    """The one rule for changing money terms (a merchant's fee, currencies, methods, channels
    and routing; an agent's rate and commission policy): the platform may, an agent may below
    itself with `set_rates`, and nobody sets their own price. `own_rate`: the terms are the
    caller's own (an agent's policy set by that agent)."""
    if who.realm is Realm.MERCHANT:
        raise Denied("set_by_platform_or_agent", "payment terms are set by the platform or agent")
    if who.realm is Realm.AGENT and own_rate:
        raise Denied("not_own_rate", "an agent's rate is set by its parent")
    check_grant(who, Grant.SET_RATES)
