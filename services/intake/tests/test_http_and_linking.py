"""The web upload API (streaming PUT), results per file over REST, linking to
registrations through registrations' gRPC API (now and when the registration arrives
later), and the daily load."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hdhub.intake import files as files_module
from hdhub.intake.linking import link
from hdhub.intake.worker import LOAD_JOB, schedule
from hdhub.proto.intake.v1 import intake_pb2 as pb
from hdhub.proto.intake.v1 import intake_pb2_grpc as pb_grpc
from services.intake.tests.support import LAB, file_named, files_of, sequences, stamp, unique, vcf
from tests.support.samples import record
from tests.support.stack import Stack

BIOLOGIST = "biologist@lab-demo.test"


async def put(
    stack: Stack, registry: str, name: str, body: Any, user: str = BIOLOGIST, org: str = LAB
) -> Any:
    return await stack.client.put(
        f"/api/v1/files/{org}/{registry}/{name}", content=body, headers=await stack.headers(user)
    )


async def register(stack: Stack, dcd: str, **values: str) -> str:
    r = await stack.client.post(
        "/api/v1/registrations",
        json={"organisation_id": LAB, "dcd": dcd, "values": record(dcd, **values), "submit": False},
        headers=await stack.headers(BIOLOGIST),
    )
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


async def test_an_http_upload_streams_in_and_is_delivered_at_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files_module, "PROGRESS_EVERY", 1024)
    name = unique() + ".vcf"
    data = vcf(rows=1000)
    seen: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 4096):
            if start >= 8192 and not seen:  # midway: the upload page polls its progress
                receiving = await files_of(stack, state="receiving")
                seen.extend(f["bytes_received"] for f in receiving if f["filename"] == name)
            yield data[start : start + 4096]

    r = await put(stack, "NGS", name, body())
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["state"] == "accepted" and out["source"] == "http" and out["size"] == len(data)
    assert r.headers["Location"] == f"/api/v1/files/{LAB}/{out['id']}"
    assert seen and 0 < seen[0] < len(data)
    got = await stack.client.get(r.headers["Location"], headers=await stack.headers(BIOLOGIST))
    assert got.json()["sha256"] == out["sha256"]


async def test_a_vcf_with_an_ssin_in_its_header_is_rejected_and_the_ssin_never_echoed(stack: Stack) -> None:
    name = unique() + ".vcf"
    r = await put(stack, "NGS", name, vcf(meta=("##patient_id=85040216932",)))
    assert r.status_code == 201
    out = r.json()
    assert (out["state"], out["rule"]) == ("rejected", "vcf-patient-data")
    assert out["reason"] == "line 4: the header carries a national register number (SSIN)"
    assert "85040216932" not in r.text


@pytest.mark.parametrize(
    ("registry", "name", "body", "status", "slug"),
    [
        ("NGS", "empty.vcf", b"", 422, "file-empty-file"),
        ("NGS", "bad name.vcf", b"x", 422, "file-file-name"),
        ("NGS", "report.pdf", b"x", 422, "file-file-name"),
        ("NGS", "x.vcf.filepart", b"x", 422, "file-file-name"),  # WinSCP's, over SFTP only
        ("NGS", "NUL.vcf", b"x", 422, "file-file-name"),
        ("NGS", "com1.vcf.gz", b"x", 422, "file-file-name"),
        ("NGS", "a%1Bb.vcf", b"x", 422, "file-file-name"),
        ("NGS", "a%E2%80%AEb.vcf", b"x", 422, "file-file-name"),
        ("NGS", "caf%C3%A9.vcf", b"x", 422, "file-file-name"),
        ("OTHER", "x.vcf", b"x", 404, "file-unknown-registry"),
    ],
)
async def test_refused_uploads_are_problems_naming_the_rule(
    stack: Stack, registry: str, name: str, body: bytes, status: int, slug: str
) -> None:
    r = await put(stack, registry, name, body)
    assert r.status_code == status and r.json()["type"].endswith(slug), r.text


async def test_a_name_refused_is_listed_with_its_reason_and_control_characters_shown_as_marks(
    stack: Stack,
) -> None:
    name = unique() + "\x07.pdf"
    r = await put(stack, "NGS", name.replace("\x07", "%07"), b"x")
    assert r.status_code == 422
    listed = await file_named(stack, name.replace("\x07", "?"))
    assert listed is not None and listed["state"] == "aborted" and listed["rule"] == "file-name"
    assert listed["reason"] == r.json()["errors"][0]["message"] and listed["size"] is None


async def test_a_very_long_name_is_refused_by_the_name_rule_and_listed_cut_short(stack: Stack) -> None:
    """5,000 characters: the file-name rule's refusal (not a validation error of the path),
    listed as aborted under the name's first 255 characters, so the sender reads why."""
    name = unique() + "B" * 5000 + ".vcf"
    r = await put(stack, "NGS", name, b"x")
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "file-name", r.text[:500]
    listed = await file_named(stack, name[:255])
    assert listed is not None and (listed["state"], listed["rule"]) == ("aborted", "file-name")


