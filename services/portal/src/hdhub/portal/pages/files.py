"""Files (members who may read the organisation's registrations): the VCFs and HIV sequence
files received over SFTP or HTTP, their state, the check that refused them in words, the
registrations they are linked to, those still waiting for theirs; and the web upload for
laboratories without an SFTP client (sending: those who may write registrations), streamed
to intake over gRPC into the same path SFTP files take (docs/intake.md)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import grpc
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import RedirectResponse

from hdhub.common.auth import Action
from hdhub.common.errors import FieldProblem, Problem, forbidden, invalid, not_found
from hdhub.common.grpc import problem_from_rpc_error
from hdhub.portal.deps import OrganisationPage
from hdhub.portal.pages.forms import FormErrors, form_errors
from hdhub.portal.pages.i18n import N_
from hdhub.portal.pages.owners import SENDING_SECONDS, intake
from hdhub.portal.pages.sending import StreamedForm, messages
from hdhub.portal.pages.web import PREFIX, Page, PageRoute
from hdhub.proto.intake.v1 import intake_pb2 as pb

PAGE_SIZE = 50
REGISTRIES = (
    ("NGS", N_("NGS: a VCF (.vcf or .vcf.gz)")),
    ("HIV_SEQUENCE", N_("HIV_Sequence: a sequence file (ARL_yyyymmddHHMMSS.csv)")),
)
#: Each folder's registry (project code), as intake names them (hdhub.intake.domain.names).
PROJECT_CODES = {"NGS": "HDBP0257", "HIV_SEQUENCE": "HDBP0263"}
STATES = {
    "receiving": (pb.FILE_STATE_RECEIVING, "info", N_("Receiving")),
    "received": (pb.FILE_STATE_RECEIVED, "info", N_("Waiting to be moved to Finished")),
    "aborted": (pb.FILE_STATE_ABORTED, "bad", N_("Not received")),
    "accepted": (pb.FILE_STATE_ACCEPTED, "ok", N_("Accepted")),
    "rejected": (pb.FILE_STATE_REJECTED, "bad", N_("Refused")),
    "loaded": (pb.FILE_STATE_LOADED, "ok", N_("Loaded")),
    "linked": (pb.FILE_STATE_LINKED, "ok", N_("Linked to its registration")),
    "sent": (pb.FILE_STATE_SENT, "info", N_("Sent to healthdata.be")),
    "acknowledged": (pb.FILE_STATE_ACKNOWLEDGED, "ok", N_("Received by healthdata.be")),
}
STATE_OF = {number: (name, kind, words) for name, (number, kind, words) in STATES.items()}
#: The states a file is in once its checks passed.
PASSED = frozenset(STATES[s][0] for s in ("accepted", "loaded", "linked", "sent", "acknowledged"))
#: The states the filter offers: ``loaded`` (earlier releases' daily load) is no longer given.
FILTERED = {name: state for name, state in STATES.items() if name != "loaded"}
#: Why a file waits on its way to the central platform (intake's ``send_problem``).
SEND_PROBLEMS = {
    "registration-not-delivered": N_(
        "A registration naming it is not delivered to the central platform yet: the file follows it."
    ),
    "registration-gone": N_("A registration naming it no longer exists."),
    "registrations-unavailable": N_("The registrations service could not be reached; it is tried again."),
    "service-identity-unavailable": N_("hdhub's own identity could not be obtained; it is tried again."),
    "central-unavailable": N_("The central platform could not be reached; it is tried again."),
    "digest": N_("The central platform holds other bytes under this file: it is sent again."),
}
SOURCES = {"sftp": N_("SFTP"), "http": N_("Web upload")}
#: Each of intake's rules (its ``rule`` slugs, docs/intake.md) in words; intake's own
#: reason, which names the line, is shown beside it as it is (in English).
REASONS = {
    "file-name": N_(
        "The file's name is not allowed: it must be the name the registration gives, in ASCII letters, "
        "digits, '.', '_' and '-', with the registry's extension."
    ),
    "unknown-registry": N_("There is no such registry folder: the folders are NGS and HIV_SEQUENCE."),
    "too-large": N_("The file is larger than the platform accepts."),
    "empty-file": N_("The file is empty."),
    "connection-lost": N_("The transfer was cut before the whole file arrived; send it again."),
    "storage": N_("The file could not be stored on our side; send it again."),
    "out-of-order": N_("The transfer was resumed midway, which is not supported; send the whole file again."),
    "closed": N_("The file was written to after it was closed; send it again."),
    "encoding": N_("A line of the file is not UTF-8 text."),
    "line-too-long": N_("A line of the file is too long."),
    "vcf-format": N_("The file is not a valid VCF."),
    "vcf-patient-data": N_(
        "The VCF header carries patient information (a national register number, a name or a birth date): "
        "remove it and send the file again."
    ),
    "sequence-header": N_("The first line must be filename;recordname;genetic_sequence."),
    "sequence-columns": N_("A line does not hold exactly three values."),
    "sequence-filename": N_(
        "A filename is not ARL_yyyymmddHHMMSS with a real date and time, or differs from the first line's."
    ),
    "sequence-recordname": N_("A recordname is not the filename followed by _ and five digits."),
    "sequence-duplicate-recordname": N_("A recordname appears twice."),
    "sequence-letters": N_(
        "A genetic sequence holds a character other than the upper-case IUPAC nucleotide codes (ACGTURYSWKMBDHVN)."
    ),
    "sequence-missing": N_("A genetic sequence is empty."),
    "sequence-empty": N_("The file holds no sequence."),
    "sequence-file-name": N_("The file must be named after its filename column (filename.csv)."),
}
LINK_FIELDS = {
    "TX_VCF_FILE_NAME": N_("names this file"),
    "TX_ATT": N_("names this file (every record)"),
    "TX_ATT_RECRD": N_("names record %(recordname)s"),
}


def _state(value: str) -> pb.FileState.ValueType:
    return STATES[value][0] if value in STATES else pb.FILE_STATE_UNSPECIFIED


def refusal(page: Page, exc: Exception) -> FormErrors:
    """Intake's refusal of a sent file at the file field: the rule in words, in the person's
    language (intake's reason, in English, as the summary's detail)."""
    problem = problem_from_rpc_error(exc) if isinstance(exc, grpc.aio.AioRpcError) else exc
    if isinstance(problem, Problem) and problem.slug.startswith("file-"):
        rule = problem.slug.removeprefix("file-")
        detail = problem.errors[0].message if problem.errors else problem.detail or ""
        words = page._(REASONS[rule]) if rule in REASONS else page._(problem.title)
        return FormErrors(page._("The file is refused"), detail, {"file": words}, problem.slug)
    return form_errors(page, exc)


router = APIRouter(
    prefix=f"{PREFIX}/o/{{organisation_id}}/files", route_class=PageRoute, include_in_schema=False
)


async def _reader_page(page: OrganisationPage) -> Page:
    """The page of a member who may read the organisation's registrations (403 otherwise)."""
    if not page.can(Action.REGISTRATION_READ):  # intake's rule for reading files
        raise forbidden("Only members who may read this organisation's registrations see its files.")
    return page


