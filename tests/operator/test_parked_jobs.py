"""The operator's parked background jobs in every service with a job queue (registrations,
uploads, intake, nippin), through hdhub.common.jobs: jobs that failed until their attempts
ran out are listed grouped by organisation, kind and error type without payloads; a group
is queued again (attempts from 0) or set aside (archived: out of the parked list, listed
apart, retried from there), each with a reason; only the operator may, and registrations'
delivery jobs are left to the parked deliveries' actions."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

import grpc
import pytest
from sqlalchemy import select

from hdhub.common.auth import OPERATOR_ROLE, current_principal, verifier
from hdhub.common.db import utcnow
from hdhub.common.grpc import channel, problem_from_rpc_error
from hdhub.common.jobs import ARCHIVED, PARKED, QUEUED, JobQueue
from hdhub.intake.store import Job as IntakeJob
from hdhub.nippin.store import Job as NippinJob
from hdhub.proto.intake.v1 import intake_pb2, intake_pb2_grpc
from hdhub.proto.nippin.v1 import nippin_pb2, nippin_pb2_grpc
from hdhub.proto.registrations.v1 import registrations_pb2, registrations_pb2_grpc
from hdhub.proto.uploads.v1 import uploads_pb2, uploads_pb2_grpc
from hdhub.registrations.store import Job as RegistrationsJob
from hdhub.uploads.store import Job as UploadsJob
from tests.support.stack import Stack
from tests.support.tokens import mint

SECRET = "85073003328 Vandersmissen"
#: Each service: its proto module, its stub, its jobs table.
SERVICES: dict[str, tuple[Any, Any, type[Any]]] = {
    "registrations": (registrations_pb2, registrations_pb2_grpc.RegistrationsServiceStub, RegistrationsJob),
    "uploads": (uploads_pb2, uploads_pb2_grpc.UploadsServiceStub, UploadsJob),
    "intake": (intake_pb2, intake_pb2_grpc.IntakeServiceStub, IntakeJob),
    "nippin": (nippin_pb2, nippin_pb2_grpc.NippinServiceStub, NippinJob),
}


async def act_as(stack: Stack, organisations: dict[str, list[str]], realm_roles: list[str]) -> None:
    token = await mint(stack, "console@org.test", organisations, realm_roles)
    current_principal.set(await verifier().verify(token))


async def park(queue: JobQueue, org: str, kind: str, error: str, *, subject: str) -> str:
    """A job of ``kind`` that fails until its attempts run out, as a worker's would."""
    async with queue.db.system_session() as session:
        job = queue.enqueue(
            session, kind, organisation_id=org, subject_id=subject, payload={"ssin": SECRET}, actor="nurse"
        )
        job_id = str(job.id)
    for n in range(queue.max_attempts):
        # Each attempt once its back-off has passed.
        claimed = await queue.claim([kind], now=utcnow() + timedelta(hours=2 * n))
        assert [j.id for j in claimed] == [job_id]
        outcome = await queue.fail(job_id, error)
    assert outcome == PARKED
    return job_id


async def jobs_of(stack: Stack, service: str, ids: list[str]) -> list[tuple[str, int, Any]]:
    model = SERVICES[service][2]
    async with stack.service(service).db.system_session() as session:
        rows = await session.execute(
            select(model.status, model.attempts, model.lease_until).where(model.id.in_(ids))
        )
        return [tuple(r) for r in rows]


