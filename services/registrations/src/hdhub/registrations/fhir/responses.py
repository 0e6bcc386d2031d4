"""A registration as a FHIR R4 ``QuestionnaireResponse``, and back.

Items are the Questionnaire's (:mod:`.questionnaire`): an item's ``linkId`` is a field's
technical name, a repeat's instances are its group item given once per instance (the
record's ``DT_PCI_1``, ``DT_PCI_2``...), a multi-select's codes several answers. Values are
FHIR's (``valueDate`` ``2025-02-03``, ``valueTime`` ``14:30:00``, ``valueCoding.code``), which
the engine takes as it takes the ISO forms over REST.

The status follows the registration: ``in-progress`` is a draft (Open), ``completed`` a
submitted registration whatever its delivery, ``entered-in-error`` a deleted one. A client
sends ``in-progress`` to save a draft and ``completed`` to submit.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from fhirclient.models.fhirabstractbase import FHIRValidationError
from fhirclient.models.questionnaireresponse import QuestionnaireResponse

from hdhub.common.errors import FieldProblem, Problem
from hdhub.registrations.engine.dcd import DcdDefinition, Field, FieldType, Group, Item, Repeat
from hdhub.registrations.fhir.questionnaire import answer_system, canonical, questionnaire_id
from hdhub.registrations.store import Registration

BUSINESS_KEY_SYSTEM = "urn:hdhub:business-key"
_VALUE_KEYS = (
    "valueString",
    "valueInteger",
    "valueDecimal",
    "valueDate",
    "valueDateTime",
    "valueTime",
    "valueBoolean",
    "valueCoding",
    "valueUri",
)
_ZONE = re.compile(r"(Z|[+-]\d{2}:\d{2})$")
_MISSING = re.compile(r'Non-optional property "(\w+)" on .* is missing')
_SUPERFLUOUS = re.compile(r'Superfluous entry "(\w+)" in data for')
_OBJECT = re.compile(r"<(?:class '[\w.]*?(\w+)'|[\w.]*?(\w+) object at 0x[0-9a-f]+)>")


def _object_name(match: re.Match[str]) -> str:
    return match.group(1) or match.group(2)


def parsed(body: Any) -> dict[str, Any]:
    """The body as a QuestionnaireResponse, its every element's type checked by the model;
    a 400 naming each element that is wrong (never its value)."""
    if not isinstance(body, dict) or body.get("resourceType") != "QuestionnaireResponse":
        raise Problem(400, "fhir-resource-type", "The body must be a QuestionnaireResponse resource")
    try:
        QuestionnaireResponse(body, strict=True)
    except FHIRValidationError as exc:
        raise Problem(
            400,
            "fhir-invalid",
            "The QuestionnaireResponse is not valid FHIR R4",
            errors=[FieldProblem(field=path, rule="fhir-structure", message=why) for path, why in _flat(exc)],
        ) from None
    return body


def _flat(exc: FHIRValidationError) -> Iterator[tuple[str, str]]:
    """Each leaf of fhirclient's nested errors as (FHIRPath-like path, reason)."""

    def walk(error: Exception, path: list[str]) -> Iterator[tuple[str, str]]:
        if isinstance(error, FHIRValidationError):
            here = [*path, *([error.path] if error.path else [])]
            for inner in error.errors:
                yield from walk(inner, here)
            return
        where = ".".join(path) or "QuestionnaireResponse"
        reason = str(error).split("\n", 1)[0].strip("'\"")
        # fhirclient's words name Python objects ("<...QuestionnaireResponse object at
        # 0x7f...>") and, for an element that is not an object, leak a NameError: say
        # what a client can act on, naming the element.
        if match := _MISSING.search(reason):
            yield f"{where}.{match.group(1)}", "This element is required"
        elif match := _SUPERFLUOUS.search(reason):
            yield f"{where}.{match.group(1)}", "This element is not part of FHIR R4 here"
        elif isinstance(error, (TypeError, ValueError)) and not isinstance(error, NameError):
            # "Wrong type <class 'int'> for property ..." names types, not values.
            yield where, _OBJECT.sub(_object_name, reason)[:200]
        else:
            yield where, "This element has the wrong structure (an object or a list of objects)"

    yield from walk(exc, [])


def questionnaire_of(body: Mapping[str, Any]) -> tuple[str, str | None]:
    """The DCD code and version named by ``questionnaire`` (a canonical ``.../Questionnaire/
    ANGIO_HOSP|1.0.0``, or the id ``Questionnaire/ANGIO_HOSP-1.0.0``)."""
    reference = str(body.get("questionnaire") or "").strip()
    if not reference:
        raise Problem(
            422,
            "fhir-questionnaire-required",
            "Name the Questionnaire",
            "questionnaire: the canonical URL of a DCD's Questionnaire, with |version or without.",
        )
    url, _, version = reference.partition("|")
    tail = url.rstrip("/").rsplit("/", 1)[-1]
    match = re.fullmatch(r"(.+)-(\d+\.\d+\.\d+)", tail)
    if match and not version:
        return match.group(1), match.group(2)
    return tail, version or None


