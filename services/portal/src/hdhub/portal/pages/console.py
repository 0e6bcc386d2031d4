"""The operator's console (issue 19): the installation at a glance. The overview puts every
organisation's health side by side, as counts and states only (the operator is no member
of the organisations and never sees a registration's values, names or SSINs); the
operations page lists parked deliveries with why and retries or archives an
organisation's with a reason (archived ones listed apart, and retried from there), and
the parked background jobs of the four services with a job queue, grouped by organisation,
kind and error type, a group retried or archived with a reason. Each owning service keeps
its counts incrementally and answers the operator alone (``OrganisationHealth``,
``ListParkedJobs``); the pages call them with the operator's token, together."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from hdhub.common.db import utcnow
from hdhub.common.errors import FieldProblem, forbidden, invalid
from hdhub.common.grpc import channel
from hdhub.portal.deps import CurrentPage, ServiceDep
from hdhub.portal.pages.console_audit import record_operator_action
from hdhub.portal.pages.forms import FormErrors, form_errors, identity, values
from hdhub.portal.pages.i18n import N_
from hdhub.portal.pages.web import PREFIX, Page, PageRoute, check_csrf
from hdhub.portal.store import Certificate
from hdhub.proto.identity.v1 import identity_pb2
from hdhub.proto.intake.v1 import intake_pb2, intake_pb2_grpc
from hdhub.proto.nippin.v1 import nippin_pb2, nippin_pb2_grpc
from hdhub.proto.registrations.v1 import registrations_pb2 as reg_pb
from hdhub.proto.registrations.v1 import registrations_pb2_grpc as reg_grpc
from hdhub.proto.uploads.v1 import uploads_pb2, uploads_pb2_grpc

HERE = f"{PREFIX}/operator"


@dataclass
class Health:
    """One organisation's line in the overview."""

    organisation_id: str
    name: str = ""
    members: int = 0
    registrations: int = 0
    registries: list[str] = field(default_factory=list)
    backlog: int = 0
    oldest_backlog_at: str = ""
    nok: int = 0
    parked: int = 0
    overdue: int = 0
    failed_uploads: int = 0
    refused_files: int = 0
    unmatched_files: int = 0
    nippin_errors: int = 0

    def problems(self) -> list[str]:
        """What is wrong, by the name its filter has."""
        return [name for name, (_label, measure) in PROBLEMS.items() if measure(self) > 0]


#: What can be wrong with an organisation: the filter's name, its label, its measure.
PROBLEMS: dict[str, tuple[str, Callable[[Health], int]]] = {
    "parked": (N_("Parked deliveries"), lambda h: h.parked),
    "overdue": (N_("Confirmations pending over 48 hours"), lambda h: h.overdue),
    "nok": (N_("NOK deliveries"), lambda h: h.nok),
    "uploads": (N_("Uploads failed in the last day"), lambda h: h.failed_uploads),
    "refused": (N_("Files refused"), lambda h: h.refused_files),
    "unmatched": (N_("Files unmatched"), lambda h: h.unmatched_files),
    "nippin": (N_("NIPPIN errors"), lambda h: h.nippin_errors),
}


def _by_name(h: Health) -> tuple[str, str]:
    """Organisations in the order people read them: by name, then id."""
    return ((h.name or h.organisation_id).casefold(), h.organisation_id)


#: The overview's sortable columns, each with its key (counts: the largest first; equal
#: counts by name).
SORTS: dict[str, Callable[[Health], Any]] = {
    "problems": lambda h: (-len(h.problems()), -h.parked, -h.overdue, -h.backlog, _by_name(h)),
    "organisation": _by_name,
    "members": lambda h: (-h.members, _by_name(h)),
    "registrations": lambda h: (-h.registrations, _by_name(h)),
    "backlog": lambda h: (-h.backlog, _by_name(h)),
    "oldest": lambda h: (h.oldest_backlog_at or "9999", _by_name(h)),
    **{name: (lambda m: lambda h: (-m(h), _by_name(h)))(measure) for name, (_l, measure) in PROBLEMS.items()},
}
#: Why a delivery was parked, in the pages' words.
PARKED_REASONS = {"no_confirmation": N_("No confirmation ten days after the first send")}
#: The services with a job queue, as the operations page names them.
JOB_SERVICES = {
    "registrations": N_("Registrations"),
    "uploads": N_("Upload Center"),
    "intake": N_("Files (SFTP and web)"),
    "nippin": N_("NIPPIN"),
}
#: Registrations' jobs retried and archived with their deliveries, never as jobs.
DELIVERY_JOB_KINDS = frozenset({"deliver", "deliver_batch", "confirm"})


