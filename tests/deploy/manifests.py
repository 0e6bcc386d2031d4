"""Rendering and validating Kubernetes manifests offline, for the deploy tests."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "hdhub"
KUSTOMIZE = ROOT / "deploy" / "kustomize"
# A recent Kubernetes release whose schemas kubernetes-validate ships.
KUBE_VERSION = "1.33.0"
# Custom resources have no upstream schema: these kinds are the only ones allowed to skip it.
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("cert-manager.io/v1", "Certificate"),
    ("keda.sh/v1alpha1", "ScaledObject"),
}

Manifest = dict[str, Any]


@lru_cache(maxsize=1)
def _chart() -> Any:
    import helm_python as helm

    return helm.Chart.load(CHART)


def values_file(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((CHART / name).read_text())
    return loaded or {}


def render(values: dict[str, Any] | None = None, *, release: str = "hdhub") -> list[Manifest]:
    """Every object `helm template` would print for these values, hooks included (a fresh copy)."""
    return copy.deepcopy(_render(json.dumps(values or {}, sort_keys=True), release))


@lru_cache(maxsize=32)
def _render(values: str, release: str) -> list[Manifest]:
    rendered = _chart().render(json.loads(values), name=release, namespace="hdhub", is_install=True)
    return [doc for path in sorted(rendered) for doc in yaml.safe_load_all(rendered[path]) if doc]


@lru_cache(maxsize=1)
def _kubernetes_validate() -> Any:
    """kubernetes-validate, with its schema files read once (it parses the multi-megabyte
    definitions file again for every object, which made these checks slow)."""
    import kubernetes_validate
    from kubernetes_validate import utils

    utils.schema_contents = lru_cache(maxsize=None)(utils.schema_contents)
    return kubernetes_validate


def validation_errors(manifests: list[Manifest]) -> list[str]:
    """kubernetes-validate --strict on each object: unknown fields are errors too."""
    kubernetes_validate = _kubernetes_validate()
    errors = []
    for m in manifests:
        where = f"{m.get('kind')}/{m.get('metadata', {}).get('name')}"
        if (m.get("apiVersion"), m.get("kind")) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(m, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{where}: {exc.message} at {'/'.join(map(str, exc.path))}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{where}: {exc}")
    return errors


def by_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def kustomize(path: str) -> list[Manifest]:
    """`kubectl kustomize deploy/kustomize/<path>` (a fresh copy); skips without a kubectl
    whose kustomize knows components."""
    return copy.deepcopy(_kustomize(path))


@cache
def _kustomize(path: str) -> list[Manifest]:
    import pytest

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (make test runs tools/ensure-kubectl.sh)")
    out = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True).stdout
    found = re.search(r"Kustomize Version: v?(\d+)\.(\d+)", out)
    version = (int(found.group(1)), int(found.group(2))) if found else (2, 0)
    if version < (4, 0):
        # Debian bookworm's kubectl 1.20 embeds kustomize v2: no components, no `replicas:`.
        pytest.skip("this kubectl embeds a kustomize older than v4 (components, replicas)")
    done = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZE / path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]
