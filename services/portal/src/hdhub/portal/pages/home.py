"""Home (the person's organisations and what their roles let them do there), the
organisations (list, create with the NIHDI number checked as typed, edit) and My account."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from hdhub.common.auth import Action
from hdhub.common.errors import forbidden
from hdhub.portal.deps import CurrentPage, OrganisationPage, ServiceDep
from hdhub.portal.pages.forms import FormErrors, form_errors, identity, values
from hdhub.portal.pages.sessions import Tokens
from hdhub.portal.pages.web import PREFIX, Page, PageRoute, check_csrf, refresh
from hdhub.portal.runtime import PortalService
from hdhub.proto.identity.v1 import identity_pb2 as pb

#: The data pages each action opens, in the order Home lists them.
WORK = (
    (Action.REGISTRATION_READ, "registries"),
    (Action.REGISTRATION_READ, "registrations"),
    (Action.REGISTRATION_READ, "uploads"),
    (Action.REGISTRATION_READ, "files"),
    (Action.REGISTRATION_READ, "deliveries"),
    (Action.REGISTRATION_READ, "follow-ups"),
)
#: What each action opens, in the order Home lists them (DOMAIN.md's Self-Service Portal).
TASKS = (
    (Action.MEMBER_MANAGE, "members"),
    (Action.ROLE_MANAGE, "organisation"),
    (Action.CLIENT_MANAGE, "clients"),
    (Action.CLIENT_MANAGE, "sftp"),
    (Action.ACCOUNT_REQUEST_REVIEW, "account-requests"),
    (Action.CERTIFICATE_MANAGE, "certificates"),
    (Action.AUDIT_READ, "audit"),
    (Action.NIPPIN, "nippin"),
)


router = APIRouter(prefix=PREFIX, route_class=PageRoute, include_in_schema=False)


async def renew(request: Request, page: Page, service: PortalService) -> None:
    """Fresh tokens now: the person's memberships changed (an organisation created)."""
    session = page.session
    assert session is not None
    tokens = service.portal_sessions.unseal(session)
    assert isinstance(tokens, Tokens)
    await refresh(service, session, tokens, request.url.path)


@router.get("/")
async def home(page: CurrentPage) -> Response:
    return page.render("home.html", work=WORK, tasks=TASKS)


@router.get("/switch")
async def switch(page: CurrentPage, organisation: str = "") -> Response:
    """The organisation switcher: the first task the person's roles open there."""
    for action, task in (*WORK, *TASKS):
        if organisation in page.person.memberships and page.person.can(action, organisation):
            return RedirectResponse(f"{PREFIX}/o/{organisation}/{task}", status_code=303)
    return RedirectResponse(f"{PREFIX}/", status_code=303)


@router.get("/organisations")
async def organisations(page: CurrentPage, q: str = "") -> Response:
    found = [
        m
        for m in page.person.memberships.values()
        if not q.strip() or q.strip().lower() in f"{m.name} {m.nihdi}".lower()
    ]
    return page.render("organisations.html", found=sorted(found, key=lambda m: m.name.lower()), q=q)


@router.get("/organisations/new")
async def new_organisation(page: CurrentPage) -> Response:
    return page.render("organisation_form.html", form={}, errors=FormErrors(), creating=True)


@router.post("/organisations/new")
async def create_organisation(request: Request, page: CurrentPage, service: ServiceDep) -> Response:
    form = values(await check_csrf(request, page), "title", "nihdi_number")
    try:
        created = await identity().CreateOrganisation(
            pb.CreateOrganisationRequest(**form), metadata=page.metadata()
        )
    except Exception as exc:  # noqa: BLE001 - form_errors raises what is no refusal
        errors = form_errors(page, exc)
        return page.render("organisation_form.html", status=422, form=form, errors=errors, creating=True)
    await renew(request, page, service)
    return RedirectResponse(f"{PREFIX}/o/{created.organisation.id}/members?created=1", status_code=303)


@router.get("/nihdi-check")
async def nihdi_check(page: CurrentPage, nihdi_number: str = "") -> HTMLResponse:
    """The NIHDI number's problem as typed (htmx), by identity's one rule."""
    answer = await identity().CheckNihdiNumber(
        pb.CheckNihdiNumberRequest(nihdi_number=nihdi_number), metadata=page.metadata()
    )
    message = page._(answer.problems[0].message) if answer.problems and nihdi_number.strip() else ""
    return page.render("partials/nihdi_check.html", message=message, ok=not answer.problems)


@router.get("/o/{organisation_id}/organisation")
async def edit_organisation(organisation_id: str, page: OrganisationPage) -> Response:
    if not page.person.can(Action.ROLE_MANAGE, organisation_id):  # the rule UpdateOrganisation applies
        raise forbidden("Only a User Manager edits the organisation.")
    answer = await identity().GetOrganisation(
        pb.GetOrganisationRequest(id=organisation_id), metadata=page.metadata()
    )
    form = {"title": answer.organisation.title, "nihdi_number": answer.organisation.nihdi_number}
    return page.render("organisation_form.html", form=form, errors=FormErrors(), creating=False)


@router.post("/o/{organisation_id}/organisation")
async def update_organisation(
    request: Request, organisation_id: str, page: OrganisationPage, service: ServiceDep
) -> Response:
    form = values(await check_csrf(request, page), "title", "nihdi_number")
    try:
        await identity().UpdateOrganisation(
            pb.UpdateOrganisationRequest(id=organisation_id, **form), metadata=page.metadata()
        )
    except Exception as exc:  # noqa: BLE001
        errors = form_errors(page, exc)
        return page.render("organisation_form.html", status=422, form=form, errors=errors, creating=False)
    await renew(request, page, service)
    return RedirectResponse(f"{PREFIX}/o/{organisation_id}/organisation?saved=1", status_code=303)


@router.get("/account")
async def account(request: Request, page: CurrentPage) -> Response:
    return page.render("account.html", errors=FormErrors(), changed=bool(request.query_params.get("changed")))


@router.post("/account/password")
async def change_password(request: Request, page: CurrentPage) -> Response:
    form = await check_csrf(request, page)
    errors = FormErrors()
    if form.get("new_password", "") != form.get("new_password_again", ""):
        errors = FormErrors(
            page._("The input is not valid"),
            fields={"new_password_again": page._("The two passwords are not the same.")},
        )
    else:
        try:
            await identity().ChangeOwnPassword(
                pb.ChangeOwnPasswordRequest(
                    current_password=form.get("current_password", ""),
                    new_password=form.get("new_password", ""),
                    client_address=request.client.host if request.client else "",
                ),
                metadata=page.metadata(),
            )
        except Exception as exc:  # noqa: BLE001
            errors = form_errors(page, exc)
    if errors:
        return page.render("account.html", status=422, errors=errors, changed=False)
    return RedirectResponse(f"{PREFIX}/account?changed=1", status_code=303)
