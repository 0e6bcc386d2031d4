"""The Upload Center (members who may read the organisation's registrations; uploading and
changing settings: those who may write them). Past uploads with their outcome and who
sent them; a new upload (a CSV, optionally linked with a HIV sequence file) with this
upload's own settings and dry run, sent with a progress bar; an upload's four steps live
(server-sent events fed by the Upload Center's watch stream), counts, findings and its
reports; the settings per registry. Every rule is the Upload Center's: these pages call
``hdhub.uploads.v1`` with the person's token (docs/portal.md)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from hdhub.common.auth import POLICY, Action
from hdhub.common.errors import FieldProblem, Problem, forbidden, invalid, not_found
from hdhub.common.grpc import problem_from_rpc_error
from hdhub.common.multipart import Part
from hdhub.common.web import attachment
from hdhub.portal.deps import OrganisationPage
from hdhub.portal.pages.forms import FormErrors, form_errors
from hdhub.portal.pages.i18n import N_
from hdhub.portal.pages.owners import SENDING_SECONDS, WATCH_SECONDS, registrations, uploads
from hdhub.portal.pages.roles import ROLE_NAMES
from hdhub.portal.pages.sending import StreamedForm, messages
from hdhub.portal.pages.web import PREFIX, Page, PageRoute, check_csrf
from hdhub.proto.registrations.v1 import registrations_pb2 as reg_pb
from hdhub.proto.uploads.v1 import uploads_pb2 as pb

PAGE_SIZE = 25
STATUSES = {
    pb.UPLOAD_STATUS_QUEUED: ("info", N_("Queued")),
    pb.UPLOAD_STATUS_PROCESSING: ("info", N_("Processing")),
    pb.UPLOAD_STATUS_DONE: ("ok", N_("Done")),
    pb.UPLOAD_STATUS_FAILED: ("bad", N_("Failed")),
    pb.UPLOAD_STATUS_HELD: ("info", N_("Waiting for its linked upload")),
    pb.UPLOAD_STATUS_LINKED: ("ok", N_("Read with its linked upload")),
}
FINISHED = (pb.UPLOAD_STATUS_DONE, pb.UPLOAD_STATUS_FAILED, pb.UPLOAD_STATUS_LINKED)
STEPS = (
    ("select_file", N_("Select file")),
    ("validity_check", N_("Validity check")),
    ("upload", N_("Upload")),
    ("finalize", N_("Finalize")),
)
STEP_STATES = {
    pb.STEP_STATE_UNSPECIFIED: ("info", N_("Pending")),
    pb.STEP_STATE_PENDING: ("info", N_("Pending")),
    pb.STEP_STATE_RUNNING: ("info", N_("Running")),
    pb.STEP_STATE_SUCCESS: ("ok", N_("Success")),
    pb.STEP_STATE_WARNINGS: ("warn", N_("Warnings")),
    pb.STEP_STATE_ERRORS: ("bad", N_("Errors")),
}
#: The settings' choices, as the form offers them: (value, enum, name, explanation).
VALIDATIONS = (
    ("none", pb.VALIDATION_NONE, N_("None"), N_("Store the rows without errors; set the others aside.")),
    (
        "save_on_validations",
        pb.VALIDATION_SAVE_ON_VALIDATIONS,
        N_("Save on validations"),
        N_("Store every row, those with validation errors as drafts to correct."),
    ),
    (
        "validate_all",
        pb.VALIDATION_VALIDATE_ALL,
        N_("Validate all"),
        N_("Store nothing unless every row is valid."),
    ),
)
CONFLICT_MASTERS = (
    ("new", pb.CONFLICT_MASTER_NEW, N_("The new record"), N_("A row replaces the stored registration.")),
    ("stored", pb.CONFLICT_MASTER_STORED, N_("The stored record"), N_("The stored registration is kept.")),
)
YES_NO = (("yes", N_("Yes")), ("no", N_("No")))
#: The Upload Center's counts as the pages name them.
COUNTS = (
    ("rows_read", N_("Records read")),
    ("created", N_("Created")),
    ("updated", N_("Updated")),
    ("ignored_duplicate", N_("Duplicates ignored")),
    ("kept_stored", N_("Stored record kept")),
    ("rejected", N_("Rejected")),
    ("errors", N_("Errors")),
    ("warnings", N_("Warnings")),
)
REPORTS = {"errors": pb.REPORT_KIND_ERRORS, "success": pb.REPORT_KIND_SUCCESS}


def who_may(action: Action) -> list[str]:
    """The names of the roles whose policy holds ``action`` (hdhub.common.auth.POLICY)."""
    return [ROLE_NAMES[str(role)] for role, actions in POLICY.items() if action in actions]


def choice(options: tuple[tuple[str, Any, str, str], ...], value: str) -> Any:
    return next((enum for name, enum, _, _ in options if name == value), None)


def name_of(options: tuple[tuple[str, Any, str, str], ...], enum: int) -> str:
    return next((name for name, value, _, _ in options if value == enum), "")


def title_of(titles: Any, lang: str, fallback: str) -> str:
    return str(titles.get(lang) or titles.get("en") or fallback)


def _yes_no(value: str) -> bool | None:
    return {"yes": True, "no": False}.get(value)


def template_context() -> dict[str, Any]:
    return {
        "statuses": STATUSES,
        "steps": STEPS,
        "step_states": STEP_STATES,
        "validations": VALIDATIONS,
        "conflict_masters": CONFLICT_MASTERS,
        "counts": COUNTS,
        "finished": FINISHED,
        "pb": pb,
    }


def option_lists(page: Page) -> dict[str, list[tuple[str, str]]]:
    """The settings' choices as a form's selects offer them, in the person's language."""
    return {
        "validation": [(name, page._(words)) for name, _, words, _ in VALIDATIONS],
        "conflict_master": [(name, page._(words)) for name, _, words, _ in CONFLICT_MASTERS],
        "yes_no": [(name, page._(words)) for name, words in YES_NO],
    }


