"""The demo has a Certificate Editor, so `make run` can show the certificate upload."""

from __future__ import annotations

from tests.support.stack import Stack


async def test_demo_certificate_editor_reaches_certificates_and_a_manager_does_not(stack: Stack) -> None:
    r = await stack.client.get(
        "/api/v1/certificates", headers=await stack.headers("certificates@az-demo.test")
    )
    assert r.status_code == 200
    r = await stack.client.get(
        "/api/v1/certificates/az-demo/versions", headers=await stack.headers("manager@az-demo.test")
    )
    assert r.status_code == 403
