"""Success and error reports: written as parts (one per batch, replaced when a batch is
redone after a takeover) under the upload's prefix in the object store, and served as one
CSV by concatenating the parts in order. Cells are masked (personal data) and neutralised
(never a formula) before they are written."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from hdhub.common.objectstore import ObjectStore
from hdhub.common.spreadsheet import safe_cell
from hdhub.uploads.domain.messages import message

ERROR_COLUMNS = ("line", "record", "column", "value", "rule", "severity", "message")
SUCCESS_COLUMNS = ("line", "record", "outcome", "registration_id", "business_key", "status")
KINDS = {"errors": ERROR_COLUMNS, "success": SUCCESS_COLUMNS}
BOM = "\ufeff"  # so spreadsheets open the UTF-8 report with its accents intact


def render(rows: Iterable[Sequence[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue().encode("utf-8")


def prefix(organisation_id: str, upload_id: str) -> str:
    return f"uploads/{organisation_id}/{upload_id}"


def part_key(organisation_id: str, upload_id: str, kind: str, phase: str, batch: int) -> str:
    order = {"validating": 1, "storing": 2}[phase]
    return f"{prefix(organisation_id, upload_id)}/{kind}/{order}-{phase}-{batch:07d}.csv"


async def write_part(
    store: ObjectStore,
    organisation_id: str,
    upload_id: str,
    kind: str,
    phase: str,
    batch: int,
    rows: Sequence[Sequence[Any]],
) -> None:
    key = part_key(organisation_id, upload_id, kind, phase, batch)
    if rows:
        await store.put(key, render(rows), content_type="text/csv")
    else:  # a redone batch may now have nothing to say
        await store.delete(key)


def finding_rows(findings: Iterable[dict[str, Any]], lang: str) -> list[tuple[Any, ...]]:
    """Report rows of findings (as :func:`~hdhub.uploads.worker.finding_dict` stores them):
    the one place where a finding's message is built."""
    return [
        (
            f.get("line") or "",
            f.get("record") or "",
            f.get("column", ""),
            f.get("value", ""),
            f["rule"],
            f["severity"],
            message(
                f["rule"],
                lang,
                {**f.get("params", {}), "line": f.get("line"), "column": f.get("column")},
                masked=bool(f.get("masked")),
            ),
        )
        for f in findings
    ]


async def stream_report(
    store: ObjectStore, organisation_id: str, upload_id: str, kind: str, head: list[tuple[Any, ...]]
) -> AsyncIterator[bytes]:
    """The report as one CSV: header, then ``head`` rows (file-level findings), then the parts."""
    yield (BOM + render([KINDS[kind]]).decode()).encode("utf-8")
    if head:
        yield render(head)
    keys = sorted([o.key async for o in store.list(f"{prefix(organisation_id, upload_id)}/{kind}/")])
    for key in keys:
        async for chunk in store.stream(key):
            yield chunk
