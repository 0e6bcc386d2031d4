"""nippin's Alembic history builds exactly the schema its models declare; messages lose
their XML (the SSIN) after the retention, keeping their row and statuses."""

from __future__ import annotations

from datetime import timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hdhub.common.db import utcnow
from hdhub.nippin.store import Base, NippinMessage
from services.nippin.tests.integration.support import implant, message_in, submit
from tests.support.stack import Stack


async def test_nippin_migrations_match_the_models(stack: Stack) -> None:
    def diff(connection: object) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with stack.service("nippin").db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_a_final_message_loses_its_xml_after_the_retention_and_keeps_its_status(stack: Stack) -> None:
    nippin = stack.service("nippin")
    reg = await submit(stack, implant(IDC_PAT="", TX_PAT_LAST_NAME="Wouters", TX_PAT_FIRST_NAME="Els"))
    message = await message_in(stack, reg["id"], "INVALID")
    async with nippin.db.system_session() as session:
        stored = await session.get(NippinMessage, message["id"])
        assert stored is not None and stored.xml_sealed is not None
        assert b"Wouters" not in stored.xml_sealed  # sealed, and names are not bound anyway
    soon = utcnow() + timedelta(days=nippin.settings.message_retention_days - 1)
    assert await nippin.messages.purge(soon) == 0
    later = utcnow() + timedelta(days=nippin.settings.message_retention_days + 1)
    assert await nippin.messages.purge(later) >= 1
    async with nippin.db.system_session() as session:
        stored = await session.get(NippinMessage, message["id"])
        assert stored is not None
        assert stored.xml_sealed is None and stored.purged_at is not None
        assert stored.status == "INVALID" and stored.invalid_reasons


async def test_the_stored_xml_is_sealed_and_opens_to_the_ssin(stack: Stack) -> None:
    nippin = stack.service("nippin")
    values = implant()
    reg = await submit(stack, values)
    message = await message_in(stack, reg["id"], "TO_SEND", "SENT", "ERROR")
    async with nippin.db.system_session() as session:
        stored = await session.get(NippinMessage, message["id"])
        assert stored is not None and stored.xml_sealed is not None
        assert values["IDC_PAT"].encode() not in stored.xml_sealed
        assert f"<nip:PatientSSIN>{values['IDC_PAT']}</nip:PatientSSIN>".encode() in nippin.messages.xml_of(
            stored
        )
