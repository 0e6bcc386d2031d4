"""Read a DCD workbook (XLSForm plus healthdata.be's columns) into a :class:`DcdDefinition`.

Everything that can be wrong with a workbook is reported at once, as a
:class:`WorkbookError` listing each problem with its sheet, row and column. Every
expression is parsed and the definition compiled here, so a workbook that loads is one
the validation engine can run.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import pathlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from openpyxl import load_workbook

from hdhub.registrations.engine.dcd import (
    Choice,
    Codelist,
    DcdDefinition,
    Field,
    FieldType,
    Group,
    Item,
    NumberFormat,
    Repeat,
    SemVer,
    frozen_mapping,
    is_expression_text,
)
from hdhub.registrations.engine.expressions import (
    ExpressionSyntaxError,
    Node,
    bare_names,
    choice_name_fields,
    field_references,
    parse_expression,
    plain_references,
)

__all__ = ["DEFAULT_REPEAT_MAX", "Problem", "WorkbookError", "read_workbook"]

#: How many instances a repeat without ``hd::repeat_max`` (nor a plain number
#: ``repeat_count``) is flattened to: each of its fields is sent as NAME_1 .. NAME_10.
DEFAULT_REPEAT_MAX = 10


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a workbook. ``row`` is the spreadsheet row (1 = header)."""

    sheet: str
    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = self.sheet
        if self.row is not None:
            where += f" row {self.row}"
        if self.column:
            where += f" column {self.column}"
        return f"{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"sheet": self.sheet, "row": self.row, "column": self.column, "message": self.message}