async def test_a_name_refused_for_its_ssin_is_listed_without_it(stack: Stack) -> None:
    # The file-name rule refuses a name carrying an SSIN, but the aborted file the listing
    # shows (so that an SFTP sender reads why) kept the name as sent: the SSIN with it.
    tag = unique()
    for sent in ("90031573151", "90.03.15-731.51"):
        r = await put(stack, "NGS", f"{tag}_{sent}.vcf", b"x")
        assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "file-name", r.text
        assert sent not in r.text
    listed = await files_of(stack, state="aborted", limit="1000")
    mine = [f for f in listed if f["filename"].startswith(tag)]
    assert [f["filename"] for f in mine] == [f"{tag}_[redacted-ssin].vcf"] * 2, mine
    assert all(f["rule"] == "file-name" for f in mine)
    assert "90031573151" not in str(listed) and "90.03.15-731.51" not in str(listed)


async def test_an_upload_over_the_limit_is_refused(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack.service("intake").settings, "max_file_bytes", 1000)
    r = await put(stack, "NGS", unique() + ".vcf", vcf(rows=100))
    assert r.status_code == 413 and r.json()["type"].endswith("file-too-large")


async def test_a_put_with_a_trailing_slash_is_a_404_problem_not_a_redirect(stack: Stack) -> None:
    """A redirect would have the client send the whole file again; nothing is stored."""
    name = unique() + ".vcf"
    r = await put(stack, "NGS", name + "/", vcf())
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json", r.text
    assert "location" not in r.headers and "without the trailing slash" in r.json()["detail"]
    assert await file_named(stack, name) is None
    assert (await put(stack, "NGS", name, vcf())).status_code == 201


async def test_other_organisations_can_neither_send_nor_read(stack: Stack) -> None:
    name = unique() + ".vcf"
    mine = (await put(stack, "NGS", name, vcf())).json()
    nurse = await stack.headers("nurse@az-demo.test")
    assert (
        await stack.client.put(f"/api/v1/files/{LAB}/NGS/{name}", content=vcf(), headers=nurse)
    ).status_code == 403
    assert (await stack.client.get(f"/api/v1/files/{LAB}", headers=nurse)).status_code == 403
    assert (await stack.client.get(f"/api/v1/files/{LAB}/{mine['id']}", headers=nurse)).status_code == 403
    # Their own listing does not show it, nor does the id resolve under their organisation.
    assert (await stack.client.get(f"/api/v1/files/az-demo/{mine['id']}", headers=nurse)).status_code == 404


async def test_the_file_list_answers_pages_newest_first(stack: Stack) -> None:
    names = [unique() + ".vcf" for _ in range(3)]
    for name in names:
        assert (await put(stack, "NGS", name, vcf())).status_code == 201
    h = await stack.headers("biologist@lab-demo.test")
    first = (await stack.client.get(f"/api/v1/files/{LAB}", params={"limit": 2}, headers=h)).json()
    second = (
        await stack.client.get(f"/api/v1/files/{LAB}", params={"limit": 2, "offset": 2}, headers=h)
    ).json()
    assert [f["filename"] for f in first["items"]] == names[:0:-1]
    assert second["items"][0]["filename"] == names[0] and second["offset"] == 2
    assert first["total"] == second["total"] >= 3 and first["next"] is second["next"] is None


async def test_a_vcf_is_linked_when_its_registration_arrives_later(stack: Stack) -> None:
    intake = stack.service("intake")
    name = unique() + ".vcf"
    out = (await put(stack, "NGS", name, vcf())).json()
    assert out["state"] == "accepted"
    assert await link(intake.files, out["id"]) is False
    waiting = await file_named(stack, name)
    assert waiting["unmatched"] and waiting["link_problem"] == "no registration names this VCF file yet"
    assert waiting["id"] in [f["id"] for f in await files_of(stack, unmatched="true")]

    registration = await register(stack, "NGS", TX_VCF_FILE_NAME=name)
    assert await link(intake.files, out["id"]) is True
    linked = await file_named(stack, name)
    assert not linked["unmatched"] and linked["linked_at"] and linked["state"] == "linked"
    assert linked["links"] == [
        {"registration_id": registration, "field": "TX_VCF_FILE_NAME", "recordname": ""}
    ]
    # Registrations (or anyone who may read them) asks intake over gRPC.
    from hdhub.common.auth import ActingFor
    from hdhub.common.grpc import channel
    from hdhub.common.service_auth import acting_as_service

    async with acting_as_service("registrations", ActingFor(LAB, "biologist@lab-demo.test")):
        answer = await pb_grpc.IntakeServiceStub(channel("intake")).ListFiles(
            pb.ListFilesRequest(organisation_id=LAB, registration_id=registration)
        )
    assert [f.id for f in answer.files] == [out["id"]]
    assert answer.files[0].state == pb.FILE_STATE_LINKED


