"""Registrations' REST routes under /api/v1: create (or replace by business key), search,
read, save, submit, reopen, delete, review, history; ETag / If-Match and Idempotency-Key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common import auth
from hdhub.common.errors import FieldProblem, forbidden, invalid
from hdhub.common.paging import Limit, Offset
from hdhub.common.web import CurrentPrincipal, Language, Moment, idempotent, request_fingerprint
from hdhub.registrations.delivery.schemas import DecisionOut
from hdhub.registrations.deps import (
    Author,
    CatalogueDep,
    DeliveriesDep,
    IdempotencyKey,
    IfMatch,
    IfMatchOptional,
    Readable,
    RegistrationsDep,
    Writable,
    actor_of,
    etag,
)
from hdhub.registrations.records.lifecycle import Action, RegistrationStatus
from hdhub.registrations.records.period import Period
from hdhub.registrations.records.schemas import (
    HistoryEntry,
    HistoryPage,
    RegistrationIn,
    RegistrationOut,
    RegistrationPage,
    RegistrationSummary,
    ReviewIn,
    ValuesIn,
)
from hdhub.registrations.records.service import Checked, Registrations
from hdhub.registrations.store import IdempotencyKey as IdempotencyKeyRow

router = APIRouter(prefix="/api/v1", tags=["registrations"])

REVIEW_ACTIONS = {
    "corrections_needed": Action.REQUEST_CORRECTIONS,
    "approved": Action.APPROVE,
    "follow_up_needed": Action.REQUEST_FOLLOW_UP,
}
SINCE = "Only those at or after this moment (ISO 8601; without an offset, UTC)."
UNTIL = "Only those before this moment (ISO 8601; without an offset, UTC)."

#: The HTTP answer of a write: status, JSON body, headers.
Answer = tuple[int, Any, dict[str, str]]


async def store_once(
    registrations: Registrations,
    organisation_id: str,
    *,
    key: str | None,
    fingerprint: Callable[[], str],
    check: Callable[[], Awaitable[Checked]],
    store: Callable[[AsyncSession, Checked], Awaitable[Answer]],
) -> JSONResponse:
    """Store one whole record and answer: ``check`` validates it, ``store`` stores it in
    the transaction this opens and returns the answer.

    The transaction is applied again on fresh state when it loses a race (the same
    business key created meanwhile). With an Idempotency-Key ``key`` the answer is given
    once per key and replayed to a retry: the record is then validated in the
    transaction, so a retry after a new DCD version was imported still gets the first
    answer; without one it is validated before the transaction opens."""
    checked = None if key else await check()

    async def effect(session: AsyncSession) -> Answer:
        nonlocal checked
        if checked is None:
            checked = await check()
        return await store(session, checked)

    return await registrations.db.retrying_session(
        [organisation_id],
        lambda session: idempotent(
            session,
            IdempotencyKeyRow,
            key=key,
            organisation_id=organisation_id,
            fingerprint=fingerprint() if key else "",
            effect=lambda: effect(session),
        ),
    )


def refuse_empty_periods(**periods: Period | None) -> None:
    """A range whose end is not after its start is a mistake, not an empty answer."""
    problems = [
        FieldProblem(f"{name}_to", "period", f"{name}_to must be after {name}_from")
        for name, period in periods.items()
        if period is not None and period.empty
    ]
    if problems:
        raise invalid(problems)


@router.post(
    "/registrations",
    status_code=201,
    response_model=RegistrationOut,
    summary="Create (or replace by business key) a registration, optionally submitting it",
    responses={
        200: {
            "model": RegistrationOut,
            "description": "An existing registration with the same business key was updated",
        }
    },
)
async def create(
    body: RegistrationIn,
    request: Request,
    principal: CurrentPrincipal,
    author: Author,
    lang: Language,
    registrations: RegistrationsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    principal.require(auth.Action.REGISTRATION_WRITE, body.organisation_id)
    # The registry's grant before anything, a replayed Idempotency-Key included: a replay
    # answers the first request's registration, which is no business of a caller without it.
    entry = await registrations.catalogue.get(body.dcd, body.dcd_version)
    principal.require_registry(
        auth.Action.REGISTRATION_WRITE, body.organisation_id, entry.definition.project_code
    )

    async def store(session: AsyncSession, record: Checked) -> Answer:
        outcome = await registrations.put(
            session,
            organisation_id=body.organisation_id,
            record=record,
            submit=body.submit,
            actor=author,
            replace_submitted=False,
        )
        reg = outcome.registration
        out = RegistrationOut.full(reg, outcome.warnings).model_dump(mode="json")
        headers = {"ETag": etag(reg.version), "Location": f"/api/v1/registrations/{reg.id}"}
        return (201 if outcome.created else 200), out, headers

    return await store_once(
        registrations,
        body.organisation_id,
        key=idempotency_key,
        fingerprint=lambda: request_fingerprint("POST", request.url.path, body.model_dump()),
        check=lambda: registrations.checked(
            dcd_code=body.dcd, version=body.dcd_version, values=body.values, lang=lang, submitting=body.submit
        ),
        store=store,
    )


@router.get("/registrations", response_model=RegistrationPage, summary="Search registrations")
async def search(
    readable: Readable,
    registrations: RegistrationsDep,
    organisation_id: str | None = None,
    dcd: str | None = None,
    status: RegistrationStatus | None = None,
    business_key: str | None = None,
    include_deleted: bool = False,
    created_from: Annotated[Moment | None, Query(description=SINCE)] = None,
    created_to: Annotated[Moment | None, Query(description=UNTIL)] = None,
    updated_from: Annotated[Moment | None, Query(description=SINCE)] = None,
    updated_to: Annotated[Moment | None, Query(description=UNTIL)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> RegistrationPage:
    scope = readable
    if organisation_id is not None:
        if organisation_id not in scope:
            raise forbidden()
        scope = readable.narrowed(organisation_id)
    created, updated = Period.of(created_from, created_to), Period.of(updated_from, updated_to)
    refuse_empty_periods(created=created, updated=updated)
    items, total = await registrations.search(
        scope,
        dcd_code=dcd,
        status=status,
        business_key=business_key,
        include_deleted=include_deleted,
        created=created,
        updated=updated,
        limit=limit,
        offset=offset,
    )
    return RegistrationPage(
        items=[RegistrationSummary.of(r) for r in items], total=total, limit=limit, offset=offset
    )


@router.get("/registrations/{registration_id}", response_model=RegistrationOut)
async def get(
    registration_id: str,
    readable: Readable,
    registrations: RegistrationsDep,
    catalogue: CatalogueDep,
    deliveries: DeliveriesDep,
    response: Response,
) -> RegistrationOut:
    reg = await registrations.get(readable, registration_id)
    response.headers["ETag"] = etag(reg.version)
    decision = await deliveries.latest_applied([reg.organisation_id], reg.id)
    return RegistrationOut.full(
        reg,
        superseded_by=await catalogue.superseded_by(reg.dcd_code, reg.dcd_version),
        central_decision=DecisionOut.of(decision) if decision is not None else None,
    )


class Change:
    """The caller's change to one registration, on the version it read (If-Match)."""

    def __init__(
        self,
        writable: Writable,
        author: Author,
        if_match: IfMatch,
        lang: Language,
        registrations: RegistrationsDep,
        response: Response,
    ) -> None:
        self.writable, self.author, self.if_match = writable, author, if_match
        self.lang, self.registrations, self.response = lang, registrations, response

    async def save(self, registration_id: str, body: ValuesIn) -> RegistrationOut:
        outcome = await self.registrations.update(
            organisations=self.writable,
            registration_id=registration_id,
            expected_version=self.if_match,
            values=body.values,
            lang=self.lang,
            actor=self.author,
            dcd_version=body.dcd_version,
        )
        self.response.headers["ETag"] = etag(outcome.registration.version)
        return RegistrationOut.full(outcome.registration, outcome.warnings)

    async def take(self, action: Action, registration_id: str) -> RegistrationOut:
        """A lifecycle action: submit, reopen, delete."""
        reg = await self.registrations.act(
            organisations=self.writable,
            registration_id=registration_id,
            expected_version=self.if_match,
            action=action,
            actor=self.author,
            lang=self.lang,
        )
        self.response.headers["ETag"] = etag(reg.version)
        return RegistrationOut.full(reg)


