from __future__ import annotations

from pathlib import Path

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
    #: The SFTP host key (OpenSSH private key), a mounted Secret in production. Without it,
    #: a key is generated on first start into ``<HDHUB_DATA_DIR>/intake/ssh_host_ed25519_key``
    #: (refused in production: clients pin the host key, so it must survive pods).
    sftp_host_key_file: Path | None = None
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
    #: Platform services that may list any organisation's files over gRPC (ListFiles).
    file_reader_services: list[str] = ["registrations", "uploads"]

    def resolved_sftp_port(self) -> int:
        if self.sftp_port is not None:
            return self.sftp_port
        return 0 if platform().environment == "test" else 2222

    def host_key_path(self) -> Path:
        if self.sftp_host_key_file is not None:
            return self.sftp_host_key_file
        if platform().environment == "production":
            raise ValueError("HDHUB_INTAKE_SFTP_HOST_KEY_FILE must name the SFTP host key (a mounted Secret)")
        return platform().data_dir / "intake" / "ssh_host_ed25519_key"
