from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from hdhub.common.config import ServiceSettings


class RegistrationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HDHUB_REGISTRATIONS_", extra="ignore")

    service_name: str = "registrations"
    #: Import the workbooks shipped in hdhub.registrations.dcds at start-up.
    import_shipped_dcds: bool = True
    #: How often the worker looks for jobs when nothing woke it.
    worker_poll_seconds: float = 0.5
    #: Largest batch accepted over gRPC (rows).
    max_batch_rows: int = 50_000
