"""A time range asked for in a search (``created_from`` / ``created_to``): the start is
included, the end is not, so that consecutive ranges never count a registration twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


def _utc(moment: datetime | None) -> datetime | None:
    # A time without an offset is taken as UTC, the zone every timestamp is stored in.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Period:
    start: datetime | None
    end: datetime | None

    @classmethod
    def of(cls, start: datetime | None, end: datetime | None) -> Period | None:
        """The range, or None when neither end is given."""
        if start is None and end is None:
            return None
        return cls(_utc(start), _utc(end))

    @property
    def empty(self) -> bool:
        return self.start is not None and self.end is not None and self.start >= self.end
