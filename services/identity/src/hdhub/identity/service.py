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

    def routers(self) -> Sequence[APIRouter]:
        from hdhub.identity.api import build_routers

        return build_routers(self)

    def grpc_registrations(self) -> Sequence[Callable[[grpc.aio.Server], None]]:
        from hdhub.identity.grpc import IdentityServicer
        from hdhub.proto.identity.v1 import identity_pb2_grpc

        servicer = IdentityServicer(self)
        return [lambda server: identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)]

    async def seed(self) -> None:
        from hdhub.identity.issuer import signing_key
        from hdhub.identity.seed import seed_demo

        async with self.db.system_session() as session:
            await seed_demo(session)
            await signing_key(session)
