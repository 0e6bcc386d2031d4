"""What the chart does for transport security, workers, shutdown and telemetry: certificates
for mutual TLS between the services (cert-manager, existing Secrets or a mesh), TLS to the
central platform, workers with probes, a disruption budget, spread and optional KEDA
scaling, a preStop pause on every HTTP container, and OpenTelemetry's variables and egress."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.manifests import by_kind, render, values_file

helm = pytest.importorskip("helm_python")

PROD = values_file("values-prod.yaml")
SERVICES = ("identity", "registrations", "uploads", "portal", "intake", "pseudonymisation", "nippin")


def _pod(manifests: list[dict[str, Any]], name: str) -> dict[str, Any]:
    kinds = by_kind(manifests, "Deployment") | by_kind(manifests, "Job")
    spec: dict[str, Any] = kinds[name]["spec"]["template"]["spec"]
    return spec


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _mounts(container: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container["volumeMounts"]}


def test_cert_manager_issues_each_component_a_certificate_for_the_names_its_callers_dial() -> None:
    manifests = render(PROD)
    certificates = by_kind(manifests, "Certificate")
    assert set(certificates) == {f"hdhub-{s}-grpc" for s in SERVICES}
    for service in SERVICES:
        spec = certificates[f"hdhub-{service}-grpc"]["spec"]
        assert spec["secretName"] == f"hdhub-{service}-grpc-tls"
        assert spec["issuerRef"] == {
            "name": "hdhub-grpc-ca",
            "kind": "ClusterIssuer",
            "group": "cert-manager.io",
        }
        assert {"server auth", "client auth"} <= set(spec["usages"])
        assert spec["privateKey"]["rotationPolicy"] == "Always"
        for pod in (f"hdhub-{service}", f"hdhub-{service}-worker"):
            if pod not in by_kind(manifests, "Deployment"):
                continue
            spec_ = _pod(manifests, pod)
            (container,) = spec_["containers"]
            env = _env(container)
            # Every host this pod dials is a name on the callee's certificate.
            for name, target in env.items():
                if (
                    name.startswith("HDHUB_GRPC_")
                    and name != "HDHUB_GRPC_CENTRAL"
                    and target.startswith("dns:///")
                ):
                    callee = certificates[f"hdhub-{name.removeprefix('HDHUB_GRPC_').lower()}-grpc"]["spec"]
                    assert target.removeprefix("dns:///").rsplit(":", 1)[0] in callee["dnsNames"], name
            volumes = {v["name"]: v for v in spec_["volumes"]}
            assert volumes["grpc-tls"]["secret"]["secretName"] == f"hdhub-{service}-grpc-tls"
            assert _mounts(container)["grpc-tls"] == "/run/tls/grpc"
            assert env["HDHUB_GRPC_TLS_CERT_FILE"] == "/run/tls/grpc/tls.crt"
            assert env["HDHUB_GRPC_TLS_KEY_FILE"] == "/run/tls/grpc/tls.key"
            assert env["HDHUB_GRPC_TLS_CA_FILE"] == "/run/tls/grpc/ca.crt"
    # Migrations need no certificate.
    for deployment in by_kind(manifests, "Deployment"):
        for init in _pod(manifests, deployment).get("initContainers", []):
            assert "grpc-tls" not in _mounts(init) and "HDHUB_GRPC_TLS_CERT_FILE" not in _env(init)
    assert "HDHUB_GRPC_MESH_MTLS" not in by_kind(manifests, "ConfigMap")["hdhub-platform"]["data"]


def test_existing_secrets_or_a_mesh_instead_of_cert_manager() -> None:
    secrets = render(PROD | {"grpcTls": {"mode": "secrets"}})
    assert by_kind(secrets, "Certificate") == {}
    assert _env(_pod(secrets, "hdhub-registrations")["containers"][0])["HDHUB_GRPC_TLS_CA_FILE"]
    mesh = render(PROD | {"grpcTls": {"mode": "mesh"}})
    assert by_kind(mesh, "Certificate") == {}
    assert by_kind(mesh, "ConfigMap")["hdhub-platform"]["data"]["HDHUB_GRPC_MESH_MTLS"] == "true"
    (container,) = _pod(mesh, "hdhub-registrations")["containers"]
    assert "HDHUB_GRPC_TLS_CERT_FILE" not in _env(container) and "grpc-tls" not in _mounts(container)


def test_plaintext_grpc_is_for_development_clusters_only() -> None:
    dev = render(values_file("values-dev.yaml"))
    assert by_kind(dev, "Certificate") == {}
    assert "HDHUB_GRPC_TLS_CERT_FILE" not in _env(_pod(dev, "hdhub-registrations")["containers"][0])
    with pytest.raises(helm.HelmError, match="refuse plaintext gRPC in production"):
        render(PROD | {"grpcTls": {"mode": "plaintext"}})


def test_the_central_platform_is_reached_over_tls_with_its_ca_and_the_organisations_certificate() -> None:
    manifests = render(PROD)
    # Intake sends the VCF and sequence files to the central platform itself (docs/delivery.md).
    for pod in (
        "hdhub-registrations",
        "hdhub-registrations-worker",
        "hdhub-pseudonymisation",
        "hdhub-intake",
    ):
        spec = _pod(manifests, pod)
        (container,) = spec["containers"]
        env = _env(container)
        assert env["HDHUB_CENTRAL_TLS_CA_FILE"] == "/run/tls/central/ca.crt"
        assert env["HDHUB_CENTRAL_TLS_CERT_FILE"] == "/run/tls/central/tls.crt"
        assert env["HDHUB_CENTRAL_TLS_KEY_FILE"] == "/run/tls/central/tls.key"
        assert {v["name"]: v for v in spec["volumes"]}["central-tls"]["secret"][
            "secretName"
        ] == "hdhub-central-tls"
    for pod in ("hdhub-uploads", "hdhub-portal", "hdhub-nippin-worker"):
        assert not any(n.startswith("HDHUB_CENTRAL_TLS") for n in _env(_pod(manifests, pod)["containers"][0]))
    # No client certificate unless the central side asks for one.
    server_only = render(
        PROD | {"centralPlatform": PROD["centralPlatform"] | {"tls": {"existingSecret": "ca-only"}}}
    )
    env = _env(_pod(server_only, "hdhub-registrations")["containers"][0])
    assert "HDHUB_CENTRAL_TLS_CA_FILE" in env and "HDHUB_CENTRAL_TLS_CERT_FILE" not in env


def test_workers_have_probes_a_disruption_budget_and_spread_over_nodes() -> None:
    manifests = render(PROD)
    budgets = by_kind(manifests, "PodDisruptionBudget")
    for worker in ("registrations", "uploads", "intake", "nippin"):
        name = f"hdhub-{worker}-worker"
        spec = _pod(manifests, name)
        (container,) = spec["containers"]
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        (spread,) = spec["topologySpreadConstraints"]
        assert spread["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == f"{worker}-worker"
        budget = budgets[name]["spec"]
        assert budget["maxUnavailable"] == 1
        assert budget["selector"]["matchLabels"]["app.kubernetes.io/component"] == f"{worker}-worker"


def test_keda_scales_a_worker_on_its_queued_jobs_when_switched_on() -> None:
    assert by_kind(render(PROD), "ScaledObject") == {}
    keda = {"enabled": True, "minReplicas": 2, "maxReplicas": 8, "jobsPerReplica": 300}
    manifests = render(PROD | {"components": PROD["components"] | {"uploads": {"worker": {"keda": keda}}}})
    (scaled,) = by_kind(manifests, "ScaledObject").values()
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"name": "hdhub-uploads-worker"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 8)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metadata"]["threshold"] == "300"
    assert 'hdhub_jobs{service="uploads", status="queued", namespace="hdhub"}' in trigger["metadata"]["query"]
    # KEDA owns the replica count: the Deployment leaves it out.
    assert "replicas" not in by_kind(manifests, "Deployment")["hdhub-uploads-worker"]["spec"]
    assert "replicas" in by_kind(manifests, "Deployment")["hdhub-intake-worker"]["spec"]


def test_every_http_container_pauses_before_it_stops_and_sftp_drains_within_the_grace_period() -> None:
    manifests = render(PROD)
    for service in SERVICES:
        spec = _pod(manifests, f"hdhub-{service}")
        (container,) = spec["containers"]
        assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
        assert spec["terminationGracePeriodSeconds"] > 5
        drain = int(_env(container)["HDHUB_HTTP_DRAIN_SECONDS"])  # requests in flight finish first
        assert 0 <= drain < spec["terminationGracePeriodSeconds"] - 5
    intake = _pod(manifests, "hdhub-intake")
    assert intake["terminationGracePeriodSeconds"] == 300
    assert _env(intake["containers"][0])["HDHUB_INTAKE_SFTP_DRAIN_SECONDS"] == "280"  # 300 - 5 - a margin
    assert _env(intake["containers"][0])["HDHUB_HTTP_DRAIN_SECONDS"] == "280"  # a VCF over HTTP likewise


def test_telemetry_goes_to_the_collector_with_the_pods_identity() -> None:
    manifests = render(
        PROD
        | {
            "telemetry": PROD["telemetry"]
            | {
                "otlp": PROD["telemetry"]["otlp"]
                | {"headers": {"existingSecret": "otel-auth", "key": "headers"}}
            }
        }
    )
    data = by_kind(manifests, "ConfigMap")["hdhub-platform"]["data"]
    assert data["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://otel-collector.observability.svc:4317"
    assert data["OTEL_EXPORTER_OTLP_CERTIFICATE"] == "/run/tls/otlp/ca.crt"
    registrations = _pod(manifests, "hdhub-registrations")
    containers = [
        registrations["containers"][0],
        registrations["initContainers"][0],  # the migrations
        _pod(manifests, "hdhub-registrations-worker")["containers"][0],
    ]
    for container in containers:
        env = _env(container)
        assert env["K8S_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert env["K8S_NAMESPACE_NAME"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        attributes = env["OTEL_RESOURCE_ATTRIBUTES"]
        assert "k8s.pod.name=$(K8S_POD_NAME)" in attributes
        assert "k8s.namespace.name=$(K8S_NAMESPACE_NAME)" in attributes
        names = [e["name"] for e in container["env"]]  # $(VAR) expands only what comes before it
        assert names.index("K8S_POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES")
        assert env["OTEL_EXPORTER_OTLP_HEADERS"] == {"secretKeyRef": {"name": "otel-auth", "key": "headers"}}
        assert _mounts(container)["otlp-ca"] == "/run/tls/otlp"
    # The collector is the one place outside the release every pod may send spans to.
    egress = by_kind(manifests, "NetworkPolicy")["hdhub-platform-egress"]["spec"]["egress"]
    collector = [rule for rule in egress if rule["ports"] == [{"protocol": "TCP", "port": 4317}]]
    assert collector == [
        {
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}],
            "ports": [{"protocol": "TCP", "port": 4317}],
        }
    ]
    # Without an endpoint, nothing is exported and no egress opened.
    quiet = render()
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in by_kind(quiet, "ConfigMap")["hdhub-platform"]["data"]
    rules = by_kind(quiet, "NetworkPolicy")["hdhub-platform-egress"]["spec"]["egress"]
    assert not any(r.get("ports") == [{"protocol": "TCP", "port": 4317}] for r in rules)
