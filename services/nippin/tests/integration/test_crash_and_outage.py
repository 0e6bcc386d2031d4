"""A worker killed at any point neither loses nor doubles a message (the stand-in counts what
it received, and the duplicates it dropped by message id); MyCareNet down for a day keeps
messages in ERROR, retried with back-off, and SENT once it is back."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from hdhub.common.db import utcnow
from hdhub.nippin.service import SEND_JOB, Messages
from hdhub.nippin.store import Job, NippinMessage
from hdhub.nippin.worker import process_jobs
from hdhub.registrations.delivery.handoff import NIPPIN_JOB, Handoff, job_id
from hdhub.registrations.store import Job as RegistrationsJob
from services.nippin.tests.integration.support import (
    as_operator,
    implant,
    message_in,
    messages_of,
    mycarenet,
    submit,
)
from tests.support.stack import Stack


class Killed(BaseException):
    """The process died here (a BaseException: nothing on the way catches it)."""


def _receipts(stack: Stack, *message_ids: str) -> list[int]:
    """How many times the stand-in received each message (by id)."""
    received = stack.service("sim").mycarenet.receipts
    return [received.get(m, 0) for m in message_ids]


class DyingRest:
    """The doomed worker's MyCareNet client: dies before sending, or after MyCareNet took it."""

    def __init__(self, real: Any, *, after_sending: bool) -> None:
        self.real, self.after_sending = real, after_sending

    async def send(self, message_id: str, xml: bytes) -> Any:
        if self.after_sending:
            await self.real.send(message_id, xml)
        raise Killed


async def _queued_message(stack: Stack) -> tuple[dict[str, Any], str, datetime]:
    """A TO_SEND message whose send job nobody has claimed yet, due a day from now: the
    test plays that day with a worker of its own (the stack's workers never get to it)."""
    reg = await submit(stack, implant())
    message = await message_in(stack, reg["id"], "TO_SEND", "ERROR")
    later = utcnow() + timedelta(days=1)
    async with stack.service("nippin").db.system_session() as session:
        await session.execute(
            update(Job)
            .where(Job.subject_id == message["id"])
            .values(status="queued", run_after=later, lease_until=None)
        )
    return reg, message["id"], later


async def _kill_a_worker_sending(stack: Stack, message_id: str, at: datetime, *, after_sending: bool) -> None:
    nippin = stack.service("nippin")
    doomed = Messages(nippin.db, nippin.settings, nippin.messages.envelope)
    doomed.rest = DyingRest(nippin.messages.rest, after_sending=after_sending)  # type: ignore[assignment]
    jobs = [j for j in await doomed.jobs.claim([SEND_JOB], limit=1000, now=at) if j.subject_id == message_id]
    assert len(jobs) == 1
    with pytest.raises(Killed):
        await doomed.send(jobs[0], at)


async def _after_lease(stack: Stack, message_id: str) -> datetime:
    async with stack.service("nippin").db.system_session() as session:
        lease = (
            await session.execute(select(Job.lease_until).where(Job.subject_id == message_id))
        ).scalar_one()
    assert lease is not None
    return lease + timedelta(seconds=1)


async def test_a_worker_killed_after_mycarenet_took_the_message_sends_it_again_once(stack: Stack) -> None:
    async with mycarenet(stack, "down", retry_first_seconds=3600.0) as nippin:
        reg, message_id, later = await _queued_message(stack)
        await as_operator(stack, "PUT", "/sim/mycarenet", json={"mode": "accept"})
        await _kill_a_worker_sending(stack, message_id, later, after_sending=True)  # MyCareNet has it
        assert (await messages_of(stack, reg["id"]))[0]["status"] in ("TO_SEND", "ERROR")
        await process_jobs(nippin, later + timedelta(seconds=30))  # the dead worker's lease holds
        assert (await messages_of(stack, reg["id"]))[0]["status"] in ("TO_SEND", "ERROR")
        assert _receipts(stack, message_id) == [1]
        taken_over = await _after_lease(stack, message_id)
        message = await message_in(stack, reg["id"], "SENT", now=lambda: taken_over)
        assert message["id"] == message_id
        assert _receipts(stack, message_id) == [2]  # sent twice: the second one dropped by id
        assert stack.service("sim").mycarenet.answered[message_id]  # kept once


