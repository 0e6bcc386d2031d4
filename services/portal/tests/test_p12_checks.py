"""The rules an uploaded p12 must pass, and the envelope that keeps it at rest."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from hdhub.common.envelope import Envelope, EnvelopeError
from hdhub.portal.domain.p12 import P12Rejected, Purpose, Rule, Step, inspect_p12
from services.portal.tests.p12s import AUTH, ENC, PASSWORD, Entry, keystore

LIMIT = 64 * 1024


def check(data: bytes, password: str = PASSWORD) -> object:
    return inspect_p12(data, password, now=datetime.now(UTC), max_bytes=LIMIT)


def refused(data: bytes, password: str = PASSWORD) -> P12Rejected:
    with pytest.raises(P12Rejected) as caught:
        check(data, password)
    return caught.value


def test_an_ehealth_keystore_passes_with_its_two_keys_told_apart() -> None:
    store = inspect_p12(keystore(), PASSWORD, now=datetime.now(UTC), max_bytes=LIMIT)
    assert (
        store.authentication.purpose is Purpose.AUTHENTICATION and "(sign)" in store.authentication.describe()
    )
    assert store.encryption.purpose is Purpose.ENCRYPTION and "(encrypt)" in store.encryption.describe()
    assert [c.subject.rfc4514_string() for c in store.chain] == ["CN=eHealth test CA"]
    assert [line.step for line in store.log] == [
        Step.RECEIVED,
        Step.PASSWORD_CHECKED,
        Step.KEYS_CHECKED,
        Step.VALIDITY_CHECKED,
    ]


def test_rsa_keys_as_ehealth_issues_them() -> None:
    store = check(
        keystore([Entry("authentication", "sign", key_index=3), Entry("8", "encrypt", key_index=4)])
    )
    assert store.authentication.private_key.key_size == 2048  # type: ignore[attr-defined]


def test_key_usage_tells_the_keys_apart_without_aliases() -> None:
    store = inspect_p12(
        keystore([Entry(None, "encrypt", key_index=1), Entry(None, "sign", key_index=0)]),
        PASSWORD,
        now=datetime.now(UTC),
        max_bytes=LIMIT,
    )
    assert "(sign)" in store.authentication.describe() and "(encrypt)" in store.encryption.describe()


def test_the_alias_authentication_decides_over_key_usage() -> None:
    store = inspect_p12(
        keystore([Entry("authentication", "both"), Entry("42", "both", key_index=1)]),
        PASSWORD,
        now=datetime.now(UTC),
        max_bytes=LIMIT,
    )
    assert (
        "(both)" in store.authentication.describe() and store.authentication.friendly_name == "authentication"
    )


def test_wrong_password_is_refused() -> None:
    exc = refused(keystore(), "not-the-password")
    assert exc.rule is Rule.WRONG_PASSWORD
    assert [line.step for line in exc.log] == [Step.RECEIVED, Step.REJECTED]


@pytest.mark.parametrize(
    ("entries", "keys"),
    [([AUTH], 1), ([AUTH, ENC, Entry("other", "sign", key_index=2)], 3), ([], 0)],
)
def test_anything_but_two_keys_is_refused(entries: list[Entry], keys: int) -> None:
    exc = refused(keystore(entries))
    assert exc.rule is Rule.KEY_COUNT and f"holds {keys} private key" in exc.message


def test_two_signing_keys_are_refused() -> None:
    exc = refused(keystore([Entry("a", "sign"), Entry("b", "sign", key_index=1)]))
    assert exc.rule is Rule.KEY_PURPOSES


def test_expired_and_not_yet_valid_certificates_are_refused() -> None:
    exc = refused(keystore([AUTH, Entry("1", "encrypt", days_left=-1, days_valid=400, key_index=1)]))
    assert exc.rule is Rule.EXPIRED and "encryption certificate expired" in exc.message
    exc = refused(keystore([Entry("authentication", "sign", days_valid=-2), ENC]))
    assert exc.rule is Rule.NOT_YET_VALID and "authentication certificate is valid only from" in exc.message


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a p12 at all",
        b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        b"PK\x03\x04" + os.urandom(200),
        b"\x30\x82\xff\xff" + os.urandom(50),
        b"\x30\x03\x02\x01\x05",  # a DER sequence, but no PFX
    ],
    # Named, not by their random bytes: pytest-xdist's workers must collect the same ids.
    ids=["empty", "text", "pem", "zip", "der-random", "der-sequence"],
)
def test_a_file_that_is_no_p12_is_refused(data: bytes) -> None:
    exc = refused(data)
    assert exc.rule is Rule.NOT_P12 and [line.step for line in exc.log] == [Step.REJECTED]


def test_a_truncated_p12_is_refused() -> None:
    assert refused(keystore()[:-40]).rule is Rule.NOT_P12


def test_a_file_over_the_limit_is_refused_before_parsing() -> None:
    with pytest.raises(P12Rejected) as caught:
        inspect_p12(keystore(), PASSWORD, now=datetime.now(UTC), max_bytes=1000)
    assert caught.value.rule is Rule.TOO_LARGE


def test_envelope_round_trip_and_tampering() -> None:
    old, new = os.urandom(32), os.urandom(32)
    # A password long enough that random ciphertext cannot hold it by chance ("pw" was found
    # in one CI run's 30 random bytes).
    password = b"the p12's password"
    sealed = Envelope([old]).seal(b"p12 bytes", password, aad=b"org:1")
    assert b"p12 bytes" not in sealed.body and password not in sealed.secret
    rotated = Envelope([new, old])  # a retired master key still opens what it wrapped
    opened = rotated.open(
        sealed.body,
        sealed.secret,
        wrapped_key=sealed.wrapped_key,
        master_key_id=sealed.master_key_id,
        aad=b"org:1",
    )
    assert opened == (b"p12 bytes", password)
    with pytest.raises(EnvelopeError):  # bound to its row: another organisation's aad fails
        rotated.open(
            sealed.body,
            sealed.secret,
            wrapped_key=sealed.wrapped_key,
            master_key_id=sealed.master_key_id,
            aad=b"org:2",
        )
    tampered = sealed.body[:-1] + bytes([sealed.body[-1] ^ 1])
    with pytest.raises(EnvelopeError):
        rotated.open(
            tampered,
            sealed.secret,
            wrapped_key=sealed.wrapped_key,
            master_key_id=sealed.master_key_id,
            aad=b"org:1",
        )
    with pytest.raises(EnvelopeError):
        Envelope([new]).open(
            sealed.body,
            sealed.secret,
            wrapped_key=sealed.wrapped_key,
            master_key_id=sealed.master_key_id,
            aad=b"org:1",
        )