class WorkbookError(ValueError):
    """The workbook is not a valid DCD; ``problems`` says everything that is wrong."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        shown = "; ".join(str(p) for p in self.problems[:20])
        more = f" (and {len(self.problems) - 20} more)" if len(self.problems) > 20 else ""
        super().__init__(f"{len(self.problems)} problem(s) in the DCD workbook: {shown}{more}")


# --------------------------------------------------------------------------- sheets

_LANGUAGE_NAMES = {
    "english": "en",
    "french": "fr",
    "français": "fr",
    "francais": "fr",
    "dutch": "nl",
    "nederlands": "nl",
    "flemish": "nl",
    "german": "de",
    "deutsch": "de",
}
_LANGUAGE_IN_PARENTHESES = re.compile(r"\(([A-Za-z]{2,3}(?:-[A-Za-z0-9]+)?)\)\s*$")
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_TECHNICAL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_PROJECT_CODE = re.compile(r"HDBP[0-9]{4}")
_DCD_NUMBER = re.compile(r"[0-9]{1,3}")
# A DCD code names it in URLs, file names and the v2 API: no path, space or punctuation.
_DCD_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_YES = frozenset({"yes", "true", "true()", "1", "y"})
_NO = frozenset({"", "no", "false", "false()", "0", "n"})
_TRANSLATED = ("label", "hint", "required_message", "constraint_message")


def language_code(text: str) -> str:
    """``en``, ``English (en)`` and ``English`` all give ``en``."""
    text = text.strip()
    match = _LANGUAGE_IN_PARENTHESES.search(text)
    if match:
        return match.group(1).lower()
    return _LANGUAGE_NAMES.get(text.lower(), text.lower())


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime):
        if value.time() == datetime.time(0):
            return value.date().isoformat()
        return value.isoformat(timespec="seconds")
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value).strip()


@dataclass(slots=True)
class _Sheet:
    name: str
    headers: list[str]
    rows: list[tuple[int, dict[str, str]]]  # (spreadsheet row, header -> text)


def _read_sheet(worksheet: Any, name: str) -> _Sheet:
    rows_iter: Iterator[tuple[object, ...]] = worksheet.iter_rows(values_only=True)
    headers: list[str] = []
    for first in rows_iter:
        headers = [_cell_text(v) for v in first]
        break
    rows: list[tuple[int, dict[str, str]]] = []
    for number, values in enumerate(rows_iter, start=2):
        row = {h: _cell_text(v) for h, v in zip(headers, values, strict=False) if h}
        if any(row.values()):
            rows.append((number, row))
    return _Sheet(name, [h for h in headers if h], rows)


# --------------------------------------------------------------------------- reader


@dataclass(slots=True)
class _Open:
    """A group or repeat whose end row has not been read yet."""

    kind: str  # "group" or "repeat"
    name: str
    row: int
    values: dict[str, str]
    children: list[Item] = field(default_factory=list)


@dataclass(slots=True)
class _Expression:
    sheet: str
    row: int | None
    column: str
    owner: str  # the name of the field, group or repeat it belongs to
    node: Node


class _Reader:
    def __init__(self, sheets: Mapping[str, _Sheet]) -> None:
        self.problems: list[Problem] = []
        self.expressions: list[_Expression] = []
        #: (sheet, column as read here) -> the header as written, to name it in problems.
        self.spelling: dict[tuple[str, str], str] = {}
        self.sheets = {name: self._canonical_columns(sheet) for name, sheet in sheets.items()}

    def _canonical_columns(self, sheet: _Sheet) -> _Sheet:
        """``sheet`` with each column under the name this reader uses (pyxform's other
        spellings resolved); a survey column it does not read is a problem at the first
        row that fills it, and two spellings of one column a problem at the header."""
        if sheet.name not in ("survey", "choices", "settings"):
            return sheet
        names: dict[str, str] = {}
        for header in sheet.headers:
            canonical = _canonical_column(header, sheet.name)
            if canonical is None:
                used = next((number for number, row in sheet.rows if row.get(header)), None)
                if used is not None:
                    why = (
                        _MEDIA_COLUMN
                        if _is_media_column(header)
                        else "docs/dcd-format.md lists the columns it reads"
                    )
                    self.problem(sheet.name, used, header, f"hdhub does not read a {header!r} column ({why})")
                continue
            other = next((h for h, c in names.items() if c == canonical), None)
            if other is not None:
                self.problem(sheet.name, 1, header, f"{header!r} and {other!r} are the same column: keep one")
                continue
            names[header] = canonical
            if canonical != header:
                self.spelling[(sheet.name, canonical)] = header
        rows = [(number, {names[h]: v for h, v in row.items() if h in names}) for number, row in sheet.rows]
        return _Sheet(sheet.name, list(names.values()), rows)

    def problem(self, sheet: str, row: int | None, column: str | None, message: str) -> None:
        if column is not None:
            column = self.spelling.get((sheet, column), column)
        self.problems.append(Problem(sheet, row, column, message))

    # -- settings and hd ---------------------------------------------------------

    def settings(self) -> dict[str, str]:
        sheet = self.sheets.get("settings")
        if sheet is None:
            self.problem("settings", None, None, "the settings sheet is missing")
            return {}
        if not sheet.rows:
            self.problem("settings", 2, None, "the settings sheet has no values row")
            return {}
        return {k: v for k, v in sheet.rows[0][1].items() if v}

    def hd(self) -> tuple[dict[str, str], dict[str, int]]:
        sheet = self.sheets.get("hd")
        if sheet is None:
            self.problem("hd", None, None, "the hd sheet is missing")
            return {}, {}
        for column in ("key", "value"):
            if column not in sheet.headers:
                self.problem("hd", 1, column, f"the hd sheet needs a {column!r} column")
        values: dict[str, str] = {}
        rows: dict[str, int] = {}
        for number, row in sheet.rows:
            key = row.get("key", "")
            if not key:
                self.problem("hd", number, "key", "a value without a key")
                continue
            if key in values:
                self.problem("hd", number, "key", f"{key!r} is given twice (first on row {rows[key]})")
                continue
            if key not in _HD_KEYS and not key.startswith(_HD_TRANSLATED):
                self.problem("hd", number, "key", f"hdhub does not read the hd key {key!r}")
                continue
            values[key] = row.get("value", "")
            rows[key] = number
        return values, rows

    # -- choices -------------------------------------------------------------------

    def choices(self, default_language: str) -> tuple[dict[str, Codelist], dict[str, frozenset[str]]]:
        sheet = self.sheets.get("choices")
        if sheet is None:
            return {}, {}
        for column in ("list_name", "name"):
            if column not in sheet.headers:
                self.problem("choices", 1, column, f"the choices sheet needs a {column!r} column")
        lists: dict[str, list[Choice]] = {}
        seen: dict[tuple[str, str], int] = {}
        columns: dict[str, set[str]] = {}
        for number, row in sheet.rows:
            list_name = row.get("list_name", "")
            code = row.get("name", "")
            if not list_name:
                self.problem("choices", number, "list_name", "a choice without a list_name")
                continue
            if not code:
                self.problem("choices", number, "name", f"a choice of {list_name!r} without a name (code)")
                continue
            if (list_name, code) in seen:
                self.problem(
                    "choices",
                    number,
                    "name",
                    f"code {code!r} appears twice in list {list_name!r} "
                    f"(first on row {seen[(list_name, code)]})",
                )
                continue
            seen[(list_name, code)] = number
            labels = _translations(row, "label", default_language)
            extra = {
                k: v
                for k, v in row.items()
                if v and k not in ("list_name", "name") and not _is_translated(k, "label")
            }
            extra["name"] = code
            lists.setdefault(list_name, []).append(
                Choice(name=code, labels=frozen_mapping(labels), columns=frozen_mapping(extra))
            )
            columns.setdefault(list_name, set()).update(
                h for h in sheet.headers if h != "list_name" and not _is_translated(h, "label")
            )
        return (
            {name: Codelist(name, tuple(choices)) for name, choices in lists.items()},
            {name: frozenset(c) for name, c in columns.items()},
        )

    # -- survey ----------------------------------------------------------------------

    def survey(
        self,
        default_language: str,
        codelists: dict[str, Codelist],
        choice_columns: Mapping[str, frozenset[str]],
    ) -> tuple[Item, ...]:
        sheet = self.sheets.get("survey")
        if sheet is None:
            self.problem("survey", None, None, "the survey sheet is missing")
            return ()
        for column in ("type", "name"):
            if column not in sheet.headers:
                self.problem("survey", 1, column, f"the survey sheet needs a {column!r} column")
                return ()
        top: list[Item] = []
        stack: list[_Open] = []
        names: dict[str, int] = {}
        technical_names: dict[str, int] = {}

        def current_children() -> list[Item]:
            return stack[-1].children if stack else top

        for number, row in sheet.rows:
            raw_type = " ".join(row.get("type", "").split())
            name = row.get("name", "")
            if not raw_type:
                self.problem("survey", number, "type", f"row {name or '?'} has no type")
                continue
            parsed = _parse_type(raw_type)
            kind, list_name = parsed.kind, parsed.list_name
            if kind in ("end_group", "end_repeat"):
                self._check_columns_apply(number, row, kind)
                expected = kind.removeprefix("end_")
                if not stack:
                    self.problem("survey", number, "type", f"{raw_type} without a matching begin_{expected}")
                    continue
                opened = stack[-1]
                if opened.kind != expected:
                    self.problem(
                        "survey",
                        number,
                        "type",
                        f"{raw_type} closes begin_{opened.kind} {opened.name!r} of row {opened.row}",
                    )
                    continue
                stack.pop()
                current_children().append(self._close(opened, stack, default_language))
                continue
            if kind is None:
                why = f"hdhub does not read {raw_type!r}: {parsed.refused}" if parsed.refused else None
                self.problem("survey", number, "type", why or f"unknown type {raw_type!r}")
                continue
            if not name:
                self.problem("survey", number, "name", f"a {raw_type} row needs a name")
                continue
            if not _XML_NAME.fullmatch(name):
                self.problem(
                    "survey", number, "name", f"{name!r} is not a valid name (letters, digits, _ . -)"
                )
                continue
            if name in names:
                self.problem(
                    "survey", number, "name", f"duplicate name {name!r} (first on row {names[name]})"
                )
                continue
            names[name] = number
            self._check_columns_apply(number, row, kind)
            if kind in ("begin_group", "begin_repeat"):
                opened = _Open(kind.removeprefix("begin_"), name, number, row)
                outer = next((o for o in reversed(stack) if o.kind == "repeat"), None)
                if opened.kind == "repeat" and outer is not None:
                    self.problem("survey", number, "type", _NESTED_REPEAT.format(outer=outer.name))
                stack.append(opened)
                continue
            technical = row.get("name::technical") or name
            if not _TECHNICAL_NAME.fullmatch(technical):
                self.problem(
                    "survey", number, "name::technical", f"{technical!r} is not a valid technical name"
                )
                continue
            if technical in technical_names:
                self.problem(
                    "survey",
                    number,
                    "name::technical",
                    f"duplicate technical name {technical!r} (first on row {technical_names[technical]})",
                )
                continue
            technical_names[technical] = number
            if parsed.constraint and not row.get("constraint"):
                row = {**row, "constraint": parsed.constraint}
            built = self._field(
                number, row, name, technical, FieldType(kind), list_name, stack, default_language
            )
            if built is None:
                continue
            if built.list_name is not None:
                if built.list_name not in codelists:
                    self.problem(
                        "survey", number, "type", f"list {built.list_name!r} is not in the choices sheet"
                    )
                elif built.type is FieldType.SELECT_MULTIPLE:
                    self._check_multiple_codes(number, codelists[built.list_name])
                elif built.choice_filter:
                    self._check_bare_names(number, built, choice_columns.get(built.list_name, frozenset()))
            current_children().append(built)
            if parsed.or_other:
                other = self._or_other(number, built, codelists, default_language)
                taken = other is not None and (
                    names.get(other.name) or technical_names.get(other.technical_name)
                )
                if other is not None and taken:
                    self.problem(
                        "survey",
                        number,
                        "type",
                        f"or_other adds {other.name!r}, a name row {taken} already has",
                    )
                elif other is not None:
                    names[other.name] = technical_names[other.technical_name] = number
                    current_children().append(other)
        for opened in reversed(stack):
            self.problem("survey", opened.row, "type", f"begin_{opened.kind} {opened.name!r} is never closed")
        return tuple(top)

    def _check_multiple_codes(self, number: int, codelist: Codelist) -> None:
        """A multiple selection's codes are sent space-separated (ODK) or |-separated (CSV):
        a code holding either would be read as two (pyxform refuses spaces too)."""
        bad = next(
            (c.name for c in codelist.choices if "|" in c.name or any(ch.isspace() for ch in c.name)), None
        )
        if bad is not None:
            self.problem(
                "survey",
                number,
                "type",
                f"list {codelist.name!r} has the code {bad!r}: a select_multiple's codes hold no space or |",
            )

    def _or_other(
        self, number: int, select: Field, codelists: dict[str, Codelist], default_language: str
    ) -> Field | None:
        """pyxform's ``or_other``: the list gets a code ``other`` and the form a text field
        ``NAME_other`` asked when it is chosen."""
        if select.choice_filter:
            self.problem(
                "survey", number, "choice_filter", "or_other and choice_filter do not go together (pyxform)"
            )
            return None
        codelist = codelists.get(select.list_name or "")
        if codelist is None:
            return None
        if (
            codelist.choice(_OTHER) is None
        ):  # a list given 'other' by the sheet or an earlier or_other keeps it
            other = Choice(name=_OTHER, labels=frozen_mapping({default_language: "Other"}))
            codelists[codelist.name] = Codelist(codelist.name, (*codelist.choices, other))
        return dataclasses.replace(
            select,
            name=f"{select.name}_other",
            technical_name=f"{select.technical_name}_other",
            type=FieldType.TEXT,
            list_name=None,
            labels=frozen_mapping({default_language: "Specify other."}),
            hints=frozen_mapping(),
            required=None,
            required_messages=frozen_mapping(),
            constraint=None,
            constraint_messages=frozen_mapping(),
            relevant=f"selected(${{{select.name}}}, '{_OTHER}')",
            calculation=None,
            default=None,
            choice_filter=None,
            appearance=None,
            destination_nippin=False,
            nippin_xml_name=None,
            nippin_relevant=None,
            extras=frozen_mapping(),
        )

    def _check_columns_apply(self, number: int, row: Mapping[str, str], kind: str) -> None:
        """A filled column that means nothing for this kind of row is a problem, not a rule
        silently dropped (a group has no required rule; a field no repeat count)."""
        if kind in ("end_group", "end_repeat"):
            applies = _END_COLUMNS
        elif kind == "begin_group":
            applies = _GROUP_COLUMNS
        elif kind == "begin_repeat":
            applies = _REPEAT_COLUMNS
        else:
            applies = _FIELD_COLUMNS
        for column, value in row.items():
            base = column.partition("::")[0] if column.startswith(_TRANSLATED) else column
            if value and base not in applies:
                what = "a field" if applies is _FIELD_COLUMNS else kind.replace("_", " ")
                self.problem("survey", number, column, f"{column!r} does not apply to {what}")

    def _parse(self, sheet: str, row: int, column: str, owner: str, text: str) -> str | None:
        if not text:
            return None
        try:
            node = parse_expression(text)
        except ExpressionSyntaxError as exc:
            self.problem(sheet, row, column, f"{exc.message} at position {exc.position} of {text!r}")
            return None
        self.expressions.append(_Expression(sheet, row, column, owner, node))
        return text

    def _check_bare_names(self, row: int, built: Field, columns: frozenset[str]) -> None:
        assert built.choice_filter is not None
        node = parse_expression(built.choice_filter)
        for bare in sorted(bare_names(node)):
            if bare not in columns:
                self.problem(
                    "survey",
                    row,
                    "choice_filter",
                    f"{bare!r} is not a column of list {built.list_name!r} in the choices sheet",
                )

    def _close(self, opened: _Open, stack: list[_Open], default_language: str) -> Item:
        values = opened.values
        labels = _translations(values, "label", default_language)
        group_path = tuple(o.name for o in stack)
        relevant = self._parse("survey", opened.row, "relevant", opened.name, values.get("relevant", ""))
        if opened.kind == "group":
            return Group(
                name=opened.name,
                labels=frozen_mapping(labels),
                relevant=relevant,
                group_path=group_path,
                children=tuple(opened.children),
                appearance=values.get("appearance") or None,
                row=opened.row,
            )
        repeat_count = self._parse(
            "survey", opened.row, "repeat_count", opened.name, values.get("repeat_count", "")
        )
        maximum = self._repeat_max(opened, repeat_count)
        return Repeat(
            name=opened.name,
            max_instances=maximum,
            labels=frozen_mapping(labels),
            relevant=relevant,
            repeat_count=repeat_count,
            group_path=group_path,
            children=tuple(_in_repeat(c, opened.name, maximum) for c in opened.children),
            appearance=values.get("appearance") or None,
            row=opened.row,
        )

    def _repeat_max(self, opened: _Open, repeat_count: str | None) -> int:
        """How many instances a repeat is flattened to (``_1`` .. ``_n``): ``hd::repeat_max``,
        else a plain number ``repeat_count``, else :data:`DEFAULT_REPEAT_MAX`."""
        written = opened.values.get("hd::repeat_max", "")
        maximum = _positive_int(written)
        if written and maximum is None:
            self.problem(
                "survey", opened.row, "hd::repeat_max", "hd::repeat_max is a whole number, at least 1"
            )
        count = _positive_int(repeat_count or "")
        if maximum is not None and count is not None and count > maximum:
            self.problem(
                "survey",
                opened.row,
                "repeat_count",
                f"repeat_count {count} is more than hd::repeat_max {maximum}, the instances the CSV and API carry",
            )
        return maximum or count or DEFAULT_REPEAT_MAX

    def _field(
        self,
        number: int,
        row: dict[str, str],
        name: str,
        technical: str,
        kind: FieldType,
        list_name: str | None,
        stack: list[_Open],
        default_language: str,
    ) -> Field | None:
        def parse(column: str) -> str | None:
            return self._parse("survey", number, column, name, row.get(column, ""))

        required_text = row.get("required", "")
        required: str | None
        if required_text.lower() in _YES:
            required = "true()"
        elif required_text.lower() in _NO:
            required = None
        else:
            required = parse("required")
        read_only = _flag(row.get("read_only", ""))
        if read_only is None:
            self.problem("survey", number, "read_only", "read_only is yes or no")
            read_only = False
        calculation = parse("calculation")
        if kind is FieldType.CALCULATE and not row.get("calculation"):
            self.problem("survey", number, "calculation", "a calculate row needs a calculation")
        number_format: NumberFormat | None = None
        if row.get("hd::number_format"):
            try:
                number_format = NumberFormat.parse(row["hd::number_format"])
            except ValueError as exc:
                self.problem("survey", number, "hd::number_format", str(exc))
            else:
                if kind not in (FieldType.INTEGER, FieldType.DECIMAL):
                    self.problem(
                        "survey",
                        number,
                        "hd::number_format",
                        "a number format applies to integer and decimal",
                    )
                    number_format = None
        format_ = row.get("hd::format", "").lower() or None
        if format_ is not None:
            if format_ != "ssin":
                self.problem("survey", number, "hd::format", f"unknown format {format_!r} (known: ssin)")
                format_ = None
            elif kind is not FieldType.TEXT:
                self.problem("survey", number, "hd::format", "the ssin format applies to text fields")
                format_ = None
        flags: dict[str, bool] = {}
        for column, default in (
            ("hd::personal_data", False),
            ("destination::hd", True),
            ("destination::nippin", False),
        ):
            flag = _flag(row.get(column, "")) if row.get(column) else default
            if flag is None:
                self.problem("survey", number, column, f"{column} is yes or no")
                flag = default
            flags[column] = flag
        self.check_nippin_columns(row, number, bound=flags["destination::nippin"])
        default_value = row.get("default") or None
        if default_value is not None and is_expression_text(default_value):
            parse("default")  # an expression (today()); see Field.default_is_expression
        choice_filter = parse("choice_filter")
        if choice_filter is not None and list_name is None:
            self.problem("survey", number, "choice_filter", "a choice_filter belongs to a select field")
            choice_filter = None
        labels = _translations(row, "label", default_language)
        hints = _translations(row, "hint", default_language)
        required_messages = _translations(row, "required_message", default_language)
        constraint_messages = _translations(row, "constraint_message", default_language)
        known = _KNOWN_SURVEY_COLUMNS
        extras = {
            k: v
            for k, v in row.items()
            if v and k not in known and not any(_is_translated(k, t) for t in _TRANSLATED)
        }
        return Field(
            name=name,
            type=kind,
            technical_name=technical,
            labels=frozen_mapping(labels),
            hints=frozen_mapping(hints),
            list_name=list_name,
            required=required,
            required_messages=frozen_mapping(required_messages),
            constraint=parse("constraint"),
            constraint_messages=frozen_mapping(constraint_messages),
            relevant=parse("relevant"),
            calculation=calculation,
            default=default_value,
            read_only=read_only,
            choice_filter=choice_filter,
            appearance=row.get("appearance") or None,
            number_format=number_format,
            format=format_,
            personal_data=flags["hd::personal_data"],
            destination_hd=flags["destination::hd"],
            destination_nippin=flags["destination::nippin"],
            nippin_xml_name=row.get("destination::nippin_xml_name") or None,
            nippin_relevant=parse("destination::nippin_relevant"),
            group_path=tuple(o.name for o in stack),
            row=number,
            extras=frozen_mapping(extras),
        )

    # -- NIPPIN ----------------------------------------------------------------------

    def check_nippin_columns(self, row: Mapping[str, str], number: int, *, bound: bool) -> None:
        """``destination::nippin_xml_name`` and ``_relevant`` belong to a field bound for
        NIPPIN; the xml name becomes an element of the message, so it is an XML name."""
        for column in ("destination::nippin_xml_name", "destination::nippin_relevant"):
            if row.get(column) and not bound:
                self.problem("survey", number, column, f"{column} needs destination::nippin = yes")
        xml_name = row.get("destination::nippin_xml_name", "")
        if xml_name and not _XML_NAME.fullmatch(xml_name):
            self.problem(
                "survey", number, "destination::nippin_xml_name", f"{xml_name!r} is no XML element name"
            )

    def check_nippin_message(self, settings: Mapping[str, str], survey: tuple[Item, ...]) -> None:
        """A DCD naming a NIPPIN message (settings ``nippin_message``) is a reimbursed
        registry: one message per registration, so its bound fields are outside repeats,
        and it binds at least one."""
        message = settings.get("nippin_message")
        if not message:
            return
        if message not in NIPPIN_MESSAGES:
            known = ", ".join(NIPPIN_MESSAGES)
            self.problem(
                "settings", 2, "nippin_message", f"unknown NIPPIN message {message!r} (known: {known})"
            )
        bound = [f for f in _fields(survey) if f.destination_nippin]
        if not bound:
            self.problem(
                "settings",
                2,
                "nippin_message",
                "a NIPPIN message needs fields with destination::nippin = yes",
            )
        for f in bound:
            if f.repeat is not None:
                self.problem(
                    "survey",
                    f.row,
                    "destination::nippin",
                    f"{f.name} is in repeat {f.repeat!r}: one message per registration",
                )

    # -- references ------------------------------------------------------------------

    def check_references(self, survey: tuple[Item, ...]) -> None:
        """Every ``${name}`` names a field, and only the same repeat reaches into a repeat."""
        items: dict[str, Item] = {}

        def visit(children: tuple[Item, ...]) -> None:
            for item in children:
                items[item.name] = item
                if isinstance(item, Group | Repeat):
                    visit(item.children)

        visit(survey)
        for expression in self.expressions:
            owner = items.get(expression.owner)
            owner_repeat = _repeat_of(owner) if owner is not None else None
            where = (expression.sheet, expression.row, expression.column)
            plain = plain_references(expression.node)
            for ref in sorted(field_references(expression.node)):
                target = items.get(ref)
                if target is None:
                    self.problem(*where, f"unknown field ${{{ref}}}")
                elif isinstance(target, Group):
                    self.problem(*where, f"${{{ref}}} is a group, not a field")
                elif ref not in plain:
                    continue  # an argument of count(), sum()...: the compiler checks its shape
                elif isinstance(target, Repeat):
                    self.problem(*where, f"${{{ref}}} is a repeat: count(${{{ref}}}) counts its instances")
                elif target.repeat is not None and target.repeat != owner_repeat:
                    self.problem(
                        *where,
                        f"${{{ref}}} is inside repeat {target.repeat!r}: outside it, use it in count(), "
                        "sum(), min(), max(), join(), count-non-empty() or indexed-repeat()",
                    )
            for ref in sorted(choice_name_fields(expression.node)):
                target = items.get(ref)
                if not isinstance(target, Field) or target.list_name is None:
                    self.problem(*where, f"jr:choice-name() names ${{{ref}}}, which is not a select field")
            if bare_names(expression.node) and expression.column != "choice_filter":
                bare = sorted(bare_names(expression.node))[0]
                self.problem(
                    expression.sheet,
                    expression.row,
                    expression.column,
                    f"bare name {bare!r}: refer to a field as ${{{bare}}}",
                )


_KNOWN_SURVEY_COLUMNS = frozenset(
    {
        "type",
        "name",
        "name::technical",
        "required",
        "constraint",
        "relevant",
        "calculation",
        "default",
        "read_only",
        "choice_filter",
        "repeat_count",
        "appearance",
        "hd::repeat_max",
        "hd::number_format",
        "hd::format",
        "hd::personal_data",
        "destination::hd",
        "destination::nippin",
        "destination::nippin_xml_name",
        "destination::nippin_relevant",
    }
)


_END_COLUMNS = frozenset({"type", "name"})  # the rules of a group are on its begin row
_GROUP_COLUMNS = frozenset({"type", "name", "label", "relevant", "appearance"})
_REPEAT_COLUMNS = _GROUP_COLUMNS | {"repeat_count", "hd::repeat_max"}
_FIELD_COLUMNS = (_KNOWN_SURVEY_COLUMNS | set(_TRANSLATED)) - {"repeat_count", "hd::repeat_max"}

# pyxform's other spellings of the survey columns read here (its aliases.survey_header and
# the bind::/control:: names those resolve to), lower-cased: a workbook written for pyxform
# keeps its skip logic and required rules.
_SURVEY_ALIASES: Mapping[str, str] = {
    **{column: column for column in (*_KNOWN_SURVEY_COLUMNS, *_TRANSLATED)},
    "relevance": "relevant",
    "bind::relevant": "relevant",
    "readonly": "read_only",
    "bind::readonly": "read_only",
    "bind::required": "required",
    "bind::constraint": "constraint",
    "calculate": "calculation",
    "bind::calculate": "calculation",
    "count": "repeat_count",
    "jr:count": "repeat_count",
    "control::jr:count": "repeat_count",
    "control::appearance": "appearance",
    "caption": "label",
    "command": "type",
    "constraining_message": "constraint_message",
    "requiredmsg": "required_message",
    "jr:requiredmsg": "required_message",
    "bind::jr:requiredmsg": "required_message",
    "required message": "required_message",
    "constraint message": "constraint_message",
    "constraining message": "constraint_message",
    "jr:constraintmsg": "constraint_message",
    "bind::jr:constraintmsg": "constraint_message",
}
_CHOICES_ALIASES: Mapping[str, str] = {
    "list_name": "list_name",
    "list name": "list_name",
    "name": "name",
    "value": "name",
    "label": "label",
    "caption": "label",
}

# The settings read (XLSForm's and our ``source``), with pyxform's "set form ..." spellings.
_SETTINGS_ALIASES: Mapping[str, str] = {
    "form_title": "form_title",
    "set form title": "form_title",
    "set_form_title": "form_title",
    "form_id": "form_id",
    "set form id": "form_id",
    "set_form_id": "form_id",
    "version": "version",
    "default_language": "default_language",
    "source": "source",
    "nippin_message": "nippin_message",
}
#: The NIPPIN messages a DCD may name (settings ``nippin_message``): the bodies of the
#: message XSD nippin validates against (services/nippin, xsd/).
NIPPIN_MESSAGES = ("implant",)
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


def _fields(items: Iterable[Item]) -> Iterator[Field]:
    for item in items:
        if isinstance(item, Field):
            yield item
        elif isinstance(item, Group | Repeat):
            yield from _fields(item.children)


_HD_KEYS = frozenset(
    {
        "project_code",
        "project_abbreviation",
        "project_title",
        "dcd_code",
        "dcd_number",
        "dcd_title",
        "business_key",
    }
)
_HD_TRANSLATED = ("project_title::", "dcd_title::")


def _canonical_column(header: str, sheet: str) -> str | None:
    """The column ``header`` of ``sheet`` is read as, None when it is not read.

    ``relevance`` and ``bind::relevant`` give ``relevant``; a translated column is
    ``base::Language`` or pyxform's older ``base:Language`` (``label:English``,
    ``jr:constraintMsg:French``), both given as ``base::Language``. On the choices sheet
    every other column is a column of the list, for ``choice_filter``."""
    if sheet == "settings":
        return _SETTINGS_ALIASES.get(header.lower())
    aliases = _SURVEY_ALIASES if sheet == "survey" else _CHOICES_ALIASES
    translated = _TRANSLATED if sheet == "survey" else ("label",)
    known = aliases.get(header.lower())
    if known is not None:
        return known
    for separator in ("::", ":"):
        base, _, language = header.rpartition(separator)
        base = aliases.get(base.lower(), "")
        if base in translated and language.strip():
            return f"{base}::{language_code(language)}"
    return None if sheet == "survey" else header


_MEDIA_COLUMN = "a DCD carries no images, audio or video: the forms show its labels and hints"


def _is_media_column(header: str) -> bool:
    base = header.lower().removeprefix("media::").split(":")[0]
    return base in ("image", "big-image", "audio", "video")


def _repeat_of(item: Item) -> str | None:
    if isinstance(item, Field):
        return item.repeat
    if isinstance(item, Repeat):
        return item.name
    return None


def _in_repeat(item: Item, repeat: str, maximum: int) -> Item:
    """Mark a repeat's fields (also inside its groups) with the repeat and its size."""
    if isinstance(item, Field):
        return _replace_field(item, repeat=repeat, repeat_max=maximum)
    if isinstance(item, Group):
        return Group(
            name=item.name,
            labels=item.labels,
            relevant=item.relevant,
            group_path=item.group_path,
            children=tuple(_in_repeat(c, repeat, maximum) for c in item.children),
            appearance=item.appearance,
            row=item.row,
        )
    return item


