"""The model of a data collection definition (DCD) version, as read from its XLSForm workbook.

Plain immutable data: :mod:`.xlsform` builds it, :mod:`.validation` compiles it, the
service stores and serves it. ``docs/dcd-format.md`` describes where each attribute
comes from in the workbook.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeAlias

from hdhub.registrations.engine.functions import FUNCTIONS

__all__ = [
    "Choice",
    "Codelist",
    "DcdDefinition",
    "Field",
    "FieldType",
    "Group",
    "Item",
    "NumberFormat",
    "Repeat",
    "SemVer",
    "frozen_mapping",
    "is_expression_text",
    "translate",
]

_EMPTY: Mapping[str, str] = MappingProxyType({})
_EXPRESSION_TEXT = re.compile(
    r"\$\{|(?<![A-Za-z0-9_.:-])(?:"
    + "|".join(map(re.escape, sorted(FUNCTIONS, key=len, reverse=True)))
    + r")\s*\("
)


def is_expression_text(text: str) -> bool:
    """True for a text that refers to a field (``${x}``) or calls a function (``today()``)."""
    return _EXPRESSION_TEXT.search(text) is not None


def _empty() -> Mapping[str, str]:
    return _EMPTY


def _texts() -> Any:
    """A dataclass default of no texts (a read-only mapping is not a valid plain default)."""
    return field(default_factory=_empty)


def frozen_mapping(items: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """A read-only copy of ``items``, for the translation maps of the model."""
    if not items:
        return _EMPTY
    return MappingProxyType(dict(items))


def translate(texts: Mapping[str, str], lang: str, default_language: str = "en") -> str | None:
    """The text in ``lang``, else in the default language, else English, else any; None if none."""
    text = texts.get(lang) or texts.get(default_language) or texts.get("en")
    if text:
        return text
    return next((t for t in texts.values() if t), None)


class FieldType(StrEnum):
    TEXT = "text"
    INTEGER = "integer"
    DECIMAL = "decimal"
    DATE = "date"
    TIME = "time"
    DATETIME = "datetime"
    SELECT_ONE = "select_one"
    SELECT_MULTIPLE = "select_multiple"
    NOTE = "note"
    CALCULATE = "calculate"


#: Each part at most 9 digits: stored as a 32-bit integer each.
_SEMVER = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")


@dataclass(frozen=True, slots=True, order=True)
class SemVer:
    """A DCD version: a major change invalidates drafts and submissions, a minor one does not."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> SemVer:
        """``MAJOR.MINOR.PATCH`` with no leading zeros; raises ValueError otherwise."""
        match = _SEMVER.fullmatch(text.strip())
        if match is None:
            raise ValueError("a version is MAJOR.MINOR.PATCH of at most 9 digits each, e.g. 1.2.0")
        return cls(int(match.group(1)), int(match.group(2)), int(match.group(3)))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


_NUMBER_FORMAT = re.compile(r"([0-9]+)(?:\.([0-9]+))?")


@dataclass(frozen=True, slots=True)
class NumberFormat:
    """``hd::number_format`` ``x.y``: at most x digits before the decimal point, y after."""

    digits_before: int
    digits_after: int

    @classmethod
    def parse(cls, text: str) -> NumberFormat:
        match = _NUMBER_FORMAT.fullmatch(text.strip())
        if match is None:
            raise ValueError("a number format is x.y: digits before and after the decimal point")
        return cls(int(match.group(1)), int(match.group(2) or 0))

    def __str__(self) -> str:
        return f"{self.digits_before}.{self.digits_after}"


@dataclass(frozen=True, slots=True)
class Choice:
    """One code of a code list; ``columns`` holds the extra columns ``choice_filter`` reads."""

    name: str
    labels: Mapping[str, str] = _texts()
    columns: Mapping[str, str] = _texts()

    def label(self, lang: str, default_language: str = "en") -> str:
        return translate(self.labels, lang, default_language) or self.name

    def to_json(self) -> dict[str, Any]:
        return {"code": self.name, "labels": dict(self.labels), "columns": dict(self.columns)}


@dataclass(frozen=True, slots=True)
class Codelist:
    name: str
    choices: tuple[Choice, ...]

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.choices)

    def choice(self, code: str) -> Choice | None:
        return next((c for c in self.choices if c.name == code), None)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "choices": [c.to_json() for c in self.choices]}


