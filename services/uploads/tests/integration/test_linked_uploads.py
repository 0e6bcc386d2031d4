"""HIV_Sequence linked uploads: metadata registrations and their sequence file validated
together (every recordname matched exactly once, file-name conventions)."""

from __future__ import annotations

from typing import Any

from services.uploads.tests.integration.test_uploads_api import csv_bytes, finished, report
from tests.support.samples import record
from tests.support.stack import Stack

LIMS = "lab-demo-lims"


async def post(stack: Stack, name: str, data: bytes, **params: Any) -> dict[str, Any]:
    params = {"dcd_code": "HIV_SEQUENCE", **params}
    r = await stack.client.post(
        "/api/v1/uploads",
        params=params,
        files={"file": (name, data, "text/csv")},
        headers=await stack.headers(LIMS),
    )
    assert r.status_code == 202, r.text
    return r.json()


def sequences(filename: str, names: list[str]) -> bytes:
    lines = ["filename;recordname;genetic_sequence"] + [f"{filename};{n};ACGTTGCAAGGCTTRYACGT" for n in names]
    return ("\r\n".join(lines) + "\r\n").encode()


async def test_linked_files_are_validated_together(stack: Stack) -> None:
    name = "HSP_20240827092014"
    seq = await post(
        stack, f"{name}.csv", sequences(name, [f"{name}_00001", f"{name}_00002"]), kind="sequences"
    )
    assert seq["status"] == "held"
    # Row 2 names a recordname the file lacks, and _00002 is referenced by no row: the pair is refused.
    rows = [
        record("HIV_SEQUENCE", TX_ATT=name, TX_ATT_RECRD=f"{name}_00001"),
        record("HIV_SEQUENCE", TX_ATT=name, TX_ATT_RECRD=f"{name}_00003"),
    ]
    meta = await post(stack, "meta.csv", csv_bytes(rows), linked_upload_id=seq["id"])
    done = await finished(stack, meta["id"], LIMS)
    assert done["nothing_stored"] is True, done
    assert [(f["rule"], f["line"], f["column"]) for f in done["findings"] if f["severity"] == "error"] == [
        ("sequence_not_referenced", 3, f"{name}.csv:recordname")
    ]
    # A matching pair: stored, and the sequence file is marked linked.
    name2 = "HSP_20240901101500"
    seq2 = await post(
        stack, f"{name2}.csv", sequences(name2, [f"{name2}_00001", f"{name2}_00002"]), kind="sequences"
    )
    rows2 = [
        record("HIV_SEQUENCE", TX_ATT=name2, TX_ATT_RECRD=f"{name2}_00001"),
        record("HIV_SEQUENCE", TX_ATT=name2, TX_ATT_RECRD=f"{name2}_00002"),
    ]
    done2 = await finished(
        stack, (await post(stack, "meta2.csv", csv_bytes(rows2), linked_upload_id=seq2["id"]))["id"], LIMS
    )
    assert (
        done2["counts"]["created"] + done2["counts"]["updated"] == 2 and done2["nothing_stored"] is False
    ), done2
    linked = (
        await stack.client.get(f"/api/v1/uploads/{seq2['id']}", headers=await stack.headers(LIMS))
    ).json()
    assert linked["status"] == "linked"
    again = await stack.client.post(
        "/api/v1/uploads",
        params={"dcd_code": "HIV_SEQUENCE", "linked_upload_id": seq2["id"]},
        files={"file": ("m.csv", csv_bytes(rows2))},
        headers=await stack.headers(LIMS),
    )
    assert again.status_code == 409
    # A metadata row whose recordname is not in the file is rejected with the cross-file rule.
    name3 = "HSP_20240902101500"
    seq3 = await post(stack, f"{name3}.csv", sequences(name3, [f"{name3}_00001"]), kind="sequences")
    rows3 = [
        record("HIV_SEQUENCE", TX_ATT=name3, TX_ATT_RECRD=f"{name3}_00001"),
        record("HIV_SEQUENCE", TX_ATT=name3, TX_ATT_RECRD=f"{name3}_00009"),
    ]
    done3 = await finished(
        stack, (await post(stack, "meta3.csv", csv_bytes(rows3), linked_upload_id=seq3["id"]))["id"], LIMS
    )
    errors = await report(stack, done3["id"], "errors", LIMS)
    assert [(e["line"], e["column"], e["rule"]) for e in errors] == [
        ("3", "TX_ATT_RECRD", "linked_record_missing")
    ], errors
    assert done3["counts"]["rejected"] == 1