def _replace_field(item: Field, *, repeat: str, repeat_max: int) -> Field:
    return dataclasses.replace(item, repeat=repeat, repeat_max=repeat_max)


def _is_translated(column: str, base: str) -> bool:
    return column == base or column.startswith(base + "::")


def _translations(row: Mapping[str, str], base: str, default_language: str) -> dict[str, str]:
    """``label``, ``label::fr``, ``label::English (en)``... as {language: text}."""
    texts: dict[str, str] = {}
    for column, value in row.items():
        if column == base:
            lang = default_language
        elif column.startswith(base + "::"):
            lang = language_code(column[len(base) + 2 :])
        else:
            continue
        if value:
            texts[lang] = value
    return texts


@dataclass(frozen=True, slots=True)
class _Type:
    """A survey row's type as read: a field type, ``begin_group``... or None, with why not."""

    kind: str | None
    list_name: str | None = None
    or_other: bool = False
    constraint: str | None = None  # the rule the type brings (pyxform's phone number)
    refused: str | None = None


# pyxform's spellings of each type (question_type_dictionary.py and aliases.py), lower-cased.
_FIELD_TYPES: Mapping[str, str] = {
    **dict.fromkeys(("text", "string", "q string", "add text prompt", "phone number"), "text"),
    **dict.fromkeys(("integer", "int", "q int", "add integer prompt"), "integer"),
    **dict.fromkeys(("decimal", "q decimal", "add decimal prompt"), "decimal"),
    **dict.fromkeys(("date", "q date", "add date prompt"), "date"),
    **dict.fromkeys(("time", "q time", "add time prompt"), "time"),
    **dict.fromkeys(
        ("datetime", "date time", "q date time", "q datetime", "add date time prompt", "add datetime prompt"),
        "datetime",
    ),
    **dict.fromkeys(("note", "q note", "add note prompt"), "note"),
    **dict.fromkeys(("calculate", "q calculate", "add calculate prompt"), "calculate"),
}
_SELECT_TYPES: Mapping[str, str] = {
    **dict.fromkeys(
        (
            "select_one",
            "select one",
            "select1",
            "q select1",
            "select one from",
            "select one using",
            "add select one prompt using",
        ),
        "select_one",
    ),
    **dict.fromkeys(
        (
            "select_multiple",
            "select all that apply",
            "select all that apply from",
            "select multiple from",
            "select multiple using",
            "q select",
            "add select multiple prompt using",
        ),
        "select_multiple",
    ),
}
_GROUP_TYPES: Mapping[str, str] = {
    **dict.fromkeys(("begin group", "begin_group"), "begin_group"),
    **dict.fromkeys(("end group", "end_group"), "end_group"),
    **dict.fromkeys(("begin repeat", "begin_repeat", "begin looped group", "begin lgroup"), "begin_repeat"),
    **dict.fromkeys(("end repeat", "end_repeat", "end looped group", "end lgroup"), "end_repeat"),
}
_OR_OTHER = (" or_other", " or specify other")
_OTHER = "other"
_PHONE_NUMBER = "regex(., '^[0-9]*$')"  # pyxform's phone number: digits only
_NESTED_REPEAT = (
    "a repeat inside repeat {outer!r}: hdhub's CSV and API name a repeated field with one "
    "instance number (DT_PCI_2), and a repeat inside a repeat would need two; flatten the "
    "inner repeat into fields of the outer one, or make it a repeat of its own"
)
# The types of pyxform that hdhub refuses, and why.
_GEOGRAPHIC = "hdhub has no geographic fields"
_MEDIA = "a registration carries no files or media (NGS and HIV sequence files come through intake)"
_METADATA = (
    "the platform records who sent a registration and when itself; a DCD holds the registry's questions"
)
_EXTERNAL = "choices come from the choices sheet: a DCD has no external files"
_REFUSED_TYPES: Mapping[str, str] = {
    **dict.fromkeys(("geopoint", "geotrace", "geoshape", "gps", "location", "start-geopoint"), _GEOGRAPHIC),
    **dict.fromkeys(
        ("q geopoint", "q geotrace", "q geoshape", "q location", "add location prompt"), _GEOGRAPHIC
    ),
    **dict.fromkeys(("image", "photo", "audio", "video", "file", "barcode", "background-audio"), _MEDIA),
    **dict.fromkeys(("q picture", "q image", "q audio", "q video", "q barcode"), _MEDIA),
    **dict.fromkeys(("add image prompt", "add photo prompt", "add audio prompt", "add video prompt"), _MEDIA),
    **dict.fromkeys(("add file prompt", "add barcode prompt"), _MEDIA),
    **dict.fromkeys(
        ("start", "end", "today", "deviceid", "imei", "username", "email", "phonenumber", "simserial"),
        _METADATA,
    ),
    **dict.fromkeys(("subscriberid", "audit", "start time", "end time", "get today", "device id"), _METADATA),
    **dict.fromkeys(
        ("uri:deviceid", "uri:username", "uri:email", "uri:phonenumber", "uri:simserial"), _METADATA
    ),
    **dict.fromkeys(("uri:subscriberid", "get start time", "get end time", "get device id"), _METADATA),
    **dict.fromkeys(("select_one_from_file", "select_multiple_from_file", "select one from file"), _EXTERNAL),
    **dict.fromkeys(("select multiple from file", "select_one_external", "select one external"), _EXTERNAL),
    **dict.fromkeys(("csv-external", "xml-external"), _EXTERNAL),
    "acknowledge": "take a select_one with a yes/no list: an acknowledgement is no value a registry keeps",
    "trigger": "take a select_one with a yes/no list: an acknowledgement is no value a registry keeps",
    "q acknowledge": "take a select_one with a yes/no list: an acknowledgement is no value a registry keeps",
    "range": "take an integer or decimal with a constraint: the range widget is the form's business",
    "rank": "ranking is no value the healthdata CSV and API carry",
    "hidden": "take a calculate field",
    "include": "pyxform's include of another workbook: copy its rows into this survey",
    "begin loop": "pyxform's loop over a list: write its questions out, or take a repeat",
    "end loop": "pyxform's loop over a list: write its questions out, or take a repeat",
    "osm": "hdhub has no OpenStreetMap fields",
}


