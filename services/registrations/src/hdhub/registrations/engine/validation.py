"""The validation engine: a DCD version compiled once, then run over records.

:func:`compile_dcd` turns a :class:`DcdDefinition` into a :class:`CompiledDcd` (cached):
one parse function per field chosen by its type (code sets, number formats and SSIN
checks built in), every expression compiled to closures with ``${name}`` resolved to a
slot, and one order for everything that depends on other values (group and field
relevance, repeat counts, calculations, dynamic defaults). Running a record is then a
loop over its values and a short list of precompiled steps.

What a record goes through, in this order:

1. every key is looked up (an unknown one is an ``unknown_field`` error) and its value
   parsed to the canonical form of docs/dcd-format.md (``type``, ``number_format``,
   ``choice``, ``ssin`` errors); ``''`` and None are missing values;
2. in dependency order: relevance (a submitted value of a field that does not apply is
   dropped with a ``not_relevant`` warning), repeat counts (values in instances beyond
   the count are ``repeat_count`` errors), calculations and defaults;
3. ``required``, ``constraint`` and ``choice_filter`` over the final values.

No message carries a submitted value: patient identifiers must never reach error
reports or logs.
"""

from __future__ import annotations

import datetime
import heapq
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from operator import itemgetter
from typing import Any

from hdhub.common.patient_names import NAME_FIELDS, normalise_name
from hdhub.common.ssin import InvalidSsin, SsinReason, ssin_message, validated_ssin
from hdhub.registrations.engine.dcd import DcdDefinition, Field, FieldType, Group, Item, Repeat, translate
from hdhub.registrations.engine.expressions import (
    Context,
    Evaluator,
    ExpressionError,
    FieldSlot,
    Node,
    RepeatSlot,
    compile_expression,
    field_references,
    is_constant,
    parse_expression,
    returns_boolean,
    uses_current_value,
    xpath_boolean,
    xpath_number,
    xpath_string,
)
from hdhub.registrations.engine.xpath import local_now

__all__ = [
    "ROW_STATUSES",
    "UPLOAD_METADATA_FIELDS",
    "CompiledDcd",
    "CompileProblem",
    "FormState",
    "DcdCompileError",
    "FieldError",
    "Validation",
    "compile_dcd",
]

#: Columns the Upload Center may send with any record; they are not DCD fields and are
#: skipped (not errors, not values) unless the DCD itself defines them.
UPLOAD_METADATA_FIELDS = frozenset({"TX_AUTHOR_GR", "TX_AUTHOR", "TX_COAUTHOR", "STATUS"})

#: A record's own ``STATUS`` (HD4DP v2): ``draft`` keeps it Open, ``submit`` sends it;
#: empty leaves the choice to the caller (the upload's autosubmit setting). Read
#: case-insensitively; a DCD that defines a STATUS field of its own keeps it as a value.
ROW_STATUSES: Mapping[str, bool] = {"draft": False, "submit": True, "submitted": True}


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class FieldError:
    """One broken rule: ``field`` as sent (``DT_PCI_2``), ``path`` in the form, ``rule``, ``message``."""

    field: str
    path: str
    rule: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "path": self.path, "rule": self.rule, "message": self.message}


@dataclass(slots=True)
class Validation:
    """The outcome for one record: canonical ``values``, ``errors`` and ``warnings``."""

    values: dict[str, Any]
    errors: list[FieldError]
    warnings: list[FieldError]
    #: What the record's own STATUS column asks for: True submit, False draft, None unsaid.
    submit: bool | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(slots=True)
class FormState:
    """A partial record as a form shows it (the portal's data entry): the validation of
    the record as it stands, the flat names of the fields that do not apply (skip logic,
    a group's relevance) and of those required now, whatever their value."""

    validation: Validation
    inactive: frozenset[str]
    required: frozenset[str]


@dataclass(frozen=True, slots=True)
class CompileProblem:
    row: int | None
    column: str | None
    message: str


