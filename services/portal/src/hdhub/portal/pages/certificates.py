"""Certificates (Certificate Editor only): upload the p12 with its password, every check's
refusal in words with the status log up to it, the versions with the published one
marked, and each version's status log. The portal owns certificates: the same
:class:`~hdhub.portal.certificates.Certificates` as the REST routes, the same rule
(``certificate:manage`` in the organisation), the same problems."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile

from hdhub.common.auth import Action
from hdhub.common.errors import Problem, forbidden
from hdhub.common.filenames import BadFileName, checked_file_name, file_name_refused
from hdhub.portal.domain.p12 import Step
from hdhub.portal.pages.forms import FormErrors, form_errors
from hdhub.portal.pages.i18n import N_
from hdhub.portal.pages.web import PREFIX, Page, PageRoute, check_csrf, current_page

if TYPE_CHECKING:
    from hdhub.portal.runtime import PortalService

#: The status log's steps as the page names them (the API's names, translated).
STEPS = {
    Step.RECEIVED: N_("Received"),
    Step.PASSWORD_CHECKED: N_("Password checked"),
    Step.KEYS_CHECKED: N_("Keys checked"),
    Step.VALIDITY_CHECKED: N_("Validity checked"),
    Step.STORED: N_("Stored"),
    Step.PUBLISHED: N_("Published"),
    Step.UNPUBLISHED: N_("Unpublished"),
    Step.REJECTED: N_("Refused"),
}


def build_certificates_router(service: PortalService) -> APIRouter:
    router = APIRouter(
        prefix=f"{PREFIX}/o/{{organisation_id}}/certificates", route_class=PageRoute, include_in_schema=False
    )
    certificates, db = service.certificates, service.db

    async def editor(request: Request, organisation_id: str) -> Page:
        page = await current_page(request, service, organisation_id=organisation_id)
        if not page.person.can(Action.CERTIFICATE_MANAGE, organisation_id):
            raise forbidden("Only a Certificate Editor of this organisation manages its certificates.")
        return page

    async def show(page: Page, organisation_id: str, status: int = 200, **context: object) -> Response:
        async with db.session([organisation_id]) as session:
            versions = await certificates.versions(session, organisation_id)
            logs = {c.id: await certificates.status_log(session, c) for c, _ in versions[:5]}
        context.setdefault("errors", FormErrors())
        return page.render(
            "certificates.html", status=status, versions=versions, logs=logs, steps=STEPS, **context
        )

    @router.get("")
    async def overview(request: Request, organisation_id: str) -> Response:
        page = await editor(request, organisation_id)
        return await show(page, organisation_id)

    @router.post("")
    async def upload(request: Request, organisation_id: str) -> Response:
        page = await editor(request, organisation_id)
        form = await check_csrf(request, page)
        file = (await request.form()).get("file")
        try:
            if not isinstance(file, UploadFile) or not file.filename:
                raise Problem(422, "p12-missing", N_("Choose the p12 file"), errors=[])
            try:
                filename = checked_file_name(file.filename)
            except BadFileName as refusal:
                raise file_name_refused(refusal, page.lang) from None
            data = await file.read(certificates.max_p12_bytes + 1)
            async with db.session([organisation_id]) as session:
                created = await certificates.upload(
                    session,
                    organisation_id=organisation_id,
                    data=data,
                    password=form.get("password", ""),
                    filename=filename,
                    actor=page.person.username,
                )
        except Problem as exc:
            log = exc.extra.get("log", [])
            return await show(
                page, organisation_id, status=exc.status, errors=form_errors(page, exc), refusal_log=log
            )
        return await show(page, organisation_id, uploaded=created.version)

    return router
