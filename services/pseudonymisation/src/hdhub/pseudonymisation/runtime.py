"""The pseudonymisation service as it plugs into a process: gRPC only, no REST, no worker."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc

from hdhub.common.runtime import Service
from hdhub.pseudonymisation.keys import DomainKeys
from hdhub.pseudonymisation.settings import PseudonymisationSettings


class PseudonymisationService(Service):
    name = "pseudonymisation"
    grpc_service_names = ("hdhub.pseudonymisation.v1.PseudonymisationService",)

    def __init__(self, settings: PseudonymisationSettings | None = None) -> None:
        super().__init__(settings or PseudonymisationSettings())
        self.settings: PseudonymisationSettings
        self.keys = DomainKeys(
            self.settings.master(),
            self.settings.key_versions,
            default_version=self.settings.default_key_version,
        )

    def grpc_registrations(self) -> Sequence[Callable[[grpc.aio.Server], None]]:
        from hdhub.proto.pseudonymisation.v1 import pseudonymisation_pb2_grpc
        from hdhub.pseudonymisation.grpc import PseudonymisationServicer

        servicer = PseudonymisationServicer(self)
        return [
            lambda server: pseudonymisation_pb2_grpc.add_PseudonymisationServiceServicer_to_server(
                servicer, server
            )
        ]
