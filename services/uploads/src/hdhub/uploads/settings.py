from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from hdhub.common.config import ServiceSettings


class UploadsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HDHUB_UPLOADS_", extra="ignore")

    service_name: str = "uploads"
    #: Largest file accepted; refused while streaming in, nothing kept (bytes).
    max_upload_bytes: int = 1024 * 1024 * 1024
    #: Rows per UpsertBatch / ValidateBatch call.
    batch_rows: int = 2_000
    #: Longest physical line (bytes) and most columns a file may have.
    max_line_bytes: int = 1024 * 1024
    max_columns: int = 2_000
    #: How often the worker looks for jobs when nothing woke it.
    worker_poll_seconds: float = 0.5
    #: How long a claimed upload job is held before another worker may take it over;
    #: the worker renews it after every batch.
    lease_seconds: float = 60.0
