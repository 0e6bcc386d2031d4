from sqlalchemy.orm import DeclarativeBase

from hdhub.common.db import run_migrations


class Base(DeclarativeBase):
    """Pseudonymisation stores nothing: its domain keys are derived (see keys.py)."""


run_migrations(Base.metadata)
