"""The nightly report's rule: one result per reimbursed registration (DOMAIN.md, NIPPIN).

- **valid**: the payload is fine and the message is SENT or TO_SEND;
- **invalid**: the message is INVALID or ARCHIVED;
- **not_found**: the registration should have made a message (registrations says so, by
  reconciliation) and nippin has none;
- **not_sent**: the message could not be delivered (ERROR).
"""

from __future__ import annotations

from collections.abc import Mapping

from hdhub.nippin.domain.statuses import ARCHIVED, ERROR, INVALID, SENT, TO_SEND

VALID, INVALID_RESULT, NOT_FOUND, NOT_SENT = "valid", "invalid", "not_found", "not_sent"
RESULTS = (VALID, INVALID_RESULT, NOT_FOUND, NOT_SENT)
_BY_STATUS: Mapping[str, str] = {
    SENT: VALID,
    TO_SEND: VALID,
    INVALID: INVALID_RESULT,
    ARCHIVED: INVALID_RESULT,
    ERROR: NOT_SENT,
}


def result(status: str | None) -> str:
    """The result of a registration whose newest message has ``status`` (None: no message)."""
    return NOT_FOUND if status is None else _BY_STATUS[status]