def submitting(body: Mapping[str, Any]) -> bool:
    status = body.get("status")
    if status == "in-progress":
        return False
    if status in ("completed", "amended"):
        return True
    raise Problem(
        422,
        "fhir-status",
        "status must be in-progress (a draft) or completed (submit)",
        errors=[FieldProblem(field="status", rule="fhir-status", message="in-progress or completed")],
    )


def organisation_of(body: Mapping[str, Any], member_of: list[str]) -> str:
    """``author`` ``Organization/<id>``, or the caller's one organisation."""
    reference = str((body.get("author") or {}).get("reference") or "")
    if reference:
        kind, _, org = reference.partition("/")
        if kind != "Organization" or not org:
            raise Problem(
                422,
                "fhir-author",
                "author must reference the Organization",
                errors=[FieldProblem(field="author", rule="fhir-author", message="Organization/<id>")],
            )
        return org
    if len(member_of) == 1:
        return member_of[0]
    raise Problem(
        422,
        "fhir-author",
        "Name the organisation in author",
        errors=[FieldProblem(field="author", rule="required", message="Organization/<id>")],
    )


#: A DCD's date-times are the hospital's wall clock; FHIR wants a zone with a time.
BELGIUM = ZoneInfo("Europe/Brussels")


def _zoned(value: str) -> str:
    """``2025-02-03T10:00:00`` (Belgian wall clock) as FHIR's ``2025-02-03T10:00:00+01:00``."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=BELGIUM)
    return moment.isoformat()


def _local(value: str) -> str:
    """FHIR's zoned date-time as the Belgian wall clock the DCD holds (no zone)."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return _ZONE.sub("", value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(BELGIUM).replace(tzinfo=None)
    return moment.isoformat()


def _answer_value(answer: Mapping[str, Any]) -> Any:
    for key in _VALUE_KEYS:
        if key in answer:
            value = answer[key]
            if key == "valueCoding":
                return value.get("code")
            if key == "valueTime":
                return value[:-3] if isinstance(value, str) and value.endswith(":00") else value
            if key == "valueDateTime" and isinstance(value, str):
                return _local(value)
            if key == "valueBoolean":
                return "true" if value else "false"
            return value
    return None


#: What a client hears when an item does not fit the Questionnaire, in the languages the
#: DCDs' own messages are in (the caller's Accept-Language, English otherwise).
_ITEM_MESSAGES: Mapping[str, Mapping[str, str]] = {
    "fhir-value-type": {
        "en": "{kind} is not taken: send one of {kinds}",
        "nl": "{kind} wordt niet aanvaard: stuur een van {kinds}",
        "fr": "{kind} n'est pas accepté : envoyez l'un de {kinds}",
        "de": "{kind} wird nicht angenommen: senden Sie eines von {kinds}",
    },
    "fhir-duplicate": {
        "en": "This item is answered twice",
        "nl": "Dit item is twee keer beantwoord",
        "fr": "Cet élément a reçu deux réponses",
        "de": "Dieses Element ist zweimal beantwortet",
    },
    "fhir-repeats": {
        "en": "This item takes one answer",
        "nl": "Dit item krijgt één antwoord",
        "fr": "Cet élément n'accepte qu'une réponse",
        "de": "Dieses Element nimmt eine Antwort an",
    },
    "fhir-nested": {
        "en": "A question of this Questionnaire holds no items",
        "nl": "Een vraag van deze Questionnaire bevat geen items",
        "fr": "Une question de ce Questionnaire ne contient pas d'éléments",
        "de": "Eine Frage dieses Questionnaire enthält keine Elemente",
    },
}


def item_message(rule: str, lang: str, **params: str) -> str:
    texts = _ITEM_MESSAGES[rule]
    return texts.get(lang.split("-")[0].lower(), texts["en"]).format(**params)


def values_from(d: DcdDefinition, body: Mapping[str, Any], lang: str = "en") -> dict[str, Any]:
    """The record a QuestionnaireResponse's answers make (keys as the JSON record's).

    Items may come flat or in the Questionnaire's groups, and values as FHIR's types or as
    ``valueString``; what cannot be read one way only is refused (422 naming the linkId): a
    field answered twice, several answers to a field that does not repeat, an answer of a
    type hdhub does not take (``valueQuantity``...), items nested under a field."""
    values: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    repeats = {g.name for g in d.groups if isinstance(g, Repeat)}

    def problem(link: str, rule: str, **params: str) -> None:
        problems.append(
            FieldProblem(field=link or "item", rule=rule, message=item_message(rule, lang, **params))
        )

    def walk(items: list[Mapping[str, Any]], instance: int | None) -> None:
        seen: dict[str, int] = {}
        for item in items:
            link = str(item.get("linkId") or "")
            if link in repeats:
                seen[link] = seen.get(link, 0) + 1
                walk(list(item.get("item") or []), seen[link])
                continue
            raw = list(item.get("answer") or [])
            for answer in raw:
                if _answer_value(answer) is None and any(k.startswith("value") for k in answer):
                    kinds = sorted(k for k in answer if k.startswith("value"))
                    problem(link, "fhir-value-type", kind=kinds[0], kinds=", ".join(_VALUE_KEYS))
            answers = [a for a in raw if _answer_value(a) is not None]
            key = link if instance is None else f"{link}_{instance}"
            is_field = _is_field(d, link)
            if answers:
                if key in values:
                    problem(link, "fhir-duplicate")
                    continue
                got = [_answer_value(a) for a in answers]
                multiple = _is_multiple(d, link)
                if len(got) > 1 and is_field and not multiple:
                    problem(link, "fhir-repeats")
                    continue
                values[key] = got if multiple else got[0] if len(got) == 1 else got
            nested = list(item.get("item") or []) + [
                child for answer in raw for child in (answer.get("item") or [])
            ]
            if is_field and nested:
                problem(link, "fhir-nested")
                continue
            walk(list(item.get("item") or []), instance)
            for answer in raw:
                walk(list(answer.get("item") or []), instance)

    walk(list(body.get("item") or []), None)
    if problems:
        raise Problem(
            422,
            "fhir-items",
            "The QuestionnaireResponse's items do not fit the Questionnaire",
            errors=problems,
        )
    return values


