"""Records of a file cut into batches for registrations: known columns kept (free text as
written, other cells trimmed), cells inspected for spreadsheet damage and for formulas
where the type cannot hold one, records that cannot be sent (wrong number of values,
damaged cells) set aside with their findings. Pure code, no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from hdhub.common.spreadsheet import read_exported_cell
from hdhub.uploads.domain.cells import FieldInfo, checker_for
from hdhub.uploads.domain.csvfile import OPTIONAL_COLUMNS, CsvFile, Finding, Record


@dataclass
class Batch:
    number: int  # 0-based
    records: int = 0  # records read in this batch, sent or not
    #: Rows sent to registrations, as columns, with each row's line and record number.
    columns: dict[str, list[str | None]] = field(default_factory=dict)
    lines: list[int] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    #: Records set aside, with why.
    set_aside: list[tuple[Record, list[Finding]]] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return len(self.lines)


def check_header(
    header: list[str], fields: dict[str, FieldInfo], required: tuple[str, ...], dcd_code: str
) -> list[Finding]:
    """Unknown columns (their data would be lost) and absent ones that every record must
    fill (``required``: required always, whatever the other answers): both errors that
    refuse the file. A column needed only in some cases may be absent; a record that
    needs it gets the DCD's ``required`` error, and an optional column nobody uses is
    not worth a word."""
    findings: list[Finding] = []
    known = [h for h in header if h in fields]
    if len(header) == 1 and not known:
        return [Finding("single_column", "error", line=1, column=header[0][:80])]
    for name in header:
        if name not in fields and name not in OPTIONAL_COLUMNS:
            findings.append(
                Finding("unknown_column", "error", line=1, column=name[:80], params={"dcd": dcd_code})
            )
    present = set(header)
    for name in required:
        if name not in present:
            findings.append(Finding("missing_column", "error", line=1, column=name, params={"column": name}))
    return findings


_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")

#: Optional columns sent to registrations with the DCD's fields.
PASSED_ON = frozenset({"STATUS"})


class Batches:
    """Iterate a read :class:`CsvFile` in batches of ``size`` records."""

    def __init__(self, csvfile: CsvFile, fields: dict[str, FieldInfo], size: int) -> None:
        self.file = csvfile
        self.size = size
        self.header = csvfile.header
        self.expected = len(self.header)
        self.known = [(i, fields[name]) for i, name in enumerate(self.header) if name in fields]
        # A record's own STATUS (draft / submit) goes along even where the DCD has no such
        # field: registrations reads it (and names a bad value) per row.
        self.known += [
            (i, FieldInfo(name, "text"))
            for i, name in enumerate(self.header)
            if name in PASSED_ON and name not in fields
        ]
        self._checks = [(i, f.name, checker_for(f)) for i, f in self.known]
        # Free text goes on as written (spaces included); other types cannot hold
        # surrounding spaces, so they are trimmed. Only spaces is an empty cell.
        self._columns = [
            (i, f.name, f.free_text and f.name not in PASSED_ON, f.type == "decimal") for i, f in self.known
        ]
        self._comma_noted: set[str] = set()
        self._records: Iterator[Record] = csvfile.records()
        self._pending: Record | None = next(self._records, None)
        self._number = 0

    @property
    def empty(self) -> bool:
        return self._pending is None

    def _next_record(self) -> tuple[Record, bool] | None:
        current = self._pending
        if current is None:
            return None
        self._pending = next(self._records, None)
        return current, self._pending is None

    def skip(self, batches: int) -> int:
        """Pass over batches already done (a worker taking over); records skipped."""
        skipped = 0
        for _ in range(batches * self.size):
            if self._next_record() is None:
                break
            skipped += 1
        self._number += batches
        return skipped

    def next(self) -> Batch | None:
        if self._pending is None:
            return None
        batch = Batch(self._number, columns={f.name: [] for _, f in self.known})
        self._number += 1
        while batch.records < self.size:
            item = self._next_record()
            if item is None:
                break
            record, last = item
            batch.records += 1
            findings = self._inspect(record, last)
            if findings:
                batch.set_aside.append((record, findings))
                continue
            for i, name, verbatim, decimal in self._columns:
                raw = record.values[i]
                v = raw.strip()
                if decimal and "," in v and _DECIMAL_COMMA.match(v):
                    v = self._decimal_point(name, v, record.line)
                # Free text comes back from an export with its neutralising ' (never a
                # formula in a spreadsheet): read_exported_cell takes that one off.
                batch.columns[name].append((read_exported_cell(raw) if verbatim else v) if v else None)
            batch.lines.append(record.line)
            batch.numbers.append(record.number)
        return batch

    def _decimal_point(self, column: str, value: str, line: int) -> str:
        """``72,5`` as ``72.5``: the decimal comma of Excel's Belgian CSV (which writes no
        thousands separators), noted once per column in the file's findings."""
        if column not in self._comma_noted:
            self._comma_noted.add(column)
            self.file.findings.append(
                Finding(
                    "decimal_comma",
                    "warning",
                    line=line,
                    column=column,
                    params={"column": column, "line": line},
                )
            )
        return value.replace(",", ".")

    def _inspect(self, record: Record, last: bool) -> list[Finding]:
        values = record.values
        if len(values) != self.expected:
            rule = (
                "truncated"
                if last and not self.file.ends_with_newline and len(values) < self.expected
                else "field_count"
            )
            return [
                Finding(
                    rule,
                    "error",
                    record.line,
                    record.number,
                    params={"count": len(values), "expected": self.expected},
                )
            ]
        findings = []
        for i, name, check in self._checks:
            v = values[i].strip()
            if v:
                found = check(v)
                if found is not None:
                    findings.append(
                        Finding(found.rule, found.severity, record.line, record.number, name, v, found.params)
                    )
        return findings
