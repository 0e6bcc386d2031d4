"""What the sim's routes depend on: the service a request reached and its two stand-ins,
and the operator who drives them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from hdhub.common.auth import Principal
from hdhub.common.errors import forbidden
from hdhub.common.web import CurrentPrincipal, service_of
from hdhub.sim.decisions import Decisions
from hdhub.sim.files import CentralFiles
from hdhub.sim.mycarenet import MyCareNet
from hdhub.sim.receiver import Receiver
from hdhub.sim.runtime import SimService


async def _service(request: Request) -> SimService:
    return service_of(request, SimService)


ServiceDep = Annotated[SimService, Depends(_service)]


def _receiver(service: ServiceDep) -> Receiver:
    return service.receiver


def _decisions(service: ServiceDep) -> Decisions:
    return service.decisions


def _mycarenet(service: ServiceDep) -> MyCareNet:
    return service.mycarenet


def _central_files(service: ServiceDep) -> CentralFiles:
    return service.central_files


ReceiverDep = Annotated[Receiver, Depends(_receiver)]
CentralFilesDep = Annotated[CentralFiles, Depends(_central_files)]
DecisionsDep = Annotated[Decisions, Depends(_decisions)]
MyCareNetDep = Annotated[MyCareNet, Depends(_mycarenet)]


def _operator(principal: CurrentPrincipal) -> Principal:
    if not principal.is_operator:
        raise forbidden("Only the operator drives the sim.")
    return principal


#: The caller, when the operator (else 403).
Operator = Annotated[Principal, Depends(_operator)]
