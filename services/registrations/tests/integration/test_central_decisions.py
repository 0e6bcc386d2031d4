"""The return channel: the central platform (the sim) decides on delivered registrations;
registrations pulls the decisions, checks their signature, applies each once through the
lifecycle, refuses those on a registration changed meanwhile, and sends every outcome
back, whichever side was down meanwhile (docs/delivery.md, "Decisions")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from hdhub.common.central_decision import key_id_of, sign
from hdhub.common.db import utcnow
from hdhub.proto.sim.v1 import central_pb2 as pb
from hdhub.registrations.delivery.decisions import CentralDecisions
from hdhub.registrations.store import CentralDecision, Registration
from tests.support import central as support
from tests.support.clock import ManualClock
from tests.support.samples import record
from tests.support.stack import Stack

NURSE, OPERATOR, FOREIGN = "nurse@az-demo.test", "operator@hdhub.test", "biologist@lab-demo.test"


class Central(support.Central):
    @property
    def decisions(self) -> CentralDecisions:
        return self.delivery.decisions  # type: ignore[no-any-return]

    async def h(self, who: str = NURSE) -> dict[str, str]:
        return await self.stack.headers(who)

    async def submitted(self, dcd: str = "ANGIO_HOSP", **overrides: str) -> dict[str, Any]:
        """A registration submitted and confirmed OK by the stand-in."""
        r = await self.stack.client.post(
            "/api/v1/registrations",
            json={
                "organisation_id": "az-demo",
                "dcd": dcd,
                "values": record(dcd, **overrides),
                "submit": True,
            },
            headers=await self.h(),
        )
        assert r.status_code == 201, r.text
        self.start()
        await self.settle()
        self.clock.advance(timedelta(seconds=5))
        await self.settle()
        reg = await self.get(r.json()["id"])
        assert (reg["status"], reg["status_confirmation"]) == ("submitted", "ok")
        return reg

    async def corrected(self, got: dict[str, Any], **changes: Any) -> dict[str, Any]:
        """``got`` saved with ``changes`` and submitted again, delivered to the stand-in."""
        url = f"/api/v1/registrations/{got['id']}"
        r = await self.stack.client.put(
            url,
            json={"values": {**got["values"], **changes}},
            headers={**await self.h(), "If-Match": f'"{got["version"]}"'},
        )
        assert r.status_code == 200, r.text
        r = await self.stack.client.post(
            f"{url}/submit", headers={**await self.h(), "If-Match": r.headers["ETag"]}
        )
        assert r.status_code == 202, r.text
        self.start()
        await self.settle()
        self.clock.advance(timedelta(seconds=5))
        await self.settle()
        again = await self.get(got["id"])
        assert again["status"] == "submitted", again
        return again

    async def get(self, reg_id: str, who: str = NURSE) -> dict[str, Any]:
        r = await self.stack.client.get(f"/api/v1/registrations/{reg_id}", headers=await self.h(who))
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def decide(
        self, reg: dict[str, Any], status: str, comment: str = "", fields: Any = ()
    ) -> dict[str, Any]:
        """The central side decides (the sim's REST switch, as the operator)."""
        r = await self.stack.client.post(
            "/sim/decisions",
            json={
                "registration_code": reg["registration_code"],
                "status": status,
                "comment": comment,
                "fields": list(fields),
            },
            headers=await self.h(OPERATOR),
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def at_central(self, decision_id: str) -> dict[str, Any]:
        r = await self.stack.client.get("/sim/decisions?limit=1000", headers=await self.h(OPERATOR))
        assert r.status_code == 200, r.text
        return next(d for d in r.json()["items"] if d["decision_id"] == decision_id)


@pytest.fixture
async def central(stack: Stack) -> AsyncIterator[Central]:
    with support.on_clock(Central(stack, ManualClock(utcnow() - timedelta(hours=1)))) as c:
        await c.settle()
        await c.decisions.poll()
        yield c


async def test_corrections_needed_is_applied_once_and_answered_by_resubmission(central: Central) -> None:
    reg = await central.submitted()
    decision = await central.decide(reg, "corrections_needed", "LVEF looks implausible", ["MS_LVEF"])
    await central.decisions.poll()
    got = await central.get(reg["id"])
    # The seed: the status confirmation is empty in Corrections needed.
    assert (got["status"], got["status_confirmation"]) == ("corrections_needed", None)
    shown = got["central_decision"]
    assert (shown["status"], shown["comment"], shown["fields"]) == (
        "corrections_needed",
        "LVEF looks implausible",
        ["MS_LVEF"],
    )
    page = (
        await central.stack.client.get(
            f"/api/v1/registrations/{reg['id']}/decisions", headers=await central.h()
        )
    ).json()
    assert set(page) == {"items", "total", "limit", "offset", "next"} and page["total"] == 1
    history = (
        await central.stack.client.get(
            f"/api/v1/registrations/{reg['id']}/history", headers=await central.h()
        )
    ).json()["items"]
    assert (history[-1]["actor"], history[-1]["via"], history[-1]["comment"]) == (
        "central platform",
        "central",
        "LVEF looks implausible",
    )
    at_central = await central.at_central(decision["decision_id"])
    assert (at_central["outcome"], at_central["reason"]) == ("applied", None)

    # The same decision again (a replay, or pulled twice): nothing changes.
    message = (await central.sim.decisions.after(decision["sequence"] - 1, 1))[0]
    verifier = await central.delivery.sender.central.decision_verifier()
    taken = await central.decisions.take(message, verifier)
    assert taken.applied
    assert (await central.get(reg["id"]))["version"] == got["version"]
    async with central.delivery.db.system_session() as session:
        rows = (
            await session.execute(
                select(func.count())
                .select_from(CentralDecision)
                .where(CentralDecision.decision_id == decision["decision_id"])
            )
        ).scalar_one()
    assert rows == 1

    # Corrected and submitted again: round again to Submitted, confirmation OK.
    again = await central.corrected(got, MS_LVEF=55)
    assert again["status_confirmation"] == "ok"


async def test_a_decision_on_a_registration_changed_meanwhile_is_refused_and_the_reason_sent_back(
    central: Central,
) -> None:
    reg = await central.submitted()
    central.behave(support.Mode.REFUSE)  # no worker takes it before the reopen
    decision = await central.decide(reg, "approved")
    r = await central.stack.client.post(
        f"/api/v1/registrations/{reg['id']}/reopen",
        headers={**await central.h(), "If-Match": f'"{reg["version"]}"'},
    )
    assert r.status_code == 200, r.text
    central.behave(support.Mode.ACCEPT)
    await central.decisions.poll()
    got = await central.get(reg["id"])
    assert got["status"] == "open" and got["central_decision"] is None
    page = (
        await central.stack.client.get(
            f"/api/v1/registrations/{reg['id']}/decisions", headers=await central.h()
        )
    ).json()
    assert [(d["outcome"], d["reason"]) for d in page["items"]] == [("refused", "registration-changed")]
    at_central = await central.at_central(decision["decision_id"])
    assert (at_central["outcome"], at_central["reason"]) == ("refused", "registration-changed")


async def test_a_decision_naming_fields_the_dcd_does_not_have_is_refused_and_nothing_of_it_stored(
    central: Central,
) -> None:
    reg = await central.submitted()
    decision = await central.decide(
        reg, "corrections_needed", "see NO_SUCH_FIELD", ["MS_LVEF", "NO_SUCH_FIELD", "<script>"]
    )
    await central.decisions.poll()
    got = await central.get(reg["id"])
    assert (got["status"], got["status_confirmation"], got["central_decision"]) == ("submitted", "ok", None)
    assert got["version"] == reg["version"]
    page = (
        await central.stack.client.get(
            f"/api/v1/registrations/{reg['id']}/decisions", headers=await central.h()
        )
    ).json()
    assert [(d["outcome"], d["reason"], d["fields"], d["comment"]) for d in page["items"]] == [
        ("refused", "unknown-fields", [], "")
    ]
    async with central.delivery.db.system_session() as session:
        stored = (
            await session.execute(
                select(CentralDecision.fields, CentralDecision.comment).where(
                    CentralDecision.decision_id == decision["decision_id"]
                )
            )
        ).one()
    assert (list(stored.fields), stored.comment) == ([], "")
    at_central = await central.at_central(decision["decision_id"])
    assert (at_central["outcome"], at_central["reason"]) == ("refused", "unknown-fields")
    # Names the DCD has are taken as before.
    await central.decide(reg, "corrections_needed", "LVEF?", ["MS_LVEF"])
    await central.decisions.poll()
    assert (await central.get(reg["id"]))["central_decision"]["fields"] == ["MS_LVEF"]


async def test_a_forged_decision_is_refused_and_changes_nothing(central: Central) -> None:
    """Decisions whose signature does not hold reach registrations over the channel (put
    there past the sim's signing): one naming the central key but signed by another, one
    signed by a key of its own. Both are refused, the registration stays as it was, and
    the genuine decision before them still applies."""
    reg = await central.submitted()
    genuine = await central.decide(reg, "approved")
    forger = ec.generate_private_key(ec.SECP256R1())
    async with central.sim.db.system_session() as session:
        row = await session.get(support.SimDecision, genuine["sequence"])
        assert row is not None
        for n, key_id in enumerate((row.signing_key_id, key_id_of(forger.public_key()))):
            message = pb.Decision(
                decision_id=f"forged-{n}-{row.decision_id[:20]}",
                technical_id=row.technical_id,
                version=row.version,
                organisation_id=row.organisation_id,
                status=pb.DECISION_STATUS_ERROR,
                decided_at=row.decided_at,
                signing_key_id=key_id,
            )
            session.add(
                support.SimDecision(
                    decision_id=message.decision_id,
                    technical_id=row.technical_id,
                    version=row.version,
                    organisation_id=row.organisation_id,
                    registration_code=row.registration_code,
                    status="error",
                    comment="",
                    fields=[],
                    decided_at=row.decided_at,
                    signing_key_id=key_id,
                    signature=sign(forger, message, "DECISION_STATUS_ERROR"),
                )
            )
    await central.decisions.poll()
    got = await central.get(reg["id"])
    assert got["status"] == "approved" and got["status_confirmation"] is None
    for n in (0, 1):
        forged = await central.at_central(f"forged-{n}-{genuine['decision_id'][:20]}")
        assert (forged["outcome"], forged["reason"]) == ("refused", "signature")
    # A forged decision never shows on the registration.
    page = (
        await central.stack.client.get(
            f"/api/v1/registrations/{reg['id']}/decisions", headers=await central.h()
        )
    ).json()
    assert [d["status"] for d in page["items"]] == ["approved"]


async def test_central_down_then_up_loses_nothing(central: Central) -> None:
    reg = await central.submitted()
    # Down before it decides (the sim's REST switches still answer): no worker takes it yet.
    central.behave(support.Mode.REFUSE)
    decision = await central.decide(reg, "corrections_needed", "DT_DISCH before DT_HOSPZ?", ["DT_DISCH"])
    await central.decisions.poll()
    assert (await central.get(reg["id"]))["status"] == "submitted"
    central.behave(support.Mode.ACCEPT)
    await central.decisions.poll()
    assert (await central.get(reg["id"]))["status"] == "corrections_needed"

    # Down again before the outcome of the next decision is acknowledged: it waits.
    reg2 = await central.submitted()
    verifier = await central.delivery.sender.central.decision_verifier()
    central.behave(support.Mode.REFUSE)  # before it decides: no worker takes or acknowledges it
    second = await central.decide(reg2, "error", "This account is not authorised for ANGIO")
    async with central.sim.db.system_session() as session:
        row = await session.get(support.SimDecision, second["sequence"])
        assert row is not None
        message = support.as_message(row)
    await central.decisions.take(message, verifier)  # taken, as a poll would, just before the cut
    assert await central.decisions.acknowledge() == 0
    assert (await central.at_central(second["decision_id"]))["outcome"] is None
    central.behave(support.Mode.ACCEPT)
    await central.decisions.acknowledge()
    assert (await central.at_central(second["decision_id"]))["outcome"] == "applied"
    assert (await central.at_central(decision["decision_id"]))["outcome"] == "applied"
    got = await central.get(reg2["id"])
    assert got["status"] == "error" and got["status_label"] == "Error"


async def test_follow_up_needed_creates_the_one_year_follow_up_after_pci(central: Central) -> None:
    reg = await central.submitted("ANGIO_HOSP_PCI")
    await central.decide(reg, "approved")
    await central.decide(reg, "follow_up_needed", "One-year follow-up after PCI")
    await central.decisions.poll()
    got = await central.get(reg["id"])
    assert got["status"] == "follow_up_needed"
    page = (
        await central.stack.client.get(
            "/api/v1/follow-ups?organisation_id=az-demo&limit=500", headers=await central.h()
        )
    ).json()
    mine = [f for f in page["items"] if f["registration_id"] == reg["id"]]
    assert len(mine) == 1 and mine[0]["dcd_code"] == "ANGIO_FU_PCI"
    pci = datetime.fromisoformat(got["values"]["DT_PCI_1"]).replace(tzinfo=UTC)
    assert datetime.fromisoformat(mine[0]["due_at"]) == pci + timedelta(days=365)

    async def follow_ups() -> list[dict[str, Any]]:
        page = (
            await central.stack.client.get(
                "/api/v1/follow-ups?organisation_id=az-demo&limit=500", headers=await central.h()
            )
        ).json()
        return [f for f in page["items"] if f["registration_id"] == reg["id"]]

    # The PCI date corrected and sent again, Follow-up needed asked again: one follow-up,
    # due a year after the corrected date, with the newest comment.
    url = f"/api/v1/registrations/{reg['id']}"
    resent = await central.corrected(got, DT_PCI_1=(pci + timedelta(days=1)).date().isoformat())
    await central.decide(resent, "follow_up_needed", "Asked again")
    await central.decisions.poll()
    (again,) = await follow_ups()
    assert datetime.fromisoformat(again["due_at"]) == pci + timedelta(days=366)
    assert again["comment"] == "Asked again"
    # Sent again, reopened and deleted: nothing is followed up of it any more.
    now = await central.get(reg["id"])
    r = await central.stack.client.post(
        f"{url}/submit", headers={**await central.h(), "If-Match": f'"{now["version"]}"'}
    )
    assert r.status_code == 202, r.text
    await central.settle()
    central.clock.advance(timedelta(seconds=5))
    await central.settle()
    for step in ("reopen", "delete"):
        now = await central.get(reg["id"])
        headers = {**await central.h(), "If-Match": f'"{now["version"]}"'}
        if step == "reopen":
            r = await central.stack.client.post(f"{url}/reopen", headers=headers)
        else:
            r = await central.stack.client.delete(url, headers=headers)
        assert r.status_code == 200, (step, r.text)
    assert await follow_ups() == []
    # Another organisation's member sees neither the decision nor the follow-up.
    r = await central.stack.client.get(
        "/api/v1/follow-ups?organisation_id=az-demo", headers=await central.h(FOREIGN)
    )
    assert r.status_code == 403
    r = await central.stack.client.get(
        f"/api/v1/registrations/{reg['id']}/decisions", headers=await central.h(FOREIGN)
    )
    assert r.status_code == 404


async def test_the_same_record_sent_again_leaves_the_decision_as_it_is(central: Central) -> None:
    """A hospital system resending its records nightly: once Approved, the same record
    submitted again changes nothing (no resubmission, no second delivery, no history); a
    changed one is refused over /api/v1 as before (v2's "latest submission wins" sends it)."""
    reg = await central.submitted()
    await central.decide(reg, "approved")
    await central.decisions.poll()
    decided = await central.get(reg["id"])
    assert decided["status"] == "approved"
    history = f"/api/v1/registrations/{reg['id']}/history"
    before = (await central.stack.client.get(history, headers=await central.h())).json()
    body = {"organisation_id": "az-demo", "dcd": "ANGIO_HOSP", "values": reg["values"], "submit": True}
    r = await central.stack.client.post("/api/v1/registrations", json=body, headers=await central.h())
    assert r.status_code in (200, 201), r.text
    assert r.json()["id"] == reg["id"] and r.json()["status"] == "approved"
    got = await central.get(reg["id"])
    assert (got["status"], got["version"], got["status_confirmation"]) == (
        "approved",
        decided["version"],
        decided["status_confirmation"],
    )
    assert (await central.stack.client.get(history, headers=await central.h())).json() == before
    changed = {**body, "values": {**reg["values"], "MS_WEIGHT": "91.5"}}
    r = await central.stack.client.post("/api/v1/registrations", json=changed, headers=await central.h())
    assert r.status_code == 409 and r.json()["type"].endswith("registration-not-editable"), r.text


async def test_follow_up_on_a_dcd_defining_none_is_refused(central: Central) -> None:
    reg = await central.submitted()
    decision = await central.decide(reg, "follow_up_needed")
    await central.decisions.poll()
    assert (await central.get(reg["id"]))["status"] == "submitted"
    at_central = await central.at_central(decision["decision_id"])
    assert (at_central["outcome"], at_central["reason"]) == ("refused", "no-follow-up-defined")
    async with central.delivery.db.system_session() as session:
        stored = await session.get(Registration, reg["id"])
        assert stored is not None and stored.status == "submitted"


async def test_the_portals_grpc_shows_the_decision_and_the_follow_ups_to_the_organisation_only(
    central: Central,
) -> None:
    """``GetRegistrationHistory`` carries the decision (comment, fields concerned) and
    ``ListFollowUps`` the follow-up due, for the organisation's members with the registry;
    a member of another organisation is refused, one without the registry sees neither."""
    import grpc

    from hdhub.common.auth import current_principal, verifier
    from hdhub.proto.registrations.v1 import registrations_pb2 as rpb
    from services.registrations.tests.integration.test_grpc_api import stub_as
    from tests.support.tokens import mint

    reg = await central.submitted("ANGIO_HOSP_PCI")
    await central.decide(reg, "corrections_needed", "Check the second PCI", ["DT_PCI_2"])
    await central.decisions.poll()
    stub = await stub_as(central.stack, NURSE)
    found = await stub.GetRegistrationHistory(rpb.GetRegistrationHistoryRequest(id=reg["id"]))
    assert (found.decision.status, found.decision.comment, list(found.decision.fields)) == (
        "corrections_needed",
        "Check the second PCI",
        ["DT_PCI_2"],
    )
    assert found.versions[-1].action == "central_corrections_needed"

    other = await stub_as(central.stack, FOREIGN)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await other.GetRegistrationHistory(rpb.GetRegistrationHistoryRequest(id=reg["id"]))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await other.ListFollowUps(rpb.ListFollowUpsRequest(organisation_id="az-demo"))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # Corrected, resubmitted, confirmed, then Follow-up needed: the follow-up is listed.
    got = await central.get(reg["id"])
    resent = await central.corrected(got, DT_PCI_2="2025-03-13")
    await central.decide(resent, "follow_up_needed", "A year after the PCI")
    await central.decisions.poll()
    assert (await central.get(reg["id"]))["status"] == "follow_up_needed"
    listed = await stub.ListFollowUps(rpb.ListFollowUpsRequest(organisation_id="az-demo", limit=500))
    mine = [f for f in listed.follow_ups if f.registration_id == reg["id"]]
    assert [(f.dcd_code, f.comment) for f in mine] == [("ANGIO_FU_PCI", "A year after the PCI")]
    assert [f.due_at for f in listed.follow_ups] == sorted(f.due_at for f in listed.follow_ups)

    ngs_only = await mint(
        central.stack, "ngs-only@az-demo.test", {"az-demo": ["registrant"]}, registries=["HDBP0257"]
    )
    current_principal.set(await verifier().verify(ngs_only))
    none = await stub.ListFollowUps(rpb.ListFollowUpsRequest(organisation_id="az-demo", limit=500))
    assert [f for f in none.follow_ups if f.registration_id == reg["id"]] == []
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetRegistrationHistory(rpb.GetRegistrationHistoryRequest(id=reg["id"]))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
