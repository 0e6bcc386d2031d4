"""What of a registration goes to NIPPIN (DOMAIN.md, NIPPIN): the fields a DCD binds with
``destination::nippin``, named by ``destination::nippin_xml_name`` (their technical name
when none is given), and only when the registration makes a message: every
``destination::nippin_relevant`` expression on the bound fields holds (none given: always).

A DCD that names its message (settings ``nippin_message``) is a reimbursed registry.
Nothing else of the registration leaves for NIPPIN.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hdhub.registrations.domain.dcd import DcdDefinition, Field
from hdhub.registrations.domain.expressions import (
    Context,
    Evaluator,
    FieldSlot,
    compile_expression,
    parse_expression,
    xpath_boolean,
)


@dataclass(frozen=True, slots=True)
class Bound:
    xml_name: str
    technical_name: str
    value: str
    personal_data: bool


_bound: dict[tuple[str, str], tuple[Field, ...]] = {}


def bound_fields(definition: DcdDefinition) -> tuple[Field, ...]:
    """The fields bound for NIPPIN, in form order (repeats are never bound: one message per
    act). A DCD version never changes once imported: found once per version."""
    key = (definition.dcd_code, str(definition.version))
    found = _bound.get(key)
    if found is None:
        found = _bound[key] = tuple(f for f in definition.fields if f.destination_nippin and f.repeat is None)
    return found


def _personal(f: Field) -> bool:
    return f.personal_data or f.format == "ssin"


def is_reimbursed(definition: DcdDefinition) -> bool:
    """A DCD naming a NIPPIN message (settings ``nippin_message``) with bound fields. A DCD
    binding fields without naming a message (ANGIO's PCI billing fields, in repeats) makes
    no message: nippin has no XSD for it."""
    return bool(definition.settings.get("nippin_message")) and bool(bound_fields(definition))


_compiled: dict[tuple[str, str], tuple[tuple[str, ...], tuple[Evaluator, ...]]] = {}


def _relevance(definition: DcdDefinition) -> tuple[tuple[str, ...], tuple[Evaluator, ...]]:
    """The compiled ``nippin_relevant`` expressions, and the technical names they read
    (``${name}`` resolves to the field named ``name``; its stored value is read). A DCD
    version never changes once imported, so it is compiled once."""
    key = (definition.dcd_code, str(definition.version))
    found = _compiled.get(key)
    if found is None:
        found = _compiled[key] = _compile_relevance(definition)
    return found


def _compile_relevance(definition: DcdDefinition) -> tuple[tuple[str, ...], tuple[Evaluator, ...]]:
    names: list[str] = []

    def slot(name: str) -> FieldSlot:
        item = definition.item(name)
        if not isinstance(item, Field):
            raise KeyError(name)
        if item.technical_name not in names:
            names.append(item.technical_name)
        return FieldSlot(names.index(item.technical_name))

    rules = tuple(
        compile_expression(parse_expression(f.nippin_relevant), fields=slot)
        for f in bound_fields(definition)
        if f.nippin_relevant
    )
    return tuple(names), rules


def makes_message(definition: DcdDefinition, values: Mapping[str, Any]) -> bool:
    """Whether a registration with ``values`` makes a NIPPIN message."""
    if not is_reimbursed(definition):
        return False
    names, rules = _relevance(definition)
    context = Context([values.get(n) for n in names])
    try:
        return all(xpath_boolean(rule(context)) for rule in rules)
    except (ValueError, TypeError, ArithmeticError):
        return False


def bound_values(definition: DcdDefinition, values: Mapping[str, Any]) -> list[Bound]:
    """The bound fields with their stored values (text; empty when missing)."""
    return [
        Bound(
            xml_name=f.nippin_xml_name or f.technical_name,
            technical_name=f.technical_name,
            value="" if values.get(f.technical_name) is None else str(values[f.technical_name]),
            personal_data=_personal(f),
        )
        for f in bound_fields(definition)
    ]


def report_values(definition: DcdDefinition, values: Mapping[str, Any]) -> dict[str, str]:
    """The bound values that are no personal data, by xml name (what the nightly report
    may learn of a registration: the implant date, the codes; never the SSIN)."""
    out = {}
    for f in bound_fields(definition):
        value = values.get(f.technical_name)
        if value is not None and not _personal(f):
            out[f.nippin_xml_name or f.technical_name] = str(value)
    return out
