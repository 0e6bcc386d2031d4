from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path
from typing import ClassVar

from pydantic import model_validator
from pydantic_settings import SettingsConfigDict

from hdhub.common.config import PLACEHOLDER, ServiceSettings, is_placeholder, platform

#: The only caller: registrations sends identifiers; nobody else may turn identifiers
#: into pseudonyms (it would make the service an oracle).
CALLER_SERVICE = "registrations"


class PseudonymisationSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HDHUB_PSEUDONYMISATION_", extra="ignore")

    #: Keeps nothing: no database URL (docs/delivery.md).
    keeps_data: ClassVar[bool] = False

    service_name: str = "pseudonymisation"
    #: Master key the per-project domain keys are derived from: 32 bytes, base64.
    #: Production needs it (or ``master_key_file``, a mounted Secret).
    master_key: str = PLACEHOLDER
    master_key_file: Path | None = None
    #: Current domain key version per project (``{"HDBP0012": 2}``); unlisted projects use
    #: ``default_key_version``. Raising a version rotates that project's key.
    key_versions: dict[str, int] = {}
    default_key_version: int = 1
    #: Largest batch accepted (patients per call).
    max_batch: int = 50_000

    @model_validator(mode="after")
    def _master_key_in_production(self) -> PseudonymisationSettings:
        if (
            platform().environment == "production"
            and is_placeholder(self.master_key)
            and self.master_key_file is None
        ):
            raise ValueError(
                "HDHUB_PSEUDONYMISATION_MASTER_KEY is unset or a placeholder; set it (or HDHUB_PSEUDONYMISATION_MASTER_KEY_FILE) from a Secret"
            )
        return self

    def master(self) -> bytes:
        if self.master_key_file is not None:
            return _decode(self.master_key_file.read_text().strip())
        if not is_placeholder(self.master_key):
            return _decode(self.master_key)
        if is_placeholder(self.secret_key):
            raise ValueError(
                "PseudonymisationSettings.master_key is unset; set HDHUB_PSEUDONYMISATION_MASTER_KEY"
            )
        # Refused in production above; elsewhere derived from the secret key, never from a
        # placeholder (`hdhub` generates both under var/).
        return hashlib.sha256(b"hdhub-pseudonymisation-master-key:" + self.secret_key.encode()).digest()


def _decode(text: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError("PseudonymisationSettings.master_key is not base64") from exc
    if len(key) != 32:
        raise ValueError("PseudonymisationSettings.master_key must be 32 bytes, base64-encoded")
    return key