@dataclass(frozen=True, slots=True)
class Field:
    """A question (or note, or calculation) of the survey sheet.

    Expressions (``required``, ``constraint``, ``relevant``, ``calculation``,
    ``choice_filter``, ``nippin_relevant``) are kept as source text; ``required`` is
    ``"true()"`` for ``yes`` and None for not required. ``group_path`` names the
    enclosing groups and repeat, outermost first; ``repeat``/``repeat_max`` say which
    repeat the field belongs to and how many flattened instances it has.
    """

    name: str
    type: FieldType
    technical_name: str
    labels: Mapping[str, str] = _texts()
    hints: Mapping[str, str] = _texts()
    list_name: str | None = None
    required: str | None = None
    required_messages: Mapping[str, str] = _texts()
    constraint: str | None = None
    constraint_messages: Mapping[str, str] = _texts()
    relevant: str | None = None
    calculation: str | None = None
    default: str | None = None
    read_only: bool = False
    choice_filter: str | None = None
    appearance: str | None = None
    number_format: NumberFormat | None = None
    format: str | None = None
    personal_data: bool = False
    destination_hd: bool = True
    destination_nippin: bool = False
    nippin_xml_name: str | None = None
    nippin_relevant: str | None = None
    group_path: tuple[str, ...] = ()
    repeat: str | None = None
    repeat_max: int = 0
    row: int | None = None
    extras: Mapping[str, str] = _texts()

    @property
    def flat_names(self) -> tuple[str, ...]:
        """The names a record carries for this field: ``DT_PCI_1`` .. ``DT_PCI_n`` in a repeat."""
        if self.repeat is None:
            return (self.technical_name,)
        return tuple(f"{self.technical_name}_{i}" for i in range(1, self.repeat_max + 1))

    @property
    def is_input(self) -> bool:
        """True for the fields whose value a record carries (not notes)."""
        return self.type is not FieldType.NOTE

    @property
    def is_computed(self) -> bool:
        """Calculate and read_only fields, and fields with a calculation: computed from
        ``calculation`` (or ``default``), never input."""
        return self.type is FieldType.CALCULATE or self.read_only or self.calculation is not None

    @property
    def default_is_expression(self) -> bool:
        """A default that refers to a field or calls a function (``today()``) is an
        expression; anything else, parentheses included (``N/A (unknown)``), a literal."""
        return self.default is not None and is_expression_text(self.default)

    @property
    def always_required(self) -> bool:
        return self.required == "true()"

    def path(self, instance: int | None = None) -> str:
        """The place in the form: ``hospitalisation/pci[2]/DT_PCI`` for instance 2."""
        parts = list(self.group_path)
        if instance is not None and self.repeat is not None:
            at = parts.index(self.repeat)
            parts[at] = f"{self.repeat}[{instance}]"
        parts.append(self.technical_name)
        return "/".join(parts)

    def label(self, lang: str, default_language: str = "en") -> str:
        return translate(self.labels, lang, default_language) or self.technical_name

    def to_json(self) -> dict[str, Any]:
        """The summary the API serves: names, type, texts, rules, code list and repeat."""
        return {
            "technical_name": self.technical_name,
            "name": self.name,
            "type": self.type.value,
            "labels": dict(self.labels),
            "hints": dict(self.hints),
            "required": True if self.always_required else (self.required or False),
            "list_name": self.list_name,
            "number_format": str(self.number_format) if self.number_format else None,
            "format": self.format,
            "personal_data": self.personal_data,
            "read_only": self.read_only,
            "relevant": self.relevant,
            "constraint": self.constraint,
            "calculation": self.calculation,
            "default": self.default,
            "path": self.path(),
            "repeat": (
                {"name": self.repeat, "max": self.repeat_max, "flat_names": list(self.flat_names)}
                if self.repeat
                else None
            ),
            "destination": {
                "hd": self.destination_hd,
                "nippin": self.destination_nippin,
                "nippin_xml_name": self.nippin_xml_name,
            },
        }


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    labels: Mapping[str, str] = _texts()
    relevant: str | None = None
    group_path: tuple[str, ...] = ()
    children: tuple[Item, ...] = ()
    appearance: str | None = None
    row: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "group",
            "name": self.name,
            "labels": dict(self.labels),
            "relevant": self.relevant,
            "children": [c.to_json() for c in self.children],
        }


@dataclass(frozen=True, slots=True)
class Repeat:
    """A repeated block, flattened to ``max_instances`` suffixed copies of its fields."""

    name: str
    max_instances: int
    labels: Mapping[str, str] = _texts()
    relevant: str | None = None
    repeat_count: str | None = None
    group_path: tuple[str, ...] = ()
    children: tuple[Item, ...] = ()
    appearance: str | None = None
    row: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "repeat",
            "name": self.name,
            "labels": dict(self.labels),
            "relevant": self.relevant,
            "repeat_count": self.repeat_count,
            "max": self.max_instances,
            "children": [c.to_json() for c in self.children],
        }


Item: TypeAlias = Field | Group | Repeat


def _walk(items: tuple[Item, ...]) -> Iterator[Item]:
    for item in items:
        yield item
        if isinstance(item, Group | Repeat):
            yield from _walk(item.children)