def _parse_type(text: str) -> _Type:
    """A type cell as read: pyxform's spellings of each type included."""
    lowered = text.lower()
    if lowered in _GROUP_TYPES:
        return _Type(_GROUP_TYPES[lowered])
    if lowered in _FIELD_TYPES:
        constraint = _PHONE_NUMBER if lowered == "phone number" else None
        return _Type(_FIELD_TYPES[lowered], constraint=constraint)
    suffix = next((end for end in _OR_OTHER if lowered.endswith(end)), "")
    or_other = bool(suffix)
    text = text[: len(text) - len(suffix)]
    head, _, list_name = text.rpartition(" ")
    select = _SELECT_TYPES.get(head.lower())
    if select is not None and list_name:
        return _Type(select, list_name, or_other=or_other)
    refused = _REFUSED_TYPES.get(lowered) or _REFUSED_TYPES.get(lowered.split(" over ")[0])
    refused = refused or _REFUSED_TYPES.get(head.lower())
    return _Type(None, refused=refused)


def _flag(text: str) -> bool | None:
    lowered = text.strip().lower()
    if lowered in _YES:
        return True
    if lowered in _NO:
        return False
    return None


def _positive_int(text: str) -> int | None:
    text = text.strip()
    if text.isascii() and text.isdigit() and int(text) > 0:
        return int(text)
    return None


