"""The central platform's stand-in (the sim) as tests drive it: how it answers, what it
kept, and one ManualClock for it and registrations' delivery, so a test runs through days
of confirmations and resends in seconds. Tests of other services reach the sim only
through here."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from hdhub.common.clock import SYSTEM_CLOCK
from hdhub.common.db import utcnow
from hdhub.common.jobs import RUNNING
from hdhub.sim.decisions import as_message
from hdhub.sim.receiver import Behaviour, Mode
from hdhub.sim.store import CentralDecision as SimDecision
from hdhub.sim.store import CentralPseudonym, CentralRecord
from tests.support.clock import ManualClock
from tests.support.stack import Stack

__all__ = [
    "Central",
    "CentralPseudonym",
    "CentralRecord",
    "Mode",
    "SimDecision",
    "as_message",
    "on_clock",
    "refusing",
    "technical_id",
]


@dataclass
class Central:
    stack: Stack
    clock: ManualClock

    @property
    def delivery(self) -> Any:
        """Registrations' delivery worker."""
        return self.stack.service("registrations").delivery

    @property
    def sim(self) -> Any:
        return self.stack.service("sim")

    def behave(self, mode: Mode, delay: float = 0.0) -> None:
        """How the receiver answers from now on (``delay``: seconds before it confirms)."""
        self.sim.receiver.behaviour = Behaviour(mode=mode, ack_delay_seconds=delay)

    def start(self) -> None:
        """Let the clock reach the jobs just enqueued (their run_after is the wall clock)."""
        self.clock.set(utcnow() + timedelta(seconds=1))

    async def settle(self) -> None:
        """Run every due delivery job (here or in the background worker) until none is left."""
        from hdhub.registrations.delivery.queue import CONFIRM, DELIVER, DELIVER_BATCH
        from hdhub.registrations.store import Job

        for _ in range(200):
            if await self.delivery.process_jobs():
                continue
            async with self.delivery.db.system_session() as session:
                busy = (
                    await session.execute(
                        select(func.count())
                        .select_from(Job)
                        .where(
                            Job.kind.in_([DELIVER, DELIVER_BATCH, CONFIRM]),
                            Job.status == RUNNING,
                            Job.lease_until > self.clock.now(),
                        )
                    )
                ).scalar_one()
            if not busy:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("delivery jobs never settled")

    async def at_receiver(self, technical_id: str) -> tuple[list[CentralRecord], list[CentralPseudonym]]:
        """What the receiver kept of one delivery: its sealed records and pseudonym halves."""
        async with self.sim.db.system_session() as session:
            records = list(
                (
                    await session.execute(
                        select(CentralRecord).where(CentralRecord.technical_id == technical_id)
                    )
                ).scalars()
            )
            halves = list(
                (
                    await session.execute(
                        select(CentralPseudonym).where(CentralPseudonym.technical_id == technical_id)
                    )
                ).scalars()
            )
        return records, halves


@contextmanager
def on_clock(central: Central) -> Iterator[Central]:
    """The receiver and delivery on ``central.clock`` meanwhile; then on the system clock,
    the receiver accepting again."""
    central.delivery.clock = central.clock
    central.sim.receiver.clock = central.clock
    try:
        yield central
    finally:
        central.behave(Mode.ACCEPT)
        central.delivery.clock = SYSTEM_CLOCK
        central.sim.receiver.clock = SYSTEM_CLOCK


@contextmanager
def refusing(stack: Stack) -> Iterator[None]:
    """The central platform refuses every call meanwhile (records, decisions, files)."""
    receiver = stack.service("sim").receiver
    receiver.behaviour = Behaviour(mode=Mode.REFUSE)
    try:
        yield
    finally:
        receiver.behaviour = Behaviour()


async def technical_id(stack: Stack, registration_id: str) -> str:
    """The technical id registrations delivered a registration under (what the central
    platform knows it by)."""
    from hdhub.registrations.store import Delivery

    async with stack.service("registrations").db.system_session() as session:
        row = await session.get(Delivery, registration_id)
        assert row is not None
        return str(row.technical_id)
