"""What identity's routes depend on: the service a request reached and its parts, and the
address a login attempt comes from. Routes declare them as parameters
(``directory: DirectoryDep``); the rules and transactions are the directory's."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from hdhub.common.web import service_of
from hdhub.identity.directory import Directory
from hdhub.identity.logins import Logins
from hdhub.identity.mail import Outbox
from hdhub.identity.runtime import IdentityService
from hdhub.identity.settings import IdentitySettings


async def _service(request: Request) -> IdentityService:
    return service_of(request, IdentityService)


ServiceDep = Annotated[IdentityService, Depends(_service)]


def _directory(service: ServiceDep) -> Directory:
    return service.directory


def _logins(service: ServiceDep) -> Logins:
    return service.logins


def _settings(service: ServiceDep) -> IdentitySettings:
    return service.settings


def _outbox(service: ServiceDep) -> Outbox:
    assert service.outbox is not None  # its route is mounted only with an outbox
    return service.outbox


DirectoryDep = Annotated[Directory, Depends(_directory)]
LoginsDep = Annotated[Logins, Depends(_logins)]
SettingsDep = Annotated[IdentitySettings, Depends(_settings)]
OutboxDep = Annotated[Outbox, Depends(_outbox)]


def _source(request: Request, logins: LoginsDep) -> str | None:
    return logins.source(request)


#: The address a login attempt comes from (the client's, or the one a trusted proxy names).
SourceAddress = Annotated[str | None, Depends(_source)]