def _languages(sheets: Mapping[str, _Sheet], default_language: str) -> tuple[str, ...]:
    found: list[str] = [default_language]
    for sheet_name in ("survey", "choices"):
        sheet = sheets.get(sheet_name)
        if sheet is None:
            continue
        for header in sheet.headers:
            for base in _TRANSLATED:
                if header.startswith(base + "::"):
                    lang = language_code(header[len(base) + 2 :])
                    if lang not in found:
                        found.append(lang)
    return tuple(found)


def _read_sheets(source: bytes | pathlib.Path) -> dict[str, _Sheet]:
    data = source.read_bytes() if isinstance(source, pathlib.Path) else source
    if data.startswith(_OLE2):
        raise WorkbookError([Problem("workbook", None, None, _XLS)])
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a bad file
        raise WorkbookError(
            [Problem("workbook", None, None, f"not an xlsx workbook ({type(exc).__name__})")]
        ) from None
    try:
        # Sheet names are read as pyxform reads them, whatever their case (SURVEY, Choices).
        return {name.lower(): _read_sheet(workbook[name], name.lower()) for name in workbook.sheetnames}
    finally:
        workbook.close()


# An .xls workbook (Excel 97-2003) is an OLE2 compound file: openpyxl reads only .xlsx.
_OLE2 = bytes.fromhex("d0cf11e0a1b11ae1")
_XLS = (
    "this is an .xls workbook (Excel 97-2003), which hdhub does not read: open it in your "
    "spreadsheet program and save it as .xlsx (Excel Workbook), then import that file"
)


