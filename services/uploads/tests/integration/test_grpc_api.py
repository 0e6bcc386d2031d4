"""The Upload Center over gRPC (the portal's pages use it), on the whole stack: a file
streamed in chunks, its steps watched, its reports streamed back, settings, and the REST
routes' tenancy: another organisation's member is refused every method."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable

import grpc
import pytest

from hdhub.common.grpc import channel, problem_from_rpc_error
from hdhub.proto.uploads.v1 import uploads_pb2 as pb
from hdhub.proto.uploads.v1 import uploads_pb2_grpc as pb_grpc
from services.uploads.tests.integration.test_linked_uploads import sequences
from services.uploads.tests.integration.test_uploads_api import csv_bytes, upload
from tests.support.samples import record
from tests.support.stack import Stack

NURSE = "nurse@az-demo.test"  # registrant of az-demo
MANAGER = "manager@az-demo.test"  # User Manager of az-demo: no registration rights
BIOLOGIST = "biologist@lab-demo.test"  # registrant of lab-demo, another organisation
LIMS = "lab-demo-lims"


def stub() -> pb_grpc.UploadsServiceStub:
    return pb_grpc.UploadsServiceStub(channel("uploads"))


async def metadata(stack: Stack, who: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {await stack.token(who)}"),)


async def messages(
    header: pb.CreateUploadHeader, data: bytes, size: int = 64
) -> AsyncIterator[pb.CreateUploadRequest]:
    yield pb.CreateUploadRequest(header=header)
    for at in range(0, len(data), size):
        yield pb.CreateUploadRequest(chunk=data[at : at + size])


async def create(stack: Stack, who: str, data: bytes, **header: object) -> pb.Upload:
    header.setdefault("dcd_code", "ANGIO_HOSP")
    answer = await stub().CreateUpload(
        messages(pb.CreateUploadHeader(**header), data), metadata=await metadata(stack, who)
    )
    return answer.upload


async def watched(stack: Stack, who: str, upload_id: str, lang: str = "en") -> list[pb.Upload]:
    seen = []
    async for answer in stub().WatchUpload(
        pb.WatchUploadRequest(id=upload_id, language=lang), metadata=await metadata(stack, who), timeout=60
    ):
        seen.append(answer.upload)
    return seen


async def report(stack: Stack, who: str, upload_id: str, kind: int) -> tuple[str, list[dict[str, str]]]:
    names, data = [], b""
    async for answer in stub().GetUploadReport(
        pb.GetUploadReportRequest(id=upload_id, kind=kind), metadata=await metadata(stack, who)
    ):
        names.append(answer.filename)
        data += answer.chunk
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    return names[0], rows


async def refused(call: object) -> tuple[grpc.StatusCode, str]:
    """The status and problem slug of a call that must fail (a coroutine or a stream)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if hasattr(call, "__aiter__"):
            async for _ in call:  # type: ignore[attr-defined]
                pass
        else:
            await call  # type: ignore[misc]
    return caught.value.code(), problem_from_rpc_error(caught.value).slug


async def test_a_file_sent_in_chunks_is_processed_watched_and_reported(stack: Stack) -> None:
    rows = [record(), record(), record(DT_HOSPZ="31/02/2024")]
    created = await create(
        stack,
        NURSE,
        csv_bytes(rows),
        organisation_id="az-demo",
        filename="day.csv",
        autosubmit=False,
        validation=pb.VALIDATION_NONE,
        language="fr",
    )
    assert created.status == pb.UPLOAD_STATUS_QUEUED and created.uploaded_by == NURSE
    assert created.steps.select_file == pb.STEP_STATE_SUCCESS and created.size == len(csv_bytes(rows))
    assert created.settings.validation == pb.VALIDATION_NONE and not created.settings.autosubmit

    seen = await watched(stack, NURSE, created.id, "fr")
    done = seen[-1]
    assert done.status == pb.UPLOAD_STATUS_DONE, done
    assert [u.status for u in seen[:-1]] and all(u.status != pb.UPLOAD_STATUS_DONE for u in seen[:-1])
    assert (done.counts.created, done.counts.rejected, done.file_info.records) == (2, 1, 3)
    assert done.steps.upload == pb.STEP_STATE_WARNINGS and done.steps.finalize == pb.STEP_STATE_SUCCESS

    name, errors = await report(stack, NURSE, created.id, pb.REPORT_KIND_ERRORS)
    assert name == "day-errors.csv"
    assert [(e["line"], e["column"]) for e in errors] == [("4", "DT_HOSPZ")]
    assert "date" in errors[0]["message"]  # in the upload's language (French)
    _, stored = await report(stack, NURSE, created.id, pb.REPORT_KIND_SUCCESS)
    assert [s["outcome"] for s in stored] == ["created", "created"]

    listed = await stub().ListUploads(
        pb.ListUploadsRequest(organisation_id="az-demo", limit=200), metadata=await metadata(stack, NURSE)
    )
    mine = next(u for u in listed.uploads if u.id == created.id)
    assert mine.status == pb.UPLOAD_STATUS_DONE and mine.uploaded_by == NURSE and listed.total >= 1
    again = await stub().GetUpload(pb.GetUploadRequest(id=created.id), metadata=await metadata(stack, NURSE))
    assert again.upload.counts.created == 2


