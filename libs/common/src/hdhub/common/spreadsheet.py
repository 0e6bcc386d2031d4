"""Cells the platform writes for a spreadsheet (CSV reports, RESULTS files, exports, any
XLSX): what users typed is stored as typed, and made harmless here, on output.

A spreadsheet runs a cell as a formula when it begins with ``=``, ``+``, ``-`` or ``@``
(DDE payloads like ``=cmd|' /C calc'!A0``, ``=HYPERLINK(...)`` leaking data), and some
also when a TAB or CR comes first. OWASP's CSV-injection guidance: prefix such a cell
with ``'``, which spreadsheets read as "this is text" and do not show. Every writer of
CSV or XLSX in hdhub passes each cell through :func:`safe_cell`; quoting of separators,
quotes and line breaks is left to the CSV writer (``csv.writer`` quotes them).
"""

from __future__ import annotations

import re

__all__ = ["FORMULA_STARTS", "export_cell", "read_exported_cell", "safe_cell"]

#: First characters that make a spreadsheet read a cell as a formula: OWASP's list
#: (= + - @ TAB CR), LF and NUL (OWASP ASVS 1.2.10), and the full-width forms that
#: East Asian versions of Excel also take for = + - @.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0", "\uff1d", "\uff0b", "\uff0d", "\uff20")

#: A plain signed number (``-5``, ``+32``, ``-0.25``, ``-72,5``) is a value, never a
#: formula, and stays readable as a number.
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]+)?")


def safe_cell(value: object) -> str:
    """``value`` as the text of a cell that a spreadsheet shows and never runs.

    >>> safe_cell("=1+1"), safe_cell("@SUM(A1)"), safe_cell("-5"), safe_cell("ok")
    ("'=1+1", "'@SUM(A1)", '-5', 'ok')

    Applying it twice changes nothing (``'`` is not a formula start)."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def _formula_like(text: str) -> bool:
    return text.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text)


def export_cell(value: object) -> str:
    """``value`` as the cell of a file meant to come back (exports: uploaded again, the
    data unchanged): neutralised like :func:`safe_cell`, and reversibly.

    A cell that is formula-like once its leading apostrophes are set aside gets one more
    leading ``'``; :func:`read_exported_cell` takes exactly that one off. So a stored
    ``=1+1`` goes out as ``'=1+1`` and comes back ``=1+1``, and a stored ``'=1+1`` (an
    apostrophe someone typed) goes out as ``''=1+1`` and comes back ``'=1+1``.

    >>> export_cell("=1+1"), export_cell("'=1+1"), export_cell("-5"), export_cell("'ok")
    ("'=1+1", "''=1+1", '-5', "'ok")"""
    text = "" if value is None else str(value)
    return "'" + text if _formula_like(text.lstrip("'")) else text


def read_exported_cell(text: str) -> str:
    """A cell as :func:`export_cell` meant it: the neutralising ``'`` taken off (the
    Upload Center reads every cell through this). ``'`` before anything a spreadsheet
    would not run is data and stays, as does a cell that never had one; spreadsheets
    drop such a leading apostrophe too.

    >>> read_exported_cell("'=1+1"), read_exported_cell("''=1+1"), read_exported_cell("'ok")
    ('=1+1', "'=1+1", "'ok")"""
    if text.startswith("'") and _formula_like(text.lstrip("'")):
        return text[1:]
    return text