@dataclass(frozen=True, slots=True)
class DcdDefinition:
    """One DCD version: identity, texts, the survey as a tree, code lists and settings."""

    project_code: str
    project_abbreviation: str
    dcd_code: str
    dcd_number: int
    version: SemVer
    survey: tuple[Item, ...]
    codelists: Mapping[str, Codelist] = field(default_factory=dict)
    project_titles: Mapping[str, str] = _texts()
    dcd_titles: Mapping[str, str] = _texts()
    default_language: str = "en"
    languages: tuple[str, ...] = ("en",)
    business_key: tuple[str, ...] = ()
    settings: Mapping[str, str] = _texts()
    source: str | None = None
    # Derived in __post_init__.
    fields: tuple[Field, ...] = field(init=False, repr=False, compare=False)
    groups: tuple[Group | Repeat, ...] = field(init=False, repr=False, compare=False)
    _by_technical_name: dict[str, Field] = field(init=False, repr=False, compare=False)
    _by_name: dict[str, Item] = field(init=False, repr=False, compare=False)
    _by_flat_name: dict[str, tuple[Field, int | None]] = field(init=False, repr=False, compare=False)
    _fingerprint: list[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        items = tuple(_walk(self.survey))
        fields = tuple(i for i in items if isinstance(i, Field))
        by_flat: dict[str, tuple[Field, int | None]] = {}
        for f in fields:
            if f.repeat is None:
                by_flat[f.technical_name] = (f, None)
            else:
                for instance, flat in enumerate(f.flat_names, start=1):
                    by_flat[flat] = (f, instance)
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "groups", tuple(i for i in items if isinstance(i, Group | Repeat)))
        object.__setattr__(self, "_by_technical_name", {f.technical_name: f for f in fields})
        object.__setattr__(self, "_by_name", {i.name: i for i in items})
        object.__setattr__(self, "_by_flat_name", by_flat)
        object.__setattr__(self, "_fingerprint", [])

    # -- look-ups ------------------------------------------------------------------

    def field(self, technical_name: str) -> Field:
        """The field with this technical name; KeyError if there is none."""
        return self._by_technical_name[technical_name]

    def item(self, name: str) -> Item:
        """The field, group or repeat with this XLSForm name; KeyError if there is none."""
        return self._by_name[name]

    def resolve_flat_name(self, flat_name: str) -> tuple[Field, int | None]:
        """``DT_PCI_2`` -> (the field DT_PCI, 2); ``DT_HOSPZ`` -> (its field, None)."""
        return self._by_flat_name[flat_name]

    def codelist(self, list_name: str) -> Codelist:
        """The code list with this name; KeyError if there is none."""
        return self.codelists[list_name]

    def repeat(self, name: str) -> Repeat:
        item = self._by_name[name]
        if not isinstance(item, Repeat):
            raise KeyError(name)
        return item

    def flat_field_names(self) -> tuple[str, ...]:
        """Every technical name a record may carry, in form order, repeats flattened."""
        return tuple(name for f in self.fields if f.is_input for name in f.flat_names)

    def required_in_every_record(self, f: Field) -> bool:
        """True when every record must give ``f`` a value, whatever its other answers:
        required always, applies always (no relevance on it or on a group around it), not
        in a repeat (instance 2 is needed only when there are two), not computed and no
        default. A file without such a column can store no record; any other field may
        be left out of a file (records that need it get their ``required`` error)."""
        if not f.always_required or f.relevant or f.repeat is not None:
            return False
        if f.is_computed or f.default is not None or not f.is_input:
            return False
        return all(not getattr(self._by_name.get(g), "relevant", None) for g in f.group_path)

    def title(self, lang: str) -> str:
        return translate(self.dcd_titles, lang, self.default_language) or self.dcd_code

    @property
    def fingerprint(self) -> str:
        """A hash of the whole content: two definitions with the same one behave the same."""
        if not self._fingerprint:
            content = repr(
                (
                    self.project_code,
                    self.project_abbreviation,
                    self.dcd_code,
                    self.dcd_number,
                    str(self.version),
                    self.survey,
                    sorted((k, v) for k, v in self.codelists.items()),
                    self.default_language,
                    self.languages,
                    self.business_key,
                )
            )
            self._fingerprint.append(hashlib.sha256(content.encode()).hexdigest())
        return self._fingerprint[0]

    def to_json(self) -> dict[str, Any]:
        """The definition summary the API serves (fields flat, in form order, and the tree)."""
        return {
            "project_code": self.project_code,
            "project_abbreviation": self.project_abbreviation,
            "project_titles": dict(self.project_titles),
            "dcd_code": self.dcd_code,
            "dcd_number": self.dcd_number,
            "dcd_titles": dict(self.dcd_titles),
            "version": str(self.version),
            "default_language": self.default_language,
            "languages": list(self.languages),
            "business_key": list(self.business_key),
            "source": self.source,
            "fields": [f.to_json() for f in self.fields],
            "survey": [i.to_json() for i in self.survey],
            "codelists": {name: c.to_json() for name, c in self.codelists.items()},
        }
