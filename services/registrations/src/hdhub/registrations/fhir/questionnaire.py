"""A DCD version as an HL7 FHIR R4 ``Questionnaire`` (4.0.1), checked by fhirclient's models.

- The Questionnaire's id is ``<DCD code>-<version>`` (``ANGIO_HOSP-1.0.0``), its canonical
  URL ``<public URL>/fhir/Questionnaire/<DCD code>`` with the DCD's version as ``version``;
  ``derivedFrom`` links the DCD version's REST resource.
- Each field is an item whose ``linkId`` is the key a record carries (its technical name);
  groups are ``group`` items, a repeat a ``group`` with ``repeats`` (and the
  ``maxOccurs`` extension); a note is ``display``; a hint a ``display`` child shown as a
  flyover (SDC's itemControl).
- Texts in the DCD's other languages ride on ``_text`` with the core ``translation``
  extension; answer options carry their labels the same way.
- Rules stay the DCD's own XPath, carried by SDC's expression extensions
  (``enableWhenExpression``, ``calculatedExpression``) and the core
  ``questionnaire-constraint`` extension with the language ``text/x-odk-xpath``: FHIR has no
  XPath of its own, and hdhub's one engine evaluates them on every QuestionnaireResponse.
  A relevance that is a plain ``${field} = 'code'`` is given as an ``enableWhen`` as well,
  so that a renderer without XPath still shows the skip.
"""

from __future__ import annotations

import re
from typing import Any

from fhirclient.models.questionnaire import Questionnaire

from hdhub.registrations.engine.dcd import Codelist, DcdDefinition, Field, FieldType, Group, Item, Repeat

SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition"
TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"
CONSTRAINT = "http://hl7.org/fhir/StructureDefinition/questionnaire-constraint"
MAX_OCCURS = "http://hl7.org/fhir/StructureDefinition/questionnaire-maxOccurs"
ITEM_CONTROL = "http://hl7.org/fhir/StructureDefinition/questionnaire-itemControl"
XPATH = "text/x-odk-xpath"
ITEM_TYPES = {
    FieldType.TEXT: "string",
    FieldType.INTEGER: "integer",
    FieldType.DECIMAL: "decimal",
    FieldType.DATE: "date",
    FieldType.TIME: "time",
    FieldType.DATETIME: "dateTime",
    FieldType.SELECT_ONE: "choice",
    FieldType.SELECT_MULTIPLE: "choice",
    FieldType.NOTE: "display",
    FieldType.CALCULATE: "string",
}
_SIMPLE_RELEVANCE = re.compile(r"^\s*\$\{(\w+)\}\s*=\s*'([^']*)'\s*$")


def questionnaire_id(dcd_code: str, version: str) -> str:
    return f"{dcd_code}-{version}"


def canonical(base: str, dcd_code: str) -> str:
    return f"{base}/fhir/Questionnaire/{dcd_code}"


def answer_system(base: str, dcd_code: str, list_name: str) -> str:
    """The system of a code list's codings: the Questionnaire's URL and the list's name."""
    return f"{canonical(base, dcd_code)}/codelist/{list_name}"


def _texts(labels: Any, lang: str, default: str) -> tuple[str, dict[str, Any] | None]:
    """The text in ``lang`` and the others as translation extensions on ``_text``."""
    text = labels.get(lang) or labels.get(default) or next(iter(labels.values()), "")
    others = [
        {"extension": [{"url": "lang", "valueCode": other}, {"url": "content", "valueString": value}]}
        for other, value in sorted(labels.items())
        if other != lang and value
    ]
    extension = {"extension": [{"url": TRANSLATION, **o} for o in others]} if others else None
    return text, extension


def _with_texts(out: dict[str, Any], key: str, labels: Any, lang: str, default: str, fallback: str) -> None:
    text, translations = _texts(labels, lang, default)
    out[key] = text or fallback
    if translations:
        out[f"_{key}"] = translations


def _expression(url: str, expression: str, name: str | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"language": XPATH, "expression": expression}
    if name:
        value["name"] = name
    return {"url": url, "valueExpression": value}


def _options(d: DcdDefinition, f: Field, base: str, lang: str) -> list[dict[str, Any]]:
    codelist: Codelist = d.codelist(f.list_name) if f.list_name else Codelist("", ())
    options = []
    for choice in codelist.choices:
        coding: dict[str, Any] = {
            "system": answer_system(base, d.dcd_code, codelist.name),
            "code": choice.name,
        }
        _with_texts(coding, "display", choice.labels, lang, d.default_language, choice.name)
        options.append({"valueCoding": coding})
    return options


def _relevance(item: dict[str, Any], relevant: str | None) -> None:
    if not relevant:
        return
    item.setdefault("extension", []).append(
        _expression(f"{SDC}/sdc-questionnaire-enableWhenExpression", relevant)
    )
    simple = _SIMPLE_RELEVANCE.match(relevant)
    if simple:
        item["enableWhen"] = [
            {"question": simple.group(1), "operator": "=", "answerCoding": {"code": simple.group(2)}}
        ]