def read_workbook(source: bytes | pathlib.Path) -> DcdDefinition:
    """Read a DCD workbook; raises :class:`WorkbookError` listing every problem found."""
    sheets = _read_sheets(source)
    reader = _Reader(sheets)
    settings = reader.settings()
    hd, hd_rows = reader.hd()

    version = SemVer(0, 0, 0)
    if "version" not in settings:
        reader.problem("settings", 2, "version", "the version is missing")
    else:
        try:
            version = SemVer.parse(settings["version"])
        except ValueError as exc:
            reader.problem("settings", 2, "version", f"{settings['version']!r}: {exc}")
    default_language = language_code(settings.get("default_language", "") or "en")

    codelists, choice_columns = reader.choices(default_language)
    survey = reader.survey(default_language, codelists, choice_columns)  # or_other adds to the lists
    reader.check_references(survey)
    reader.check_nippin_message(settings, survey)

    for key in ("project_code", "project_abbreviation", "dcd_code", "dcd_number", "business_key"):
        if not hd.get(key):
            reader.problem("hd", hd_rows.get(key), "value", f"the hd key {key!r} is missing")
    project_code = hd.get("project_code", "")
    if project_code and not _PROJECT_CODE.fullmatch(project_code):
        reader.problem(
            "hd", hd_rows["project_code"], "value", f"project_code {project_code!r} is not HDBPnnnn"
        )
    dcd_code = hd.get("dcd_code", "")
    if dcd_code and not _DCD_CODE.fullmatch(dcd_code):
        reader.problem(
            "hd",
            hd_rows["dcd_code"],
            "value",
            f"dcd_code {dcd_code!r} is not a code: a letter, then letters, digits and _ (at most 64)",
        )
    form_id = settings.get("form_id", "")
    if form_id and dcd_code and form_id != dcd_code:
        reader.problem(
            "settings",
            2,
            "form_id",
            f"form_id {form_id!r} names another form than the hd sheet's dcd_code {dcd_code!r}: "
            "leave it empty or make it the same",
        )
    dcd_number_text = hd.get("dcd_number", "")
    dcd_number = 0
    if dcd_number_text:
        if _DCD_NUMBER.fullmatch(dcd_number_text):
            dcd_number = int(dcd_number_text)
        else:
            reader.problem(
                "hd", hd_rows["dcd_number"], "value", f"dcd_number {dcd_number_text!r} is not 1 to 3 digits"
            )
    business_key = tuple(k.strip() for k in hd.get("business_key", "").split(",") if k.strip())
    project_titles = {
        language_code(k.split("::", 1)[1]): v for k, v in hd.items() if k.startswith("project_title::")
    }
    dcd_titles = {language_code(k.split("::", 1)[1]): v for k, v in hd.items() if k.startswith("dcd_title::")}
    if hd.get("project_title"):
        project_titles.setdefault(default_language, hd["project_title"])
    if hd.get("dcd_title"):
        dcd_titles.setdefault(default_language, hd["dcd_title"])

    if reader.problems:
        raise WorkbookError(reader.problems)

    definition = DcdDefinition(
        project_code=project_code,
        project_abbreviation=hd["project_abbreviation"],
        dcd_code=hd["dcd_code"],
        dcd_number=dcd_number,
        version=version,
        survey=survey,
        codelists=codelists,
        project_titles=frozen_mapping(project_titles),
        dcd_titles=frozen_mapping(dcd_titles),
        default_language=default_language,
        languages=_languages(sheets, default_language),
        business_key=business_key,
        settings=frozen_mapping(settings),
        source=settings.get("source") or None,
    )
    _check_definition(definition, hd_rows, reader.spelling)
    return definition


