"""The sim's REST surface under /sim: the operator (or a test) tells the stand-in central
receiver to refuse, drop or delay, and reads what it holds. The operator only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from hdhub.common.errors import Problem
from hdhub.common.paging import Limit, Offset, Page
from hdhub.sim.deps import CentralFilesDep, DecisionsDep, MyCareNetDep, Operator, ReceiverDep
from hdhub.sim.files import CentralFiles
from hdhub.sim.mycarenet import Down, MyCareNet, MyCareNetBehaviour, MyCareNetMode
from hdhub.sim.receiver import Behaviour, Mode, Receiver
from hdhub.sim.store import CentralDecision


class ReceiverBehaviour(BaseModel):
    mode: Mode = Field(
        description="accept; refuse (answer UNAVAILABLE, as if down); drop (accept, keep nothing)"
    )
    ack_delay_seconds: StrictFloat = Field(
        0.0, ge=0, le=30 * 24 * 3600, description="Confirm this long after a delivery is whole"
    )


class ReceiverState(ReceiverBehaviour):
    records: int
    pseudonym_halves: int


class MyCareNetSwitches(BaseModel):
    mode: MyCareNetMode = Field(
        description="accept; refuse (a TACK with an error); timeout (REST: hold the call; FILE_SYSTEM: "
        "collect, never answer); down (REST: HTTP 503; FILE_SYSTEM: collect nothing)"
    )
    hold_seconds: StrictFloat = Field(60.0, ge=0, le=3600, description="How long `timeout` holds a REST call")


class MyCareNetState(MyCareNetSwitches):
    messages: int = Field(description="Distinct messages received (by message id)")
    duplicates: int = Field(description="Messages received again with an id seen before (dropped)")


DecisionStatus = Literal["corrections_needed", "approved", "follow_up_needed", "error"]


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    registration_code: str = Field(
        min_length=1, max_length=32, description="The registration decided on (its newest version received)"
    )
    status: DecisionStatus = Field(
        description="corrections_needed, approved, follow_up_needed, or error (account not authorised)"
    )
    comment: str = Field("", max_length=2000, description="For the data provider; no patient data")
    fields: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=200, description="Technical names of the fields concerned"
    )


class DecisionOut(BaseModel):
    decision_id: str
    sequence: int
    registration_code: str
    technical_id: str
    version: int
    organisation_id: str
    status: DecisionStatus
    comment: str
    fields: list[str]
    decided_at: str
    outcome: Literal["applied", "refused"] | None = Field(
        description="What hdhub did with it, once acknowledged (null before)"
    )
    reason: str | None = Field(description="Why hdhub refused it")
    acknowledged_at: datetime | None

    @classmethod
    def of(cls, d: CentralDecision) -> DecisionOut:
        return cls(
            decision_id=d.decision_id,
            sequence=d.sequence,
            registration_code=d.registration_code,
            technical_id=d.technical_id,
            version=d.version,
            organisation_id=d.organisation_id,
            status=d.status,  # type: ignore[arg-type]
            comment=d.comment,
            fields=list(d.fields),
            decided_at=d.decided_at,
            outcome=d.outcome,  # type: ignore[arg-type]
            reason=d.reason,
            acknowledged_at=d.acknowledged_at,
        )


class DecisionPage(Page[DecisionOut]):
    """A page of the stand-in's decisions, newest first."""


router = APIRouter(prefix="/sim", tags=["sim"])


async def _receiver_state(receiver: Receiver) -> ReceiverState:
    b = receiver.behaviour
    return ReceiverState(mode=b.mode, ack_delay_seconds=b.ack_delay_seconds, **await receiver.counts())


def _mycarenet_state(mycarenet: MyCareNet) -> MyCareNetState:
    b = mycarenet.behaviour
    return MyCareNetState(mode=b.mode, hold_seconds=b.hold_seconds, **mycarenet.counts())


@router.get("/receiver", response_model=ReceiverState)
async def get_receiver(_operator: Operator, receiver: ReceiverDep) -> ReceiverState:
    """What the stand-in central receiver does now and how much it holds."""
    return await _receiver_state(receiver)


@router.put("/receiver", response_model=ReceiverState)
async def put_receiver(body: ReceiverBehaviour, _operator: Operator, receiver: ReceiverDep) -> ReceiverState:
    """Tell the receiver to accept, refuse or drop, and how long to wait before confirming."""
    receiver.behaviour = Behaviour(mode=body.mode, ack_delay_seconds=body.ack_delay_seconds)
    return await _receiver_state(receiver)


