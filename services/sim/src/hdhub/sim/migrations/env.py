from hdhub.common.db import run_migrations
from hdhub.sim.store import Base

run_migrations(Base.metadata)
