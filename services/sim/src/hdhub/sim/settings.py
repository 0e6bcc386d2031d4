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

    def resolved_key_file(self) -> Path:
        return self.central_key_file or platform().data_dir / "sim-central-key.pem"
