"""What a file may be called: the one rule for every route that takes a file name (Upload
Center uploads and drop folder, intake over SFTP and HTTP, certificate uploads).

A name is kept, shown in pages and reports, written into the drop folder's RESULTS and
sent in ``Content-Disposition``; it may end up on a Windows share. So a name is one plain
file name that every common file system can hold and that displays as what it is:

* not empty, no folder part (``/`` or ``\\``), not ``.`` or ``..``, and not ending in
  ``/`` or ``\\`` (that names a folder);
* no control characters (C0, DEL, C1: NUL, CR/LF, ESC...) and no invisible ones: bidi
  controls (a name could show ``gpj.exe`` as ``exe.jpg``), zero-width characters,
  unassigned or private-use code points;
* none of the characters Windows refuses (``< > : " | ? *``), no trailing dot or space
  (Windows drops them), and not a Windows device name (``CON``, ``PRN``, ``AUX``, ``NUL``,
  ``COM0``-``COM9``, ``LPT0``-``LPT9``, also with an extension: ``nul.csv``);
* at most 255 characters and 255 bytes in UTF-8 (less where a route says so);
* no SSIN (a patient's national register number, :mod:`hdhub.common.ssin`).

Letters of any script are fine (``café.csv``, ``отчёт.csv``); the name is kept in Unicode
NFC, so the same name typed on macOS and on Windows is one name. Each rule has its own
:class:`NameReason` and message (en/fr/nl/de); no message repeats the name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from enum import StrEnum

from hdhub.common.errors import FieldProblem, Problem
from hdhub.common.ssin import contains_ssin

__all__ = [
    "MAX_NAME_LENGTH",
    "BadFileName",
    "NameReason",
    "checked_file_name",
    "file_name_message",
    "file_name_refused",
]

MAX_NAME_LENGTH = 255
# Invisible categories: format (bidi controls, zero-width), surrogates, private use,
# unassigned, and the line and paragraph separators.
_INVISIBLE = frozenset({"Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_WINDOWS_RESERVED = frozenset('<>:"|?*')
_DEVICE = re.compile(r"CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³]", re.IGNORECASE)


class NameReason(StrEnum):
    """Which rule a file name breaks, in the order they are checked."""

    EMPTY = "empty"
    CONTROL = "control"
    INVISIBLE = "invisible"
    TRAILING_SEPARATOR = "trailing_separator"
    FOLDER = "folder"
    RESERVED = "reserved"
    TRAILING_DOT_OR_SPACE = "trailing_dot_or_space"
    DEVICE = "device"
    TOO_LONG = "too_long"
    SSIN = "ssin"


class BadFileName(ValueError):
    """A refused file name: ``reason`` names the rule; the message never repeats the name."""

    def __init__(self, reason: NameReason, max_length: int = MAX_NAME_LENGTH) -> None:
        self.reason = reason
        self.max_length = max_length
        super().__init__(self.message("en"))

    def message(self, lang: str = "en") -> str:
        """The reason in ``lang`` (en, fr, nl or de; others get English)."""
        return file_name_message(self.reason, lang, max_length=self.max_length)


_MESSAGES: Mapping[NameReason, Mapping[str, str]] = {
    NameReason.EMPTY: {
        "en": "A file name is required.",
        "fr": "Un nom de fichier est requis.",
        "nl": "Een bestandsnaam is verplicht.",
        "de": "Ein Dateiname ist erforderlich.",
    },
    NameReason.CONTROL: {
        "en": "A file name may not contain control characters (such as NUL, line breaks or ESC).",
        "fr": "Un nom de fichier ne peut pas contenir de caractères de contrôle (comme NUL, des sauts de ligne ou ESC).",
        "nl": "Een bestandsnaam mag geen stuurtekens bevatten (zoals NUL, regeleinden of ESC).",
        "de": "Ein Dateiname darf keine Steuerzeichen enthalten (etwa NUL, Zeilenumbrüche oder ESC).",
    },
    NameReason.INVISIBLE: {
        "en": "A file name may not contain invisible characters (text-direction controls, zero-width or unassigned characters): the name shown would not be the real one.",
        "fr": "Un nom de fichier ne peut pas contenir de caractères invisibles (contrôles de direction du texte, caractères de largeur nulle ou non attribués) : le nom affiché ne serait pas le vrai.",
        "nl": "Een bestandsnaam mag geen onzichtbare tekens bevatten (tekstrichtingstekens, tekens zonder breedte of niet-toegekende tekens): de getoonde naam zou niet de echte zijn.",
        "de": "Ein Dateiname darf keine unsichtbaren Zeichen enthalten (Textrichtungszeichen, Zeichen ohne Breite oder nicht zugewiesene Zeichen): der angezeigte Name wäre nicht der echte.",
    },
    NameReason.TRAILING_SEPARATOR: {
        "en": "A file name may not end with / or \\: that names a folder, not a file.",
        "fr": "Un nom de fichier ne peut pas se terminer par / ou \\ : cela désigne un dossier, pas un fichier.",
        "nl": "Een bestandsnaam mag niet eindigen op / of \\: dat is een map, geen bestand.",
        "de": "Ein Dateiname darf nicht auf / oder \\ enden: das bezeichnet einen Ordner, keine Datei.",
    },
    NameReason.FOLDER: {
        "en": "A file name has no folder part: no / or \\, and not . or ..",
        "fr": "Un nom de fichier ne contient pas de dossier : ni / ni \\, et ni . ni ..",
        "nl": "Een bestandsnaam bevat geen map: geen / of \\, en niet . of ..",
        "de": "Ein Dateiname enthält keinen Ordner: kein / oder \\, und nicht . oder ..",
    },
    NameReason.RESERVED: {
        "en": 'A file name may not contain < > : " | ? or *, which Windows does not allow.',
        "fr": 'Un nom de fichier ne peut pas contenir < > : " | ? ou *, que Windows refuse.',
        "nl": 'Een bestandsnaam mag geen < > : " | ? of * bevatten, die Windows niet toelaat.',
        "de": 'Ein Dateiname darf weder < > : " | ? noch * enthalten, die Windows nicht zulässt.',
    },
    NameReason.TRAILING_DOT_OR_SPACE: {
        "en": "A file name may not end with a dot or a space, which Windows drops.",
        "fr": "Un nom de fichier ne peut pas se terminer par un point ou une espace, que Windows supprime.",
        "nl": "Een bestandsnaam mag niet eindigen op een punt of een spatie, die Windows weglaat.",
        "de": "Ein Dateiname darf nicht auf einen Punkt oder ein Leerzeichen enden, die Windows entfernt.",
    },
    NameReason.DEVICE: {
        "en": "A file name may not be a Windows device name (CON, PRN, AUX, NUL, COM1-9, LPT1-9), with or without an extension.",
        "fr": "Un nom de fichier ne peut pas être un nom de périphérique Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9), avec ou sans extension.",
        "nl": "Een bestandsnaam mag geen Windows-apparaatnaam zijn (CON, PRN, AUX, NUL, COM1-9, LPT1-9), met of zonder extensie.",
        "de": "Ein Dateiname darf kein Windows-Gerätename sein (CON, PRN, AUX, NUL, COM1-9, LPT1-9), mit oder ohne Erweiterung.",
    },
    NameReason.TOO_LONG: {
        "en": "A file name has at most {max_length} characters (and 255 bytes in UTF-8).",
        "fr": "Un nom de fichier compte au plus {max_length} caractères (et 255 octets en UTF-8).",
        "nl": "Een bestandsnaam telt hoogstens {max_length} tekens (en 255 bytes in UTF-8).",
        "de": "Ein Dateiname hat höchstens {max_length} Zeichen (und 255 Byte in UTF-8).",
    },
    NameReason.SSIN: {
        "en": "A file name may not carry a national register number (SSIN): it identifies a patient.",
        "fr": "Un nom de fichier ne peut pas contenir de numéro de registre national (NISS) : il identifie un patient.",
        "nl": "Een bestandsnaam mag geen rijksregisternummer (INSZ) bevatten: het identificeert een patiënt.",
        "de": "Ein Dateiname darf keine Nationalregisternummer (INSZ) enthalten: sie identifiziert einen Patienten.",
    },
}


def file_name_message(reason: NameReason, lang: str = "en", *, max_length: int = MAX_NAME_LENGTH) -> str:
    """The message for ``reason`` in ``lang`` (en, fr, nl or de; others get English)."""
    texts = _MESSAGES[reason]
    return (texts.get(lang) or texts["en"]).format(max_length=max_length)


def _character_problem(name: str) -> NameReason | None:
    for c in name:
        code = ord(c)
        if code < 32 or 127 <= code < 160:
            return NameReason.CONTROL
    if not name.isascii() and any(unicodedata.category(c) in _INVISIBLE for c in name):
        return NameReason.INVISIBLE
    return None


def _problem(name: str, max_length: int) -> NameReason | None:
    if not name:
        return NameReason.EMPTY
    reason = _character_problem(name)
    if reason is not None:
        return reason
    if name[-1] in "/\\":
        return NameReason.TRAILING_SEPARATOR
    if "/" in name or "\\" in name or name in (".", ".."):
        return NameReason.FOLDER
    if not _WINDOWS_RESERVED.isdisjoint(name):
        return NameReason.RESERVED
    if name[-1] in ". ":
        return NameReason.TRAILING_DOT_OR_SPACE
    if _DEVICE.fullmatch(name.split(".", 1)[0].rstrip(" ")):  # nul.csv and "nul .csv" too
        return NameReason.DEVICE
    if len(name) > max_length or len(name.encode("utf-8")) > MAX_NAME_LENGTH:
        return NameReason.TOO_LONG
    if contains_ssin(name):
        return NameReason.SSIN
    return None


def checked_file_name(name: str, *, max_length: int = MAX_NAME_LENGTH) -> str:
    """``name`` in Unicode NFC when it is an acceptable file name; raises
    :class:`BadFileName` naming the first rule it breaks otherwise. ``max_length`` (at
    most 255) is a route's own limit in characters."""
    normalised = unicodedata.normalize("NFC", name)
    reason = _problem(normalised, min(max_length, MAX_NAME_LENGTH))
    if reason is not None:
        raise BadFileName(reason, min(max_length, MAX_NAME_LENGTH))
    return normalised


def file_name_refused(refusal: BadFileName, lang: str = "en") -> Problem:
    """The 422 answer for a refused name: ``bad-file-name``, the reason as the rule of the
    ``filename`` field, the message in ``lang``."""
    message = refusal.message(lang)
    return Problem(
        422,
        "bad-file-name",
        "The file name is refused",
        message,
        errors=[FieldProblem(field="filename", rule=refusal.reason.value, message=message)],
    )