def sse(event: str, data: str) -> bytes:
    """One server-sent event; every line of ``data`` its own ``data:`` line."""
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {event}\n{lines}\n".encode()


router = APIRouter(prefix=f"{PREFIX}/o/{{organisation_id}}", route_class=PageRoute, include_in_schema=False)


async def _reader_page(page: OrganisationPage) -> Page:
    """The page of a member who may read the organisation's registrations (403 otherwise)."""
    if not page.can(Action.REGISTRATION_READ):  # the rule of the Upload Center's reads
        raise forbidden("Only members who may read this organisation's registrations use the Upload Center.")
    return page


ReaderPage = Annotated[Page, Depends(_reader_page)]


async def _sender_page(page: ReaderPage) -> Page:
    """The page of a member who may upload for the organisation (403 otherwise)."""
    if not page.can(Action.REGISTRATION_WRITE):  # the rule of uploading and of settings
        raise forbidden(
            "Only members who may register for this organisation upload files and change settings."
        )
    return page


SenderPage = Annotated[Page, Depends(_sender_page)]


async def catalogue(page: Page) -> list[reg_pb.Registry]:
    """The registries granted to the person: those it may upload for and set (the Upload
    Center refuses the others)."""
    answer = await registrations().ListRegistries(reg_pb.ListRegistriesRequest(), metadata=page.metadata())
    return [r for r in answer.registries if page.granted(r.code)]


async def upload_of(page: Page, organisation_id: str, upload_id: str) -> pb.Upload:
    answer = await uploads().GetUpload(
        pb.GetUploadRequest(id=upload_id, language=page.lang), metadata=page.metadata()
    )
    if answer.upload.organisation_id != organisation_id:  # the person's other organisation's
        raise not_found("Upload")
    return answer.upload


# --- the list of uploads --------------------------------------------------------