@dataclass(frozen=True)
class JobGroup:
    """Parked (or archived) jobs of one service, organisation, kind and error type."""

    service: str
    organisation_id: str
    kind: str
    error_type: str
    jobs: int
    max_attempts: int
    oldest_at: str
    archived: bool

    @property
    def key(self) -> str:
        """What the form sends back: the organisation last (it may hold anything)."""
        return "|".join((self.service, self.kind, self.error_type, self.organisation_id))

    @property
    def with_deliveries(self) -> bool:
        return self.service == "registrations" and self.kind in DELIVERY_JOB_KINDS

    @property
    def actionable(self) -> bool:
        """Retried or archived from this page: of an organisation, and no delivery's job."""
        return bool(self.organisation_id) and not self.with_deliveries


def _group_of(key: str) -> tuple[str, str, str, str] | None:
    """(service, kind, error type, organisation) of a form's group, or None."""
    parts = key.split("|", 3)
    if len(parts) != 4 or parts[0] not in JOB_SERVICES or not parts[1] or not parts[3]:
        return None
    return parts[0], parts[1], parts[2], parts[3]


async def _operator_page(page: CurrentPage) -> Page:
    """The operator's page; anyone else is refused (the pages and the services alike)."""
    if not page.person.is_operator:
        raise forbidden("Only the operator sees the installation's console.")
    return page


OperatorPage = Annotated[Page, Depends(_operator_page)]

router = APIRouter(prefix=HERE, route_class=PageRoute, include_in_schema=False)


async def installation_organisations(page: Page) -> identity_pb2.ListInstallationOrganisationsResponse:
    """Every organisation with its title and member count (identity's, operator only)."""
    answer: identity_pb2.ListInstallationOrganisationsResponse = (
        await identity().ListInstallationOrganisations(
            identity_pb2.ListInstallationOrganisationsRequest(), metadata=page.metadata()
        )
    )
    return answer


async def organisation_names(page: Page) -> dict[str, str]:
    """Every organisation's title by id."""
    return {o.id: o.title for o in (await installation_organisations(page)).organisations}


async def installation_health(page: Page) -> list[Health]:
    """Every organisation identity or any owning service knows, named, with its counts
    (five calls at once)."""
    md = page.metadata()
    organisations, registrations, uploads, files, nippin = await asyncio.gather(
        installation_organisations(page),
        reg_grpc.RegistrationsServiceStub(channel("registrations")).OrganisationHealth(
            reg_pb.OrganisationHealthRequest(), metadata=md
        ),
        uploads_pb2_grpc.UploadsServiceStub(channel("uploads")).OrganisationHealth(
            uploads_pb2.OrganisationHealthRequest(), metadata=md
        ),
        intake_pb2_grpc.IntakeServiceStub(channel("intake")).OrganisationHealth(
            intake_pb2.OrganisationHealthRequest(), metadata=md
        ),
        nippin_pb2_grpc.NippinServiceStub(channel("nippin")).OrganisationHealth(
            nippin_pb2.OrganisationHealthRequest(), metadata=md
        ),
    )
    found = {
        o.id: Health(o.id, o.title, members=organisations.members.get(o.id, 0))
        for o in organisations.organisations
    }

    def of(organisation_id: str) -> Health:
        return found.setdefault(organisation_id, Health(organisation_id, organisation_id))

    for r in registrations.organisations:
        h = of(r.organisation_id)
        h.registrations, h.registries = r.registrations, list(r.registries)
        h.backlog, h.oldest_backlog_at = r.backlog, r.oldest_backlog_at
        h.nok, h.parked = r.deliveries.get("nok", 0), r.deliveries.get("parked", 0)
        h.overdue = r.confirmations_overdue
    for u in uploads.organisations:
        of(u.organisation_id).failed_uploads = u.counts.get("failed_last_day", 0)
    for f in files.organisations:
        h = of(f.organisation_id)
        h.refused_files, h.unmatched_files = f.counts.get("refused", 0), f.counts.get("unmatched", 0)
    for n in nippin.organisations:
        of(n.organisation_id).nippin_errors = n.counts.get("error", 0) + n.counts.get("invalid", 0)
    return list(found.values())


