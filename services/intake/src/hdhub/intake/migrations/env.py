from hdhub.common.db import run_migrations
from hdhub.intake.store import Base

run_migrations(Base.metadata)