async def test_a_linked_pair_is_stored_under_validate_all(stack: Stack) -> None:
    """Validate all reads the metadata twice (checking, then storing): each recordname is
    still matched once, not "linked twice" by the second reading."""
    name = "HSP_20240903101500"
    seq = await post(
        stack, f"{name}.csv", sequences(name, [f"{name}_00001", f"{name}_00002"]), kind="sequences"
    )
    rows = [record("HIV_SEQUENCE", TX_ATT=name, TX_ATT_RECRD=f"{name}_{i:05d}") for i in (1, 2)]
    meta = await post(
        stack, "meta.csv", csv_bytes(rows), linked_upload_id=seq["id"], validation="validate_all"
    )
    done = await finished(stack, meta["id"], LIMS)
    assert (done["counts"]["created"], done["counts"]["errors"], done["nothing_stored"]) == (2, 0, False), (
        done
    )


async def test_sequence_file_conventions(stack: Stack) -> None:
    bad = await post(
        stack, "sequences.csv", b"filename;recordname;genetic_sequence\r\nX;Y;ZZZ\r\n", kind="sequences"
    )
    rows = [record("HIV_SEQUENCE")]
    done = await finished(
        stack, (await post(stack, "m.csv", csv_bytes(rows), linked_upload_id=bad["id"]))["id"], LIMS
    )
    rules = [f["rule"] for f in done["findings"]]
    assert {
        "sequence_file_name",
        "sequence_filename_column",
        "sequence_recordname",
        "sequence_letters",
    } <= set(rules), rules
    assert done["nothing_stored"] is True


async def test_sequences_follow_the_dcd_alphabet_and_names_carry_a_real_time(stack: Stack) -> None:
    """Upper-case IUPAC codes only, each refusal naming the character and its position in
    the user's language; an empty sequence says so; month 13 is no time stamp."""
    name = "HSP_20241327092014"  # month 13
    body = (
        "filename;recordname;genetic_sequence\r\n"
        f"{name};{name}_00001;ACGTacgt\r\n"
        f"{name};{name}_00002;ACG-T\r\n"
        f"{name};{name}_00003;\r\n"
    ).encode()
    seq = await post(stack, f"{name}.csv", body, kind="sequences")
    rows = [record("HIV_SEQUENCE", TX_ATT=name, TX_ATT_RECRD=f"{name}_0000{i}") for i in (1, 2, 3)]
    meta = await post(stack, "meta.csv", csv_bytes(rows), linked_upload_id=seq["id"])
    assert (await finished(stack, meta["id"], LIMS))["nothing_stored"] is True
    r = await stack.client.get(
        f"/api/v1/uploads/{meta['id']}", params={"lang": "fr"}, headers=await stack.headers(LIMS)
    )
    done = r.json()
    found = [(f["rule"], f["line"], f["message"]) for f in done["findings"] if f["severity"] == "error"]
    assert ("sequence_file_name", None, found[0][2]) == found[0] and "date et une heure" in found[0][2]
    assert [f for f in found if f[0] in ("sequence_letters", "sequence_missing")] == [
        (
            "sequence_letters",
            2,
            "La séquence génétique contient a en position 5 ; seuls les codes de nucléotides IUPAC "
            "en majuscules (ACGTURYSWKMBDHVN) sont admis.",
        ),
        (
            "sequence_letters",
            3,
            "La séquence génétique contient - en position 4 ; seuls les codes de nucléotides IUPAC "
            "en majuscules (ACGTURYSWKMBDHVN) sont admis.",
        ),
        ("sequence_missing", 4, "La séquence génétique est vide."),
    ], found
