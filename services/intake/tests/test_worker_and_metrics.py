"""The worker's step (jobs claimed and run, scheduled runs, stale transfers) with injected
time, the gRPC edge against another organisation's member, and the metrics."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta
from typing import Any

import grpc
import pytest
from prometheus_client import generate_latest

from hdhub.common import auth
from hdhub.common.db import utcnow
from hdhub.common.grpc import channel
from hdhub.intake.store import IntakeFile, Job
from hdhub.intake.worker import process_jobs
from hdhub.proto.intake.v1 import intake_pb2 as pb
from hdhub.proto.intake.v1 import intake_pb2_grpc as pb_grpc
from services.intake.tests.support import LAB, file_named, sftp, unique, vcf
from services.intake.tests.test_http_and_linking import put, register
from tests.support.stack import Stack


@pytest.mark.timeout(240)
async def test_the_worker_step_links_a_delivered_file(stack: Stack) -> None:
    intake = stack.service("intake")
    name = unique() + ".vcf"
    registration = await register(stack, "NGS", TX_VCF_FILE_NAME=name)
    out = (await put(stack, "NGS", name, vcf())).json()
    async with intake.db.system_session() as session:
        job = (await session.execute(Job.__table__.select().where(Job.subject_id == out["id"]))).first()
    assert job is not None and job.kind == "link"
    # Other tests share the queue, and the stack's own worker runs beside this step: the
    # step is repeated until the job is claimed (by it or the worker) and finished once.
    from services.intake.tests.support import eventually

    async def job_row() -> Any:
        async with intake.db.system_session() as session:
            return (await session.execute(Job.__table__.select().where(Job.subject_id == out["id"]))).first()

    async def done() -> bool:
        row = await job_row()
        if row.status == "queued" and row.run_after > utcnow():
            # A link that failed once (a gRPC call timed out under load) waits out its
            # back-off, which doubles: the step is taken as if that time had passed.
            async with intake.db.system_session() as session:
                await session.execute(
                    Job.__table__.update().where(Job.id == row.id).values(run_after=utcnow())
                )
        if row.status != "done":
            await process_jobs(intake.files)
        return str((await job_row()).status) == "done"

    try:
        await eventually(done, timeout=120.0)
    except AssertionError:
        row = await job_row()
        raise AssertionError(
            f"link job {row.status} after {row.attempts} attempts: {row.last_error}"
        ) from None
    row = await file_named(stack, name)
    assert row and row["links"][0]["registration_id"] == registration


async def test_a_transfer_whose_process_died_is_aborted_after_the_stale_delay(stack: Stack) -> None:
    intake = stack.service("intake")
    transfer = await intake.files.begin(
        organisation_id=LAB, registry="NGS", filename=unique() + ".vcf", source="sftp", sender="t"
    )
    await transfer.write(0, vcf())
    assert await intake.files.abort_stale(utcnow()) == 0
    later = utcnow() + timedelta(seconds=intake.settings.stale_transfer_seconds + 1)
    assert await intake.files.abort_stale(later) >= 1
    async with intake.db.session([LAB]) as session:
        row = await session.get(IntakeFile, transfer.id)
    assert row is not None and (row.state, row.rule) == ("aborted", "connection-lost")
    await transfer.abort("connection-lost", "test cleanup")


async def test_a_second_copy_sent_before_finished_replaces_the_first(stack: Stack) -> None:
    name = unique() + ".vcf"

    def send_twice() -> list[str]:
        with sftp(stack.service("intake").sftp_port) as c:
            c.putfo(io.BytesIO(vcf(rows=1)), f"/NGS/{name}")
            c.putfo(io.BytesIO(vcf(rows=5)), f"/NGS/{name}")
            return c.listdir("/NGS")

    listing = await asyncio.to_thread(send_twice)
    assert listing.count(name) == 1
    rows = [
        f
        for f in (
            await stack.client.get(
                f"/api/v1/files/{LAB}",
                params={"limit": 1000},
                headers=await stack.headers("biologist@lab-demo.test"),
            )
        ).json()["items"]
        if f["filename"] == name
    ]
    assert [(r["state"], r["size"]) for r in rows] == [("received", len(vcf(rows=5)))]


async def test_list_files_over_grpc_keeps_other_organisations_out(stack: Stack) -> None:
    await put(stack, "NGS", unique() + ".vcf", vcf())
    stub = pb_grpc.IntakeServiceStub(channel("intake"))
    nurse = await auth.verifier().verify(await stack.token("nurse@az-demo.test"))
    biologist = await auth.verifier().verify(await stack.token("biologist@lab-demo.test"))
    token = auth.current_principal.set(nurse)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListFiles(pb.ListFilesRequest(organisation_id=LAB))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        auth.current_principal.reset(token)
    token = auth.current_principal.set(biologist)
    try:
        answer = await stub.ListFiles(pb.ListFilesRequest(organisation_id=LAB, limit=5))
        assert answer.files and all(f.organisation_id == LAB for f in answer.files)
    finally:
        auth.current_principal.reset(token)


async def test_metrics_count_files_by_registry_and_state_without_names(stack: Stack) -> None:
    name = unique() + ".vcf"
    await put(stack, "NGS", name, vcf())
    await stack.service("intake").domain_metrics()
    text = generate_latest().decode()
    assert 'hdhub_intake_files{registry="NGS",state="accepted"}' in text
    assert 'hdhub_intake_bytes_received_total{source="http"}' in text
    intake_lines = [line for line in text.splitlines() if line.startswith("hdhub_intake")]
    # Intake's own series name no file and no organisation (certificate expiry, the
    # portal's, is per organisation by design and may share this process's registry).
    assert name not in text and not any(LAB in line for line in intake_lines)