async def test_the_grpc_view_is_the_rest_view(stack: Stack) -> None:
    """Uploaded over REST, read over gRPC: the same upload, the same counts."""
    rest = await upload(stack, csv_bytes([record()]), NURSE, organisation_id="az-demo", dry_run=True)
    seen = await watched(stack, NURSE, rest["id"])
    answer = (
        await stub().GetUpload(pb.GetUploadRequest(id=rest["id"]), metadata=await metadata(stack, NURSE))
    ).upload
    assert seen[-1].id == answer.id == rest["id"]
    assert answer.dry_run and answer.nothing_stored and answer.counts.rows_read == 1


async def test_linked_sequence_and_metadata_files_are_read_together(stack: Stack) -> None:
    name = "HSP_20241002093000"
    held = await create(
        stack,
        LIMS,
        sequences(name, [f"{name}_00001", f"{name}_00002"]),
        dcd_code="HIV_SEQUENCE",
        filename=f"{name}.csv",
        kind=pb.UPLOAD_KIND_SEQUENCES,
    )
    assert held.status == pb.UPLOAD_STATUS_HELD and held.kind == pb.UPLOAD_KIND_SEQUENCES
    rows = [record("HIV_SEQUENCE", TX_ATT=name, TX_ATT_RECRD=f"{name}_{i:05d}") for i in (1, 2)]
    meta = await create(stack, LIMS, csv_bytes(rows), dcd_code="HIV_SEQUENCE", linked_upload_id=held.id)
    done = (await watched(stack, LIMS, meta.id))[-1]
    assert (done.status, done.counts.created, done.linked_upload_id) == (pb.UPLOAD_STATUS_DONE, 2, held.id)
    sequence_file = await stub().GetUpload(
        pb.GetUploadRequest(id=held.id), metadata=await metadata(stack, LIMS)
    )
    assert (
        sequence_file.upload.status == pb.UPLOAD_STATUS_LINKED and sequence_file.upload.linked_by == meta.id
    )


async def test_settings_are_read_and_set_by_those_rest_lets(stack: Stack) -> None:
    nurse, manager = await metadata(stack, NURSE), await metadata(stack, MANAGER)
    wanted = pb.UploadSettings(
        conflict_mode="business_key",
        conflict_master=pb.CONFLICT_MASTER_STORED,
        ignore_duplicates=False,
        autosubmit=True,
        validation=pb.VALIDATION_VALIDATE_ALL,
    )
    changed = await stub().UpdateUploadSettings(
        pb.UpdateUploadSettingsRequest(organisation_id="az-demo", project_code="HDBP9999", settings=wanted),
        metadata=nurse,
    )
    assert changed.settings == wanted and changed.updated_by == NURSE and changed.updated_at
    read = await stub().GetUploadSettings(
        pb.GetUploadSettingsRequest(organisation_id="az-demo", project_code="HDBP9999"), metadata=nurse
    )
    assert read.settings == wanted
    rest = await stack.client.get(
        "/api/v1/upload-settings/az-demo/HDBP9999", headers=await stack.headers(NURSE)
    )
    assert rest.json()["validation"] == "validate_all" and rest.json()["conflict_master"] == "stored"
    defaults = await stub().GetUploadSettings(
        pb.GetUploadSettingsRequest(organisation_id="az-demo", project_code="HDBP9998"), metadata=nurse
    )
    assert defaults.settings.validation == pb.VALIDATION_NONE and defaults.updated_by == ""
    # Unspecified is refused; a member without registration rights learns nothing.
    unspecified = pb.UploadSettings(conflict_master=pb.CONFLICT_MASTER_NEW)
    assert await refused(
        stub().UpdateUploadSettings(
            pb.UpdateUploadSettingsRequest(
                organisation_id="az-demo", project_code="HDBP9999", settings=unspecified
            ),
            metadata=nurse,
        )
    ) == (grpc.StatusCode.INVALID_ARGUMENT, "validation")
    get = pb.GetUploadSettingsRequest(organisation_id="az-demo", project_code="HDBP9999")
    assert (await refused(stub().GetUploadSettings(get, metadata=manager)))[0] == grpc.StatusCode.NOT_FOUND