class FileSwitches(BaseModel):
    cut_after_bytes: StrictInt | None = Field(
        None,
        ge=1,
        le=1 << 50,
        description="Cut the next file transfer (UNAVAILABLE) once the file's held bytes reach this; "
        "fires once. null: never",
    )


class FilesState(FileSwitches):
    files: int = Field(description="Files the receiver holds, whole or in part")
    files_acknowledged: int


class CentralFileOut(BaseModel):
    file_id: str
    organisation_id: str
    registry: str
    size: int
    sha256: str
    offset: int = Field(description="Plaintext bytes held")
    attempts: int
    technical_ids: list[str]
    acknowledged: bool


async def _files_state(files: CentralFiles) -> FilesState:
    return FilesState(cut_after_bytes=files.cut_after_bytes, **await files.counts())


@router.get("/receiver/files", response_model=FilesState)
async def get_file_switches(_operator: Operator, files: CentralFilesDep) -> FilesState:
    """The stand-in's file switches and how many files it holds."""
    return await _files_state(files)


@router.put("/receiver/files", response_model=FilesState)
async def put_file_switches(body: FileSwitches, _operator: Operator, files: CentralFilesDep) -> FilesState:
    """Cut the next file transfer mid-way (a test of resume), or stop cutting."""
    files.cut_after_bytes = body.cut_after_bytes
    return await _files_state(files)


@router.get("/receiver/files/{file_id}", response_model=CentralFileOut)
async def get_central_file(file_id: str, _operator: Operator, files: CentralFilesDep) -> CentralFileOut:
    """One file as the receiver holds it."""
    row = await files.get(file_id[:64])
    if row is None:
        raise Problem(404, "not-found", "No such file at the receiver")
    return CentralFileOut(
        file_id=row.file_id,
        organisation_id=row.organisation_id,
        registry=row.registry_folder,
        size=row.size,
        sha256=row.sha256,
        offset=files.held(row.file_id) if row.acknowledged_at is None else row.size,
        attempts=row.attempts,
        technical_ids=[str(t) for t in row.technical_ids],
        acknowledged=row.acknowledged_at is not None,
    )


@router.get("/mycarenet", response_model=MyCareNetState)
async def get_mycarenet(_operator: Operator, mycarenet: MyCareNetDep) -> MyCareNetState:
    """What the MyCareNet stand-in does now and what it received."""
    return _mycarenet_state(mycarenet)


@router.put("/mycarenet", response_model=MyCareNetState)
async def put_mycarenet(
    body: MyCareNetSwitches, _operator: Operator, mycarenet: MyCareNetDep
) -> MyCareNetState:
    """Tell the MyCareNet stand-in to accept, refuse, time out or be down."""
    mycarenet.behaviour = MyCareNetBehaviour(mode=body.mode, hold_seconds=body.hold_seconds)
    return _mycarenet_state(mycarenet)


@router.post(
    "/mycarenet/messages",
    summary="MyCareNet's REST interface (stand-in): post a NIPPIN message, get its TACK",
    response_class=Response,
    responses={200: {"content": {"application/xml": {}}}, 503: {"description": "mycarenet-down"}},
)
async def post_message(
    request: Request,
    message_id: Annotated[str, Header(alias="X-NIP-Message-Id", max_length=64)],
    mycarenet: MyCareNetDep,
) -> Response:
    """No token: the real MyCareNet authenticates the sender by its certificate, which the
    stand-in does not check. It never runs in production."""
    body = await request.body()
    if mycarenet.behaviour.mode is MyCareNetMode.TIMEOUT:
        await mycarenet.hold()
    try:
        tack = mycarenet.receive(message_id, body)
    except Down:
        raise Problem(503, "mycarenet-down", "MyCareNet is unavailable") from None
    return Response(content=tack, media_type="application/xml")


@router.post("/decisions", status_code=201, response_model=DecisionOut)
async def post_decision(body: DecisionIn, _operator: Operator, decisions: DecisionsDep) -> DecisionOut:
    """Play the central platform: decide on a delivered registration (Corrections needed,
    Approved, Follow-up needed or Error), signed; registrations pulls it at its next poll."""
    row = await decisions.decide(
        registration_code=body.registration_code, status=body.status, comment=body.comment, fields=body.fields
    )
    return DecisionOut.of(row)


@router.get("/decisions", response_model=DecisionPage)
async def get_decisions(
    _operator: Operator,
    decisions: DecisionsDep,
    registration_code: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> DecisionPage:
    """The decisions made, newest first, with what hdhub did with each (once acknowledged)."""
    rows, total = await decisions.page(registration_code=registration_code, limit=limit, offset=offset)
    return DecisionPage(items=[DecisionOut.of(r) for r in rows], total=total, limit=limit, offset=offset)
