"""Pseudonyms: SSIN checks and normalisation, pseudocodes that ignore case, accents,
spacing and hyphens, per-project keys with versions, and who may call."""

from __future__ import annotations

import hmac

import grpc
import pytest

from hdhub.common.patient_names import normalise_name
from hdhub.pseudonymisation.domain import (
    SSIN_PREFIX,
    KeyedHash,
    Refused,
    normalise_ssin,
    pseudocode_input,
)
from hdhub.pseudonymisation.keys import DomainKeys

KEYS = DomainKeys(bytes(range(32)), {"HDBP0263": 2})
SSIN = "85040216932"


def ssin_pseudonym(hasher: KeyedHash, ssin: str) -> bytes:
    """One patient's pseudonym by the rule's definition (the servicer's loop is tuned)."""
    return hasher(SSIN_PREFIX + normalise_ssin(ssin).encode())


def pseudocode_pseudonym(hasher: KeyedHash, **inputs: str) -> bytes:
    return hasher(pseudocode_input(**inputs))


def test_an_ssin_with_or_without_separators_gives_one_pseudonym() -> None:
    _, key = KEYS.hasher("HDBP0012")
    assert (
        ssin_pseudonym(key, SSIN)
        == ssin_pseudonym(key, "85.04.02-169.32")
        == ssin_pseudonym(key, " 85 04 02 169 32 ")
    )


@pytest.mark.parametrize("bad", ["85040216933", "8504021693", "85O40216932", ""])
def test_an_ssin_failing_its_check_is_refused_without_echoing_it(bad: str) -> None:
    _, h = KEYS.hasher("HDBP0012")
    with pytest.raises(Refused) as err:
        ssin_pseudonym(h, bad)
    assert err.value.rule == "ssin" and (not bad or bad not in err.value.message)


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("85023116921", "does not exist"),  # 31 February, right check number
        ("85040200007", "never attributed"),  # sequence 000
        ("30050101270", "in the future"),  # checks only as a birth in 2030
        ("85/04/02-169.32", "only digits"),
    ],
)
def test_the_whole_ssin_rule_applies_with_its_reason(bad: str, says: str) -> None:
    _, h = KEYS.hasher("HDBP0012")
    with pytest.raises(Refused) as err:
        ssin_pseudonym(h, bad)
    assert err.value.rule == "ssin" and says in err.value.message and bad[:6] not in err.value.message


def test_the_batch_fast_path_applies_the_whole_rule() -> None:
    from hdhub.proto.pseudonymisation.v1 import pseudonymisation_pb2 as pb
    from hdhub.pseudonymisation.grpc import pseudonymise

    _, h = KEYS.hasher("HDBP0012")
    request = pb.PseudonymiseAndForwardRequest(
        organisation_id="az-demo",
        project_code="HDBP0012",
        technical_ids=["ok", "feb-31", "seq-000"],
        versions=[1, 1, 1],
        ssins=[SSIN, "85023116921", "85040200007"],
    )
    refused, halves = pseudonymise(request, h)
    assert [(r.technical_id, r.rule) for r in refused] == [("feb-31", "ssin"), ("seq-000", "ssin")]
    assert list(halves.technical_ids) == ["ok"]


def test_an_ssin_of_someone_born_in_2000_or_later_passes() -> None:
    body = "010305067"
    check = 97 - int("2" + body) % 97
    _, h = KEYS.hasher("HDBP0012")
    assert len(ssin_pseudonym(h, f"{body}{check:02d}")) == 32


def test_case_accents_spacing_and_hyphens_do_not_change_the_pseudocode() -> None:
    _, h = KEYS.hasher("HDBP0012")
    a = pseudocode_pseudonym(
        h, birth_date="1980-02-29", sex="F", last_name="Van der Velde-Dürr", first_name="Émilie"
    )
    b = pseudocode_pseudonym(
        h, birth_date="1980-02-29", sex="f", last_name="vanDERvelde durr", first_name=" EMILIE "
    )
    c = pseudocode_pseudonym(
        h, birth_date="1980-02-29", sex="F", last_name="Van der Velde", first_name="Émilie"
    )
    assert a == b != c
    assert normalise_name("O'Brien-Núñez") == "obriennunez"


@pytest.mark.parametrize(
    ("inputs", "rule"),
    [
        ({"birth_date": "29/02/1980"}, "birth_date"),
        ({"birth_date": "1981-02-29"}, "birth_date"),
        ({"sex": "Q"}, "sex"),
        ({"last_name": " - "}, "last_name"),
        ({"first_name": ""}, "first_name"),
    ],
)
def test_missing_or_malformed_pseudocode_inputs_are_refused_by_rule(
    inputs: dict[str, str], rule: str
) -> None:
    base = {"birth_date": "1980-02-29", "sex": "M", "last_name": "Peeters", "first_name": "Jan"}
    with pytest.raises(Refused) as err:
        pseudocode_pseudonym(KEYS.hasher("HDBP0012")[1], **{**base, **inputs})
    assert err.value.rule == rule