async def test_a_sequence_file_links_one_to_many_by_filename_and_one_to_one_by_recordname(
    stack: Stack,
) -> None:
    intake = stack.service("intake")
    stem = stamp()
    first = await register(stack, "HIV_SEQUENCE", TX_ATT=stem, TX_ATT_RECRD=f"{stem}_00001")
    out = (await put(stack, "HIV_SEQUENCE", f"{stem}.csv", sequences(stem, 2))).json()
    assert out["state"] == "accepted" and out["recordnames"] == 2
    assert await link(intake.files, out["id"]) is False
    partial = await file_named(stack, f"{stem}.csv")
    assert (
        partial["recordnames_linked"] == 1
        and partial["link_problem"] == "1 of 2 recordnames have no single registration naming them yet"
    )

    second = await register(stack, "HIV_SEQUENCE", TX_ATT=stem, TX_ATT_RECRD=f"{stem}_00002")
    assert await link(intake.files, out["id"]) is True
    done = await file_named(stack, f"{stem}.csv")
    assert done["recordnames_linked"] == 2 and not done["unmatched"]
    assert sorted((k["registration_id"], k["field"], k["recordname"]) for k in done["links"]) == sorted(
        [
            (first, "TX_ATT", ""),
            (second, "TX_ATT", ""),
            (first, "TX_ATT_RECRD", f"{stem}_00001"),
            (second, "TX_ATT_RECRD", f"{stem}_00002"),
        ]
    )


async def test_a_sequence_file_not_named_after_its_filename_column_is_rejected(stack: Stack) -> None:
    stem, other = stamp(), stamp()
    r = await put(stack, "HIV_SEQUENCE", f"{other}.csv", sequences(stem, 1))
    out = r.json()
    assert (out["state"], out["rule"]) == ("rejected", "sequence-file-name")
    assert out["reason"] == f"the file must be named {stem}.csv, after its filename column"


async def test_a_sequence_file_stamped_with_a_time_that_does_not_exist_is_rejected(stack: Stack) -> None:
    stem = "HSP_20250230092014"  # 30 February
    r = await put(stack, "HIV_SEQUENCE", f"{stem}.csv", sequences(stem, 1))
    out = r.json()
    assert (out["state"], out["rule"]) == ("rejected", "sequence-filename")
    assert out["reason"] == "line 2: filename is not ARL_yyyymmddHHMMSS with a real date and time"


async def test_a_lower_case_sequence_is_rejected_naming_character_and_position(stack: Stack) -> None:
    stem = stamp()
    r = await put(stack, "HIV_SEQUENCE", f"{stem}.csv", sequences(stem, rows=[f"{stem};{stem}_00001;ACGTn"]))
    out = r.json()
    assert (out["state"], out["rule"]) == ("rejected", "sequence-letters")
    assert out["reason"].startswith("line 2: genetic_sequence has n at position 5;")


async def test_the_daily_catch_up_queues_a_send_for_each_linked_file_once(stack: Stack) -> None:
    from sqlalchemy import func, select

    from hdhub.intake.files import SEND_JOB
    from hdhub.intake.store import Job
    from hdhub.intake.worker import catch_up

    intake = stack.service("intake")
    name = unique() + ".vcf"
    await register(stack, "NGS", TX_VCF_FILE_NAME=name)
    out = (await put(stack, "NGS", name, vcf())).json()
    await link(intake.files, out["id"])
    assert (await file_named(stack, name))["state"] == "linked"
    unmatched = (await put(stack, "NGS", unique() + ".vcf", vcf())).json()

    await catch_up(intake.files)
    await catch_up(intake.files)
    async with intake.db.system_session() as session:
        queued = (
            await session.execute(
                select(Job.subject_id, func.count())
                .where(Job.kind == SEND_JOB, Job.status.in_(("queued", "running")))
                .group_by(Job.subject_id)
            )
        ).all()
    counts = dict(queued)
    assert counts.get(out["id"]) == 1  # linked: one send job, however often the catch-up runs
    assert unmatched["id"] not in counts  # waits for its registration
    assert (await file_named(stack, unmatched["filename"]))["state"] == "accepted"


async def test_two_linkers_of_one_file_at_once_link_it_once(stack: Stack) -> None:
    intake = stack.service("intake")
    stem = stamp()
    for i in (1, 2):
        await register(stack, "HIV_SEQUENCE", TX_ATT=stem, TX_ATT_RECRD=f"{stem}_{i:05d}")
    out = (await put(stack, "HIV_SEQUENCE", f"{stem}.csv", sequences(stem, 2))).json()
    assert await asyncio.gather(*(link(intake.files, out["id"]) for _ in range(3))) == [True, True, True]
    assert len((await file_named(stack, f"{stem}.csv"))["links"]) == 4


async def test_a_scheduled_run_is_enqueued_once_between_two_workers(stack: Stack) -> None:
    files = stack.service("intake").files
    slot = f"test-{unique()}"
    results = await asyncio.gather(schedule(files, LOAD_JOB, slot), schedule(files, LOAD_JOB, slot))
    assert sorted(results) == [False, True]
