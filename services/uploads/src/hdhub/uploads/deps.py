"""What the Upload Center's routes depend on: the service a request reached and its
uploads, the upload a path names (when the caller may read it). Routes declare
them as parameters (``uploads: UploadsDep``); the transactions are the uploads'."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from hdhub.common.web import CurrentPrincipal, service_of
from hdhub.uploads.runtime import UploadsService
from hdhub.uploads.service import Uploads
from hdhub.uploads.store import Upload


async def _service(request: Request) -> UploadsService:
    return service_of(request, UploadsService)


ServiceDep = Annotated[UploadsService, Depends(_service)]


def _uploads(service: ServiceDep) -> Uploads:
    return service.uploads


UploadsDep = Annotated[Uploads, Depends(_uploads)]


async def _readable_upload(upload_id: str, uploads: UploadsDep, principal: CurrentPrincipal) -> Upload:
    return await uploads.readable(principal, upload_id)


#: The upload a path names (``/uploads/{upload_id}``), when the caller may read it (404 otherwise).
ReadableUpload = Annotated[Upload, Depends(_readable_upload)]
