"""The referral state machine: which action moves a referral from which status, by whom.

Statuses follow HL7 BSeR's service request life (created, accepted, declined,
scheduled, completed) with the states a cross-border referral needs on top:
offered to a provider, waiting for information from the referrer, closed once
the referrer has acknowledged the report and recorded the outcome.

Only the side currently holding a referral may act on it (Ocean's rule: the
current receiver changes the status), except that the origin may cancel any
referral that is not finished, and its coordinator may send it elsewhere. Pure: no I/O, unit-tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.identity.models import Role


class Status(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    OFFERED = "offered"
    INFO_REQUESTED = "info_requested"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    SCHEDULED = "scheduled"
    COMPLETED = "completed"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Action(StrEnum):
    SUBMIT = "submit"
    OFFER = "offer"
    ACCEPT = "accept"
    DECLINE = "decline"
    REQUEST_INFO = "request-info"
    PROVIDE_INFO = "provide-info"
    SCHEDULE = "schedule"
    COMPLETE = "complete"
    ACKNOWLEDGE = "acknowledge"
    CANCEL = "cancel"
    EXPIRE = "expire"
    REROUTE = "reroute"


class Side(StrEnum):
    ORIGIN = "origin"
    PROVIDER = "provider"
    SYSTEM = "system"


ORIGIN_OVERRIDES = frozenset({Action.CANCEL, Action.REROUTE})
"""What the origin may do whoever holds the referral: withdraw it, or send it elsewhere."""
FINISHED = frozenset({Status.CLOSED, Status.CANCELLED, Status.EXPIRED, Status.DECLINED})
OPEN_AT_PROVIDER = frozenset({Status.OFFERED, Status.ACCEPTED, Status.SCHEDULED})
ORIGIN_ROLES = frozenset({Role.REFERRING_PHYSICIAN, Role.COORDINATOR})
PROVIDER_ROLES = frozenset({Role.SPECIALIST, Role.RADIOLOGIST, Role.COORDINATOR})


@dataclass(frozen=True, slots=True)
class Transition:
    sources: frozenset[Status]
    target: Status
    side: Side
    roles: frozenset[Role]


TRANSITIONS: dict[Action, Transition] = {
    Action.SUBMIT: Transition(
        frozenset({Status.DRAFT}), Status.SUBMITTED, Side.ORIGIN, ORIGIN_ROLES
    ),
    Action.OFFER: Transition(
        frozenset({Status.SUBMITTED, Status.OFFERED, Status.DECLINED, Status.EXPIRED}),
        Status.OFFERED,
        Side.SYSTEM,
        frozenset(),
    ),
    Action.ACCEPT: Transition(
        frozenset({Status.OFFERED}), Status.ACCEPTED, Side.PROVIDER, PROVIDER_ROLES
    ),
    Action.DECLINE: Transition(
        frozenset({Status.OFFERED, Status.INFO_REQUESTED}),
        Status.DECLINED,
        Side.PROVIDER,
        PROVIDER_ROLES,
    ),
    Action.REQUEST_INFO: Transition(
        frozenset({Status.OFFERED}), Status.INFO_REQUESTED, Side.PROVIDER, PROVIDER_ROLES
    ),
    Action.PROVIDE_INFO: Transition(
        frozenset({Status.INFO_REQUESTED}), Status.OFFERED, Side.ORIGIN, ORIGIN_ROLES
    ),
    Action.SCHEDULE: Transition(
        frozenset({Status.ACCEPTED, Status.SCHEDULED}),
        Status.SCHEDULED,
        Side.PROVIDER,
        PROVIDER_ROLES,
    ),
    Action.COMPLETE: Transition(
        frozenset({Status.ACCEPTED, Status.SCHEDULED}),
        Status.COMPLETED,
        Side.PROVIDER,
        PROVIDER_ROLES,
    ),
    Action.ACKNOWLEDGE: Transition(
        frozenset({Status.COMPLETED}), Status.CLOSED, Side.ORIGIN, ORIGIN_ROLES
    ),
    Action.CANCEL: Transition(
        frozenset(
            {
                Status.DRAFT,
                Status.SUBMITTED,
                Status.OFFERED,
                Status.INFO_REQUESTED,
                Status.ACCEPTED,
                Status.SCHEDULED,
            }
        ),
        Status.CANCELLED,
        Side.ORIGIN,
        ORIGIN_ROLES,
    ),
    Action.EXPIRE: Transition(
        frozenset({Status.SUBMITTED, Status.OFFERED}), Status.EXPIRED, Side.SYSTEM, frozenset()
    ),
    Action.REROUTE: Transition(
        frozenset({Status.SUBMITTED, Status.OFFERED, Status.DECLINED, Status.EXPIRED}),
        Status.OFFERED,
        Side.ORIGIN,
        frozenset({Role.COORDINATOR}),
    ),
}


class TransitionRefused(Exception):
    """Why an action may not happen: a stable rule and words for the user."""

    def __init__(self, rule: str, detail: str, *, conflict: bool = False) -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail
        self.conflict = conflict
        """True when the referral's state is the obstacle (409), not the caller (403)."""


def holder(status: Status) -> Side:
    """Which side holds a referral in this status, and so may move it on."""
    if status in (Status.OFFERED, Status.ACCEPTED, Status.SCHEDULED):
        return Side.PROVIDER
    return Side.ORIGIN


def check(action: Action, status: Status, *, side: Side, roles: frozenset[Role]) -> Status:
    """The status `action` leads to, or `TransitionRefused` naming the rule that stands in the way."""
    rule = TRANSITIONS[action]
    if side is not rule.side and side is not Side.SYSTEM:
        raise TransitionRefused(
            "wrong_side", f"only the {rule.side.value} institution may {action.value} this referral"
        )
    if side is not Side.SYSTEM and not roles & rule.roles:
        names = ", ".join(sorted(r.value for r in rule.roles))
        raise TransitionRefused("role_required", f"{action.value} needs one of the roles: {names}")
    if status not in rule.sources:
        raise TransitionRefused(
            "invalid_transition",
            f"a referral that is {status.value} cannot {action.value}",
            conflict=True,
        )
    if side is not Side.SYSTEM and action not in ORIGIN_OVERRIDES and holder(status) is not side:
        raise TransitionRefused(
            "not_holder",
            f"the {holder(status).value} institution holds this referral now",
            conflict=True,
        )
    return rule.target


def clock_runs(status: Status) -> bool:
    """The provider's response clock runs while a referral waits on them, not while the referrer owes information."""
    return status is Status.OFFERED