async def test_another_organisations_member_is_refused_every_method(stack: Stack) -> None:
    created = await create(stack, NURSE, csv_bytes([record()]), organisation_id="az-demo", dry_run=True)
    await watched(stack, NURSE, created.id)
    other = await metadata(stack, BIOLOGIST)
    not_found = (grpc.StatusCode.NOT_FOUND, "not-found")
    assert await refused(stub().GetUpload(pb.GetUploadRequest(id=created.id), metadata=other)) == not_found
    assert (
        await refused(stub().WatchUpload(pb.WatchUploadRequest(id=created.id), metadata=other)) == not_found
    )
    assert (
        await refused(
            stub().GetUploadReport(
                pb.GetUploadReportRequest(id=created.id, kind=pb.REPORT_KIND_ERRORS), metadata=other
            )
        )
        == not_found
    )
    listed = await stub().ListUploads(pb.ListUploadsRequest(), metadata=other)
    assert created.id not in {u.id for u in listed.uploads}
    denied = (grpc.StatusCode.PERMISSION_DENIED, "forbidden")
    assert (
        await refused(stub().ListUploads(pb.ListUploadsRequest(organisation_id="az-demo"), metadata=other))
        == denied
    )
    header = pb.CreateUploadHeader(organisation_id="az-demo", dcd_code="ANGIO_HOSP")
    # The header alone: the refusal comes after it, before any chunk is read, and a client
    # still sending chunks when the server closes the stream may hear gRPC's own INTERNAL
    # (RST_STREAM) instead of the server's status (once in CI).
    assert await refused(stub().CreateUpload(messages(header, b""), metadata=other)) == denied
    get = pb.GetUploadSettingsRequest(organisation_id="az-demo", project_code="HDBP0012")
    assert await refused(stub().GetUploadSettings(get, metadata=other)) == not_found
    put = pb.UpdateUploadSettingsRequest(
        organisation_id="az-demo",
        project_code="HDBP0012",
        settings=pb.UploadSettings(conflict_master=pb.CONFLICT_MASTER_NEW, validation=pb.VALIDATION_NONE),
    )
    assert await refused(stub().UpdateUploadSettings(put, metadata=other)) == not_found
    # Without a token, nothing at all.
    code, _ = await refused(stub().GetUpload(pb.GetUploadRequest(id=created.id)))
    assert code == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("first", "slug"),
    [
        ([pb.CreateUploadRequest(chunk=b"x;y\r\n")], "header-required"),
        (
            [
                pb.CreateUploadRequest(
                    header=pb.CreateUploadHeader(dcd_code="ANGIO_HOSP", filename="a\u202ecsv.exe")
                )
            ],
            "bad-file-name",
        ),
        (
            [
                pb.CreateUploadRequest(header=pb.CreateUploadHeader(dcd_code="ANGIO_HOSP")),
                pb.CreateUploadRequest(header=pb.CreateUploadHeader(dcd_code="ANGIO_HOSP")),
            ],
            "header-once",
        ),
    ],
    ids=["no-header", "bad-name", "two-headers"],
)
async def test_a_malformed_stream_is_refused_saying_why(
    stack: Stack, first: Iterable[pb.CreateUploadRequest], slug: str
) -> None:
    async def sent() -> AsyncIterator[pb.CreateUploadRequest]:
        for message in first:
            yield message

    code, problem = await refused(stub().CreateUpload(sent(), metadata=await metadata(stack, NURSE)))
    assert (code, problem) == (grpc.StatusCode.INVALID_ARGUMENT, slug)
