from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from hdhub.common.config import ServiceSettings, platform


class SimSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HDHUB_SIM_", extra="ignore")

    service_name: str = "sim"
    #: The central receiver's RSA private key (PEM). Generated into ``data_dir`` on first
    #: start when missing: the sim is a stand-in and never holds a real key.
    central_key_file: Path | None = None
    central_key_bits: int = 2048
    #: The stand-in central platform's EC signing key for decisions (PEM), generated into
    #: ``data_dir`` on first start when missing.
    signing_key_file: Path | None = None
    #: The MyCareNet stand-in's gateway folder (FILE_SYSTEM interface): default the one
    #: nippin writes to, ``<HDHUB_DATA_DIR>/mycarenet``.
    mycarenet_folder: Path | None = None
    #: How often the stand-in gateway collects the folder.
    mycarenet_poll_seconds: float = 1.0

    #: Where files sent with registrations are kept, decrypted (the stand-in only).
    files_folder: Path | None = None

    def resolved_files_folder(self) -> Path:
        return self.files_folder or platform().data_dir / "sim-central-files"

    def resolved_key_file(self) -> Path:
        return self.central_key_file or platform().data_dir / "sim-central-key.pem"

    def resolved_signing_key_file(self) -> Path:
        return self.signing_key_file or platform().data_dir / "sim-central-signing-key.pem"

    def resolved_mycarenet_folder(self) -> Path:
        return self.mycarenet_folder or platform().data_dir / "mycarenet"
