"""Data entry (members who may read the organisation's registrations; entering them: those
who may write them). The registries and forms the organisation takes part in; a form
rendered from its DCD, whose skip logic, required rules, constraints and calculations are
evaluated as the person types by registrations' one engine (``EvaluateForm``); save as
draft, submit, reopen, delete as the lifecycle allows, at the version the person read; a
registration's page with its values, history and delivery. Every rule is registrations':
these pages call ``hdhub.registrations.v1`` with the person's token (docs/portal.md)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, cast
from urllib.parse import parse_qsl

import grpc
import orjson
from fastapi import APIRouter, Depends, Request, Response, WebSocket
from fastapi.responses import RedirectResponse
from opentelemetry import trace
from opentelemetry.context import Context
from starlette.datastructures import FormData, UploadFile
from starlette.websockets import WebSocketDisconnect

from hdhub.common.auth import Action
from hdhub.common.config import platform
from hdhub.common.errors import Problem, forbidden, not_found
from hdhub.common.grpc import problem_from_rpc_error
from hdhub.common.limits import MAX_WEBSOCKET_MESSAGE_BYTES
from hdhub.common.telemetry import stream_message_span
from hdhub.portal.deps import OrganisationPage, ServiceDep
from hdhub.portal.pages.forms import FormErrors, form_errors
from hdhub.portal.pages.i18n import N_, translations
from hdhub.portal.pages.owners import registrations
from hdhub.portal.pages.web import (
    PREFIX,
    Page,
    PageRoute,
    SignInRequired,
    check_csrf,
    current_page,
    portal_origin,
    verify_csrf,
)
from hdhub.proto.registrations.v1 import registrations_pb2 as pb

if TYPE_CHECKING:
    from hdhub.portal.runtime import PortalService

log = logging.getLogger(__name__)

router = APIRouter(prefix=f"{PREFIX}/o/{{organisation_id}}", route_class=PageRoute, include_in_schema=False)

#: A status's badge kind; its words are :func:`status_words` (the API's status names).
STATUSES = {
    "open": "info",
    "sending": "info",
    "submitted": "ok",
    "corrections_needed": "warn",
    "approved": "ok",
    "follow_up_needed": "warn",
    "error": "bad",
    "deleted": "bad",
}


def status_words(lang: str) -> dict[str, tuple[str, str]]:
    """Each status's badge kind and words in ``lang`` (a context of their own: "Open" the
    status is not "Open" the verb)."""
    t = translations(lang)
    words: dict[str, object] = {
        "open": t.pgettext("status", "Open"),
        "sending": t.pgettext("status", "Sending"),
        "submitted": t.pgettext("status", "Submitted"),
        "corrections_needed": t.pgettext("status", "Corrections needed"),
        "approved": t.pgettext("status", "Approved"),
        "follow_up_needed": t.pgettext("status", "Follow-up needed"),
        "error": t.pgettext("status", "Error"),
        "deleted": t.pgettext("status", "Deleted"),
    }
    return {status: (kind, str(words[status])) for status, kind in STATUSES.items()}


CONFIRMATIONS = {
    "sending": ("info", N_("Not sent yet")),
    "pending": ("info", N_("Pending")),
    "ok": ("ok", N_("OK")),
    "nok": ("bad", N_("NOK")),
    "parked": ("bad", N_("Parked")),
}
#: Delivery's reasons (slugs) in words.
REASONS = {
    "no-published-certificate": N_("The organisation has no published certificate."),
    "certificate-expired": N_("The organisation's certificate has expired."),
    "certificate-unavailable": N_("The organisation's certificate could not be read."),
    "certificate-unusable": N_("The organisation's certificate cannot be used."),
    "central-key-unavailable": N_("The central platform's key could not be fetched."),
    "central-key-unset": N_("The central platform's key is not configured."),
    "central-unavailable": N_("The central platform could not be reached."),
    "pseudonymisation-unavailable": N_("The pseudonymisation service could not be reached."),
    "service-identity-unavailable": N_("hdhub's own identity could not be obtained."),
}
#: The words the platform itself writes into a registration's history, translated where shown.
HISTORY_WORDS = (N_("central platform"), N_("Arrival confirmed by the central platform"))
ACTIONS = {
    "create": N_("Created"),
    "save": N_("Saved"),
    "submit": N_("Submitted"),
    "resubmit": N_("Submitted again"),
    "processed": N_("Sent to the central platform"),
    "reopen": N_("Reopened"),
    "delete": N_("Deleted"),
    "request_corrections": N_("Corrections requested"),
    "approve": N_("Approved"),
    "request_follow_up": N_("Follow-up requested"),
    "central_corrections_needed": N_("Corrections asked by the central platform"),
    "central_approved": N_("Approved by the central platform"),
    "central_follow_up_needed": N_("Follow-up asked by the central platform"),
    "central_error": N_("Refused by the central platform"),
    "report_error": N_("Error reported by the central platform"),
    "confirmation_pending": N_("Arrival not confirmed yet"),
    "confirmation_ok": N_("Arrival confirmed"),
    "confirmation_nok": N_("Arrival not confirmed"),
    "delivery_parked": N_("Resends stopped (parked)"),
    "delivery_retried": N_("Resends started again by an operator"),
    "delivery_archived": N_("Set aside by an operator"),
}
#: What each of the central platform's decisions means for the data provider.
DECISION_MEANINGS = {
    "corrections_needed": N_(
        "The central platform found problems in this registration. Correct the fields it names "
        "and submit it again; it then goes back to the central platform."
    ),
    "approved": N_("The central platform accepted this registration. Nothing more is needed."),
    "follow_up_needed": N_(
        "The central platform accepted this registration and asks for a follow-up registration "
        "by its due date; it is listed with the organisation's follow-ups."
    ),
    "error": N_(
        "The central platform could not accept this registration: the organisation is not "
        "authorised for this registry. Contact healthdata.be; once it is authorised, submit the "
        "registration again (its values need no correction for this)."
    ),
}
EDITABLE = frozenset({"open", "corrections_needed", "follow_up_needed", "error"})
DELETABLE = frozenset({"open", "corrections_needed"})
REOPENABLE = frozenset({"submitted"})
FINAL_DELIVERY = frozenset({"ok", "parked"})
#: Radio buttons up to this many choices, a list beyond.
RADIO_MAX = 6
ACT = {
    "submit": pb.REGISTRATION_ACTION_SUBMIT,
    "reopen": pb.REGISTRATION_ACTION_REOPEN,
    "delete": pb.REGISTRATION_ACTION_DELETE,
}

#: A decimal as the engine gives it (a point), shown with a comma in nl, fr and de.
DECIMAL = re.compile(r"-?[0-9]+\.[0-9]+")

_definitions: dict[tuple[str, str], dict[str, Any]] = {}


async def _reader_page(page: OrganisationPage) -> Page:
    if not page.can(Action.REGISTRATION_READ):
        raise forbidden("Only members who may read this organisation's registrations see them.")
    return page


ReaderPage = Annotated[Page, Depends(_reader_page)]


async def _writer_page(page: ReaderPage) -> Page:
    if not page.can(Action.REGISTRATION_WRITE):
        raise forbidden("Only members who may register for this organisation enter registrations.")
    return page


WriterPage = Annotated[Page, Depends(_writer_page)]


def text_of(texts: Any, lang: str, fallback: str = "") -> str:
    return str(texts.get(lang) or texts.get("en") or next(iter(texts.values()), "") or fallback)


async def definition(page: Page, code: str, version: str) -> dict[str, Any]:
    """A DCD version's definition (immutable once imported: kept once fetched), with
    ``latest`` from the owner each time."""
    answer = await registrations().GetDcdDefinition(
        pb.GetDcdDefinitionRequest(dcd=pb.DcdRef(dcd_code=code, version=version)), metadata=page.metadata()
    )
    d: dict[str, Any] = json.loads(answer.definition_json)
    d["latest"] = answer.latest
    _definitions[(code, d["version"])] = d
    return d


async def kept_definition(page: Page, code: str, version: str) -> dict[str, Any]:
    """The definition as kept once fetched (``latest`` as it was then): for evaluating a
    form, which needs the fields, not whether the version is still the newest."""
    return _definitions.get((code, version)) or await definition(page, code, version)


def input_fields(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in d["fields"] if f["type"] != "note"]


def computed(f: dict[str, Any]) -> bool:
    return bool(f["type"] == "calculate" or f["read_only"] or f["calculation"])


def flat_names(f: dict[str, Any]) -> list[str]:
    return list(f["repeat"]["flat_names"]) if f["repeat"] else [f["technical_name"]]


def typed_values(d: dict[str, Any], form: FormData) -> dict[str, Any]:
    """The person's values as the engine reads a CSV row: texts, codes (a list for a
    multiple choice), a decimal comma read as the point; computed fields left out."""
    values: dict[str, Any] = {}
    for f in input_fields(d):
        if computed(f):
            continue
        for name in flat_names(f):
            if f["type"] == "select_multiple":
                chosen = [str(v) for v in form.getlist(name) if str(v)]
                if chosen:
                    values[name] = chosen
                continue
            raw = form.get(name)
            text = raw.strip() if isinstance(raw, str) else ""
            if not text:
                continue
            if f["type"] == "decimal" and "," in text and "." not in text:
                text = text.replace(",", ".")
            values[name] = text
    return values


def shown_values(d: dict[str, Any], stored: dict[str, Any], lang: str) -> dict[str, Any]:
    """Stored canonical values as the form's inputs show them (dd/mm/yyyy, a decimal comma
    in nl, fr and de)."""
    comma = lang != "en"
    shown: dict[str, Any] = {}
    for f in input_fields(d):
        for name in flat_names(f):
            value = stored.get(name)
            if value is None:
                continue
            kind = f["type"]
            if kind == "select_multiple":
                shown[name] = [str(v) for v in value] if isinstance(value, list) else str(value).split("|")
            elif kind == "date" and isinstance(value, str) and len(value) == 10 and value[4] == "-":
                shown[name] = f"{value[8:10]}/{value[5:7]}/{value[:4]}"
            elif kind == "datetime" and isinstance(value, str) and "T" in value:
                day, time = value.split("T", 1)
                shown[name] = f"{day[8:10]}/{day[5:7]}/{day[:4]} {time[:5]}"
            elif kind == "decimal" or (computed(f) and DECIMAL.fullmatch(str(value))):
                shown[name] = str(value).replace(".", ",") if comma else str(value)
            else:
                shown[name] = str(value)
    return shown


def posted_values(d: dict[str, Any], form: FormData) -> dict[str, Any]:
    """What the person typed, as the form shows it again (nothing typed is lost)."""
    shown: dict[str, Any] = {}
    for f in input_fields(d):
        for name in flat_names(f):
            if f["type"] == "select_multiple":
                shown[name] = [str(v) for v in form.getlist(name)]
            elif isinstance(form.get(name), str):
                shown[name] = str(form.get(name))
    return shown


@dataclass
class FieldState:
    relevant: bool = True
    required: bool = False
    value: str = ""
    errors: list[str] = field(default_factory=list)


@dataclass
class Evaluated:
    fields: dict[str, FieldState]
    errors: list[tuple[str, str]]


def evaluate_request(
    page: Page, organisation_id: str, d: dict[str, Any], values: dict[str, Any]
) -> pb.EvaluateFormRequest:
    return pb.EvaluateFormRequest(
        organisation_id=organisation_id,
        dcd=pb.DcdRef(dcd_code=d["dcd_code"], version=d["version"]),
        values_json=orjson.dumps(values).decode(),
        language=page.lang,
    )


async def evaluate(page: Page, organisation_id: str, d: dict[str, Any], values: dict[str, Any]) -> Evaluated:
    answer = await registrations().EvaluateForm(
        evaluate_request(page, organisation_id, d, values), metadata=page.metadata()
    )
    return evaluated(page, answer)


def evaluated(page: Page, answer: pb.EvaluateFormResponse) -> Evaluated:
    """Every field's state, at every change: kept lean (orjson, no list for a field
    without errors), as it runs at every keystroke's pause."""
    comma = page.lang != "en"
    states: dict[str, FieldState] = {}
    for s in answer.fields:
        value = ""
        if value_json := s.value_json:
            try:
                value = str(orjson.loads(value_json))
            except orjson.JSONDecodeError:  # an integer past 64 bits, a NaN: json reads them
                value = str(json.loads(value_json))
            if comma and DECIMAL.fullmatch(value):
                value = value.replace(".", ",")
        errors = s.errors
        states[s.field] = FieldState(
            s.relevant, s.required, value, [e.message for e in errors] if errors else []
        )
    return Evaluated(states, [(e.field, e.message) for e in answer.errors])


