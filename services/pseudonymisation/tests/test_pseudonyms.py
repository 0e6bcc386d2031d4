"""Pseudonyms: SSIN checks and normalisation, pseudocodes that ignore case, accents,
spacing and hyphens, per-project keys with versions, and who may call."""

from __future__ import annotations

import grpc
import pytest

from hdhub.pseudonymisation.domain import Refused, normalise_name, pseudocode_input, pseudonym, ssin_pseudonym
from hdhub.pseudonymisation.keys import DomainKeys

KEYS = DomainKeys(bytes(range(32)), {"HDBP0263": 2})
SSIN = "85040216932"


def test_an_ssin_with_or_without_separators_gives_one_pseudonym() -> None:
    _, key = KEYS.current("HDBP0012")
    assert (
        ssin_pseudonym(key, SSIN)
        == ssin_pseudonym(key, "85.04.02-169.32")
        == ssin_pseudonym(key, " 85 04 02 169 32 ")
    )


@pytest.mark.parametrize("bad", ["85040216933", "8504021693", "85O40216932", ""])
def test_an_ssin_failing_its_check_is_refused_without_echoing_it(bad: str) -> None:
    _, key = KEYS.current("HDBP0012")
    with pytest.raises(Refused) as err:
        ssin_pseudonym(key, bad)
    assert err.value.rule == "ssin" and (not bad or bad not in err.value.message)


def test_an_ssin_of_someone_born_in_2000_or_later_passes() -> None:
    body = "010305067"
    check = 97 - int("2" + body) % 97
    _, key = KEYS.current("HDBP0012")
    assert len(ssin_pseudonym(key, f"{body}{check:02d}")) == 32


def test_case_accents_spacing_and_hyphens_do_not_change_the_pseudocode() -> None:
    _, key = KEYS.current("HDBP0012")
    a = pseudocode_input(
        birth_date="1980-02-29", sex="F", last_name="Van der Velde-Dürr", first_name="Émilie"
    )
    b = pseudocode_input(
        birth_date="1980-02-29", sex="f", last_name="vanDERvelde durr", first_name=" EMILIE "
    )
    c = pseudocode_input(birth_date="1980-02-29", sex="F", last_name="Van der Velde", first_name="Émilie")
    assert pseudonym(key, a) == pseudonym(key, b) != pseudonym(key, c)
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
        pseudocode_input(**{**base, **inputs})
    assert err.value.rule == rule


def test_each_project_and_key_version_has_its_own_domain() -> None:
    v12, k12 = KEYS.current("HDBP0012")
    v263, k263 = KEYS.current("HDBP0263")
    assert (v12, v263) == (1, 2)
    assert ssin_pseudonym(k12, SSIN) != ssin_pseudonym(k263, SSIN)
    assert ssin_pseudonym(KEYS.key("HDBP0263", 1), SSIN) != ssin_pseudonym(k263, SSIN)
    # Derived, not random: another process with the same master key agrees.
    assert DomainKeys(bytes(range(32)), {}).key("HDBP0012", 1) == k12


async def test_only_the_registrations_service_may_send_identifiers(stack: object) -> None:
    from hdhub.common.grpc import channel
    from hdhub.common.service_auth import acting_as_service
    from hdhub.proto.pseudonymisation.v1 import pseudonymisation_pb2 as pb
    from hdhub.proto.pseudonymisation.v1 import pseudonymisation_pb2_grpc as pb_grpc

    stub = pb_grpc.PseudonymisationServiceStub(channel("pseudonymisation"))
    request = pb.PseudonymiseAndForwardRequest(
        organisation_id="az-demo",
        project_code="HDBP0012",
        patients=[pb.Patient(technical_id="t-1", version=2, ssin=SSIN)],
    )
    for service in ("uploads", "sim"):
        async with acting_as_service(service):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.PseudonymiseAndForward(request)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.PseudonymiseAndForward(request)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    async with acting_as_service("registrations"):
        answer = await stub.PseudonymiseAndForward(
            pb.PseudonymiseAndForwardRequest(
                organisation_id="az-demo",
                project_code="HDBP0012",
                patients=[
                    pb.Patient(technical_id="t-ok", version=2, ssin=SSIN),
                    pb.Patient(technical_id="t-bad", version=2, ssin="85040216933"),
                ],
            )
        )
    assert [(o.technical_id, o.outcome, o.rule) for o in answer.outcomes] == [
        ("t-ok", pb.OUTCOME_FORWARDED, ""),
        ("t-bad", pb.OUTCOME_REFUSED, "ssin"),
    ]
    assert not hasattr(answer.outcomes[0], "pseudonym")  # pseudonyms never come back
