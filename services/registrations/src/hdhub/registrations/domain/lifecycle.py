"""The registration lifecycle of HD4DP (DOMAIN.md): which action is allowed from which
status, and where it leads. Pure rules, no I/O."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
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


class Confirmation(StrEnum):
    """Status confirmation, a sub-status once Submitted."""

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


EDITABLE = frozenset({Status.OPEN, Status.CORRECTIONS_NEEDED, Status.FOLLOW_UP_NEEDED, Status.ERROR})

TRANSITIONS: dict[Action, tuple[frozenset[Status], Status | None]] = {
    # (allowed from, leads to; None = stays where it is)
    Action.SAVE: (EDITABLE, None),
    Action.SUBMIT: (EDITABLE, Status.SENDING),
    Action.RESUBMIT: (frozenset(Status) - {Status.DELETED}, Status.SENDING),
    Action.PROCESSED: (frozenset({Status.SENDING}), Status.SUBMITTED),
    Action.REOPEN: (frozenset({Status.SUBMITTED}), Status.OPEN),
    Action.DELETE: (frozenset({Status.OPEN, Status.CORRECTIONS_NEEDED}), Status.DELETED),
    Action.REQUEST_CORRECTIONS: (frozenset({Status.SUBMITTED}), Status.CORRECTIONS_NEEDED),
    Action.APPROVE: (frozenset({Status.SUBMITTED}), Status.APPROVED),
    Action.REQUEST_FOLLOW_UP: (frozenset({Status.SUBMITTED, Status.APPROVED}), Status.FOLLOW_UP_NEEDED),
}


class TransitionRefused(Exception):
    def __init__(self, action: Action, status: Status) -> None:
        allowed = ", ".join(sorted(s.label for s in TRANSITIONS[action][0]))
        super().__init__(
            f"Cannot {action.value.replace('_', ' ')} a registration that is {status.label}; allowed from: {allowed}."
        )
        self.action = action
        self.status = status


def next_status(action: Action, current: Status) -> Status:
    """The status after ``action``; raises :class:`TransitionRefused` when not allowed."""
    allowed, target = TRANSITIONS[action]
    if current not in allowed:
        raise TransitionRefused(action, current)
    return target or current


def registration_code(dcd_number: int, year: int, sequence: int) -> str:
    """A registration code like ``206.24.000214.88``: DCD number, two-digit year, sequence,
    and two check digits (97 - n mod 97, as Belgian identifiers use) over the rest."""
    body = f"{dcd_number:03d}{year % 100:02d}{sequence:06d}"
    check = 97 - int(body) % 97
    return f"{dcd_number:03d}.{year % 100:02d}.{sequence:06d}.{check:02d}"
