"""deploy/kustomize: the base and components are generated from the chart and must be current;
every overlay (and the base) builds with `kubectl kustomize` and validates --strict."""

from __future__ import annotations

import copy
import importlib.util
import re
import shutil
import subprocess
from functools import cache
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import KUSTOMIZE, ROOT, by_kind, validation_errors

pytest.importorskip("helm_python")

KUBECTL = shutil.which("kubectl")


def _kustomize_version() -> tuple[int, ...]:
    assert KUBECTL
    out = subprocess.run([KUBECTL, "version", "--client"], capture_output=True, text=True).stdout
    found = re.search(r"Kustomize Version: v?(\d+)\.(\d+)", out)
    return (int(found.group(1)), int(found.group(2))) if found else (2, 0)


def build(path: str) -> list[dict[str, Any]]:
    return copy.deepcopy(_build(path))


@cache
def _build(path: str) -> list[dict[str, Any]]:
    if KUBECTL is None:
        pytest.skip("kubectl not installed (make test runs tools/ensure-kubectl.sh)")
    if _kustomize_version() < (4, 0):
        # Debian bookworm's kubectl 1.20 embeds kustomize v2: no components, no `replicas:`.
        pytest.skip("this kubectl embeds a kustomize older than v4 (components, replicas)")
    done = subprocess.run(
        [KUBECTL, "kustomize", str(KUSTOMIZE / path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


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


def test_dev_runs_one_replica_in_development_and_prod_adds_the_policies() -> None:
    dev = build("overlays/dev")
    assert {d["spec"]["replicas"] for n, d in by_kind(dev, "Deployment").items() if "worker" not in n} == {1}
    assert by_kind(dev, "ConfigMap")["hdhub-platform"]["data"]["HDHUB_ENVIRONMENT"] == "development"
    assert by_kind(dev, "NetworkPolicy") == {}
    prod = build("overlays/prod")
    assert "hdhub-default-deny" in by_kind(prod, "NetworkPolicy")
    assert by_kind(prod, "HorizontalPodAutoscaler") and by_kind(prod, "PodDisruptionBudget")
    assert {m["metadata"]["namespace"] for m in prod} == {"hdhub"}
    images = {
        c["image"]
        for d in by_kind(prod, "Deployment").values()
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"registry.example.org/hdhub/hdhub:0.1.0"}
    # The central platform: its address, and egress to it from the two services that deliver.
    assert by_kind(prod, "ConfigMap")["hdhub-platform"]["data"]["HDHUB_GRPC_CENTRAL"].startswith("dns:///")
    policies = by_kind(prod, "NetworkPolicy")
    for name in ("hdhub-registrations", "hdhub-registrations-worker", "hdhub-pseudonymisation"):
        blocks = [
            peer for rule in policies[name]["spec"]["egress"] for peer in rule["to"] if "ipBlock" in peer
        ]
        assert blocks == [{"ipBlock": {"cidr": "198.51.100.0/24"}}], name
    assert "hdhub-sim" in by_kind(dev, "Deployment") and "hdhub-sim" not in by_kind(prod, "Deployment")
