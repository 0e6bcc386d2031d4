"""Follow-ups (members who may read the organisation's registrations): the follow-up
registrations the central platform asked for (Follow-up needed), soonest due first, the
overdue ones marked, each with the registration it follows and a link to start it in the
DCD that follow-up uses. From registrations' ``ListFollowUps`` with the person's token
(only the registries granted to them)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Response

from hdhub.portal.pages.entry import ReaderPage
from hdhub.portal.pages.owners import registrations
from hdhub.portal.pages.web import PREFIX, PageRoute
from hdhub.proto.registrations.v1 import registrations_pb2 as pb

PAGE_SIZE = 50

router = APIRouter(prefix=f"{PREFIX}/o/{{organisation_id}}", route_class=PageRoute, include_in_schema=False)


@router.get("/follow-ups")
async def follow_ups(organisation_id: str, page: ReaderPage, number: int = 1) -> Response:
    """Soonest due first, so the overdue ones lead; each says whether it is overdue."""
    number = max(1, min(number, 10_000))
    answer = await registrations().ListFollowUps(
        pb.ListFollowUpsRequest(
            organisation_id=organisation_id, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
        ),
        metadata=page.metadata(),
    )
    now = datetime.now(UTC)
    rows = [(f, datetime.fromisoformat(f.due_at) < now) for f in answer.follow_ups]
    last = max(1, -(-answer.total // PAGE_SIZE))
    base = f"{PREFIX}/o/{organisation_id}/follow-ups"
    return page.render(
        "follow_ups.html",
        rows=rows,
        total=answer.total,
        overdue=sum(1 for _, late in rows if late),
        number=number,
        last=last,
        newer=f"{base}?number={number - 1}" if number > 1 else "",
        older=f"{base}?number={number + 1}" if number < last else "",
    )
