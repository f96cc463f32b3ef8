"""The referral state machine, without a database."""

from __future__ import annotations

import pytest

from services.referral.workflow import (
    TRANSITIONS,
    Action,
    Side,
    Status,
    TransitionRefused,
    check,
    clock_runs,
    holder,
)
from shared.identity.models import Role

SPECIALIST = frozenset({Role.SPECIALIST})
REFERRER = frozenset({Role.REFERRING_PHYSICIAN})
COORDINATOR = frozenset({Role.COORDINATOR})


@pytest.mark.parametrize(
    ("action", "status", "side", "roles", "target"),
    [
        (Action.SUBMIT, Status.DRAFT, Side.ORIGIN, REFERRER, Status.SUBMITTED),
        (Action.ACCEPT, Status.OFFERED, Side.PROVIDER, SPECIALIST, Status.ACCEPTED),
        (Action.DECLINE, Status.OFFERED, Side.PROVIDER, SPECIALIST, Status.DECLINED),
        (Action.REQUEST_INFO, Status.OFFERED, Side.PROVIDER, SPECIALIST, Status.INFO_REQUESTED),
        (Action.PROVIDE_INFO, Status.INFO_REQUESTED, Side.ORIGIN, REFERRER, Status.OFFERED),
        (Action.SCHEDULE, Status.ACCEPTED, Side.PROVIDER, SPECIALIST, Status.SCHEDULED),
        (Action.SCHEDULE, Status.SCHEDULED, Side.PROVIDER, COORDINATOR, Status.SCHEDULED),
        (Action.COMPLETE, Status.SCHEDULED, Side.PROVIDER, SPECIALIST, Status.COMPLETED),
        (Action.COMPLETE, Status.ACCEPTED, Side.PROVIDER, SPECIALIST, Status.COMPLETED),
        (Action.ACKNOWLEDGE, Status.COMPLETED, Side.ORIGIN, REFERRER, Status.CLOSED),
        (Action.CANCEL, Status.ACCEPTED, Side.ORIGIN, REFERRER, Status.CANCELLED),
        (Action.REROUTE, Status.DECLINED, Side.ORIGIN, COORDINATOR, Status.OFFERED),
        (Action.EXPIRE, Status.OFFERED, Side.SYSTEM, frozenset(), Status.EXPIRED),
    ],
)
def test_the_allowed_moves(
    action: Action, status: Status, side: Side, roles: frozenset[Role], target: Status
) -> None:
    assert check(action, status, side=side, roles=roles) is target


def test_the_referrer_cannot_accept_their_own_referral() -> None:
    with pytest.raises(TransitionRefused) as refused:
        check(Action.ACCEPT, Status.OFFERED, side=Side.ORIGIN, roles=REFERRER)
    assert refused.value.rule == "wrong_side" and not refused.value.conflict


def test_a_radiologist_may_accept_but_an_auditor_may_not() -> None:
    assert check(
        Action.ACCEPT, Status.OFFERED, side=Side.PROVIDER, roles=frozenset({Role.RADIOLOGIST})
    )
    with pytest.raises(TransitionRefused) as refused:
        check(Action.ACCEPT, Status.OFFERED, side=Side.PROVIDER, roles=frozenset({Role.AUDITOR}))
    assert refused.value.rule == "role_required"


def test_accepting_twice_is_a_conflict_not_a_permission_problem() -> None:
    with pytest.raises(TransitionRefused) as refused:
        check(Action.ACCEPT, Status.ACCEPTED, side=Side.PROVIDER, roles=SPECIALIST)
    assert refused.value.rule == "invalid_transition" and refused.value.conflict


def test_only_the_holder_moves_the_referral_but_the_origin_may_always_cancel() -> None:
    assert holder(Status.INFO_REQUESTED) is Side.ORIGIN
    assert holder(Status.OFFERED) is Side.PROVIDER
    with pytest.raises(TransitionRefused) as refused:
        check(Action.DECLINE, Status.INFO_REQUESTED, side=Side.PROVIDER, roles=SPECIALIST)
    assert refused.value.rule == "not_holder"
    assert (
        check(Action.CANCEL, Status.SCHEDULED, side=Side.ORIGIN, roles=REFERRER) is Status.CANCELLED
    )


@pytest.mark.parametrize(
    "status", [Status.CLOSED, Status.CANCELLED, Status.COMPLETED, Status.EXPIRED]
)
def test_finished_referrals_cannot_be_cancelled(status: Status) -> None:
    with pytest.raises(TransitionRefused):
        check(Action.CANCEL, status, side=Side.ORIGIN, roles=REFERRER)


def test_the_clock_runs_only_while_the_provider_owes_an_answer() -> None:
    assert [s for s in Status if clock_runs(s)] == [Status.OFFERED]


def test_every_action_has_a_transition() -> None:
    assert set(TRANSITIONS) == set(Action)
