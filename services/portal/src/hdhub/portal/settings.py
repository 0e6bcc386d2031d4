from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path

from pydantic import model_validator
from pydantic_settings import SettingsConfigDict

from hdhub.common.config import PLACEHOLDER, ServiceSettings, is_placeholder, platform

#: Realm roles of the service identities that may fetch an organisation's active
#: certificate: the services that sign (registrations, towards the central platform) or
#: decrypt (nippin, MyCareNet answers).
CERTIFICATE_READER_ROLES = ("hdhub-service:registrations", "hdhub-service:nippin")


class PortalSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HDHUB_PORTAL_", extra="ignore")

    service_name: str = "portal"
    #: Master key wrapping the per-object data keys of stored certificates: 32 bytes,
    #: base64. Production needs it (or ``master_key_file``, a mounted Secret).
    master_key: str = PLACEHOLDER
    master_key_file: Path | None = None
    #: Earlier master keys (base64), still accepted to unwrap what they wrapped.
    retired_master_keys: list[str] = []
    #: Largest p12 accepted; eHealth keystores are a few KiB.
    max_p12_bytes: int = 64 * 1024
    #: Realm roles that may call GetActiveCertificate.
    certificate_reader_roles: list[str] = list(CERTIFICATE_READER_ROLES)
    #: Object store for encrypted certificates; default the platform's.
    object_store_url: str | None = None

    @model_validator(mode="after")
    def _master_key_in_production(self) -> PortalSettings:
        if (
            platform().environment == "production"
            and is_placeholder(self.master_key)
            and self.master_key_file is None
        ):
            raise ValueError(
                "HDHUB_PORTAL_MASTER_KEY is unset or a placeholder; set it (or HDHUB_PORTAL_MASTER_KEY_FILE) from a Secret"
            )
        return self

    def master_keys(self) -> list[bytes]:
        """The current master key first, then the retired ones."""
        if self.master_key_file is not None:
            current = _decode_key(self.master_key_file.read_text().strip(), "master_key_file")
        elif not is_placeholder(self.master_key):
            current = _decode_key(self.master_key, "master_key")
        elif not is_placeholder(self.secret_key):
            # Refused in production above; elsewhere derived from the secret key, never from
            # a placeholder (`hdhub` generates both under var/).
            current = hashlib.sha256(b"hdhub-portal-master-key:" + self.secret_key.encode()).digest()
        else:
            raise ValueError("PortalSettings.master_key is unset; set HDHUB_PORTAL_MASTER_KEY")
        return [current, *(_decode_key(k, "retired_master_keys") for k in self.retired_master_keys)]


def _decode_key(text: str, name: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"PortalSettings.{name} is not base64") from exc
    if len(key) != 32:
        raise ValueError(f"PortalSettings.{name} must be 32 bytes (AES-256), base64-encoded")
    return key
