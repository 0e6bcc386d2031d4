"""Registration codes: ``206.24.000214.88``, one per registration from its first
submission, numbered per DCD and year."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from hdhub.registrations.store import RegistrationCodeCounter


def registration_code(dcd_number: int, year: int, sequence: int) -> str:
    """A registration code like ``206.24.000214.88``: DCD number, two-digit year, sequence,
    and two check digits (97 - n mod 97, as Belgian identifiers use) over the rest."""
    body = f"{dcd_number:03d}{year % 100:02d}{sequence:06d}"
    check = 97 - int(body) % 97
    return f"{dcd_number:03d}.{year % 100:02d}.{sequence:06d}.{check:02d}"


# The same text on PostgreSQL and SQLite. Text, not the dialects' insert().on_conflict_do_update(),
# which SQLAlchemy cannot cache: it was compiled again for every submission.
_TAKE = text(
    f'INSERT INTO {RegistrationCodeCounter.__tablename__} (dcd_number, year, "last") '
    "VALUES (:dcd_number, :year, :count) "
    'ON CONFLICT (dcd_number, year) DO UPDATE SET "last" = '
    f'{RegistrationCodeCounter.__tablename__}."last" + excluded."last" '
    'RETURNING "last"'
).bindparams(
    bindparam("dcd_number", type_=Integer),
    bindparam("year", type_=Integer),
    bindparam("count", type_=Integer),
)


async def take_codes(session: AsyncSession, dcd_number: int, now: datetime, count: int) -> list[str]:
    """``count`` new registration codes of a DCD, numbered on from the year's counter in
    one statement (concurrent takers never get the same number)."""
    result = await session.execute(_TAKE, {"dcd_number": dcd_number, "year": now.year, "count": count})
    last = int(result.scalar_one())
    return [registration_code(dcd_number, now.year, n) for n in range(last - count + 1, last + 1)]
