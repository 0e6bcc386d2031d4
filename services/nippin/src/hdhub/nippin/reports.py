"""The nightly report, per organisation and night: one result per reimbursed registration.

Which registrations should have made a message is asked of registrations over gRPC
(reconciliation), never read from nippin's own table: a registration whose hand-over was
lost shows as **not_found** exactly because nippin has no trace of it. The organisations
reported are registrations' too: those with stored registrations of reimbursed DCDs, the
only places a not_found can be.

Set-based, so a million registrations cost about what one SQL query over them costs
(bench/bench_nippin.py): registrations streams the organisation's reimbursed
registrations as Arrow pages, each page goes into a temporary table (``COPY`` on
PostgreSQL), and one ``INSERT ... SELECT`` joins them with each registration's newest
message and writes the report's rows. No registration passes through Python one by one.
"""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.ipc as ipc
from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Date,
    MetaData,
    String,
    Table,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from hdhub.common.auth import ActingFor
from hdhub.common.db import Database, new_id, utcnow
from hdhub.common.errors import FieldProblem, invalid
from hdhub.common.grpc import channel
from hdhub.common.paging import count
from hdhub.common.service_auth import acting_as_service
from hdhub.nippin.domain import message as xml_message
from hdhub.nippin.domain import report as rule
from hdhub.nippin.domain.statuses import ARCHIVED, ERROR, INVALID, STATUSES
from hdhub.nippin.store import NippinMessage, Report, ReportRow
from hdhub.proto.registrations.v1 import registrations_pb2 as reg_pb
from hdhub.proto.registrations.v1 import registrations_pb2_grpc as reg_grpc

log = logging.getLogger("hdhub.nippin.reports")

#: Who the nightly run acts as when it asks registrations for an organisation's registrations.
REPORT_ACTOR = "nippin-nightly-report"
NOT_FOUND_REASON = "no NIPPIN message was made for this registration"
#: The whole listing of an organisation's registrations, page after page (a million: ~20 s).
LISTING_TIMEOUT_SECONDS = 3600.0

#: What registrations said, one row per reimbursed registration; lives for one build.
EXPECTED = Table(
    "nippin_expected",
    MetaData(),
    Column("registration_id", String(36)),
    Column("registration_code", String(64)),
    Column("dcd_code", String(64)),
    Column("relevant", Boolean),
    Column("implant_date", Date),
    prefixes=["TEMPORARY"],
)


def _expected(page: bytes) -> pa.RecordBatch:
    """One page of registrations' answer as the rows of :data:`EXPECTED`."""
    batch = ipc.open_stream(pa.py_buffer(page)).read_next_batch()
    if xml_message.IMPLANT_DATE in batch.schema.names:
        as_time = pc.strptime(
            batch.column(xml_message.IMPLANT_DATE), format="%Y-%m-%d", unit="s", error_is_null=True
        )
        implant = pc.cast(as_time, pa.date32())
    else:
        implant = pa.nulls(batch.num_rows, pa.date32())
    return pa.RecordBatch.from_arrays(
        [
            batch.column("registration_id"),
            batch.column("registration_code"),
            batch.column("dcd_code"),
            batch.column("nippin_relevant"),
            implant,
        ],
        names=[c.name for c in EXPECTED.columns],
    )


async def reimbursed_registrations(
    organisation_id: str, actor: str = REPORT_ACTOR
) -> AsyncIterator[pa.RecordBatch]:
    """Every stored registration of a reimbursed DCD of the organisation, page by page (as
    rows of :data:`EXPECTED`)."""
    async with acting_as_service("nippin", ActingFor(organisation_id, actor)):
        stub = reg_grpc.RegistrationsServiceStub(channel("registrations"))
        request = reg_pb.StreamReimbursedRegistrationsRequest(organisation_id=organisation_id)
        async for page in stub.StreamReimbursedRegistrations(request, timeout=LISTING_TIMEOUT_SECONDS):
            yield _expected(page.registrations_arrow)


async def reimbursed_organisations() -> list[str]:
    """The organisations with stored registrations of reimbursed DCDs, as registrations
    knows them: every organisation where a registration can lack its message."""
    async with acting_as_service("nippin"):
        stub = reg_grpc.RegistrationsServiceStub(channel("registrations"))
        found = await stub.ListReimbursedOrganisations(reg_pb.ListReimbursedOrganisationsRequest())
    return list(found.organisation_ids)


async def registries(organisation_id: str, actor: str) -> list[reg_pb.ReimbursedDcd]:
    """The reimbursed registries, as registrations' catalogue has them (asked as nippin,
    for ``actor`` of the organisation)."""
    async with acting_as_service("nippin", ActingFor(organisation_id, actor)):
        stub = reg_grpc.RegistrationsServiceStub(channel("registrations"))
        found = await stub.ListReimbursedDcds(reg_pb.ListReimbursedDcdsRequest())
    return list(found.dcds)


