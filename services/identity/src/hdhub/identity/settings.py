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
    #: Redirect URIs the authorization endpoint sends codes to; the portal's callback under
    #: the platform's public URL is always among them.
    redirect_uris: list[str] = []
    #: A session (authorization code flow) ends after this long without a refresh, as
    #: Keycloak's "SSO Session Idle", and in any case after the maximum.
    session_idle_seconds: int = 1800
    session_max_seconds: int = 36000
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
    #: Login throttling (token endpoint, password changes, SFTP logins; docs/identity.md),
    #: counted in Redis when set, under this key prefix (shared by every replica of one
    #: installation). Failures count per (account, source address) and per source address;
    #: past the free ones the source waits, doubling from the base up to the cap.
    login_key_prefix: str = "hdhub:identity:login"
    login_attempts_per_address: int = 600
    login_logins_per_principal: int = 30
    login_window_seconds: int = 60
    login_free_failures: int = 5
    login_address_free_failures: int = 50
    login_failure_memory_seconds: float = 900
    login_wait_base_seconds: float = 1.0
    login_wait_max_seconds: float = 900
    #: Proxies (addresses or CIDRs, e.g. the ingress controller's pods) whose
    #: ``X-Forwarded-For`` names the client; without any, the header is ignored.
    trusted_proxies: list[str] = []

    @property
    def mail_outbox(self) -> bool:
        """Development without an SMTP host: mails are kept in memory and shown at /dev/mail."""
        from hdhub.common.config import platform

        return platform().environment == "development" and self.smtp_host is None
