"""The way to the central platform as a registration's page tells it (``entry.timeline``):
received only once a send got through, and why it waits while it does."""

from __future__ import annotations

from typing import Any

from hdhub.portal.pages.entry import timeline
from hdhub.proto.registrations.v1 import registrations_pb2 as pb


class Words:
    """A page's ``_`` in English."""

    lang = "en"

    @staticmethod
    def _(message: str, **values: Any) -> str:
        return message % values if values else message


def told(delivery: pb.RegistrationDelivery) -> list[str]:
    found = pb.GetRegistrationHistoryResponse(
        versions=[pb.RegistrationVersion(action="submit", at="2026-12-06T10:00:00Z")], delivery=delivery
    )
    return [words for _, _, words in timeline(Words(), found)]  # type: ignore[arg-type]


def test_a_first_send_the_central_platform_never_got_is_not_said_received() -> None:
    events = told(
        pb.RegistrationDelivery(
            state="pending",
            reason="central-unavailable",
            attempts=0,
            first_sent_at="2026-12-06T10:00:01Z",
            last_attempt_at="2026-12-06T10:00:01Z",
        )
    )
    assert not any(e.startswith("Received") for e in events), events
    assert "Waiting: The central platform could not be reached." in events


def test_a_send_that_got_through_is_received_then_confirmed() -> None:
    events = told(
        pb.RegistrationDelivery(
            state="ok",
            attempts=1,
            first_sent_at="2026-12-06T10:00:01Z",
            last_sent_at="2026-12-06T10:00:01Z",
            confirmed_at="2026-12-06T10:00:05Z",
        )
    )
    assert events == [
        "Submitted: Sending",
        "Received by the central platform: status confirmation Pending",
        "Status confirmation OK",
    ]
