"""Intake over gRPC for the portal's Files pages: a file streamed in chunks into the path
SFTP files take, one file, the listing's filters, and the REST routes' tenancy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from hdhub.common.grpc import channel, problem_from_rpc_error
from hdhub.proto.intake.v1 import intake_pb2 as pb
from hdhub.proto.intake.v1 import intake_pb2_grpc as pb_grpc
from services.intake.tests.support import LAB, sequences, stamp, unique, vcf
from services.intake.tests.test_http_and_linking import register
from tests.support.stack import Stack

BIOLOGIST = "biologist@lab-demo.test"  # registrant of lab-demo
NURSE = "nurse@az-demo.test"  # registrant of az-demo: another organisation


def stub() -> pb_grpc.IntakeServiceStub:
    return pb_grpc.IntakeServiceStub(channel("intake"))


async def metadata(stack: Stack, who: str = BIOLOGIST) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {await stack.token(who)}"),)


async def messages(
    registry: str, filename: str, data: bytes, org: str = LAB
) -> AsyncIterator[pb.UploadFileRequest]:
    yield pb.UploadFileRequest(
        header=pb.UploadFileHeader(organisation_id=org, registry=registry, filename=filename)
    )
    for at in range(0, len(data), 1000):
        yield pb.UploadFileRequest(chunk=data[at : at + 1000])


async def send(
    stack: Stack, registry: str, filename: str, data: bytes, who: str = BIOLOGIST
) -> pb.IntakeFile:
    answer = await stub().UploadFile(messages(registry, filename, data), metadata=await metadata(stack, who))
    return answer.file


async def refused(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value.code(), problem_from_rpc_error(caught.value).slug


async def test_a_vcf_sent_in_chunks_is_delivered_checked_and_linked(stack: Stack) -> None:
    name = unique() + ".vcf"
    registration = await register(stack, "NGS", TX_VCF_FILE_NAME=name)
    data = vcf(rows=500)
    sent = await send(stack, "NGS", name, data)
    assert (sent.state, sent.source, sent.sender, sent.size) == (
        pb.FILE_STATE_ACCEPTED,
        "http",
        BIOLOGIST,
        len(data),
    )
    assert sent.started_at and sent.delivered_at
    intake = stack.service("intake")
    from hdhub.intake.linking import link

    assert await link(intake.files, sent.id) is True
    one = await stub().GetFile(
        pb.GetFileRequest(organisation_id=LAB, id=sent.id), metadata=await metadata(stack)
    )
    assert [(k.registration_id, k.field) for k in one.file.links] == [(registration, "TX_VCF_FILE_NAME")]
    assert not one.file.unmatched and one.file.linked_at


async def test_a_refused_file_is_a_problem_naming_the_rule_and_is_listed_with_it(stack: Stack) -> None:
    empty = unique() + ".vcf"
    assert await refused(stub().UploadFile(messages("NGS", empty, b""), metadata=await metadata(stack))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "file-empty-file",
    )
    code, slug = await refused(
        stub().UploadFile(messages("NGS", "report.pdf", b"x"), metadata=await metadata(stack))
    )
    assert (code, slug) == (grpc.StatusCode.INVALID_ARGUMENT, "file-file-name")
    patient = await send(stack, "NGS", unique() + ".vcf", vcf(meta=("##patient_id=85040216932",)))
    assert (patient.state, patient.rejection_rule) == (pb.FILE_STATE_REJECTED, "vcf-patient-data")
    assert "85040216932" not in patient.rejection
    aborted = await stub().ListFiles(
        pb.ListFilesRequest(organisation_id=LAB, state=pb.FILE_STATE_ABORTED, limit=1000),
        metadata=await metadata(stack),
    )
    assert {f.filename: f.rejection_rule for f in aborted.files}[empty] == "empty-file"


async def test_the_listing_filters_by_state_registry_and_unmatched_and_pages_with_the_total(
    stack: Stack,
) -> None:
    name = stamp()
    waiting = await send(stack, "HIV_SEQUENCE", f"{name}.csv", sequences(name, 3))
    assert waiting.state == pb.FILE_STATE_ACCEPTED and waiting.recordnames == 3
    meta = await metadata(stack)
    unmatched = await stub().ListFiles(
        pb.ListFilesRequest(organisation_id=LAB, unmatched=True), metadata=meta
    )
    assert waiting.id in {f.id for f in unmatched.files} and all(f.unmatched for f in unmatched.files)
    ngs = await stub().ListFiles(pb.ListFilesRequest(organisation_id=LAB, registry="NGS"), metadata=meta)
    assert all(f.registry == "NGS" for f in ngs.files) and waiting.id not in {f.id for f in ngs.files}
    first = await stub().ListFiles(pb.ListFilesRequest(organisation_id=LAB, limit=1), metadata=meta)
    second = await stub().ListFiles(
        pb.ListFilesRequest(organisation_id=LAB, limit=1, offset=1), metadata=meta
    )
    assert second.files and second.files[0].started_at <= first.files[0].started_at
    # The total counts files, whatever sequence files (and their records) the page holds.
    rest = await stack.client.get(f"/api/v1/files/{LAB}", headers=await stack.headers(BIOLOGIST))
    assert first.total == second.total == rest.json()["total"] > 1
    assert first.files[0].id == waiting.id


async def test_another_organisations_member_can_neither_send_nor_read(stack: Stack) -> None:
    mine = await send(stack, "NGS", unique() + ".vcf", vcf())
    other = await metadata(stack, NURSE)
    denied = (grpc.StatusCode.PERMISSION_DENIED, "forbidden")
    assert await refused(stub().ListFiles(pb.ListFilesRequest(organisation_id=LAB), metadata=other)) == denied
    assert (
        await refused(stub().GetFile(pb.GetFileRequest(organisation_id=LAB, id=mine.id), metadata=other))
        == denied
    )
    assert (
        await refused(stub().UploadFile(messages("NGS", unique() + ".vcf", vcf()), metadata=other)) == denied
    )
    # Under their own organisation the id is nobody's.
    assert await refused(
        stub().GetFile(pb.GetFileRequest(organisation_id="az-demo", id=mine.id), metadata=other)
    ) == (grpc.StatusCode.NOT_FOUND, "not-found")
