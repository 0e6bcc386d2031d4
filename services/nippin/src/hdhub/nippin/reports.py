"""The nightly report, per organisation and night: one result per reimbursed registration.

Which registrations should have made a message is asked of registrations over gRPC
(reconciliation), never read from nippin's own table: a registration whose hand-over was
lost shows as **not_found** exactly because nippin has no trace of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, select

from hdhub.common.auth import ActingFor
from hdhub.common.db import Database, bulk_insert, new_id, utcnow
from hdhub.common.grpc import channel
from hdhub.common.service_auth import acting_as_service
from hdhub.nippin.domain import message as xml_message
from hdhub.nippin.domain import report as rule
from hdhub.nippin.domain.statuses import ARCHIVED, ERROR, INVALID
from hdhub.nippin.store import NippinMessage, Report, ReportRow
from hdhub.proto.registrations.v1 import registrations_pb2 as reg_pb
from hdhub.proto.registrations.v1 import registrations_pb2_grpc as reg_grpc

log = logging.getLogger("hdhub.nippin.reports")

#: Who the nightly run acts as when it asks registrations for an organisation's registrations.
REPORT_ACTOR = "nippin-nightly-report"
PAGE = 5000
NOT_FOUND_REASON = "no NIPPIN message was made for this registration"


@dataclass(frozen=True, slots=True)
class Expected:
    """A stored reimbursed registration, as registrations reports it."""

    registration_id: str
    registration_code: str
    dcd_code: str
    relevant: bool
    implant_date: date | None


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


async def reimbursed_registrations(
    organisation_id: str, actor: str = REPORT_ACTOR
) -> AsyncIterator[Expected]:
    """Every stored registration of a reimbursed DCD of the organisation, page by page."""
    async with acting_as_service("nippin", ActingFor(organisation_id, actor)):
        stub = reg_grpc.RegistrationsServiceStub(channel("registrations"))

        def fetch(after: str) -> asyncio.Task[Any]:
            request = reg_pb.ListReimbursedRegistrationsRequest(
                organisation_id=organisation_id, after_id=after, limit=PAGE
            )
            return asyncio.ensure_future(stub.ListReimbursedRegistrations(request))

        # The next page is asked for before this one is worked through: registrations
        # reads and encodes it meanwhile.
        pending: asyncio.Task[Any] | None = fetch("")
        try:
            while pending is not None:
                page = await pending
                full = len(page.registrations) == PAGE
                pending = fetch(page.registrations[-1].registration_id) if full else None
                for r in page.registrations:
                    yield Expected(
                        r.registration_id,
                        r.registration_code,
                        r.dcd_code,
                        r.nippin_relevant,
                        _date(r.values.get(xml_message.IMPLANT_DATE, "")),
                    )
        finally:
            if pending is not None:
                pending.cancel()


async def _chain(first: Expected | None, rest: AsyncIterator[Expected]) -> AsyncIterator[Expected]:
    if first is None:
        return
    yield first
    async for e in rest:
        yield e


def _reason(m: Any, reasons: dict[str, list[str]]) -> str:
    if m.status == INVALID:
        return "; ".join(reasons.get(m.id, []))
    if m.status in (ERROR, ARCHIVED):
        return str(m.last_error)
    return ""


async def newest_messages(db: Database, organisation_id: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The newest message of each registration of the organisation (by submission), and the
    reasons of the INVALID ones (read apart: the few that have any)."""
    m = NippinMessage
    async with db.session([organisation_id]) as session:
        rows = (
            await session.execute(
                select(m.registration_id, m.id, m.status, m.implant_date, m.last_error)
                .where(m.organisation_id == organisation_id)
                .order_by(m.registration_id, m.registration_version)
            )
        ).all()
        reasons = (
            await session.execute(
                select(m.id, m.invalid_reasons).where(
                    m.organisation_id == organisation_id, m.status == INVALID
                )
            )
        ).all()
    newest = {r.registration_id: r for r in rows}  # the last of each registration wins: its newest
    return newest, {r.id: list(r.invalid_reasons) for r in reasons}


async def build(db: Database, organisation_id: str, night: date, *, actor: str = REPORT_ACTOR) -> Report:
    """Build (or build again) the organisation's report of ``night``."""
    # nippin's side is read while registrations answers the first page.
    own = asyncio.ensure_future(newest_messages(db, organisation_id))
    listing = reimbursed_registrations(organisation_id, actor)
    try:
        first = await anext(listing, None)
        messages, reasons = await own
    except BaseException:
        own.cancel()
        raise
    rows: list[dict[str, Any]] = []
    report_id = new_id()
    async for e in _chain(first, listing):
        m = messages.get(e.registration_id)
        if m is None and not e.relevant:
            continue  # its values make no message (destination::nippin_relevant)
        rows.append(
            {
                "report_id": report_id,
                "organisation_id": organisation_id,
                "registration_id": e.registration_id,
                "registration_code": e.registration_code,
                "dcd_code": e.dcd_code,
                "implant_date": (m.implant_date if m is not None else None) or e.implant_date,
                "result": rule.result(m.status if m is not None else None),
                "message_id": m.id if m is not None else None,
                "message_status": m.status if m is not None else None,
                "reason": _reason(m, reasons) if m is not None else NOT_FOUND_REASON,
            }
        )
    counts = dict.fromkeys(rule.RESULTS, 0)
    for row in rows:
        counts[row["result"]] += 1
    async with db.session([organisation_id]) as session:
        old = (
            await session.execute(
                select(Report.id).where(Report.organisation_id == organisation_id, Report.night == night)
            )
        ).scalar_one_or_none()
        if old is not None:
            await session.execute(delete(ReportRow).where(ReportRow.report_id == old))
            await session.execute(delete(Report).where(Report.id == old))
        report = Report(
            id=report_id, organisation_id=organisation_id, night=night, counts=counts, built_at=utcnow()
        )
        session.add(report)
        await session.flush()
        await bulk_insert(session, ReportRow, rows)
    log.info("NIPPIN report built", extra={"night": night.isoformat(), "rows": len(rows), **counts})
    return report


async def organisations(db: Database, configured: list[str]) -> list[str]:
    """The organisations reported every night: those with messages, and the configured ones."""
    async with db.system_session() as session:
        known = set((await session.execute(select(NippinMessage.organisation_id).distinct())).scalars())
    return sorted(known | set(configured))


def night_of(now: datetime) -> date:
    return now.date()
