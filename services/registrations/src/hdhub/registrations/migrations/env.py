from hdhub.common.db import run_migrations
from hdhub.registrations.store import Base

run_migrations(Base.metadata)
