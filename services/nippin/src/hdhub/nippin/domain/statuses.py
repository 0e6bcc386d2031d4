"""A message's statuses and the moves between them (each recorded with its time and cause).

    (new) --valid--> TO_SEND --sent--> SENT
    (new) --XSD fails--> INVALID
    TO_SEND / ERROR --unreachable, timeout, TACK error--> ERROR (retried with back-off)
    ERROR --sent--> SENT
    SENT --TACK error or no answer (FILE_SYSTEM)--> ERROR
    TO_SEND / ERROR / INVALID --a person, or too many TACK errors--> ARCHIVED

ARCHIVED is final: an archived message is never processed again. SENT is final too, but
for the answer of the FILE_SYSTEM gateway, which comes after the file was collected.
"""

from __future__ import annotations

from collections.abc import Mapping

TO_SEND, SENT, ERROR, INVALID, ARCHIVED = "TO_SEND", "SENT", "ERROR", "INVALID", "ARCHIVED"
STATUSES = (TO_SEND, SENT, ERROR, INVALID, ARCHIVED)
#: The status a message is made in is the move from None.
TRANSITIONS: Mapping[str | None, frozenset[str]] = {
    None: frozenset({TO_SEND, INVALID}),
    TO_SEND: frozenset({SENT, ERROR, ARCHIVED}),
    ERROR: frozenset({SENT, ERROR, ARCHIVED}),
    SENT: frozenset({ERROR}),
    INVALID: frozenset({ARCHIVED}),
    ARCHIVED: frozenset(),
}
#: Statuses the sender picks up.
SENDABLE = frozenset({TO_SEND, ERROR})
#: Statuses a person may archive.
ARCHIVABLE = frozenset(s for s, targets in TRANSITIONS.items() if s is not None and ARCHIVED in targets)


class IllegalTransition(ValueError):
    def __init__(self, current: str | None, target: str) -> None:
        super().__init__(f"a {current or 'new'} message cannot become {target}")
        self.current, self.target = current, target


def check(current: str | None, target: str) -> None:
    """Raise :class:`IllegalTransition` unless ``current`` may move to ``target``."""
    if target not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(current, target)
