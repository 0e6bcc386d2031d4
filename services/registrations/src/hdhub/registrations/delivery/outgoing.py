"""A registration version on its way to the central platform, as a delivery step reads
it from its job, its registration and its delivery row."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from hdhub.common.auth import ActingFor
from hdhub.common.db import Database, bulk_insert, new_id
from hdhub.common.jobs import JobQueue
from hdhub.registrations.delivery.rows import DeliveryState
from hdhub.registrations.delivery.split import Identifier
from hdhub.registrations.records.lifecycle import RegistrationStatus
from hdhub.registrations.store import Delivery as DeliveryRow
from hdhub.registrations.store import Registration

#: Who a delivery acts for when its job names nobody.
DELIVERY_ACTOR = "delivery"


@dataclass
class Outgoing:
    """One registration version on its way, and what happened to it in this attempt."""

    job: Any
    registration_id: str
    organisation_id: str
    project_code: str
    dcd_code: str
    dcd_version: str
    registration_code: str
    version: int
    values: dict[str, Any]
    technical_id: str = ""
    #: None: both halves went out. Else a slug: why not.
    failure: str | None = None
    #: True when the registration stays with hdhub (Sending): pseudonymisation did not take it.
    waiting: bool = False
    #: True when refused for good (an identifier pseudonymisation cannot use).
    refused: bool = False
    #: The split of ``values``, worked out once per attempt.
    identifier: Identifier | None = None
    variables: dict[str, Any] | None = None

    @property
    def actor(self) -> str:
        """Who submitted it: the delivery job's actor."""
        acting = JobQueue.acting_for(self.job)
        return acting.actor if acting is not None else DELIVERY_ACTOR


def acting_for(organisation_id: str, items: Sequence[Outgoing]) -> ActingFor:
    """A delivery call for one organisation's registrations, in the name of who submitted
    them (the first of them: a batch of one organisation's submissions goes out at once)."""
    return ActingFor(organisation_id, items[0].actor if items else DELIVERY_ACTOR)


def wait(items: Iterable[Outgoing], reason: str) -> None:
    """These stay with hdhub (Sending) for ``reason``, unless refused already."""
    for o in items:
        if not o.refused:
            o.waiting, o.failure = True, reason