class LiveEvaluation:
    """A live form's ``EvaluateFormStream`` to registrations: each change one message on
    it, no call set-up (a message costs a fraction of an ``EvaluateForm`` call). Opened at
    the first change, in the connection's trace; opened again when it ended (its
    deadline, registrations restarted) and after the session is read again (its token).
    Each message is a client span of the change's trace, carried in the message."""

    #: An open stream's deadline: it is opened again after, at the next change.
    SECONDS = 300.0

    def __init__(self, connection: trace.Span) -> None:
        self.connection = connection
        self.call: Any = None

    async def __aenter__(self) -> LiveEvaluation:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def evaluate(self, page: Page, request: pb.EvaluateFormRequest) -> pb.EvaluateFormResponse:
        for attempt in (1, 2):
            if self.call is None:
                with trace.use_span(self.connection, end_on_exit=False):
                    self.call = registrations().EvaluateFormStream(
                        metadata=page.metadata(), timeout=self.SECONDS
                    )
            try:
                with stream_message_span(EVALUATE_STREAM, trace.SpanKind.CLIENT) as carrier:
                    request.trace_context.update(carrier)
                    # Each message within the deadline a call would have.
                    async with asyncio.timeout(platform().grpc_timeout_seconds):
                        await self.call.write(request)
                        answer = await self.call.read()
            except TimeoutError:  # registrations did not answer: the stream is given up
                self.call.cancel()
                self.call = None
                raise Problem(504, "registrations-timeout", "The form could not be checked in time") from None
            except grpc.aio.AioRpcError as exc:  # the stream ended with it
                self.call = None
                if attempt == 2 or exc.code() not in _STREAM_ENDED:
                    raise
                continue
            except asyncio.InvalidStateError:  # it had ended well: its deadline, say
                self.call = None
                continue
            if answer is grpc.aio.EOF:  # registrations ended it (a restart draining)
                self.call = None
                continue
            return cast(pb.EvaluateFormResponse, answer)
        raise Problem(503, "registrations-unavailable", "The form cannot be checked now")

    async def close(self) -> None:
        """The stream ended as a call ends (its spans too): no more changes, then its
        end read; cancelled when that cannot be done in a moment."""
        call, self.call = self.call, None
        if call is None:
            return
        try:
            await call.done_writing()
            async with asyncio.timeout(CLOSE_SECONDS):
                while await call.read() is not grpc.aio.EOF:
                    pass
        except Exception:  # it had ended, or will not end in time: nothing waits for it
            call.cancel()
        except BaseException:  # the connection's task cancelled
            call.cancel()
            raise