def _field(d: DcdDefinition, f: Field, base: str, lang: str) -> dict[str, Any]:
    item: dict[str, Any] = {"linkId": f.technical_name, "type": ITEM_TYPES[f.type]}
    _with_texts(item, "text", f.labels, lang, d.default_language, f.technical_name)
    item["definition"] = f"{canonical(base, d.dcd_code)}#{f.technical_name}"
    _relevance(item, f.relevant)
    if f.type is FieldType.NOTE:
        return item
    if f.always_required:
        item["required"] = True
    elif f.required:
        # Required under a condition: FHIR's required is a boolean; the rule rides along.
        item.setdefault("extension", []).append(
            {
                "url": CONSTRAINT,
                "extension": [
                    {"url": "key", "valueId": f"{f.technical_name}-required"},
                    {"url": "severity", "valueCode": "error"},
                    {"url": "expression", "valueString": f"required if {f.required}"},
                    {"url": "human", "valueString": "Required"},
                ],
            }
        )
    if f.type is FieldType.SELECT_MULTIPLE:
        item["repeats"] = True
    if f.list_name:
        item["answerOption"] = _options(d, f, base, lang)
    if f.is_computed:
        item["readOnly"] = True
        if f.calculation:
            item.setdefault("extension", []).append(
                _expression(f"{SDC}/sdc-questionnaire-calculatedExpression", f.calculation)
            )
    if f.constraint:
        human, _ = _texts(f.constraint_messages, lang, d.default_language)
        item.setdefault("extension", []).append(
            {
                "url": CONSTRAINT,
                "extension": [
                    {"url": "key", "valueId": f"{f.technical_name}-constraint"},
                    {"url": "severity", "valueCode": "error"},
                    {"url": "expression", "valueString": f.constraint},
                    {"url": "human", "valueString": human or "Not valid"},
                ],
            }
        )
    if f.hints:
        hint: dict[str, Any] = {
            "linkId": f"{f.technical_name}.hint",
            "type": "display",
            "extension": [
                {
                    "url": ITEM_CONTROL,
                    "valueCodeableConcept": {
                        "coding": [
                            {"system": "http://hl7.org/fhir/questionnaire-item-control", "code": "flyover"}
                        ]
                    },
                }
            ],
        }
        _with_texts(hint, "text", f.hints, lang, d.default_language, "")
        item["item"] = [hint]
    return item


def _items(d: DcdDefinition, items: tuple[Item, ...], base: str, lang: str) -> list[dict[str, Any]]:
    out = []
    for item in items:
        if isinstance(item, Field):
            out.append(_field(d, item, base, lang))
            continue
        group: dict[str, Any] = {"linkId": item.name, "type": "group"}
        _with_texts(group, "text", item.labels, lang, d.default_language, item.name)
        _relevance(group, item.relevant)
        if isinstance(item, Repeat):
            group["repeats"] = True
            group.setdefault("extension", []).append({"url": MAX_OCCURS, "valueInteger": item.max_instances})
        assert isinstance(item, Group | Repeat)
        children = _items(d, item.children, base, lang)
        if children:
            group["item"] = children
            out.append(group)
    return out


#: Questionnaires made, by DCD content, language and base: a DCD version never changes, and
#: making one (a few hundred items, checked by the model) costs tens of milliseconds.
_MADE: dict[tuple[str, str, str, bool], dict[str, Any]] = {}
_MADE_MAX = 256


def to_questionnaire(d: DcdDefinition, *, base: str, lang: str, published: bool = True) -> dict[str, Any]:
    """``d`` as a Questionnaire in ``lang`` (others as translations), validated by the model.
    The answer is shared: callers serialise it, never change it."""
    key = (d.fingerprint, lang, base, published)
    made = _MADE.get(key)
    if made is None:
        if len(_MADE) >= _MADE_MAX:
            _MADE.clear()
        made = _MADE[key] = _make(d, base=base, lang=lang, published=published)
    return made


def _make(d: DcdDefinition, *, base: str, lang: str, published: bool) -> dict[str, Any]:
    version = str(d.version)
    body: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": questionnaire_id(d.dcd_code, version),
        "url": canonical(base, d.dcd_code),
        "version": version,
        "name": re.sub(r"[^A-Za-z0-9_]", "_", d.dcd_code),
        "status": "active" if published else "retired",
        "subjectType": ["Patient"],
        "language": lang,
        "derivedFrom": [f"{base}/api/v1/dcds/{d.dcd_code}/versions/{version}"],
        "code": [{"system": f"{base}/fhir/CodeSystem/dcd", "code": d.dcd_code, "display": str(d.dcd_number)}],
        "item": _items(d, d.survey, base, lang),
    }
    _with_texts(body, "title", d.dcd_titles, lang, d.default_language, d.dcd_code)
    # The model checks every element's type and cardinality (it raises on a wrong one); the
    # body itself is answered, because the model drops the primitives' extensions (_text).
    Questionnaire(body, strict=True).as_json()
    return body
