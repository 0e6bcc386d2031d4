"""The umbrella chart, rendered offline with Helm's own library (helm-python-sdk) for several
values files and checked: lint, schema, kubernetes-validate --strict, and what the chart promises
(hardened pods, probes, migrations, routes, the gRPC call graph as NetworkPolicies)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.manifests import CHART, ROOT, by_kind, render, validation_errors, values_file

helm = pytest.importorskip("helm_python")

ALL_SERVICES = [
    "identity",
    "registrations",
    "uploads",
    "portal",
    "intake",
    "pseudonymisation",
    "nippin",
    "sim",
]
EVERYTHING_ON: dict[str, Any] = {
    "platform": {"oidc": {"embedded": True}},
    "networkPolicies": {"enabled": True},
    "monitoring": {"serviceMonitor": {"enabled": True}, "prometheusRules": {"enabled": True}},
    "default": {"autoscaling": {"enabled": True}},
    "components": {name: {"enabled": True} for name in ALL_SERVICES}
    | {"intake": {"enabled": True, "sftp": {"enabled": True}}},
}
VALUES = {
    "defaults": {},
    "values-dev.yaml": values_file("values-dev.yaml"),
    "values-prod.yaml": values_file("values-prod.yaml"),
    "everything-on": EVERYTHING_ON,
}
# The gRPC call graph of the platform: caller -> callees.
CALL_GRAPH = {
    "registrations": {"identity", "pseudonymisation", "portal", "sim", "nippin"},
    "uploads": {"identity", "registrations"},
    "portal": {"identity", "registrations"},
    "intake": {"identity", "registrations"},
    "nippin": {"identity", "registrations", "portal"},
    "pseudonymisation": {"sim"},
    "sim": set(),
    "identity": set(),
}


@pytest.fixture(scope="module", params=sorted(VALUES))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(VALUES[request.param])


def test_lint_finds_nothing_but_the_dependency_charts_left_unvendored() -> None:
    for name, values in VALUES.items():
        report = helm.lint(CHART, values, strict=True, kube_version="v1.33.0")
        errors = [e for e in report["errors"] if "missing these dependencies" not in e]
        assert errors == [], name


def test_every_rendered_object_is_valid_kubernetes(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, manifests = rendered
    assert manifests, name
    assert validation_errors(manifests) == []


def test_every_pod_is_hardened_and_writes_only_tmp(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, manifests = rendered
    pods = [m for m in manifests if m["kind"] in ("Deployment", "Job")]
    assert pods
    for m in pods:
        spec = m["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001
        assert spec["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes["tmp"]
        assert all(s["secret"]["name"] for s in volumes["secrets"]["projected"]["sources"])
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, m["metadata"]["name"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
            assert not c["image"].endswith(":latest")
            assert {v["mountPath"] for v in c["volumeMounts"]} == {"/tmp", "/run/secrets/hdhub"}


def test_each_service_runs_its_own_command_with_grpc_and_http_probes() -> None:
    manifests = render(EVERYTHING_ON)
    deployments = by_kind(manifests, "Deployment")
    for svc in ALL_SERVICES:
        d = deployments[f"hdhub-{svc}"]
        c = d["spec"]["template"]["spec"]["containers"][0]
        assert c["args"][:2] == ["run", svc]
        assert c["livenessProbe"]["grpc"]["port"] == 50051
        # Ready while the database answers; alive (not restarted) while it does not.
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["grpc"]["service"] == "liveness"
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env[f"HDHUB_{svc.upper()}_GRPC_BIND"] == "0.0.0.0:50051"
        assert env["HDHUB_GRPC_REGISTRATIONS"] == "dns:///hdhub-registrations-grpc:50051"
    workers = {n: d for n, d in deployments.items() if n.endswith("-worker")}
    assert {w["spec"]["template"]["spec"]["containers"][0]["args"][1] for w in workers.values()} == {
        "registrations",
        "uploads",
        "intake",
        "nippin",
    }
    for w in workers.values():  # liveness on the claim loop's heartbeat, on the metrics port
        c = w["spec"]["template"]["spec"]["containers"][0]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["HDHUB_WORKER_STALE_SECONDS"] == "300"
    headless = by_kind(manifests, "Service")["hdhub-registrations-grpc"]
    assert headless["spec"]["clusterIP"] == "None"


def test_a_migration_hook_per_service_runs_before_install_and_upgrade() -> None:
    jobs = by_kind(render(), "Job")
    assert set(jobs) == {
        f"hdhub-{s}-migrate" for s in ("identity", "registrations", "uploads", "portal", "intake", "nippin")
    }
    for name, job in jobs.items():
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args == ["migrate", name.removeprefix("hdhub-").removesuffix("-migrate")]
    plain = by_kind(render({"migrations": {"hook": False}}), "Job")
    assert all("annotations" not in j["metadata"] for j in plain.values())


def _routes(manifests: list[dict[str, Any]]) -> dict[str, str]:
    (ingress,) = by_kind(manifests, "Ingress").values()
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    return {p["path"]: p["backend"]["service"]["name"].removeprefix("hdhub-") for p in paths}


def _service_routes() -> dict[str, str]:
    """Every REST path each service serves, from the services' own routers."""
    from hdhub.cli.services import SERVICES, make_service

    owned: dict[str, str] = {}
    for name in SERVICES:
        service = make_service(name)
        for router in service.routers():
            for route in router.routes:
                owned[getattr(route, "path", "")] = name
    return owned


