"""Moments a client names (``created_from=...``), as every timestamp is kept: in UTC.

A moment whose UTC is not in the calendar (``0001-01-01T00:00:00+01:00`` is the year 0
in UTC, ``9999-12-31T23:59:59-14:00`` the year 10000) is the client's mistake: it is
refused here, with the field, instead of failing where the database is given it."""

from __future__ import annotations

from datetime import UTC, datetime

#: Why a moment is refused when its UTC falls outside the calendar.
OUTSIDE_UTC = "is outside the calendar in UTC (the years 1 to 9999)"


def in_utc(moment: datetime) -> datetime:
    """``moment`` in UTC (without an offset it is taken as UTC); :class:`ValueError`
    (:data:`OUTSIDE_UTC`) when its UTC falls outside the calendar."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(OUTSIDE_UTC) from None
