from hdhub.common.db import run_migrations
from hdhub.identity.store import Base

run_migrations(Base.metadata)
