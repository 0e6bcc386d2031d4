"""Rows as an Arrow IPC stream, the way the Upload Center and intake send batches to
registrations over gRPC (``rows_arrow``), for tests and benchmarks that call it as they do."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from hdhub.registrations.batches.arrow import encode_batch


def encode_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> bytes:
    """Rows of strings (None for empty) to one Arrow IPC stream of UTF-8 columns."""
    names = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    arrays = [
        pa.array([None if (v := r.get(n)) is None else str(v) for r in rows], type=pa.string()) for n in names
    ]
    return encode_batch(pa.RecordBatch.from_arrays(arrays, names=names))
