from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from hdhub.common.config import ServiceSettings
from hdhub.common.envelope import MasterKeySettings

#: Realm roles of the service identities that may fetch an organisation's active
#: certificate: the services that sign (registrations, towards the central platform) or
#: decrypt (nippin, MyCareNet answers).
CERTIFICATE_READER_ROLES = ("hdhub-service:registrations", "hdhub-service:nippin", "hdhub-service:intake")


class PortalSettings(ServiceSettings, MasterKeySettings):
    """Also ``HDHUB_PORTAL_MASTER_KEY`` (``_FILE``, ``RETIRED_MASTER_KEYS``,
    :class:`MasterKeySettings`): the key wrapping the per-object data keys of stored
    certificates, required in production."""

    model_config = SettingsConfigDict(env_prefix="HDHUB_PORTAL_", extra="ignore")
    dev_master_key_label: ClassVar[bytes] = b"hdhub-portal-master-key:"

    service_name: str = "portal"
    #: Largest p12 accepted; eHealth keystores are a few KiB.
    max_p12_bytes: int = 64 * 1024
    #: Realm roles that may call GetActiveCertificate.
    certificate_reader_roles: list[str] = list(CERTIFICATE_READER_ROLES)
    #: Object store for encrypted certificates; default the platform's.
    object_store_url: str | None = None
    #: The pages' sessions (docs/portal.md): one ends after this long without a request,
    #: and in any case after the maximum; the person signs in again.
    session_idle_seconds: int = 1800
    session_max_seconds: int = 36000
    #: How long a form's live connection trusts the session it read (pages/entry.py): a
    #: change after that reads it again, as a POST would, so a sign-out, an expiry or a
    #: membership taken away closes the connection at the person's next change; 10 s
    #: spares a database read per keystroke. Never re-read on a timer: a read resets the
    #: session's idle clock, and a form left open must not keep its session alive.
    live_session_seconds: float = 10.0
    #: The portal's OIDC client at the issuer (public, authorization code with PKCE).
    oidc_client_id: str = "hdhub-portal"
    #: Members and audit entries per page.
    page_size: int = 50
    #: The operator's certificates page lists first those expiring within this many days.
    certificate_window_days: int = 60
