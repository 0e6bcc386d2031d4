from __future__ import annotations

from pydantic import model_validator
from pydantic_settings import SettingsConfigDict

from hdhub.common.config import ServiceSettings, is_placeholder, platform


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
    #: The realm's public client with the password grant, through which a current password
    #: is checked (POST /accounts/password); the portal's client has only the code flow.
    keycloak_password_client: str = "hdhub-cli"
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

    @model_validator(mode="after")
    def _issuer_and_backend_agree(self) -> IdentitySettings:
        """In production, tokens come from the issuer that holds the accounts: the embedded
        one with the embedded backend, Keycloak with the Keycloak backend. Otherwise members
        added here could never sign in, or tokens would name people identity cannot see."""
        settings = platform()
        if settings.environment != "production":
            return self
        own = f"{settings.public_url.rstrip('/')}/realms/hdhub"
        issuer = settings.oidc_issuer.rstrip("/")
        if self.backend == "keycloak":
            if not self.keycloak_url:
                raise ValueError("HDHUB_IDENTITY_KEYCLOAK_URL is unset (HDHUB_IDENTITY_BACKEND is keycloak)")
            if is_placeholder(self.keycloak_admin_client_secret):
                raise ValueError(
                    "HDHUB_IDENTITY_KEYCLOAK_ADMIN_CLIENT_SECRET is unset or a placeholder; set it from a Secret"
                )
            if issuer == own:
                raise ValueError(
                    f"HDHUB_OIDC_ISSUER is identity's embedded issuer ({own}) while HDHUB_IDENTITY_BACKEND "
                    "is keycloak; set it to the Keycloak realm's issuer"
                )
        elif issuer != own:
            raise ValueError(
                f"HDHUB_OIDC_ISSUER is {issuer}, not identity's embedded issuer ({own}), while "
                "HDHUB_IDENTITY_BACKEND is embedded; with Keycloak set HDHUB_IDENTITY_BACKEND=keycloak "
                "and HDHUB_IDENTITY_KEYCLOAK_URL"
            )
        return self

    @property
    def mail_outbox(self) -> bool:
        """Development without an SMTP host: mails are kept in memory and shown at /dev/mail."""
        from hdhub.common.config import platform

        return platform().environment == "development" and self.smtp_host is None
