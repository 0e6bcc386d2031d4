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

from hdhub.registrations.engine.dcd import DcdDefinition, Field
from hdhub.registrations.engine.expressions import (
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


# Compiled once per DCD content (its fingerprint, memoised on the definition, and the
# message it names, a setting the fingerprint leaves out): a version never changes once
# imported.
_bound: dict[tuple[str, str], tuple[Field, ...]] = {}


def _key(definition: DcdDefinition) -> tuple[str, str]:
    return definition.fingerprint, definition.settings.get("nippin_message", "")


def bound_fields(definition: DcdDefinition) -> tuple[Field, ...]:
    """The fields bound for NIPPIN, in form order (repeats are never bound: one message per
    act)."""
    key = _key(definition)
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


@dataclass(frozen=True, slots=True)
class Reimbursement:
    """One DCD version's NIPPIN rules, compiled once: whether it is reimbursed, its
    relevance expressions (each distinct one once) and the names they read, and the bound
    fields that are no personal data."""

    reimbursed: bool
    names: tuple[str, ...]
    rules: tuple[Evaluator, ...]
    public: tuple[tuple[str, str], ...]  # (technical name, xml name)

    def makes_message(self, values: Mapping[str, Any]) -> bool:
        if not self.reimbursed:
            return False
        context = Context([values.get(n) for n in self.names])
        try:
            return all(xpath_boolean(rule(context)) for rule in self.rules)
        except (ValueError, TypeError, ArithmeticError):
            return False


_compiled: dict[tuple[str, str], Reimbursement] = {}


def reimbursement(definition: DcdDefinition) -> Reimbursement:
    """The DCD version's :class:`Reimbursement`, compiled once per content."""
    key = _key(definition)
    found = _compiled.get(key)
    if found is None:
        found = _compiled[key] = _compile(definition)
    return found


def _compile(definition: DcdDefinition) -> Reimbursement:
    names: list[str] = []

    def slot(name: str) -> FieldSlot:
        item = definition.item(name)
        if not isinstance(item, Field):
            raise KeyError(name)
        if item.technical_name not in names:
            names.append(item.technical_name)
        return FieldSlot(names.index(item.technical_name))

    bound = bound_fields(definition)
    # ``${name}`` resolves to the field named ``name``; its stored value is read.
    sources = dict.fromkeys(f.nippin_relevant for f in bound if f.nippin_relevant)
    rules = tuple(compile_expression(parse_expression(source), fields=slot) for source in sources if source)
    public = tuple(
        (f.technical_name, f.nippin_xml_name or f.technical_name) for f in bound if not _personal(f)
    )
    return Reimbursement(is_reimbursed(definition), tuple(names), rules, public)


def makes_message(definition: DcdDefinition, values: Mapping[str, Any]) -> bool:
    """Whether a registration with ``values`` makes a NIPPIN message."""
    return reimbursement(definition).makes_message(values)


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
