from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from hdhub.common.config import ServiceSettings
from hdhub.common.envelope import MasterKeySettings


class RegistrationsSettings(ServiceSettings, MasterKeySettings):
    """Also ``HDHUB_REGISTRATIONS_MASTER_KEY`` (``_FILE``, ``RETIRED_MASTER_KEYS``): the key
    that wraps the data keys of exports in the object store (they hold SSINs), required in
    production."""

    model_config = SettingsConfigDict(env_prefix="HDHUB_REGISTRATIONS_", extra="ignore")

    service_name: str = "registrations"
    #: Import the workbooks shipped in hdhub.registrations.dcds at start-up.
    import_shipped_dcds: bool = True
    #: How often the worker looks for jobs when nothing woke it.
    worker_poll_seconds: float = 0.5
    #: Largest batch accepted over gRPC (rows).
    max_batch_rows: int = 50_000
    #: Validate gRPC batches column by column (engine/columnar.py, several times the row
    #: engine's speed); a differential test (tests/unit/test_columnar.py) holds it to the
    #: row engine's values, errors and messages. False runs the row engine, the reference.
    columnar_validation: bool = True

    # --- delivery to the central platform (delivery/, docs/delivery.md) ---------------
    #: The central platform's public encryption key (PEM, RSA), or a file holding it.
    #: Production must set one of them (without, delivery waits with the reason
    #: ``central-key-unset``); elsewhere, when both are unset, the key is asked from the
    #: stand-in receiver (sim) at first use.
    central_public_key: str | None = None
    central_public_key_file: Path | None = None
    #: The central platform's signing key (PEM, EC or RSA) its decisions are checked with,
    #: or a file holding it. Production must set one (without, no decision is taken);
    #: elsewhere, when both are unset, it is asked from the stand-in (sim) at first use.
    central_signing_key: str | None = None
    central_signing_key_file: Path | None = None
    #: How often the worker asks the central platform for new decisions.
    decision_poll_seconds: float = 5.0
    #: Without a confirmation this long after the first send, a delivery is NOK (HD4DP: 48 h).
    confirmation_timeout_hours: float = 48.0
    #: Resend a NOK delivery this often, until ``park_after_days`` after its first send.
    resend_interval_hours: float = 12.0
    #: Give up (park the delivery where the organisation and the operator see it) this long
    #: after the first send of a version without a confirmation (HD4DP: 10 days).
    park_after_days: float = 10.0
    #: A send that did not reach the central platform is tried again after this long.
    retry_minutes: float = 15.0
    #: First confirmation check after a send, doubling up to ``confirmation_poll_minutes``.
    confirmation_first_check_seconds: float = 2.0
    confirmation_poll_minutes: float = 60.0
    #: How long a registration waits (stays Sending) before delivery looks again when the
    #: organisation has no published certificate or pseudonymisation is unreachable.
    waiting_retry_seconds: float = 60.0
    #: Certificates fetched from the portal are reused this long (private keys in memory only).
    certificate_cache_seconds: float = 300.0
    #: Registrations handled per worker step.
    delivery_batch: int = 200

    # --- exports (exports/, docs/exports.md) -------------------------------------------
    #: Object store for export files; default the platform's.
    object_store_url: str | None = None
    #: How long a download link of an export stays valid.
    export_link_minutes: float = 15.0
    #: Days an export's file is kept; then it is deleted (the export row and its audit stay).
    export_retention_days: float = 7.0
    #: Rows read per round trip while writing an export (XLSX, Parquet, and CSV on SQLite).
    export_batch_rows: int = 10_000

    def configured_central_key(self) -> bytes | None:
        if self.central_public_key_file is not None:
            return self.central_public_key_file.read_bytes()
        return self.central_public_key.encode() if self.central_public_key else None

    def configured_signing_key(self) -> bytes | None:
        if self.central_signing_key_file is not None:
            return self.central_signing_key_file.read_bytes()
        return self.central_signing_key.encode() if self.central_signing_key else None