@router.get("")
async def overview(page: OperatorPage, problem: str = "", sort: str = "problems", q: str = "") -> Response:
    """Every organisation's health, what is wrong first; filter by a problem, search by
    name or id."""
    everyone = await installation_health(page)
    shown = [
        h
        for h in everyone
        if (problem not in PROBLEMS or problem in h.problems())
        and (not q.strip() or q.strip().casefold() in f"{h.organisation_id} {h.name}".casefold())
    ]
    sort = sort if sort in SORTS else "problems"
    shown.sort(key=SORTS[sort])
    totals = {name: sum(measure(h) for h in everyone) for name, (_l, measure) in PROBLEMS.items()}
    return page.render(
        "operator_overview.html",
        organisations=shown,
        everyone=len(everyone),
        problems=PROBLEMS,
        problem=problem if problem in PROBLEMS else "",
        totals=totals,
        sort=sort,
        q=q,
        link=lambda **change: f"{HERE}?{urlencode({'problem': problem, 'sort': sort, 'q': q, **change})}",
    )


def _jobs_stub(service: str) -> tuple[Any, Any]:
    """The stub and proto module of a service with a job queue (the same parked jobs'
    methods and messages in each)."""
    if service == "registrations":
        return reg_grpc.RegistrationsServiceStub(channel("registrations")), reg_pb
    if service == "uploads":
        return uploads_pb2_grpc.UploadsServiceStub(channel("uploads")), uploads_pb2
    if service == "intake":
        return intake_pb2_grpc.IntakeServiceStub(channel("intake")), intake_pb2
    return nippin_pb2_grpc.NippinServiceStub(channel("nippin")), nippin_pb2


async def job_groups(page: Page, organisation: str, archived: bool) -> list[JobGroup]:
    """The parked (or archived) job groups of the four services (four calls at once), by
    organisation, service, kind and error type."""

    async def of(service: str) -> list[JobGroup]:
        stub, pb = _jobs_stub(service)
        answer = await stub.ListParkedJobs(
            pb.ListParkedJobsRequest(organisation_id=organisation, archived=archived),
            metadata=page.metadata(),
        )
        return [
            JobGroup(
                service,
                g.organisation_id,
                g.kind,
                g.error_type,
                g.jobs,
                g.max_attempts,
                g.oldest_at,
                archived,
            )
            for g in answer.groups
        ]

    found = [g for groups in await asyncio.gather(*(of(s) for s in JOB_SERVICES)) for g in groups]
    return sorted(found, key=lambda g: (g.organisation_id, g.service, g.kind, g.error_type))


async def parked_page(
    page: Page, organisation: str, status: int = 200, archived: bool = False, **context: Any
) -> Response:
    stub = reg_grpc.RegistrationsServiceStub(channel("registrations"))
    answer, jobs, names = await asyncio.gather(
        stub.ListParkedDeliveries(
            reg_pb.ListParkedDeliveriesRequest(organisation_id=organisation, limit=200, archived=archived),
            metadata=page.metadata(),
        ),
        job_groups(page, organisation, archived),
        organisation_names(page),
    )
    context.setdefault("errors", None)
    context.setdefault("form", {})
    context.setdefault("failed", "")
    context.setdefault("chosen_group", "")
    return page.render(
        "operator_parked.html",
        names=names,
        status=status,
        selected=organisation,
        archived=archived,
        deliveries=answer.deliveries,
        total=answer.total,
        jobs=jobs,
        job_services=JOB_SERVICES,
        reasons=PARKED_REASONS,
        **context,
    )


@router.get("/deliveries")
async def parked_deliveries(page: OperatorPage, organisation: str = "", view: str = "") -> Response:
    """Parked deliveries (of one organisation, or all) with why, or the archived ones
    (``view=archived``); retry or archive an organisation's."""
    return await parked_page(page, organisation.strip(), archived=view == "archived")


def _where(organisation: str, archived: bool, **done: int) -> RedirectResponse:
    query = {"organisation": organisation, **({"view": "archived"} if archived else {}), **done}
    return RedirectResponse(f"{HERE}/deliveries?{urlencode(query)}", status_code=303)


