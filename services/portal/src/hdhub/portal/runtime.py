"""The portal service as it plugs into a process: certificates (REST and gRPC) and the
pages (the backend-for-frontend under /portal)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from fastapi import APIRouter

from hdhub.common.envelope import Envelope
from hdhub.common.objectstore import open_store
from hdhub.common.runtime import Service
from hdhub.portal.certificates import Certificates
from hdhub.portal.settings import PortalSettings

MIGRATIONS = Path(__file__).parent / "migrations"


class PortalService(Service):
    name = "portal"
    grpc_service_names = ("hdhub.portal.v1.CertificatesService",)

    def __init__(self, settings: PortalSettings | None = None) -> None:
        super().__init__(settings or PortalSettings(), migrations=MIGRATIONS)
        self.settings: PortalSettings
        self.objects = open_store(self.settings.object_store_url)
        self.certificates = Certificates(
            self.db,
            self.objects,
            Envelope(self.settings.master_keys()),
            max_p12_bytes=self.settings.max_p12_bytes,
        )
        from hdhub.portal.pages.oidc import Oidc
        from hdhub.portal.pages.sessions import Sessions

        self.portal_sessions = Sessions(
            self.db,
            secret=self.settings.secret,
            idle_seconds=self.settings.session_idle_seconds,
            max_seconds=self.settings.session_max_seconds,
        )
        self.oidc = Oidc(self.settings.oidc_client_id)

    def routers(self) -> Sequence[APIRouter]:
        from hdhub.common.web import answering_for, html_errors
        from hdhub.portal import api, pages
        from hdhub.portal.pages.web import PREFIX, refusal_page, security_headers

        # A page the router never reached (no such page, a GET on a form's address, a
        # parameter that does not parse) is refused as a page too, in the person's language.
        html_errors(f"{PREFIX}/", lambda request, problem: security_headers(refusal_page(request, problem)))
        return answering_for(self, api.router, *pages.routers())

    async def work(self, stop: asyncio.Event) -> None:
        """Ended page sessions are deleted every ten minutes."""
        while not stop.is_set():
            with contextlib.suppress(Exception):
                await self.portal_sessions.sweep()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=600)

    def grpc_registrations(self) -> Sequence[Callable[[grpc.aio.Server], None]]:
        from hdhub.portal.grpc import CertificatesServicer
        from hdhub.proto.portal.v1 import certificates_pb2_grpc

        servicer = CertificatesServicer(self)
        return [
            lambda server: certificates_pb2_grpc.add_CertificatesServiceServicer_to_server(servicer, server)
        ]

    async def domain_metrics(self) -> None:
        from hdhub.portal import metrics

        await metrics.refresh(self)

    async def seed(self) -> None:
        """Demo data (``hdhub run all``): a published certificate per demo organisation, so
        registrations can sign deliveries to the central platform out of the box."""
        from hdhub.portal.demo import seed_demo_certificates

        await seed_demo_certificates(self)

    async def stop(self) -> None:
        await super().stop()
        await self.objects.close()
