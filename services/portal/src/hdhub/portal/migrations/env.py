from hdhub.common.db import run_migrations
from hdhub.portal.store import Base

run_migrations(Base.metadata)