@router.post("/deliveries/retry")
async def retry_parked(request: Request, page: OperatorPage) -> Response:
    form = values(await check_csrf(request, page), "organisation", "reason", "archived")
    archived = form["archived"] == "1"
    try:
        answer = await reg_grpc.RegistrationsServiceStub(channel("registrations")).RetryParkedDeliveries(
            reg_pb.RetryParkedDeliveriesRequest(
                organisation_id=form["organisation"], reason=form["reason"], archived=archived
            ),
            metadata=page.metadata(),
        )
    except Exception as exc:  # noqa: BLE001 - form_errors raises what is no refusal
        errors = form_errors(page, exc)
        return await parked_page(
            page,
            form["organisation"],
            status=422,
            archived=archived,
            errors=errors,
            form=form,
            failed="retry",
        )
    await record_operator_action(
        page,
        action="deliveries.retried_archived" if archived else "deliveries.retried",
        organisation_id=form["organisation"],
        reason=form["reason"],
        count=answer.retried,
    )
    return _where(form["organisation"], archived, retried=answer.retried)


@router.post("/deliveries/archive")
async def archive_parked(request: Request, page: OperatorPage) -> Response:
    """Set an organisation's parked deliveries aside (the ticked ones, or all), with a reason."""
    form = values(await check_csrf(request, page), "organisation", "reason")
    chosen = [str(v) for v in (await request.form()).getlist("registration") if str(v).strip()]
    try:
        answer = await reg_grpc.RegistrationsServiceStub(channel("registrations")).ArchiveParkedDeliveries(
            reg_pb.ArchiveParkedDeliveriesRequest(
                organisation_id=form["organisation"], reason=form["reason"], registration_ids=chosen
            ),
            metadata=page.metadata(),
        )
    except Exception as exc:  # noqa: BLE001 - form_errors raises what is no refusal
        errors = form_errors(page, exc)
        # The summary links to this form's reason, not the retry's.
        fields = {("archive-reason" if k == "reason" else k): v for k, v in errors.fields.items()}
        return await parked_page(
            page,
            form["organisation"],
            status=422,
            errors=replace(errors, fields=fields),
            form=form,
            failed="archive",
            chosen=chosen,
        )
    await record_operator_action(
        page,
        action="deliveries.archived",
        organisation_id=form["organisation"],
        target=f"{len(chosen)} chosen" if chosen else "",
        reason=form["reason"],
        count=answer.archived,
    )
    return _where(form["organisation"], False, archived_count=answer.archived)


@router.post("/jobs/retry")
async def retry_parked_jobs(request: Request, page: OperatorPage) -> Response:
    """Queue a group of parked (or archived) jobs again, with a reason."""
    return await _act_on_jobs(request, page, "retry")


@router.post("/jobs/archive")
async def archive_parked_jobs(request: Request, page: OperatorPage) -> Response:
    """Set a group of parked jobs aside, with a reason."""
    return await _act_on_jobs(request, page, "archive")


async def _act_on_jobs(request: Request, page: Page, action: str) -> Response:
    form = values(await check_csrf(request, page), "organisation", "group", "reason", "archived")
    archived = action == "retry" and form["archived"] == "1"
    group = _group_of(form["group"])
    try:
        if group is None:
            raise invalid([FieldProblem("parked-jobs", "required", "Choose a group of jobs.")])
        service, kind, error_type, organisation = group
        stub, pb = _jobs_stub(service)
        chosen = {
            "organisation_id": organisation,
            "kind": kind,
            "error_type": error_type,
            "reason": form["reason"],
        }
        if action == "retry":
            retried = await stub.RetryParkedJobs(
                pb.RetryParkedJobsRequest(**chosen, archived=archived), metadata=page.metadata()
            )
            done = {"jobs_retried": int(retried.retried)}
        else:
            answer = await stub.ArchiveParkedJobs(
                pb.ArchiveParkedJobsRequest(**chosen), metadata=page.metadata()
            )
            done = {"jobs_archived": int(answer.archived)}
    except Exception as exc:  # noqa: BLE001 - form_errors raises what is no refusal
        errors = form_errors(page, exc)
        # The summary links to this form's fields, not the deliveries' forms.
        fields = {
            ("jobs-reason" if k == "reason" else "parked-jobs" if k == "kind" else k): v
            for k, v in errors.fields.items()
        }
        return await parked_page(
            page,
            form["organisation"],
            status=422,
            archived=archived,
            errors=replace(errors, fields=fields),
            form=form,
            failed="jobs",
            chosen_group=form["group"],
        )
    retry = action == "retry"
    await record_operator_action(
        page,
        action=("jobs.retried_archived" if archived else "jobs.retried") if retry else "jobs.archived",
        organisation_id=organisation,
        target=f"{service} {kind} {error_type}",
        reason=form["reason"],
        count=next(iter(done.values())),
    )
    return _where(form["organisation"], archived, **done)


