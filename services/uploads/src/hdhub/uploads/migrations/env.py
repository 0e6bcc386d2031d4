from hdhub.common.db import run_migrations
from hdhub.uploads.store import Base

run_migrations(Base.metadata)
