"""The NIPPIN Manager's export: the results of the report built last for one registry and a range
of implant dates, as CSV in the object store (sealed: it may hold SSINs), downloadable when
ready. Every cell goes through :func:`hdhub.common.spreadsheet.safe_cell`.

The SSIN column is there only when asked for by someone who may also read the
organisation's registrations (``nominative``, checked by :func:`request`). The REST routes
and the gRPC methods (the portal's pages) both go through this module."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.auth import Action, Principal
from hdhub.common.db import Database, after_commit, utcnow
from hdhub.common.errors import FieldProblem, Problem, invalid, not_found
from hdhub.common.objectstore import SealedStore
from hdhub.common.paging import count
from hdhub.common.spreadsheet import safe_cell
from hdhub.nippin.reports import newest_report
from hdhub.nippin.service import Messages
from hdhub.nippin.store import Export, NippinMessage, ReportRow

COLUMNS = ["registration_code", "dcd_code", "implant_date", "result", "nippin_status", "reason", "message_id"]
EXPORT_JOB = "export"
#: The widest range of implant dates one export covers.
MAX_EXPORT_DAYS = 366 * 5


def object_key(export: Export) -> str:
    return f"nippin/exports/{export.organisation_id}/{export.id}.csv"


def _ssin(messages: Messages, message: NippinMessage | None) -> str:
    if message is None or message.xml_sealed is None:
        return ""
    from xml.etree import ElementTree as ET

    from hdhub.nippin.domain.message import NAMESPACE

    found = ET.fromstring(messages.xml_of(message)).find(f".//{{{NAMESPACE}}}PatientSSIN")
    return (found.text or "") if found is not None else ""


def check_range(date_from: date, date_to: date) -> None:
    if date_to < date_from:
        raise invalid([FieldProblem("date_to", "range", "the end date is before the start date")])
    if (date_to - date_from).days > MAX_EXPORT_DAYS:
        raise invalid([FieldProblem("date_to", "range", f"an export covers at most {MAX_EXPORT_DAYS} days")])


async def request(
    session: AsyncSession,
    messages: Messages,
    *,
    organisation_id: str,
    principal: Principal,
    dcd_code: str,
    date_from: date,
    date_to: date,
    nominative: bool,
) -> Export:
    """A NIPPIN Manager asks for an export: the row, and its job, in ``session``'s transaction."""
    check_range(date_from, date_to)
    if nominative and not principal.can(Action.REGISTRATION_READ, organisation_id):
        raise Problem(
            403,
            "nominative-export-forbidden",
            "Forbidden",
            "the SSIN column is for members who may read the registrations",
        )
    export = Export(
        organisation_id=organisation_id,
        dcd_code=dcd_code,
        date_from=date_from,
        date_to=date_to,
        nominative=nominative,
        requested_by=principal.username,
    )
    session.add(export)
    await session.flush()
    messages.jobs.enqueue(
        session, EXPORT_JOB, organisation_id=organisation_id, subject_id=export.id, actor=principal.username
    )
    after_commit(session, messages.wake.notify)
    return export


async def listing(
    session: AsyncSession, organisation_id: str, *, limit: int, offset: int = 0
) -> tuple[list[Export], int]:
    """A page of the organisation's exports, newest first, and how many there are."""
    query = select(Export).where(Export.organisation_id == organisation_id)
    total = await count(session, query)
    window = query.order_by(Export.created_at.desc(), Export.id).limit(limit).offset(offset)
    return list((await session.execute(window)).scalars()), total


async def get(session: AsyncSession, export_id: str) -> Export:
    export = await session.get(Export, export_id)
    if export is None:
        raise not_found("Export")
    return export


def filename(export: Export) -> str:
    return f"nippin-{export.dcd_code}-{export.date_from}-{export.date_to}.csv"


def download(objects: SealedStore, export: Export) -> AsyncIterator[bytes]:
    """The export's CSV, chunk by chunk; 409 ``export-not-ready`` before it is ready."""
    if export.state != "ready":
        raise Problem(409, "export-not-ready", "The export is not ready", f"the export is {export.state}")
    return objects.stream(export.object_key)


async def produce(db: Database, messages: Messages, objects: SealedStore, export_id: str) -> None:
    """Write one export's CSV and mark it ready."""
    async with db.system_session() as session:
        export = await session.get(Export, export_id)
        if export is None or export.state != "queued":
            return
        org = export.organisation_id
    async with db.session([org]) as session:
        report = await newest_report(session, org)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(COLUMNS + (["patient_ssin"] if export.nominative else []))
    written = 0
    if report is not None:
        async with db.session([org]) as session:
            rows = (
                (
                    await session.execute(
                        select(ReportRow)
                        .where(
                            ReportRow.report_id == report.id,
                            ReportRow.dcd_code == export.dcd_code,
                            ReportRow.implant_date >= export.date_from,
                            ReportRow.implant_date <= export.date_to,
                        )
                        .order_by(ReportRow.implant_date, ReportRow.registration_code)
                    )
                )
                .scalars()
                .all()
            )
            for row in rows:
                cells: list[object] = [
                    row.registration_code,
                    row.dcd_code,
                    row.implant_date.isoformat() if isinstance(row.implant_date, date) else "",
                    row.result,
                    row.message_status or "",
                    row.reason,
                    row.message_id or "",
                ]
                if export.nominative:
                    message = await session.get(NippinMessage, row.message_id) if row.message_id else None
                    cells.append(_ssin(messages, message))
                writer.writerow([safe_cell(c) for c in cells])
                written += 1
    await objects.put(object_key(export), out.getvalue().encode("utf-8"))
    async with db.system_session() as session:
        stored = await session.get(Export, export_id)
        if stored is not None:
            stored.state, stored.rows, stored.object_key, stored.ready_at = (
                "ready",
                written,
                object_key(export),
                utcnow(),
            )
