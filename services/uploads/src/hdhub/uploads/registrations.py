"""The uploads service's client of hdhub.registrations.v1: batches as Arrow IPC streams
(one record batch of UTF-8 columns keyed by technical name, as registrations expects)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.ipc as ipc

from hdhub.common.grpc import channel
from hdhub.proto.registrations.v1 import registrations_pb2 as pb
from hdhub.proto.registrations.v1 import registrations_pb2_grpc as pb_grpc
from hdhub.uploads.domain.cells import FieldInfo

#: Calls that carry a whole batch get more time than the platform's default deadline.
BATCH_TIMEOUT_SECONDS = 300.0
VALIDATION_MODES = {
    "none": pb.VALIDATION_MODE_NONE,
    "save_on_validations": pb.VALIDATION_MODE_SAVE_ON_VALIDATIONS,
    "validate_all": pb.VALIDATION_MODE_VALIDATE_ALL,
}
OUTCOMES: dict[int, str] = {
    pb.ROW_OUTCOME_CREATED: "created",
    pb.ROW_OUTCOME_UPDATED: "updated",
    pb.ROW_OUTCOME_IGNORED_DUPLICATE: "ignored_duplicate",
    pb.ROW_OUTCOME_KEPT_STORED: "kept_stored",
    pb.ROW_OUTCOME_REJECTED: "rejected",
}


def encode_columns(columns: dict[str, list[str | None]]) -> bytes:
    """Columns of strings (None for empty) to one Arrow IPC stream."""
    names = list(columns)
    batch = pa.RecordBatch.from_arrays([pa.array(columns[n], type=pa.string()) for n in names], names=names)
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


@dataclass(frozen=True)
class DcdSummary:
    project_code: str
    dcd_code: str
    version: str
    fields: dict[str, FieldInfo]
    required: tuple[str, ...]


def _stub() -> pb_grpc.RegistrationsServiceStub:
    return pb_grpc.RegistrationsServiceStub(channel("registrations"))


async def dcd_summary(dcd_code: str, version: str | None = None) -> DcdSummary:
    request = pb.GetDcdVersionRequest(dcd=pb.DcdRef(dcd_code=dcd_code, version=version or ""))
    reply: pb.GetDcdVersionResponse = await _stub().GetDcdVersion(request)  # type: ignore[misc]
    fields = {f.technical_name: FieldInfo(f.technical_name, f.type, f.personal_data) for f in reply.fields}
    required = tuple(f.technical_name for f in reply.fields if f.required)
    return DcdSummary(reply.project_code, reply.dcd_code, reply.version, fields, required)


async def validate_batch(
    *, organisation_id: str, dcd: DcdSummary, rows: bytes, language: str
) -> pb.ValidateBatchResponse:
    reply: pb.ValidateBatchResponse = await _stub().ValidateBatch(  # type: ignore[misc]
        pb.ValidateBatchRequest(
            organisation_id=organisation_id,
            dcd=pb.DcdRef(dcd_code=dcd.dcd_code, version=dcd.version),
            rows_arrow=rows,
            language=language,
        ),
        timeout=BATCH_TIMEOUT_SECONDS,
    )
    return reply


async def upsert_batch(
    *,
    organisation_id: str,
    dcd: DcdSummary,
    rows: bytes,
    language: str,
    options: dict[str, object],
    batch_id: str,
    author: str,
    after_batch_id: str = "",
) -> pb.UpsertBatchResponse:
    reply: pb.UpsertBatchResponse = await _stub().UpsertBatch(  # type: ignore[misc]
        pb.UpsertBatchRequest(
            organisation_id=organisation_id,
            dcd=pb.DcdRef(dcd_code=dcd.dcd_code, version=dcd.version),
            rows_arrow=rows,
            language=language,
            validation_mode=VALIDATION_MODES[str(options["validation"])],
            conflict_master=pb.CONFLICT_MASTER_STORED
            if options["conflict_master"] == "stored"
            else pb.CONFLICT_MASTER_NEW,
            ignore_duplicates=bool(options["ignore_duplicates"]),
            submit=bool(options["autosubmit"]),
            dry_run=bool(options["dry_run"]),
            batch_id=batch_id,
            author=author,
            after_batch_id=after_batch_id,
        ),
        timeout=BATCH_TIMEOUT_SECONDS,
    )
    return reply


def outcome_name(outcome: int) -> str:
    return OUTCOMES.get(outcome, "rejected")


__all__ = [
    "DcdSummary",
    "Sequence",
    "dcd_summary",
    "encode_columns",
    "outcome_name",
    "upsert_batch",
    "validate_batch",
]
