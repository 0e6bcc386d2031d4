"""The umbrella chart, rendered offline with Helm's own library (helm-python-sdk) for several
values files and checked: lint, schema, kubernetes-validate --strict, and what the chart promises
(hardened pods, probes, migrations, routes, the gRPC call graph as NetworkPolicies)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
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


def _channel_targets(path: Path) -> set[str]:
    """The services a module opens gRPC channels to: ``channel("identity")`` calls
    (``hdhub.common.grpc.channel``); ``channel(CENTRAL)`` is the central platform."""
    tree = ast.parse(path.read_text(), str(path))
    imported = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "hdhub.common.grpc"
        and any(alias.name == "channel" for alias in node.names)
        for node in ast.walk(tree)
    )
    targets: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "channel"):
            continue
        assert imported, f"{path}:{node.lineno}: a channel() that is not hdhub.common.grpc's"
        (target, *_) = node.args
        if isinstance(target, ast.Name) and target.id == "CENTRAL":
            targets.add("central")
        else:
            assert isinstance(target, ast.Constant) and isinstance(target.value, str), (
                f"{path}:{node.lineno}: name the service as a literal, so the NetworkPolicies can follow it"
            )
            targets.add(target.value)
    return targets


def code_call_graph() -> dict[str, set[str]]:
    """caller -> the services it calls over gRPC, read from each service's code."""
    graph: dict[str, set[str]] = {}
    for service in ALL_SERVICES:
        sources = (ROOT / "services" / service / "src").rglob("*.py")
        graph[service] = set().union(*(_channel_targets(p) for p in sources if "/proto/" not in str(p)))
    return graph


