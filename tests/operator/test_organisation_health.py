"""The operator's console reads each organisation's health from tallies the database keeps
in the same transaction as every change (hdhub.common.tallies): inserts, bulk updates and
deletes move them, they equal the aggregate over the rows, and only the operator may read
them (a member, even a User Manager of the organisation, is refused)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import grpc
import pytest
from sqlalchemy import and_, case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.common.auth import OPERATOR_ROLE, current_principal, verifier
from hdhub.common.db import utcnow
from hdhub.common.grpc import channel
from hdhub.identity.store import AccountRequest, AuditEntry
from hdhub.intake.store import ACCEPTED, REJECTED, IntakeFile
from hdhub.nippin.store import NippinMessage
from hdhub.proto.identity.v1 import identity_pb2, identity_pb2_grpc
from hdhub.proto.intake.v1 import intake_pb2, intake_pb2_grpc
from hdhub.proto.nippin.v1 import nippin_pb2, nippin_pb2_grpc
from hdhub.proto.registrations.v1 import registrations_pb2 as pb
from hdhub.proto.registrations.v1 import registrations_pb2_grpc as pb_grpc
from hdhub.proto.uploads.v1 import uploads_pb2, uploads_pb2_grpc
from hdhub.registrations.store import (
    Delivery,
    DeliveryTally,
    Job,
    Registration,
    RegistrationTally,
    RegistrationVersion,
)
from hdhub.uploads.store import Upload
from tests.support.stack import Stack
from tests.support.tokens import mint


async def act_as(stack: Stack, organisations: dict[str, list[str]], realm_roles: list[str]) -> None:
    token = await mint(stack, "console@org.test", organisations, realm_roles)
    current_principal.set(await verifier().verify(token))


def registration(org: str, n: int) -> Registration:
    return Registration(
        organisation_id=org,
        project_code="HDBP0012",
        dcd_code="ANGIO_HOSP",
        dcd_version="1.0.0",
        business_key=f"console-{org}-{n}",
        status="submitted",
        values={"secret": "never shown"},
        created_by="test",
    )


async def seed_registrations(stack: Stack, org: str) -> list[str]:
    """Six submitted registrations: two sending, two pending (one sent three days ago),
    one NOK, one parked; then moved and deleted as the worker and people do."""
    now = utcnow()
    db = stack.service("registrations").db
    regs = [registration(org, n) for n in range(6)]
    states = ["sending", "sending", "pending", "pending", "nok", "parked"]
    async with db.system_session() as session:
        session.add_all(regs)
        await session.flush()
        session.add_all(
            Delivery(
                registration_id=r.id,
                organisation_id=org,
                state=s,
                first_sent_at=now - timedelta(days=3 if i == 2 else 0) if s != "sending" else None,
                updated_at=now - timedelta(hours=i),
            )
            for i, (r, s) in enumerate(zip(regs, states, strict=True))
        )
    async with db.system_session() as session:
        # A bulk step: both sending deliveries went out (one statement, two rows).
        await session.execute(
            update(Delivery)
            .where(Delivery.registration_id.in_([regs[0].id, regs[1].id]))
            .values(state="pending", first_sent_at=now)
        )
        # One was confirmed, one registration deleted for good (its delivery cascades).
        await session.execute(
            update(Delivery).where(Delivery.registration_id == regs[3].id).values(state="ok")
        )
        await session.execute(delete(Registration).where(Registration.id == regs[4].id))
    return [r.id for r in regs]


async def delivery_aggregate(session: AsyncSession, org: str | None = None) -> dict[tuple[str, str], int]:
    """Deliveries per organisation and state counted over the rows, a parked one the
    operator archived under ``archived``."""
    bucket = case(
        (and_(Delivery.state == "parked", Delivery.archived_at.is_not(None)), "archived"),
        else_=Delivery.state,
    )
    query = select(Delivery.organisation_id, bucket, func.count()).group_by(Delivery.organisation_id, bucket)
    if org:
        query = query.where(Delivery.organisation_id == org)
    return {(o, b): n for o, b, n in await session.execute(query)}


async def delivery_tallies(session: AsyncSession, org: str | None = None) -> dict[tuple[str, str], int]:
    query = select(DeliveryTally.organisation_id, DeliveryTally.bucket, DeliveryTally.n)
    if org:
        query = query.where(DeliveryTally.organisation_id == org)
    return {(o, b): n for o, b, n in await session.execute(query) if n}


async def test_tallies_follow_every_change_and_equal_the_aggregate(stack: Stack) -> None:
    org = f"console-{uuid.uuid4().hex[:8]}"
    await seed_registrations(stack, org)
    db = stack.service("registrations").db
    async with db.system_session() as session:
        tally = dict(
            (
                await session.execute(
                    select(DeliveryTally.bucket, DeliveryTally.n).where(DeliveryTally.organisation_id == org)
                )
            ).all()
        )
        assert {k: v for k, v in tally.items() if v} == {"pending": 3, "ok": 1, "parked": 1}
        # Over the whole installation (every other test's rows too): tallies == aggregate.
        assert await delivery_tallies(session) == await delivery_aggregate(session)
        live = {
            (o, d): n
            for o, d, n in await session.execute(
                select(
                    Registration.organisation_id,
                    Registration.dcd_code + "@" + Registration.dcd_version,
                    func.count(),
                )
                .where(Registration.status != "deleted")
                .group_by(Registration.organisation_id, Registration.dcd_code, Registration.dcd_version)
            )
        }
        registered = {
            (o, d): n
            for o, d, n in await session.execute(
                select(RegistrationTally.organisation_id, RegistrationTally.bucket, RegistrationTally.n)
            )
            if n
        }
        assert registered == live


async def test_operator_reads_every_organisations_health(stack: Stack) -> None:
    org = f"console-{uuid.uuid4().hex[:8]}"
    await seed_registrations(stack, org)
    now = utcnow()
    async with stack.service("uploads").db.system_session() as session:
        session.add_all(
            Upload(
                organisation_id=org,
                filename=f"u{n}.csv",
                object_key=f"console/u{n}",
                project_code="HDBP0012",
                dcd_code="ANGIO_HOSP",
                dcd_version="1.0.0",
                uploaded_by="test",
                status=status,
                finished_at=at,
            )
            for n, (status, at) in enumerate(
                [
                    ("failed", now),
                    ("failed", now - timedelta(hours=2)),
                    ("failed", now - timedelta(days=3)),
                    ("done", now),
                ]
            )
        )
    async with stack.service("intake").db.system_session() as session:
        session.add_all(
            IntakeFile(
                organisation_id=org,
                registry_folder="HDBP0257",
                filename=f"f{n}.vcf",
                source="sftp",
                sender="test",
                object_key=f"console/f{n}",
                state=state,
                unmatched=unmatched,
            )
            for n, (state, unmatched) in enumerate([(REJECTED, False), (ACCEPTED, True), (ACCEPTED, False)])
        )
    async with stack.service("nippin").db.system_session() as session:
        session.add_all(
            NippinMessage(
                organisation_id=org,
                registration_id=str(uuid.uuid4()),
                registration_version=1,
                dcd_code="PACEMAKER",
                dcd_version="1.0.0",
                schema_version="1",
                wrapped_key=b"",
                master_key_id="test",
                status=s,
            )
            for s in ["ERROR", "ERROR", "INVALID", "SENT"]
        )

    await act_as(stack, {}, [OPERATOR_ROLE])
    reply = await pb_grpc.RegistrationsServiceStub(channel("registrations")).OrganisationHealth(
        pb.OrganisationHealthRequest()
    )
    health = next(h for h in reply.organisations if h.organisation_id == org)
    assert (health.registrations, list(health.registries)) == (5, ["ANGIO_HOSP"])
    assert dict(health.deliveries) == {"pending": 3, "ok": 1, "parked": 1}
    assert (health.backlog, health.confirmations_overdue) == (3, 1)
    assert health.oldest_backlog_at  # the pending one sent three days ago
    # Counts and states only: nothing of a registration's values travels.
    assert b"never shown" not in reply.SerializeToString()
    usage = await pb_grpc.RegistrationsServiceStub(channel("registrations")).CatalogueUsage(
        pb.CatalogueUsageRequest()
    )
    assert [(u.dcd_code, u.version, u.registrations) for u in usage.usage if u.organisation_id == org] == [
        ("ANGIO_HOSP", "1.0.0", 5)
    ]

    uploads = await uploads_pb2_grpc.UploadsServiceStub(channel("uploads")).OrganisationHealth(
        uploads_pb2.OrganisationHealthRequest()
    )
    assert dict(next(o for o in uploads.organisations if o.organisation_id == org).counts) == {
        "failed_last_day": 2
    }
    files = await intake_pb2_grpc.IntakeServiceStub(channel("intake")).OrganisationHealth(
        intake_pb2.OrganisationHealthRequest()
    )
    # intake's worker links accepted files meanwhile: the answer is what the rows say.
    async with stack.service("intake").db.system_session() as session:
        mine = (
            (await session.execute(select(IntakeFile).where(IntakeFile.organisation_id == org)))
            .scalars()
            .all()
        )
        expected = {
            "refused": sum(1 for f in mine if f.state == REJECTED),
            "unmatched": sum(1 for f in mine if f.unmatched),
        }
    assert expected["refused"] == 1
    assert dict(next(o for o in files.organisations if o.organisation_id == org).counts) == expected
    nippin = await nippin_pb2_grpc.NippinServiceStub(channel("nippin")).OrganisationHealth(
        nippin_pb2.OrganisationHealthRequest()
    )
    assert dict(next(o for o in nippin.organisations if o.organisation_id == org).counts) == {
        "error": 2,
        "invalid": 1,
        "to_send": 0,
    }


@pytest.mark.parametrize(
    "organisations",
    [
        pytest.param({"az-demo": ["user-manager", "data-manager"]}, id="member-of-an-organisation"),
        pytest.param(
            {"other-org": ["user-manager", "data-manager", "nippin-manager"]}, id="member-of-another"
        ),
    ],
)
async def test_anyone_but_the_operator_is_refused(stack: Stack, organisations: dict[str, list[str]]) -> None:
    await act_as(stack, organisations, [])
    calls = [
        pb_grpc.RegistrationsServiceStub(channel("registrations")).OrganisationHealth(
            pb.OrganisationHealthRequest()
        ),
        pb_grpc.RegistrationsServiceStub(channel("registrations")).CatalogueUsage(pb.CatalogueUsageRequest()),
        uploads_pb2_grpc.UploadsServiceStub(channel("uploads")).OrganisationHealth(
            uploads_pb2.OrganisationHealthRequest()
        ),
        intake_pb2_grpc.IntakeServiceStub(channel("intake")).OrganisationHealth(
            intake_pb2.OrganisationHealthRequest()
        ),
        nippin_pb2_grpc.NippinServiceStub(channel("nippin")).OrganisationHealth(
            nippin_pb2.OrganisationHealthRequest()
        ),
        identity_pb2_grpc.IdentityServiceStub(channel("identity")).ListInstallationOrganisations(
            identity_pb2.ListInstallationOrganisationsRequest()
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_operator_lists_and_retries_parked_deliveries_with_a_reason(stack: Stack) -> None:
    org = f"console-{uuid.uuid4().hex[:8]}"
    ids = await seed_registrations(stack, org)
    stub = pb_grpc.RegistrationsServiceStub(channel("registrations"))
    await act_as(stack, {org: ["user-manager", "data-manager"]}, [])
    for call in (
        stub.ListParkedDeliveries(pb.ListParkedDeliveriesRequest(organisation_id=org)),
        stub.RetryParkedDeliveries(pb.RetryParkedDeliveriesRequest(organisation_id=org, reason="my own")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    await act_as(stack, {}, [OPERATOR_ROLE])
    listed = await stub.ListParkedDeliveries(pb.ListParkedDeliveriesRequest(organisation_id=org))
    assert listed.total == 1
    assert [(d.registration_id, d.reason) for d in listed.deliveries] == [(ids[5], "no_confirmation")]
    with pytest.raises(grpc.aio.AioRpcError) as no_reason:
        await stub.RetryParkedDeliveries(pb.RetryParkedDeliveriesRequest(organisation_id=org, reason=" "))
    assert no_reason.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reply = await stub.RetryParkedDeliveries(
        pb.RetryParkedDeliveriesRequest(organisation_id=org, reason="central platform back after outage")
    )
    assert reply.retried == 1
    assert (await stub.ListParkedDeliveries(pb.ListParkedDeliveriesRequest(organisation_id=org))).total == 0
    db = stack.service("registrations").db
    async with db.system_session() as session:
        history = (
            await session.execute(
                select(
                    RegistrationVersion.action, RegistrationVersion.actor, RegistrationVersion.comment
                ).where(RegistrationVersion.registration_id == ids[5], RegistrationVersion.via == "operator")
            )
        ).all()
        assert history == [("delivery_retried", "console@org.test", "central platform back after outage")]
        jobs = (await session.execute(select(Job.kind).where(Job.subject_id == ids[5]))).scalars().all()
        assert "confirm" in jobs


async def test_operator_archives_parked_deliveries_with_a_reason_and_retries_them_later(stack: Stack) -> None:
    org = f"console-{uuid.uuid4().hex[:8]}"
    ids = await seed_registrations(stack, org)
    stub = pb_grpc.RegistrationsServiceStub(channel("registrations"))
    archive = pb.ArchiveParkedDeliveriesRequest(
        organisation_id=org, reason="known bad record, told the hospital"
    )
    # A member of the organisation (even its managers) and a member of another: refused.
    for organisations in ({org: ["user-manager", "data-manager"]}, {"other-org": ["user-manager"]}):
        await act_as(stack, organisations, [])
        for call in (
            stub.ArchiveParkedDeliveries(archive),
            stub.ListParkedDeliveries(pb.ListParkedDeliveriesRequest(organisation_id=org, archived=True)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    db = stack.service("registrations").db
    async with db.system_session() as session:
        assert (await session.get(Delivery, ids[5])).archived_at is None  # type: ignore[union-attr]
        version = (await session.get(Registration, ids[5])).version  # type: ignore[union-attr]

    await act_as(stack, {}, [OPERATOR_ROLE])
    for bad in (
        pb.ArchiveParkedDeliveriesRequest(organisation_id=org, reason="  "),
        pb.ArchiveParkedDeliveriesRequest(reason="no organisation named"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await stub.ArchiveParkedDeliveries(bad)
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await stub.ArchiveParkedDeliveries(archive)).archived == 1
    assert (await stub.ArchiveParkedDeliveries(archive)).archived == 0  # none left parked
    # Out of the parked list and count, listed as archived with who and why; nothing deleted.
    assert (await stub.ListParkedDeliveries(pb.ListParkedDeliveriesRequest(organisation_id=org))).total == 0
    archived = await stub.ListParkedDeliveries(
        pb.ListParkedDeliveriesRequest(organisation_id=org, archived=True)
    )
    assert [(d.registration_id, d.reason, d.archived_by, d.archive_reason) for d in archived.deliveries] == [
        (ids[5], "no_confirmation", "console@org.test", "known bad record, told the hospital")
    ]
    assert archived.deliveries[0].archived_at
    health = next(
        h
        for h in (await stub.OrganisationHealth(pb.OrganisationHealthRequest())).organisations
        if h.organisation_id == org
    )
    assert dict(health.deliveries) == {"pending": 3, "ok": 1, "archived": 1}
    async with db.system_session() as session:
        assert await delivery_tallies(session, org) == await delivery_aggregate(session, org)
        assert (await session.get(Delivery, ids[5])).state == "parked"  # type: ignore[union-attr]
        # Its history entry is the registration's next version (one per version).
        assert (await session.get(Registration, ids[5])).version == version + 1  # type: ignore[union-attr]
        history = (
            await session.execute(
                select(
                    RegistrationVersion.action, RegistrationVersion.actor, RegistrationVersion.comment
                ).where(RegistrationVersion.registration_id == ids[5], RegistrationVersion.via == "operator")
            )
        ).all()
        assert history == [("delivery_archived", "console@org.test", "known bad record, told the hospital")]

    # A retry of the parked ones leaves the archived one; a retry of the archived ones takes it up.
    parked_only = pb.RetryParkedDeliveriesRequest(organisation_id=org, reason="outage over")
    assert (await stub.RetryParkedDeliveries(parked_only)).retried == 0
    reply = await stub.RetryParkedDeliveries(
        pb.RetryParkedDeliveriesRequest(
            organisation_id=org, reason="hospital fixed it", archived=True, registration_ids=[ids[5]]
        )
    )
    assert reply.retried == 1
    assert (
        await stub.ListParkedDeliveries(pb.ListParkedDeliveriesRequest(organisation_id=org, archived=True))
    ).total == 0
    async with db.system_session() as session:
        assert await delivery_tallies(session, org) == {(org, "pending"): 3, (org, "ok"): 1, (org, "nok"): 1}
        assert await delivery_tallies(session, org) == await delivery_aggregate(session, org)
        row = await session.get(Delivery, ids[5])
        assert row is not None and (row.state, row.archived_at, row.archive_reason) == ("nok", None, None)


async def test_operator_sees_stale_account_requests_and_the_installation_audit(stack: Stack) -> None:
    org = f"console-{uuid.uuid4().hex[:8]}"
    now = utcnow()
    async with stack.service("identity").db.system_session() as session:
        session.add_all(
            AccountRequest(
                organisation_id=org,
                username=f"applicant{n}@{org}.test",
                first_name="A",
                last_name="Pplicant",
                email=f"applicant{n}@{org}.test",
                status=status,
                created_at=now - timedelta(days=days),
            )
            for n, (status, days) in enumerate(
                [("pending", 9), ("pending", 8), ("pending", 2), ("rejected", 30)]
            )
        )
        session.add(
            AuditEntry(organisation_id=org, actor="uma", actor_id="1", action="member.add", target="x")
        )
    stub = identity_pb2_grpc.IdentityServiceStub(channel("identity"))
    for organisations in ({org: ["user-manager"]}, {"az-demo": ["user-manager", "data-manager"]}):
        await act_as(stack, organisations, [])
        for call in (
            stub.ListStaleAccountRequests(identity_pb2.ListStaleAccountRequestsRequest()),
            stub.ListInstallationAudit(identity_pb2.ListInstallationAuditRequest()),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    await act_as(stack, {}, [OPERATOR_ROLE])
    stale = await stub.ListStaleAccountRequests(identity_pb2.ListStaleAccountRequestsRequest())
    mine = next(o for o in stale.organisations if o.organisation_id == org)
    assert mine.pending == 2 and mine.oldest_at.startswith((now - timedelta(days=9)).date().isoformat())
    assert b"applicant" not in stale.SerializeToString()  # counts, not the applicants
    audit = await stub.ListInstallationAudit(
        identity_pb2.ListInstallationAuditRequest(action="member.", page_size=5)
    )
    assert audit.entries and all(e.action.startswith("member.") for e in audit.entries)
    assert (audit.entries[0].organisation_id, audit.entries[0].actor) == (org, "uma")
    named = await stub.ListInstallationOrganisations(identity_pb2.ListInstallationOrganisationsRequest())
    assert {o.id: o.title for o in named.organisations}["az-demo"] == "AZ Demo Hospital"
    # Members per organisation, counted as the members page lists them.
    directory = stack.service("identity").directory
    for o in ("az-demo", "lab-demo"):
        assert named.members[o] == len(await directory.backend.members(o)) > 0


async def test_operator_actions_elsewhere_are_in_the_installation_audit(stack: Stack) -> None:
    stub = identity_pb2_grpc.IdentityServiceStub(channel("identity"))
    action = identity_pb2.RecordOperatorActionRequest(
        action="deliveries.retried", organisation_id="az-demo", reason="central platform back", count=3
    )
    for organisations in ({"az-demo": ["user-manager", "data-manager"]}, {"lab-demo": ["user-manager"]}):
        await act_as(stack, organisations, [])
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RecordOperatorAction(action)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListInstallationOrganisations(identity_pb2.ListInstallationOrganisationsRequest())
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    await act_as(stack, {}, [OPERATOR_ROLE])
    recorded = await stub.RecordOperatorAction(action)
    installation_wide = await stub.RecordOperatorAction(
        identity_pb2.RecordOperatorActionRequest(action="catalogue.published", target="ANGIO_HOSP 1.1.0")
    )
    for bad, code in (
        (identity_pb2.RecordOperatorActionRequest(action="Drop Table"), grpc.StatusCode.INVALID_ARGUMENT),
        (
            identity_pb2.RecordOperatorActionRequest(action="a.b", reason="ok \u202egnp.exe"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            identity_pb2.RecordOperatorActionRequest(action="a.b", reason="x" * 501),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            identity_pb2.RecordOperatorActionRequest(action="a.b", organisation_id="no-such-org"),
            grpc.StatusCode.NOT_FOUND,
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RecordOperatorAction(bad)
        assert refused.value.code() == code
    audit = await stub.ListInstallationAudit(
        identity_pb2.ListInstallationAuditRequest(action="operator.", page_size=2)
    )
    assert [(e.id, e.action, e.organisation_id, e.target, e.actor) for e in audit.entries] == [
        (installation_wide.id, "operator.catalogue.published", "", "ANGIO_HOSP 1.1.0", "console@org.test"),
        (recorded.id, "operator.deliveries.retried", "az-demo", "", "console@org.test"),
    ]
    async with stack.service("identity").db.system_session() as session:
        entry = await session.get(AuditEntry, recorded.id)
        assert entry is not None and entry.details == {"reason": "central platform back", "count": 3}


async def test_operator_lists_parked_jobs_grouped_without_payloads(stack: Stack) -> None:
    org = f"console-{uuid.uuid4().hex[:8]}"
    db = stack.service("registrations").db
    secret = "85073003328 Vandersmissen"
    async with db.system_session() as session:
        session.add_all(
            [
                Job(
                    kind="export",
                    organisation_id=org,
                    subject_id="s1",
                    payload={"ssin": secret},
                    status="parked",
                    attempts=5,
                    last_error="TimeoutError",
                ),
                Job(
                    kind="export",
                    organisation_id=org,
                    subject_id="s2",
                    payload={},
                    status="parked",
                    attempts=3,
                    last_error="TimeoutError",
                ),
                Job(
                    kind="export",
                    organisation_id=org,
                    subject_id="s3",
                    payload={},
                    status="parked",
                    attempts=5,
                    last_error=f"refused: {secret}",
                ),
                Job(
                    kind="export",
                    organisation_id=org,
                    subject_id="s4",
                    payload={},
                    status="queued",
                    attempts=1,
                    last_error="TimeoutError",
                ),
            ]
        )
    stub = pb_grpc.RegistrationsServiceStub(channel("registrations"))
    for organisations in ({org: ["user-manager", "data-manager"]}, {"other-org": ["user-manager"]}):
        await act_as(stack, organisations, [])
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListParkedJobs(pb.ListParkedJobsRequest(organisation_id=org))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await act_as(stack, {}, [OPERATOR_ROLE])
    reply = await stub.ListParkedJobs(pb.ListParkedJobsRequest(organisation_id=org))
    assert [(g.kind, g.error_type, g.jobs, g.max_attempts) for g in reply.groups] == [
        ("export", "TimeoutError", 2, 5),
        ("export", "refused", 1, 5),
    ]
    assert all(g.organisation_id == org and g.oldest_at for g in reply.groups)
    assert "8507" not in str(reply) and "Vandersmissen" not in str(reply) and "s1" not in str(reply)
