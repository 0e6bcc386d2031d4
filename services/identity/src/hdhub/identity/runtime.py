"""The identity service as it plugs into a process."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from fastapi import APIRouter

from hdhub.common.runtime import Service
from hdhub.identity.settings import IdentitySettings

MIGRATIONS = Path(__file__).parent / "migrations"


class IdentityService(Service):
    name = "identity"
    grpc_service_names = ("hdhub.identity.v1.IdentityService",)

    def __init__(self, settings: IdentitySettings | None = None) -> None:
        super().__init__(settings or IdentitySettings(), migrations=MIGRATIONS)
        self.settings: IdentitySettings
        from hdhub.common.config import platform
        from hdhub.identity.backend import IdentityBackend
        from hdhub.identity.directory import Directory
        from hdhub.identity.locks import OrganisationLocks
        from hdhub.identity.logins import Logins
        from hdhub.identity.mail import Mailer, Outbox
        from hdhub.identity.ratelimit import LoginGuard, SourceAddresses

        s = self.settings
        self.locks = OrganisationLocks(
            platform().redis_url, prefix=f"{s.login_key_prefix.rsplit(':', 1)[0]}:lock"
        )
        self.backend: IdentityBackend
        if s.backend == "keycloak":
            from hdhub.identity.keycloak_backend import KeycloakBackend

            self.backend = KeycloakBackend.from_settings(s, self.locks)
        else:
            from hdhub.identity.embedded import EmbeddedBackend

            self.backend = EmbeddedBackend(self.db)
        # Development without a mail server: mails are kept and shown at /dev/mail.
        self.outbox = Outbox() if s.mail_outbox else None
        self.mailer = Mailer(host=s.smtp_host, port=s.smtp_port, sender=s.mail_from, outbox=self.outbox)
        self.directory = Directory(self.backend, self.db, self.mailer, self.locks)
        self.login_guard = LoginGuard(
            platform().redis_url,
            prefix=s.login_key_prefix,
            per_principal=s.login_logins_per_principal,
            per_address=s.login_attempts_per_address,
            window=s.login_window_seconds,
            free_failures=s.login_free_failures,
            address_free_failures=s.login_address_free_failures,
            failure_memory=s.login_failure_memory_seconds,
            wait_base=s.login_wait_base_seconds,
            wait_max=s.login_wait_max_seconds,
        )
        self.logins = Logins(self.login_guard, self.directory, SourceAddresses(s.trusted_proxies))

    def routers(self) -> Sequence[APIRouter]:
        from hdhub.common.web import answering_for
        from hdhub.identity import admin_api, api, login

        routers = [
            api.oidc,
            api.organisations,
            admin_api.organisations,
            admin_api.accounts,
            admin_api.account_requests,
            admin_api.audit,
            admin_api.operator,
        ]
        if self.outbox is not None:
            routers.append(api.dev_mail)
        if self.settings.backend != "keycloak":  # Keycloak shows its own login page
            routers.append(login.router)
        return answering_for(self, *routers)

    def grpc_registrations(self) -> Sequence[Callable[[grpc.aio.Server], None]]:
        from hdhub.identity.grpc import IdentityServicer
        from hdhub.proto.identity.v1 import identity_pb2_grpc

        servicer = IdentityServicer(self)
        return [lambda server: identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)]

    async def stop(self) -> None:
        await self.login_guard.close()
        await self.locks.close()
        await super().stop()

    async def seed(self) -> None:
        from hdhub.identity.issuer import signing_key
        from hdhub.identity.seed import seed_demo

        async with self.db.system_session() as session:
            await seed_demo(session)
            await signing_key(session)