@router.get("/uploads")
async def list_uploads(
    organisation_id: str, page: ReaderPage, asked: Annotated[str, Query(alias="page")] = "1"
) -> Response:
    number = max(1, min(int(asked) if asked.isdigit() else 1, 10_000))
    answer = await uploads().ListUploads(
        pb.ListUploadsRequest(
            organisation_id=organisation_id,
            limit=PAGE_SIZE,
            offset=(number - 1) * PAGE_SIZE,
            language=page.lang,
        ),
        metadata=page.metadata(),
    )
    return page.render(
        "uploads.html",
        uploads=answer.uploads,
        total=answer.total,
        number=number,
        last=max(1, -(-answer.total // PAGE_SIZE)),
        **template_context(),
    )


# --- a new upload -----------------------------------------------------------------


async def new_form(page: Page, status: int = 200, **context: Any) -> Response:
    context.setdefault("errors", FormErrors())
    context.setdefault("form", {})
    return page.render(
        "upload_new.html",
        status=status,
        registries=await catalogue(page),
        idempotency_key=uuid.uuid4().hex,
        options=option_lists(page),
        **template_context(),
        **context,
    )


@router.get("/uploads/new")
async def new_upload(page: SenderPage, dcd: str = "") -> Response:
    return await new_form(page, form={"dcd": dcd})


async def send(page: Page, organisation_id: str, form: dict[str, str], part: Part, **extra: Any) -> pb.Upload:
    """The part, streamed to the Upload Center as it arrives (a 422 naming its field
    when the form is not complete)."""
    if not form.get("dcd"):
        raise invalid([FieldProblem("dcd", "required", "Choose the form the rows belong to.")])
    key = form.get("idempotency_key", "")
    header = pb.CreateUploadHeader(
        organisation_id=organisation_id,
        dcd_code=form["dcd"],
        version=form.get("version", ""),
        validation=choice(VALIDATIONS, form.get("validation", "")) or pb.VALIDATION_UNSPECIFIED,
        conflict_master=choice(CONFLICT_MASTERS, form.get("conflict_master", ""))
        or pb.CONFLICT_MASTER_UNSPECIFIED,
        dry_run=form.get("dry_run") == "yes",
        filename=part.filename or "",
        idempotency_key=f"{key}:{part.name}" if key else "",
        language=page.lang,
        **extra,
    )
    for setting in ("ignore_duplicates", "autosubmit"):
        chosen = _yes_no(form.get(setting, ""))
        if chosen is not None:
            setattr(header, setting, chosen)
    answer = await uploads().CreateUpload(
        messages(
            pb.CreateUploadRequest(header=header),
            part.chunks(),
            lambda data: pb.CreateUploadRequest(chunk=data),
        ),
        metadata=page.metadata(),
        timeout=SENDING_SECONDS,
    )
    return answer.upload


@router.post("/uploads/new")
async def create_upload(request: Request, organisation_id: str, page: SenderPage) -> Response:
    """The form's fields, then its files as they arrive: the HIV sequence file first
    (held), then the CSV, linked to it."""
    form = StreamedForm(request, page)
    held: pb.Upload | None = None
    created: pb.Upload | None = None
    sending = "file"
    try:
        while (part := await form.next_file()) is not None:
            if not part.filename:  # a file input left empty
                continue
            sending = part.name
            if part.name == "sequences":
                held = await send(page, organisation_id, form.fields, part, kind=pb.UPLOAD_KIND_SEQUENCES)
            elif part.name == "file":
                linked = held.id if held is not None else ""
                created = await send(page, organisation_id, form.fields, part, linked_upload_id=linked)
        if created is None:
            missing = [FieldProblem("file", "required", "Choose the CSV file to upload.")]
            if not form.fields.get("dcd"):
                missing.insert(0, FieldProblem("dcd", "required", "Choose the form the rows belong to."))
            raise invalid(missing)
    except Exception as exc:  # noqa: BLE001 - form_errors raises what is no refusal
        if isinstance(exc, Problem) and exc.slug == "csrf":
            raise
        errors = _unknown_form(page, exc, form.fields) or form_errors(page, exc)
        # The owner names the file's name `filename`: the page's field is the input sent.
        errors.fields = {sending if k == "filename" else k: v for k, v in errors.fields.items()}
        await form.drain()
        return await new_form(page, status=422, errors=errors, form=form.fields)
    return RedirectResponse(f"{PREFIX}/o/{organisation_id}/uploads/{created.id}", status_code=303)


def _unknown_form(page: Page, exc: Exception, fields: dict[str, str]) -> FormErrors | None:
    """A form or version the catalogue does not know (a typo in Version): said at the
    field, with the rest of what was filled in kept, not as a page of its own."""
    problem = problem_from_rpc_error(exc) if isinstance(exc, grpc.aio.AioRpcError) else exc
    if not isinstance(problem, Problem) or problem.slug != "not-found" or not fields.get("dcd"):
        return None
    if fields.get("version"):
        message = N_("This form has no such version: leave Version empty for the current one.")
        return FormErrors(page._("There is a problem"), fields={"version": page._(message)})
    return FormErrors(page._("There is a problem"), fields={"dcd": page._("Choose one of the forms listed.")})


# --- one upload: live steps, counts, reports -----------------------------------------


@router.get("/uploads/{upload_id}")
async def show_upload(organisation_id: str, upload_id: str, page: ReaderPage) -> Response:
    upload = await upload_of(page, organisation_id, upload_id)
    return page.render("upload.html", upload=upload, **template_context())


@router.get("/uploads/{upload_id}/events")
async def upload_events(organisation_id: str, upload_id: str, page: ReaderPage) -> Response:
    """The upload's progress panel as server-sent events (``progress``, then ``done``),
    fed by the Upload Center's watch stream; the browser's EventSource reconnects when
    the stream is renewed."""
    await upload_of(page, organisation_id, upload_id)  # refused before the stream starts
    call = uploads().WatchUpload(
        pb.WatchUploadRequest(id=upload_id, language=page.lang),
        metadata=page.metadata(),
        timeout=WATCH_SECONDS,
    )

    async def events() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        try:
            async for answer in call:
                html = page.html("partials/upload_progress.html", upload=answer.upload, **template_context())
                yield sse("progress", html)
                if answer.upload.status in FINISHED:
                    yield sse("done", "")
                    return
        except grpc.aio.AioRpcError:
            return  # renewed (its deadline) or gone: the browser asks again
        finally:
            call.cancel()

    return StreamingResponse(events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})


@router.get("/uploads/{upload_id}/reports/{kind}.csv")
async def upload_report(organisation_id: str, upload_id: str, kind: str, page: ReaderPage) -> Response:
    if kind not in REPORTS:
        raise not_found("Report")
    await upload_of(page, organisation_id, upload_id)
    call = uploads().GetUploadReport(
        pb.GetUploadReportRequest(id=upload_id, kind=REPORTS[kind]),
        metadata=page.metadata(),
        timeout=SENDING_SECONDS,
    )
    stream = aiter(call)
    first = await anext(stream)

    async def body() -> AsyncIterator[bytes]:
        try:
            yield first.chunk
            async for answer in stream:
                yield answer.chunk
        finally:
            call.cancel()

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": attachment(first.filename or f"{kind}.csv")},
    )


