"""Transport security on real gRPC servers and channels on loopback, with certificates
made in the test: mutual TLS between services, clients without a valid certificate
refused, rotated certificates picked up without a restart, the central platform verified
against its CA, and plaintext refused in production."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from hdhub.common import grpc as hgrpc
from hdhub.common.config import PlatformSettings, platform
from hdhub.common.grpc_tls import TransportRefused, check_transport
from tests.support.tls import CertificateAuthority, Leaf, MountedSecret

SERVING = health_pb2.HealthCheckResponse.SERVING


@dataclass
class Pki:
    ca: CertificateAuthority
    server: MountedSecret  # the server's Secret volume
    client: MountedSecret  # the calling service's


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = CertificateAuthority()
    pki = Pki(ca, MountedSecret(tmp_path / "server"), MountedSecret(tmp_path / "client"))
    pki.server.write(ca.issue("hdhub-identity"), ca.pem)
    pki.client.write(ca.issue("hdhub-registrations"), ca.pem)
    return pki


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (
        "HDHUB_GRPC_TLS_CERT_FILE",
        "HDHUB_GRPC_TLS_KEY_FILE",
        "HDHUB_GRPC_TLS_CA_FILE",
        "HDHUB_GRPC_MESH_MTLS",
        "HDHUB_GRPC_CENTRAL",
    ):
        monkeypatch.delenv(name, raising=False)
    platform.cache_clear()
    yield
    platform.cache_clear()


def use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """This process's settings become ``env`` (as a pod's would)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    platform.cache_clear()


@pytest.fixture
async def mtls_server(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """identity's gRPC server with its certificate; its target as the callers write it."""
    use(monkeypatch, pki.server.env())
    server = await hgrpc.start_server(service="identity", bind="127.0.0.1:0", register=[], service_names=[])
    yield f"localhost:{hgrpc.bound_port(server)}"
    await hgrpc.close_channels()
    await hgrpc.stop_server(server, grace=0)


async def check(channel: grpc.aio.Channel) -> int:
    answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(answer.status)


async def refused(channel: grpc.aio.Channel) -> grpc.StatusCode:
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await check(channel)
    return info.value.code()


def credentials(ca: bytes, leaf: Leaf | None = None) -> grpc.ChannelCredentials:
    if leaf is None:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=leaf.key, certificate_chain=leaf.cert
    )


async def test_two_services_talk_over_mutual_tls(
    pki: Pki, mtls_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, pki.client.env())  # the caller, with its own certificate
    assert await check(hgrpc.channel("identity", target=mtls_server)) == SERVING
    # Plaintext does not get through a TLS port.
    assert await refused(grpc.aio.insecure_channel(mtls_server)) == grpc.StatusCode.UNAVAILABLE


async def test_a_client_without_a_valid_certificate_is_refused(pki: Pki, mtls_server: str) -> None:
    # TLS, the server verified, but no certificate of its own.
    no_certificate = grpc.aio.secure_channel(mtls_server, credentials(pki.ca.pem))
    assert await refused(no_certificate) == grpc.StatusCode.UNAVAILABLE
    # A certificate that another CA signed.
    stranger = CertificateAuthority("another CA")
    foreign = grpc.aio.secure_channel(mtls_server, credentials(pki.ca.pem, stranger.issue("intruder")))
    assert await refused(foreign) == grpc.StatusCode.UNAVAILABLE
    # The same server answers a client with a certificate of the cluster's CA.
    async with grpc.aio.secure_channel(mtls_server, credentials(pki.ca.pem, pki.ca.issue("uploads"))) as good:
        assert await check(good) == SERVING


