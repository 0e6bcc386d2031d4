"""Retry safety lives in the contract: channels retry on UNAVAILABLE exactly the methods
that proto/ marks ``option idempotency_level = NO_SIDE_EFFECTS`` or ``IDEMPOTENT``."""

from __future__ import annotations

import json
import re
from pathlib import Path

from google.protobuf import descriptor_pb2

from hdhub.common import grpc as hgrpc

PROTO_DIR = Path(__file__).resolve().parents[3] / "proto"


def test_channels_retry_exactly_the_methods_the_contract_marks_safe_to_repeat() -> None:
    config = json.loads(hgrpc._service_config())
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    [method_config] = config["methodConfig"]
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert method_config["retryPolicy"]["maxAttempts"] == 4
    retried = {(name["service"], name["method"]) for name in method_config["name"]}
    safe_levels = {descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS, descriptor_pb2.MethodOptions.IDEMPOTENT}
    for service in hgrpc.contract_services():
        for method in service.methods:
            safe = method.GetOptions().idempotency_level in safe_levels
            assert ((service.full_name, method.name) in retried) == safe, method.full_name
    # Writes that a repeat could double are not retried by the channel.
    assert ("hdhub.registrations.v1.RegistrationsService", "UpsertBatch") not in retried
    assert ("hdhub.identity.v1.IdentityService", "CreateClient") not in retried


def test_contract_services_are_every_service_in_proto() -> None:
    declared = set()
    for proto in PROTO_DIR.glob("hdhub/*/v*/*.proto"):
        text = proto.read_text(encoding="utf-8")
        package = re.search(r"^package ([\w.]+);", text, re.MULTILINE)
        assert package is not None
        declared |= {f"{package[1]}.{name}" for name in re.findall(r"^service (\w+)", text, re.MULTILINE)}
    assert {service.full_name for service in hgrpc.contract_services()} == declared