#: How long an open stream gets to end when the form closes (then it is cancelled).
CLOSE_SECONDS = 2.0


#: Codes with which an open stream ends without the change being at fault: opened again.
_STREAM_ENDED = frozenset(
    {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
)
EVALUATE_STREAM = "hdhub.registrations.v1.RegistrationsService/EvaluateFormStream"


def state_json(evaluated: Evaluated) -> dict[str, Any]:
    return {
        "fields": {
            name: {"relevant": s.relevant, "required": s.required, "value": s.value, "errors": s.errors}
            for name, s in evaluated.fields.items()
        }
    }


def repeat_shown(d: dict[str, Any], values: dict[str, Any]) -> dict[str, int]:
    """How many instances of each repeat the form shows: up to the last one with a value,
    at least one."""
    shown: dict[str, int] = {}
    for f in input_fields(d):
        if not f["repeat"]:
            continue
        name = f["repeat"]["name"]
        for i, flat in enumerate(f["repeat"]["flat_names"], start=1):
            if values.get(flat) not in (None, "", []):
                shown[name] = max(shown.get(name, 1), i)
        shown.setdefault(name, 1)
    return shown


def form_context(page: Page, d: dict[str, Any]) -> dict[str, Any]:
    lang = page.lang
    default = d.get("default_language", "en")

    def label(texts: Any, fallback: str) -> str:
        return str(texts.get(lang) or texts.get(default) or texts.get("en") or fallback)

    def choices(list_name: str | None) -> list[tuple[str, str]]:
        if not list_name or list_name not in d["codelists"]:
            return []
        return [(c["code"], label(c["labels"], c["code"])) for c in d["codelists"][list_name]["choices"]]

    names = {
        name: label(f["labels"], f["technical_name"]) + (f" ({i})" if f["repeat"] else "")
        for f in input_fields(d)
        for i, name in enumerate(flat_names(f), start=1)
    }
    return {
        "d": d,
        "label": label,
        "choices": choices,
        "radio_max": RADIO_MAX,
        "computed": computed,
        # A problem names its field by the label people see, not its technical name.
        "field_labels": names,
    }


async def render_form(
    page: Page,
    organisation_id: str,
    d: dict[str, Any],
    shown: dict[str, Any],
    evaluated: Evaluated,
    *,
    status: int = 200,
    reg: pb.Registration | None = None,
    errors: FormErrors | None = None,
    show_all: bool = False,
    expected_version: int = 0,
    found: pb.GetRegistrationHistoryResponse | None = None,
) -> Response:
    o = f"{PREFIX}/o/{organisation_id}"
    concerned = concerned_fields(page, d, found) if found is not None else []
    if errors is None:
        errors = FormErrors()
    if show_all and evaluated.errors and not errors:
        errors = FormErrors(page._("There is a problem"), fields={})
    if show_all:
        for name, message in evaluated.errors:
            errors.fields.setdefault(name, message)
    return page.render(
        "entry_form.html",
        status=status,
        values=shown,
        states=evaluated.fields,
        errors=errors,
        show_all=show_all,
        reg=reg,
        expected_version=expected_version,
        repeats=repeat_shown(d, shown),
        evaluate_url=f"{o}/forms/{d['dcd_code']}/{d['version']}/evaluate",
        action=f"{o}/registrations/{reg.id}/edit" if reg else f"{o}/registrations/new",
        decision=found.decision if found is not None and found.HasField("decision") else None,
        concerned_fields=concerned,
        concerned=[name for name, _ in concerned],
        **form_context(page, d),
    )


# --- the registry menu ---------------------------------------------------------------


@router.get("/registries")
async def registry_menu(organisation_id: str, page: ReaderPage) -> Response:  # noqa: ARG001 - the path's
    """The registries granted to the person and their forms, each form's versions newest
    first (the newest marked), with a link to enter a registration of each."""
    answer = await registrations().ListRegistries(pb.ListRegistriesRequest(), metadata=page.metadata())
    granted = [r for r in answer.registries if page.granted(r.code)]
    return page.render("registries.html", registries=granted, text_of=text_of)


# --- a new registration, and editing one ------------------------------------------------


@router.get("/registrations/new")
async def new_registration(
    organisation_id: str, page: WriterPage, dcd: str = "", version: str = ""
) -> Response:
    if not dcd:
        raise not_found("Form")
    d = await definition(page, dcd, version)
    return await render_form(page, organisation_id, d, {}, await evaluate(page, organisation_id, d, {}))


async def registration_of(
    page: Page, organisation_id: str, registration_id: str
) -> pb.GetRegistrationHistoryResponse:
    """A registration of this organisation, with its history; 404 for any other (the
    person's other organisation's included)."""
    answer: pb.GetRegistrationHistoryResponse = await registrations().GetRegistrationHistory(
        pb.GetRegistrationHistoryRequest(id=registration_id), metadata=page.metadata()
    )
    if answer.registration.organisation_id != organisation_id:
        raise not_found("Registration")
    return answer


@router.get("/registrations/{registration_id}/edit")
async def edit_registration(organisation_id: str, registration_id: str, page: WriterPage) -> Response:
    found = await registration_of(page, organisation_id, registration_id)
    reg = found.registration
    if reg.status not in EDITABLE:
        return RedirectResponse(f"{PREFIX}/o/{organisation_id}/registrations/{reg.id}", status_code=303)
    d = await definition(page, reg.dcd_code, reg.dcd_version)
    stored = json.loads(reg.values_json)
    shown = shown_values(d, stored, page.lang)
    evaluated = await evaluate(page, organisation_id, d, stored)
    return await render_form(
        page, organisation_id, d, shown, evaluated, reg=reg, expected_version=reg.version, found=found
    )


async def save(request: Request, organisation_id: str, page: Page, registration_id: str | None) -> Response:
    form_data = await request.form()
    form = {k: v for k, v in form_data.items() if isinstance(v, str)}
    verify_csrf(request, page, form.get("csrf_token", ""))
    reg: pb.Registration | None = None
    found: pb.GetRegistrationHistoryResponse | None = None
    if registration_id:
        found = await registration_of(page, organisation_id, registration_id)
        reg = found.registration
        d = await definition(page, reg.dcd_code, reg.dcd_version)
    else:
        d = await definition(page, form.get("_dcd", ""), form.get("_dcd_version", ""))
    submit = form.get("_action") == "submit"
    values = typed_values(d, form_data)
    expected = int(form.get("_version", "0") or 0) if form.get("_version", "0").isdigit() else 0
    try:
        answer = await registrations().SaveRegistration(
            pb.SaveRegistrationRequest(
                organisation_id=organisation_id,
                dcd=pb.DcdRef(dcd_code=d["dcd_code"], version=d["version"]),
                registration_id=registration_id or "",
                expected_version=expected,
                values_json=json.dumps(values),
                language=page.lang,
                submit=submit,
            ),
            metadata=page.metadata(),
        )
    except Exception as exc:  # noqa: BLE001 - form_errors raises what is no refusal
        errors = form_errors(page, exc)
        if errors.slug == "stale-version" and reg is not None:
            current = (await registration_of(page, organisation_id, reg.id)).registration
            errors = FormErrors(
                page._("Someone else changed this registration while you were editing it"),
                page._(
                    "It is now at version %(version)s. Your values are kept below: look at the "
                    "registration's page to see what changed, and save again to replace it with yours.",
                    version=current.version,
                ),
                slug="stale-version",
            )
            expected = current.version
        evaluated = await evaluate(page, organisation_id, d, values)
        return await render_form(
            page,
            organisation_id,
            d,
            posted_values(d, form_data),
            evaluated,
            status=409 if errors.slug == "stale-version" else 422,
            reg=reg,
            errors=errors,
            show_all=errors.slug != "stale-version",  # the conflict alone, said first
            expected_version=expected,
            found=found,
        )
    done = "submitted" if submit else "saved"
    return RedirectResponse(
        f"{PREFIX}/o/{organisation_id}/registrations/{answer.registration.id}?done={done}", status_code=303
    )


@router.post("/registrations/new")
async def create_registration(request: Request, organisation_id: str, page: WriterPage) -> Response:
    return await save(request, organisation_id, page, None)


@router.post("/registrations/{registration_id}/edit")
async def update_registration(
    request: Request, organisation_id: str, registration_id: str, page: WriterPage
) -> Response:
    return await save(request, organisation_id, page, registration_id)


@router.post("/forms/{dcd}/{version}/evaluate")
async def evaluate_form(
    request: Request, organisation_id: str, dcd: str, version: str, page: WriterPage
) -> Response:
    """The form's state after a change (JSON for static/portal.js): per field whether it
    applies, whether it is required, its computed value and its errors, from the engine."""
    form_data = await request.form()
    verify_csrf(request, page, str(form_data.get("csrf_token", "")))
    d = await kept_definition(page, dcd, version)
    evaluated = await evaluate(page, organisation_id, d, typed_values(d, form_data))
    return Response(
        orjson.dumps(state_json(evaluated)),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


# --- the form's live connection ------------------------------------------------------------

#: Close codes (docs/portal.md): signed out (or the session ended), and refused (another
#: origin, not a member of the organisation, no right to enter registrations, a wrong CSRF
#: token). A handshake is refused before it is accepted: uvicorn answers it HTTP 403 either
#: way (its answer with a 401 of ours logs an error), and the browser falls back to the POST.
LIVE_SIGNED_OUT = 4401
LIVE_FORBIDDEN = 4403
#: A message that is not ``{"seq": <integer>, "form": "<URL-encoded form>"}`` (RFC 6455's
#: "invalid frame payload data"), and one over the size limit ("message too big").
LIVE_INVALID = 1007
LIVE_TOO_BIG = 1009
#: A form's inputs, at most (Starlette's limit for a POSTed form).
LIVE_MAX_FIELDS = 1000

_tracer = trace.get_tracer("hdhub.portal.live")


async def live_page(websocket: WebSocket, service: PortalService, organisation_id: str) -> Page | int:
    """The person's page as the POST route's :data:`WriterPage` has it (the same session
    read, membership and rights), or the close code refusing them."""
    try:
        page = await current_page(websocket, service, organisation_id=organisation_id)
        return await _writer_page(await _reader_page(page))
    except SignInRequired:
        return LIVE_SIGNED_OUT
    except Problem as exc:
        return LIVE_SIGNED_OUT if exc.status == 401 else LIVE_FORBIDDEN


def live_message(text: str) -> tuple[int, str, FormData] | None:
    """A message's sequence number, CSRF token and form, or None when it is no message."""
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict):
        return None
    seq, form = message.get("seq"), message.get("form")
    if type(seq) is not int or not isinstance(form, str) or "\x00" in form or "%00" in form:
        return None
    try:
        pairs: list[tuple[str, str | UploadFile]] = [
            *parse_qsl(form, keep_blank_values=True, max_num_fields=LIVE_MAX_FIELDS)
        ]
    except ValueError:
        return None
    data = FormData(pairs)
    return seq, str(data.get("csrf_token", "")), data


@router.websocket("/forms/{dcd}/{version}/live")
async def live_evaluation(
    websocket: WebSocket, organisation_id: str, dcd: str, version: str, service: ServiceDep
) -> None:
    """The form's state after each change, over one connection (static/portal.js; the POST
    route is its fallback): a message ``{"seq": n, "form": "<the form URL-encoded>"}`` is
    answered ``{"seq": n, "fields": {...}}``, as :func:`evaluate_form` answers a POST,
    without a new HTTP request, its middleware and a session read per change. The form
    carries its CSRF token, checked in every message as in every POST (in the URL it would
    be written to access logs). docs/portal.md: the close codes."""
    if websocket.headers.get("origin") != portal_origin():  # cross-site WebSocket hijacking
        await websocket.close(LIVE_FORBIDDEN)
        return
    page = await live_page(websocket, service, organisation_id)
    if isinstance(page, int) or not await _registry_granted(page, dcd, version):
        await websocket.close(page if isinstance(page, int) else LIVE_FORBIDDEN)
        return
    await websocket.accept()
    trace.get_current_span().set_attribute("hdhub.service", "portal")
    try:
        async with LiveEvaluation(trace.get_current_span()) as live:
            await _answer_changes(websocket, service, page, organisation_id, dcd, version, live)
    except WebSocketDisconnect:  # gone while its change was evaluated
        return


async def _registry_granted(page: Page, dcd: str, version: str) -> bool:
    """Whether the form's registry is granted to the person (refused at the handshake, as
    the form's page is, rather than at the first change by registrations). A form the
    catalogue does not know is let through: each change is answered 404 then."""
    try:
        d = await kept_definition(page, dcd, version)
    except (grpc.aio.AioRpcError, Problem):
        return True
    return page.granted(str(d.get("project_code", "")))


async def _answer_changes(
    websocket: WebSocket,
    service: PortalService,
    page: Page,
    organisation_id: str,
    dcd: str,
    version: str,
    live: LiveEvaluation,
) -> None:
    connection = live.connection
    read_at = time.monotonic()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None or len(text.encode()) > MAX_WEBSOCKET_MESSAGE_BYTES:
            await websocket.close(LIVE_INVALID if text is None else LIVE_TOO_BIG)
            return
        parsed = live_message(text)
        if parsed is None:
            await websocket.close(LIVE_INVALID)
            return
        seq, csrf, form = parsed
        with _tracer.start_as_current_span(
            f"WEBSOCKET message {PREFIX}/o/{{organisation_id}}/forms/{{dcd}}/{{version}}/live",
            context=Context(),  # a trace per change, as a POST has; linked to the connection's
            kind=trace.SpanKind.SERVER,
            links=[trace.Link(connection.get_span_context())],
            attributes={"hdhub.service": "portal"},
        ):
            if time.monotonic() - read_at > service.settings.live_session_seconds:
                reread = await live_page(websocket, service, organisation_id)
                if isinstance(reread, int):
                    await websocket.close(reread)
                    return
                page, read_at = reread, time.monotonic()
                await live.close()  # opened again with the token just read
            if not hmac.compare_digest(csrf.encode(), page.csrf.encode()):
                await websocket.close(LIVE_FORBIDDEN)
                return
            try:
                d = await kept_definition(page, dcd, version)
                answer = await live.evaluate(
                    page, evaluate_request(page, organisation_id, d, typed_values(d, form))
                )
            except (grpc.aio.AioRpcError, Problem) as exc:
                problem = problem_from_rpc_error(exc) if isinstance(exc, grpc.aio.AioRpcError) else exc
                if problem.status in (401, 403):
                    await websocket.close(LIVE_SIGNED_OUT if problem.status == 401 else LIVE_FORBIDDEN)
                    return
                await websocket.send_text(orjson.dumps({"seq": seq, "error": problem.status}).decode())
                continue
            except Exception as exc:  # a bug of ours: logged as the app's UnhandledErrors logs one
                log.error("unhandled error", exc_info=exc, extra={"path": websocket.scope.get("path")})
                await websocket.send_text(orjson.dumps({"seq": seq, "error": 500}).decode())
                continue
            await websocket.send_text(
                orjson.dumps({"seq": seq, **state_json(evaluated(page, answer))}).decode()
            )


# --- a registration's page and its lifecycle -----------------------------------------------


def changes(
    page: Page, d: dict[str, Any], versions: list[pb.RegistrationVersion]
) -> list[tuple[pb.RegistrationVersion, list[tuple[str, str, str, str]]]]:
    """Each version with what changed: (technical name, label, before, after), values as
    the form shows them, codes in the code list's words."""
    context = form_context(page, d)
    fields = {name: f for f in input_fields(d) for name in flat_names(f)}

    def words(name: str, value: Any) -> str:
        f = fields.get(name)
        options = dict(context["choices"](f["list_name"])) if f else {}
        items = value if isinstance(value, list) else [value] if value not in (None, "") else []
        return ", ".join(options.get(str(v), str(v)) for v in items)

    out = []
    before: dict[str, Any] = {}
    for v in versions:
        now = shown_values(d, json.loads(v.values_json or "{}"), page.lang)
        changed = []
        for name in v.changed_fields if v.action != "create" else []:
            f = fields.get(name)
            label = context["label"](f["labels"], name) if f else name
            changed.append((name, label, words(name, before.get(name)), words(name, now.get(name))))
        out.append((v, changed))
        before = now
    return out


def timeline(page: Page, found: pb.GetRegistrationHistoryResponse) -> list[tuple[str, str, str]]:
    """The way to the central platform, oldest first: (when, kind, words)."""
    events: list[tuple[str, str, str]] = []
    for v in found.versions:
        if v.action in ("submit", "resubmit"):
            events.append((v.at, "info", page._("Submitted: Sending")))
        elif v.action == "processed":
            events.append((v.at, "ok", page._("Sent: Submitted")))
        elif v.action == "reopen":
            events.append((v.at, "info", page._("Reopened: Open")))
    if found.HasField("delivery"):
        d = found.delivery
        reason = page._(REASONS[d.reason]) if d.reason in REASONS else d.reason
        # Received only once a send got through (``attempts``): the first attempt starts the
        # confirmation's clock even when the central platform could not be reached.
        if d.attempts >= 1 and (d.first_sent_at or d.last_sent_at):
            events.append(
                (
                    d.last_sent_at if d.attempts == 1 else d.first_sent_at,
                    "info",
                    page._("Received by the central platform: status confirmation Pending"),
                )
            )
        if d.attempts > 1 and d.last_sent_at:
            events.append(
                (d.last_sent_at, "warn", page._("Resent (%(count)s sends in all)", count=d.attempts))
            )
        if d.state in ("sending", "pending") and reason:
            events.append((d.last_attempt_at or "", "warn", page._("Waiting: %(reason)s", reason=reason)))
        if d.state == "ok" and d.confirmed_at:
            events.append((d.confirmed_at, "ok", page._("Status confirmation OK")))
        if d.state == "nok":
            events.append(
                (
                    d.last_attempt_at or d.last_sent_at,
                    "bad",
                    page._("Status confirmation NOK: no confirmation in time, being resent"),
                )
            )
        if d.state == "parked" and d.parked_at:
            events.append(
                (d.parked_at, "bad", page._("Parked: resends stopped. %(reason)s", reason=reason or ""))
            )
    return sorted(events, key=lambda e: e[0])


def concerned_fields(
    page: Page, d: dict[str, Any], found: pb.GetRegistrationHistoryResponse
) -> list[tuple[str, str]]:
    """The fields the central platform's decision names, as (technical name, label), when
    it is the registration's current status."""
    if not found.HasField("decision") or found.decision.status != found.registration.status:
        return []
    label = form_context(page, d)["label"]
    fields = {name: f for f in input_fields(d) for name in flat_names(f)}
    return [
        (name, label(fields[name]["labels"], name) if name in fields else name)
        for name in found.decision.fields
    ]


async def page_context(page: Page, organisation_id: str, registration_id: str) -> dict[str, Any]:
    found = await registration_of(page, organisation_id, registration_id)
    reg = found.registration
    d = await definition(page, reg.dcd_code, reg.dcd_version)
    values = shown_values(d, json.loads(reg.values_json), page.lang)
    state = found.delivery.state if found.HasField("delivery") else ""
    return {
        "decision": found.decision if found.HasField("decision") else None,
        "decision_meanings": DECISION_MEANINGS,
        "concerned_fields": concerned_fields(page, d, found),
        "found": found,
        "reg": reg,
        "values": values,
        "history": changes(page, d, list(found.versions)),
        "timeline": timeline(page, found),
        "delivery_state": state,
        # Until both the delivery and the registration's own confirmation are final: the
        # panel shows the registration's, and one read may catch the delivery already OK.
        "polling": reg.status == "sending"
        or reg.status_confirmation == "pending"
        or bool(state and state not in FINAL_DELIVERY),
        "statuses": status_words(page.lang),
        "confirmations": CONFIRMATIONS,
        "actions": ACTIONS,
        "editable": reg.status in EDITABLE,
        "deletable": reg.status in DELETABLE,
        "reopenable": reg.status in REOPENABLE,
        **form_context(page, d),
    }


@router.get("/registrations/{registration_id}")
async def show_registration(
    organisation_id: str, registration_id: str, page: ReaderPage, done: str = ""
) -> Response:
    context = await page_context(page, organisation_id, registration_id)
    return page.render("registration.html", done=done, **context)


@router.get("/registrations/{registration_id}/status")
async def registration_status(organisation_id: str, registration_id: str, page: ReaderPage) -> Response:
    """The status panel alone (htmx asks for it again while the delivery is under way)."""
    context = await page_context(page, organisation_id, registration_id)
    return page.render("partials/registration_status.html", **context)


@router.get("/registrations/{registration_id}/delete")
async def confirm_delete(organisation_id: str, registration_id: str, page: WriterPage) -> Response:
    reg = (await registration_of(page, organisation_id, registration_id)).registration
    return page.render("registration_delete.html", reg=reg)


@router.post("/registrations/{registration_id}/{action}")
async def act(
    request: Request, organisation_id: str, registration_id: str, action: str, page: WriterPage
) -> Response:
    """Submit, reopen or delete at the version the page showed."""
    if action not in ACT:
        raise not_found("Page")
    form = await check_csrf(request, page)
    reg = (await registration_of(page, organisation_id, registration_id)).registration
    version = form.get("_version", "")
    try:
        await registrations().ActOnRegistration(
            pb.ActOnRegistrationRequest(
                id=reg.id,
                expected_version=int(version) if version.isdigit() else 0,
                action=ACT[action],
                language=page.lang,
            ),
            metadata=page.metadata(),
        )
    except Exception as exc:  # noqa: BLE001
        errors = form_errors(page, exc)
        context = await page_context(page, organisation_id, registration_id)
        if errors.slug == "stale-version":
            errors = FormErrors(
                page._("Someone else changed this registration meanwhile"),
                page._("Nothing was done. Here it is as it is now: look at it and try again."),
                slug="stale-version",
            )
        elif errors.slug == "invalid-registration":
            errors.title = page._("The registration cannot be submitted")
            errors.detail = page._("Correct it first: edit it and fix each problem listed.")
        return page.render("registration.html", status=409, errors=errors, done="", **context)
    done = {"submit": "submitted", "reopen": "reopened", "delete": "deleted"}[action]
    return RedirectResponse(
        f"{PREFIX}/o/{organisation_id}/registrations/{reg.id}?done={done}", status_code=303
    )