def test_the_ingress_routes_every_rest_path_to_the_service_that_serves_it(
    tmp_path: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("HDHUB_DATA_DIR", str(tmp_path))
    from hdhub.common.local_secrets import GENERATED

    for name, draw in GENERATED.items():  # services are built, and no secret has a default
        monkeypatch.setenv(name, draw())
    routes = _routes(render(EVERYTHING_ON))
    served = _service_routes()
    assert served
    for path, service in served.items():
        if path.startswith("/dev/"):  # `make run`'s development outbox: one process's memory
            continue
        prefixes = [p for p in routes if path == p or path.startswith(p.rstrip("/") + "/")]
        assert prefixes, f"{path} ({service}) is not routed by the Ingress"
        assert routes[max(prefixes, key=len)] == service, path
    # Keycloak issues the tokens: the embedded issuer's /realms is not published.
    assert "/realms" not in _routes(render(values_file("values-prod.yaml")))


def test_with_the_embedded_issuer_pods_fetch_its_keys_inside_the_cluster() -> None:
    settings = by_kind(render(EVERYTHING_ON), "ConfigMap")["hdhub-platform"]["data"]
    assert settings["HDHUB_OIDC_ISSUER"] == "https://hdhub.example.org/realms/hdhub"
    assert settings["HDHUB_OIDC_JWKS_URL"].startswith("http://hdhub-identity:8000/realms/hdhub/")
    # and services get their own tokens there too (workers, the drop folder, intake).
    assert (
        settings["HDHUB_OIDC_TOKEN_URL"]
        == "http://hdhub-identity:8000/realms/hdhub/protocol/openid-connect/token"
    )
    keycloak = by_kind(render(values_file("values-prod.yaml")), "ConfigMap")["hdhub-platform"]["data"]
    assert "HDHUB_OIDC_JWKS_URL" not in keycloak


def _grpc_edges(manifests: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(caller, callee) pairs the policies let through on the gRPC port, ingress and egress both."""
    policies = by_kind(manifests, "NetworkPolicy")
    ingress: set[tuple[str, str]] = set()
    egress: set[tuple[str, str]] = set()
    for p in policies.values():
        me = p["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component")
        if me is None:
            continue
        me = me.removesuffix("-worker")
        for rule in p["spec"].get("ingress", []):
            if {port["port"] for port in rule["ports"]} != {50051}:
                continue
            for peer in rule["from"]:
                caller = peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                ingress.add((caller.removesuffix("-worker"), me))
        for rule in p["spec"].get("egress", []):
            for peer in rule["to"]:
                if "podSelector" in peer:  # (an ipBlock is the central platform, outside)
                    egress.add((me, peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]))
    assert ingress == egress, "every allowed call is open at both ends"
    return ingress


def test_network_policies_deny_by_default_and_allow_exactly_the_call_graph() -> None:
    manifests = render(EVERYTHING_ON)
    deny = by_kind(manifests, "NetworkPolicy")["hdhub-default-deny"]
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    expected = {(caller, callee) for caller, callees in CALL_GRAPH.items() for callee in callees}
    assert _grpc_edges(manifests) == expected
    assert {caller for caller, callee in expected if callee == "pseudonymisation"} == {"registrations"}


def test_network_policies_follow_the_components_that_are_switched_on() -> None:
    edges = _grpc_edges(render(values_file("values-prod.yaml")))
    assert ("registrations", "pseudonymisation") in edges
    assert ("registrations", "nippin") in edges and ("nippin", "registrations") in edges
    assert not any("sim" in edge for edge in edges)
    assert by_kind(render(values_file("values-dev.yaml")), "NetworkPolicy") == {}


def test_sftp_hpa_pdb_and_alerts_are_behind_their_flags() -> None:
    off = render({"components": {"intake": {"sftp": {"enabled": False}}}})
    on = render(EVERYTHING_ON)
    assert "hdhub-intake-sftp" not in by_kind(off, "Service")
    sftp = by_kind(on, "Service")["hdhub-intake-sftp"]
    assert sftp["spec"]["ports"][0]["port"] == 2222
    assert by_kind(off, "HorizontalPodAutoscaler") == {}
    # (the sim keeps its switches in memory: never more than one)
    assert len(by_kind(on, "HorizontalPodAutoscaler")) == len(ALL_SERVICES) - 1
    assert "replicas" not in by_kind(on, "Deployment")["hdhub-registrations"]["spec"]
    assert (
        by_kind(render({"default": {"podDisruptionBudget": {"enabled": False}}}), "PodDisruptionBudget") == {}
    )
    assert by_kind(off, "PrometheusRule") == {}
    (rules,) = by_kind(on, "PrometheusRule").values()
    alerts = {r["alert"] for g in rules["spec"]["groups"] for r in g["rules"]}
    assert alerts == {
        "HdhubHighErrorRate",
        "HdhubHighLatency",
        "HdhubDeliveryBacklogOld",
        "HdhubConfirmationOverdue",
        "HdhubJobParked",
        "HdhubJobBacklogOld",
        "HdhubCentralPlatformFailing",
        "HdhubRegistrationsNok",
        "HdhubWorkerSilent",
        "HdhubCertificateExpiring",
        "HdhubMetricsStale",
        "HdhubTargetDown",
    }
    # Every metric an alert reads is one the code exports (names drift otherwise).
    sources = "\n".join(
        path.read_text()
        for base in ("libs", "services")
        for path in (ROOT / base).rglob("*.py")
        if "/tests/" not in str(path)
    )
    exprs = " ".join(r["expr"] for g in rules["spec"]["groups"] for r in g["rules"])
    for metric in set(re.findall(r"\b((?:hdhub|http_server|grpc_client)_[a-z_]+?)(?:_bucket)?\b", exprs)):
        assert f'"{metric}"' in sources, metric


def test_a_new_service_is_one_values_entry() -> None:
    manifests = render(
        {"components": {"archive": {"calls": ["identity"], "ingressPaths": ["/api/v1/archive"]}}}
    )
    assert "hdhub-archive" in by_kind(manifests, "Deployment")
    assert "hdhub-archive-grpc" in by_kind(manifests, "Service")
    assert "hdhub-archive-migrate" in by_kind(manifests, "Job")
    assert _routes(manifests)["/api/v1/archive"] == "archive"
    assert ("archive", "identity") in _grpc_edges(manifests)
    assert validation_errors(manifests) == []


@pytest.mark.parametrize(
    "values",
    [
        {"image": {"tag": "latest"}},
        {"components": {"registrations": {"enabled": "yes"}}},
        {"components": {"registrations": {"replicaCount": 2}}},
        {"platform": {"environment": "staging"}},
    ],
    ids=["latest-tag", "enabled-not-boolean", "unknown-key", "unknown-environment"],
)
def test_the_values_schema_refuses_mistakes(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmError):
        render(values)


def test_the_central_platform_is_the_sim_in_dev_and_an_external_endpoint_in_prod() -> None:
    dev = render(values_file("values-dev.yaml"))
    assert "hdhub-sim" in by_kind(dev, "Deployment")
    assert "HDHUB_GRPC_CENTRAL" not in by_kind(dev, "ConfigMap")["hdhub-platform"]["data"]
    prod = render(values_file("values-prod.yaml"))
    assert "hdhub-sim" not in by_kind(prod, "Deployment")
    data = by_kind(prod, "ConfigMap")["hdhub-platform"]["data"]
    assert data["HDHUB_GRPC_CENTRAL"] == "dns:///receiver.central.example.org:443"
    policies = by_kind(prod, "NetworkPolicy")
    for name in ("hdhub-registrations", "hdhub-registrations-worker", "hdhub-pseudonymisation"):
        cidrs = [
            block["ipBlock"]["cidr"]
            for rule in policies[name]["spec"].get("egress", [])
            for block in rule["to"]
            if "ipBlock" in block
        ]
        assert cidrs == ["198.51.100.0/24"], name
    for name in ("hdhub-uploads", "hdhub-intake", "hdhub-portal"):
        assert not any(
            "ipBlock" in block for rule in policies[name]["spec"].get("egress", []) for block in rule["to"]
        ), name