ReaderPage = Annotated[Page, Depends(_reader_page)]


async def _sender_page(page: ReaderPage) -> Page:
    """The page of a member who may send files for the organisation (403 otherwise)."""
    if not page.can(Action.REGISTRATION_WRITE):  # intake's rule for sending files
        raise forbidden("Only members who may register for this organisation send files.")
    return page


SenderPage = Annotated[Page, Depends(_sender_page)]


def granted_folders(page: Page) -> list[tuple[str, str]]:
    """The registry folders granted to the person: the filter and the send form offer those
    only (intake lists no other's files and refuses sending into them)."""
    return [(folder, words) for folder, words in REGISTRIES if page.granted(PROJECT_CODES[folder])]


def context(**extra: Any) -> dict[str, Any]:
    """What the files' templates need besides the page's own."""
    return {
        "states": STATES,
        "state_of": STATE_OF,
        "passed": PASSED,
        "filtered_states": FILTERED,
        "send_problems": SEND_PROBLEMS,
        "sources": SOURCES,
        "reasons": REASONS,
        "link_fields": LINK_FIELDS,
        "registries": REGISTRIES,
        **extra,
    }


#: Late VCFs shown on the files page at most (the REST list has them all).
LATE_SHOWN = 20


async def late_vcfs(page: Page, organisation_id: str) -> pb.ListLateVcfsResponse | None:
    """NGS registrations whose VCF has not arrived in time (intake's ``ListLateVcfs``); None
    when intake cannot tell now (registrations unreachable): the page says so."""
    try:
        answer: pb.ListLateVcfsResponse = await intake().ListLateVcfs(
            pb.ListLateVcfsRequest(organisation_id=organisation_id, limit=LATE_SHOWN),
            metadata=page.metadata(),
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        return None
    return answer


@router.get("")
async def list_files(
    organisation_id: str,
    page: ReaderPage,
    state: str = "",
    registry: str = "",
    unmatched: str = "",
    asked: Annotated[str, Query(alias="page")] = "1",
) -> Response:
    filters = {
        "state": state if state in STATES else "",
        "registry": registry if registry in dict(REGISTRIES) else "",
        "unmatched": "1" if unmatched == "1" else "",
    }
    number = max(1, min(int(asked) if asked.isdigit() else 1, 10_000))
    answer = await intake().ListFiles(
        pb.ListFilesRequest(
            organisation_id=organisation_id,
            state=_state(filters["state"]),
            registry=filters["registry"],
            unmatched=bool(filters["unmatched"]),
            limit=PAGE_SIZE,
            offset=(number - 1) * PAGE_SIZE,
        ),
        metadata=page.metadata(),
    )
    base = f"{PREFIX}/o/{organisation_id}/files"
    kept = {k: v for k, v in filters.items() if v}

    def link(**changed: str) -> str:
        query = urlencode({k: v for k, v in {**kept, **changed}.items() if v})
        return base + ("?" + query if query else "")

    chips = [(name, value, link(**{name: ""})) for name, value in kept.items()]
    last = max(1, -(-answer.total // PAGE_SIZE))
    late = await late_vcfs(page, organisation_id)
    return page.render(
        "files.html",
        **context(
            registries=granted_folders(page),
            late=late,
            files=answer.files,
            total=answer.total,
            filters=filters,
            chips=chips,
            number=number,
            last=last,
            newer=link(page=str(number - 1)) if number > 1 else "",
            older=link(page=str(number + 1)) if number < last else "",
        ),
    )


@router.get("/new")
async def new_file(page: SenderPage) -> Response:
    return page.render(
        "file_new.html", **context(errors=FormErrors(), form={}, registries=granted_folders(page))
    )


@router.post("/new")
async def send_file(request: Request, organisation_id: str, page: SenderPage) -> Response:
    """The file streamed to intake as it arrives; delivered when the browser has sent it all."""
    form = StreamedForm(request, page)
    sent: pb.IntakeFile | None = None
    try:
        while (part := await form.next_file()) is not None:
            if part.name != "file" or not part.filename:
                continue
            registry = form.fields.get("registry", "")
            if registry not in dict(REGISTRIES):
                raise invalid([FieldProblem("registry", "required", "Choose the registry the file is for.")])
            header = pb.UploadFileHeader(
                organisation_id=organisation_id, registry=registry, filename=part.filename
            )
            answer = await intake().UploadFile(
                messages(
                    pb.UploadFileRequest(header=header),
                    part.chunks(),
                    lambda data: pb.UploadFileRequest(chunk=data),
                ),
                metadata=page.metadata(),
                timeout=SENDING_SECONDS,
            )
            sent = answer.file
        if sent is None:
            raise invalid([FieldProblem("file", "required", "Choose the file to send.")])
    except Exception as exc:  # noqa: BLE001 - refusal raises what is no refusal
        if isinstance(exc, Problem) and exc.slug == "csrf":
            raise
        errors = refusal(page, exc)
        await form.drain()
        return page.render(
            "file_new.html",
            status=422,
            **context(errors=errors, form=form.fields, registries=granted_folders(page)),
        )
    return RedirectResponse(f"{PREFIX}/o/{organisation_id}/files/{sent.id}?sent=1", status_code=303)


@router.get("/{file_id}")
async def show_file(organisation_id: str, file_id: str, page: ReaderPage) -> Response:
    answer = await intake().GetFile(
        pb.GetFileRequest(organisation_id=organisation_id, id=file_id), metadata=page.metadata()
    )
    if answer.file.organisation_id != organisation_id:
        raise not_found("File")
    return page.render("file.html", **context(file=answer.file))