def _is_field(d: DcdDefinition, link: str) -> bool:
    try:
        d.field(link)
    except KeyError:
        return False
    return True


def _is_multiple(d: DcdDefinition, link: str) -> bool:
    try:
        return d.field(link).type is FieldType.SELECT_MULTIPLE
    except KeyError:
        return False


def status_of(registration: Registration) -> str:
    if registration.status == "open":
        return "in-progress"
    if registration.status == "deleted":
        return "entered-in-error"
    return "completed"


def _answers(d: DcdDefinition, f: Field, value: Any, base: str) -> list[dict[str, Any]]:
    if value is None or value == "" or value == []:
        return []
    items = value if isinstance(value, list) else [value]
    out: list[dict[str, Any]] = []
    for v in items:
        if f.list_name:
            out.append(
                {"valueCoding": {"system": answer_system(base, d.dcd_code, f.list_name), "code": str(v)}}
            )
            continue
        try:
            out.append(_typed(f, v))
        except ValueError:
            # A draft saved with its errors holds what the type cannot ("twelve", 2024-02-30):
            # given back as typed, as a string, in a response still in progress.
            out.append({"valueString": str(v)})
    return out


def _typed(f: Field, v: Any) -> dict[str, Any]:
    """An answer in the FHIR type of its field; ValueError when the stored value is not one."""
    if f.type is FieldType.INTEGER:
        return {"valueInteger": int(v)}
    if f.type is FieldType.DECIMAL:
        return {"valueDecimal": float(v)}
    if f.type is FieldType.DATE:
        return {"valueDate": date.fromisoformat(str(v)).isoformat()}
    if f.type is FieldType.DATETIME:
        datetime.fromisoformat(str(v))
        return {"valueDateTime": _zoned(str(v))}
    if f.type is FieldType.TIME:
        text = str(v)
        time.fromisoformat(text)
        return {"valueTime": text if text.count(":") == 2 else f"{text}:00"}
    return {"valueString": str(v)}


def _response_items(
    d: DcdDefinition, items: tuple[Item, ...], values: Mapping[str, Any], base: str, instance: int | None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, Field):
            if not item.is_input:
                continue
            key = item.technical_name if instance is None else f"{item.technical_name}_{instance}"
            answers = _answers(d, item, values.get(key), base)
            if answers:
                out.append({"linkId": item.technical_name, "answer": answers})
        elif isinstance(item, Repeat):
            for n in range(1, item.max_instances + 1):
                children = _response_items(d, item.children, values, base, n)
                if children:
                    out.append({"linkId": item.name, "item": children})
        else:
            assert isinstance(item, Group)
            children = _response_items(d, item.children, values, base, instance)
            if children:
                out.append({"linkId": item.name, "item": children})
    return out


def to_response(d: DcdDefinition, registration: Registration, *, base: str) -> dict[str, Any]:
    """The registration as a QuestionnaireResponse, checked by the model."""
    body: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": registration.id,
        "meta": {
            "versionId": str(registration.version),
            "lastUpdated": registration.updated_at.isoformat().replace("+00:00", "Z")
            if registration.updated_at.tzinfo
            else registration.updated_at.isoformat() + "Z",
        },
        "questionnaire": f"{canonical(base, d.dcd_code)}|{d.version}",
        "status": status_of(registration),
        "authored": (
            registration.updated_at.isoformat()
            if registration.updated_at.tzinfo
            else registration.updated_at.isoformat() + "Z"
        ),
        "author": {"reference": f"Organization/{registration.organisation_id}"},
        "item": _response_items(d, d.survey, registration.values, base, None),
    }
    if registration.business_key:
        body["identifier"] = {"system": BUSINESS_KEY_SYSTEM, "value": registration.business_key}
    QuestionnaireResponse(body, strict=True)
    return body


def questionnaire_reference(d: DcdDefinition, base: str) -> str:
    return f"{canonical(base, d.dcd_code)}|{d.version}"


__all__ = ["questionnaire_id"]
