"""A service started as in its pod (`hdhub run pseudonymisation`, production settings):
plaintext gRPC refused at start, its gRPC served over mutual TLS from certificate files,
and a rotated certificate taken without a restart."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.conftest import ROOT, base_env, hdhub_process
from tests.support.stack import free_port
from tests.support.tls import CertificateAuthority, MountedSecret

pytestmark = pytest.mark.e2e


def production(data: Path) -> dict[str, str]:
    return base_env(data) | {
        "HDHUB_ENVIRONMENT": "production",
        "HDHUB_SERVICE_CLIENT_SECRET": uuid.uuid4().hex,
        "HDHUB_REDIS_URL": "redis://127.0.0.1:6379/0",
        "HDHUB_PSEUDONYMISATION_SECRET_KEY": uuid.uuid4().hex,
        "HDHUB_PSEUDONYMISATION_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
    }


def test_production_refuses_to_start_with_plaintext_grpc(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hdhub.cli.main", "run", "pseudonymisation", "--port", str(free_port())],
        cwd=ROOT,
        env=production(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = " ".join((out.stderr + out.stdout).replace("│", "").split())
    assert out.returncode != 0
    assert "gRPC between the services would be plaintext" in said
    assert "HDHUB_GRPC_TLS_CERT_FILE" in said and "HDHUB_GRPC_MESH_MTLS" in said
    assert "Traceback" not in out.stderr


def health(target: str, credentials: grpc.ChannelCredentials) -> int:
    with grpc.secure_channel(target, credentials) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="liveness"), timeout=10
        )
    return int(answer.status)


def refused(target: str, credentials: grpc.ChannelCredentials) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        health(target, credentials)
    return info.value.code()  # type: ignore[attr-defined,no-any-return]


def test_a_production_service_serves_grpc_over_mutual_tls_and_takes_a_rotated_certificate(
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority()
    volume = MountedSecret(tmp_path / "grpc-tls")
    volume.write(ca.issue("hdhub-pseudonymisation"), ca.pem)
    env = production(tmp_path) | volume.env()
    port = free_port()
    target = f"localhost:{env['HDHUB_PSEUDONYMISATION_GRPC_BIND'].rsplit(':', 1)[1]}"
    caller = ca.issue("hdhub-registrations")
    with hdhub_process(["run", "pseudonymisation", "--port", str(port)], env, tmp_path / "log", port=port):
        mutual = grpc.ssl_channel_credentials(ca.pem, caller.key, caller.cert)
        assert health(target, mutual) == health_pb2.HealthCheckResponse.SERVING
        assert refused(target, grpc.ssl_channel_credentials(ca.pem)) == grpc.StatusCode.UNAVAILABLE
        # The Secret rotates to a new CA: the running process presents and asks for the new one.
        renewed = CertificateAuthority("renewed")
        volume.write(renewed.issue("hdhub-pseudonymisation"), renewed.pem)
        fresh = renewed.issue("hdhub-registrations")
        assert (
            health(target, grpc.ssl_channel_credentials(renewed.pem, fresh.key, fresh.cert))
            == health_pb2.HealthCheckResponse.SERVING
        )
        assert refused(target, mutual) == grpc.StatusCode.UNAVAILABLE
    assert "mutual TLS" in (tmp_path / "log").read_text()
