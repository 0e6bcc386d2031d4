"""Settings from the environment (``HDHUB_*``), with secrets readable from files.

Every service subclasses :class:`ServiceSettings` with its own prefix
(``HDHUB_REGISTRATIONS_DATABASE_URL``); platform-wide values live in
:class:`PlatformSettings` (``HDHUB_ENVIRONMENT``, ``HDHUB_OIDC_ISSUER``...).
No secret has a usable default: production refuses to start while one is unset or a
known placeholder, and ``hdhub`` generates random ones under ``var/`` elsewhere
(:mod:`hdhub.common.local_secrets`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_SECRETS_DIR = os.environ.get("HDHUB_SECRETS_DIR", "/run/secrets/hdhub")
PLACEHOLDER = "change-me"
#: Values that are no secret: the shipped default, the usual stand-ins and the masked
#: secret of a Keycloak realm export. The embedded issuer refuses a client secret among
#: them in every environment.
KNOWN_PLACEHOLDERS = frozenset(
    {"", PLACEHOLDER, "changeme", "change_me", "secret", "password", "placeholder", "**********"}
)


class SettingRefused(ValueError):
    """A setting this process needs is unset (in production, where nothing falls back to a
    default): it refuses to start, naming the setting."""


def is_placeholder(value: str | None) -> bool:
    """Whether a secret is unset or a known placeholder (case and spaces ignored)."""
    return value is None or value.strip().lower() in KNOWN_PLACEHOLDERS


#: Every service of the platform, in the order ``hdhub run all`` starts them.
SERVICES = ("identity", "registrations", "uploads", "portal", "pseudonymisation", "sim", "intake", "nippin")
# Where each service with a gRPC API listens in `hdhub run all`; Kubernetes overrides
# these with Service DNS names (HDHUB_GRPC_REGISTRATIONS=registrations:50051).
DEFAULT_GRPC_PORTS = {
    "identity": 50061,
    "registrations": 50062,
    "uploads": 50063,
    "intake": 50064,
    "pseudonymisation": 50065,
    "nippin": 50066,
    "portal": 50067,
    "sim": 50068,
}
#: The central platform's receiver (healthdata.be's side), addressed as a gRPC target:
#: ``HDHUB_GRPC_CENTRAL`` in production, the sim service when unset.
CENTRAL = "central"


class PlatformSettings(BaseSettings):
    """What every process of one installation shares."""

    model_config = SettingsConfigDict(
        env_prefix="HDHUB_",
        secrets_dir=_SECRETS_DIR if Path(_SECRETS_DIR).is_dir() else None,
        extra="ignore",
        # A refusal names the setting, never the values read (secrets among them).
        hide_input_in_errors=True,
    )

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("var")
    public_url: str = "http://127.0.0.1:8000"
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    # OIDC: Keycloak in production; the embedded issuer (identity service) otherwise.
    oidc_issuer: str = "http://127.0.0.1:8000/realms/hdhub"
    oidc_jwks_url: str | None = None
    #: Where services get their own tokens (client credentials); default the issuer's.
    #: In a cluster with the embedded issuer, identity's in-cluster address.
    oidc_token_url: str | None = None
    oidc_audience: str = "hdhub"
    jwks_cache_seconds: int = 300
    redis_url: str | None = None
    #: Revoked access (docs/identity.md): per-subject "not before" times in Redis under
    #: this prefix, re-read by each verifier at most this often.
    revocation_key_prefix: str = "hdhub:revoked"
    revocation_cache_seconds: float = 5.0
    #: ``file:///path`` or ``s3://ACCESS:SECRET@host:port/bucket``; default a folder in data_dir.
    object_store_url: str | None = None
    max_request_bytes: int = 5 * 1024 * 1024
    grpc_timeout_seconds: float = 10.0
    #: Finished background jobs are deleted this long after they finished (parked ones are
    #: kept for the operator); without it every delivered registration left a job forever.
    jobs_retention_days: float = 7.0
    #: How long a claimed job is a worker's: a worker that dies holding one leaves it to be
    #: taken over this long after the claim. Longer than any job step that does not renew
    #: its lease (exports and uploads renew theirs).
    job_lease_seconds: float = Field(default=60.0, gt=0)
    #: On SIGTERM, HTTP requests in flight may finish for this long; then their connections
    #: are closed (the chart sets it from the pod's grace period, as intake's SFTP drain).
    http_drain_seconds: float = Field(default=20.0, ge=0)
    #: Where `hdhub worker` serves /metrics (workers have no HTTP edge); unset: not served.
    metrics_host: str = "0.0.0.0"
    metrics_port: int | None = None
    #: A worker whose claim loop has not gone round for this long answers 503 on its
    #: /healthz (the kubelet restarts it); above the longest poll interval and job step.
    worker_stale_seconds: float = 300.0
    #: The confidential client secret of this process's service identity (client
    #: ``hdhub-<service>`` in Keycloak, realm role ``hdhub-service:<service>``); workers
    #: and the drop folder use it to call other services as themselves.
    service_client_secret: str = PLACEHOLDER
    grpc_targets: dict[str, str] = Field(default_factory=dict)
    #: Mutual TLS between the services (hdhub.common.grpc_tls, docs/operations.md): this
    #: process's certificate and key, and the CA that signs every service's certificate.
    grpc_tls_cert_file: Path | None = None
    grpc_tls_key_file: Path | None = None
    grpc_tls_ca_file: Path | None = None
    #: A service mesh provides mutual TLS between pods: gRPC stays plaintext in the cluster.
    grpc_mesh_mtls: bool = False
    #: The central platform's TLS: the CA its server certificate is verified against
    #: (unset: gRPC's bundled public roots), and the installation's client certificate.
    central_tls_ca_file: Path | None = None
    central_tls_cert_file: Path | None = None
    central_tls_key_file: Path | None = None

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> PlatformSettings:
        if self.environment != "production":
            return self
        if is_placeholder(self.service_client_secret):
            raise ValueError("HDHUB_SERVICE_CLIENT_SECRET is unset or a placeholder; set it from a Secret")
        if not self.redis_url:
            # Without Redis each pod keeps its own revocations, sign-in counters and locks:
            # a token revoked on one replica would still open the others.
            raise ValueError(
                "HDHUB_REDIS_URL is unset; production shares revocations and locks through Redis"
            )
        return self

    @model_validator(mode="after")
    def _refuse_half_tls(self) -> PlatformSettings:
        internal = (self.grpc_tls_cert_file, self.grpc_tls_key_file, self.grpc_tls_ca_file)
        if any(internal) and not all(internal):
            raise ValueError(
                "HDHUB_GRPC_TLS_CERT_FILE, HDHUB_GRPC_TLS_KEY_FILE and HDHUB_GRPC_TLS_CA_FILE "
                "go together (mutual TLS): set all three or none"
            )
        if bool(self.central_tls_cert_file) != bool(self.central_tls_key_file):
            raise ValueError("HDHUB_CENTRAL_TLS_CERT_FILE and HDHUB_CENTRAL_TLS_KEY_FILE go together")
        return self

    def explicit_grpc_target(self, service: str) -> str | None:
        """The target configured for ``service`` (``HDHUB_GRPC_<SERVICE>``), if any."""
        return os.environ.get(f"HDHUB_GRPC_{service.upper()}") or self.grpc_targets.get(service)

    def grpc_target(self, service: str) -> str:
        target = self.explicit_grpc_target(service)
        if target:
            return target
        if service == CENTRAL:  # the central platform; the sim stands in for it unless set
            return self.grpc_target("sim")
        return f"127.0.0.1:{DEFAULT_GRPC_PORTS[service]}"

    @property
    def token_url(self) -> str:
        return self.oidc_token_url or f"{self.oidc_issuer}/protocol/openid-connect/token"

    @property
    def jwks_url(self) -> str:
        return self.oidc_jwks_url or f"{self.oidc_issuer}/protocol/openid-connect/certs"


class ServiceSettings(BaseSettings):
    """Per-service settings; subclasses set ``env_prefix`` to ``HDHUB_<SERVICE>_``."""

    # Subclasses inherit the secrets folder: each key of a mounted Secret is a file named after
    # its variable (HDHUB_REGISTRATIONS_DATABASE_URL), read when the variable itself is unset.
    model_config = SettingsConfigDict(
        extra="ignore",
        secrets_dir=_SECRETS_DIR if Path(_SECRETS_DIR).is_dir() else None,
        hide_input_in_errors=True,
    )

    #: Whether the service keeps data in its database; one that keeps nothing
    #: (pseudonymisation) gets an empty one in memory and needs no database URL.
    keeps_data: ClassVar[bool] = True

    service_name: str = "service"
    database_url: str | None = None
    grpc_bind: str | None = None
    secret_key: str = PLACEHOLDER

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> ServiceSettings:
        if platform().environment != "production":
            return self
        missing = []
        if is_placeholder(self.secret_key):
            missing.append(f"{self._env('SECRET_KEY')} is unset or a placeholder")
        if self.keeps_data and not self.database_url:
            # A file under HDHUB_DATA_DIR would be one pod's own database, gone with the pod.
            missing.append(f"{self._env('DATABASE_URL')} is unset (PostgreSQL)")
        if hasattr(self, "master_key_file") and is_placeholder(getattr(self, "master_key", None)):
            # A service that encrypts what it keeps (hdhub.common.envelope.MasterKeySettings),
            # named with the rest so one start says everything a pod lacks.
            if not self.master_key_file:
                missing.append(
                    f"{self._env('MASTER_KEY')} is unset or a placeholder (or {self._env('MASTER_KEY_FILE')})"
                )
        if missing:
            raise ValueError(
                "; ".join(missing) + ("; set it" if len(missing) == 1 else "; set them") + " from a Secret"
            )
        return self

    def secret(self) -> bytes:
        """The service's secret key; refused in every environment while it is a placeholder
        (`hdhub` generates one under var/, production reads it from a Secret)."""
        if is_placeholder(self.secret_key):
            raise ValueError(f"{self._env('SECRET_KEY')} is unset or a placeholder")
        return self.secret_key.encode()

    def _env(self, name: str) -> str:
        """The variable a setting is read from (``HDHUB_REGISTRATIONS_SECRET_KEY``)."""
        return f"{self.model_config.get('env_prefix', 'HDHUB_')}{name}"

    def resolved_database_url(self) -> str:
        """The database URL; without one, a SQLite file under HDHUB_DATA_DIR (refused in
        production), or an empty database in memory for a service that keeps nothing."""
        if self.database_url:
            return self.database_url
        if not self.keeps_data:
            return "sqlite+aiosqlite://"
        data_dir = platform().data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{(data_dir / f'{self.service_name}.db').resolve()}"

    def resolved_grpc_bind(self) -> str:
        return self.grpc_bind or f"127.0.0.1:{DEFAULT_GRPC_PORTS[self.service_name]}"


@lru_cache(maxsize=1)
def platform() -> PlatformSettings:
    """The platform settings of this process (read once)."""
    return PlatformSettings()
