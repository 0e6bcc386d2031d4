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
    #: ``embedded`` (SQL store + embedded issuer) or ``keycloak`` (admin REST via python-keycloak).
    backend: str = "embedded"
    keycloak_url: str | None = None  # e.g. http://keycloak:8080/
    keycloak_realm: str = "hdhub"
    keycloak_admin_client_id: str = "hdhub-identity"
    keycloak_admin_client_secret: str | None = None
    #: Outgoing mail (account requests); without a host mails are only logged (development:
    #: kept in the outbox shown at /dev/mail).
    smtp_host: str | None = None
    smtp_port: int = 25
    mail_from: str = "hdhub@localhost"
    #: Login throttling (token endpoint and password change), counted in Redis when set,
    #: under this key prefix (shared by every replica of one installation).
    login_key_prefix: str = "hdhub:identity:login"
    login_attempts_per_account: int = 30
    login_attempts_per_address: int = 600
    login_window_seconds: int = 60
    login_max_failures: int = 5
    login_lock_seconds: int = 900

    @property
    def mail_outbox(self) -> bool:
        """Development without an SMTP host: mails are kept in memory and shown at /dev/mail."""
        from hdhub.common.config import platform

        return platform().environment == "development" and self.smtp_host is None
