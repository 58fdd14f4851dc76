"""What a parent lets an agent do with its own children."""

from __future__ import annotations

from enum import StrEnum


class Grant(StrEnum):
    """Set by a parent on its child: what the child may do with the child's own children."""

    OPEN_CHILDREN = "open_children"  # open sub-agents and place merchants under itself
    SUSPEND_CHILDREN = "suspend_children"
    VIEW_CHILDREN = "view_children"  # see its children's data (merchants, payments, commissions)
    SET_RATES = "set_rates"


ALL_GRANTS = frozenset(Grant)