class DcdCompileError(ValueError):
    """The definition cannot be compiled (a bad default, a cycle of calculations...)."""

    def __init__(self, problems: Iterable[CompileProblem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(p.message for p in self.problems))


# --------------------------------------------------------------------------- messages

_MESSAGES: Mapping[str, Mapping[str, str]] = {
    "required": {
        "en": "This field is required.",
        "fr": "Ce champ est obligatoire.",
        "nl": "Dit veld is verplicht.",
        "de": "Dieses Feld ist ein Pflichtfeld.",
    },
    "constraint": {
        "en": "The value does not meet the condition of this field.",
        "fr": "La valeur ne respecte pas la condition de ce champ.",
        "nl": "De waarde voldoet niet aan de voorwaarde van dit veld.",
        "de": "Der Wert erfüllt die Bedingung dieses Feldes nicht.",
    },
    "type:text": {
        "en": "Enter text.",
        "fr": "Saisissez du texte.",
        "nl": "Geef tekst in.",
        "de": "Geben Sie einen Text ein.",
    },
    "name": {
        "en": "A name needs at least one letter or digit.",
        "fr": "Un nom doit contenir au moins une lettre ou un chiffre.",
        "nl": "Een naam moet minstens één letter of cijfer bevatten.",
        "de": "Ein Name muss mindestens einen Buchstaben oder eine Ziffer enthalten.",
    },
    "type:integer": {
        "en": "Enter a whole number.",
        "fr": "Saisissez un nombre entier.",
        "nl": "Geef een geheel getal in.",
        "de": "Geben Sie eine ganze Zahl ein.",
    },
    "type:decimal": {
        "en": "Enter a number, with a point as the decimal separator.",
        "fr": "Saisissez un nombre, avec un point comme séparateur décimal.",
        "nl": "Geef een getal in, met een punt als decimaalteken.",
        "de": "Geben Sie eine Zahl mit einem Punkt als Dezimaltrennzeichen ein.",
    },
    "type:date": {
        "en": "Enter an existing date as dd/mm/yyyy.",
        "fr": "Saisissez une date existante au format jj/mm/aaaa.",
        "nl": "Geef een bestaande datum in als dd/mm/jjjj.",
        "de": "Geben Sie ein existierendes Datum im Format TT/MM/JJJJ ein.",
    },
    "type:time": {
        "en": "Enter a time as HH:MM (24 hours).",
        "fr": "Saisissez une heure au format HH:MM (24 heures).",
        "nl": "Geef een tijdstip in als UU:MM (24 uur).",
        "de": "Geben Sie eine Uhrzeit im Format HH:MM (24 Stunden) ein.",
    },
    "type:datetime": {
        "en": "Enter an existing date and time as dd/mm/yyyy HH:MM.",
        "fr": "Saisissez une date et une heure existantes au format jj/mm/aaaa HH:MM.",
        "nl": "Geef een bestaande datum en tijd in als dd/mm/jjjj UU:MM.",
        "de": "Geben Sie ein existierendes Datum mit Uhrzeit im Format TT/MM/JJJJ HH:MM ein.",
    },
    "type:select": {
        "en": "Enter codes from the code list.",
        "fr": "Saisissez des codes de la liste de codes.",
        "nl": "Geef codes uit de codelijst in.",
        "de": "Geben Sie Codes aus der Codeliste ein.",
    },
    "number_format": {
        "en": "Enter at most {before} digits before and {after} digits after the decimal point.",
        "fr": "Saisissez au plus {before} chiffres avant et {after} chiffres après le point décimal.",
        "nl": "Geef hoogstens {before} cijfers voor en {after} cijfers na het decimaalteken in.",
        "de": "Geben Sie höchstens {before} Ziffern vor und {after} Ziffern nach dem Dezimalpunkt ein.",
    },
    "number_format:integer": {
        "en": "Enter at most {before} digits.",
        "fr": "Saisissez au plus {before} chiffres.",
        "nl": "Geef hoogstens {before} cijfers in.",
        "de": "Geben Sie höchstens {before} Ziffern ein.",
    },
    "choice": {
        "en": "This code is not in the code list {list}.",
        "fr": "Ce code ne figure pas dans la liste de codes {list}.",
        "nl": "Deze code staat niet in de codelijst {list}.",
        "de": "Dieser Code ist nicht in der Codeliste {list} enthalten.",
    },
    "choice_filter": {
        "en": "This code is not allowed here, given the other answers.",
        "fr": "Ce code n'est pas autorisé ici, compte tenu des autres réponses.",
        "nl": "Deze code is hier niet toegestaan, gezien de andere antwoorden.",
        "de": "Dieser Code ist hier angesichts der anderen Antworten nicht zulässig.",
    },
    "unknown_field": {
        "en": "This field is not part of the data collection definition.",
        "fr": "Ce champ ne fait pas partie de la définition de la collecte de données.",
        "nl": "Dit veld maakt geen deel uit van de definitie van de gegevensverzameling.",
        "de": "Dieses Feld gehört nicht zur Definition der Datenerhebung.",
    },
    "repeat_count": {
        "en": "Only {count} occurrence(s) are expected here: this one must stay empty.",
        "fr": "Seules {count} occurrence(s) sont attendues ici : celle-ci doit rester vide.",
        "nl": "Hier worden maar {count} herhaling(en) verwacht: deze moet leeg blijven.",
        "de": "Hier werden nur {count} Wiederholung(en) erwartet: diese muss leer bleiben.",
    },
    "repeat_max": {
        "en": "At most {max} occurrence(s) can be sent here: the count asks for more.",
        "fr": "Au plus {max} occurrence(s) peuvent être envoyées ici : le nombre en demande davantage.",
        "nl": "Hier kunnen hoogstens {max} herhaling(en) worden verzonden: het aantal vraagt er meer.",
        "de": "Hier können höchstens {max} Wiederholung(en) gesendet werden: die Anzahl verlangt mehr.",
    },
    "not_relevant": {
        "en": "This field does not apply, given the other answers: its value was ignored.",
        "fr": "Ce champ ne s'applique pas, compte tenu des autres réponses : sa valeur a été ignorée.",
        "nl": "Dit veld is niet van toepassing, gezien de andere antwoorden: de waarde werd genegeerd.",
        "de": "Dieses Feld trifft angesichts der anderen Antworten nicht zu: sein Wert wurde ignoriert.",
    },
    "calculation": {
        "en": "This computed value could not be obtained from the other answers.",
        "fr": "Cette valeur calculée n'a pas pu être obtenue à partir des autres réponses.",
        "nl": "Deze berekende waarde kon niet uit de andere antwoorden worden afgeleid.",
        "de": "Dieser berechnete Wert konnte nicht aus den anderen Antworten ermittelt werden.",
    },
    "status": {
        "en": "STATUS must be draft (save, do not submit) or submit; leave it empty to follow the upload's setting.",
        "fr": "STATUS doit valoir draft (enregistrer sans soumettre) ou submit ; laissez-le vide pour suivre le paramètre de l'envoi.",
        "nl": "STATUS moet draft (bewaren, niet indienen) of submit zijn; laat het leeg om de instelling van de upload te volgen.",
        "de": "STATUS muss draft (speichern, nicht einreichen) oder submit sein; leer lassen, um der Einstellung des Uploads zu folgen.",
    },
    "expression": {
        "en": "A rule of this field could not be evaluated; please report it to the registry.",
        "fr": "Une règle de ce champ n'a pas pu être évaluée ; veuillez le signaler au registre.",
        "nl": "Een regel van dit veld kon niet worden geëvalueerd; meld dit aan het register.",
        "de": "Eine Regel dieses Feldes konnte nicht ausgewertet werden; bitte melden Sie dies dem Register.",
    },
}


_LANGUAGES = frozenset({"en", "fr", "nl", "de"})


def builtin_message(key: str, lang: str, default_language: str = "en", **params: object) -> str:
    """Our own message for ``key`` in ``lang`` (falling back to the default language, then en)."""
    texts = _MESSAGES[key]
    text = texts.get(lang) or texts.get(default_language) or texts["en"]
    return text.format(**params) if params else text


# --------------------------------------------------------------------------- parsing values


class _Invalid(Exception):  # noqa: N818 - internal signal, never escapes
    """A value that does not parse; ``rule`` names the rule, ``params`` fill its message."""

    __slots__ = ("params", "rule")

    def __init__(self, rule: str, params: Mapping[str, object] | None = None) -> None:
        super().__init__(rule)
        self.rule = rule
        self.params = params or {}


Parser = Callable[[object], object]


def _released(invalid: _Invalid) -> _Invalid:
    """``invalid`` without the traceback and context of its last raise.

    Each parser raises one shared instance (no allocation per bad value); a traceback
    left on it would hold the frames of the batch being parsed, and raising it again
    would prepend to that traceback, so every batch with a bad value stayed in memory
    for good (an upload's memory grew with its file). Raise sites reset it too."""
    invalid.__traceback__ = None
    invalid.__context__ = None
    return invalid


_DECIMAL = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?")
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})(?::(00))?")
_DATE_LOOSE = re.compile(r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})")
_DATETIME_ISO = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?")
_DATETIME_CSV = re.compile(r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})[T ]([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?")


def _scalar_text(raw: object, invalid: _Invalid) -> str:
    """The text of a JSON scalar (numbers as XPath writes them, booleans true/false)."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, float) and not math.isfinite(raw):
        raise invalid.with_traceback(None)
    if isinstance(raw, int | float | Decimal):
        return xpath_string(raw)
    raise invalid.with_traceback(None)


def _text_parser() -> Parser:
    """Free text is kept as written, spaces and all: a comment may start with ``=`` or a
    TAB (spreadsheet output neutralises it, hdhub.common.spreadsheet). Only spaces is a
    missing value, so ``required`` is not met by a blank."""
    invalid = _Invalid("type")

    def parse(raw: object) -> object:
        if raw.__class__ is str:
            return raw if raw.strip() else None
        text = _scalar_text(raw, invalid)
        return text if text.strip() else None

    return parse


def _name_parser() -> Parser:
    """A patient's name (hdhub.common.patient_names.NAME_FIELDS): text with at least one
    letter or digit. Pseudonymisation hashes the name of a patient without an SSIN as
    that rule reads it, and refuses one of punctuation only: refused here, at entry, it is
    not a submission accepted and then parked on its way out."""
    text = _text_parser()
    invalid = _Invalid("name")

    def parse(raw: object) -> object:
        value = text(raw)
        if value is not None and not normalise_name(str(value)):
            raise invalid.with_traceback(None)
        return value

    return parse


def _ssin_parser() -> Parser:
    # One shared _Invalid per reason of the rule (hdhub.common.ssin), so each gets its message.
    invalid = {reason: _Invalid("ssin", {"reason": reason}) for reason in SsinReason}
    not_text = invalid[SsinReason.CHARACTERS]

    def parse(raw: object) -> object:
        if raw.__class__ is int:
            raw = f"{raw:011d}"
        if raw.__class__ is not str:
            raise not_text.with_traceback(None)
        text: str = raw.strip()
        if not text:
            return None
        try:
            return validated_ssin(text)
        except InvalidSsin as bad:
            reason = bad.reason
        raise invalid[reason].with_traceback(None)  # outside the except: no context kept

    return parse


#: Integers are 64-bit where they are stored and exported (PostgreSQL, SQLite, Parquet).
INT64 = 2**63


def _integer_parser(field: Field) -> Parser:
    invalid = _Invalid("type")
    max_digits = field.number_format.digits_before if field.number_format else None
    too_long = _Invalid("number_format", {"before": max_digits, "after": 0})

    def parse(raw: object) -> object:
        cls = raw.__class__
        value: int
        if cls is str and raw.isdigit() and raw.isascii() and len(raw) < 19:  # type: ignore[attr-defined,arg-type]
            # The common case: plain digits (leading zeros do not count as digits).
            if max_digits is not None and len(raw.lstrip("0")) > max_digits:  # type: ignore[attr-defined]
                raise too_long.with_traceback(None)
            return int(raw)  # type: ignore[call-overload]
        if cls is str:
            text = raw.strip()  # type: ignore[attr-defined]
            if not text:
                return None
            body = text[1:] if text[0] in "+-" else text
            if not body or not body.isdigit() or not body.isascii():
                raise invalid.with_traceback(None)
            value = int(text)
        elif cls is int:
            value = raw  # type: ignore[assignment]
        elif cls is float and raw.is_integer():  # type: ignore[attr-defined]
            value = int(raw)  # type: ignore[call-overload]
        elif isinstance(raw, Decimal) and raw.is_finite() and raw == raw.to_integral_value():
            value = int(raw)
        else:
            raise invalid.with_traceback(None)
        if not -INT64 <= value < INT64:
            # No database integer holds it (SQLite's JSON turned 10**20 into 1e+20, Parquet's
            # int64 column refused it and failed the export): not an integer one can store;
            # a draft keeps it as typed, as any other value its type cannot hold.
            raise invalid.with_traceback(None)
        if max_digits is not None and len(str(abs(value))) > max_digits:
            raise too_long.with_traceback(None)
        return value

    return parse


def _decimal_parser(field: Field) -> Parser:
    invalid = _Invalid("type")
    number_format = field.number_format
    before = number_format.digits_before if number_format else None
    after = number_format.digits_after if number_format else None
    too_long = _Invalid("number_format", {"before": before, "after": after})

    def parse(raw: object) -> object:
        cls = raw.__class__
        if cls is str:
            # The common case first: digits, a point, digits, no sign, no leading zero.
            whole, point, fraction = raw.partition(".")  # type: ignore[attr-defined]
            if (
                whole.isdigit()
                and whole.isascii()
                and whole[0] != "0"
                and (not point or (fraction.isdigit() and fraction.isascii()))
            ):
                if before is not None and (len(whole) > before or len(fraction) > after):  # type: ignore[operator]
                    raise too_long.with_traceback(None)
                return raw
            text = raw.strip()  # type: ignore[attr-defined]
            if not text:
                return None
        elif cls is int:
            text = str(raw)
        elif cls is float:
            if not math.isfinite(raw):  # type: ignore[arg-type]
                raise invalid.with_traceback(None)
            text = format(Decimal(repr(raw)), "f")
        elif isinstance(raw, Decimal):
            if not raw.is_finite():
                raise invalid.with_traceback(None)
            text = format(raw, "f")
        else:
            raise invalid.with_traceback(None)
        match = _DECIMAL.fullmatch(text)
        if match is None:
            raise invalid.with_traceback(None)
        sign, whole, fraction = match.groups()
        if not whole and not fraction:
            raise invalid.with_traceback(None)
        whole = whole.lstrip("0")
        fraction = fraction or ""
        if before is not None and (len(whole) > before or len(fraction) > after):  # type: ignore[operator]
            raise too_long.with_traceback(None)
        canonical = (whole or "0") + ("." + fraction if fraction else "")
        if sign == "-" and (whole or fraction.strip("0")):
            return "-" + canonical
        return canonical

    return parse


def _date_parser() -> Parser:
    invalid = _Invalid("type")
    from_iso = datetime.date.fromisoformat  # strict for YYYY-MM-DD: ASCII digits, a real date

    def parse(raw: object) -> object:
        if raw.__class__ is str:
            text = raw.strip()
            if len(text) == 10:
                if text[2] == "/" and text[5] == "/":
                    text = text[6:] + "-" + text[3:5] + "-" + text[:2]
                elif text[4] != "-" or text[7] != "-":
                    raise invalid.with_traceback(None)
                try:
                    from_iso(text)
                except ValueError:
                    raise invalid from None
                return text
            if not text:
                return None
            loose = _DATE_LOOSE.fullmatch(text)
            if loose is None:
                raise invalid.with_traceback(None)
            try:
                return datetime.date(int(loose[3]), int(loose[2]), int(loose[1])).isoformat()
            except ValueError:
                raise invalid from None
        if raw.__class__ is datetime.date:
            return raw.isoformat()
        raise invalid.with_traceback(None)

    return parse


def _time_parser() -> Parser:
    invalid = _Invalid("type")

    def parse(raw: object) -> object:
        if raw.__class__ is str:
            text = raw.strip()
            if not text:
                return None
            match = _TIME.fullmatch(text)
            if match is None:
                raise invalid.with_traceback(None)
            hour, minute = int(match[1]), int(match[2])
            if hour > 23 or minute > 59:
                raise invalid.with_traceback(None)
            return f"{hour:02d}:{minute:02d}"
        if isinstance(raw, datetime.time) and raw.second == 0 and raw.microsecond == 0 and raw.tzinfo is None:
            return f"{raw.hour:02d}:{raw.minute:02d}"
        raise invalid.with_traceback(None)

    return parse


def _datetime_parser() -> Parser:
    invalid = _Invalid("type")

    def parse(raw: object) -> object:
        if raw.__class__ is str:
            text = raw.strip()
            if not text:
                return None
            match = _DATETIME_ISO.fullmatch(text)
            if match is not None:
                year, month, day = match[1], match[2], match[3]
            else:
                match = _DATETIME_CSV.fullmatch(text)
                if match is None:
                    raise invalid.with_traceback(None)
                day, month, year = match[1], match[2], match[3]
            try:
                value = datetime.datetime(
                    int(year), int(month), int(day), int(match[4]), int(match[5]), int(match[6] or 0)
                )
            except ValueError:
                raise invalid from None
            return value.isoformat(timespec="seconds")
        if isinstance(raw, datetime.datetime) and raw.tzinfo is None:
            return raw.replace(microsecond=0).isoformat(timespec="seconds")
        raise invalid.with_traceback(None)

    return parse


def _select_one_parser(field: Field, codes: frozenset[str]) -> Parser:
    invalid = _Invalid("type")
    unknown = _Invalid("choice", {"list": field.list_name})

    def parse(raw: object) -> object:
        if raw.__class__ is str:
            code = raw.strip()
        else:
            code = _scalar_text(raw, invalid).strip()
        if code in codes:
            return code
        if not code:
            return None
        raise unknown.with_traceback(None)

    return parse


def _select_multiple_parser(field: Field, order: Sequence[str]) -> Parser:
    invalid = _Invalid("type")
    unknown = _Invalid("choice", {"list": field.list_name})
    position = {code: i for i, code in enumerate(order)}

    def parse(raw: object) -> object:
        if raw.__class__ is str:
            # CSV joins codes with |; ODK writes them space-separated (its own encoding).
            parts: Iterable[str] = raw.split("|") if "|" in raw else raw.split()
        elif isinstance(raw, list | tuple):
            parts = [_scalar_text(p, invalid) for p in raw]
        else:
            raise invalid.with_traceback(None)
        chosen = {p.strip() for p in parts} - {""}
        if not chosen:
            return None
        if not all(c in position for c in chosen):
            raise unknown.with_traceback(None)
        return sorted(chosen, key=position.__getitem__)

    return parse


# --------------------------------------------------------------------------- reading values in expressions


def _read_decimal(value: object) -> object:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _read_date(value: object) -> object:
    return None if value is None else datetime.date.fromisoformat(value)  # type: ignore[arg-type]


def _read_time(value: object) -> object:
    return None if value is None else datetime.time.fromisoformat(value)  # type: ignore[arg-type]


def _read_datetime(value: object) -> object:
    return None if value is None else datetime.datetime.fromisoformat(value)  # type: ignore[arg-type]


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _read_calculated(value: object) -> object:
    # A calculation that gave a date is stored as its ISO text; read it back as a date so
    # that date arithmetic on it works.
    if value.__class__ is str and len(value) == 10 and _ISO_DATE.fullmatch(value):
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            return value
    return value


_READERS: Mapping[FieldType, Callable[[object], object] | None] = {
    FieldType.DECIMAL: _read_decimal,
    FieldType.DATE: _read_date,
    FieldType.TIME: _read_time,
    FieldType.DATETIME: _read_datetime,
    FieldType.CALCULATE: _read_calculated,
}


def _canonical_result(value: object) -> object:
    """A calculate field's result in its stored form (None when empty or not a number)."""
    cls = value.__class__
    if value is None or cls is bool or cls is int:
        return value
    if cls is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            return None
        number = float(value)  # type: ignore[arg-type]
        if number.is_integer() and abs(number) < 1e16:
            return int(number)
        return xpath_string(value)
    if cls is str:
        return value or None
    if isinstance(value, list | tuple):
        return [xpath_string(v) for v in value] or None
    return xpath_string(value) or None


# --------------------------------------------------------------------------- compiled form


@dataclass(slots=True)
class _Slot:
    index: int
    name: str
    field: Field
    instance: int | None
    path: str
    parse: Parser | None
    coerce: Callable[[object], object] | None = None  # computed XPath value -> canonical


@dataclass(slots=True)
class _Scope:
    """A group or repeat whose relevance is evaluated per record (with its descendants)."""

    index: int
    item: Group | Repeat
    instance: int | None
    parent: int | None
    repeat: str | None  # the repeat this scope is an instance-level part of


@dataclass(frozen=True, slots=True)
class _Rule:
    """A compiled expression of one survey column, and the slots it reads."""

    column: str
    node: Node
    evaluate: Evaluator
    refs: frozenset[int]
    #: The repeats it reads as node-sets: their instances (and counts) come first.
    repeats: frozenset[str] = frozenset()
    #: Whether it reads ``.`` (a calculation with once() reads the value already there).
    reads_current: bool = False


@dataclass(slots=True)
class _Checks:
    """The checks over final values of the fields outside repeats, or of one repeat instance."""

    presence: int | None
    always: list[int]  # required whatever the answers
    conditional: list[tuple[int, _Rule]]  # required when the rule holds
    constraints: list[tuple[int, _Rule, Callable[[object], object] | None]]
    choice_filters: list[tuple[int, _Rule, Mapping[str, Mapping[str, str]]]]
    always_values: Callable[[Sequence[object]], Sequence[object]] = tuple

    def prepare(self) -> None:
        if len(self.always) > 1:
            self.always_values = itemgetter(*self.always)
        elif self.always:
            (only,) = self.always
            self.always_values = lambda vals: (vals[only],)


class _Row:
    """The state of one record while its steps run."""

    __slots__ = ("bad", "ctx", "errors", "inactive", "lang", "present", "scopes", "vals", "warnings")

    def __init__(
        self,
        vals: list[object],
        ctx: Context,
        errors: list[FieldError],
        bad: set[int],
        lang: str,
        scopes: int,
        present: list[bool | None],
    ) -> None:
        self.vals = vals
        self.ctx = ctx
        self.errors = errors
        self.warnings: list[FieldError] = []
        # Slots whose value or relevance is unknown because of an error already reported:
        # rules reading them are skipped rather than reporting a second, derived error.
        self.bad = bad
        self.inactive: set[int] = set()
        self.lang = lang
        self.scopes: list[bool | None] = [True] * scopes  # None: unknown
        self.present = present  # per repeat instance; None: unknown


Step = Callable[[_Row], None]
_NodeKey = tuple[str, Any]  # ("scope", i), ("count", repeat), ("slot", i) or ("instance", (repeat, i))
_CACHE_LIMIT = 4096
_CHUNK = 64  # rows parsed together by validate_many


def _as_boolean(evaluate: Evaluator) -> Evaluator:
    return lambda ctx: xpath_boolean(evaluate(ctx))


def _reads_bad(rule: _Rule, bad: set[int]) -> bool:
    return bool(bad) and not rule.refs.isdisjoint(bad)


def _topological(
    nodes: Mapping[_NodeKey, tuple[Step, set[_NodeKey], int]],
) -> tuple[list[_NodeKey], set[_NodeKey]]:
    """Keys in dependency order (form order where free), and the keys left in a cycle."""
    waiting = {key: {d for d in deps if d in nodes} for key, (_, deps, _) in nodes.items()}
    dependants: dict[_NodeKey, list[_NodeKey]] = {key: [] for key in nodes}
    for key, deps in waiting.items():
        for dep in deps:
            dependants[dep].append(key)
    ready = [(nodes[key][2], key) for key, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    ordered: list[_NodeKey] = []
    while ready:
        _, key = heapq.heappop(ready)
        ordered.append(key)
        for dependant in dependants[key]:
            pending = waiting[dependant]
            pending.discard(key)
            if not pending:
                heapq.heappush(ready, (nodes[dependant][2], dependant))
        del waiting[key]
    return ordered, set(waiting)


class CompiledDcd:
    """A DCD version ready to validate records. Build it with :func:`compile_dcd`."""

    def __init__(self, definition: DcdDefinition) -> None:
        self.definition = definition
        self._problems: list[CompileProblem] = []
        self._slots: list[_Slot] = []
        self._slot_of: dict[tuple[str, int | None], int] = {}  # (XLSForm name, instance) -> slot
        self._build_slots()
        # flat name -> (slot, memo of parsed texts; None for patient identifiers)
        self._inputs: dict[str, tuple[int, _Memo | None]] = {}
        self._skipped: frozenset[str] = frozenset()
        self._build_inputs()
        self._scopes: list[_Scope] = []
        self._scope_of: dict[tuple[str, int | None], int] = {}
        self._present_index: dict[tuple[str, int], int] = {}
        self._build_scopes()
        self._static_defaults: dict[int, object] = {}
        self._steps: list[Step] = []
        self._checks: dict[int | None, _Checks] = {}
        self._uncounted: list[tuple[int, tuple[int, ...]]] = []  # presence index, its input slots
        # The steps as data, for the columnar engine (columnar.py) to replay in the same
        # order: the keys in order, and what each key's step does (an instance: its keys).
        self.plan: list[_NodeKey] = []
        self.plan_specs: dict[_NodeKey, Any] = {}
        self._build_rules()
        if self._problems:
            raise DcdCompileError(self._problems)
        for checks in self._checks.values():
            checks.prepare()
        self._check_groups = tuple(self._checks.values())
        self._output = tuple((s.name, s.index) for s in self._slots if s.field.is_input)
        self._blank: list[object] = [None] * len(self._slots)
        self._presence_blank: list[bool | None] = [True] * len(self._present_index)

    # -- building --------------------------------------------------------------------

    def _problem(self, row: int | None, column: str | None, message: str) -> None:
        self._problems.append(CompileProblem(row, column, message))

    def _build_slots(self) -> None:
        for f in self.definition.fields:
            instances: list[int | None] = [None] if f.repeat is None else list(range(1, f.repeat_max + 1))
            for instance, flat in zip(instances, f.flat_names, strict=True):
                index = len(self._slots)
                parse = self._parser(f) if f.is_input else None
                self._slots.append(_Slot(index, flat, f, instance, f.path(instance), parse))
                self._slot_of[(f.name, instance)] = index

    def _parser(self, f: Field) -> Parser:
        kind = f.type
        if kind is FieldType.TEXT:
            if f.format == "ssin":
                return _ssin_parser()
            return _name_parser() if f.name in NAME_FIELDS else _text_parser()
        if kind is FieldType.INTEGER:
            return _integer_parser(f)
        if kind is FieldType.DECIMAL:
            return _decimal_parser(f)
        if kind is FieldType.DATE:
            return _date_parser()
        if kind is FieldType.TIME:
            return _time_parser()
        if kind is FieldType.DATETIME:
            return _datetime_parser()
        if kind in (FieldType.SELECT_ONE, FieldType.SELECT_MULTIPLE):
            codelist = self.definition.codelists.get(f.list_name or "")
            if codelist is None:
                self._problem(f.row, "type", f"list {f.list_name!r} of {f.name!r} does not exist")
                return _text_parser()
            if kind is FieldType.SELECT_ONE:
                return _select_one_parser(f, frozenset(codelist.codes))
            return _select_multiple_parser(f, codelist.codes)
        return _canonical_result  # calculate: never input, see _build_inputs

    def _build_inputs(self) -> None:
        skipped: set[str] = set()
        for slot in self._slots:
            f = slot.field
            if slot.parse is None:
                continue
            if f.is_computed and not _keeps_input(f):
                skipped.add(slot.name)  # computed here: what a record carries is ignored
                continue
            # Parsed texts are remembered per field (a batch repeats the same dates and codes
            # over and over), except patient identifiers, which are never kept.
            keep = not f.personal_data and f.format != "ssin"
            self._inputs[slot.name] = (slot.index, _Memo(slot.parse) if keep else None)
        self._skipped = frozenset(skipped | (UPLOAD_METADATA_FIELDS - self._inputs.keys()))

    def _build_scopes(self) -> None:
        def visit(
            items: tuple[Item, ...], parent: int | None, instance: int | None, repeat: str | None
        ) -> None:
            for item in items:
                if isinstance(item, Field):
                    continue
                scope = parent
                if item.relevant is not None or parent is not None:
                    scope = len(self._scopes)
                    self._scopes.append(_Scope(scope, item, instance, parent, repeat))
                    self._scope_of[(item.name, instance)] = scope
                if isinstance(item, Repeat):
                    for i in range(1, item.max_instances + 1):
                        self._present_index[(item.name, i)] = len(self._present_index)
                        visit(item.children, scope, i, item.name)
                else:
                    visit(item.children, scope, instance, repeat)

        visit(self.definition.survey, None, None, None)

    def _innermost_scope(self, f: Field, instance: int | None) -> int | None:
        for name in reversed(f.group_path):
            item = self.definition.item(name)
            scope = self._scope_of.get((name, None if isinstance(item, Repeat) else instance))
            if scope is not None:
                return scope
        return None

    def _resolver(self, repeat: str | None, instance: int | None) -> Callable[[str], FieldSlot | RepeatSlot]:
        """How the rules of a field in ``repeat``'s ``instance`` (both None outside repeats)
        read ``${name}``: a field of the same instance or outside repeats by its slot, a
        repeat or a field of another repeat as the node-set of its instances."""

        def resolve(name: str) -> FieldSlot | RepeatSlot:
            item = self.definition.item(name)
            if isinstance(item, Repeat):
                return RepeatSlot(item.name, self._presence(item))
            if not isinstance(item, Field):
                raise KeyError(name)  # a group
            reader = _READERS.get(item.type)
            if item.repeat is None:
                index = self._slot_of[(name, None)]
            elif item.repeat != repeat:
                other = self.definition.repeat(item.repeat)
                indexes = tuple(self._slot_of[(name, i)] for i in range(1, other.max_instances + 1))
                return RepeatSlot(other.name, self._presence(other), indexes, reader)
            else:
                index = self._slot_of[(name, instance)]
            return FieldSlot(index, reader, "date" if item.type is FieldType.DATE else None)

        return resolve

    def _presence(self, repeat: Repeat) -> tuple[int, ...]:
        """Where each instance of ``repeat`` says whether it is there (``_Row.present``)."""
        return tuple(self._present_index[(repeat.name, i)] for i in range(1, repeat.max_instances + 1))

    def _labels(self, name: str) -> Mapping[str, str]:
        """A select field's label per code, in the DCD's default language (jr:choice-name)."""
        item = self.definition.item(name)
        codelist = self.definition.codelists.get(item.list_name or "") if isinstance(item, Field) else None
        if codelist is None:
            raise KeyError(name)
        language = self.definition.default_language
        return {c.name: c.label(language, language) for c in codelist.choices}

    def _rule(
        self,
        text: str | None,
        *,
        row: int | None,
        column: str,
        instance: int | None,
        repeat: str | None = None,
        columns: Callable[[str], str] | None = None,
        current: Field | None = None,
    ) -> _Rule | None:
        if text is None:
            return None
        resolve = self._resolver(repeat, instance)
        current_kind = "date" if current is not None and current.type is FieldType.DATE else None
        try:
            node = parse_expression(text)
            evaluate = compile_expression(
                node, fields=resolve, columns=columns, labels=self._labels, current_kind=current_kind
            )
        except ExpressionError as exc:
            self._problem(row, column, f"{exc.message} at position {exc.position} of {text!r}")
            return None
        refs: set[int] = set()
        repeats: set[str] = set()
        for name in field_references(node):
            slot = resolve(name)
            if isinstance(slot, FieldSlot):
                refs.add(slot.index)
            else:
                refs.update(slot.indexes)
                repeats.add(slot.repeat)
        return _Rule(column, node, evaluate, frozenset(refs), frozenset(repeats), uses_current_value(node))

    def _coercer(self, f: Field) -> Callable[[object], object]:
        """How a computed XPath value becomes the canonical value of field ``f``."""
        if f.type is FieldType.CALCULATE or f.type is FieldType.NOTE:
            return _canonical_result
        parse = self._parser(f)
        number_format = f.number_format
        kind = f.type

        def coerce(value: object) -> object:
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                return None
            if kind is FieldType.DECIMAL and number_format is not None and _is_number(value):
                quantum = Decimal(1).scaleb(-number_format.digits_after)
                value = Decimal(repr(xpath_number(value))).quantize(quantum, rounding=ROUND_HALF_UP)
            elif kind is FieldType.INTEGER and _is_number(value):
                value = math.floor(xpath_number(value) + 0.5)
            elif kind is FieldType.DATE and isinstance(value, datetime.datetime):
                value = value.date()
            elif kind is FieldType.SELECT_MULTIPLE and isinstance(value, str):
                value = value.split()
            elif kind in _TEXTUAL and not isinstance(value, datetime.date | datetime.time):
                value = xpath_string(value)
            return parse(value)

        return coerce

    def _build_rules(self) -> None:
        nodes: dict[_NodeKey, tuple[Step, set[_NodeKey], int]] = {}
        member_of: dict[_NodeKey, tuple[str, int]] = {}  # node -> the repeat instance it belongs to

        def add(
            key: _NodeKey, step: Step, deps: set[_NodeKey], instance: tuple[str, int] | None = None
        ) -> None:
            nodes[key] = (step, deps, len(nodes))
            if instance is not None:
                member_of[key] = instance

        def reads(rule: _Rule | None) -> set[_NodeKey]:
            if rule is None:
                return set()
            return {("slot", i) for i in rule.refs} | {("count", r) for r in rule.repeats}

        for scope in self._scopes:
            item = scope.item
            instance = None if isinstance(item, Repeat) else scope.instance
            rule = self._rule(
                item.relevant, row=item.row, column="relevant", instance=instance, repeat=scope.repeat
            )
            deps = reads(rule)
            if scope.parent is not None:
                deps.add(("scope", scope.parent))
            within = (scope.repeat, instance) if scope.repeat is not None and instance is not None else None
            add(("scope", scope.index), self._scope_step(scope, rule), deps, within)
            self.plan_specs[("scope", scope.index)] = (scope, rule)

        for item in self.definition.groups:
            if not isinstance(item, Repeat):
                continue
            presence = [self._present_index[(item.name, i)] for i in range(1, item.max_instances + 1)]
            if item.repeat_count is None:
                # Without a count, an instance is there when the record has a value in it.
                for i, presence_index in enumerate(presence, start=1):
                    slots = tuple(
                        self._slot_of[(f.name, i)]
                        for f in self.definition.fields
                        if f.repeat == item.name
                        and self._slots[self._slot_of[(f.name, i)]].name in self._inputs
                    )
                    self._uncounted.append((presence_index, slots))
                continue
            rule = self._rule(item.repeat_count, row=item.row, column="repeat_count", instance=None)
            if rule is not None:
                add(("count", item.name), self._count_step(item, rule, presence), reads(rule))
                self.plan_specs[("count", item.name)] = (item, rule, tuple(presence))

        for slot in self._slots:
            f = slot.field
            instance = slot.instance
            deps = set()
            inner = self._innermost_scope(f, instance)
            if inner is not None:
                deps.add(("scope", inner))
            relevant = self._rule(
                f.relevant, row=f.row, column="relevant", instance=instance, repeat=f.repeat
            )
            calculation = self._rule(
                f.calculation, row=f.row, column="calculation", instance=instance, repeat=f.repeat
            )
            default = None
            if f.default is not None and f.default_is_expression:
                default = self._rule(
                    f.default, row=f.row, column="default", instance=instance, repeat=f.repeat
                )
            elif f.default is not None and slot.parse is not None:
                try:
                    self._static_defaults[slot.index] = self._static_default(f, slot.parse)
                except _Invalid:
                    self._problem(
                        f.row, "default", f"the default of {f.name!r} is not a valid {f.type.value}"
                    )
            deps |= reads(relevant) | reads(calculation) | reads(default)
            if calculation is not None and slot.index in calculation.refs:
                self._problem(f.row, "calculation", f"the calculation of {f.name!r} refers to itself")
            deps.discard(("slot", slot.index))
            if (
                inner is not None
                or relevant is not None
                or calculation is not None
                or default is not None
                or slot.index in self._static_defaults
            ):
                if calculation is not None or default is not None:
                    slot.coerce = self._coercer(f)
                step = self._field_step(
                    slot, scope=inner, relevant=relevant, calculation=calculation, default=default
                )
                within = (f.repeat, instance) if f.repeat is not None and instance is not None else None
                add(("slot", slot.index), step, deps, within)
                self.plan_specs[("slot", slot.index)] = (slot, inner, relevant, calculation, default)
            self._add_checks(slot, instance)

        self._steps = self._order(nodes, member_of)

    def _add_checks(self, slot: _Slot, instance: int | None) -> None:
        """``required``, ``constraint`` and ``choice_filter``: run over the final values."""
        f = slot.field
        if not f.is_input:
            return
        presence = self._present_index[(f.repeat, instance)] if f.repeat is not None and instance else None
        checks = self._checks.setdefault(presence, _Checks(presence, [], [], [], []))
        if f.required is not None and not f.is_computed:
            required = self._rule(
                f.required, row=f.row, column="required", instance=instance, repeat=f.repeat
            )
            if required is not None:
                if not is_constant(required.node):
                    checks.conditional.append((slot.index, required))
                elif xpath_boolean(required.evaluate(Context())):
                    checks.always.append(slot.index)
        constraint = self._rule(
            f.constraint, row=f.row, column="constraint", instance=instance, repeat=f.repeat, current=f
        )
        if constraint is not None:
            checks.constraints.append((slot.index, constraint, _READERS.get(f.type)))
        if (
            f.choice_filter is not None
            and f.list_name is not None
            and f.list_name in self.definition.codelists
        ):
            codelist = self.definition.codelist(f.list_name)
            # The reader checked bare names against the choices sheet; a column a choice
            # leaves empty reads as ''.
            choice_filter = self._rule(
                f.choice_filter,
                row=f.row,
                column="choice_filter",
                instance=instance,
                repeat=f.repeat,
                columns=str,
            )
            if choice_filter is not None:
                by_code = {c.name: c.columns for c in codelist.choices}
                checks.choice_filters.append((slot.index, choice_filter, by_code))

    def _static_default(self, f: Field, parse: Parser) -> object:
        assert f.default is not None
        if f.type is FieldType.SELECT_MULTIPLE:
            return parse("|".join(f.default.replace("|", " ").split()))
        return parse(f.default)

    def _order(
        self,
        nodes: Mapping[_NodeKey, tuple[Step, set[_NodeKey], int]],
        member_of: Mapping[_NodeKey, tuple[str, int]],
    ) -> list[Step]:
        """Steps in dependency order, each repeat instance folded into one step.

        Outside a repeat, rules read its fields only as node-sets (``sum(${dose})``), that
        is, once the whole instance is done; so an instance's steps can run together once
        what they read outside is known, and an instance that is not there is skipped at
        once instead of step by step.
        """

        def outside(deps: set[_NodeKey]) -> set[_NodeKey]:
            """``deps`` with each step inside an instance read as the instance's step."""
            return {("instance", member_of[d]) if d in member_of else d for d in deps}

        instances: dict[tuple[str, int], dict[_NodeKey, tuple[Step, set[_NodeKey], int]]] = {}
        for key, instance in member_of.items():
            instances.setdefault(instance, {})[key] = nodes[key]
        graph: dict[_NodeKey, tuple[Step, set[_NodeKey], int]] = {
            key: (step, outside(deps), order)
            for key, (step, deps, order) in nodes.items()
            if key not in member_of
        }
        cyclic: set[_NodeKey] = set()
        for (repeat, i), members in instances.items():
            inner, stuck = _topological(members)
            cyclic |= stuck
            needs = outside(set().union(*(deps for _, deps, _ in members.values())) - members.keys())
            needs.discard(("instance", (repeat, i)))
            step = self._instance_step(repeat, i, [members[k][0] for k in inner])
            self.plan_specs[("instance", (repeat, i))] = inner
            graph[("instance", (repeat, i))] = (step, needs, min(order for _, _, order in members.values()))
        # Repeat instances without rules of their own still need their presence applied.
        for (repeat, i), presence in self._present_index.items():
            if (repeat, i) not in instances:
                deps: set[_NodeKey] = {("count", repeat)}
                graph[("instance", (repeat, i))] = (
                    self._instance_step(repeat, i, []),
                    deps,
                    len(nodes) + presence,
                )
        ordered, stuck = _topological(graph)
        cyclic |= stuck
        if cyclic:
            names = sorted(
                {self._slots[i].field.name for kind, i in cyclic if kind == "slot"}
                | {self._scopes[i].item.name for kind, i in cyclic if kind == "scope"}
                | {str(name) for kind, name in cyclic if kind == "count"}
                | {str(name[0]) for kind, name in cyclic if kind == "instance"}
            )
            rows = sorted(self._slots[i].field.row or 0 for kind, i in cyclic if kind == "slot")
            self._problem(rows[0] if rows else None, None, "circular dependency between " + ", ".join(names))
        self.plan = ordered
        return [graph[key][0] for key in ordered]

    # -- steps -------------------------------------------------------------------------

    def _instance_step(self, repeat_name: str, instance: int, steps: list[Step]) -> Step:
        repeat = self.definition.repeat(repeat_name)
        presence = self._present_index[(repeat_name, instance)]
        counted = repeat.repeat_count is not None
        slots = tuple(
            self._slot_of[(f.name, instance)] for f in self.definition.fields if f.repeat == repeat_name
        )
        inputs = tuple(i for i in slots if self._slots[i].name in self._inputs)

        def step(row: _Row) -> None:
            state = row.present[presence]
            if state is None:  # the count is unknown: keep the values, check nothing
                row.bad.update(slots)
                return
            if not state:
                row.inactive.update(slots)
                if counted:
                    vals = row.vals
                    for index in inputs:
                        if vals[index] is not None:
                            vals[index] = None
                            row.errors.append(self._repeat_count_error(self._slots[index], row))
                return
            for sub in steps:
                sub(row)

        return step

    def _scope_step(self, scope: _Scope, rule: _Rule | None) -> Step:
        index, parent = scope.index, scope.parent
        item = scope.item
        path = "/".join((*item.group_path, item.name))

        def step(row: _Row) -> None:
            if parent is not None and row.scopes[parent] is not True:
                row.scopes[index] = row.scopes[parent]
                return
            if rule is None:
                return
            if _reads_bad(rule, row.bad):
                row.scopes[index] = None
                return
            try:
                row.scopes[index] = xpath_boolean(rule.evaluate(row.ctx))
            except Exception:  # noqa: BLE001 - a rule that cannot run is reported, not raised
                row.scopes[index] = None
                row.errors.append(
                    FieldError(item.name, path, "relevant", self._builtin("expression", row.lang))
                )

        return step

    def _count_step(self, repeat: Repeat, rule: _Rule, presence: list[int]) -> Step:
        maximum = repeat.max_instances
        path = "/".join((*repeat.group_path, repeat.name))

        def step(row: _Row) -> None:
            count = -1.0  # unknown
            if not _reads_bad(rule, row.bad):
                try:
                    count = xpath_number(rule.evaluate(row.ctx))
                except Exception:  # noqa: BLE001
                    row.errors.append(
                        FieldError(repeat.name, path, "repeat_count", self._builtin("expression", row.lang))
                    )
            if count < 0:
                for p in presence:
                    row.present[p] = None
                return
            used = 0 if math.isnan(count) else min(maximum, math.floor(count))
            if not math.isnan(count) and count > maximum:
                message = self._builtin("repeat_max", row.lang, {"max": maximum})
                row.errors.append(FieldError(repeat.name, path, "repeat_count", message))
            for i, p in enumerate(presence, start=1):
                row.present[p] = i <= used

        return step

    def _field_step(
        self,
        slot: _Slot,
        *,
        scope: int | None,
        relevant: _Rule | None,
        calculation: _Rule | None,
        default: _Rule | None,
    ) -> Step:
        index = slot.index
        static_default = self._static_defaults.get(index)
        coerce = slot.coerce or _canonical_result

        def drop(row: _Row) -> None:
            row.inactive.add(index)
            if row.vals[index] is not None:
                row.vals[index] = None
                row.warnings.append(self._error(slot, "not_relevant", row.lang))

        reader = _READERS.get(slot.field.type)

        def compute(row: _Row, rule: _Rule) -> None:
            if _reads_bad(rule, row.bad):
                row.bad.add(index)
                row.vals[index] = None
                return
            try:
                if rule.reads_current:  # once(): the value the record holds, if it holds one
                    value = row.vals[index]
                    row.ctx.current = value if reader is None else reader(value)
                row.vals[index] = coerce(rule.evaluate(row.ctx))
            except Exception:  # noqa: BLE001 - includes values the field's type refuses
                row.bad.add(index)
                row.vals[index] = None
                row.errors.append(
                    FieldError(slot.name, slot.path, rule.column, self._builtin("calculation", row.lang))
                )

        if relevant is not None:
            evaluate = relevant.evaluate
            if not returns_boolean(relevant.node):
                evaluate = _as_boolean(evaluate)
            refs = relevant.refs

        if (
            relevant is not None
            and scope is None
            and calculation is None
            and default is None
            and static_default is None
        ):
            # The common case, skip logic alone: kept short, as it runs for most fields.
            def relevance_step(row: _Row) -> None:
                bad = row.bad
                if bad and not refs.isdisjoint(bad):
                    bad.add(index)
                    return
                try:
                    active = evaluate(row.ctx)
                except Exception:  # noqa: BLE001
                    bad.add(index)
                    row.errors.append(self._error(slot, "relevant", row.lang, expression=True))
                    return
                if not active:
                    drop(row)

            return relevance_step

        def step(row: _Row) -> None:
            if scope is not None:
                state = row.scopes[scope]
                if state is None:
                    row.bad.add(index)
                    return
                if not state:
                    drop(row)
                    return
            if relevant is not None:
                bad = row.bad
                if bad and not refs.isdisjoint(bad):
                    bad.add(index)
                    return
                try:
                    active = evaluate(row.ctx)
                except Exception:  # noqa: BLE001
                    bad.add(index)
                    row.errors.append(self._error(slot, "relevant", row.lang, expression=True))
                    return
                if not active:
                    drop(row)
                    return
            if calculation is not None:
                compute(row, calculation)
            elif row.vals[index] is None and index not in row.bad:
                if default is not None:
                    compute(row, default)
                elif static_default is not None:
                    row.vals[index] = static_default

        return step

    # -- messages ----------------------------------------------------------------------

    def _builtin(self, key: str, lang: str, params: Mapping[str, object] | None = None) -> str:
        return builtin_message(key, lang, self.definition.default_language, **(params or {}))

    def _error(
        self,
        slot: _Slot,
        rule: str,
        lang: str,
        params: Mapping[str, object] | None = None,
        *,
        expression: bool = False,
    ) -> FieldError:
        message = (
            self._builtin("expression", lang) if expression else self._message(slot.field, rule, lang, params)
        )
        return FieldError(slot.name, slot.path, rule, message)

    def _message(self, f: Field, rule: str, lang: str, params: Mapping[str, object] | None) -> str:
        default_language = self.definition.default_language
        if rule == "required":
            return translate(f.required_messages, lang, default_language) or self._builtin(rule, lang)
        if rule == "constraint":
            return translate(f.constraint_messages, lang, default_language) or self._builtin(rule, lang)
        if rule == "type":
            kind = f.type.value
            if f.type in (FieldType.SELECT_ONE, FieldType.SELECT_MULTIPLE):
                kind = "select"
            elif f.type in (FieldType.CALCULATE, FieldType.NOTE):
                kind = "text"
            return self._builtin(f"type:{kind}", lang)
        if rule == "ssin" and params is not None and isinstance(reason := params["reason"], SsinReason):
            return ssin_message(reason, lang if lang in _LANGUAGES else default_language)
        if rule == "number_format" and f.type is FieldType.INTEGER:
            return self._builtin("number_format:integer", lang, params)
        return self._builtin(rule, lang, params)

    def _repeat_count_error(self, slot: _Slot, row: _Row) -> FieldError:
        repeat = slot.field.repeat
        assert repeat is not None
        used = sum(
            1
            for i in range(1, self.definition.repeat(repeat).max_instances + 1)
            if row.present[self._present_index[(repeat, i)]]
        )
        return self._error(slot, "repeat_count", row.lang, {"count": used})

    # -- running ---------------------------------------------------------------------

    def validate(
        self,
        record: Mapping[str, object],
        *,
        lang: str = "en",
        today: datetime.date | None = None,
    ) -> Validation:
        """Validate one record (canonical JSON values or CSV strings); give its canonical values."""
        vals, errors, bad = self._parse_record(record, lang)
        now = local_now()
        result = self._finish(vals, errors, bad, lang, today or now.date(), now)
        if "STATUS" in record and "STATUS" not in self._inputs:
            self._read_status(record["STATUS"], result, lang)
        return result

    def validate_many(
        self,
        rows: Iterable[Mapping[str, object]],
        *,
        lang: str = "en",
        today: datetime.date | None = None,
    ) -> list[Validation]:
        """Validate many records with one clock (``today()`` and ``now()`` are the same for all).

        Rows with the same keys (a CSV file, an Arrow batch) are parsed column by column,
        which gives the same results as :meth:`validate` row by row, faster.
        """
        now = local_now()
        day = today or now.date()
        batch = rows if isinstance(rows, list) else list(rows)
        if not batch:
            return []
        keys = batch[0].keys()
        if not all(row.keys() == keys for row in batch):
            results = [self._finish(*self._parse_record(row, lang), lang, day, now) for row in batch]
        else:
            finish = self._finish
            results = [
                finish(vals, errors, bad, lang, day, now)
                for vals, errors, bad in self._parse_batch(batch, keys, lang)
            ]
        if "STATUS" not in self._inputs:
            for row, result in zip(batch, results, strict=True):
                if "STATUS" in row:
                    self._read_status(row["STATUS"], result, lang)
        return results

    def _read_status(self, raw: object, result: Validation, lang: str) -> None:
        """The record's own STATUS column (not a DCD field): draft, submit or empty."""
        text = raw.strip().lower() if isinstance(raw, str) else raw
        if text is None or text == "":
            return
        wanted = ROW_STATUSES.get(text) if isinstance(text, str) else None
        if wanted is None:
            result.errors.append(FieldError("STATUS", "STATUS", "status", self._builtin("status", lang)))
        else:
            result.submit = wanted

    def _parse_value(self, index: int, raw: object) -> object:
        """The canonical value of one input, or an _Invalid; the memo's job for texts."""
        if raw is None or raw == "":
            return None
        parse = self._slots[index].parse
        assert parse is not None
        try:
            return parse(raw)
        except _Invalid as invalid:
            return _released(invalid)
        except Exception:  # noqa: BLE001 - an odd input type is a type error, never a crash
            return _Invalid("type")

    def _parse_record(
        self, record: Mapping[str, object], lang: str
    ) -> tuple[list[object], list[FieldError], set[int]]:
        vals = self._blank.copy()
        inputs = self._inputs
        errors: list[FieldError] = []
        unknown = 0
        bad: set[int] = set()
        for key, raw in record.items():
            entry = inputs.get(key)
            if entry is None:
                if key not in self._skipped:
                    # Unknown keys first, as validate_many reports them.
                    errors.insert(
                        unknown, FieldError(key, key, "unknown_field", self._builtin("unknown_field", lang))
                    )
                    unknown += 1
                continue
            index, memo = entry
            value = memo[raw] if memo is not None and raw.__class__ is str else self._parse_value(index, raw)
            if value is None:
                continue
            if value.__class__ is tuple:
                value = list(value)
            elif value.__class__ is _Invalid:
                bad.add(index)
                errors.append(self._error(self._slots[index], value.rule, lang, value.params))
                continue
            vals[index] = value
        return vals, errors, bad

    def _parse_batch(
        self, rows: list[Mapping[str, object]], keys: Iterable[str], lang: str
    ) -> Iterator[tuple[list[object], list[FieldError], set[int]]]:
        """Parse rows that all have ``keys``, one column at a time, a chunk of rows at a time.

        Chunks keep the transpositions small enough to stay in the CPU caches.
        """
        inputs = self._inputs
        used = [k for k in keys if k in inputs]
        unknown = [
            FieldError(k, k, "unknown_field", self._builtin("unknown_field", lang))
            for k in keys
            if k not in inputs and k not in self._skipped
        ]
        fields = [(key, *inputs[key], self._slots[inputs[key][0]]) for key in used]
        get = (
            itemgetter(*used)
            if len(used) > 1
            else (lambda row: (row[used[0]],))
            if used
            else (lambda _row: ())
        )
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            size = len(chunk)
            columns: list[Sequence[object]] = [(None,) * size] * len(self._slots)
            errors: dict[int, list[FieldError]] = {}
            bad: dict[int, set[int]] = {}
            for (_, index, memo, slot), raw_column in zip(
                fields, zip(*map(get, chunk), strict=False), strict=False
            ):
                failures = 0 if memo is None else memo.failures
                try:
                    if memo is None:
                        raise TypeError  # patient identifiers: parsed one by one, never remembered
                    parsed = list(map(memo.__getitem__, raw_column))
                    failed = memo.failures != failures
                except TypeError:  # an unhashable value (a JSON list), or no memo
                    parse_value = self._parse_value
                    parsed = [
                        memo[raw] if memo is not None and raw.__class__ is str else parse_value(index, raw)
                        for raw in raw_column
                    ]
                    failed = True
                if slot.field.type is FieldType.SELECT_MULTIPLE:
                    parsed = [list(v) if v.__class__ is tuple else v for v in parsed]
                if failed:
                    for row_index, value in enumerate(parsed):
                        if value.__class__ is _Invalid:
                            parsed[row_index] = None
                            bad.setdefault(row_index, set()).add(index)
                            errors.setdefault(row_index, []).append(
                                self._error(slot, value.rule, lang, value.params)
                            )
                columns[index] = parsed
            for row_index, values in enumerate(zip(*columns, strict=False)):
                row_errors = errors.get(row_index, [])
                if unknown:
                    row_errors[:0] = unknown
                yield list(values), row_errors, bad.get(row_index, set())

    def _derive(
        self,
        vals: list[object],
        errors: list[FieldError],
        bad: set[int],
        lang: str,
        today: datetime.date,
        now: datetime.datetime,
    ) -> tuple[Context, list[bool | None], set[int] | tuple[()], list[FieldError]]:
        """Relevance, repeat counts, calculations and defaults, in dependency order: the
        context the checks read, which repeat instances are there, what does not apply."""
        present = self._presence_blank
        ctx = Context(vals, today=today, now=now, present=present)
        if not self._steps:
            return ctx, present, (), []
        present = present.copy()
        for presence, slots in self._uncounted:
            present[presence] = any(vals[i] is not None or i in bad for i in slots)
        ctx.present = present
        row = _Row(vals, ctx, errors, bad, lang, len(self._scopes), present)
        for step in self._steps:
            step(row)
        return ctx, present, row.inactive, row.warnings

    def evaluate(
        self,
        expressions: Sequence[str],
        record: Mapping[str, object],
        *,
        at: str,
        today: datetime.date | None = None,
        now: datetime.datetime | None = None,
    ) -> list[object]:
        """The XPath values of ``expressions`` over ``record`` as the rules of the field sent
        as ``at`` (``DT_PCI_2``) see them, once relevance, counts, calculations and defaults
        have run; an expression that does not compile or run gives its exception. The
        conformance tests compare these values with other XForms engines'."""
        vals, errors, bad = self._parse_record(record, "en")
        clock = now or local_now()
        ctx, _, _, _ = self._derive(vals, errors, bad, "en", today or clock.date(), clock)
        slot = next(s for s in self._slots if s.name == at)
        reader = _READERS.get(slot.field.type)
        ctx.current = vals[slot.index] if reader is None else reader(vals[slot.index])
        resolve = self._resolver(slot.field.repeat, slot.instance)
        results: list[object] = []
        for text in expressions:
            try:
                node = parse_expression(text)
                evaluator = compile_expression(node, fields=resolve, labels=self._labels)
                results.append(evaluator(ctx))
            except Exception as exc:  # noqa: BLE001 - the caller compares failures too
                results.append(exc)
        return results

    def form_state(
        self, record: Mapping[str, object], *, lang: str = "en", today: datetime.date | None = None
    ) -> FormState:
        """:meth:`validate`, and which fields apply and which are required now: what a form
        updates as the person types (the same rules, run once)."""
        vals, errors, bad = self._parse_record(record, lang)
        now = local_now()
        shown: dict[str, set[int]] = {"inactive": set(), "required": set()}
        result = self._finish(vals, errors, bad, lang, today or now.date(), now, shown)
        names = self._slots
        return FormState(
            result,
            frozenset(names[i].name for i in shown["inactive"]),
            frozenset(names[i].name for i in shown["required"]),
        )

    def _shown(
        self,
        ctx: Context,
        groups: Sequence[_Checks],
        inactive: set[int] | tuple[()],
        shown: dict[str, set[int]],
    ) -> None:
        """For :meth:`form_state`: the slots that do not apply, and those required now."""
        shown["inactive"].update(inactive)
        required = shown["required"]
        for group in groups:
            required.update(i for i in group.always if i not in inactive)
            for index, rule in group.conditional:
                if index in inactive:
                    continue
                try:
                    if xpath_boolean(rule.evaluate(ctx)):
                        required.add(index)
                except Exception:  # noqa: BLE001 - reported as the required rule's error
                    continue

    def _finish(
        self,
        vals: list[object],
        errors: list[FieldError],
        bad: set[int],
        lang: str,
        today: datetime.date,
        now: datetime.datetime,
        shown: dict[str, set[int]] | None = None,
    ) -> Validation:
        """Everything after parsing: relevance, counts, calculations, defaults, then the checks."""
        ctx, present, inactive, warnings = self._derive(vals, errors, bad, lang, today, now)
        groups = [g for g in self._check_groups if g.presence is None or present[g.presence] is True]
        if shown is not None:
            self._shown(ctx, groups, inactive, shown)
        missing: list[int] = []
        for group in groups:
            if group.always and None in group.always_values(vals):
                missing.extend(
                    i for i in group.always if vals[i] is None and i not in inactive and i not in bad
                )
            for index, required in group.conditional:
                if (
                    vals[index] is None
                    and index not in inactive
                    and index not in bad
                    and not _reads_bad(required, bad)
                ):
                    try:
                        if xpath_boolean(required.evaluate(ctx)):
                            missing.append(index)
                    except Exception:  # noqa: BLE001
                        errors.append(self._error(self._slots[index], "required", lang, expression=True))
        for index in sorted(missing):
            errors.append(self._error(self._slots[index], "required", lang))
            bad.add(index)  # constraints comparing with it would only repeat the cause
        for group in groups:
            for index, constraint, reader in group.constraints:
                value = vals[index]
                if value is None or (bad and (index in bad or _reads_bad(constraint, bad))):
                    continue
                try:
                    ctx.current = value if reader is None else reader(value)
                    ok = constraint.evaluate(ctx)
                    if ok is not True and ok is not False:
                        ok = xpath_boolean(ok)
                except Exception:  # noqa: BLE001
                    errors.append(self._error(self._slots[index], "constraint", lang, expression=True))
                    continue
                if not ok:
                    errors.append(self._error(self._slots[index], "constraint", lang))
            for index, choice_filter, by_code in group.choice_filters:
                value = vals[index]
                if value is None or (bad and (index in bad or _reads_bad(choice_filter, bad))):
                    continue
                ctx.current = value
                try:
                    allowed = True
                    for code in value if isinstance(value, list) else (value,):
                        ctx.choice = by_code.get(str(code))
                        if not xpath_boolean(choice_filter.evaluate(ctx)):
                            allowed = False
                            break
                except Exception:  # noqa: BLE001
                    errors.append(self._error(self._slots[index], "choice_filter", lang, expression=True))
                    continue
                finally:
                    ctx.choice = None
                if not allowed:
                    errors.append(self._error(self._slots[index], "choice_filter", lang))
        values = {name: value for name, index in self._output if (value := vals[index]) is not None}
        return Validation(values, errors, warnings)


class _Memo(dict[object, object]):
    """One field's parsed texts: a text seen before costs one dict look-up.

    Missing values ('' and None) are known from the start; a text that does not parse is
    not kept (it comes back as an _Invalid each time, counted in ``failures``).
    """

    __slots__ = ("failures", "parse")

    def __init__(self, parse: Parser) -> None:
        super().__init__({"": None, None: None})
        self.parse = parse
        self.failures = 0

    def __missing__(self, raw: object) -> object:
        try:
            value = self.parse(raw)
        except _Invalid as invalid:
            self.failures += 1
            return _released(invalid)
        except Exception:  # noqa: BLE001 - an odd input type is a type error, never a crash
            self.failures += 1
            return _Invalid("type")
        if raw.__class__ is str:  # 1, 1.0 and True are equal keys: only texts are kept
            if len(self) >= _CACHE_LIMIT:
                self.clear()
                self.update({"": None, None: None})
            stored = tuple(value) if value.__class__ is list else value
            self[raw] = stored  # lists as tuples: no two records share one list
            return stored
        return value


def _keeps_input(f: Field) -> bool:
    """A computed field whose calculation reads its own value (``once(uuid())``) keeps
    what the record carries: a stored record sent back keeps its identifier."""
    return f.calculation is not None and uses_current_value(parse_expression(f.calculation))


_TEXTUAL = frozenset(
    {FieldType.TEXT, FieldType.SELECT_ONE, FieldType.DATE, FieldType.TIME, FieldType.DATETIME}
)


def _is_number(value: object) -> bool:
    cls = value.__class__
    return cls is int or cls is float or isinstance(value, Decimal)


# --------------------------------------------------------------------------- cache

_CACHE_SIZE = 64
_cache: OrderedDict[tuple[str, str, str, str], CompiledDcd] = OrderedDict()
_cache_lock = threading.Lock()


def compile_dcd(definition: DcdDefinition) -> CompiledDcd:
    """The compiled form of ``definition``, built once per content and kept (LRU, 64 versions).

    Raises :class:`DcdCompileError` when the definition cannot run (a workbook read by
    :func:`~hdhub.registrations.engine.xlsform.read_workbook` always can).
    """
    key = (definition.project_code, definition.dcd_code, str(definition.version), definition.fingerprint)
    with _cache_lock:
        compiled = _cache.get(key)
        if compiled is not None:
            _cache.move_to_end(key)
            return compiled
    compiled = CompiledDcd(definition)
    with _cache_lock:
        _cache[key] = compiled
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return compiled
