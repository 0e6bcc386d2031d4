"""Issue 14: a hospital system's day through a client generated from the OpenAPI document
(openapi-python-client), and nothing else: the client passes ``mypy --strict``, and every
call below is one of its functions, against the in-process stack."""

from __future__ import annotations

import asyncio
import csv
import importlib
import io
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.support.samples import record
from tests.support.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HIS, SECRET = "az-demo-his", "demo-his-secret"


@pytest.fixture(scope="session")
def generated(openapi_documents: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("client")
    subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(openapi_documents / "all.json"),
            "--meta",
            "none",
            "--output-path",
            str(out / "hdhub_client"),
            "--config",
            str(ROOT / "tools" / "openapi-client" / "config.yaml"),
        ],
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(out))
    yield out
    sys.path.remove(str(out))


@pytest.mark.timeout(300)  # ~250 modules; under a loaded machine's share of two cores
def test_the_generated_client_passes_mypy_strict(generated: Path) -> None:
    run = subprocess.run(
        [str(BIN / "mypy"), "--strict", "--no-incremental", "hdhub_client"],
        cwd=generated,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-5000:]


def _m(name: str) -> ModuleType:
    return importlib.import_module(f"hdhub_client.{name}")


async def test_a_hospital_systems_day_through_the_generated_client(generated: Path, stack: Stack) -> None:
    api, models = "api", _m("models")
    anonymous = _m("client").Client(base_url="http://testserver")
    anonymous.set_async_httpx_client(stack.client)

    # The token: client credentials.
    body = models.BodyGetToken(grant_type="client_credentials", client_id=HIS, client_secret=SECRET)
    got = await _m(f"{api}.oidc_embedded_issuer.get_token").asyncio_detailed(client=anonymous, body=body)
    assert got.status_code == 200, got.content
    token = got.parsed.access_token
    client = _m("client").AuthenticatedClient(base_url="http://testserver", token=token)
    client.set_async_httpx_client(
        httpx.AsyncClient(
            transport=stack.client._transport,
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {token}"},
        )
    )
    v2 = f"{api}.hd4dp_v_2_compatible"

    # The menu and a DCD's definition.
    menu = await _m(f"{v2}.get_v2_menu").asyncio_detailed(client=anonymous)
    assert menu.status_code == 200
    dcd = next(d for p in menu.parsed for d in p.dcds if d.dcd_code == "ANGIO_HOSP")
    definition = await _m(f"{v2}.get_v2_definition").asyncio_detailed(client=client, dcd_id=str(dcd.dcd_id))
    assert definition.status_code == 200, definition.content
    assert "IDC_PAT" in {f.key for f in definition.parsed.fields}

    submit = _m(f"{v2}.submit_v2_payload")
    values = record()

    # Invalid first: the problem is parsed, in the caller's language, naming field and rule.
    bad = models.SubmitV2PayloadJsonBody.from_dict({**values, "IDC_PAT": "85040216933"})
    r = await submit.asyncio_detailed(
        client=client, body=bad, organization_id="az-demo", dcd_id="ANGIO_HOSP", accept_language="nl"
    )
    assert r.status_code == 422 and isinstance(r.parsed, models.Problem), r.content
    assert ("IDC_PAT", "ssin") in {(e.field, e.rule) for e in r.parsed.errors}
    assert r.parsed.type_.startswith("/problems/")

    # Valid, with an Idempotency-Key; the retry replays the first answer.
    key = f"his-{uuid.uuid4()}"
    good = models.SubmitV2PayloadJsonBody.from_dict(values)
    first = await submit.asyncio_detailed(
        client=client, body=good, organization_id="az-demo", dcd_id="ANGIO_HOSP", idempotency_key=key
    )
    assert first.status_code == 202, first.content
    again = await submit.asyncio_detailed(
        client=client, body=good, organization_id="az-demo", dcd_id="ANGIO_HOSP", idempotency_key=key
    )
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.parsed.registration_id == first.parsed.registration_id

    # An update by business key: the same record sent again, corrected.
    fixed = models.SubmitV2PayloadJsonBody.from_dict({**values, "MS_WEIGHT": "79.0"})
    update = await submit.asyncio_detailed(
        client=client, body=fixed, organization_id="az-demo", dcd_id="ANGIO_HOSP"
    )
    assert update.status_code == 202 and update.parsed.business_key == first.parsed.business_key
    assert update.parsed.registration_id == first.parsed.registration_id

    # Its status, and the list, paged.
    reg = await _m(f"{api}.registrations.get_registration").asyncio_detailed(
        client=client, registration_id=first.parsed.registration_id
    )
    assert reg.status_code == 200 and isinstance(
        reg.parsed.status, models.RegistrationStatus
    )  # an enum, not a str
    assert reg.parsed.values["MS_WEIGHT"] == "79.0"
    # Followed until the central platform confirms its arrival (the delivery worker and the
    # sim run beside the stack): the sub-status an enum too.
    get_registration = _m(f"{api}.registrations.get_registration")
    for _ in range(300):
        reg = await get_registration.asyncio_detailed(
            client=client, registration_id=first.parsed.registration_id
        )
        if reg.parsed.status_confirmation == models.StatusConfirmation.OK:
            break
        await asyncio.sleep(0.2)
    assert reg.parsed.status == models.RegistrationStatus.SUBMITTED, reg.content
    assert reg.parsed.status_confirmation == models.StatusConfirmation.OK, reg.content
    listed = _m(f"{api}.registrations.list_registrations")
    page = await listed.asyncio_detailed(client=client, organisation_id="az-demo", limit=1, offset=0)
    assert page.status_code == 200, page.content
    assert page.parsed.total >= 1 and len(page.parsed.items) == 1
    by_key = await listed.asyncio_detailed(
        client=client, organisation_id="az-demo", business_key=first.parsed.business_key
    )
    assert [i.id for i in by_key.parsed.items] == [first.parsed.registration_id]
    # Every list is the one page: the registration's history and the catalogue too.
    history = await _m(f"{api}.registrations.get_registration_history").asyncio_detailed(
        client=client, registration_id=first.parsed.registration_id, limit=1, offset=1
    )
    assert history.status_code == 200 and history.parsed.total >= 2, history.content
    assert [e.action for e in history.parsed.items] == ["submit"] and history.parsed.next_ is None
    registries = await _m(f"{api}.catalogue.list_registries").asyncio_detailed(client=client)
    assert "HDBP0012" in {r.code for r in registries.parsed.items}

    # A CSV upload, followed to its end, and its reports (kind: an enum; the body: text/csv).
    uploads, types = f"{api}.uploads", _m("types")
    rows = io.StringIO()
    writer = csv.DictWriter(rows, fieldnames=list(values), delimiter=";", lineterminator="\r\n")
    writer.writeheader()
    writer.writerow(record())
    writer.writerow({**record(), "MS_HEIGHT": "tall"})
    file = types.File(
        payload=io.BytesIO(rows.getvalue().encode()), file_name="angio.csv", mime_type="text/csv"
    )
    created = await _m(f"{uploads}.create_upload").asyncio_detailed(
        client=client,
        body=models.CreateUploadFilesBody(file=file),
        dcd_code="ANGIO_HOSP",
        organisation_id="az-demo",
        validation=models.CreateUploadValidationType0.NONE,  # store the valid row, report the other
    )
    assert created.status_code == 202, created.content
    assert created.headers["location"] == f"/api/v1/uploads/{created.parsed.id}"
    for _ in range(400):
        upload = await _m(f"{uploads}.get_upload").asyncio_detailed(created.parsed.id, client=client)
        if upload.parsed.status in ("done", "failed"):
            break
        await asyncio.sleep(0.05)
    assert upload.parsed.status == "done", upload.content
    report = _m(f"{uploads}.get_upload_report")
    errors = await report.asyncio_detailed(
        created.parsed.id, models.GetUploadReportKind.ERRORS, client=client
    )
    assert errors.status_code == 200 and errors.headers["content-type"].startswith("text/csv")
    assert "MS_HEIGHT" in errors.content.decode()
    success = await report.asyncio_detailed(
        created.parsed.id, models.GetUploadReportKind.SUCCESS, client=client
    )
    assert success.status_code == 200 and len(success.content.decode().strip().splitlines()) == 2, (
        errors.content
    )
    listed_uploads = await _m(f"{uploads}.list_uploads").asyncio_detailed(client=client, limit=1, offset=0)
    assert listed_uploads.status_code == 200, listed_uploads.content
    assert (listed_uploads.parsed.limit, listed_uploads.parsed.offset) == (1, 0)  # the one page shape
    assert listed_uploads.parsed.total >= 1 and len(listed_uploads.parsed.items) == 1