def grouped(
    items: Iterable[Outgoing], key: Callable[[Outgoing], tuple[Any, ...]]
) -> list[tuple[tuple[Any, ...], list[Outgoing]]]:
    """``items`` grouped by ``key``, in order of first appearance."""
    groups: dict[tuple[Any, ...], list[Outgoing]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return list(groups.items())


@dataclass
class Member:
    """One registration of a ``deliver_batch`` job, standing in for a ``deliver`` job of
    its own: same subject, version, organisation, actor and trace. It has no row: what a
    step does to a job (finish, defer, park) it does to the batch job for all its members
    together, or to a job written for this registration alone (:func:`own_jobs`)."""

    batch: Any
    subject_id: str
    payload: dict[str, Any]

    @property
    def organisation_id(self) -> str | None:
        return self.batch.organisation_id  # type: ignore[no-any-return]

    @property
    def trace_context(self) -> dict[str, Any]:
        return self.batch.trace_context or {}


def members(batch: Any) -> list[Member]:
    """The registrations a ``deliver_batch`` job delivers, each as a :class:`Member`."""
    payload = dict(batch.payload or {})
    ids = payload.pop("registrations", [])
    return [Member(batch, str(reg_id), payload) for reg_id in ids]


def own_jobs(jobs: Iterable[Any]) -> list[str]:
    """The ids of the jobs with a row of their own (members of a batch job left out)."""
    return [j.id for j in jobs if not isinstance(j, Member)]


def _version(job: Any) -> int:
    return int((job.payload or {}).get("version", 0))


def _newest(jobs: Sequence[Any]) -> tuple[dict[str, Any], list[Any]]:
    """The newest job of each registration, and the older ones (a registration resubmitted
    quickly has two jobs in one batch: the newest counts)."""
    by_id: dict[str, Any] = {}
    superseded: list[Any] = []
    for job in sorted(jobs, key=_version):
        if job.subject_id in by_id:
            superseded.append(by_id[job.subject_id])
        by_id[job.subject_id] = job
    return by_id, superseded


_COLUMNS = (
    Registration.id,
    Registration.organisation_id,
    Registration.status,
    Registration.version,
    Registration.project_code,
    Registration.dcd_code,
    Registration.dcd_version,
    Registration.registration_code,
)


async def load(
    db: Database,
    jobs: Sequence[Any],
    now: datetime,
    *,
    want_status: RegistrationStatus,
    with_values: bool = True,
) -> tuple[list[Outgoing], list[Any]]:
    """The registrations of the jobs still at the version and status the job is for, with
    their delivery rows (created here, with a technical id, when missing), and the jobs
    superseded. Only the columns used are read; the values only ``with_values`` (see
    :func:`with_values_read`)."""
    by_id, superseded = _newest(jobs)
    created: list[dict[str, Any]] = []
    outgoing: list[Outgoing] = []
    async with db.system_session() as session:
        columns = [*_COLUMNS, Registration.values] if with_values else list(_COLUMNS)
        regs = {
            r.id: r for r in await session.execute(select(*columns).where(db.among(Registration.id, by_id)))
        }
        rows = {
            d.registration_id: d
            for d in await session.execute(
                select(
                    DeliveryRow.registration_id, DeliveryRow.technical_id, DeliveryRow.content_version
                ).where(db.among(DeliveryRow.registration_id, by_id))
            )
        }
        for reg_id, job in by_id.items():
            reg, row, version = regs.get(reg_id), rows.get(reg_id), _version(job)
            if (
                reg is None
                or reg.status != want_status
                or (want_status == RegistrationStatus.SENDING and reg.version != version)
                or (
                    want_status == RegistrationStatus.SUBMITTED
                    and row is not None
                    and row.content_version != version
                )
            ):
                superseded.append(job)
                continue
            if row is None:
                technical_id = new_id()
                created.append(_new_row(reg_id, reg.organisation_id, technical_id, version, now))
            else:
                technical_id = row.technical_id
            outgoing.append(
                Outgoing(
                    job=job,
                    registration_id=reg_id,
                    organisation_id=reg.organisation_id,
                    project_code=reg.project_code,
                    dcd_code=reg.dcd_code,
                    dcd_version=reg.dcd_version,
                    registration_code=reg.registration_code or "",
                    version=version,
                    values=dict(reg.values) if with_values else {},
                    technical_id=technical_id,
                )
            )
        # The new delivery rows (with their technical ids) in one insert.
        await bulk_insert(session, DeliveryRow, created)
    return outgoing, superseded


def _new_row(
    registration_id: str, organisation_id: str, technical_id: str, version: int, now: datetime
) -> dict[str, Any]:
    return {
        "registration_id": registration_id,
        "organisation_id": organisation_id,
        "technical_id": technical_id,
        "content_version": version,
        "state": DeliveryState.SENDING.value,
        "reason": None,
        "attempts": 0,
        "updated_at": now,
    }


async def with_values_read(db: Database, items: Sequence[Outgoing]) -> list[Outgoing]:
    """Read the values of registrations about to be resent (a confirmation check that finds
    a delivery confirmed, which is most, does not need them); those no longer Submitted
    (reopened meanwhile: a new delivery follows) are left out."""
    async with db.system_session() as session:
        found = {
            r.id: r.values
            for r in await session.execute(
                select(Registration.id, Registration.values).where(
                    db.among(Registration.id, [o.registration_id for o in items]),
                    Registration.status == RegistrationStatus.SUBMITTED,
                )
            )
        }
    for o in items:
        o.values = dict(found.get(o.registration_id) or {})
    return [o for o in items if o.registration_id in found]
