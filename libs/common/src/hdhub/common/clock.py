"""Time as a dependency: code whose rules span hours or days (status confirmation after
48 hours, resends for 10 days) asks a :class:`Clock` for the time instead of calling
``datetime.now`` itself, so a test can run through ten days in seconds.

    clock = ManualClock(utcnow())          # tests.support.clock
    delivery.clock = clock
    clock.advance(timedelta(hours=49))   # the 48-hour rule is due now

Production uses :data:`SYSTEM_CLOCK`. A clock only answers "what time is it"; nothing
sleeps on it, so work that should happen later is scheduled in the database (a job's
``run_after``) and picked up by whichever worker's clock has passed it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


SYSTEM_CLOCK: Clock = SystemClock()