def refusal(exc: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> tuple[grpc.StatusCode, list[str]]:
    return exc.value.code(), [e.field for e in problem_from_rpc_error(exc.value).errors]


@pytest.mark.parametrize("service", list(SERVICES))
async def test_operator_lists_retries_and_archives_parked_jobs(
    stack: Stack, service: str, caplog: pytest.LogCaptureFixture
) -> None:
    pb, stub_of, model = SERVICES[service]
    org = f"parked-{uuid.uuid4().hex[:8]}"
    queue = JobQueue(stack.service(service).db, model, max_attempts=2, service=service)
    timeouts = [
        await park(queue, org, "console_sync", f"TimeoutError: {SECRET} did not answer", subject=f"s{n}")
        for n in range(2)
    ]
    refused = [await park(queue, org, "console_other", "ValueError", subject="s9")]
    elsewhere = await park(queue, f"other-{org}", "console_sync", "TimeoutError", subject="s8")
    stub = stub_of(channel(service))

    # A member of the organisation, even its User Manager, and a member of another: refused.
    for organisations in ({org: ["user-manager", "data-manager"]}, {"other-org": ["user-manager"]}):
        await act_as(stack, organisations, [])
        for call in (
            stub.ListParkedJobs(pb.ListParkedJobsRequest(organisation_id=org)),
            stub.RetryParkedJobs(pb.RetryParkedJobsRequest(organisation_id=org, reason="my own jobs")),
            stub.ArchiveParkedJobs(pb.ArchiveParkedJobsRequest(organisation_id=org, reason="my own jobs")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await call
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert {s for s, _, _ in await jobs_of(stack, service, timeouts + refused)} == {PARKED}

    await act_as(stack, {}, [OPERATOR_ROLE])
    listed = await stub.ListParkedJobs(pb.ListParkedJobsRequest(organisation_id=org))
    assert [(g.organisation_id, g.kind, g.error_type, g.jobs, g.max_attempts) for g in listed.groups] == [
        (org, "console_other", "ValueError", 1, 2),
        (org, "console_sync", "TimeoutError", 2, 2),
    ]
    assert all(g.oldest_at and not g.archived for g in listed.groups)
    assert "8507" not in str(listed) and "Vandersmissen" not in str(listed) and "s1" not in str(listed)

    # A reason is required (spaces are none), and an organisation.
    sync = {"organisation_id": org, "kind": "console_sync", "error_type": "TimeoutError"}
    for call in (
        stub.RetryParkedJobs(pb.RetryParkedJobsRequest(**sync, reason="    ")),
        stub.ArchiveParkedJobs(pb.ArchiveParkedJobsRequest(**sync, reason=" \t ")),
        stub.RetryParkedJobs(pb.RetryParkedJobsRequest(**sync, reason="x" * 501)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await call
        assert refusal(invalid) == (grpc.StatusCode.INVALID_ARGUMENT, ["reason"])
    with pytest.raises(grpc.aio.AioRpcError) as no_org:
        await stub.RetryParkedJobs(pb.RetryParkedJobsRequest(kind="console_sync", reason="back up"))
    assert no_org.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # Another error type of the kind is another group: nothing retried.
    other_type = pb.RetryParkedJobsRequest(**{**sync, "error_type": "KeyError"}, reason="wrong group")
    assert (await stub.RetryParkedJobs(other_type)).retried == 0
    caplog.set_level(logging.INFO, logger="hdhub.jobs")
    retried = await stub.RetryParkedJobs(
        pb.RetryParkedJobsRequest(**sync, reason="  the mail server is back  ")
    )
    assert retried.retried == 2
    # Logged with who did what to how many, without the payload or the reason.
    logged = [r for r in caplog.records if r.getMessage() == "parked jobs retried"]
    fields = ("service", "organisation_id", "kind", "count", "actor")
    assert [tuple(getattr(r, f) for f in fields) for r in logged] == [
        (service, org, "console_sync", 2, "console@org.test")
    ]
    assert SECRET not in caplog.text and "mail server" not in caplog.text
    assert await jobs_of(stack, service, timeouts) == [(QUEUED, 0, None), (QUEUED, 0, None)]
    # The other organisation's job of the same kind and error stays parked.
    assert [s for s, _, _ in await jobs_of(stack, service, [elsewhere])] == [PARKED]

    archived = await stub.ArchiveParkedJobs(
        pb.ArchiveParkedJobsRequest(
            organisation_id=org, kind="console_other", error_type="ValueError", reason="known bad input"
        )
    )
    assert archived.archived == 1
    assert [s for s, _, _ in await jobs_of(stack, service, refused)] == [ARCHIVED]
    # Out of the parked list (and of the claims), in the archived one.
    assert not (await stub.ListParkedJobs(pb.ListParkedJobsRequest(organisation_id=org))).groups
    assert not await queue.claim(["console_other"])
    apart = await stub.ListParkedJobs(pb.ListParkedJobsRequest(organisation_id=org, archived=True))
    assert [(g.kind, g.error_type, g.jobs, g.archived) for g in apart.groups] == [
        ("console_other", "ValueError", 1, True)
    ]
    # Archiving again finds nothing parked; retried from the archived ones, it is queued again.
    assert (
        await stub.ArchiveParkedJobs(pb.ArchiveParkedJobsRequest(organisation_id=org, reason="again"))
    ).archived == 0
    back = await stub.RetryParkedJobs(
        pb.RetryParkedJobsRequest(organisation_id=org, archived=True, reason="input fixed by the hospital")
    )
    assert back.retried == 1
    assert await jobs_of(stack, service, refused) == [(QUEUED, 0, None)]
    assert not (
        await stub.ListParkedJobs(pb.ListParkedJobsRequest(organisation_id=org, archived=True))
    ).groups


async def test_registrations_delivery_jobs_are_left_to_the_parked_deliveries(stack: Stack) -> None:
    org = f"parked-{uuid.uuid4().hex[:8]}"
    queue = JobQueue(stack.service("registrations").db, RegistrationsJob, max_attempts=1)
    # Parked directly (a worker of registrations claims these kinds).
    delivery_jobs = []
    async with queue.db.system_session() as session:
        for kind in ("deliver", "deliver_batch", "confirm"):
            job = RegistrationsJob(
                kind=kind, organisation_id=org, payload={}, status=PARKED, attempts=8, last_error="refused"
            )
            session.add(job)
            await session.flush()
            delivery_jobs.append(str(job.id))
    other = await park(queue, org, "console_export", "TimeoutError", subject="s1")
    stub = registrations_pb2_grpc.RegistrationsServiceStub(channel("registrations"))
    await act_as(stack, {}, [OPERATOR_ROLE])
    for kind in ("deliver", "deliver_batch", "confirm"):
        for call in (
            stub.RetryParkedJobs(
                registrations_pb2.RetryParkedJobsRequest(organisation_id=org, kind=kind, reason="outage over")
            ),
            stub.ArchiveParkedJobs(
                registrations_pb2.ArchiveParkedJobsRequest(
                    organisation_id=org, kind=kind, reason="outage over"
                )
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refusal(refused) == (grpc.StatusCode.INVALID_ARGUMENT, ["kind"])
            assert "parked deliveries" in (problem_from_rpc_error(refused.value).errors[0].message)
    # Every kind at once: the delivery jobs are left out, the others retried.
    every = registrations_pb2.RetryParkedJobsRequest(organisation_id=org, reason="outage over")
    assert (await stub.RetryParkedJobs(every)).retried == 1
    assert [s for s, _, _ in await jobs_of(stack, "registrations", [other])] == [QUEUED]
    assert {s for s, _, _ in await jobs_of(stack, "registrations", delivery_jobs)} == {PARKED}
    listed = await stub.ListParkedJobs(registrations_pb2.ListParkedJobsRequest(organisation_id=org))
    assert sorted(g.kind for g in listed.groups) == ["confirm", "deliver", "deliver_batch"]