def test_every_grpc_channel_of_the_code_is_read_by_the_call_graph() -> None:
    """Channels are made in one place only: anything else would escape the call graph."""
    places = ["libs/common/src", *(f"services/{s}/src" for s in ALL_SERVICES), "src"]
    for place in places:
        for path in (ROOT / place).rglob("*.py"):
            text = path.read_text()
            if path.name == "grpc.py" and "hdhub/common" in str(path):
                continue
            assert "insecure_channel(" not in text and "secure_channel(" not in text, path
    assert not _channel_targets(ROOT / "libs/common/src/hdhub/common/grpc.py")
    graph = code_call_graph()
    assert graph["registrations"] >= {"identity", "central"} and graph["identity"] == set()


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
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, m["metadata"]["name"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
            assert not c["image"].endswith(":latest")
            # /tmp is the only writable place; secrets and certificates are read-only files.
            mounts = {v["mountPath"]: v for v in c["volumeMounts"]}
            assert {"/tmp", "/run/secrets/hdhub"} <= set(mounts)
            assert all(v.get("readOnly") and p.startswith("/run/") for p, v in mounts.items() if p != "/tmp")


def test_each_service_runs_its_own_command_with_grpc_and_http_probes() -> None:
    manifests = render(EVERYTHING_ON)
    deployments = by_kind(manifests, "Deployment")
    for svc in ALL_SERVICES:
        d = deployments[f"hdhub-{svc}"]
        c = d["spec"]["template"]["spec"]["containers"][0]
        assert c["args"][:2] == ["run", svc]
        # Ready while the database answers; alive (not restarted) while it does not. The
        # kubelet's gRPC probe speaks no TLS: with certificates, liveness is /healthz.
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        env = {e["name"]: e.get("value") for e in c["env"]}
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
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["HDHUB_WORKER_STALE_SECONDS"] == "300"
    headless = by_kind(manifests, "Service")["hdhub-registrations-grpc"]
    assert headless["spec"]["clusterIP"] == "None"
    # Without certificates (a mesh's mutual TLS, or plaintext): the native gRPC probe.
    for mode in ("mesh", "plaintext"):
        values = EVERYTHING_ON | {"grpcTls": {"mode": mode}, "platform": {"environment": "development"}}
        plain = by_kind(render(values), "Deployment")["hdhub-registrations"]
        probe = plain["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
        assert probe["grpc"] == {"port": 50051, "service": "liveness"}


def test_every_pod_of_a_service_with_a_database_migrates_first() -> None:
    """No hook and no Job: each pod's init container runs `hdhub migrate SVC` (pods take turns
    on an advisory lock), so the first install and every upgrade migrate before serving."""
    manifests = render()
    assert by_kind(manifests, "Job") == {}
    deployments = by_kind(manifests, "Deployment")
    migrating = {}
    for name, d in deployments.items():
        spec = d["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        for init in spec.get("initContainers", []):
            assert init["name"] == "migrate" and init["args"][0] == "migrate"
            # the same image, settings and Secrets as the container it prepares (which also
            # mounts its gRPC certificate: migrations need none)
            for key in ("image", "envFrom"):
                assert init[key] == container[key], (name, key)
            assert all(e in container["env"] for e in init["env"]), name
            assert all(m in container["volumeMounts"] for m in init["volumeMounts"]), name
            migrating[name] = init["args"][1]
    assert migrating == {
        f"hdhub-{s}{role}": s
        for s in ("identity", "registrations", "uploads", "portal", "intake", "nippin")
        for role in ("", "-worker")
        if f"hdhub-{s}{role}" in deployments
    }
    assert "initContainers" not in deployments["hdhub-pseudonymisation"]["spec"]["template"]["spec"]
    off = by_kind(render({"migrations": {"enabled": False}}), "Deployment")
    assert not any("initContainers" in d["spec"]["template"]["spec"] for d in off.values())


def _routes(manifests: list[dict[str, Any]]) -> dict[str, str]:
    (ingress,) = by_kind(manifests, "Ingress").values()
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    return {p["path"]: p["backend"]["service"]["name"].removeprefix("hdhub-") for p in paths}


def _service_routes() -> dict[str, str]:
    """Every REST path each service serves, from the services' own routers."""
    from fastapi.routing import iter_route_contexts

    from hdhub.cli.services import make_service
    from hdhub.common.config import SERVICES

    owned: dict[str, str] = {}
    for name in SERVICES:
        service = make_service(name)
        for router in service.routers():
            # Module-level routers are included, not copied: walk through the inclusion.
            for route in iter_route_contexts(router.routes):
                owned[route.path_format] = name
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
    # Exactly the code's channels; the sim stands in for the central platform.
    expected = {
        (caller, "sim" if callee == "central" else callee)
        for caller, callees in code_call_graph().items()
        for callee in callees
    }
    assert _grpc_edges(manifests) == expected
    assert {caller for caller, callee in expected if callee == "pseudonymisation"} == {"registrations"}


def test_the_values_declare_each_components_calls_as_its_code_makes_them() -> None:
    """`calls:` and `central:` are what the NetworkPolicies are drawn from: each must be what
    the service's code calls, no edge more (an open door) and none less (a refused call)."""
    values = values_file("values.yaml")
    for service, targets in code_call_graph().items():
        spec = values["components"][service] or {}
        assert set(spec.get("calls", [])) == targets - {"central"}, service
        assert spec.get("central", False) == ("central" in targets), service


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
    assert by_kind(on, "ScaledObject") == {}  # KEDA is off by default
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
    archive = by_kind(manifests, "Deployment")["hdhub-archive"]["spec"]["template"]["spec"]
    assert archive["initContainers"][0]["args"] == ["migrate", "archive"]
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
        {"myCareNet": {"interface": "FTP"}},
        {"myCareNet": {"folder": {"mountPath": "relative/path"}}},
    ],
    ids=[
        "latest-tag",
        "enabled-not-boolean",
        "unknown-key",
        "unknown-environment",
        "unknown-mycarenet-interface",
        "relative-folder",
    ],
)
def test_the_values_schema_refuses_mistakes(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmError):
        render(values)


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema or "oneOf" in schema:
        if "$ref" in schema:
            schema = root["definitions"][schema["$ref"].rsplit("/", 1)[1]]
        else:
            schema = schema["oneOf"][0]
    return schema


def _sample(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """A smallest valid value of a schema."""
    schema = _resolve(schema, root)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        props = schema.get("properties", {})
        return {name: _sample(props[name], root) for name in schema.get("required", [])}
    return {"array": [], "string": "/x", "integer": schema.get("minimum", 1), "number": 1, "boolean": True}[
        kind
    ]


def _closed_objects(schema: dict[str, Any], root: dict[str, Any], path: tuple[Any, ...] = ()) -> Any:
    """Every object of the values that refuses unknown keys: its path (an index for a list
    item, a component's name for `components`) and its schema."""
    schema = _resolve(schema, root)
    if schema.get("type") == "array":
        yield from _closed_objects(schema["items"], root, (*path, 0))
        return
    if schema.get("additionalProperties") is False:
        yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _closed_objects(sub, root, (*path, name))
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _closed_objects(schema["additionalProperties"], root, (*path, "registrations"))


def _values_at(path: tuple[Any, ...], leaf: dict[str, Any]) -> Any:
    value: Any = leaf
    for step in reversed(path):
        value = [value] if step == 0 else {step: value}
    return value


def test_a_typo_is_refused_at_every_level_of_the_values() -> None:
    """values.schema.json declares every key: a misspelt one (`netwrkPolicies`,
    `ingress.clasName`, a probe's `periodSecond`...) fails the install instead of rendering
    as if it were not there."""
    root = json.loads((CHART / "values.schema.json").read_text())
    levels = list(_closed_objects(root, root))
    assert len(levels) > 40
    for path, schema in levels:
        known = sorted(schema["properties"])
        typo = known[0][0] + known[0][2:] if len(known[0]) > 2 else known[0] + "x"
        assert typo not in known
        values = _values_at(path, {**_sample(schema, root), typo: "x"})
        with pytest.raises(helm.HelmError) as refused:
            render(values)
        assert typo in str(refused.value), (path, str(refused.value)[:300])
    for values in ({"netwrkPolicies": {"enabled": False}}, {"ingress": {"clasName": "nginx"}}):
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
    # Intake sends the VCF and sequence files to the central platform itself (docs/delivery.md).
    for name in (
        "hdhub-registrations",
        "hdhub-registrations-worker",
        "hdhub-pseudonymisation",
        "hdhub-intake",
    ):
        cidrs = [
            block["ipBlock"]["cidr"]
            for rule in policies[name]["spec"].get("egress", [])
            for block in rule["to"]
            if "ipBlock" in block
        ]
        assert cidrs == ["198.51.100.0/24"], name
    for name in ("hdhub-uploads", "hdhub-portal"):
        assert not any(
            "ipBlock" in block for rule in policies[name]["spec"].get("egress", []) for block in rule["to"]
        ), name


def _pod(manifests: list[dict[str, Any]], name: str) -> dict[str, Any]:
    spec: dict[str, Any] = by_kind(manifests, "Deployment")[name]["spec"]["template"]["spec"]
    return spec


def test_the_file_system_interface_gives_nippins_worker_the_gateways_folder() -> None:
    rest = render({})
    assert by_kind(rest, "ConfigMap")["hdhub-platform"]["data"]["HDHUB_NIPPIN_INTERFACE"] == "REST"
    assert by_kind(rest, "PersistentVolumeClaim") == {}

    manifests = render({"myCareNet": {"interface": "FILE_SYSTEM", "folder": {"storageClassName": "nfs"}}})
    data = by_kind(manifests, "ConfigMap")["hdhub-platform"]["data"]
    assert data["HDHUB_NIPPIN_INTERFACE"] == "FILE_SYSTEM"
    assert data["HDHUB_NIPPIN_FOLDER"] == "/var/lib/hdhub/mycarenet"
    claim = by_kind(manifests, "PersistentVolumeClaim")["hdhub-mycarenet"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["storageClassName"] == "nfs"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    worker = _pod(manifests, "hdhub-nippin-worker")
    volumes = {v["name"]: v for v in worker["volumes"]}
    assert volumes["mycarenet"]["persistentVolumeClaim"]["claimName"] == "hdhub-mycarenet"
    mounts = {m["mountPath"]: m for m in worker["containers"][0]["volumeMounts"]}
    # The folder is the worker's only writable place besides /tmp.
    assert "/var/lib/hdhub/mycarenet" in mounts and not mounts["/var/lib/hdhub/mycarenet"].get("readOnly")
    # Only the worker sends and reads TACKs: the API pods and other workers have no folder.
    for other in ("hdhub-nippin", "hdhub-registrations-worker"):
        assert "mycarenet" not in {v["name"] for v in _pod(manifests, other)["volumes"]}, other
    assert validation_errors(manifests) == []


def test_the_gateways_own_claim_is_mounted_as_it_is() -> None:
    manifests = render(
        {"myCareNet": {"interface": "FILE_SYSTEM", "folder": {"existingClaim": "gateway-share"}}}
    )
    assert by_kind(manifests, "PersistentVolumeClaim") == {}
    volumes = {v["name"]: v for v in _pod(manifests, "hdhub-nippin-worker")["volumes"]}
    assert volumes["mycarenet"]["persistentVolumeClaim"]["claimName"] == "gateway-share"
