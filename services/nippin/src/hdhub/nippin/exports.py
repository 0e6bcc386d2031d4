"""The NIPPIN Manager's export: the results of the report built last for one registry and a range
of implant dates, as CSV in the object store (sealed: it may hold SSINs), downloadable when
ready. Every cell goes through :func:`hdhub.common.spreadsheet.safe_cell`.

The SSIN column is there only when asked for by someone who may also read the
organisation's registrations (``nominative``, checked by the REST edge)."""

from __future__ import annotations

import csv
import io
from datetime import date

from sqlalchemy import select

from hdhub.common.db import Database, utcnow
from hdhub.common.objectstore import SealedStore
from hdhub.common.spreadsheet import safe_cell
from hdhub.nippin.service import Messages
from hdhub.nippin.store import Export, NippinMessage, Report, ReportRow

COLUMNS = ["registration_code", "dcd_code", "implant_date", "result", "nippin_status", "reason", "message_id"]
EXPORT_JOB = "export"


def object_key(export: Export) -> str:
    return f"nippin/exports/{export.organisation_id}/{export.id}.csv"


def _ssin(messages: Messages, message: NippinMessage | None) -> str:
    if message is None or message.xml_sealed is None:
        return ""
    from xml.etree import ElementTree as ET

    from hdhub.nippin.domain.message import NAMESPACE

    found = ET.fromstring(messages.xml_of(message)).find(f".//{{{NAMESPACE}}}PatientSSIN")
    return (found.text or "") if found is not None else ""


async def newest_report(db: Database, organisation_id: str) -> Report | None:
    """The report built last (tonight's, or tonight's built again by a person)."""
    async with db.session([organisation_id]) as session:
        return (
            await session.execute(
                select(Report)
                .where(Report.organisation_id == organisation_id)
                .order_by(Report.built_at.desc())
                .limit(1)
            )
        ).scalar_one_or_none()


async def produce(db: Database, messages: Messages, objects: SealedStore, export_id: str) -> None:
    """Write one export's CSV and mark it ready."""
    async with db.system_session() as session:
        export = await session.get(Export, export_id)
        if export is None or export.state != "queued":
            return
        org = export.organisation_id
    report = await newest_report(db, org)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(COLUMNS + (["patient_ssin"] if export.nominative else []))
    count = 0
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
                count += 1
    await objects.put(object_key(export), out.getvalue().encode("utf-8"))
    async with db.system_session() as session:
        stored = await session.get(Export, export_id)
        if stored is not None:
            stored.state, stored.rows, stored.object_key, stored.ready_at = (
                "ready",
                count,
                object_key(export),
                utcnow(),
            )
