"""Members of an organisation (User Manager, DP Manager): search and keyset paging, add
by e-mail (a new account's initial password shown once), edit roles, remove, cancel the
account (with a reason for the audit log). Identity decides; refusals are its own."""

from __future__ import annotations

from typing import Any

import grpc
from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from hdhub.common.errors import not_found
from hdhub.portal.deps import OrganisationPage, ServiceDep
from hdhub.portal.pages.entry import text_of
from hdhub.portal.pages.forms import FormErrors, form_errors, identity, values
from hdhub.portal.pages.owners import registrations
from hdhub.portal.pages.roles import ROLE_NAMES, ROLES
from hdhub.portal.pages.web import PREFIX, Page, PageRoute, check_csrf
from hdhub.proto.identity.v1 import identity_pb2 as pb
from hdhub.proto.registrations.v1 import registrations_pb2 as rpb

router = APIRouter(
    prefix=f"{PREFIX}/o/{{organisation_id}}/members", route_class=PageRoute, include_in_schema=False
)


async def member(page: Page, organisation_id: str, account_id: str) -> pb.Member:
    answer = await identity().ListMembers(
        pb.ListMembersRequest(organisation_id=organisation_id, query=account_id, page_size=200),
        metadata=page.metadata(),
    )
    found = next((m for m in answer.members if m.account_id == account_id), None)
    if found is None:
        raise not_found("Member")
    return found


@router.get("")
async def list_members(
    organisation_id: str,
    page: OrganisationPage,
    service: ServiceDep,
    q: str = "",
    role: str = "",
    after: str = "",
) -> Response:
    role = role if role in ROLE_NAMES else ""
    answer = await identity().ListMembers(
        pb.ListMembersRequest(
            role=role,
            organisation_id=organisation_id,
            query=q,
            after_email=after,
            page_size=service.settings.page_size,
        ),
        metadata=page.metadata(),
    )
    return page.render("members.html", answer=answer, q=q, role=role, after=after, roles=ROLES)


@router.get("/new")
async def new_member(page: OrganisationPage) -> Response:
    return page.render("member_add.html", form={"roles": ["registrant"]}, errors=FormErrors(), roles=ROLES)


@router.post("/new")
async def add_member(request: Request, organisation_id: str, page: OrganisationPage) -> Response:
    raw = await request.form()
    form = values(await check_csrf(request, page), "email", "first_name", "last_name")
    form["roles"] = [str(r) for r in raw.getlist("roles")]
    try:
        added = await identity().AddMember(
            pb.AddMemberRequest(organisation_id=organisation_id, **form), metadata=page.metadata()
        )
    except Exception as exc:  # noqa: BLE001
        return page.render(
            "member_add.html", status=422, form=form, errors=form_errors(page, exc), roles=ROLES
        )
    # The initial password is in this answer only: no redirect, so never in a URL or a later page.
    return page.render("member_added.html", member=added.member, secret=added.initial_password, roles=ROLES)


async def registry_context(page: Page, organisation_id: str, found: pb.Member) -> dict[str, Any]:
    """The registries a User Manager may grant (the catalogue's), the member's grants, and
    what the member asked for on the account request (the approved one with their e-mail)."""
    catalogue = await registrations().ListRegistries(rpb.ListRegistriesRequest(), metadata=page.metadata())
    requested: list[str] = []
    try:
        asked = await identity().ListAccountRequests(
            pb.ListAccountRequestsRequest(organisation_id=organisation_id, status="approved"),
            metadata=page.metadata(),
        )
        for r in asked.requests:
            if r.email.lower() == found.email.lower():
                requested = list(r.data_collections)
    except grpc.aio.AioRpcError as exc:  # a DP Manager may grant without reviewing requests
        if exc.code() != grpc.StatusCode.PERMISSION_DENIED:
            raise
    return {
        "registries": [
            (r.code, r.abbreviation, text_of(r.titles, page.lang, r.abbreviation))
            for r in catalogue.registries
        ],
        "granted": list(found.registries),
        "requested": requested,
    }


@router.get("/{account_id}")
async def edit_member(
    organisation_id: str, account_id: str, page: OrganisationPage, granted: str = ""
) -> Response:
    found = await member(page, organisation_id, account_id)
    return page.render(
        "member_edit.html",
        member=found,
        chosen=list(found.roles),
        errors=FormErrors(),
        roles=ROLES,
        saved_registries=granted == "1",
        **await registry_context(page, organisation_id, found),
    )


