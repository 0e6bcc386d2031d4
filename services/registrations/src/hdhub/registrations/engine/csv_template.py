"""The CSV template of a DCD version, as the Upload Center and the drop folder read it:
`;`-separated UTF-8 with BOM, one column per value a person fills in (technical names,
repeats flattened ``DT_PCI_1`` .. ``DT_PCI_n``), then ``STATUS`` (``draft`` or ``submit``).

Under the header, one line starting with ``#`` shows what each column takes. It is a
comment for people: the Upload Center skips it when it is the first line under the header
and has a cell per column, and says so in the report (``template_hints_skipped``).
"""

from __future__ import annotations

import csv
import io

from hdhub.registrations.engine.dcd import DcdDefinition, Field, FieldType

#: The record's own choice, accepted in every file (docs/upload-center.md, Optional columns).
STATUS_COLUMN = "STATUS"

_HINTS = {
    FieldType.TEXT: "text",
    FieldType.INTEGER: "integer",
    FieldType.DECIMAL: "decimal with a point (72.5)",
    FieldType.DATE: "dd/mm/yyyy",
    FieldType.TIME: "HH:MM",
    FieldType.DATETIME: "dd/mm/yyyy HH:MM",
}


def template_fields(definition: DcdDefinition) -> list[Field]:
    """The fields a person fills in: no notes, no calculated or read-only fields."""
    return [f for f in definition.fields if f.is_input and not f.is_computed]


def _hint(f: Field) -> str:
    if f.type is FieldType.SELECT_ONE:
        hint = f"a code of list {f.list_name}"
    elif f.type is FieldType.SELECT_MULTIPLE:
        hint = f"codes of list {f.list_name} joined by |"
    else:
        hint = _HINTS.get(f.type, f.type.value)
    if not f.always_required:
        return hint
    return f"{hint} (required)" if f.relevant is None else f"{hint} (required when asked)"


def csv_template(definition: DcdDefinition) -> str:
    """The header line and the commented line of hints, as text (the caller adds the BOM)."""
    columns: list[str] = []
    hints: list[str] = []
    for f in template_fields(definition):
        for name in f.flat_names:
            columns.append(name)
            hints.append(_hint(f))
    if STATUS_COLUMN not in columns:
        columns.append(STATUS_COLUMN)
        hints.append("draft or submit (empty: the upload's autosubmit)")
    hints[0] = f"# {hints[0]}"
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerow(hints)
    return out.getvalue()
