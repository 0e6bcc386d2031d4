"""Hospital-system clients and SFTP logins (User Manager): create, rotate, delete. A
secret or password is shown once, in the answer to the POST that made it."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from hdhub.portal.deps import OrganisationPage
from hdhub.portal.pages.forms import FormErrors, form_errors, identity, values
from hdhub.portal.pages.owners import registrations
from hdhub.portal.pages.web import PREFIX, Page, PageRoute, check_csrf
from hdhub.proto.identity.v1 import identity_pb2 as pb
from hdhub.proto.registrations.v1 import registrations_pb2 as rpb

router = APIRouter(prefix=f"{PREFIX}/o/{{organisation_id}}", route_class=PageRoute, include_in_schema=False)


async def clients_page(page: Page, organisation_id: str, status: int = 200, **context: object) -> Response:
    answer = await identity().ListClients(
        pb.ListClientsRequest(organisation_id=organisation_id), metadata=page.metadata()
    )
    context.setdefault("errors", FormErrors())
    context.setdefault("form", {})
    catalogue = await registrations().ListRegistries(rpb.ListRegistriesRequest(), metadata=page.metadata())
    return page.render(
        "clients.html",
        status=status,
        clients=answer.clients,
        registries=[(r.code, r.abbreviation) for r in catalogue.registries],
        **context,
    )


@router.get("/clients")
async def clients(organisation_id: str, page: OrganisationPage) -> Response:
    return await clients_page(page, organisation_id)


@router.post("/clients")
async def create_client(request: Request, organisation_id: str, page: OrganisationPage) -> Response:
    raw = await request.form()
    form = values(await check_csrf(request, page), "client_id", "name")
    roles = [str(r) for r in raw.getlist("roles")] or ["registrant"]
    # None ticked: every registry (identity's default); else only those (portalret).
    limited = [str(r) for r in raw.getlist("registries")]
    try:
        made = await identity().CreateClient(
            pb.CreateClientRequest(organisation_id=organisation_id, roles=roles, registries=limited, **form),
            metadata=page.metadata(),
        )
    except Exception as exc:  # noqa: BLE001
        return await clients_page(page, organisation_id, status=422, errors=form_errors(page, exc), form=form)
    return await clients_page(
        page, organisation_id, secret=made.client_secret, secret_for=made.client.client_id
    )


@router.post("/clients/{client_id}/rotate")
async def rotate_client(
    request: Request, organisation_id: str, client_id: str, page: OrganisationPage
) -> Response:
    await check_csrf(request, page)
    made = await identity().RotateClientSecret(
        pb.RotateClientSecretRequest(organisation_id=organisation_id, client_id=client_id),
        metadata=page.metadata(),
    )
    return await clients_page(page, organisation_id, secret=made.client_secret, secret_for=client_id)


@router.get("/clients/{client_id}/delete")
async def confirm_delete_client(organisation_id: str, client_id: str, page: OrganisationPage) -> Response:
    return page.render(
        "system_delete.html", kind="client", name=client_id, back=f"{PREFIX}/o/{organisation_id}/clients"
    )


@router.post("/clients/{client_id}/delete")
async def delete_client(
    request: Request, organisation_id: str, client_id: str, page: OrganisationPage
) -> Response:
    await check_csrf(request, page)
    await identity().DeleteClient(
        pb.DeleteClientRequest(organisation_id=organisation_id, client_id=client_id),
        metadata=page.metadata(),
    )
    return RedirectResponse(f"{PREFIX}/o/{organisation_id}/clients?deleted=1", status_code=303)


async def sftp_page(page: Page, organisation_id: str, status: int = 200, **context: object) -> Response:
    answer = await identity().ListSftpLogins(
        pb.ListSftpLoginsRequest(organisation_id=organisation_id), metadata=page.metadata()
    )
    context.setdefault("errors", FormErrors())
    context.setdefault("form", {})
    return page.render("sftp.html", status=status, logins=answer.logins, **context)


@router.get("/sftp")
async def sftp(organisation_id: str, page: OrganisationPage) -> Response:
    return await sftp_page(page, organisation_id)


@router.post("/sftp")
async def create_sftp(request: Request, organisation_id: str, page: OrganisationPage) -> Response:
    form = values(await check_csrf(request, page), "username", "name")
    try:
        made = await identity().CreateSftpLogin(
            pb.CreateSftpLoginRequest(organisation_id=organisation_id, **form), metadata=page.metadata()
        )
    except Exception as exc:  # noqa: BLE001
        return await sftp_page(page, organisation_id, status=422, errors=form_errors(page, exc), form=form)
    return await sftp_page(page, organisation_id, secret=made.password, secret_for=made.login.username)


@router.post("/sftp/{username}/rotate")
async def rotate_sftp(
    request: Request, organisation_id: str, username: str, page: OrganisationPage
) -> Response:
    await check_csrf(request, page)
    made = await identity().RotateSftpPassword(
        pb.RotateSftpPasswordRequest(organisation_id=organisation_id, username=username),
        metadata=page.metadata(),
    )
    return await sftp_page(page, organisation_id, secret=made.password, secret_for=username)


@router.get("/sftp/{username}/delete")
async def confirm_delete_sftp(organisation_id: str, username: str, page: OrganisationPage) -> Response:
    return page.render(
        "system_delete.html", kind="sftp", name=username, back=f"{PREFIX}/o/{organisation_id}/sftp"
    )


@router.post("/sftp/{username}/delete")
async def delete_sftp(
    request: Request, organisation_id: str, username: str, page: OrganisationPage
) -> Response:
    await check_csrf(request, page)
    await identity().DeleteSftpLogin(
        pb.DeleteSftpLoginRequest(organisation_id=organisation_id, username=username),
        metadata=page.metadata(),
    )
    return RedirectResponse(f"{PREFIX}/o/{organisation_id}/sftp?deleted=1", status_code=303)