async def newest_report(session: AsyncSession, organisation_id: str) -> Report | None:
    """The report built last (tonight's, or tonight's built again by a person)."""
    return (
        await session.execute(
            select(Report)
            .where(Report.organisation_id == organisation_id)
            .order_by(Report.built_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def records(
    session: AsyncSession,
    organisation_id: str,
    dcd_code: str,
    *,
    result: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[Report | None, list[ReportRow], int]:
    """A registry's records in the report built last (by implant date), one page of them,
    and how many match; ``result`` keeps one result only."""
    if result is not None and result not in rule.RESULTS:
        raise invalid([FieldProblem("result", "enum", f"result is one of {', '.join(rule.RESULTS)}")])
    report = await newest_report(session, organisation_id)
    if report is None:
        return None, [], 0
    query = select(ReportRow).where(ReportRow.report_id == report.id, ReportRow.dcd_code == dcd_code)
    if result is not None:
        query = query.where(ReportRow.result == result)
    total = await count(session, query)
    window = query.order_by(ReportRow.implant_date, ReportRow.id).limit(limit).offset(offset)
    return report, list((await session.execute(window)).scalars()), total


async def _store_page(session: AsyncSession, batch: pa.RecordBatch) -> None:
    """A page into :data:`EXPECTED`: COPY of Arrow's CSV on PostgreSQL, an INSERT elsewhere."""
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        await session.execute(insert(EXPECTED), batch.to_pylist())
        return
    out = io.BytesIO()
    pa_csv.write_csv(batch, out, pa_csv.WriteOptions(include_header=False))
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    names = ", ".join(c.name for c in EXPECTED.columns)
    async with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY {EXPECTED.name} ({names}) FROM STDIN (FORMAT csv)") as copy,
    ):
        await copy.write(out.getvalue())


class joined_reasons(FunctionElement[str]):
    """A JSON list of texts as one text, "; " between them (an INVALID message's reasons)."""

    type = String()
    inherit_cache = True


@compiles(joined_reasons, "postgresql")
def _joined_reasons_postgresql(element: joined_reasons, compiler: Any, **kw: Any) -> str:
    (reasons,) = element.clauses
    return (
        f"array_to_string(ARRAY(SELECT jsonb_array_elements_text({compiler.process(reasons, **kw)})), '; ')"
    )


@compiles(joined_reasons, "sqlite")
def _joined_reasons_sqlite(element: joined_reasons, compiler: Any, **kw: Any) -> str:
    (reasons,) = element.clauses
    return (
        f"coalesce((SELECT group_concat(value, '; ') FROM json_each({compiler.process(reasons, **kw)})), '')"
    )


def _result(status: Any) -> ColumnElement[str]:
    """:func:`hdhub.nippin.domain.report.result` as SQL (no message: not_found)."""
    return case(*((status == s, rule.result(s)) for s in STATUSES), else_=rule.result(None))


def _reason(m: type[NippinMessage]) -> ColumnElement[str]:
    return case(
        (m.status.is_(None), NOT_FOUND_REASON),
        (m.status == INVALID, joined_reasons(m.invalid_reasons)),
        (m.status.in_([ERROR, ARCHIVED]), m.last_error),
        else_="",
    )


def _report_rows(report_id: str, organisation_id: str) -> Any:
    """The report's rows: each expected registration with its newest message (by
    submission), kept when it should have made one or has one."""
    m, e = NippinMessage, EXPECTED.c
    newest = (
        select(m.registration_id, func.max(m.registration_version).label("version"))
        .where(m.organisation_id == organisation_id)
        .group_by(m.registration_id)
        .subquery()
    )
    joined = EXPECTED.outerjoin(newest, newest.c.registration_id == e.registration_id).outerjoin(
        m, and_(m.registration_id == newest.c.registration_id, m.registration_version == newest.c.version)
    )
    rows = (
        select(
            literal(report_id),
            literal(organisation_id),
            e.registration_id,
            func.coalesce(e.registration_code, ""),
            e.dcd_code,
            func.coalesce(m.implant_date, e.implant_date),
            _result(m.status),
            m.id,
            m.status,
            _reason(m),
        )
        .select_from(joined)
        .where(or_(m.id.is_not(None), e.relevant))
    )
    r = ReportRow
    columns = [
        r.report_id,
        r.organisation_id,
        r.registration_id,
        r.registration_code,
        r.dcd_code,
        r.implant_date,
        r.result,
        r.message_id,
        r.message_status,
        r.reason,
    ]
    return insert(ReportRow).from_select([c.key for c in columns], rows)


async def build(db: Database, organisation_id: str, night: date, *, actor: str = REPORT_ACTOR) -> Report:
    """Build (or build again) the organisation's report of ``night``."""
    report_id = new_id()
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
            id=report_id, organisation_id=organisation_id, night=night, counts={}, built_at=utcnow()
        )
        session.add(report)
        await session.flush()
        await session.run_sync(lambda s: EXPECTED.drop(s.connection(), checkfirst=True))
        await session.run_sync(lambda s: EXPECTED.create(s.connection()))
        async for batch in reimbursed_registrations(organisation_id, actor):
            await _store_page(session, batch)
        if db.is_postgres:
            # Without statistics the planner guesses the table fifty times too large and
            # compiles the join with JIT: a second lost on 50,000 registrations.
            await session.execute(text(f"ANALYZE {EXPECTED.name}"))
        await session.execute(_report_rows(report_id, organisation_id))
        await session.run_sync(lambda s: EXPECTED.drop(s.connection()))
        counted = await session.execute(
            select(ReportRow.result, func.count())
            .where(ReportRow.report_id == report_id)
            .group_by(ReportRow.result)
        )
        report.counts = dict.fromkeys(rule.RESULTS, 0) | {result: int(n) for result, n in counted.all()}
    log.info("NIPPIN report built", extra={"night": night.isoformat(), **report.counts})
    return report