async def test_a_worker_killed_before_sending_sends_once_after_the_lease(stack: Stack) -> None:
    async with mycarenet(stack, "down", retry_first_seconds=3600.0):
        reg, message_id, later = await _queued_message(stack)
        await as_operator(stack, "PUT", "/sim/mycarenet", json={"mode": "accept"})
        await _kill_a_worker_sending(stack, message_id, later, after_sending=False)
        taken_over = await _after_lease(stack, message_id)
        await message_in(stack, reg["id"], "SENT", now=lambda: taken_over)
        assert _receipts(stack, message_id) == [1]


async def test_a_hand_over_redone_after_a_crash_makes_no_second_message(stack: Stack) -> None:
    registrations = stack.service("registrations")
    reg = await submit(stack, implant(CD_REIMBURSEMENT="no"))  # makes no job of its own
    later = utcnow() + timedelta(days=1)  # played by the test's own workers only
    doomed = Handoff(registrations.db, registrations.catalogue)
    real_finish = doomed.jobs.finish

    async def die(session: Any, job_id: str) -> None:
        raise Killed  # nippin made the message; the job is never marked done

    doomed.jobs.finish = die  # type: ignore[method-assign]
    async with registrations.db.system_session() as session:
        doomed.jobs.enqueue(  # its hand-over job, as the submit of a reimbursed registration writes it
            session,
            NIPPIN_JOB,
            organisation_id="az-demo",
            subject_id=reg["id"],
            payload={"version": reg["version"]},
            job_id=job_id(reg["id"], reg["version"]),
            actor="nurse@az-demo.test",
            run_after=later,
        )
    with pytest.raises(Killed):
        await doomed.process_jobs(now=later)
    assert len(await messages_of(stack, reg["id"])) == 1
    assert await doomed.process_jobs(now=later + timedelta(seconds=30)) == 0  # the lease holds
    doomed.jobs.finish = real_finish  # type: ignore[method-assign]
    assert await doomed.process_jobs(now=later + timedelta(seconds=61)) == 1  # taken over
    async with registrations.db.system_session() as session:
        status = (
            await session.execute(
                select(RegistrationsJob.status).where(
                    RegistrationsJob.subject_id == reg["id"], RegistrationsJob.kind == NIPPIN_JOB
                )
            )
        ).scalar_one()
    assert status == "done"
    assert len(await messages_of(stack, reg["id"])) == 1


async def test_mycarenet_down_for_a_day_retries_with_back_off_and_sends_each_once(stack: Stack) -> None:
    clock = {"now": utcnow()}
    # back-off: 60 s doubling, at most an hour; no nightly report in the played day (it would
    # be the newest report, of a night still to come, for the tests after this one)
    async with mycarenet(stack, "down", report_hour=24) as nippin:
        regs = [await submit(stack, implant()) for _ in range(5)]
        for reg in regs:
            await message_in(stack, reg["id"], "ERROR", now=lambda: clock["now"])
        end = clock["now"] + timedelta(hours=24)
        while clock["now"] < end:  # a day, a minute at a time
            clock["now"] += timedelta(minutes=1)
            await process_jobs(nippin, clock["now"])
        down = [(await messages_of(stack, r["id"]))[0] for r in regs]
        assert {m["status"] for m in down} == {"ERROR"}
        assert {m["last_error"] for m in down} == {"MyCareNet answered HTTP 503"}
        # 60, 120, ... 1920 s, then hourly: about 29 attempts in a day, not one a minute.
        assert all(25 <= m["sends"] <= 32 for m in down), [m["sends"] for m in down]
        ids = [m["id"] for m in down]
        assert _receipts(stack, *ids) == [0] * 5

        await as_operator(stack, "PUT", "/sim/mycarenet", json={"mode": "accept"})
        back = clock["now"] + timedelta(hours=1)
        for reg in regs:
            await message_in(stack, reg["id"], "SENT", now=lambda: back)
        assert _receipts(stack, *ids) == [1] * 5  # each once
        async with nippin.db.system_session() as session:
            statuses = (
                (
                    await session.execute(
                        select(NippinMessage.status).where(
                            NippinMessage.registration_id.in_([r["id"] for r in regs])
                        )
                    )
                )
                .scalars()
                .all()
            )
        assert sorted(statuses) == ["SENT"] * 5
