from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from hdhub.common.config import ServiceSettings


class IdentitySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HDHUB_IDENTITY_", extra="ignore")

    service_name: str = "identity"
    #: Lifetime of access tokens, as Keycloak's default (5 minutes).
    access_token_seconds: int = 300
    #: Public OIDC clients allowed to use the password grant (the portal, scripts).
    public_clients: list[str] = ["hdhub-portal", "hdhub-cli"]
