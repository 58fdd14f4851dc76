"""Onboarding rules (domain/onboarding.py): what the tree opens and who may refer a merchant."""

from __future__ import annotations

import pytest

from domain.access import Realm
from domain.onboarding import Onboarding, ReferralRefused, opened_status, referring_agent


def test_what_an_agent_opens_is_reviewed_unless_the_platform_lets_it_activate() -> None:
    assert opened_status(Realm.AGENT, agents_open_active=False) is Onboarding.SUBMITTED
    assert opened_status(Realm.AGENT, agents_open_active=True) is Onboarding.ACTIVE
    assert opened_status(Realm.PLATFORM, agents_open_active=False) is Onboarding.ACTIVE


def test_a_merchant_applies_under_an_agent_only_by_its_invitation() -> None:
    assert referring_agent(None, invitation=False, invited_by=None) is None
    assert referring_agent(None, invitation=True, invited_by="agt_a") == "agt_a"
    assert referring_agent("agt_a", invitation=True, invited_by="agt_a") == "agt_a"


@pytest.mark.parametrize(
    ("named", "invitation", "invited_by", "code", "param"),
    [
        ("agt_a", False, None, "invitation_required", "agent_id"),
        (None, True, None, "invalid_invitation", "invitation"),
        ("agt_a", True, None, "invalid_invitation", "invitation"),
        ("agt_b", True, "agt_a", "invalid_invitation", "invitation"),
    ],
)
def test_an_agent_without_a_valid_invitation_is_refused(
    named: str | None, invitation: bool, invited_by: str | None, code: str, param: str
) -> None:
    with pytest.raises(ReferralRefused) as refused:
        referring_agent(named, invitation, invited_by)
    assert (refused.value.code, refused.value.param) == (code, param)