def _check_definition(
    definition: DcdDefinition, hd_rows: Mapping[str, int], spelling: Mapping[tuple[str, str], str]
) -> None:
    """What needs the whole definition: flattened names, the business key, compilation."""
    from hdhub.registrations.engine.validation import DcdCompileError, compile_dcd

    problems: list[Problem] = []
    owners: dict[str, Field] = {}
    for f in definition.fields:
        for flat in f.flat_names:
            other = owners.get(flat)
            if other is not None and other is not f:
                problems.append(
                    Problem(
                        "survey",
                        f.row,
                        "name::technical",
                        f"{flat!r} (a flattened repeat name) is also the name on row {other.row}",
                    )
                )
            owners[flat] = f
    for key in definition.business_key:
        try:
            key_field = definition.field(key)
        except KeyError:
            problems.append(
                Problem("hd", hd_rows.get("business_key"), "value", f"business key {key!r} is not a field")
            )
            continue
        if key_field.repeat is not None or not key_field.is_input:
            problems.append(
                Problem(
                    "hd",
                    hd_rows.get("business_key"),
                    "value",
                    f"business key {key!r} must be a field outside repeats",
                )
            )
    if not problems:
        try:
            compile_dcd(definition)
        except DcdCompileError as exc:
            problems.extend(
                Problem("survey", p.row, spelling.get(("survey", p.column or ""), p.column), p.message)
                for p in exc.problems
            )
    if problems:
        raise WorkbookError(problems)
