"""Members of an organisation (User Manager, DP Manager): search and keyset paging, add
by e-mail (a new account's initial password shown once), edit roles, remove, cancel the
account (with a reason for the audit log). Identity decides; refusals are its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from hdhub.common.errors import not_found
from hdhub.portal.pages.forms import FormErrors, form_errors, identity, values
from hdhub.portal.pages.roles import ROLE_NAMES, ROLES
from hdhub.portal.pages.web import PREFIX, Page, PageRoute, check_csrf, current_page
from hdhub.proto.identity.v1 import identity_pb2 as pb

if TYPE_CHECKING:
    from hdhub.portal.runtime import PortalService


def build_members_router(service: PortalService) -> APIRouter:
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
        request: Request, organisation_id: str, q: str = "", role: str = "", after: str = ""
    ) -> Response:
        page = await current_page(request, service, organisation_id=organisation_id)
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
    async def new_member(request: Request, organisation_id: str) -> Response:
        page = await current_page(request, service, organisation_id=organisation_id)
        return page.render(
            "member_add.html", form={"roles": ["registrant"]}, errors=FormErrors(), roles=ROLES
        )

    @router.post("/new")
    async def add_member(request: Request, organisation_id: str) -> Response:
        page = await current_page(request, service, organisation_id=organisation_id)
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
        return page.render(
            "member_added.html", member=added.member, secret=added.initial_password, roles=ROLES
        )

    @router.get("/{account_id}")
    async def edit_member(request: Request, organisation_id: str, account_id: str) -> Response:
        page = await current_page(request, service, organisation_id=organisation_id)
        found = await member(page, organisation_id, account_id)
        return page.render(
            "member_edit.html", member=found, chosen=list(found.roles), errors=FormErrors(), roles=ROLES
        )

    @router.post("/{account_id}")
    async def set_roles(request: Request, organisation_id: str, account_id: str) -> Response:
        page = await current_page(request, service, organisation_id=organisation_id)
        await check_csrf(request, page)
        chosen = [str(r) for r in (await request.form()).getlist("roles")]
        try:
            await identity().SetMemberRoles(
                pb.SetMemberRolesRequest(
                    organisation_id=organisation_id, account_id=account_id, roles=chosen
                ),
                metadata=page.metadata(),
            )
        except Exception as exc:  # noqa: BLE001
            errors = form_errors(page, exc)
            found = await member(page, organisation_id, account_id)
            return page.render(
                "member_edit.html", status=422, member=found, chosen=chosen, errors=errors, roles=ROLES
            )
        return RedirectResponse(f"{PREFIX}/o/{organisation_id}/members?saved=1", status_code=303)

    @router.get("/{account_id}/remove")
    async def confirm_remove(request: Request, organisation_id: str, account_id: str) -> Response:
        page = await current_page(request, service, organisation_id=organisation_id)
        found = await member(page, organisation_id, account_id)
        return page.render("member_confirm.html", member=found, what="remove", errors=FormErrors())

    @router.post("/{account_id}/remove")
    async def remove(request: Request, organisation_id: str, account_id: str) -> Response:
        page = await current_page(request, service, organisation_id=organisation_id)
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
    async def confirm_cancel(request: Request, organisation_id: str, account_id: str) -> Response:
        page = await current_page(request, service, organisation_id=organisation_id)
        found = await member(page, organisation_id, account_id)
        return page.render("member_confirm.html", member=found, what="cancel", errors=FormErrors())

    @router.post("/{account_id}/cancel")
    async def cancel(request: Request, organisation_id: str, account_id: str) -> Response:
        page = await current_page(request, service, organisation_id=organisation_id)
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

    return router
