"""A pod of the rendered manifests, started on this machine: its containers' commands with the
environment and files Kubernetes would give them.

What a container gets here is what the manifests say: ``env`` (values, field and key
references, ``$(VAR)`` expansion), ``envFrom`` (ConfigMaps of the same manifests, Secrets),
and its volume mounts (projected Secrets and ConfigMaps as one file per key, ``emptyDir``)
under a folder of its own. The Secrets are the ones docs/operations.md tells the operator to
create: its ``kubectl create secret`` blocks run in bash with a ``kubectl`` that records them
(:func:`documented_secrets`). Only *where* things are is changed: listening ports become free
ones, ``0.0.0.0`` becomes loopback, mount paths become the pod's folder, and the endpoints the
documented Secrets name (PostgreSQL, Redis, the object store, Keycloak) become the test's
(:class:`Endpoints`). Init containers run first, each to completion, then the containers,
which are ready when their own readiness probe says so.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.deploy.manifests import ROOT, Manifest
from tests.e2e.test_doc_snippets import snippets
from tests.support.stack import free_port
from tests.support.tls import CertificateAuthority

OPERATIONS = ROOT / "docs" / "operations.md"
# A `kubectl` for the documented Secret commands: `create secret generic|tls NAME` with
# --from-literal / --from-file / --cert / --key, each Secret a folder of one file per key.
# A Secret created twice is refused, as the API server does.
KUBECTL_RECORDER = r"""
kubectl() {
  local args=()
  while [ $# -gt 0 ]; do
    case "$1" in
      -n|--namespace) shift 2 ;;
      --namespace=*) shift ;;
      *) args+=("$1"); shift ;;
    esac
  done
  if [ "${args[0]:-} ${args[1]:-}" != "create secret" ]; then
    echo "kubectl ${args[*]}: only 'create secret' is recorded here" >&2; return 1
  fi
  local dir="$RECORDED/${args[3]}"
  if [ -e "$dir" ]; then
    echo "Error from server (AlreadyExists): secrets \"${args[3]}\" already exists" >&2; return 1
  fi
  mkdir -p "$dir"
  local a kv
  for a in "${args[@]:4}"; do
    case "$a" in
      --from-literal=*) kv="${a#--from-literal=}"; printf '%s' "${kv#*=}" > "$dir/${kv%%=*}" ;;
      --from-file=*) kv="${a#--from-file=}"; cp "${kv#*=}" "$dir/${kv%%=*}" ;;
      --cert=*) cp "${a#--cert=}" "$dir/tls.crt" ;;
      --key=*) cp "${a#--key=}" "$dir/tls.key" ;;
      *) echo "kubectl create secret: $a is not recorded here" >&2; return 1 ;;
    esac
  done
}
"""


def received_files(workdir: Path) -> None:
    """What the operator is handed rather than makes, in the folder the commands run in: the
    central platform's public key, its CA and the organisation's client certificate (from
    healthdata.be), the Ingress's certificate and the OpenTelemetry collector's CA."""
    central_ca, partners = CertificateAuthority("central platform"), CertificateAuthority("partners")
    organisation = partners.issue("az-demo", hosts=())
    (workdir / "central-ca.pem").write_bytes(central_ca.pem)
    (workdir / "organisation.pem").write_bytes(organisation.cert)
    (workdir / "organisation.key").write_bytes(organisation.key)
    (workdir / "collector-ca.pem").write_bytes(CertificateAuthority("collector").pem)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    central = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    (workdir / "central-platform-public-key.pem").write_bytes(
        central.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    signing = ec.generate_private_key(ec.SECP256R1()).public_key()
    (workdir / "central-platform-signing-key.pem").write_bytes(
        signing.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hdhub.example.org")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (workdir / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (workdir / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def documented_secrets(workdir: Path) -> dict[str, dict[str, str]]:
    """Every Secret docs/operations.md has the operator create (name -> key -> value), from
    running its shell blocks that create Secrets, in order, as written, in a folder holding
    what the operator is handed (:func:`received_files`)."""
    blocks = [s.code for s in snippets(OPERATIONS) if "create secret" in s.code]
    assert blocks, "docs/operations.md creates no Secret"
    received_files(workdir)
    recorded = workdir / "recorded"
    recorded.mkdir(parents=True)
    script = "set -euo pipefail\n" + KUBECTL_RECORDER + "\n".join(blocks)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=workdir,
        env={"PATH": os.environ["PATH"], "HOME": str(workdir), "RECORDED": str(recorded)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"docs/operations.md's Secret commands failed:\n{done.stderr}"
    return {d.name: {f.name: f.read_text() for f in d.iterdir()} for d in sorted(recorded.iterdir())}


class CertManager:
    """cert-manager for the rendered ``Certificate`` objects: each one's Secret (``tls.crt``,
    ``tls.key``, ``ca.crt``) issued by one CA for its DNS names, as a CA issuer would."""

    def __init__(self) -> None:
        self.ca = CertificateAuthority("hdhub gRPC CA")
        self._issued: dict[str, dict[str, str]] = {}

    def secrets(self, manifests: list[Manifest]) -> dict[str, dict[str, str]]:
        for certificate in _objects(manifests, "Certificate").values():
            spec = certificate["spec"]
            if spec["secretName"] not in self._issued:
                leaf = self.ca.issue(spec["commonName"], hosts=tuple(spec["dnsNames"]))
                self._issued[spec["secretName"]] = {
                    "tls.crt": leaf.cert.decode(),
                    "tls.key": leaf.key.decode(),
                    "ca.crt": self.ca.pem.decode(),
                }
        return dict(self._issued)


@dataclass
class Endpoints:
    """Where this machine's datastores are, in place of the documented hosts. ``by_key``
    maps a Secret key (or an env variable) to a function of its documented value."""

    by_key: dict[str, Callable[[str], str]]
    suffixes: dict[str, Callable[[str, str], str]] = field(default_factory=dict)

    def place(self, key: str, value: str) -> str:
        if key in self.by_key:
            return self.by_key[key](value)
        for suffix, where in self.suffixes.items():
            if key.endswith(suffix):
                return where(key, value)
        return value


@dataclass
class Container:
    """One container of one pod, as it would run: what to start and what it is given."""

    pod: str
    name: str
    args: list[str]
    env: dict[str, str]
    files: dict[str, dict[str, str]]  # mount path -> file name -> content ("" for emptyDir)
    ports: dict[str, int]  # port name -> containerPort
    probe: dict[str, Any] | None
    init: bool

    def fingerprint(self) -> str:
        """Two containers with the same command, environment and files behave the same."""
        body = json.dumps(
            [self.args, self.env, self.files, self.ports, self.probe, self.init], sort_keys=True
        )
        return hashlib.sha256(body.encode()).hexdigest()


class NotStartable(AssertionError):
    """The manifests give a container something that cannot exist (a Secret no one creates)."""


def _objects(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def containers_of(
    workload: Manifest,
    manifests: list[Manifest],
    secrets: Mapping[str, Mapping[str, str]],
    endpoints: Endpoints,
) -> list[Container]:
    """The init containers, then the containers, of a Deployment's or Job's pod template."""
    pod_name = f"{workload['metadata']['name']}-0"
    spec = workload["spec"]["template"]["spec"]
    config_maps = {n: m.get("data", {}) for n, m in _objects(manifests, "ConfigMap").items()}

    def secret(name: str, optional: bool = False) -> Mapping[str, str]:
        if name in secrets:
            return {k: endpoints.place(k, v) for k, v in secrets[name].items()}
        if optional:
            return {}
        raise NotStartable(
            f"{workload['metadata']['name']}: Secret {name!r} is created nowhere in docs/operations.md"
        )

    def config_map(name: str, optional: bool = False) -> Mapping[str, str]:
        if name in config_maps:
            return config_maps[name]
        if optional:
            return {}
        raise NotStartable(f"{workload['metadata']['name']}: ConfigMap {name!r} is not in the manifests")

    volumes: dict[str, dict[str, str]] = {}
    for volume in spec.get("volumes", []):
        files: dict[str, str] = {}
        sources = volume.get("projected", {}).get("sources", [])
        if "secret" in volume:
            sources = [{"secret": {"name": volume["secret"]["secretName"], **volume["secret"]}}]
        if "configMap" in volume:
            sources = [{"configMap": volume["configMap"]}]
        for source in sources:
            if "secret" in source:
                files |= secret(source["secret"]["name"], source["secret"].get("optional", False))
            elif "configMap" in source:
                files |= config_map(source["configMap"]["name"], source["configMap"].get("optional", False))
            elif "downwardAPI" in source:
                for item in source["downwardAPI"].get("items", []):
                    files[item["path"]] = _field(item["fieldRef"]["fieldPath"], pod_name)
            else:
                raise NotStartable(f"{workload['metadata']['name']}: volume source {source} is not simulated")
        if not sources and "emptyDir" not in volume:
            raise NotStartable(f"{workload['metadata']['name']}: volume {volume['name']} is not simulated")
        volumes[volume["name"]] = files

    out = []
    for init, key in ((True, "initContainers"), (False, "containers")):
        for c in spec.get(key, []):
            env: dict[str, str] = {}
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    ref = source["configMapRef"]
                    env |= dict(config_map(ref["name"], ref.get("optional", False)))
                if "secretRef" in source:
                    ref = source["secretRef"]
                    env |= dict(secret(ref["name"], ref.get("optional", False)))
            for item in c.get("env", []):
                if "value" in item:
                    env[item["name"]] = _expand(str(item["value"]), env)
                elif "fieldRef" in item.get("valueFrom", {}):
                    env[item["name"]] = _field(item["valueFrom"]["fieldRef"]["fieldPath"], pod_name)
                elif "secretKeyRef" in item.get("valueFrom", {}):
                    ref = item["valueFrom"]["secretKeyRef"]
                    found = secret(ref["name"], ref.get("optional", False))
                    if ref["key"] in found:
                        env[item["name"]] = found[ref["key"]]
                    elif not ref.get("optional", False):
                        raise NotStartable(f"Secret {ref['name']!r} has no key {ref['key']!r}")
                elif "configMapKeyRef" in item.get("valueFrom", {}):
                    ref = item["valueFrom"]["configMapKeyRef"]
                    env[item["name"]] = config_map(ref["name"], ref.get("optional", False))[ref["key"]]
                else:
                    env[item["name"]] = ""
            env = {k: endpoints.place(k, v) for k, v in env.items()}
            mounts = {m["mountPath"]: volumes[m["name"]] for m in c.get("volumeMounts", [])}
            probe = c.get("readinessProbe") or c.get("livenessProbe")
            ports = {p.get("name", str(p["containerPort"])): p["containerPort"] for p in c.get("ports", [])}
            out.append(
                Container(
                    pod_name,
                    c["name"],
                    list(c.get("command", [])) + list(c.get("args", [])),
                    env,
                    mounts,
                    ports,
                    probe,
                    init,
                )
            )
    return out


def _field(path: str, pod: str) -> str:
    return {
        "metadata.name": pod,
        "metadata.namespace": "hdhub",
        "spec.nodeName": "node-1",
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
        "metadata.uid": hashlib.sha1(pod.encode()).hexdigest(),
    }[path]


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) references to variables defined before."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


@dataclass
class Outcome:
    container: Container
    ready: bool
    said: str  # what the process printed (its refusal, when it has one)


class Sandbox:
    """Runs containers here: a folder per container, free ports, loopback addresses."""

    def __init__(self, root: Path, *, ready_within: float = 90.0) -> None:
        self.root = root
        self.ready_within = ready_within

    def _prepare(self, c: Container, folder: Path) -> tuple[list[str], dict[str, str], dict[str, int]]:
        paths: dict[str, str] = {}
        for mount, files in c.files.items():
            local = folder / mount.strip("/").replace("/", "_")
            local.mkdir(parents=True, exist_ok=True)
            for name, content in files.items():
                (local / name).write_text(content)
            paths[mount] = str(local)
        local_ports = {name: free_port() for name in c.ports}

        def here(text: str) -> str:
            for mount in sorted(paths, key=len, reverse=True):  # the deepest mount holding it
                if text == mount or text.startswith(mount.rstrip("/") + "/"):
                    text = paths[mount] + text[len(mount.rstrip("/")) :]
                    break
            for name, port in c.ports.items():  # its own listening addresses, not its peers'
                text = re.sub(rf"^((?:0\.0\.0\.0)?:)?{port}$", rf"\g<1>{local_ports[name]}", text)
            return "127.0.0.1" if text == "0.0.0.0" else text.replace("0.0.0.0:", "127.0.0.1:")

        args = [here(a) for a in c.args]
        env = {k: here(v) for k, v in c.env.items()}
        for name, port in c.ports.items():
            mentioned = [a for a in args if str(local_ports[name]) in a] + [
                v for v in env.values() if str(local_ports[name]) in v
            ]
            if not mentioned:
                raise NotStartable(
                    f"{c.pod}/{c.name}: port {name} ({port}) is set by nothing in its args or env: "
                    "the process would listen elsewhere"
                )
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
        # (a refusal on one line, not wrapped to a terminal's width)
        return args, base | {"HOME": str(folder), "COLUMNS": "400"} | env, local_ports

    async def run(self, c: Container) -> Outcome:
        folder = self.root / f"{c.pod}-{c.name}-{c.fingerprint()[:8]}"
        try:
            args, env, ports = self._prepare(c, folder)
        except NotStartable as exc:
            return Outcome(c, False, str(exc))
        (folder / "env.json").write_text(
            json.dumps({"args": args, "env": env}, indent=1)
        )  # to look into a failure
        log = folder / "output.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hdhub.cli.main", *args,
                cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            if c.init:
                try:
                    code = await asyncio.wait_for(process.wait(), self.ready_within)
                except TimeoutError:
                    return Outcome(c, False, f"still running after {self.ready_within:g}s\n{_tail(log)}")
                return Outcome(c, code == 0, f"exit {code}\n{_tail(log)}")
            ready = await self._probe(c, ports, process)
            return Outcome(c, ready, _tail(log))
        finally:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 20)
                except TimeoutError:
                    os.killpg(process.pid, signal.SIGKILL)
                    await process.wait()

    async def _probe(self, c: Container, ports: dict[str, int], process: asyncio.subprocess.Process) -> bool:
        if c.probe is None:
            raise NotStartable(f"{c.pod}/{c.name} has no readiness probe: ready cannot be told")
        deadline = asyncio.get_running_loop().time() + self.ready_within
        async with httpx.AsyncClient(timeout=2) as client:
            while asyncio.get_running_loop().time() < deadline:
                if process.returncode is not None:
                    return False
                if await self._answers(c.probe, ports, client):
                    return True
                await asyncio.sleep(0.3)
        return False

    @staticmethod
    async def _answers(probe: dict[str, Any], ports: dict[str, int], client: httpx.AsyncClient) -> bool:
        def port(p: int | str) -> int:
            return ports[p] if isinstance(p, str) else ports[next(n for n, v in ports.items() if v == p)]

        if "httpGet" in probe:
            try:
                r = await client.get(
                    f"http://127.0.0.1:{port(probe['httpGet']['port'])}{probe['httpGet']['path']}"
                )
            except httpx.TransportError:
                return False
            return r.status_code == 200
        if "grpc" in probe:
            import grpc
            from grpc_health.v1 import health_pb2, health_pb2_grpc

            target = f"127.0.0.1:{port(probe['grpc']['port'])}"
            async with grpc.aio.insecure_channel(target) as channel:
                try:
                    answer = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service=probe["grpc"].get("service", "")), timeout=2
                    )
                except grpc.aio.AioRpcError:
                    return False
                return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
        raise NotStartable(f"probe {probe} is not simulated")


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


async def run_pods(sandbox: Sandbox, pods: Mapping[str, list[Container]]) -> dict[str, list[Outcome]]:
    """Every pod: its init containers in turn, then its containers together, pods side by side.
    A container also found in another pod (same command, environment and files) runs once."""
    runs: dict[str, asyncio.Task[Outcome]] = {}

    def once(c: Container) -> asyncio.Task[Outcome]:
        key = c.fingerprint()
        if key not in runs:
            runs[key] = asyncio.ensure_future(sandbox.run(c))
        return runs[key]

    async def pod(containers: list[Container]) -> list[Outcome]:
        done = []
        for c in (c for c in containers if c.init):
            outcome = await once(c)
            done.append(outcome)
            if not outcome.ready:
                return done
        done += await asyncio.gather(*(once(c) for c in containers if not c.init))
        return done

    results = await asyncio.gather(*(pod(cs) for cs in pods.values()))
    return dict(zip(pods, results, strict=True))


__all__ = [
    "Container",
    "Endpoints",
    "NotStartable",
    "Outcome",
    "Sandbox",
    "containers_of",
    "documented_secrets",
    "run_pods",
]
