from hdhub.common.db import run_migrations
from hdhub.nippin.store import Base

run_migrations(Base.metadata)
