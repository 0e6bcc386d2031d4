"""The CSV template of a DCD version: the header the Upload Center reads, a commented
line of hints, on both APIs; and the shipped example file follows it."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.support.stack import Stack

ROOT = Path(__file__).resolve().parents[4]
HIS = "az-demo-his"


async def template(stack: Stack, url: str, **params: str) -> tuple[list[str], list[str], str]:
    r = await stack.client.get(url, params=params, headers=await stack.headers(HIS))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.content.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads the accents
    header, hints = list(csv.reader(r.text.lstrip("\ufeff").splitlines(), delimiter=";"))
    return header, hints, r.headers["content-disposition"]


async def test_the_template_has_every_input_field_then_status_and_a_line_of_hints(stack: Stack) -> None:
    header, hints, disposition = await template(stack, "/api/v1/dcds/ANGIO_HOSP/versions/latest/template.csv")
    assert disposition == 'attachment; filename="HDBP0012_ANGIO_HOSP_1.0.0_template.csv"'
    definition = (
        await stack.client.get("/api/v1/dcds/ANGIO_HOSP/versions/latest", headers=await stack.headers(HIS))
    ).json()
    computed = {
        f["technical_name"]
        for f in definition["fields"]
        if f["type"] in ("calculate", "note") or f.get("read_only")
    }
    assert header[-1] == "STATUS" and header[:2] == ["IDC_PAT", "TX_PAT_LAST_NAME"]
    assert "DT_CABG_1" in header and "DT_CABG_2" in header  # repeats flattened
    assert not computed & set(header) and "MS_BMI" not in header
    assert len(hints) == len(header) and hints[0].startswith("# ")
    assert hints[header.index("DT_HOSPZ")] == "dd/mm/yyyy (required)"
    assert hints[header.index("CD_RISK_FACTORS")].startswith("codes of list risk_factor joined by |")


async def test_the_v2_api_serves_the_same_template_and_unknown_dcds_are_404(stack: Stack) -> None:
    v1 = await template(stack, "/api/v1/dcds/HIV_SEQUENCE/versions/latest/template.csv")
    v2 = await template(stack, "/proxy/api/dcd/template", **{"dcd-id": "263", "dcd-version-id": "latest"})
    assert v1 == v2
    r = await stack.client.get(
        "/api/v1/dcds/NOPE/versions/latest/template.csv", headers=await stack.headers(HIS)
    )
    assert r.status_code == 404 and r.json()["type"] == "/problems/not-found"


async def test_the_shipped_examples_have_their_templates_header(stack: Stack) -> None:
    for dcd, example in (("ANGIO_HOSP", "angio.csv"), ("HIV_SEQUENCE", "hiv_sequence.csv")):
        header, _, _ = await template(stack, f"/api/v1/dcds/{dcd}/versions/latest/template.csv")
        with (ROOT / "examples" / example).open(newline="") as f:
            assert next(csv.reader(f, delimiter=";")) == header, example