@dataclass(frozen=True)
class PublishedCertificate:
    organisation_id: str
    version: int
    published_at: datetime | None
    not_after: datetime
    days_left: int

    def state(self, window_days: int) -> str:
        if self.days_left < 0:
            return "expired"
        return "expiring" if self.days_left <= window_days else "valid"


@router.get("/certificates")
async def certificates(page: OperatorPage, service: ServiceDep, days: int | None = None) -> Response:
    """Every organisation's published certificate with its expiry, those expiring within
    the window (``certificate_window_days``, or ``days``) first; the portal keeps them."""
    window = days if days is not None and 0 < days <= 3650 else service.settings.certificate_window_days
    now = utcnow()
    async with service.db.system_session() as session:
        rows = (
            await session.execute(
                select(
                    Certificate.organisation_id,
                    Certificate.version,
                    Certificate.published_at,
                    Certificate.not_after,
                )
                .where(Certificate.published)
                .order_by(Certificate.not_after, Certificate.organisation_id)
            )
        ).all()
    found = [
        PublishedCertificate(org, version, published_at, not_after, (not_after - now) // timedelta(days=1))
        for org, version, published_at, not_after in rows
    ]
    soon = [c for c in found if c.days_left <= window]
    later = [c for c in found if c.days_left > window]
    return page.render("operator_certificates.html", soon=soon, later=later, window=window)


@router.get("/organisations/new")
async def onboard_form(page: OperatorPage) -> Response:
    """A new organisation with its first User Manager (identity's AppointFirstUserManager)."""
    return page.render("operator_onboard.html", form={}, errors=FormErrors())


@router.post("/organisations/new")
async def onboard(request: Request, page: OperatorPage) -> Response:
    form = values(
        await check_csrf(request, page), "title", "nihdi_number", "email", "first_name", "last_name"
    )
    try:
        answer = await identity().AppointFirstUserManager(
            identity_pb2.AppointFirstUserManagerRequest(**form), metadata=page.metadata()
        )
    except Exception as exc:  # noqa: BLE001 - form_errors raises what is no refusal
        return page.render("operator_onboard.html", status=422, form=form, errors=form_errors(page, exc))
    # The initial password is in this answer only: no redirect, so never in a URL or a later page.
    return page.render(
        "operator_onboarded.html",
        created=answer.organisation,
        manager=answer.user_manager,
        secret=answer.initial_password,
    )


@router.get("/requests")
async def stale_requests(page: OperatorPage, days: int = 7) -> Response:
    """Organisations whose account requests wait longer than ``days`` (a week): counts only;
    their User Managers decide them."""
    days = days if 0 < days <= 365 else 7
    answer = await identity().ListStaleAccountRequests(
        identity_pb2.ListStaleAccountRequestsRequest(older_than_days=days), metadata=page.metadata()
    )
    return page.render("operator_requests.html", organisations=answer.organisations, days=days)


@router.get("/audit")
async def installation_audit(page: OperatorPage, action: str = "", before_id: int = 0) -> Response:
    """The audit log across the installation, newest first, a page at a time."""
    answer = await identity().ListInstallationAudit(
        identity_pb2.ListInstallationAuditRequest(
            action=action.strip(), before_id=max(before_id, 0), page_size=50
        ),
        metadata=page.metadata(),
    )
    more = f"{HERE}/audit?{urlencode({'action': action, 'before_id': answer.next_before_id})}"
    return page.render(
        "operator_audit.html",
        entries=[(e, json.loads(e.details_json or "{}")) for e in answer.entries],
        action=action,
        next=more if answer.next_before_id else "",
        first=f"{HERE}/audit?{urlencode({'action': action})}" if before_id else "",
    )
