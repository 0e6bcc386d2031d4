"""The NIPPIN Manager's view over gRPC, as the portal calls it with the person's token: the
same rules as the REST routes, and only the organisation's NIPPIN Manager gets in."""

from __future__ import annotations

import csv
import io

import grpc
import pytest

from hdhub.common.grpc import channel, problem_from_rpc_error
from hdhub.proto.nippin.v1 import nippin_pb2 as pb
from hdhub.proto.nippin.v1 import nippin_pb2_grpc as pb_grpc
from services.nippin.tests.integration.support import MANAGER, NURSE, ORG, implant, message_in, submit, until
from tests.support.stack import Stack


def _stub() -> pb_grpc.NippinServiceStub:
    return pb_grpc.NippinServiceStub(channel("nippin"))


async def _as(stack: Stack, username: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {await stack.token(username)}"),)


async def test_the_managers_view_over_grpc_lists_archives_and_exports(stack: Stack) -> None:
    me = await _as(stack, MANAGER)
    stub = _stub()
    registries = await stub.ListRegistries(pb.ListRegistriesRequest(organisation_id=ORG), metadata=me)
    assert [r.dcd_code for r in registries.registries] == ["PACEMAKER"]
    assert registries.registries[0].labels["nl"]

    reg = await submit(stack, implant(IDC_PAT="", TX_PAT_LAST_NAME="Goossens", TX_PAT_FIRST_NAME="An"))
    invalid = await message_in(stack, reg["id"], "INVALID")
    built = await stub.BuildReport(pb.BuildReportRequest(organisation_id=ORG), metadata=me)
    assert built.report.counts["invalid"] >= 1
    records = await stub.ListRecords(
        pb.ListRecordsRequest(
            organisation_id=ORG, dcd_code="PACEMAKER", result=pb.REPORT_RESULT_INVALID, limit=1000
        ),
        metadata=me,
    )
    mine = next(r for r in records.records if r.registration_id == reg["id"])
    assert mine.message_status == pb.MESSAGE_STATUS_INVALID and "PatientSSIN" in mine.reason
    assert records.total >= 1 and all(r.result == pb.REPORT_RESULT_INVALID for r in records.records)

    archived = await stub.ArchiveMessage(
        pb.ArchiveMessageRequest(organisation_id=ORG, message_id=invalid["id"], reason="Billed by hand"),
        metadata=me,
    )
    assert archived.message.status == pb.MESSAGE_STATUS_ARCHIVED
    last = archived.message.transitions[-1]
    assert (last.to_status, last.actor) == (pb.MESSAGE_STATUS_ARCHIVED, MANAGER)
    assert "Billed by hand" in last.cause

    day = mine.implant_date
    export = (
        await stub.CreateExport(
            pb.CreateExportRequest(organisation_id=ORG, dcd_code="PACEMAKER", date_from=day, date_to=day),
            metadata=me,
        )
    ).export
    assert export.state == pb.EXPORT_STATE_QUEUED
    with pytest.raises(grpc.aio.AioRpcError) as early:
        async for _ in stub.DownloadExport(
            pb.DownloadExportRequest(organisation_id=ORG, export_id=export.id), metadata=me
        ):
            pass
    assert problem_from_rpc_error(early.value).slug == "export-not-ready"

    async def ready() -> bool:
        listed = await stub.ListExports(pb.ListExportsRequest(organisation_id=ORG), metadata=me)
        return any(e.id == export.id and e.state == pb.EXPORT_STATE_READY for e in listed.exports)

    await until(ready, stack=stack)
    parts = [
        part
        async for part in stub.DownloadExport(
            pb.DownloadExportRequest(organisation_id=ORG, export_id=export.id), metadata=me
        )
    ]
    assert parts[0].filename == f"nippin-PACEMAKER-{day}-{day}.csv"
    rows = list(csv.DictReader(io.StringIO(b"".join(p.chunk for p in parts).decode()), delimiter=";"))
    assert any(r["message_id"] == invalid["id"] and r["nippin_status"] == "INVALID" for r in rows)


async def test_a_bad_archive_reason_or_export_range_is_refused_with_its_field(stack: Stack) -> None:
    me = await _as(stack, MANAGER)
    stub = _stub()
    with pytest.raises(grpc.aio.AioRpcError) as short:
        await stub.ArchiveMessage(
            pb.ArchiveMessageRequest(organisation_id=ORG, message_id="no-such", reason=" x "), metadata=me
        )
    problem = problem_from_rpc_error(short.value)
    assert problem.status == 422 and [e.field for e in problem.errors] == ["reason"]
    with pytest.raises(grpc.aio.AioRpcError) as backwards:
        await stub.CreateExport(
            pb.CreateExportRequest(
                organisation_id=ORG, dcd_code="PACEMAKER", date_from="2025-12-31", date_to="31/01/2025"
            ),
            metadata=me,
        )
    problem = problem_from_rpc_error(backwards.value)
    assert problem.status == 422 and [e.field for e in problem.errors] == ["date_to"]
    with pytest.raises(grpc.aio.AioRpcError) as nominative:
        await stub.CreateExport(
            pb.CreateExportRequest(
                organisation_id=ORG,
                dcd_code="PACEMAKER",
                date_from="2025-01-01",
                date_to="2025-12-31",
                nominative=True,
            ),
            metadata=me,
        )
    assert problem_from_rpc_error(nominative.value).slug == "nominative-export-forbidden"


@pytest.mark.parametrize(
    ("who", "organisation"),
    [(NURSE, ORG), ("biologist@lab-demo.test", ORG), (MANAGER, "lab-demo"), ("manager@az-demo.test", ORG)],
    ids=["registrant-same-organisation", "another-organisations-member", "manager-elsewhere", "user-manager"],
)
async def test_only_the_organisations_nippin_manager_calls_the_managers_methods(
    stack: Stack, who: str, organisation: str
) -> None:
    metadata = await _as(stack, who)
    stub = _stub()
    calls = [
        stub.ListRegistries(pb.ListRegistriesRequest(organisation_id=organisation), metadata=metadata),
        stub.ListRecords(
            pb.ListRecordsRequest(organisation_id=organisation, dcd_code="PACEMAKER"), metadata=metadata
        ),
        stub.BuildReport(pb.BuildReportRequest(organisation_id=organisation), metadata=metadata),
        stub.GetMessage(
            pb.GetMessageRequest(organisation_id=organisation, message_id="x"), metadata=metadata
        ),
        stub.ArchiveMessage(
            pb.ArchiveMessageRequest(organisation_id=organisation, message_id="x", reason="because"),
            metadata=metadata,
        ),
        stub.CreateExport(
            pb.CreateExportRequest(
                organisation_id=organisation,
                dcd_code="PACEMAKER",
                date_from="2025-01-01",
                date_to="2025-01-02",
            ),
            metadata=metadata,
        ),
        stub.ListExports(pb.ListExportsRequest(organisation_id=organisation), metadata=metadata),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in stub.DownloadExport(
            pb.DownloadExportRequest(organisation_id=organisation, export_id="x"), metadata=metadata
        ):
            pass
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