async def test_a_client_refuses_a_server_that_another_ca_signed(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    impostor = CertificateAuthority("impostor CA")
    volume = MountedSecret(tmp_path / "impostor")
    volume.write(impostor.issue("hdhub-identity"), impostor.pem)
    use(monkeypatch, volume.env())
    server = await hgrpc.start_server(service="identity", bind="127.0.0.1:0", register=[], service_names=[])
    try:
        use(monkeypatch, pki.client.env())
        caller = hgrpc.channel("identity", target=f"localhost:{hgrpc.bound_port(server)}")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await check(caller)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await hgrpc.close_channels()
        await hgrpc.stop_server(server, grace=0)


async def test_rotated_certificates_are_picked_up_without_a_restart(
    pki: Pki, mtls_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, pki.client.env())
    before = hgrpc.channel("identity", target=mtls_server)
    assert await check(before) == SERVING
    old_client = pki.ca.issue("registrations, before the rotation")

    # Both Secrets rotate to certificates of a new CA (the kubelet swaps ..data).
    renewed = CertificateAuthority("hdhub test CA, renewed")
    pki.server.write(renewed.issue("hdhub-identity"), renewed.pem)
    pki.client.write(renewed.issue("hdhub-registrations"), renewed.pem)

    # The running server now presents the new certificate and asks for the new CA's...
    async with grpc.aio.secure_channel(mtls_server, credentials(renewed.pem, renewed.issue("x"))) as fresh:
        assert await check(fresh) == SERVING
    stale = grpc.aio.secure_channel(mtls_server, credentials(pki.ca.pem, old_client))
    assert await refused(stale) == grpc.StatusCode.UNAVAILABLE
    # ...and the caller's cached channel is made again from its rotated files.
    after = hgrpc.channel("identity", target=mtls_server)
    assert after is not before
    assert await check(after) == SERVING
    assert hgrpc.channel("identity", target=mtls_server) is after


async def test_a_rotation_caught_half_way_keeps_the_working_channel(
    pki: Pki, mtls_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, pki.client.env())
    working = hgrpc.channel("identity", target=mtls_server)
    assert await check(working) == SERVING
    # A key that is not the certificate's (a copy half done): the last good channel stays.
    pki.client.key.unlink()
    pki.client.key.write_bytes(pki.ca.issue("other").key)
    assert hgrpc.channel("identity", target=mtls_server) is working


async def test_the_central_platform_is_verified_against_its_ca_and_sees_the_client_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    central_ca, organisation_ca = CertificateAuthority("central"), CertificateAuthority("organisations")
    receiver = central_ca.issue("receiver.central.test")
    # The central side: its own server, asking for a client certificate its partners' CA signed.
    server = grpc.aio.server()
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_secure_port(
        "127.0.0.1:0",
        grpc.ssl_server_credentials([(receiver.key, receiver.cert)], organisation_ca.pem, True),
    )
    await server.start()
    ours = MountedSecret(tmp_path / "central")
    ours.write(organisation_ca.issue("az-demo"), central_ca.pem)
    try:
        use(monkeypatch, {"HDHUB_GRPC_CENTRAL": f"localhost:{port}"} | ours.env("HDHUB_CENTRAL_TLS"))
        assert await check(hgrpc.channel("central")) == SERVING
        await hgrpc.close_channels()
        # Without the client certificate the central side refuses...
        monkeypatch.delenv("HDHUB_CENTRAL_TLS_CERT_FILE")
        monkeypatch.delenv("HDHUB_CENTRAL_TLS_KEY_FILE")
        platform.cache_clear()
        assert await refused(hgrpc.channel("central")) == grpc.StatusCode.UNAVAILABLE
        # ...and a server that the configured CA did not sign is refused by us.
        monkeypatch.setenv("HDHUB_CENTRAL_TLS_CA_FILE", str(tmp_path / "other-ca.pem"))
        (tmp_path / "other-ca.pem").write_bytes(CertificateAuthority("elsewhere").pem)
        platform.cache_clear()
        assert await refused(hgrpc.channel("central")) == grpc.StatusCode.UNAVAILABLE
    finally:
        await hgrpc.close_channels()
        await server.stop(0)


def production(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    use(
        monkeypatch,
        {
            "HDHUB_ENVIRONMENT": "production",
            "HDHUB_SERVICE_CLIENT_SECRET": "a-real-one",
            "HDHUB_REDIS_URL": "redis://redis:6379/0",
        }
        | env,
    )


async def test_production_refuses_plaintext_unless_a_mesh_provides_mutual_tls(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    production(monkeypatch)
    with pytest.raises(TransportRefused, match="HDHUB_GRPC_TLS_CERT_FILE.*HDHUB_GRPC_MESH_MTLS"):
        check_transport()
    with pytest.raises(TransportRefused):
        await hgrpc.start_server(service="identity", bind="127.0.0.1:0", register=[], service_names=[])
    with pytest.raises(TransportRefused):
        hgrpc.channel("identity")
    # A mesh that provides mutual TLS, declared: plaintext inside the pod is accepted.
    production(monkeypatch, HDHUB_GRPC_MESH_MTLS="true")
    check_transport()
    # Certificates: accepted, and the central platform is TLS whatever the mesh.
    monkeypatch.delenv("HDHUB_GRPC_MESH_MTLS")
    production(monkeypatch, **pki.client.env())
    check_transport()


def test_unusable_certificate_files_are_refused_naming_the_setting(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, pki.client.env())
    pki.client.key.unlink()
    pki.client.key.write_bytes(pki.ca.issue("someone else").key)
    with pytest.raises(TransportRefused, match="HDHUB_GRPC_TLS_KEY_FILE is not the key of the certificate"):
        check_transport()
    monkeypatch.setenv("HDHUB_GRPC_TLS_CA_FILE", str(tmp_path / "missing.pem"))
    platform.cache_clear()
    with pytest.raises(TransportRefused, match="HDHUB_GRPC_TLS_CA_FILE: .* cannot be read"):
        check_transport()
    # Half a configuration is no configuration.
    for name in pki.client.env():
        monkeypatch.delenv(name)
    with pytest.raises(ValueError, match="set all three or none"):
        PlatformSettings(grpc_tls_cert_file=pki.client.cert)
