"""Time as a dependency: code whose rules span hours or days (status confirmation after
48 hours, resends for 10 days) asks a :class:`Clock` for the time instead of calling
``datetime.now`` itself, so a test can run through ten days in seconds.

    clock = ManualClock(utcnow())
    delivery.clock = clock
    clock.advance(timedelta(hours=49))   # the 48-hour rule is due now

Production uses :data:`SYSTEM_CLOCK`. A clock only answers "what time is it"; nothing
sleeps on it, so work that should happen later is scheduled in the database (a job's
``run_after``) and picked up by whichever worker's clock has passed it.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told: tests set or advance it."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("ManualClock.set needs a timezone-aware time")
        with self._lock:
            self._now = when

    def advance(self, by: timedelta) -> datetime:
        """Move forward by ``by`` and return the new time."""
        with self._lock:
            self._now += by
            return self._now


SYSTEM_CLOCK: Clock = SystemClock()
