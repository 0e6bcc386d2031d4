from __future__ import annotations

from pathlib import Path

from pydantic import model_validator
from pydantic_settings import SettingsConfigDict

from hdhub.common.config import ServiceSettings, platform
from hdhub.common.envelope import MasterKeySettings


class IntakeSettings(ServiceSettings, MasterKeySettings):
    """Also ``HDHUB_INTAKE_MASTER_KEY`` (``_FILE``, ``RETIRED_MASTER_KEYS``): the key that
    wraps the data keys of the received files, encrypted at rest; required in production."""

    model_config = SettingsConfigDict(env_prefix="HDHUB_INTAKE_", extra="ignore")

    service_name: str = "intake"
    #: SFTP listener. Port 2222 as HD4DP's; in tests (HDHUB_ENVIRONMENT=test) a free port
    #: unless set, since every test stack runs its own server.
    sftp_host: str = "127.0.0.1"
    sftp_port: int | None = None
    #: The SFTP host key (an OpenSSH private key): the key itself (``HDHUB_INTAKE_SFTP_HOST_KEY``,
    #: a key of the mounted Secret) or a file holding it. Without either, a key is generated on
    #: first start into ``<HDHUB_DATA_DIR>/intake/ssh_host_ed25519_key``; production refuses to
    #: start instead, since clients pin the host key and it must be the same on every pod.
    sftp_host_key: str | None = None
    sftp_host_key_file: Path | None = None
    #: On shutdown, open SFTP transfers may finish for this long before their sessions are
    #: closed (the chart sets it from the pod's grace period).
    sftp_drain_seconds: float = 25.0
    #: Largest file accepted (HTTP and SFTP); the transfer is refused as it passes the limit.
    max_file_bytes: int = 5 * 1024 * 1024 * 1024
    #: Object store for received files; default the platform's.
    object_store_url: str | None = None
    #: Days a refused file's bytes are kept (to look into the refusal), then deleted; the
    #: file's row and its reason stay.
    refused_retention_days: float = 3.0
    #: The daily load runs once per UTC day from this hour on.
    daily_load_hour: int = 2
    #: How often unmatched files are linked again (a registration may have arrived since).
    relink_seconds: float = 300.0
    #: A transfer with no progress for this long was cut while the process died: aborted.
    stale_transfer_seconds: float = 3600.0
    worker_poll_seconds: float = 30.0
    #: The central platform's public key (PEM) files are sealed for, or a file holding it;
    #: outside production, when unset, asked from the sim (as registrations does).
    central_public_key: str | None = None
    central_public_key_file: Path | None = None
    #: Days an acknowledged file's object is kept after it left the drop area, then deleted
    #: (the row stays, with its digest and dates).
    sent_retention_days: float = 30.0
    #: A file that could not be sent (its registration not delivered yet, the central
    #: platform down, a cut) is tried again after this long.
    send_retry_seconds: float = 60.0
    #: An NGS registration whose VCF has not arrived this long after it was created is late:
    #: listed to the data provider and counted in ``hdhub_intake_late_vcfs``.
    vcf_late_hours: float = 72.0
    #: Plaintext bytes per chunk sent to the central platform.
    send_chunk_bytes: int = 1024 * 1024
    #: Deadline of one transfer attempt (a 1 GiB file at 10 MB/s takes 100 s).
    send_timeout_seconds: float = 3600.0
    #: Platform services that may list any organisation's files over gRPC (ListFiles).
    file_reader_services: list[str] = ["registrations", "uploads"]

    def configured_central_key(self) -> bytes | None:
        if self.central_public_key_file is not None:
            return self.central_public_key_file.read_bytes()
        return self.central_public_key.encode() if self.central_public_key else None

    def resolved_sftp_port(self) -> int:
        if self.sftp_port is not None:
            return self.sftp_port
        return 0 if platform().environment == "test" else 2222

    @model_validator(mode="after")
    def _host_key_in_production(self) -> IntakeSettings:
        if platform().environment == "production" and not (self.sftp_host_key or self.sftp_host_key_file):
            raise ValueError(
                "HDHUB_INTAKE_SFTP_HOST_KEY is unset (nor HDHUB_INTAKE_SFTP_HOST_KEY_FILE); set it from a "
                "Secret: clients pin the host key, so every intake pod serves the same one"
            )
        return self

    def host_key_path(self) -> Path:
        """Where the host key is read from, or generated into outside production."""
        return self.sftp_host_key_file or platform().data_dir / "intake" / "ssh_host_ed25519_key"
