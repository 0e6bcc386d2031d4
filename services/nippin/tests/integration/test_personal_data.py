"""No patient identifier of a NIPPIN message reaches a log line or a span: not on the
hand-over, the send, a refusal, the report or the export."""

from __future__ import annotations

import io
import logging

from hdhub.common.logging import JsonFormatter
from services.nippin.tests.integration.support import (
    MANAGER,
    ORG,
    implant,
    message_in,
    mycarenet,
    submit,
    until,
)
from tests.support.stack import Stack


async def test_no_identifier_reaches_a_log_line_or_a_span(stack: Stack) -> None:
    from tests.support.spans import recorded_spans

    exporter = recorded_spans()
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # production's level: what would be written
    sent_values = implant()
    refused_values = implant()
    invalid_values = implant(IDC_PAT="", TX_PAT_LAST_NAME="Vandenbroucke-Dürr", TX_PAT_FIRST_NAME="Émilie")
    headers = await stack.headers(MANAGER)
    try:
        async with mycarenet(stack):
            sent = await submit(stack, sent_values)
            await message_in(stack, sent["id"], "SENT")
        async with mycarenet(stack, "refuse"):
            refused = await submit(stack, refused_values)
            await message_in(stack, refused["id"], "ERROR")
        async with mycarenet(stack, "down"):
            down = await submit(stack, implant())
            await message_in(stack, down["id"], "ERROR")
        invalid = await submit(stack, invalid_values)
        await message_in(stack, invalid["id"], "INVALID")
        assert (await stack.client.post(f"/api/v1/nippin/{ORG}/reports", headers=headers)).status_code == 201
        r = await stack.client.post(
            f"/api/v1/nippin/{ORG}/exports",
            json={"dcd_code": "PACEMAKER", "date_from": "2025-01-01", "date_to": "2025-12-31"},
            headers=headers,
        )
        export_id = r.json()["id"]

        async def ready() -> bool:
            got = await stack.client.get(f"/api/v1/nippin/{ORG}/exports/{export_id}", headers=headers)
            return bool(got.json()["state"] == "ready")

        await until(ready, stack=stack)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    secrets = [
        sent_values["IDC_PAT"],
        refused_values["IDC_PAT"],
        "Vandenbroucke",
        "Dürr",
        "Émilie",
        "-".join(reversed(sent_values["DT_PAT_DOB"].split("/"))),
    ]
    logged = lines.getvalue()
    assert (
        "NIPPIN message not delivered" in logged and "NIPPIN report built" in logged
    )  # the scan saw the run
    spans = exporter.get_finished_spans()
    assert any("nippin" in s.name.lower() for s in spans), "no nippin span: the scan would prove nothing"
    exported = "\n".join(s.to_json() for s in spans)
    for secret in secrets:
        leaks = [line for line in logged.splitlines() if secret in line]
        assert not leaks, f"an identifier reached a log line: {leaks[0][:300]}"
        assert secret not in exported, "an identifier reached a span"