@pytest.mark.parametrize("key", [b"", b"k" * 32, b"long" * 40])
def test_the_keyed_hash_is_hmac_sha256(key: bytes) -> None:
    for message in (b"", b"ssin:85040216932", bytes(range(256)) * 3):
        assert KeyedHash(key)(message) == hmac.digest(key, message, "sha256")


def test_each_project_and_key_version_has_its_own_domain() -> None:
    v12, k12 = KEYS.current("HDBP0012")
    v263, k263 = KEYS.current("HDBP0263")
    assert (v12, v263) == (1, 2)
    assert ssin_pseudonym(KeyedHash(k12), SSIN) != ssin_pseudonym(KeyedHash(k263), SSIN)
    assert ssin_pseudonym(KeyedHash(KEYS.key("HDBP0263", 1)), SSIN) != ssin_pseudonym(KeyedHash(k263), SSIN)
    # Derived, not random: another process with the same master key agrees.
    assert DomainKeys(bytes(range(32)), {}).key("HDBP0012", 1) == k12


async def test_only_the_registrations_service_may_send_identifiers(stack: object) -> None:
    from hdhub.common.auth import ActingFor
    from hdhub.common.grpc import channel
    from hdhub.common.service_auth import acting_as_service
    from hdhub.proto.pseudonymisation.v1 import pseudonymisation_pb2 as pb
    from hdhub.proto.pseudonymisation.v1 import pseudonymisation_pb2_grpc as pb_grpc

    stub = pb_grpc.PseudonymisationServiceStub(channel("pseudonymisation"))
    request = pb.PseudonymiseAndForwardRequest(
        organisation_id="az-demo", project_code="HDBP0012", technical_ids=["t-1"], versions=[2], ssins=[SSIN]
    )
    for service in ("uploads", "sim"):
        async with acting_as_service(service, ActingFor("az-demo", "nurse@az-demo.test")):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.PseudonymiseAndForward(request)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.PseudonymiseAndForward(request)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    mixed = pb.PseudonymiseAndForwardRequest(
        organisation_id="az-demo",
        project_code="HDBP0012",
        technical_ids=["t-ok", "t-bad", "t-code", "t-none", "t-after"],
        versions=[2, 2, 2, 2, 2],
        ssins=[SSIN, "85040216933", "", "", "85.04.02-169.32"],
        pseudocodes=[
            pb.PseudocodePatient(
                index=2,
                inputs=pb.PseudocodeInputs(
                    birth_date="1980-02-29", sex="F", last_name="Peeters", first_name="An"
                ),
            )
        ],
    )
    async with acting_as_service("registrations", ActingFor("az-demo", "nurse@az-demo.test")):
        answer = await stub.PseudonymiseAndForward(mixed)
    assert answer.forwarded == 3 and answer.key_version == 1
    assert [(r.index, r.technical_id, r.rule) for r in answer.refused] == [
        (1, "t-bad", "ssin"),
        (3, "t-none", "identifier"),
    ]
    assert "85040216933" not in str(answer)  # refusals never echo the value
    # Pseudonyms never come back: the answer has no field that could carry one.
    assert {f.name for f in pb.PseudonymiseAndForwardResponse.DESCRIPTOR.fields} == {
        "forwarded",
        "refused",
        "key_version",
    }
    uneven = pb.PseudonymiseAndForwardRequest(
        organisation_id="az-demo",
        project_code="HDBP0012",
        technical_ids=["a", "b"],
        versions=[2],
        ssins=[SSIN, SSIN],
    )
    async with acting_as_service("registrations", ActingFor("az-demo", "nurse@az-demo.test")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.PseudonymiseAndForward(uneven)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_batch_fast_path_and_the_general_path_agree() -> None:
    from hdhub.proto.pseudonymisation.v1 import pseudonymisation_pb2 as pb
    from hdhub.pseudonymisation.grpc import pseudonymise

    _, h = KEYS.hasher("HDBP0012")
    request = pb.PseudonymiseAndForwardRequest(
        organisation_id="az-demo",
        project_code="HDBP0012",
        technical_ids=["plain", "dotted", "bad-check", "letters", "after"],
        versions=[1, 1, 1, 1, 1],
        ssins=[SSIN, "85.04.02-169.32", "85040216933", "8504021693x", SSIN],
    )
    refused, halves = pseudonymise(request, h)
    assert [(r.technical_id, r.rule) for r in refused] == [("bad-check", "ssin"), ("letters", "ssin")]
    assert list(halves.technical_ids) == ["plain", "dotted", "after"]
    p = [halves.pseudonyms[i : i + 32] for i in range(0, len(halves.pseudonyms), 32)]
    assert (
        p[0]
        == p[1]
        == p[2]
        == ssin_pseudonym(h, SSIN)
        == hmac.digest(h_key(), b"ssin:" + SSIN.encode(), "sha256")
    )


def h_key() -> bytes:
    return KEYS.current("HDBP0012")[1]
