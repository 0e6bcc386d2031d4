"""Every pod of the production manifests starts and becomes ready, given what the manifests and
docs/operations.md give it: the Helm chart with values-prod.yaml and the kustomize prod overlay,
each Deployment's init containers then containers (tests/deploy/pods.py), against this
machine's PostgreSQL, Redis, a moto S3 server and the Keycloak stand-in."""

from __future__ import annotations

import asyncio
import copy
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy.manifests import by_kind, kustomize, render, values_file
from tests.deploy.pods import (
    CertManager,
    Container,
    Endpoints,
    Outcome,
    Sandbox,
    containers_of,
    documented_secrets,
    run_pods,
)
from tests.keycloak_standin.app import StandinServer
from tests.support.stack import create_database, drop_database

pytest.importorskip("helm_python")
pytestmark = pytest.mark.postgres

REDIS = os.environ.get("HDHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """The Secrets docs/operations.md has the operator create, as its commands create them."""
    return documented_secrets(tmp_path_factory.mktemp("operator"))


@pytest.fixture(scope="module")
def endpoints(s3_url: str) -> Iterator[Endpoints]:
    """The test's datastores where the documented Secrets name the installation's: a fresh
    database per service, Redis, the moto server, the Keycloak stand-in. Each documented value
    must have the shape the code reads (scheme), else the doc would mislead."""
    created: dict[str, str] = {}

    def database(key: str, documented: str) -> str:
        assert urlsplit(documented).scheme == "postgresql+psycopg", f"{key}: {documented}"
        if key not in created:
            name = f"hdhub_podsim_{key.split('_')[1].lower()}_{uuid.uuid4().hex[:6]}"
            created[key] = create_database(name)
        return created[key]

    def redis(documented: str) -> str:
        assert urlsplit(documented).scheme in ("redis", "rediss"), documented
        return REDIS

    def object_store(documented: str) -> str:
        assert urlsplit(documented).scheme in ("s3", "s3s"), documented
        return s3_url

    with StandinServer() as keycloak:
        yield Endpoints(
            by_key={
                "HDHUB_REDIS_URL": redis,
                "HDHUB_OBJECT_STORE_URL": object_store,
                "HDHUB_IDENTITY_KEYCLOAK_URL": lambda _: keycloak.url,
            },
            suffixes={"_DATABASE_URL": database},
        )
    for url in created.values():
        drop_database(url.rsplit("/", 1)[1])


def _workloads(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] in ("Deployment", "Job")]


SOURCES = {
    "helm values-prod": lambda: render(values_file("values-prod.yaml")),
    "kustomize overlays/prod": lambda: kustomize("overlays/prod"),
}


def _report(outcomes: dict[str, list[Outcome]]) -> str:
    lines = []
    for pod, done in outcomes.items():
        for o in done:
            if not o.ready:
                lines.append(f"--- {pod}: {o.container.name} is not ready\n{o.said}")
    return "\n".join(lines)


def test_every_production_pod_becomes_ready(
    secrets: dict[str, dict[str, str]], endpoints: Endpoints, tmp_path: Path
) -> None:
    pods: dict[str, list[Container]] = {}
    cert_manager = CertManager()  # the gRPC certificates (grpcTls.mode: certManager)
    for source, manifests in ((name, load()) for name, load in SOURCES.items()):
        workloads = _workloads(manifests)
        assert {w["metadata"]["name"] for w in workloads} >= {"hdhub-identity", "hdhub-registrations-worker"}
        given = secrets | cert_manager.secrets(manifests)
        for workload in workloads:
            pods[f"{source}: {workload['metadata']['name']}"] = containers_of(
                workload, manifests, given, endpoints
            )
    outcomes = asyncio.run(run_pods(Sandbox(tmp_path), pods))
    report = _report(outcomes)
    assert not report, report
    for pod, done in outcomes.items():
        assert [o.container.name for o in done if not o.container.init], pod


def _broken(name: str, change: Any) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    manifests = render(values_file("values-prod.yaml"))
    workload = copy.deepcopy(by_kind(manifests, "Deployment")[name])
    change(workload["spec"]["template"]["spec"], manifests)
    return name, workload, manifests


def _only_platform_secret(spec: dict[str, Any], _: list[dict[str, Any]]) -> None:
    spec["volumes"][1]["projected"]["sources"] = [{"secret": {"name": "hdhub-platform", "optional": False}}]


def _embedded_identity_with_keycloak_issuer(spec: dict[str, Any], manifests: list[dict[str, Any]]) -> None:
    for c in spec["containers"] + spec.get("initContainers", []):
        c["env"] = [e for e in c["env"] if not e["name"].startswith("HDHUB_IDENTITY_")]
    by_kind(manifests, "ConfigMap")["hdhub-platform"]["data"]["HDHUB_OIDC_ISSUER"] = (
        "https://keycloak.example.org/realms/hdhub"
    )


def test_the_simulation_refuses_pods_that_could_not_start_naming_why(
    secrets: dict[str, dict[str, str]], endpoints: Endpoints, tmp_path: Path
) -> None:
    """What once kept production pods from starting, each put back into one pod: a Secret
    without the key the code reads, a pod mounting only hdhub-platform (as the kustomize
    overlay did), and identity on its embedded store while tokens come from Keycloak."""
    without_host_key = copy.deepcopy(secrets)
    del without_host_key["hdhub-intake"]["HDHUB_INTAKE_SFTP_HOST_KEY"]
    cases = {
        "HDHUB_INTAKE_SFTP_HOST_KEY is unset": (
            _broken("hdhub-intake", lambda spec, m: None),
            without_host_key,
        ),
        "HDHUB_REGISTRATIONS_DATABASE_URL is unset": (
            _broken("hdhub-registrations", _only_platform_secret),
            secrets,
        ),
        "HDHUB_OIDC_ISSUER is https://keycloak.example.org/realms/hdhub, not identity's embedded issuer": (
            _broken("hdhub-identity", _embedded_identity_with_keycloak_issuer),
            secrets,
        ),
    }
    cert_manager = CertManager()
    pods = {
        why: [
            c
            for c in containers_of(workload, manifests, given | cert_manager.secrets(manifests), endpoints)
            if c.init
        ]
        for why, ((_, workload, manifests), given) in cases.items()
    }
    outcomes = asyncio.run(run_pods(Sandbox(tmp_path), pods))
    for why, (outcome,) in outcomes.items():
        assert not outcome.ready, why
        assert why in " ".join(outcome.said.replace("│", " ").split()), outcome.said
