"""The sim's REST surface under /sim: the operator (or a test) tells the stand-in central
receiver to refuse, drop or delay, and reads what it holds. The operator only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, Field, StrictFloat

from hdhub.common.errors import Problem, forbidden
from hdhub.common.web import CurrentPrincipal
from hdhub.sim.mycarenet import Down, MyCareNetBehaviour, MyCareNetMode
from hdhub.sim.receiver import Behaviour, Mode

if TYPE_CHECKING:
    from hdhub.sim.runtime import SimService


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


def build_router(service: SimService) -> APIRouter:
    router = APIRouter(prefix="/sim", tags=["sim"])
    receiver = service.receiver

    def operator_only(principal: CurrentPrincipal) -> None:
        if not principal.is_operator:
            raise forbidden("Only the operator drives the sim.")

    async def state() -> ReceiverState:
        b = receiver.behaviour
        return ReceiverState(mode=b.mode, ack_delay_seconds=b.ack_delay_seconds, **await receiver.counts())

    @router.get("/receiver", response_model=ReceiverState)
    async def get_receiver(principal: CurrentPrincipal) -> ReceiverState:
        """What the stand-in central receiver does now and how much it holds."""
        operator_only(principal)
        return await state()

    @router.put("/receiver", response_model=ReceiverState)
    async def put_receiver(body: ReceiverBehaviour, principal: CurrentPrincipal) -> ReceiverState:
        """Tell the receiver to accept, refuse or drop, and how long to wait before confirming."""
        operator_only(principal)
        receiver.behaviour = Behaviour(mode=body.mode, ack_delay_seconds=body.ack_delay_seconds)
        return await state()

    mycarenet = service.mycarenet

    def mycarenet_state() -> MyCareNetState:
        b = mycarenet.behaviour
        return MyCareNetState(mode=b.mode, hold_seconds=b.hold_seconds, **mycarenet.counts())

    @router.get("/mycarenet", response_model=MyCareNetState)
    async def get_mycarenet(principal: CurrentPrincipal) -> MyCareNetState:
        """What the MyCareNet stand-in does now and what it received."""
        operator_only(principal)
        return mycarenet_state()

    @router.put("/mycarenet", response_model=MyCareNetState)
    async def put_mycarenet(body: MyCareNetSwitches, principal: CurrentPrincipal) -> MyCareNetState:
        """Tell the MyCareNet stand-in to accept, refuse, time out or be down."""
        operator_only(principal)
        mycarenet.behaviour = MyCareNetBehaviour(mode=body.mode, hold_seconds=body.hold_seconds)
        return mycarenet_state()

    @router.post(
        "/mycarenet/messages",
        summary="MyCareNet's REST interface (stand-in): post a NIPPIN message, get its TACK",
        response_class=Response,
        responses={200: {"content": {"application/xml": {}}}, 503: {"description": "mycarenet-down"}},
    )
    async def post_message(
        request: Request, message_id: Annotated[str, Header(alias="X-NIP-Message-Id", max_length=64)]
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

    return router
