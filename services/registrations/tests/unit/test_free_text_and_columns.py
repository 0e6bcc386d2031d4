"""Free text is stored as typed (it is data, not a formula: spreadsheets are protected on
output), and which columns every record of a DCD must fill (the Upload Center refuses a
file without one of them; any other may be left out)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hdhub.registrations.engine.dcd import DcdDefinition
from hdhub.registrations.engine.validation import CompiledDcd
from hdhub.registrations.records.business_key import business_key

SURVEY: list[dict[str, object]] = [
    {"type": "text", "name": "TX_COMMENT", "constraint": "string-length(.) <= 40"},
    {"type": "text", "name": "TX_REQUIRED", "required": "yes"},
    {"type": "integer", "name": "MS_COUNT", "required": "yes"},
    {"type": "select_one yes_no", "name": "CD_OTHER"},
    {"type": "text", "name": "TX_OTHER", "required": "yes", "relevant": "${CD_OTHER} = 'yes'"},
    {"type": "text", "name": "TX_SOMETIMES", "required": "${CD_OTHER} = 'yes'"},
    {"type": "begin_group", "name": "extra", "relevant": "${CD_OTHER} = 'yes'"},
    {"type": "date", "name": "DT_EXTRA", "required": "yes"},
    {"type": "end_group"},
    {"type": "begin_repeat", "name": "events", "hd::repeat_max": 2},
    {"type": "date", "name": "DT_EVENT", "required": "yes"},
    {"type": "end_repeat"},
    {"type": "select_one yes_no", "name": "CD_DEFAULTED", "required": "yes", "default": "no"},
    {"type": "integer", "name": "MS_COMPUTED", "required": "yes", "read_only": "yes", "calculation": "1"},
]
CHOICES = [
    {"list_name": "yes_no", "name": "yes", "label::en": "Yes"},
    {"list_name": "yes_no", "name": "no", "label::en": "No"},
]


@pytest.fixture
def compiled(make_compiled: Callable[..., CompiledDcd]) -> CompiledDcd:
    return make_compiled(SURVEY, CHOICES)


@pytest.mark.parametrize(
    "text",
    ["=see the discharge letter", "@dr Peeters", "+2 stents", "-", "\tindented", "  spaced  ", "a\r\nb"],
)
def test_free_text_is_stored_as_typed(compiled: CompiledDcd, text: str) -> None:
    result = compiled.validate({"TX_COMMENT": text, "TX_REQUIRED": "x", "MS_COUNT": "1", "DT_EVENT_1": ""})
    assert result.errors == [] and result.values["TX_COMMENT"] == text


@pytest.mark.parametrize("blank", ["", "   ", "\t", None])
def test_only_spaces_is_no_value_and_does_not_meet_required(compiled: CompiledDcd, blank: object) -> None:
    result = compiled.validate({"TX_REQUIRED": blank, "MS_COUNT": " 7 "})
    assert [(e.field, e.rule) for e in result.errors] == [("TX_REQUIRED", "required")]
    assert "TX_REQUIRED" not in result.values and result.values["MS_COUNT"] == 7  # numbers trimmed


def test_a_formula_is_never_a_number(compiled: CompiledDcd) -> None:
    result = compiled.validate({"TX_REQUIRED": "x", "MS_COUNT": "=1+1"})
    assert [(e.field, e.rule) for e in result.errors] == [("MS_COUNT", "type")]


def test_business_keys_ignore_the_spaces_around_text() -> None:
    key = business_key(b"k", "D", ("TX_ID",), {"TX_ID": "A12"})
    assert key == business_key(b"k", "D", ("TX_ID",), {"TX_ID": " A12 "}) is not None
    assert business_key(b"k", "D", ("TX_ID",), {"TX_ID": "  "}) is None


def test_the_columns_every_record_must_fill(make_dcd: Callable[..., DcdDefinition]) -> None:
    definition = make_dcd(SURVEY, CHOICES)
    every = [f.technical_name for f in definition.fields if definition.required_in_every_record(f)]
    # Not: TX_OTHER (relevant only sometimes), TX_SOMETIMES (required only sometimes),
    # DT_EXTRA (in a group that applies only sometimes), DT_EVENT (in a repeat),
    # CD_DEFAULTED (has a default), MS_COMPUTED (computed).
    assert every == ["TX_REQUIRED", "MS_COUNT"]