@router.post("/{account_id}/registries")
async def set_registries(
    request: Request, organisation_id: str, account_id: str, page: OrganisationPage
) -> Response:
    """Grant exactly the registries ticked (identity's ``SetMemberRegistries``, audited
    there; taking one away ends the member's sessions)."""
    await check_csrf(request, page)
    raw = await request.form()
    chosen = [str(r) for r in raw.getlist("registries")]
    if "*" in chosen:
        chosen = ["*"]
    try:
        await identity().SetMemberRegistries(
            pb.SetMemberRegistriesRequest(
                organisation_id=organisation_id, account_id=account_id, registries=chosen
            ),
            metadata=page.metadata(),
        )
    except Exception as exc:  # noqa: BLE001
        errors = form_errors(page, exc)
        found = await member(page, organisation_id, account_id)
        context = await registry_context(page, organisation_id, found)
        context["granted"] = chosen
        return page.render(
            "member_edit.html",
            status=422,
            member=found,
            chosen=list(found.roles),
            errors=errors,
            roles=ROLES,
            **context,
        )
    return RedirectResponse(f"{PREFIX}/o/{organisation_id}/members/{account_id}?granted=1", status_code=303)


@router.post("/{account_id}")
async def set_roles(
    request: Request, organisation_id: str, account_id: str, page: OrganisationPage
) -> Response:
    await check_csrf(request, page)
    chosen = [str(r) for r in (await request.form()).getlist("roles")]
    try:
        await identity().SetMemberRoles(
            pb.SetMemberRolesRequest(organisation_id=organisation_id, account_id=account_id, roles=chosen),
            metadata=page.metadata(),
        )
    except Exception as exc:  # noqa: BLE001
        errors = form_errors(page, exc)
        found = await member(page, organisation_id, account_id)
        return page.render(
            "member_edit.html",
            status=422,
            member=found,
            chosen=chosen,
            errors=errors,
            roles=ROLES,
            **await registry_context(page, organisation_id, found),
        )
    return RedirectResponse(f"{PREFIX}/o/{organisation_id}/members?saved=1", status_code=303)


@router.get("/{account_id}/remove")
async def confirm_remove(organisation_id: str, account_id: str, page: OrganisationPage) -> Response:
    found = await member(page, organisation_id, account_id)
    return page.render("member_confirm.html", member=found, what="remove", errors=FormErrors())


@router.post("/{account_id}/remove")
async def remove(request: Request, organisation_id: str, account_id: str, page: OrganisationPage) -> Response:
    await check_csrf(request, page)
    try:
        await identity().RemoveMember(
            pb.RemoveMemberRequest(organisation_id=organisation_id, account_id=account_id),
            metadata=page.metadata(),
        )
    except Exception as exc:  # noqa: BLE001
        errors = form_errors(page, exc)
        found = await member(page, organisation_id, account_id)
        return page.render("member_confirm.html", status=409, member=found, what="remove", errors=errors)
    return RedirectResponse(f"{PREFIX}/o/{organisation_id}/members?removed=1", status_code=303)


@router.get("/{account_id}/cancel")
async def confirm_cancel(organisation_id: str, account_id: str, page: OrganisationPage) -> Response:
    found = await member(page, organisation_id, account_id)
    return page.render("member_confirm.html", member=found, what="cancel", errors=FormErrors())


@router.post("/{account_id}/cancel")
async def cancel(request: Request, organisation_id: str, account_id: str, page: OrganisationPage) -> Response:
    form = await check_csrf(request, page)
    found = await member(page, organisation_id, account_id)
    reason = form.get("reason", "").strip()
    if not reason:
        errors = FormErrors(
            page._("The input is not valid"),
            fields={"reason": page._("Say why the account is cancelled.")},
        )
        return page.render("member_confirm.html", status=422, member=found, what="cancel", errors=errors)
    try:
        await identity().CancelAccount(
            pb.CancelAccountRequest(account_id=account_id, reason=reason), metadata=page.metadata()
        )
    except Exception as exc:  # noqa: BLE001
        return page.render(
            "member_confirm.html", status=409, member=found, what="cancel", errors=form_errors(page, exc)
        )
    return RedirectResponse(f"{PREFIX}/o/{organisation_id}/members?cancelled=1", status_code=303)
