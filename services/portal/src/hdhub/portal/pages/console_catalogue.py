"""The operator's DCD catalogue (the console): each registry's DCDs and versions with their
state and which organisations use each; a workbook imported from the browser as a draft,
every problem of it shown by sheet, row and column; a version's form previewed as the
data-entry pages render it; its difference from another version (fields added, removed,
changed; major or minor) with the registrations a major version invalidates, counted per
organisation and status, never their values; publish and retire. Every rule is
registrations' (``ImportDcdWorkbook``, ``CompareDcdVersions``, ``SetDcdVersionState``)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import grpc
from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from hdhub.common.errors import Problem
from hdhub.common.grpc import problem_from_rpc_error
from hdhub.common.multipart import Part
from hdhub.portal.pages.console import HERE, OperatorPage, organisation_names
from hdhub.portal.pages.console_audit import record_operator_action
from hdhub.portal.pages.entry import FieldState, definition, form_context, status_words
from hdhub.portal.pages.forms import FormErrors, form_errors
from hdhub.portal.pages.i18n import N_
from hdhub.portal.pages.owners import registrations
from hdhub.portal.pages.sending import StreamedForm
from hdhub.portal.pages.web import Page, PageRoute, check_csrf
from hdhub.proto.registrations.v1 import registrations_pb2 as pb

router = APIRouter(prefix=f"{HERE}/catalogue", route_class=PageRoute, include_in_schema=False)

#: A workbook larger than this is refused before it is sent on (the largest shipped: 60 KiB).
MAX_WORKBOOK_BYTES = 32 * 1024 * 1024
#: Past the limit, this much more is read (and dropped) so the browser still gets the page.
MAX_DRAINED_BYTES = 64 * 1024 * 1024
STATES = {
    pb.DCD_VERSION_STATE_DRAFT: ("draft", "info", N_("Draft")),
    pb.DCD_VERSION_STATE_PUBLISHED: ("published", "ok", N_("Published")),
    pb.DCD_VERSION_STATE_RETIRED: ("retired", "bad", N_("Retired")),
}
MOVES = {"published": pb.DCD_VERSION_STATE_PUBLISHED, "retired": pb.DCD_VERSION_STATE_RETIRED}
#: What changed about a field, in the pages' words (registrations' names for them).
ASPECTS = {
    "type": N_("type"),
    "required": N_("required"),
    "constraint": N_("constraint"),
    "relevant": N_("when it applies"),
    "calculation": N_("calculation"),
    "default": N_("default"),
    "read_only": N_("read-only"),
    "number_format": N_("number format"),
    "format": N_("format"),
    "repeat_max": N_("repeats"),
    "labels": N_("label"),
    "hints": N_("hint"),
    "group_path": N_("place in the form"),
    "choices_added": N_("choices added"),
    "choices_removed": N_("choices removed"),
}
#: The statuses a major version invalidates (registrations' INVALIDATED_STATUSES), as columns.
INVALIDATED_STATUSES = ("open", "corrections_needed", "follow_up_needed", "error", "sending", "submitted")
KINDS = {"major": N_("Major"), "minor": N_("Minor"), "patch": N_("Patch")}


@dataclass(frozen=True)
class WorkbookProblem:
    sheet: str
    row: int | None
    column: str
    message: str


async def catalogue_page(page: Page, status: int = 200, **context: Any) -> Response:
    stub = registrations()
    listed, usage = await asyncio.gather(
        stub.ListDcdVersions(pb.ListDcdVersionsRequest(), metadata=page.metadata()),
        stub.CatalogueUsage(pb.CatalogueUsageRequest(), metadata=page.metadata()),
    )
    names = await organisation_names(page)
    used: dict[tuple[str, str], list[tuple[str, str, int]]] = defaultdict(list)
    for u in usage.usage:
        used[(u.dcd_code, u.version)].append(
            (u.organisation_id, names.get(u.organisation_id, u.organisation_id), u.registrations)
        )
    versions: dict[str, list[pb.CatalogueVersion]] = defaultdict(list)
    for v in listed.versions:
        versions[v.dcd_code].append(v)
    context.setdefault("errors", FormErrors())
    context.setdefault("problems", [])
    return page.render(
        "operator_catalogue.html",
        status=status,
        registries=listed.registries,
        versions=versions,
        used=used,
        version_states=STATES,
        **context,
    )


@router.get("")
async def catalogue(page: OperatorPage) -> Response:
    """Each registry's DCDs and versions (newest first) with their state, and which
    organisations have live registrations of each version; the import form."""
    return await catalogue_page(page)


async def _read_workbook(form: StreamedForm, part: Part) -> bytes:
    """The workbook's bytes; past :data:`MAX_WORKBOOK_BYTES` a 422 once the rest of the body
    (up to :data:`MAX_DRAINED_BYTES`) is read, so the browser gets the page rather than a
    cut connection."""
    data = bytearray()
    drained = 0
    async for chunk in part.chunks():
        if len(data) + len(chunk) <= MAX_WORKBOOK_BYTES:
            data += chunk
            continue
        drained += len(chunk)
        if drained > MAX_DRAINED_BYTES:
            break  # no more is read: the answer comes now, the connection may be cut
    if drained:
        if drained <= MAX_DRAINED_BYTES:
            await form.drain()
        raise Problem(422, "workbook-too-large", N_("The workbook is too large"))
    await form.drain()
    return bytes(data)


def workbook_problems(problem: Problem) -> list[WorkbookProblem]:
    return [
        WorkbookProblem(str(p.get("sheet", "")), p.get("row"), str(p.get("column") or ""), str(p["message"]))
        for p in problem.extra.get("problems", [])
        if isinstance(p, dict) and "message" in p
    ]


@router.post("/import")
async def import_workbook(request: Request, page: OperatorPage) -> Response:
    """A workbook imported as a draft, then its page with what changed; refused: the
    catalogue again with every problem by sheet, row and column.

    The body is read here as it arrives (the platform's body limit leaves this path to
    the page: ``OWN_BODY_LIMIT_PATHS``), so a workbook over :data:`MAX_WORKBOOK_BYTES` is
    refused as the page too, the error at the workbook field, never as problem+json."""
    try:
        form = StreamedForm(request, page)
        part = await form.next_file()  # the CSRF token checked before the file's first byte
        if part is None or part.name != "workbook" or not part.filename:
            await form.drain()
            raise Problem(422, "workbook-missing", N_("Choose the workbook to import."))
        data = await _read_workbook(form, part)
        answer = await registrations().ImportDcdWorkbook(
            pb.ImportDcdWorkbookRequest(workbook=data), metadata=page.metadata()
        )
    except (Problem, grpc.aio.AioRpcError) as exc:
        problem = problem_from_rpc_error(exc) if isinstance(exc, grpc.aio.AioRpcError) else exc
        if problem.slug == "csrf":
            raise problem from None  # the expired-form page, as every form's
        errors = form_errors(page, problem)  # raises what is no refusal
        problems = workbook_problems(problem)
        if problems:
            errors.fields["workbook"] = page._(
                "%(n)s problem(s) in the workbook: each is listed below by sheet, row and column.",
                n=len(problems),
            )
        else:
            errors.fields.setdefault("workbook", errors.detail or errors.title)
        return await catalogue_page(page, status=problem.status, errors=errors, problems=problems)
    if answer.created:
        await record_operator_action(
            page, action="catalogue.imported", target=f"{answer.dcd_code} {answer.version}"
        )
    query = urlencode({"imported": "1" if answer.created else "0"})
    return RedirectResponse(f"{HERE}/catalogue/{quote(answer.dcd_code)}/{quote(answer.version)}?{query}", 303)


def preview_states(d: dict[str, Any]) -> dict[str, FieldState]:
    """Every field shown, those always required marked so (the preview evaluates nothing:
    the operator is no member of an organisation)."""
    states: dict[str, FieldState] = {}
    for f in d["fields"]:
        names = f["repeat"]["flat_names"] if f["repeat"] else [f["technical_name"]]
        for name in names:
            states[name] = FieldState(relevant=True, required=f["required"] is True)
    return states


def semver(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (0,)


async def version_page(
    page: Page, dcd: str, version: str, compare: str = "", status: int = 200, errors: FormErrors | None = None
) -> Response:
    stub = registrations()
    d = await definition(page, dcd, version)  # 404 "DCD ... not found" for an unknown one
    listed = await stub.ListDcdVersions(pb.ListDcdVersionsRequest(), metadata=page.metadata())
    siblings = [v for v in listed.versions if v.dcd_code == dcd]  # newest first
    this = next(v for v in siblings if v.version == d["version"])
    version = this.version
    current = next((v.version for v in siblings if v.state == pb.DCD_VERSION_STATE_PUBLISHED), "")
    others = [v.version for v in siblings if v.version != version]
    # Against: the version asked for, else the current one, else the one just before.
    against = compare if compare in others else (current if current in others else "")
    if not against and others:
        against = next((o for o in others if semver(o) < semver(version)), others[0])
    difference = None
    invalidated: dict[str, dict[str, int]] = defaultdict(dict)
    names: dict[str, str] = {}
    if against:
        older, newer = sorted((against, version), key=semver)
        difference = await stub.CompareDcdVersions(
            pb.CompareDcdVersionsRequest(dcd_code=dcd, from_version=older, to_version=newer),
            metadata=page.metadata(),
        )
        for i in difference.invalidated:
            invalidated[i.organisation_id][i.status] = i.registrations
        if invalidated:
            names = await organisation_names(page)
    return page.render(
        "operator_dcd_version.html",
        status=status,
        this=this,
        current=current,
        others=others,
        against=against,
        difference=difference,
        invalidated=dict(invalidated),
        invalidated_statuses=INVALIDATED_STATUSES,
        statuses=status_words(page.lang),
        names=names,
        version_states=STATES,
        aspects=ASPECTS,
        kinds=KINDS,
        imported=page.request.query_params.get("imported"),
        moved=page.request.query_params.get("moved", ""),
        errors=errors or FormErrors(),
        values={},
        show_all=False,
        repeats={},
        states=preview_states(d),
        **form_context(page, d),
    )


@router.get("/{dcd}/{version}")
async def version(page: OperatorPage, dcd: str, version: str, compare: str = "") -> Response:
    """A version: its state and actions, its difference from another version (the current
    one unless ``compare`` names one) with what a major version invalidates, and its form
    as the data-entry pages render it, read-only."""
    return await version_page(page, dcd, version, compare)


@router.post("/{dcd}/{version}/state")
async def move(request: Request, page: OperatorPage, dcd: str, version: str) -> Response:
    """Publish or retire the version (registrations' rules: never the current one)."""
    form = await check_csrf(request, page)
    wanted = MOVES.get(form.get("state", ""))
    try:
        if wanted is None:
            raise Problem(422, "invalid", "The input is not valid")
        await registrations().SetDcdVersionState(
            pb.SetDcdVersionStateRequest(dcd=pb.DcdRef(dcd_code=dcd, version=version), state=wanted),
            metadata=page.metadata(),
        )
    except (Problem, grpc.aio.AioRpcError) as exc:
        errors = form_errors(page, exc)  # raises what is no refusal
        return await version_page(
            page, dcd, version, status=409 if errors.slug != "invalid" else 422, errors=errors
        )
    await record_operator_action(page, action=f"catalogue.{form['state']}", target=f"{dcd} {version}")
    return RedirectResponse(
        f"{HERE}/catalogue/{quote(dcd)}/{quote(version)}?{urlencode({'moved': form['state']})}", 303
    )
