"""deploy/kustomize: the base and components are generated from the chart and must be current;
every overlay (and the base) builds with `kubectl kustomize` and validates --strict."""

from __future__ import annotations

import copy
import importlib.util
from typing import Any

import pytest

from tests.deploy.manifests import KUSTOMIZE, ROOT, by_kind, kustomize, render, validation_errors, values_file

pytest.importorskip("helm_python")

build = kustomize
# Helm's own bookkeeping, which the generated kustomize files leave out.
DROPPED_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def test_the_generated_base_and_components_match_the_chart() -> None:
    spec = importlib.util.spec_from_file_location("gen_kustomize", ROOT / "tools" / "gen_kustomize.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    wanted = gen.files()
    stale = [
        str(p.relative_to(ROOT)) for p, text in wanted.items() if not p.is_file() or p.read_text() != text
    ]
    present = {p for d in {p.parent for p in wanted} for p in d.glob("*.yaml")}
    stale += [str(p.relative_to(ROOT)) for p in present - set(wanted)]
    assert stale == [], "run `make kustomize` (tools/gen_kustomize.py)"


@pytest.mark.parametrize("path", ["base", "overlays/dev", "overlays/prod"])
def test_each_build_is_valid_kubernetes(path: str) -> None:
    manifests = build(path)
    assert by_kind(manifests, "Deployment")
    assert validation_errors(manifests) == []


def test_dev_runs_one_replica_in_development_with_the_sim() -> None:
    dev = build("overlays/dev")
    assert {d["spec"]["replicas"] for n, d in by_kind(dev, "Deployment").items() if "worker" not in n} == {1}
    assert by_kind(dev, "ConfigMap")["hdhub-platform"]["data"]["HDHUB_ENVIRONMENT"] == "development"
    assert by_kind(dev, "NetworkPolicy") == {}
    assert "hdhub-sim" in by_kind(dev, "Deployment")


def _comparable(m: dict[str, Any]) -> dict[str, Any]:
    """An object without what only says who applied it: Helm's labels, the namespace, the
    checksum that makes Helm roll pods on a settings change."""
    m = copy.deepcopy(m)
    for meta in (m["metadata"], m.get("spec", {}).get("template", {}).get("metadata", {})):
        meta.pop("namespace", None)
        for label in DROPPED_LABELS:
            meta.get("labels", {}).pop(label, None)
        meta.get("annotations", {}).pop("checksum/platform", None)
        if meta.get("annotations") == {}:
            del meta["annotations"]
    return m


def test_prod_installs_what_helm_installs_with_values_prod() -> None:
    helm_prod = {
        (m["kind"], m["metadata"]["name"]): _comparable(m) for m in render(values_file("values-prod.yaml"))
    }
    kustomize_prod = build("overlays/prod")
    assert {m["metadata"]["namespace"] for m in kustomize_prod} == {"hdhub"}
    ours = {(m["kind"], m["metadata"]["name"]): _comparable(m) for m in kustomize_prod}
    assert sorted(ours) == sorted(helm_prod)
    differing = [key for key in helm_prod if helm_prod[key] != ours[key]]
    assert differing == [], "run `make kustomize` after changing values-prod.yaml"
    # What the two once disagreed on, in both: autoscaling 3-10, disruption budgets of 2,
    # two workers where values-prod says so, and no `replicas` under an autoscaler.
    for manifests in (list(helm_prod.values()), kustomize_prod):
        deployments = by_kind(manifests, "Deployment")
        hpas = by_kind(manifests, "HorizontalPodAutoscaler")
        assert hpas and {(h["spec"]["minReplicas"], h["spec"]["maxReplicas"]) for h in hpas.values()} == {
            (3, 10)
        }
        assert all(
            "replicas" not in deployments[h["spec"]["scaleTargetRef"]["name"]]["spec"] for h in hpas.values()
        )
        budgets = by_kind(manifests, "PodDisruptionBudget")
        assert {p["spec"].get("minAvailable") for n, p in budgets.items() if not n.endswith("-worker")} == {2}
        assert {p["spec"].get("maxUnavailable") for n, p in budgets.items() if n.endswith("-worker")} == {1}
        assert deployments["hdhub-registrations-worker"]["spec"]["replicas"] == 2
        assert deployments["hdhub-uploads-worker"]["spec"]["replicas"] == 2
        settings = by_kind(manifests, "ConfigMap")["hdhub-platform"]["data"]
        assert settings["HDHUB_OIDC_ISSUER"] == "https://login.example.org/realms/hdhub"
        identity = deployments["hdhub-identity"]["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in identity["containers"][0]["env"]}
        assert env["HDHUB_IDENTITY_BACKEND"] == "keycloak"
        mounted = {s["secret"]["name"] for s in identity["volumes"][1]["projected"]["sources"]}
        assert mounted == {"hdhub-platform", "hdhub-identity"}
        assert "hdhub-sim" not in deployments


def test_the_autoscaler_component_leaves_replicas_to_the_autoscaler() -> None:
    """A base with the hpa component: the autoscaled Deployments carry no `replicas`, which
    every `kubectl apply` would otherwise reset the autoscaler's choice to."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(dir=KUSTOMIZE) as tmp:
        overlay = Path(tmp)
        (overlay / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            "resources: [../base]\ncomponents: [../components/hpa]\n"
        )
        manifests = build(overlay.name)
    deployments = by_kind(manifests, "Deployment")
    for hpa in by_kind(manifests, "HorizontalPodAutoscaler").values():
        assert "replicas" not in deployments[hpa["spec"]["scaleTargetRef"]["name"]]["spec"]
    assert deployments["hdhub-registrations-worker"]["spec"]["replicas"] == 1  # workers keep theirs


def test_the_mycarenet_folder_component_gives_nippins_worker_the_gateways_folder() -> None:
    """A base with the FILE_SYSTEM interface's component: the claim, the two settings and the
    worker's mount, as the chart renders them with `myCareNet.interface: FILE_SYSTEM`."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(dir=KUSTOMIZE) as tmp:
        overlay = Path(tmp)
        (overlay / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            "resources: [../base]\ncomponents: [../components/mycarenet-folder]\n"
        )
        manifests = kustomize(overlay.name)
    data = by_kind(manifests, "ConfigMap")["hdhub-platform"]["data"]
    assert (data["HDHUB_NIPPIN_INTERFACE"], data["HDHUB_NIPPIN_FOLDER"]) == (
        "FILE_SYSTEM",
        "/var/lib/hdhub/mycarenet",
    )
    assert "hdhub-mycarenet" in by_kind(manifests, "PersistentVolumeClaim")
    worker = by_kind(manifests, "Deployment")["hdhub-nippin-worker"]["spec"]["template"]["spec"]
    assert {"name": "mycarenet", "persistentVolumeClaim": {"claimName": "hdhub-mycarenet"}} in worker[
        "volumes"
    ]
    assert "/var/lib/hdhub/mycarenet" in {m["mountPath"] for m in worker["containers"][0]["volumeMounts"]}
    assert validation_errors(manifests) == []