ChangeDep = Annotated[Change, Depends(Change)]


@router.put("/registrations/{registration_id}", response_model=RegistrationOut, summary="Save new values")
async def put(registration_id: str, body: ValuesIn, change: ChangeDep) -> RegistrationOut:
    return await change.save(registration_id, body)


@router.post(
    "/registrations/{registration_id}/submit",
    status_code=202,
    response_model=RegistrationOut,
    summary="Submit: Sending, then Submitted once processed",
)
async def submit(registration_id: str, change: ChangeDep) -> RegistrationOut:
    return await change.take(Action.SUBMIT, registration_id)


@router.post("/registrations/{registration_id}/reopen", response_model=RegistrationOut)
async def reopen(registration_id: str, change: ChangeDep) -> RegistrationOut:
    return await change.take(Action.REOPEN, registration_id)


@router.delete("/registrations/{registration_id}", response_model=RegistrationOut)
async def delete(registration_id: str, change: ChangeDep) -> RegistrationOut:
    return await change.take(Action.DELETE, registration_id)


@router.post(
    "/registrations/{registration_id}/review",
    response_model=RegistrationOut,
    summary="The operator sets a review status by hand (the central platform's decisions come "
    "over the return channel, docs/delivery.md)",
)
async def review(
    registration_id: str,
    body: ReviewIn,
    principal: CurrentPrincipal,
    if_match: IfMatchOptional,
    registrations: RegistrationsDep,
    response: Response,
) -> RegistrationOut:
    principal.require(auth.Action.REGISTRATION_REVIEW)
    organisation = await registrations.organisation_of(registration_id)
    principal.require(auth.Action.REGISTRATION_REVIEW, organisation)
    reg = await registrations.act(
        organisations=[organisation],
        registration_id=registration_id,
        expected_version=if_match,
        action=REVIEW_ACTIONS[body.decision],
        actor=actor_of(principal, "review"),
        comment=body.comment,
    )
    response.headers["ETag"] = etag(reg.version)
    return RegistrationOut.full(reg)


@router.get("/registrations/{registration_id}/history", response_model=HistoryPage)
async def history(
    registration_id: str,
    readable: Readable,
    registrations: RegistrationsDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> HistoryPage:
    """The registration's versions, oldest first, each with its values."""
    versions = await registrations.history(readable, registration_id)
    entries = [HistoryEntry.of(v, values) for v, values in versions]
    return HistoryPage.window(entries, limit=limit, offset=offset)
