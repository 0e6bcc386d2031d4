"""The sim's REST surface under /sim: the operator (or a test) tells the stand-in central
receiver to refuse, drop or delay, and reads what it holds. The operator only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from pydantic import BaseModel, Field, StrictFloat

from hdhub.common.errors import forbidden
from hdhub.common.web import CurrentPrincipal
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

    return router
