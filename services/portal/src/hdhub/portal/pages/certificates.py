"""Certificates (Certificate Editor only): upload the p12 with its password, every check's
refusal in words with the status log up to it, the versions with the published one
marked, and each version's status log. The portal owns certificates: the same
:class:`~hdhub.portal.certificates.Certificates` as the REST routes, the same rule
(``certificate:manage`` in the organisation), the same problems."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from starlette.datastructures import UploadFile

from hdhub.common.auth import Action
from hdhub.common.errors import Problem, forbidden
from hdhub.common.filenames import BadFileName, checked_file_name, file_name_refused
from hdhub.portal.deps import OrganisationPage, ServiceDep
from hdhub.portal.domain.p12 import Step
from hdhub.portal.pages.forms import FormErrors, form_errors
from hdhub.portal.pages.i18n import N_
from hdhub.portal.pages.web import PREFIX, Page, PageRoute, check_csrf
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


router = APIRouter(
    prefix=f"{PREFIX}/o/{{organisation_id}}/certificates", route_class=PageRoute, include_in_schema=False
)


async def _editor_page(organisation_id: str, page: OrganisationPage) -> Page:
    """The page of a Certificate Editor of ``organisation_id`` (a refusal page otherwise)."""
    if not page.person.can(Action.CERTIFICATE_MANAGE, organisation_id):
        raise forbidden("Only a Certificate Editor of this organisation manages its certificates.")
    return page


EditorPage = Annotated[Page, Depends(_editor_page)]


async def show(
    page: Page, service: PortalService, organisation_id: str, status: int = 200, **context: object
) -> Response:
    certificates = service.certificates
    async with service.db.session([organisation_id]) as session:
        versions = await certificates.versions(session, organisation_id)
        logs = {c.id: await certificates.status_log(session, c) for c, _ in versions[:5]}
    context.setdefault("errors", FormErrors())
    return page.render(
        "certificates.html", status=status, versions=versions, logs=logs, steps=STEPS, **context
    )


@router.get("")
async def overview(organisation_id: str, page: EditorPage, service: ServiceDep) -> Response:
    return await show(page, service, organisation_id)


@router.post("")
async def upload(request: Request, organisation_id: str, page: EditorPage, service: ServiceDep) -> Response:
    """The upload's transaction is its own: a refused p12 stores nothing and the page
    then shows the versions as they are."""
    certificates = service.certificates
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
        async with service.db.session([organisation_id]) as session:
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
            page, service, organisation_id, status=exc.status, errors=form_errors(page, exc), refusal_log=log
        )
    return await show(page, service, organisation_id, uploaded=created.version)
