"""Row batches as Arrow IPC streams: how batches cross gRPC (DESIGN.md, hot paths)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc


def encode_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> bytes:
    """Rows of strings (None for empty) to one Arrow IPC stream of UTF-8 columns."""
    names = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    arrays = [
        pa.array([None if (v := r.get(n)) is None else str(v) for r in rows], type=pa.string()) for n in names
    ]
    batch = pa.RecordBatch.from_arrays(arrays, names=names)
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def decode_rows(data: bytes) -> list[dict[str, str]]:
    """An Arrow IPC stream back to rows; null and empty cells are left out of each row."""
    if not data:
        return []
    table = ipc.open_stream(pa.py_buffer(data)).read_all()
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    rows: list[dict[str, str]] = []
    for i in range(table.num_rows):
        rows.append({name: values[i] for name, values in columns.items() if values[i] not in (None, "")})
    return rows
