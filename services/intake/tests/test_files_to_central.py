"""Linked files go to the central platform (the sim's stand-in) with their registration:
sealed, streamed in chunks, resumed after a cut, acknowledged with a digest check, then
out of the drop area and deleted when their retention runs out.

The background intake worker is kept off ``send-file`` jobs here, so each test drives
the attempts itself and sees each outcome."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest

from hdhub.common.auth import ActingFor
from hdhub.common.db import utcnow
from hdhub.common.grpc import channel
from hdhub.common.service_auth import acting_as_service
from hdhub.intake import worker
from hdhub.intake.central import CentralSender, Waiting, purge_sent, send
from hdhub.intake.files import SEND_JOB
from hdhub.intake.linking import link
from hdhub.proto.sim.v1 import central_pb2 as pb
from hdhub.proto.sim.v1 import central_pb2_grpc as pb_grpc
from services.intake.tests.support import LAB, eventually, file_named, files_of, unique, vcf
from tests.support import central
from tests.support.samples import record
from tests.support.stack import Stack

BIOLOGIST = "biologist@lab-demo.test"


@pytest.fixture(autouse=True)
def held_sender(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(worker, "KINDS", [k for k in worker.KINDS if k != SEND_JOB])
    yield


async def register(stack: Stack, name: str, *, submit: bool) -> str:
    r = await stack.client.post(
        "/api/v1/registrations",
        json={
            "organisation_id": LAB,
            "dcd": "NGS",
            "values": record("NGS", TX_VCF_FILE_NAME=name),
            "submit": submit,
        },
        headers=await stack.headers(BIOLOGIST),
    )
    assert r.status_code in (200, 201), r.text
    registration_id = str(r.json()["id"])
    if submit:

        async def submitted() -> bool:
            got = await stack.client.get(
                f"/api/v1/registrations/{registration_id}", headers=await stack.headers(BIOLOGIST)
            )
            return bool(got.json()["status"] == "submitted")

        await eventually(submitted, timeout=30)
    return registration_id


async def linked_file(stack: Stack, data: bytes, *, submit: bool = True) -> tuple[str, str, str]:
    """A VCF of ``data`` put over HTTP and linked to its registration: (file id, name, registration)."""
    name = unique() + ".vcf"
    registration = await register(stack, name, submit=submit)
    r = await stack.client.put(
        f"/api/v1/files/{LAB}/NGS/{name}", content=data, headers=await stack.headers(BIOLOGIST)
    )
    assert r.status_code == 201 and r.json()["state"] == "accepted", r.text
    file_id = r.json()["id"]
    # The background worker's link job may have linked it first: either way it is linked.
    await link(stack.service("intake").files, file_id)
    assert (await file_named(stack, name))["state"] == "linked"
    return file_id, name, registration


def sender(stack: Stack) -> CentralSender:
    files = stack.service("intake").files
    if files.central_sender is None:
        files.central_sender = CentralSender(files)
    return files.central_sender  # type: ignore[no-any-return]


def central_files(stack: Stack) -> Any:
    return stack.service("sim").central_files


async def test_a_linked_vcf_waits_until_its_registration_is_delivered(stack: Stack) -> None:
    file_id, name, _ = await linked_file(stack, vcf(), submit=False)
    with pytest.raises(Waiting, match="registration-not-delivered"):
        await send(stack.service("intake").files, sender(stack), file_id)
    row = await file_named(stack, name)
    assert (row["state"], row["send_problem"], row["sent_at"]) == (
        "linked",
        "registration-not-delivered",
        None,
    )
    assert await central_files(stack).get(file_id) is None


async def test_a_linked_vcf_reaches_the_central_platform_with_its_registration_and_is_acknowledged(
    stack: Stack,
) -> None:
    data = vcf(rows=2000)
    file_id, name, registration = await linked_file(stack, data)
    intake = stack.service("intake")
    drop_key = (await intake.files.listing(LAB, file_id=file_id)).files[0].object_key

    assert await send(intake.files, sender(stack), file_id) == "acknowledged"

    row = await file_named(stack, name)
    assert row["state"] == "acknowledged" and row["sent_at"] and row["acknowledged_at"]
    assert row["central_offset"] == len(data) and row["send_problem"] == ""
    # Out of the drop area, kept (encrypted) for the retention period.
    assert await intake.objects.stat(drop_key) is None
    kept = (await intake.files.listing(LAB, file_id=file_id)).files[0].object_key
    assert kept.startswith(f"intake/sent/{LAB}/NGS/") and await intake.objects.read(kept) == data
    # The central side verified, decrypted and checked the digest; it knows the registration.
    held = await central_files(stack).get(file_id)
    assert held.acknowledged_at is not None and held.sha256 == hashlib.sha256(data).hexdigest()
    assert held.technical_ids == [await central.technical_id(stack, registration)]
    assert "Lab" in held.signer_subject or held.signer_subject
    assert central_files(stack).path(file_id).read_bytes() == data
    # A second attempt finds it acknowledged and sends nothing.
    assert await send(intake.files, sender(stack), file_id) == "acknowledged"
    assert (await central_files(stack).get(file_id)).attempts == 1


async def test_the_same_name_delivered_twice_is_linked_and_sent_twice_each_under_its_own_id(
    stack: Stack,
) -> None:
    """docs/intake.md, Known limits: a corrected VCF sent again under its name reaches the
    central platform beside the first, for the same registration."""
    first, name, registration = await linked_file(stack, vcf(rows=2))
    corrected = vcf(rows=3)
    r = await stack.client.put(
        f"/api/v1/files/{LAB}/NGS/{name}", content=corrected, headers=await stack.headers(BIOLOGIST)
    )
    assert r.status_code == 201 and r.json()["state"] in ("accepted", "linked"), r.text
    second = r.json()["id"]
    await link(stack.service("intake").files, second)
    intake = stack.service("intake")
    for file_id in (first, second):
        assert await send(intake.files, sender(stack), file_id) == "acknowledged"
    rows = [f for f in await files_of(stack) if f["filename"] == name]
    assert sorted((f["id"], f["state"]) for f in rows) == sorted(
        [(first, "acknowledged"), (second, "acknowledged")]
    )
    technical = [await central.technical_id(stack, registration)]
    assert (await central_files(stack).get(first)).technical_ids == technical
    assert (await central_files(stack).get(second)).technical_ids == technical
    assert central_files(stack).path(second).read_bytes() == corrected


async def test_a_transfer_cut_midway_resumes_where_the_central_side_stopped(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    intake = stack.service("intake")
    monkeypatch.setattr(intake.files.settings, "send_chunk_bytes", 64 * 1024)
    data = vcf(rows=40_000)  # about 1.4 MB: 22 chunks
    file_id, name, _ = await linked_file(stack, data)
    central_files(stack).cut_after_bytes = 512 * 1024
    try:
        with pytest.raises(Waiting, match="central-unavailable"):
            await send(intake.files, sender(stack), file_id)
    finally:
        central_files(stack).cut_after_bytes = None
    cut = await file_named(stack, name)
    assert cut["state"] == "linked" and 512 * 1024 <= cut["central_offset"] < len(data)
    assert cut["send_problem"] == "central-unavailable"

    assert await send(intake.files, sender(stack), file_id) == "acknowledged"
    held = await central_files(stack).get(file_id)
    assert held.attempts == 2 and held.acknowledged_at is not None
    assert central_files(stack).path(file_id).read_bytes() == data
    assert (await file_named(stack, name))["state"] == "acknowledged"


async def test_the_central_side_refusing_leaves_the_file_linked_for_the_next_attempt(stack: Stack) -> None:
    file_id, name, _ = await linked_file(stack, vcf())
    with central.refusing(stack), pytest.raises(Waiting, match="central-unavailable"):
        await send(stack.service("intake").files, sender(stack), file_id)
    assert (await file_named(stack, name))["state"] == "linked"
    assert await send(stack.service("intake").files, sender(stack), file_id) == "acknowledged"


async def test_acknowledged_files_are_deleted_when_their_retention_runs_out(stack: Stack) -> None:
    intake = stack.service("intake")
    file_id, name, _ = await linked_file(stack, vcf())
    await send(intake.files, sender(stack), file_id)
    kept = (await intake.files.listing(LAB, file_id=file_id)).files[0].object_key
    days = intake.files.settings.sent_retention_days

    await purge_sent(intake.files, utcnow() + timedelta(days=days - 1))
    assert await intake.objects.stat(kept) is not None
    assert await purge_sent(intake.files, utcnow() + timedelta(days=days + 1)) >= 1
    assert await intake.objects.stat(kept) is None
    row = await file_named(stack, name)
    assert row["state"] == "acknowledged" and row["content_purged_at"] and row["sha256"]


async def test_only_intake_may_send_files_to_the_central_platform(stack: Stack) -> None:
    stub = pb_grpc.CentralReceiverServiceStub(channel("sim"))
    for service in ("registrations", "pseudonymisation"):
        async with acting_as_service(service):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GetFileOffset(pb.GetFileOffsetRequest(file_id="x", organisation_id=LAB))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_file_is_asked_about_only_for_its_own_organisation(stack: Stack) -> None:
    file_id, _, _ = await linked_file(stack, vcf())
    await send(stack.service("intake").files, sender(stack), file_id)
    stub = pb_grpc.CentralReceiverServiceStub(channel("sim"))
    # Acting for another organisation, intake is not told about this one's file...
    async with acting_as_service("intake", ActingFor("az-demo", "nurse@az-demo.test")):
        theirs = await stub.GetFileOffset(pb.GetFileOffsetRequest(file_id=file_id, organisation_id="az-demo"))
        with pytest.raises(grpc.aio.AioRpcError) as refused:  # nor may it name this one
            await stub.GetFileOffset(pb.GetFileOffsetRequest(file_id=file_id, organisation_id=LAB))
    assert (theirs.offset, theirs.acknowledged) == (0, False)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    async with acting_as_service("intake", ActingFor(LAB, BIOLOGIST)):
        ours = await stub.GetFileOffset(pb.GetFileOffsetRequest(file_id=file_id, organisation_id=LAB))
    assert ours.acknowledged


async def test_an_ngs_registration_whose_vcf_is_late_is_listed_until_the_vcf_arrives(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hdhub.intake import late, metrics

    intake = stack.service("intake")
    name = unique() + ".vcf"
    registration = await register(stack, name, submit=True)
    h = await stack.headers(BIOLOGIST)

    async def late_ids(**params: Any) -> list[str]:
        r = await stack.client.get(f"/api/v1/files/{LAB}/late-vcfs", params=params, headers=h)
        assert r.status_code == 200, r.text
        page = r.json()
        assert set(page) == {"items", "total", "limit", "offset", "next"} and page["next"] is None
        return [item["registration_id"] for item in page["items"]]

    assert registration not in await late_ids(limit=1000)  # 72 hours have not passed
    monkeypatch.setattr(intake.files.settings, "vcf_late_hours", 0.0)
    listed = await late_ids(limit=1000)
    assert registration in listed
    r = await stack.client.get(f"/api/v1/files/{LAB}/late-vcfs", params={"limit": 1000}, headers=h)
    item = next(i for i in r.json()["items"] if i["registration_id"] == registration)
    assert item["filename"] == name and item["status"] == "submitted" and item["late_since"]
    # The gauge watches the organisations that have sent intake a file.
    await stack.client.put(f"/api/v1/files/{LAB}/NGS/{unique()}.vcf", content=vcf(), headers=h)
    assert await late.watch(intake.files) >= 1
    assert metrics.LATE_VCFS._value.get() >= 1  # type: ignore[attr-defined]

    put = await stack.client.put(f"/api/v1/files/{LAB}/NGS/{name}", content=vcf(), headers=h)
    await link(intake.files, put.json()["id"])
    assert registration not in await late_ids(limit=1000)


async def test_late_vcfs_of_another_organisation_are_refused(stack: Stack) -> None:
    nurse = await stack.headers("nurse@az-demo.test")
    r = await stack.client.get(f"/api/v1/files/{LAB}/late-vcfs", headers=nurse)
    assert r.status_code == 403


async def test_a_file_of_another_organisation_than_the_one_intake_acts_for_is_refused(stack: Stack) -> None:
    async def messages() -> Any:
        yield pb.ReceiveFileRequest(header=pb.SealedFileHeader(file_id="x", organisation_id=LAB))

    stub = pb_grpc.CentralReceiverServiceStub(channel("sim"))
    async with acting_as_service("intake", ActingFor("az-demo", "nurse@az-demo.test")):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ReceiveFile(messages())
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_late_vcfs_over_grpc_for_the_portal_are_the_organisations_own(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ListLateVcfs`` (the portal's files page) answers as the REST list: the late NGS
    registrations of the organisation; refused to a member of another organisation; empty
    for a member without the NGS registry."""
    from hdhub.common.auth import current_principal, verifier
    from hdhub.proto.intake.v1 import intake_pb2 as ipb
    from hdhub.proto.intake.v1 import intake_pb2_grpc as ipb_grpc
    from tests.support.tokens import mint

    intake = stack.service("intake")
    name = unique() + ".vcf"
    registration = await register(stack, name, submit=True)
    monkeypatch.setattr(intake.files.settings, "vcf_late_hours", 0.0)
    stub = ipb_grpc.IntakeServiceStub(channel("intake"))

    async def as_(token: str) -> None:
        current_principal.set(await verifier().verify(token))

    await as_(await stack.token(BIOLOGIST))
    answer = await stub.ListLateVcfs(ipb.ListLateVcfsRequest(organisation_id=LAB, limit=500))
    found = {v.registration_id: v for v in answer.late}
    assert registration in found and found[registration].filename == name
    assert answer.total >= 1 and answer.late_hours == 0.0
    await as_(await stack.token("nurse@az-demo.test"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListLateVcfs(ipb.ListLateVcfsRequest(organisation_id=LAB))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await as_(await mint(stack, "angio-only@lab-demo.test", {LAB: ["registrant"]}, registries=["HDBP0012"]))
    assert list((await stub.ListLateVcfs(ipb.ListLateVcfsRequest(organisation_id=LAB))).late) == []