# --- settings per registry ---------------------------------------------------------


async def registry_settings(page: Page, organisation_id: str, code: str) -> pb.GetUploadSettingsResponse:
    answer: pb.GetUploadSettingsResponse = await uploads().GetUploadSettings(
        pb.GetUploadSettingsRequest(organisation_id=organisation_id, project_code=code),
        metadata=page.metadata(),
    )
    return answer


@router.get("/upload-settings")
async def settings_overview(organisation_id: str, page: ReaderPage) -> Response:
    registries = await catalogue(page)
    found = [(r, await registry_settings(page, organisation_id, r.code)) for r in registries]
    return page.render(
        "upload_settings.html",
        found=found,
        who_may=", ".join(page._(name) for name in who_may(Action.REGISTRATION_WRITE)),
        name_of=name_of,
        title_of=title_of,
        **template_context(),
    )


async def settings_form(
    page: Page, organisation_id: str, code: str, status: int = 200, **context: Any
) -> Response:
    registry = next((r for r in await catalogue(page) if r.code == code), None)
    if registry is None:
        raise not_found("Registry")
    if "form" not in context:
        current = (await registry_settings(page, organisation_id, code)).settings
        context["form"] = {
            "validation": name_of(VALIDATIONS, current.validation),
            "conflict_master": name_of(CONFLICT_MASTERS, current.conflict_master),
            "ignore_duplicates": "yes" if current.ignore_duplicates else "no",
            "autosubmit": "yes" if current.autosubmit else "no",
        }
    context.setdefault("errors", FormErrors())
    return page.render(
        "upload_settings_edit.html",
        status=status,
        registry=registry,
        options=option_lists(page),
        title_of=title_of,
        **template_context(),
        **context,
    )


@router.get("/upload-settings/{code}")
async def edit_settings(organisation_id: str, code: str, page: SenderPage) -> Response:
    return await settings_form(page, organisation_id, code)


@router.post("/upload-settings/{code}")
async def save_settings(request: Request, organisation_id: str, code: str, page: SenderPage) -> Response:
    form = await check_csrf(request, page)
    settings = pb.UploadSettings(
        conflict_mode="business_key",
        conflict_master=choice(CONFLICT_MASTERS, form.get("conflict_master", ""))
        or pb.CONFLICT_MASTER_UNSPECIFIED,
        validation=choice(VALIDATIONS, form.get("validation", "")) or pb.VALIDATION_UNSPECIFIED,
        ignore_duplicates=form.get("ignore_duplicates") == "yes",
        autosubmit=form.get("autosubmit") == "yes",
    )
    try:
        await uploads().UpdateUploadSettings(
            pb.UpdateUploadSettingsRequest(
                organisation_id=organisation_id, project_code=code, settings=settings
            ),
            metadata=page.metadata(),
        )
    except Exception as exc:  # noqa: BLE001
        return await settings_form(
            page, organisation_id, code, status=422, errors=form_errors(page, exc), form=form
        )
    return RedirectResponse(f"{PREFIX}/o/{organisation_id}/upload-settings?saved={code}", status_code=303)
