"""Row batches cross gRPC as Arrow IPC streams of UTF-8 columns, both ways: batches arrive
from uploads and intake, reimbursed registrations leave for nippin's nightly report
(DESIGN.md, hot paths)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.ipc as ipc


def decode_rows(data: bytes) -> list[dict[str, str]]:
    """An Arrow IPC stream back to rows; null and empty cells are left out of each row."""
    if not data:
        return []
    return rows_of(read_table(data))


def read_table(data: bytes) -> pa.Table:
    """An Arrow IPC stream as a table (no rows for no bytes)."""
    if not data:
        return pa.table({})
    return ipc.open_stream(pa.py_buffer(data)).read_all()


def rows_of(table: pa.Table) -> list[dict[str, str]]:
    """A table's rows as ``decode_rows`` gives them: null and empty cells left out."""
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    rows: list[dict[str, str]] = []
    for i in range(table.num_rows):
        rows.append({name: values[i] for name, values in columns.items() if values[i] not in (None, "")})
    return rows


def encode_batch(batch: pa.RecordBatch) -> bytes:
    """One record batch as an Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())
