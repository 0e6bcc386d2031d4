"""The registration lifecycle of HD4DP (DOMAIN.md): which action is allowed from which
status, and where it leads. Pure rules, no I/O."""

from __future__ import annotations

from enum import StrEnum


class RegistrationStatus(StrEnum):
    """Where a registration stands in its lifecycle (HD4DP v1's statuses)."""

    OPEN = "open"
    SENDING = "sending"
    SUBMITTED = "submitted"
    CORRECTIONS_NEEDED = "corrections_needed"
    APPROVED = "approved"
    FOLLOW_UP_NEEDED = "follow_up_needed"
    ERROR = "error"
    DELETED = "deleted"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()


class StatusConfirmation(StrEnum):
    """Whether the central platform confirmed a Submitted registration's arrival: the
    sub-status HD4DP shows next to Submitted (none before)."""

    PENDING = "pending"
    OK = "ok"
    NOK = "nok"


class Action(StrEnum):
    SAVE = "save"
    SUBMIT = "submit"
    RESUBMIT = "resubmit"  # v2 / bulk: the latest submission with the same business key wins
    PROCESSED = "processed"  # the worker finished sending
    REOPEN = "reopen"
    DELETE = "delete"
    REQUEST_CORRECTIONS = "request_corrections"
    APPROVE = "approve"
    REQUEST_FOLLOW_UP = "request_follow_up"
    REPORT_ERROR = "report_error"  # the central platform: the account is not authorised


EDITABLE = frozenset(
    {
        RegistrationStatus.OPEN,
        RegistrationStatus.CORRECTIONS_NEEDED,
        RegistrationStatus.FOLLOW_UP_NEEDED,
        RegistrationStatus.ERROR,
    }
)

TRANSITIONS: dict[Action, tuple[frozenset[RegistrationStatus], RegistrationStatus | None]] = {
    # (allowed from, leads to; None = stays where it is)
    Action.SAVE: (EDITABLE, None),
    Action.SUBMIT: (EDITABLE, RegistrationStatus.SENDING),
    Action.RESUBMIT: (
        frozenset(RegistrationStatus) - {RegistrationStatus.DELETED},
        RegistrationStatus.SENDING,
    ),
    Action.PROCESSED: (frozenset({RegistrationStatus.SENDING}), RegistrationStatus.SUBMITTED),
    Action.REOPEN: (frozenset({RegistrationStatus.SUBMITTED}), RegistrationStatus.OPEN),
    Action.DELETE: (
        frozenset({RegistrationStatus.OPEN, RegistrationStatus.CORRECTIONS_NEEDED}),
        RegistrationStatus.DELETED,
    ),
    Action.REQUEST_CORRECTIONS: (
        frozenset({RegistrationStatus.SUBMITTED}),
        RegistrationStatus.CORRECTIONS_NEEDED,
    ),
    Action.APPROVE: (frozenset({RegistrationStatus.SUBMITTED}), RegistrationStatus.APPROVED),
    Action.REQUEST_FOLLOW_UP: (
        frozenset({RegistrationStatus.SUBMITTED, RegistrationStatus.APPROVED}),
        RegistrationStatus.FOLLOW_UP_NEEDED,
    ),
    Action.REPORT_ERROR: (frozenset({RegistrationStatus.SUBMITTED}), RegistrationStatus.ERROR),
}

#: The central platform's decisions, as lifecycle actions (docs/delivery.md, "Decisions").
DECISIONS: dict[RegistrationStatus, Action] = {
    RegistrationStatus.CORRECTIONS_NEEDED: Action.REQUEST_CORRECTIONS,
    RegistrationStatus.APPROVED: Action.APPROVE,
    RegistrationStatus.FOLLOW_UP_NEEDED: Action.REQUEST_FOLLOW_UP,
    RegistrationStatus.ERROR: Action.REPORT_ERROR,
}

#: Statuses whose status confirmation is empty (the seed: "For the statuses Sending,
#: Corrections needed and Approved the status confirmation will be empty").
NO_CONFIRMATION = frozenset(
    {RegistrationStatus.SENDING, RegistrationStatus.CORRECTIONS_NEEDED, RegistrationStatus.APPROVED}
)


class TransitionRefused(Exception):
    def __init__(self, action: Action, status: RegistrationStatus) -> None:
        allowed = ", ".join(sorted(s.label for s in TRANSITIONS[action][0]))
        super().__init__(
            f"Cannot {action.value.replace('_', ' ')} a registration that is {status.label}; allowed from: {allowed}."
        )
        self.action = action
        self.status = status


def next_status(action: Action, current: RegistrationStatus) -> RegistrationStatus:
    """The status after ``action``; raises :class:`TransitionRefused` when not allowed."""
    allowed, target = TRANSITIONS[action]
    if current not in allowed:
        raise TransitionRefused(action, current)
    return target or current
