"""A worker killed at any point neither loses nor doubles a message (the stand-in counts what
it received, and the duplicates it dropped by message id); MyCareNet down for a day keeps
messages in ERROR, retried with back-off, and SENT once it is back."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from hdhub.common.db import utcnow
from hdhub.nippin.store import Job, NippinMessage
from hdhub.nippin.worker import process_jobs
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


async def _queued_message(stack: Stack) -> tuple[dict[str, Any], str]:
    """A TO_SEND message whose send job nobody has claimed yet (the stand-in is down, the
    job deferred), made due now for the doomed worker."""
    reg = await submit(stack, implant())
    message = await message_in(stack, reg["id"], "TO_SEND", "ERROR")
    nippin = stack.service("nippin")
    async with nippin.db.system_session() as session:
        await session.execute(
            update(Job)
            .where(Job.subject_id == message["id"])
            .values(status="queued", run_after=utcnow(), lease_until=None)
        )
    return reg, message["id"]


async def _after_lease(stack: Stack, message_id: str) -> datetime:
    async with stack.service("nippin").db.system_session() as session:
        lease = (
            await session.execute(select(Job.lease_until).where(Job.subject_id == message_id))
        ).scalar_one()
    assert lease is not None
    return lease + timedelta(seconds=1)


async def test_a_worker_killed_after_mycarenet_took_the_message_sends_it_again_once(stack: Stack) -> None:
    async with mycarenet(stack, "down", retry_first_seconds=3600.0) as nippin:
        reg, message_id = await _queued_message(stack)
        await as_operator(stack, "PUT", "/sim/mycarenet", json={"mode": "accept"})
        real = nippin.messages.rest.send

        async def send_then_die(mid: str, xml: bytes) -> Any:
            await real(mid, xml)
            raise Killed  # MyCareNet has it; the TACK is never recorded

        nippin.messages.rest.send = send_then_die
        try:
            try:
                await process_jobs(nippin)
            except Killed:
                pass
        finally:
            nippin.messages.rest.send = real
        assert (await messages_of(stack, reg["id"]))[0]["status"] in ("TO_SEND", "ERROR")
        assert await process_jobs(nippin) == 0  # the dead worker's lease still holds
        taken_over = await _after_lease(stack, message_id)
        message = await message_in(stack, reg["id"], "SENT", now=lambda: taken_over)
        assert message["id"] == message_id
        assert _receipts(stack, message_id) == [2]  # sent twice: the second one dropped by id
        assert stack.service("sim").mycarenet.answered[message_id]  # kept once


async def test_a_worker_killed_before_sending_sends_once_after_the_lease(stack: Stack) -> None:
    async with mycarenet(stack, "down", retry_first_seconds=3600.0) as nippin:
        reg, message_id = await _queued_message(stack)
        await as_operator(stack, "PUT", "/sim/mycarenet", json={"mode": "accept"})
        real = nippin.messages.rest.send

        async def die(mid: str, xml: bytes) -> Any:
            raise Killed

        nippin.messages.rest.send = die
        try:
            try:
                await process_jobs(nippin)
            except Killed:
                pass
        finally:
            nippin.messages.rest.send = real
        taken_over = await _after_lease(stack, message_id)
        await message_in(stack, reg["id"], "SENT", now=lambda: taken_over)
        assert _receipts(stack, message_id) == [1]


async def test_a_hand_over_redone_after_a_crash_makes_no_second_message(stack: Stack) -> None:
    registrations = stack.service("registrations")
    handoff = registrations.registrations.handoff
    real_finish = handoff.jobs.finish
    calls = {"n": 0}

    async def die_once(session: Any, job_id: str) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Killed  # nippin made the message; the job is never marked done
        await real_finish(session, job_id)

    handoff.jobs.finish = die_once
    try:
        reg = await submit(stack, implant(CD_REIMBURSEMENT="no"))
        # Its hand-over job, as a submit of a reimbursed registration writes it.
        async with registrations.db.system_session() as session:
            from hdhub.registrations.handoff import NIPPIN_JOB, job_id

            handoff.jobs.enqueue(
                session,
                NIPPIN_JOB,
                organisation_id="az-demo",
                subject_id=reg["id"],
                payload={"version": reg["version"]},
                job_id=job_id(reg["id"], reg["version"]),
                actor="nurse@az-demo.test",
            )
        try:
            await handoff.process_jobs()
        except Killed:
            pass
        assert len(await messages_of(stack, reg["id"])) == 1
        async with registrations.db.system_session() as session:  # the lease runs out
            await session.execute(
                update(RegistrationsJob)
                .where(RegistrationsJob.subject_id == reg["id"], RegistrationsJob.kind == NIPPIN_JOB)
                .values(lease_until=utcnow() - timedelta(seconds=1))
            )
        assert await handoff.process_jobs() == 1
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
    finally:
        handoff.jobs.finish = real_finish


async def test_mycarenet_down_for_a_day_retries_with_back_off_and_sends_each_once(stack: Stack) -> None:
    clock = {"now": utcnow()}
    async with mycarenet(stack, "down") as nippin:  # back-off: 60 s doubling, at most an hour
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
