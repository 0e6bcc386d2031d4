from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from hdhub.common.config import ServiceSettings
from hdhub.common.envelope import MasterKeySettings


class UploadsSettings(ServiceSettings, MasterKeySettings):
    """Also ``HDHUB_UPLOADS_MASTER_KEY`` (``_FILE``, ``RETIRED_MASTER_KEYS``): the key that
    wraps the data keys of what the service keeps (sources, reports), required in production."""

    model_config = SettingsConfigDict(env_prefix="HDHUB_UPLOADS_", extra="ignore")

    service_name: str = "uploads"
    #: Days an uploaded file is kept once processed (a dry run's: none, it goes at once).
    source_retention_days: float = 7.0
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
    #: The drop folder (HD4DP v2): where organisations' folders live (``file:///path`` or
    #: ``s3://...``); by default ``<data_dir>/dropfolder`` on embedded defaults, else the
    #: prefix ``dropfolder/`` of the platform's object store.
    dropfolder_enabled: bool = True
    dropfolder_url: str | None = None
    #: Files are looked for this often (they are picked up within a minute).
    dropfolder_poll_seconds: float = 30.0
    #: A file changed more recently than this may still be being written: left for the next scan.
    dropfolder_settle_seconds: float = 5.0
    #: How often a running drop-folder upload is looked at, and the loop's tick.
    dropfolder_check_seconds: float = 2.0
    dropfolder_tick_seconds: float = 1.0
    #: The language of the messages in RESULTS (a dropped file names no user).
    dropfolder_language: str = "en"
